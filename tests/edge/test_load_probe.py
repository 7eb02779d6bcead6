"""edge.load_probe: a model is loaded in a child process first, so one that makes the interpreter abort is refused
and the caller (the daemon, the trainer) lives on.

``tests/data/trained/litert_abort.tflite`` is an int8 CNN that ``spectro-train fit`` converted (a searched
classification recipe: single-filter ReLU convolutions, one dead, a linear path): LiteRT's XNNPACK delegate
aborted the whole process on it (``free(): double free detected``, SIGABRT) in ``allocate_tensors``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import edge.load_probe as probe
from edge.bundle import load_bundle
from edge.errors import BundleError, RuntimeLoadError
from edge.runtime import ModelRuntime

ABORTING_MODEL = Path(__file__).resolve().parents[1] / "data" / "trained" / "litert_abort.tflite"
BUNDLE = Path(__file__).resolve().parents[1] / "data" / "trained" / "synthetic-demo-1.0.0.spectrolite"


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "_loaded", set())


def _model_bytes() -> bytes:
    import zipfile

    with zipfile.ZipFile(BUNDLE) as z:
        return z.read("model.tflite")


def test_the_model_that_aborted_litert_is_refused_and_this_process_lives() -> None:
    data = ABORTING_MODEL.read_bytes()
    try:
        ModelRuntime(data, probe=True)
    except RuntimeLoadError as exc:
        assert "killed by SIGABRT" in str(exc) and f"({len(data)} bytes)" in str(exc) and "refused" in str(exc)
    else:  # an interpreter that no longer aborts on it: then it simply loads, in the child and here
        assert probe._loaded == {f"{hashlib.sha256(data).hexdigest()}/1"}


def test_a_child_killed_by_a_signal_refuses_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "_CHILD_CODE", "import os, sys\nsys.stderr.write('native crash\\n')\nos.abort()\n")
    with pytest.raises(RuntimeLoadError, match=r"killed by SIGABRT \(native crash\); the model is refused"):
        ModelRuntime(_model_bytes(), probe=True)
    assert probe._loaded == set()


def test_a_bundle_whose_model_aborts_its_loader_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "_CHILD_CODE", "import os\nos.abort()\n")
    with pytest.raises(BundleError, match=r"member model.tflite: cannot be loaded: .*killed by SIGABRT"):
        load_bundle(BUNDLE)


def test_a_model_that_loaded_once_is_not_probed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _model_bytes()
    ModelRuntime(data, probe=True)  # the real child loads it
    assert len(probe._loaded) == 1
    monkeypatch.setattr(probe, "_CHILD_CODE", "import os\nos.abort()\n")  # would refuse it, were it asked again
    ModelRuntime(data, probe=True)
    load_bundle(BUNDLE)
    with pytest.raises(RuntimeLoadError, match="killed by SIGABRT"):  # other threads: another interpreter, probed
        ModelRuntime(data, num_threads=2, probe=True)


def test_a_child_that_hangs_refuses_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "_CHILD_CODE", "import time\ntime.sleep(30)\n")
    with pytest.raises(RuntimeLoadError, match=r"did not load within 0.5 s in a child process: refused"):
        probe.probe_model_load(_model_bytes(), timeout_s=0.5)


def test_an_invalid_model_keeps_its_own_error_and_is_not_cached() -> None:
    with pytest.raises(RuntimeLoadError, match="could not load the model"):
        ModelRuntime(b"not a flatbuffer", probe=True)
    assert probe._loaded == set()
