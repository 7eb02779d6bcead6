"""Model bundle writer of the lab side: write a ``.spectrolite`` zip atomically, sign it, make signing keys.

The format is specified in ``docs/bundle.md`` and its constants, schema check and golden-vector check live once,
in :mod:`edge.bundle`; this module only assembles members. Golden vectors are computed by the edge's own
pipeline and :class:`edge.runtime.ModelRuntime` on this machine, and every written bundle is re-loaded with
:func:`edge.bundle.load_bundle` (hashes, schema, self-test, and signature when signing) before it replaces the
target file, so a bundle that exists at its path has passed the device's own check at least once.

Signing uses Ed25519 from the ``cryptography`` package (keys as PEM files); it lives in :mod:`trainer.signing`
and :func:`sign_bundle` and :func:`generate_keypair` are re-exported here. The atomic zip write and the edge check
before the replace live in :mod:`trainer.bundle_zip`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.bundle import (
    AUTOENCODER,
    AUTOENCODER_FORMAT_VERSION,
    BLEND_FORMAT_VERSION,
    BUNDLE_SUFFIX,
    DEFAULT_GOLDEN_TOLERANCE,
    FORMAT_VERSION,
    GOLDEN,
    INTERVALS,
    MANIFEST,
    METRICS,
    MODEL,
    MODEL_2,
    OOD,
    PREPROCESSING,
    PREPROCESSING_2,
    SERVING_FORMAT_VERSION,
    SIGNATURE,
    GoldenVectors,
    pipeline_reads_counts,
    sha256_hex,
    validate_manifest,
)
from edge.errors import BundleError, EdgeError, RuntimeLoadError
from edge.runtime import ModelRuntime
from trainer.bundle_zip import commit_bundle, temp_path_for, write_zip
from trainer.errors import BundleWriteError
from trainer.signing import generate_keypair, load_private_key, sign_bundle

__all__ = [
    "BundleIdentity",
    "BundleWriteError",
    "FitArtefacts",
    "GoldenInputs",
    "ServingArtefacts",
    "LIBRARIES",
    "write_bundle",
    "sign_bundle",
    "generate_keypair",
    "hash_training_data",
    "collect_library_versions",
    "make_input_contract",
]

log = logging.getLogger(__name__)

#: Distributions whose versions are recorded in the manifest (those installed).
LIBRARIES: tuple[str, ...] = (
    "spectrolite",
    "numpy",
    "tensorflow",
    "keras",
    "scikit-learn",
    "scipy",
    "ai-edge-litert",
    "tflite-runtime",
)


def collect_library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """Versions of the installed distributions among ``names``, plus ``python`` (nothing is imported)."""
    versions = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def hash_training_data(*arrays: npt.ArrayLike) -> str:
    """SHA-256 over training arrays (dtype, shape and bytes of each, in order), for ``training_data_sha256``.

    Parameters
    ----------
    *arrays : array_like
        E.g. ``X_train, y_train``; object arrays of strings are hashed through their text.
    """
    h = hashlib.sha256()
    for a in arrays:
        arr = np.asarray(a)
        if arr.dtype.kind == "O":
            arr = arr.astype(str)
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def make_input_contract(
    *,
    pixel_count_min: int,
    pixel_count_max: int | None = None,
    wavelength_min: float,
    wavelength_max: float,
    pixel_formats: Sequence[str] = ("uint16", "uint32", "float32"),
    frame_signal: str = "absorbance",
) -> dict[str, Any]:
    """Manifest ``input_contract`` section (read by :func:`edge.bundle.bundle_input_contract`)."""
    return {
        "pixel_count_min": int(pixel_count_min),
        "pixel_count_max": int(pixel_count_max if pixel_count_max is not None else pixel_count_min),
        "wavelength_min": float(wavelength_min),
        "wavelength_max": float(wavelength_max),
        "pixel_formats": [str(f).lower() for f in pixel_formats],
        "frame_signal": frame_signal,
    }


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        return (json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise BundleWriteError(f"{what}: cannot be written as strict JSON: {exc}") from exc


def _finite_or_none(obj: Any) -> Any:
    """Metrics may hold undefined statistics (NaN r2 on one sample): written as null, never as NaN."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating,)):
        return _finite_or_none(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _finite_or_none(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _as_dict(obj: Any, what: str) -> dict[str, Any]:
    d = obj.to_dict() if hasattr(obj, "to_dict") else obj
    if not isinstance(d, Mapping):
        raise BundleWriteError(f"{what}: expected a dict or an object with to_dict(), got {type(obj).__name__}")
    return dict(d)


def _edge_pipeline(pipeline: Any) -> Any:
    """Accept an edge Pipeline, a trainer pipeline with ``to_edge()``, or a spec dict / JSON text."""
    from edge.preprocess import Pipeline

    if hasattr(pipeline, "to_edge"):
        pipeline = pipeline.to_edge()
    if isinstance(pipeline, Pipeline):
        return pipeline
    if isinstance(pipeline, str):
        return Pipeline.from_json(pipeline)
    if isinstance(pipeline, Mapping):
        return Pipeline.from_spec(dict(pipeline))
    raise BundleWriteError(f"expected an edge Pipeline, a trainer pipeline or a spec, got {type(pipeline).__name__}")


def _targets(targets: Sequence[Any], task: str, class_labels: Sequence[str] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in targets:
        d: dict[str, Any]
        if isinstance(t, Mapping):
            d = {"name": str(t["name"]), "unit": str(t.get("unit", ""))}
            if t.get("labels") is not None:
                d["labels"] = [str(x) for x in t["labels"]]
        elif hasattr(t, "to_dict"):
            d = t.to_dict()
        else:
            name, unit = t
            d = {"name": str(name), "unit": str(unit)}
        out.append(d)
    if task == "classification" and class_labels is not None:
        if len(out) != 1:
            raise BundleWriteError(f"expected 1 target for classification, got {len(out)}")
        out[0]["labels"] = [str(x) for x in class_labels]
    return out


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BundleIdentity:
    """Who the bundle is and where it came from (the manifest's identity and provenance).

    Attributes
    ----------
    model_id, model_version : str
        Identity (``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``).
    task : {"regression", "classification"}
    targets : sequence of (name, unit) pairs, dicts ``{name, unit[, labels]}`` or :class:`edge.bundle.Target`
        In the order of the model outputs.
    training_data_sha256 : str
        See :func:`hash_training_data`.
    seed : int
        Training seed.
    class_labels : sequence of str, optional
        Class labels (classification), in output order.
    library_versions : dict, optional
        Overrides the recorded library versions (default: :func:`collect_library_versions`).
    created_utc : str, optional
        ISO 8601 UTC time (default now).
    """

    model_id: str
    model_version: str
    task: str
    targets: Sequence[Any]
    training_data_sha256: str
    seed: int
    class_labels: Sequence[str] | None = None
    library_versions: Mapping[str, str] | None = None
    created_utc: str | None = None


@dataclass(frozen=True)
class ServingArtefacts:
    """A per-target bundle's second model and which model serves each target (format 4, manifest ``serving``,
    :mod:`edge.bundle.serving`).

    Attributes
    ----------
    primary_name, second_name : str
        Names of the bundle's primary model (``model.tflite``) and of this one (``model_2.tflite``), e.g. ``cnn``
        and ``pls``.
    tflite_bytes : bytes
        The second model; it emits every target, as the primary does.
    pipeline : edge Pipeline, trainer pipeline with ``to_edge()``, or spec dict / JSON text
        Its own preprocessing, from the same raw frame as the primary's.
    by_target : sequence of str
        The serving model's name per target, in target order (for a blended target, the model of the larger
        weight; the primary on an even split).
    output_transform : dict, optional
        Its own ``{"scale", "offset"}`` (a model that emits standardised targets).
    weights : sequence of float, optional
        This (the second) model's weight per target in [0, 1] when some target is a blend of both models (format
        5, manifest ``serving.weights``); None when each target is served by one model.
    """

    primary_name: str
    second_name: str
    tflite_bytes: bytes
    pipeline: Any
    by_target: Sequence[str]
    output_transform: Mapping[str, Sequence[float]] | None = None
    weights: Sequence[float] | None = None


@dataclass(frozen=True)
class FitArtefacts:
    """What a fit produced for the device: the model, the preprocessing in front of it and its monitors.

    Attributes
    ----------
    tflite_bytes : bytes
        The ``.tflite`` model (int8 or float).
    pipeline : edge Pipeline, trainer pipeline with ``to_edge()``, or spec dict / JSON text
        Preprocessing from raw frame to model input.
    wavelengths : ndarray, shape (n_points,)
        The model's wavelength grid (after crop/resampling), in ``wavelength_unit``.
    wavelength_unit : {"nm", "cm-1"}
    input_contract : dict, optional
        See :func:`make_input_contract`; by default: the pipeline's channel count (else the golden inputs'),
        its wavelength range (else that of ``wavelengths``), any pixel format, ``frame_signal`` ``counts`` when
        the pipeline starts with a counts conversion, else ``absorbance``.
    output_transform : dict, optional
        ``{"scale": [...], "offset": [...]}``, one per output, for a model that emits standardised targets: the
        edge computes ``output * scale + offset`` in float (manifest ``output_transform``).
    ood, intervals : OodModel / IntervalModel or their dicts, optional
    autoencoder : trainer.autoencoder.FittedAutoencoder, optional
        The int8 autoencoder of the preprocessed features and its limit (member ``autoencoder.tflite``, manifest
        ``autoencoder``, format 3); its golden reconstructions are computed here with the edge runtime.
    serving : ServingArtefacts, optional
        A second model serving some targets (format 4); ``tflite_bytes`` and ``pipeline`` are then the primary's.
    """

    tflite_bytes: bytes
    pipeline: Any
    wavelengths: npt.ArrayLike
    wavelength_unit: str = "nm"
    input_contract: Mapping[str, Any] | None = None
    output_transform: Mapping[str, Sequence[float]] | None = None
    ood: Any = None
    intervals: Any = None
    autoencoder: Any = None
    serving: ServingArtefacts | None = None


@dataclass(frozen=True)
class GoldenInputs:
    """Raw inputs of the golden vectors, as frames deliver them; their expected preprocessed values and outputs
    are computed by the writer with the edge code.

    Attributes
    ----------
    inputs : ndarray, shape (n, n_channels)
        4 to 16 real spectra spanning the data are a good choice.
    dark, reference : ndarray, shape (n_channels,) or (n, n_channels), optional
        Context for counts-mode pipelines.
    wavelengths : ndarray, shape (n_channels,), optional
        Wavelength axis of the raw inputs, passed to the pipeline.
    tolerance : dict, optional
        Overrides of :data:`edge.bundle.DEFAULT_GOLDEN_TOLERANCE`.
    """

    inputs: npt.ArrayLike
    dark: npt.ArrayLike | None = None
    reference: npt.ArrayLike | None = None
    wavelengths: npt.ArrayLike | None = None
    tolerance: Mapping[str, float] | None = None


def _autoencoder_outputs(tflite: bytes, preprocessed: np.ndarray) -> np.ndarray:
    """The autoencoder's golden reconstructions: each preprocessed golden vector through the edge runtime alone,
    as the device's self-test runs it."""
    try:
        rt = ModelRuntime(tflite)
    except RuntimeLoadError as exc:
        raise BundleWriteError(f"{AUTOENCODER}: {exc}") from exc
    n_features = int(np.prod(rt.input_shape))
    flat = preprocessed.reshape(preprocessed.shape[0], -1)
    if flat.shape[1] != n_features:
        raise BundleWriteError(f"{AUTOENCODER}: expected {flat.shape[1]} inputs (the pipeline's output), "
                               f"got {n_features}")
    return np.stack([np.array(rt.predict(row), dtype=np.float32).reshape(-1) for row in flat])


def _golden_rows(pipeline: Any, runtime: ModelRuntime, raw: np.ndarray,
                 context: GoldenVectors) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each golden input through the edge pipeline and runtime, one spectrum at a time as the self-test runs it."""
    pre_rows, out_rows = [], []
    for i in range(raw.shape[0]):
        try:
            pre = np.asarray(pipeline.transform(raw[i], **context.context(i)), dtype=np.float64)
            out_rows.append(np.array(runtime.predict(pre), dtype=np.float32))
        except EdgeError as exc:
            raise BundleWriteError(f"golden vector {i}: {exc}") from exc
        pre_rows.append(pre)
    return pre_rows, out_rows


def _second_member(serving: ServingArtefacts, raw: np.ndarray,
                   context: GoldenVectors) -> tuple[bytes, bytes, np.ndarray, np.ndarray]:
    """The second model's bytes, preprocessing JSON and golden ``preprocessed_2`` and ``outputs_2``."""
    try:
        pipeline = _edge_pipeline(serving.pipeline)
    except EdgeError as exc:
        raise BundleWriteError(f"serving pipeline: {exc}") from exc
    ot = serving.output_transform
    try:
        runtime = ModelRuntime(serving.tflite_bytes, output_affine=None if ot is None else (ot["scale"], ot["offset"]))
    except RuntimeLoadError as exc:
        raise BundleWriteError(f"serving model: {exc}") from exc
    pre, out = _golden_rows(pipeline, runtime, raw, context)
    return bytes(serving.tflite_bytes), pipeline.to_json().encode("utf-8"), np.stack(pre), np.stack(out)


def _serving_section(serving: ServingArtefacts) -> dict[str, Any]:
    """The manifest's ``serving`` section (:mod:`edge.bundle.serving`)."""
    second: dict[str, Any] = {"name": serving.second_name, "model": MODEL_2, "preprocessing": PREPROCESSING_2}
    if serving.output_transform is not None:
        second["output_transform"] = {k: [float(v) for v in serving.output_transform[k]] for k in ("scale", "offset")}
    section: dict[str, Any] = {
        "members": [{"name": serving.primary_name, "model": MODEL, "preprocessing": PREPROCESSING}, second],
        "targets": [str(t) for t in serving.by_target]}
    if serving.weights is not None:
        section["weights"] = [float(w) for w in serving.weights]
    return section


def write_bundle(
    path: str | Path,
    *,
    identity: BundleIdentity,
    artefacts: FitArtefacts,
    golden: GoldenInputs,
    metrics: Mapping[str, Any],
    private_key_path: str | Path | None = None,
    note: str = "",
) -> Path:
    """Write a bundle atomically and check it with the edge reader before it replaces ``path`` (``note``: words
    added to the log line, e.g. which write of a fit this is).

    Parameters
    ----------
    path : str or Path
        Target file; must end with ``.spectrolite``. Its folder must exist.
    identity : BundleIdentity
        Identity, targets and provenance.
    artefacts : FitArtefacts
        Model, pipeline, grid, input contract, output transform, OOD model and intervals.
    golden : GoldenInputs
        Raw inputs (and their context) of the golden vectors.
    metrics : dict
        Training metrics; non-finite numbers are written as null.
    private_key_path : str or Path, optional
        Sign the bundle with this Ed25519 private key (PEM) before the check.

    Returns
    -------
    Path
        The written bundle.

    Raises
    ------
    BundleWriteError
        Bad arguments, or the bundle fails the edge reader (the message names what failed).
    """
    idn, art, gold = identity, artefacts, golden
    pipeline, tflite_bytes, output_transform, input_contract = (
        art.pipeline, art.tflite_bytes, art.output_transform, art.input_contract
    )
    final = Path(path)
    if final.suffix != BUNDLE_SUFFIX:
        raise BundleWriteError(f"expected a bundle path ending in {BUNDLE_SUFFIX}, got {final.name}")
    if not final.parent.is_dir():
        raise BundleWriteError(f"folder {final.parent} does not exist")
    try:
        edge_pipeline = _edge_pipeline(pipeline)
    except EdgeError as exc:
        raise BundleWriteError(f"pipeline: {exc}") from exc
    try:
        affine = (output_transform["scale"], output_transform["offset"]) if output_transform is not None else None
        runtime = ModelRuntime(tflite_bytes, output_affine=affine)
    except RuntimeLoadError as exc:
        raise BundleWriteError(f"model: {exc}") from exc

    raw = np.asarray(gold.inputs, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[0] < 1:
        raise BundleWriteError(f"expected golden_inputs of shape (n, n_channels), got {raw.shape}")
    ctx: dict[str, npt.NDArray[np.float64] | None] = {
        "dark": None if gold.dark is None else np.asarray(gold.dark, dtype=np.float64),
        "reference": None if gold.reference is None else np.asarray(gold.reference, dtype=np.float64),
        "wavelengths": None if gold.wavelengths is None else np.asarray(gold.wavelengths, dtype=np.float64),
    }
    partial = GoldenVectors(
        raw=raw,
        preprocessed=np.zeros((raw.shape[0], 1)),
        outputs=np.zeros((raw.shape[0], 1), dtype=np.float32),
        dark=ctx["dark"],
        reference=ctx["reference"],
        wavelengths=ctx["wavelengths"],
    )
    pre_rows, out_rows = _golden_rows(edge_pipeline, runtime, raw, partial)
    second = None if art.serving is None else _second_member(art.serving, raw, partial)
    ae_outputs = None
    if art.autoencoder is not None:
        ae_outputs = _autoencoder_outputs(art.autoencoder.tflite, np.stack(pre_rows))
    vectors = GoldenVectors(
        raw=raw,
        preprocessed=np.stack(pre_rows),
        outputs=np.stack(out_rows),
        dark=ctx["dark"],
        reference=ctx["reference"],
        wavelengths=ctx["wavelengths"],
        ae_outputs=ae_outputs,
        preprocessed_2=None if second is None else second[2],
        outputs_2=None if second is None else second[3],
    )

    grid = np.asarray(art.wavelengths, dtype=np.float64)
    if input_contract is None:
        pc = edge_pipeline.input_contract
        input_contract = make_input_contract(
            pixel_count_min=pc.n_channels if pc.n_channels is not None else raw.shape[1],
            wavelength_min=pc.wavelength_min if pc.wavelength_min is not None else float(np.min(grid)),
            wavelength_max=pc.wavelength_max if pc.wavelength_max is not None else float(np.max(grid)),
            frame_signal="counts" if pipeline_reads_counts(edge_pipeline) else "absorbance",
        )
    tolerance = dict(DEFAULT_GOLDEN_TOLERANCE)
    if gold.tolerance:
        unknown = set(gold.tolerance) - set(tolerance)
        if unknown:
            raise BundleWriteError(f"unknown golden tolerance key(s) {sorted(unknown)}; expected {sorted(tolerance)}")
        tolerance.update({k: float(v) for k, v in gold.tolerance.items()})

    members: dict[str, bytes] = {
        MODEL: bytes(tflite_bytes),
        PREPROCESSING: edge_pipeline.to_json().encode("utf-8"),
        METRICS: _json_bytes(_finite_or_none(dict(metrics)), METRICS),
        GOLDEN: vectors.to_npz_bytes(),
    }
    if art.ood is not None:
        members[OOD] = _json_bytes(_as_dict(art.ood, OOD), OOD)
    if art.intervals is not None:
        members[INTERVALS] = _json_bytes(_as_dict(art.intervals, INTERVALS), INTERVALS)
    if art.autoencoder is not None:
        members[AUTOENCODER] = bytes(art.autoencoder.tflite)
    if second is not None:
        members[MODEL_2] = bytes(second[0])
        members[PREPROCESSING_2] = second[1]
    version = FORMAT_VERSION if art.autoencoder is None else AUTOENCODER_FORMAT_VERSION
    manifest: dict[str, Any] = {
        "format_version": version if second is None or art.serving is None else
        BLEND_FORMAT_VERSION if art.serving.weights is not None else SERVING_FORMAT_VERSION,
        "model_id": idn.model_id,
        "model_version": idn.model_version,
        "created_utc": idn.created_utc or _utc_now(),
        "task": idn.task,
        "targets": _targets(idn.targets, idn.task, idn.class_labels),
        "wavelength_grid": {"unit": art.wavelength_unit, "values": [float(v) for v in grid]},
        "input_contract": dict(input_contract),
        "training_data_sha256": idn.training_data_sha256,
        "library_versions": dict(
            idn.library_versions if idn.library_versions is not None else collect_library_versions()
        ),
        "seed": int(idn.seed),
        "golden": {"count": vectors.count, **tolerance},
        "members": {name: {"sha256": sha256_hex(data), "size": len(data)} for name, data in sorted(members.items())},
    }
    if output_transform is not None:
        manifest["output_transform"] = {k: [float(v) for v in output_transform[k]] for k in ("scale", "offset")}
    if art.autoencoder is not None:
        manifest["autoencoder"] = art.autoencoder.manifest_section()
    if art.serving is not None:
        manifest["serving"] = _serving_section(art.serving)
    try:
        validate_manifest(manifest)
    except BundleError as exc:
        raise BundleWriteError(str(exc)) from exc
    members[MANIFEST] = _json_bytes(manifest, MANIFEST)
    public_key = None
    if private_key_path is not None:
        private_key = load_private_key(private_key_path)
        members[SIGNATURE] = private_key.sign(members[MANIFEST])
        public_key = private_key.public_key()

    tmp = temp_path_for(final)
    try:
        write_zip(tmp, members)
        commit_bundle(tmp, final, public_key)
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "wrote bundle %s (%d bytes, %d golden vectors%s)%s",
        final,
        final.stat().st_size,
        vectors.count,
        ", signed" if public_key is not None else "",
        f" {note}" if note else "",
    )
    return final
