"""Shared test material for the runtime, quantisation and bundle tests: a tiny real Keras model trained on real
tablets spectra, its real int8 and float ``.tflite`` conversions, the edge pipeline in front of it, and helpers
that rebuild a bundle zip with one member changed.

Everything expensive is built once per pytest process (``functools.lru_cache``), so the test files that use it pay
for TensorFlow and one short training only once. Those are the trainer's and the integration tests: the edge tests
serve the same models' committed conversions (:mod:`tests.support.trained`), and import from here only the
numpy-only helpers (the tablets material, zip surgery).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

#: Dark and white-reference counts used to turn absorbance into synthetic raw counts (a 16-bit detector).
DARK_COUNTS = 1000.0
WHITE_COUNTS = 60000.0
#: Golden vectors in the test bundles.
N_GOLDEN = 6
SEED = 7
FIXED_UTC = "2026-01-31T12:00:00Z"
FIXED_LIBS = {"python": "3", "numpy": "2"}


@dataclass(frozen=True)
class TabletModels:
    """Real tablets spectra, the edge pipeline fitted on them and real models trained on them, as ``.tflite``."""

    X_train: np.ndarray  # absorbance, (n, 650)
    y_train: np.ndarray  # assay_mg, (n,)
    X_test: np.ndarray
    y_test: np.ndarray
    wavelengths: np.ndarray
    pipeline: Any  # edge.preprocess.Pipeline on absorbance
    counts_pipeline: Any  # the same with a leading counts conversion
    X_pre_train: np.ndarray
    X_pre_test: np.ndarray
    int8_bytes: bytes
    float_bytes: bytes
    class_int8_bytes: bytes
    class_labels: tuple[str, ...]


@dataclass(frozen=True)
class TinyModels(TabletModels):
    """The same with the Keras models the conversions came from (trained in this process)."""

    keras_model: Any
    class_keras_model: Any


def _load_tablets(datasets_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with np.load(datasets_dir / "idrc2002_tablets.npz", allow_pickle=False) as d:
        X = d["X"].astype(np.float64)
        y = d["y"][:, list(d["target_names"]).index("assay_mg")].astype(np.float64)
        split = d["split"]
        inst = d["instrument"]
        wl = d["wavelengths"].astype(np.float64)
    train = (split == "test") & (inst == 1)
    test = (split == "calibrate") & (inst == 1)
    return X[train], y[train], X[test], y[test], wl


def absorbance_to_counts(A: np.ndarray) -> np.ndarray:
    """Synthetic raw counts whose counts->absorbance conversion gives back ``A`` (to rounding)."""
    return DARK_COUNTS + (WHITE_COUNTS - DARK_COUNTS) * np.power(10.0, -A)


#: Labels of the tiny classification model (training target above / below the median assay).
CLASS_LABELS = ("low", "high")


def tablets_material(datasets_dir: Path) -> dict[str, Any]:
    """The tablets spectra and the edge pipeline fitted on them (numpy and ``edge`` only): the fields of
    :class:`TinyModels` that need no Keras, shared with the committed models of tests/support/trained.py."""
    from edge.preprocess import SNV, Autoscale, CountsConversion, InputContract, Pipeline

    X_tr, y_tr, X_te, y_te, wl = _load_tablets(datasets_dir)
    contract = InputContract.from_wavelengths(wl)
    snv = Pipeline((SNV(),), contract).transform(X_tr)
    mean = snv.mean(axis=0)
    scale = snv.std(axis=0)
    steps = (SNV(), Autoscale(mean=mean, scale=scale))
    pipeline = Pipeline(steps, contract)
    counts_pipeline = Pipeline((CountsConversion(quantity="absorbance"), *steps), contract)
    return dict(X_train=X_tr, y_train=y_tr, X_test=X_te, y_test=y_te, wavelengths=wl, pipeline=pipeline,
                counts_pipeline=counts_pipeline, X_pre_train=pipeline.transform(X_tr),
                X_pre_test=pipeline.transform(X_te))


@functools.lru_cache(maxsize=None)
def tiny_models(datasets_dir: Path) -> TinyModels:
    """Build (once per process) the tiny regression and classification models and their conversions (Keras: the
    trainer tests and tests/data/trained/make_trained.py; the edge tests read the committed conversions through
    :func:`tests.support.trained.tablet_models`)."""
    import keras

    from trainer.quantize import convert_float, convert_int8

    material = tablets_material(datasets_dir)
    P_tr, y_tr = material["X_pre_train"], material["y_train"]

    keras.utils.set_random_seed(SEED)
    n = P_tr.shape[1]
    inp = keras.Input((n, 1))
    h = keras.layers.Conv1D(4, 9, strides=4, activation="relu")(inp)
    h = keras.layers.Conv1D(4, 5, strides=4, activation="relu")(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(float(y_tr.mean())))(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.fit(P_tr[..., None], y_tr, epochs=8, batch_size=32, verbose=0)

    int8_bytes = convert_int8(model, P_tr, subprocess=False, seed=SEED)
    float_bytes = convert_float(model)

    labels = CLASS_LABELS
    y_cls = (y_tr > np.median(y_tr)).astype(np.int64)
    keras.utils.set_random_seed(SEED)
    inp = keras.Input((n, 1))
    h = keras.layers.Conv1D(4, 9, strides=8, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling1D()(h)
    out = keras.layers.Dense(len(labels), activation="softmax")(h)
    cls_model = keras.Model(inp, out)
    cls_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cls_model.fit(P_tr[..., None], y_cls, epochs=2, batch_size=64, verbose=0)
    cls_int8 = convert_int8(cls_model, P_tr, subprocess=False, seed=SEED)

    return TinyModels(
        **material,
        keras_model=model,
        int8_bytes=int8_bytes,
        float_bytes=float_bytes,
        class_keras_model=cls_model,
        class_int8_bytes=cls_int8,
        class_labels=labels,
    )


def golden_rows(m: TinyModels) -> np.ndarray:
    """Indices of the golden vectors: spread over the test rows."""
    return np.linspace(0, m.X_test.shape[0] - 1, N_GOLDEN).astype(int)


def write_regression_bundle(m: TinyModels, path: Path, **overrides: Any) -> Path:
    """Write the standard absorbance-mode regression bundle (int8, OOD, intervals) with the real writer."""
    from edge.intervals import IntervalModel
    from edge.ood import OodModel
    from trainer.bundle import hash_training_data, write_bundle

    mean = m.X_pre_train.mean(axis=0)
    Xc = m.X_pre_train - mean
    _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    k = 3
    ev = s[:k] ** 2 / (Xc.shape[0] - 1)
    ood = OodModel(mean=mean, components=vt[:k], explained_variance=ev, t2_limit=20.0, q_limit=50.0)
    intervals = IntervalModel(q_hat=np.array([3.5]), coverage=0.9, target_names=("assay_mg",), n_calibration=40)
    kwargs: dict[str, Any] = dict(
        model_id="tablets-assay",
        model_version="1.0.0",
        task="regression",
        targets=[("assay_mg", "mg")],
        wavelengths=m.wavelengths,
        tflite_bytes=m.int8_bytes,
        pipeline=m.pipeline,
        metrics={"evaluations": [{"split": "test_inst1", "target": "assay_mg", "model": "cnn_int8", "rmsep": 5.0}]},
        golden_inputs=m.X_test[golden_rows(m)],
        golden_wavelengths=m.wavelengths,
        training_data_sha256=hash_training_data(m.X_train, m.y_train),
        seed=SEED,
        ood=ood,
        intervals=intervals,
        created_utc=FIXED_UTC,
        library_versions=FIXED_LIBS,
    )
    kwargs.update(overrides)
    return write_bundle(path, **bundle_parts(kwargs))


def bundle_parts(flat: dict[str, Any]) -> dict[str, Any]:
    """:func:`trainer.bundle.write_bundle`'s keyword arguments from one flat dict of field names (``golden_*`` for
    the golden inputs), so a test can override any one field."""
    from trainer.bundle import BundleIdentity, FitArtefacts, GoldenInputs

    rest = dict(flat)
    parts: dict[str, Any] = {}
    for key, cls, prefix in (("identity", BundleIdentity, ""), ("artefacts", FitArtefacts, ""),
                             ("golden", GoldenInputs, "golden_")):
        names = {prefix + f.name: f.name for f in fields(cls)}
        parts[key] = cls(**{names[k]: rest.pop(k) for k in list(rest) if k in names})
    return {**parts, **rest}


# ------------------------------------------------------------------------------------------------ zip surgery
def read_zip(path: Path) -> dict[str, bytes]:
    """All members of a zip, in archive order."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_zip(path: Path, members: Mapping[str, bytes]) -> Path:
    """Write members (any names) into a fresh zip."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def rehash_manifest(members: dict[str, bytes], edit: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Recompute the manifest's member hashes (so only the intended change is caught), then apply ``edit``."""
    manifest = json.loads(members["manifest.json"])
    manifest["members"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in members.items()
        if name not in ("manifest.json", "manifest.sig")
    }
    if edit is not None:
        edit(manifest)
    members["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()


def flip_byte(data: bytes, index: int | None = None) -> bytes:
    """``data`` with one byte changed (the middle one by default)."""
    i = len(data) // 2 if index is None else index
    return data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :]


def member_data_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """(offset, compressed size) of each member's data inside the zip file."""
    raw = path.read_bytes()
    out = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        for info in zf.infolist():
            h = info.header_offset
            name_len = int.from_bytes(raw[h + 26 : h + 28], "little")
            extra_len = int.from_bytes(raw[h + 28 : h + 30], "little")
            out[info.filename] = (h + 30 + name_len + extra_len, info.compress_size)
    return out
