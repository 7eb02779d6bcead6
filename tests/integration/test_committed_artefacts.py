"""The trainer-built artefacts committed in tests/data/trained (what the edge tests serve without TensorFlow) are
still what the trainer writes today.

Each test rebuilds one group with the generator (tests/data/trained/make_trained.py, into a temporary folder; the
demo 1.0.0 bundle is the session's own ``spectro-train fit examples/demo.toml``) and compares it with the
committed files. What this guarantees: every committed bundle loads and passes its golden self-test with today's
reader, and has the fresh bundle's format version, member names, manifest schema (every key, with its type),
identity, targets, input contract, wavelength grid, training-data hash, golden settings, preprocessing steps with
their fitted parameters (to float tolerance) and model signature (input and output shapes, dtypes, quantisation);
each committed ``.tflite`` has the fresh conversion's signature. It fails when the trainer's output format changes
(a new member, a renamed or retyped manifest field, another preprocessing, another model interface): regenerate
then. It does not compare weights or predictions, nor the manifest figures computed from them (:data:`TRAINED`):
training is not bit-reproducible across TensorFlow versions, nor across CPUs (oneDNN and Eigen pick kernels by the
instruction set, so an AMD host trains other weights than the Intel host that wrote the committed bundles).
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.runtime import ModelRuntime
from tests.support import trained

pytestmark = pytest.mark.slow

#: Fitted parameters (preprocessing, training statistics, wavelength grids) of two runs of the same deterministic
#: fit agree to float rounding; a different fit differs far beyond this.
PARAM_RTOL, PARAM_ATOL = 1e-6, 1e-9
#: Manifest fields that differ between two runs of the same fit (time, environment, member hashes of the
#: non-deterministic weights); their presence and type are still compared.
VOLATILE = ("created_utc", "library_versions", "members")
#: Manifest figures computed from the trained weights (``*``: every item of a list); their presence and type are
#: still compared. Measured on an AMD EPYC host against the CNN and autoencoder demo bundles written on an Intel Xeon
#: one: the int16x8 output step behind ``output_float_atol`` 3.474e-4 against 3.477e-4, the in-control mean and
#: standard deviation of each target's predictions (the prediction CUSUM's ``training``) up to 0.12 % apart, the
#: autoencoder's limit (the top of its held-out reconstruction errors) 1.12e-4 against 1.84e-4.
TRAINED = (("golden", "output_float_atol"), ("autoencoder", "limit"), ("targets", "*", "training", "mean"),
           ("targets", "*", "training", "std"))


def _generator() -> ModuleType:
    path = trained.TRAINED / "make_trained.py"
    spec = importlib.util.spec_from_file_location("make_trained", path)
    assert spec is not None and spec.loader is not None, f"expected the generator at {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _schema(value: Any) -> Any:
    """The shape of a JSON value: the same nesting, with each leaf replaced by its type's name."""
    if isinstance(value, dict):
        return {k: _schema(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_schema(v) for v in value]
    return type(value).__name__


def _assert_close(fresh: Any, committed: Any, where: str) -> None:
    """Same structure, equal strings/booleans/None, numbers within the parameter tolerance."""
    if isinstance(fresh, dict):
        got = sorted(committed) if isinstance(committed, dict) else committed
        assert isinstance(committed, dict) and sorted(fresh) == got, (
            f"{where}: expected keys {sorted(fresh)}, got {got!r}")
        for k in fresh:
            _assert_close(fresh[k], committed[k], f"{where}.{k}")
    elif isinstance(fresh, list):
        assert isinstance(committed, list) and len(fresh) == len(committed), (
            f"{where}: expected a list of {len(fresh)}, got {committed!r:.200}")
        if fresh and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in fresh + committed):
            np.testing.assert_allclose(committed, fresh, rtol=PARAM_RTOL, atol=PARAM_ATOL, err_msg=where)
        else:
            for i, (f, c) in enumerate(zip(fresh, committed)):
                _assert_close(f, c, f"{where}[{i}]")
    elif isinstance(fresh, float) and isinstance(committed, (int, float)):
        np.testing.assert_allclose(committed, fresh, rtol=PARAM_RTOL, atol=PARAM_ATOL, err_msg=where)
    else:
        assert fresh == committed, f"{where}: expected {fresh!r}, got {committed!r}"


def _without_trained(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` without the :data:`TRAINED` figures (a copy; the schema comparison has already seen them)."""
    out: dict[str, Any] = json.loads(json.dumps(manifest))

    def drop(node: Any, path: tuple[str, ...]) -> None:
        head, rest = path[0], path[1:]
        children = (node if head == "*" and isinstance(node, list)
                    else [node[head]] if isinstance(node, dict) and head in node and rest else [])
        if not rest and isinstance(node, dict):
            node.pop(head, None)
        for child in children:
            drop(child, rest)

    for path in TRAINED:
        drop(out, path)
    return out


def _model_signature(model: bytes) -> tuple[Any, ...]:
    rt = ModelRuntime(model)
    return rt.input_shape, rt.output_shape, str(rt.input_dtype), str(rt.output_dtype), rt.is_quantized


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def assert_same_kind(fresh_path: Path, committed_path: Path, *, public_key: Path | None = None,
                     ignore: tuple[str, ...] = ()) -> None:
    """``committed_path`` is a bundle the trainer writes today, as ``fresh_path`` (see the module docstring);
    ``ignore``: manifest fields that differ on purpose (their type is still compared)."""
    committed = load_bundle(committed_path, public_key=public_key)  # raises on a failed self-test
    fresh = load_bundle(fresh_path)
    assert committed.self_test is not None and committed.self_test.summary().startswith("PASSED"), committed.self_test
    fm, cm = _members(fresh_path), _members(committed_path)
    assert sorted(cm) == sorted(fm), f"expected members {sorted(fm)}, got {sorted(cm)}"
    fman, cman = json.loads(fm["manifest.json"]), json.loads(cm["manifest.json"])
    assert _schema(cman) == _schema(fman), "the manifest's schema changed: regenerate tests/data/trained"
    skip = VOLATILE + ignore
    _assert_close(_without_trained({k: v for k, v in fman.items() if k not in skip}),
                  _without_trained({k: v for k, v in cman.items() if k not in skip}), "manifest")
    _assert_close(json.loads(fm["preprocessing.json"]), json.loads(cm["preprocessing.json"]), "preprocessing")
    assert [type(s).__name__ for s in committed.pipeline.steps] == [type(s).__name__ for s in fresh.pipeline.steps]
    assert _model_signature(cm["model.tflite"]) == _model_signature(fm["model.tflite"])
    if "model_2.tflite" in fm:  # a per-target bundle's second model and its own preprocessing
        assert _model_signature(cm["model_2.tflite"]) == _model_signature(fm["model_2.tflite"])
        _assert_close(json.loads(fm["preprocessing_2.json"]), json.loads(cm["preprocessing_2.json"]), "preprocessing_2")


def test_demo_bundles_are_what_spectro_train_fit_writes(demo_bundle: Path) -> None:
    """v1 against the session's ``spectro-train fit examples/demo.toml``; v2 (the same config, model_version
    1.1.0) against the same, its version aside."""
    assert_same_kind(demo_bundle, trained.DEMO_V1)
    assert_same_kind(demo_bundle, trained.DEMO_V2, ignore=("model_version",))
    assert load_bundle(trained.DEMO_V2, self_test=False).manifest["model_version"] == "1.1.0"


@pytest.mark.parametrize(("group", "files"), [
    ("absorbance", (trained.DEMO_ABSORBANCE,)),
    ("cnn", (trained.DEMO_CNN,)),
    ("autoencoder", (trained.DEMO_AE,)),
    ("ftir", (trained.FTIR_BUNDLE,)),
    ("per_target", (trained.PER_TARGET_BUNDLE,)),
])
def test_fitted_bundles_are_what_the_generator_writes(group: str, files: tuple[Path, ...], tmp_path: Path) -> None:
    _generator().build(tmp_path, (group,))
    for committed in files:
        assert_same_kind(tmp_path / committed.name, committed)


def test_tablets_models_and_bundle_are_what_the_generator_writes(tmp_path: Path) -> None:
    _generator().build(tmp_path, ("tablets",))
    for model in (trained.TABLETS_INT8, trained.TABLETS_FLOAT, trained.TABLETS_CLASS_INT8):
        assert _model_signature(model.read_bytes()) == _model_signature((tmp_path / model.name).read_bytes()), model
    assert_same_kind(tmp_path / trained.TABLETS_BUNDLE.name, trained.TABLETS_BUNDLE,
                     public_key=trained.TABLETS_PUBLIC_KEY)
