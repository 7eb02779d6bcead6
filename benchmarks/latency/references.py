"""References of ``spectro-bench latency``: the models to compare with (float, pruned, Keras, PLS), found or built."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency.frames import Frames
from benchmarks.latency.timing import decode_spectra, skipped, summary_of, time_calls

__all__ = ["keras_references", "model_bytes_from", "pls_reference", "resolve_bundle"]


def resolve_bundle(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None, str]:
    """(bundle, folder of the references, dataset for frames, description)."""
    from benchmarks import artifacts

    if args.bundle is not None:
        return args.bundle, args.bundle.parent, args.dataset, "given"
    cache = args.cache or artifacts.default_cache_dir()
    if args.synthetic:
        demo = artifacts.ensure_demo(rebuild=args.rebuild)
        return demo.bundle, None, None, "the demo model (spectro-train fit examples/demo.toml), synthetic spectra"
    epochs = args.epochs or artifacts.DEFAULT_EPOCHS
    root = artifacts.ensure_tablets(cache, epochs=epochs, rebuild=args.rebuild)
    dataset = args.dataset or artifacts.datasets_dir() / "idrc2002_tablets.npz"
    return artifacts.deployed_bundle(root), root, dataset, f"tablets protocol, {epochs} epochs, counts pipeline"


def model_bytes_from(path: Path) -> bytes:
    if path.suffix == ".spectrolite":
        from edge.bundle import load_bundle

        return load_bundle(path, self_test=False).runtime.model_content
    return path.read_bytes()


def pls_reference(pls_npz: Path, pls_pre: Path | None, bundle: Any, frames: Frames, n: int,
                   warmup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """PLS as ``x_pre @ coef + intercept``: the dot product alone, and with the PLS model's own preprocessing."""
    from edge.bundle import pipeline_reads_counts
    from edge.preprocess import CountsConversion, Pipeline

    with np.load(pls_npz) as d:
        coef = np.ascontiguousarray(d["coef"], dtype=np.float64)
        intercept = np.asarray(d["intercept"], dtype=np.float64)
    if pls_pre is None or not pls_pre.is_file():
        return skipped(f"no {pls_npz.stem}_preprocessing spec"), skipped("no PLS preprocessing spec")
    pipe = Pipeline.from_json(pls_pre.read_text(encoding="utf-8"))
    if pipeline_reads_counts(bundle.pipeline) and not pipeline_reads_counts(pipe):
        pipe = pipe.insert(0, CountsConversion(quantity="absorbance"))
    ctx = {"dark": frames.dark, "reference": frames.white, "wavelengths": frames.wavelengths}
    raw = [s.counts for s in decode_spectra(frames)]
    feats = [np.asarray(pipe.transform(r, **ctx), dtype=np.float64).reshape(-1) for r in raw]
    if feats[0].size != coef.shape[0]:
        reason = f"expected {coef.shape[0]} PLS features, got {feats[0].size}"
        return skipped(reason), skipped(reason)

    def dot(x: np.ndarray) -> np.ndarray:
        return x @ coef + intercept

    def total(r: np.ndarray) -> np.ndarray:
        return pipe.transform(r, **ctx).reshape(-1) @ coef + intercept

    a = {"available": True, **summary_of(time_calls(dot, feats, n, warmup))}
    b = {"available": True, **summary_of(time_calls(total, raw, n, warmup))}
    return a, b


def keras_references(path: Path, features: np.ndarray, n: int, warmup: int, n_predict: int,
                      int8_outputs: np.ndarray) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Per-frame ``model(x, training=False)`` and ``model.predict(x)`` of a saved Keras model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
    except ImportError as exc:
        reason = f"TensorFlow/Keras not installed ({exc})"
        return skipped(reason), skipped(reason), {}
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # any load failure only skips this reference
        reason = f"cannot load {path.name}: {exc}"
        return skipped(reason), skipped(reason), {}
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    if int(np.prod(shape)) != int(np.prod(features.shape[1:])):
        reason = f"Keras input shape {shape} does not match the bundle's features {features.shape[1:]}"
        return skipped(reason), skipped(reason), {}
    xs = [np.asarray(f, dtype=np.float32).reshape((1, *shape)) for f in features]
    call = time_calls(lambda x: model(x, training=False), xs, n, min(warmup, 50))
    pred = time_calls(lambda x: model.predict(x, verbose=0), xs, max(1, n_predict), 5)
    keras_out = np.stack([np.asarray(model(x, training=False)).reshape(-1) for x in xs[: len(int8_outputs)]])
    agree = {"int8_vs_keras_max_abs_diff": float(np.max(np.abs(keras_out - int8_outputs[: len(keras_out)]))),
             "int8_vs_keras_mean_abs_diff": float(np.mean(np.abs(keras_out - int8_outputs[: len(keras_out)])))}
    return ({"available": True, **summary_of(call)}, {"available": True, **summary_of(pred)}, agree)
