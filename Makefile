# The two commands of the README: `make demo` (set up, then run the whole loop) and `make test` (set up, then
# run the whole test suite).  Everything else here is what those two need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FRAMES ?= 400

.PHONY: setup broker demo test lint bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV): pip, then spectrolite with its dependencies (TensorFlow is the large one; a few minutes)"
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[all]'
	touch $@

setup: $(VENV)/.installed

# A real mosquitto broker for the tests.  The demo needs none: without mosquitto on PATH it starts the embedded
# amqtt broker, an install requirement, so `make demo` needs neither root nor apt.
broker:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  echo "installing mosquitto with apt-get"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mosquitto; }

demo: setup
	$(VENV)/bin/spectro-bench demo --frames $(FRAMES)

test: setup broker lint
	$(PY) -m pytest -q

# The cheapest reviewers: ruff (pyproject.toml), mypy --strict on the device side, import-linter (.importlinter).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup broker
	$(VENV)/bin/spectro-bench codec --json out/bench-codec.json
	$(VENV)/bin/spectro-bench preprocess --json out/bench-preprocess.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
