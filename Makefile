# The two commands of the README: `make demo` (set up, then run the whole loop) and `make test` (set up, then
# run the whole test suite).  Everything else here is what those two need, and `make test-fast` for developers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The edge-only environment: `.[edge,prometheus,opcua,dev]`, no TensorFlow, as on a device.
EDGE_VENV ?= .venv-edge
EDGE_PY := $(EDGE_VENV)/bin/python
EDGE_SUITES := tests/edge tests/firmware_bridge
# What `make test-fast` runs (any pytest paths or node ids).
TESTS ?= $(EDGE_SUITES)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FRAMES ?= 400
comma := ,

.PHONY: setup setup-edge broker demo test test-edge test-fast test-arm64 lint bench clean

# A virtual environment $(1) with spectrolite installed (editable) with the extras $(2).
define make_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --progress-bar on --upgrade pip
	$(1)/bin/python -m pip install --progress-bar on -e '.[$(2)]'
	touch $@
endef

$(VENV)/.installed: setup.cfg pyproject.toml
	@echo "setting up $(VENV): pip, then spectrolite with its dependencies (TensorFlow is the large one; a few minutes)"
	$(call make_venv,$(VENV),all)

setup: $(VENV)/.installed

$(EDGE_VENV)/.installed: setup.cfg pyproject.toml
	@echo "setting up $(EDGE_VENV): spectrolite with only its edge, prometheus, opcua and dev extras (no TensorFlow)"
	$(call make_venv,$(EDGE_VENV),edge$(comma)prometheus$(comma)opcua$(comma)dev)

setup-edge: $(EDGE_VENV)/.installed

# A real mosquitto broker for the tests, and RabbitMQ for the clustered-broker test (tests/reliability/
# test_cluster_failover.py starts its own nodes, epmd and ports; it never uses the system service the package may
# start).  The demo needs none: without mosquitto on PATH it starts the embedded amqtt broker, an install
# requirement, so `make demo` needs neither root nor apt.
BROKER_PACKAGES := $(shell command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || echo mosquitto) \
	$(shell [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 || \
	  echo rabbitmq-server)
broker:
	@[ -z "$(strip $(BROKER_PACKAGES))" ] || { \
	  echo "installing $(strip $(BROKER_PACKAGES)) with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(strip $(BROKER_PACKAGES)); }

demo: setup
	$(VENV)/bin/spectro-bench demo --frames $(FRAMES)

# First the edge and firmware_bridge suites in the edge-only environment, on the trainer-built bundles committed
# in tests/data/trained (SPECTROLITE_EDGE_ONLY=1: tests/conftest.py refuses to run if TensorFlow is importable),
# then everything else in the full one (trainer, benchmarks, reliability, integration).
test: setup broker lint test-edge
	$(PY) -m pytest -q --ignore=tests/edge --ignore=tests/firmware_bridge

test-edge: setup-edge broker
	SPECTROLITE_EDGE_ONLY=1 $(EDGE_PY) -m pytest -q $(EDGE_SUITES)

# The developer's quick loop, in the full environment: the edge and firmware_bridge suites (or TESTS=...) without
# the slow and fault-injection tests, stopping at the first failure, last run's failures first.
test-fast: setup broker
	$(PY) -m pytest -q -x --ff -m "not slow and not reliability" $(TESTS)

# The edge and firmware_bridge suites on arm64 under qemu user-mode emulation, in an arm64 Debian root built once in
# build/arm64 (root; apt-get, binfmt_misc, mmdebstrap); not part of `make test`.  ARM64_TESTS=... for a subset,
# ARM64_CPU="cortex-a72 cortex-a76" for both boards' CPUs: see deploy/arm64/test-arm64.sh and benchmarks/README.md.
test-arm64:
	$(SUDO) env ARM64_TESTS="$(ARM64_TESTS)" ARM64_CPU="$(ARM64_CPU)" deploy/arm64/test-arm64.sh

# The cheapest reviewers: ruff (pyproject.toml), mypy --strict on the device side, import-linter (.importlinter),
# and vermin: no syntax or standard-library API newer than Python 3.10 (Jetson's) in what the edge and its tests run.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/vermin --target=3.10- --no-tips --violations --eval-annotations \
	  edge firmware_bridge benchmarks/harness tests

bench: setup broker
	$(VENV)/bin/spectro-bench codec --json out/bench-codec.json
	$(VENV)/bin/spectro-bench preprocess --json out/bench-preprocess.json

clean:
	rm -rf $(VENV) $(EDGE_VENV) build *.egg-info .pytest_cache .hypothesis
