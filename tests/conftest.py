"""Shared pytest fixtures: where the real datasets are, the demo model trained by ``spectro-train fit``, and the
tolerances every test names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

# CI runs are reproducible (the same examples every run) and never fail on the 2-core machine's timing noise;
# locally Hypothesis explores new examples each run.  Either way a failure prints its seed and example.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("SPECTROLITE_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

#: Fixtures of tests/support, for every test module (they import helpers only, never fixtures).
pytest_plugins = [
    "tests.support.daemon",
    "tests.support.broker",
    "tests.support.processes",
    "tests.support.pty_device",
]

if TYPE_CHECKING:
    from benchmarks.harness import TrainedModel

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Set by ``make test-edge``: the run is in the edge-only environment (``.[edge,prometheus,opcua,dev]``), which must
#: hold no trainer dependency, so that the edge and firmware_bridge suites prove they run where the device's runtime
#: does.
EDGE_ONLY_ENV = "SPECTROLITE_EDGE_ONLY"
#: What the edge-only environment must not be able to import.
TRAINER_ONLY_MODULES = ("tensorflow", "keras", "tf_keras")


def pytest_configure(config: pytest.Config) -> None:
    """In the edge-only run, refuse to start when a trainer dependency is importable (the run would prove
    nothing)."""
    if os.environ.get(EDGE_ONLY_ENV) != "1":
        return
    import importlib.util

    found = [m for m in TRAINER_ONLY_MODULES if importlib.util.find_spec(m) is not None]
    if found:
        raise pytest.UsageError(f"expected an environment without {', '.join(TRAINER_ONLY_MODULES)} "
                                f"({EDGE_ONLY_ENV}=1), got {', '.join(found)} importable")


def datasets_path() -> Path:
    """Folder of the shared real datasets: ``$SPECTROLITE_DATASETS`` or ``../shared/datasets`` beside the repo."""
    env = os.environ.get("SPECTROLITE_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """Folder holding the real ``.npz`` datasets; the tests that use it fail (not skip) when it is missing."""
    path = datasets_path()
    if not (path / "idrc2002_tablets.npz").is_file():
        raise FileNotFoundError(
            f"expected the shared datasets at {path} (set SPECTROLITE_DATASETS to override), found none"
        )
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of the repository checkout."""
    return REPO_ROOT


#: The shipped config of the demo model: the simulator's own synthetic spectra, trained in well under a minute.
DEMO_CONFIG = REPO_ROOT / "examples" / "demo.toml"


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> "TrainedModel":
    """``spectro-train fit examples/demo.toml`` run once per session (a child process: TensorFlow stays out of
    pytest), into a session folder; its bundle expects raw counts with dark and white frames, exactly what
    ``spectro-sim`` sends for ``--seed 0 --synthetic-samples 500 --synthetic-channels 256``."""
    from benchmarks.harness import train

    return train(DEMO_CONFIG, tmp_path_factory.getbasetemp() / "demo-model")


@pytest.fixture(scope="session")
def demo_bundle(demo_model: "TrainedModel") -> Path:
    """Path of the trainer-built demo bundle (``<model_id>.spectrolite``)."""
    return demo_model.bundle
