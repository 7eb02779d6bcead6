"""``spectro-bench latency``: per-stage edge latency of a bundle, with float, pruned, Keras and PLS references.

Usage::

    spectro-bench latency [--bundle B | --synthetic] [--frames N] [--warmup W] [--threads 1,2]
                          [--float-tflite F] [--pruned P] [--keras K] [--pls N] [--no-keras] [--json PATH]

Each of ``--frames`` raw frames (after ``--warmup`` untimed ones) goes through the stages the daemon runs, each
timed on its own with ``time.perf_counter_ns``: ``decode`` (serial bytes -> :class:`~firmware_bridge.frames.Spectrum`
by :class:`firmware_bridge.codec.FrameDecoder`), ``preprocess`` (the bundle's pipeline, with read-only dark and white
references as the daemon holds them), ``quantize``, ``invoke``, ``dequantize`` (:class:`edge.runtime.ModelRuntime`),
``ood`` (Hotelling T2 and Q), ``interval`` (conformal bounds) and ``message`` (prediction payload built, validated
and encoded as the publisher does). ``compute`` is the span from the start of ``preprocess`` to the end of
``interval`` of the same frame, read from the same clock: one timed span per frame, not a sum of percentiles;
``compute_cpu`` is the same span in thread CPU time (``time.thread_time_ns``), which leaves out the time the thread
was preempted, so on a busy machine it shows what the work itself costs (its tail still includes cache and
frequency effects of the other load).
``daemon_stage`` times :meth:`edge.inference.InferenceEngine.process` per frame (contract and reference checks,
quality flags and the ``Prediction`` value included), which is what the daemon's inference thread calls;
``daemon_stage_paced`` times it again in thread CPU time, back to back and with ``--pace-ms`` of sleep before each
frame (10 ms: 100 frames/s), because a thread woken every 10 ms does the same work several times slower.

References, on the same preprocessed features in the same run: the int8 ``.tflite`` (``ModelRuntime.predict``), the
float32 ``.tflite``, the pruned int8 ``.tflite``, the Keras model called per frame (``model(x, training=False)``,
and ``model.predict`` on a shorter run because that is how many people call it), and the PLS baseline as a numpy
affine map (alone, and with its own preprocessing). ``speedup_vs_keras`` is the p50 of the per-frame Keras call
(timed on at most ``--keras-frames`` frames) divided by the p50 of ``compute``. Interpreter threads 1..N are timed on
``invoke`` and ``predict``.

Without ``--bundle``, the tablets protocol (``examples/tablets_assay.toml``) is trained once with the trainer's code
(:mod:`benchmarks.artifacts`, cached) and its int8 model is benchmarked behind a counts pipeline, on raw frames made
from the real IDRC 2002 tablet spectra. ``--synthetic`` uses the demo model (``spectro-train fit examples/demo.toml``,
cached) instead (256 synthetic channels, seconds). With ``--bundle``, frames come from ``--dataset`` when its channel
count matches, else from the bundle's golden vectors; references are looked for next to the bundle by the names of
:mod:`benchmarks.artifacts`.

TensorFlow is imported only for the Keras reference, after the edge stages were timed and the edge-only peak
RSS was read, so ``peak_rss_mb_edge`` is what a device running the daemon's stages pays.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results import (
    host_facts,
    jsonable,
    markdown_table,
    peak_rss_mb,
    percentiles_us,
    publish,
    system_load,
)
from firmware_bridge.frames import Spectrum

log = logging.getLogger(__name__)

#: Stage names, in pipeline order (the keys of ``stages`` in the JSON).
STAGES = ("decode", "preprocess", "quantize", "invoke", "dequantize", "ood", "interval", "message")
#: Goals of issue 6 on the development machine.
GOAL_COMPUTE_P99_US = 300.0
GOAL_SPEEDUP_VS_KERAS = 50.0
#: Frames distinct frames are made from (cycled).
MAX_DISTINCT_FRAMES = 512
#: ``model.predict`` per frame costs a fraction of a second: it is timed on this many frames by default.
KERAS_PREDICT_FRAMES = 100
#: The per-frame Keras call costs milliseconds: it is timed on at most this many frames by default.
KERAS_CALL_FRAMES = 1000
#: Device id written into the benchmark's prediction messages.
DEVICE_ID = "bench-01"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench latency``."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--bundle", type=Path, help="bundle to benchmark (default: build the tablets one, cached)")
    src.add_argument("--synthetic", action="store_true", help="build and benchmark the demo's small synthetic bundle")
    parser.add_argument("--frames", type=int, default=5000, help="timed frames (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed frames first (default %(default)s)")
    parser.add_argument("--threads", default="1,2", help="interpreter thread counts to time, e.g. 1,2,4")
    parser.add_argument("--dataset", type=Path, help="npz with X (n, n_channels) absorbance to make frames from")
    parser.add_argument("--float-tflite", type=Path, help="float32 .tflite reference (default: next to the bundle)")
    parser.add_argument("--pruned", "--pruned-bundle", dest="pruned", type=Path,
                        help="pruned int8 .tflite or bundle (default: next to the bundle)")
    parser.add_argument("--keras", type=Path, help=".keras model reference (default: next to the bundle)")
    parser.add_argument("--pls", type=Path, help="pls.npz reference (default: next to the bundle)")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras reference (no TensorFlow import)")
    parser.add_argument("--keras-frames", type=int, default=KERAS_CALL_FRAMES,
                        help="at most this many frames for the per-frame Keras call (default %(default)s)")
    parser.add_argument("--keras-predict-frames", type=int, default=KERAS_PREDICT_FRAMES,
                        help="frames for the model.predict figure (default %(default)s)")
    parser.add_argument("--pace-ms", type=float, default=10.0,
                        help="also time the daemon stage in CPU time with this pause between frames (0: skip)")
    parser.add_argument("--pace-frames", type=int, default=300, help="frames of the paced timing")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the built tablets model")
    parser.add_argument("--cache", type=Path, help="folder for built models (default: the user cache)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild cached models")
    parser.add_argument("--plot", type=Path, help="PNG of the stage latencies (default: beside --json)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON (and .md beside)")


# --------------------------------------------------------------------------------------------------- inputs
class _Frames:
    """Encoded frames with what the pipeline needs beside them."""

    def __init__(self, encoded: list[bytes], dark: np.ndarray | None, white: np.ndarray | None,
                 wavelengths: np.ndarray | None, source: str, pixel_format: str) -> None:
        self.encoded = encoded
        self.dark = dark
        self.white = white
        self.wavelengths = wavelengths
        self.source = source
        self.pixel_format = pixel_format


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    out = np.array(a, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


def _encode_rows(rows: np.ndarray, as_counts: bool) -> tuple[list[bytes], str]:
    from firmware_bridge.codec import encode
    from firmware_bridge.frames import Spectrum

    if as_counts and rows.min() >= 0 and rows.max() <= 65535:
        data = np.rint(rows).astype(np.uint16)
        fmt = "uint16"
    else:
        data = rows.astype(np.float32)
        fmt = "float32"
    out = []
    for i, row in enumerate(data):
        out.append(encode(Spectrum(seq=i, timestamp_us=1_000 * i, integration_time_us=10_000, counts=row)))
    return out, fmt


def make_frames(bundle: Any, dataset: Path | None) -> _Frames:
    """Raw frames for ``bundle``: rows of ``dataset`` when its channel count matches, else the golden vectors."""
    from benchmarks.artifacts import DARK_COUNTS, WHITE_COUNTS, absorbance_to_counts
    from edge.bundle import pipeline_reads_counts

    counts = pipeline_reads_counts(bundle.pipeline)
    n_ch = int(bundle.golden.raw.shape[1])
    if dataset is not None and dataset.is_file():
        with np.load(dataset, allow_pickle=False) as d:
            X = np.asarray(d["X"], dtype=np.float64)
            wl = np.asarray(d["wavelengths"], dtype=np.float64) if "wavelengths" in d else None
        if X.shape[1] == n_ch:
            X = X[:MAX_DISTINCT_FRAMES]
            rows = absorbance_to_counts(X) if counts else X
            enc, fmt = _encode_rows(rows, counts)
            dark = np.full(n_ch, DARK_COUNTS) if counts else None
            white = np.full(n_ch, WHITE_COUNTS) if counts else None
            return _Frames(enc, _readonly(dark), _readonly(white), _readonly(wl), f"{dataset.name} ({len(X)} rows)",
                           fmt)
        log.warning("%s has %d channels, the bundle %d: using the golden vectors", dataset, X.shape[1], n_ch)
    g = bundle.golden
    enc, fmt = _encode_rows(np.asarray(g.raw, dtype=np.float64), counts)
    ctx = g.context(0)
    return _Frames(enc, _readonly(ctx.get("dark")), _readonly(ctx.get("reference")), _readonly(ctx.get("wavelengths")),
                   f"golden vectors ({g.count}, cycled)", fmt)


# --------------------------------------------------------------------------------------------------- timing
def _time_stages(bundle: Any, frames: _Frames, n: int, warmup: int) -> dict[str, Any]:
    """The per-stage loop; returns arrays of seconds per stage plus the compute and total spans."""
    from edge.inference import bundle_targets
    from edge.messages import OodStats, TargetValue, encode, prediction_message
    from firmware_bridge.codec import FrameDecoder

    rt = bundle.runtime
    pipe = bundle.pipeline
    ood = bundle.ood
    intervals = bundle.intervals
    n_out = int(np.prod(rt.output_shape)) if rt.output_shape else 1
    names, units = bundle_targets(bundle, n_out)
    coverage = None if intervals is None else float(intervals.coverage)
    ctx = {"dark": frames.dark, "reference": frames.white, "wavelengths": frames.wavelengths}
    dec = FrameDecoder()
    encoded = frames.encoded
    m = len(encoded)
    clock = time.perf_counter_ns
    cpu_clock = time.thread_time_ns
    T = np.zeros((n, 9), dtype=np.int64)
    C = np.zeros(n, dtype=np.int64)
    features = []
    outputs = []
    gc.collect()
    for i in range(-warmup, n):
        data = encoded[i % m]
        t0 = clock()
        spectrum: Spectrum = dec.feed(data)[0]  # type: ignore[assignment]  # only spectra were encoded
        c1 = cpu_clock()
        t1 = clock()
        x = pipe.transform(spectrum.counts, **ctx)
        t2 = clock()
        q = rt.quantize(x)
        t3 = clock()
        raw = rt.invoke_quantized(q)
        t4 = clock()
        y = rt.dequantize(raw)
        t5 = clock()
        stats = None
        if ood is not None:
            t2v, qv = ood.score(x)
            stats = OodStats(t2=float(t2v), q=float(qv), t2_limit=ood.t2_limit, q_limit=ood.q_limit)
        t6 = clock()
        lo = hi = None
        if intervals is not None:
            lo, hi = intervals.interval(y)
        t7 = clock()
        c7 = cpu_clock()
        yv = np.asarray(y, dtype=np.float64).reshape(-1)
        lov = None if lo is None else np.asarray(lo, dtype=np.float64).reshape(-1)
        hiv = None if hi is None else np.asarray(hi, dtype=np.float64).reshape(-1)
        targets = [TargetValue(name=names[j], unit=units[j], value=float(yv[j]),
                               lower=None if lov is None else float(lov[j]),
                               upper=None if hiv is None else float(hiv[j])) for j in range(yv.size)]
        msg = prediction_message(device_id=DEVICE_ID, seq=spectrum.seq, device_timestamp_us=spectrum.timestamp_us,
                                 model_id=bundle.model_id, model_version=bundle.model_version, targets=targets,
                                 ood=stats, interval_coverage=coverage, latency_ms=(t7 - t0) / 1e6)
        encode(msg)
        t8 = clock()
        if i >= 0:
            T[i] = (t0, t1, t2, t3, t4, t5, t6, t7, t8)
            C[i] = c7 - c1
            if i < m:
                features.append(np.array(x, dtype=np.float64))
                outputs.append(np.array(y, dtype=np.float64).reshape(-1))
    d = np.diff(T, axis=1) * 1e-9
    res: dict[str, Any] = {name: d[:, k] for k, name in enumerate(STAGES)}
    res["compute"] = (T[:, 7] - T[:, 1]) * 1e-9
    res["compute_cpu"] = C * 1e-9
    res["frame_total"] = (T[:, 8] - T[:, 0]) * 1e-9
    res["features"] = np.stack(features)
    res["outputs"] = np.stack(outputs)
    return res


def _decode_spectra(frames: _Frames) -> list[Spectrum]:
    """The encoded frames decoded back (outside any timed loop)."""
    from firmware_bridge.codec import FrameDecoder

    dec = FrameDecoder()
    out = []
    for b in frames.encoded:
        decoded = dec.feed(b)
        if len(decoded) != 1 or not isinstance(decoded[0], Spectrum):
            raise RuntimeError(f"expected one SPECTRUM frame back from the decoder, got {decoded!r}")
        out.append(decoded[0])
    return out


def _time_calls(fn: Callable[[Any], Any], inputs: list[Any], n: int, warmup: int) -> np.ndarray:
    m = len(inputs)
    clock = time.perf_counter_ns
    for i in range(warmup):
        fn(inputs[i % m])
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        x = inputs[i % m]
        t0 = clock()
        fn(x)
        out[i] = clock() - t0
    return out * 1e-9


def _time_paced(fn: Callable[[Any], Any], inputs: list[Any], n: int, pause_s: float) -> np.ndarray:
    """Thread CPU time of ``fn`` per input, with the thread asleep ``pause_s`` between calls (seconds per call).

    A daemon at 100 frames/s sleeps 10 ms between frames; what a frame then costs can be several times its cost
    back to back (caches, TLB and clock frequency go cold), and that, not the back-to-back figure, is what sets
    the daemon's CPU use at low rates.
    """
    m = len(inputs)
    clock = time.thread_time_ns
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        x = inputs[i % m]
        time.sleep(pause_s)
        t0 = clock()
        fn(x)
        out[i] = clock() - t0
    return out * 1e-9


def _daemon_stage_paced(bundle: Any, frames: _Frames, n: int, pause_s: float) -> dict[str, Any]:
    """``InferenceEngine.process`` in thread CPU time, back to back and paced (see :func:`_time_paced`)."""
    fn, spectra = _daemon_stage_fn(bundle, frames)
    back = _time_paced(fn, spectra, n, 0.0)
    paced = _time_paced(fn, spectra, n, pause_s)
    b, p = _summary(back), _summary(paced)
    return {"pause_ms": pause_s * 1e3, "frames": n, "cpu_back_to_back": b, "cpu_paced": p,
            "paced_over_back_to_back_p50": p["p50_us"] / b["p50_us"] if b["p50_us"] else None}


def _daemon_stage_fn(bundle: Any, frames: _Frames) -> tuple[Callable[[Any], Any], list[Any]]:
    """``InferenceEngine.process`` bound to the benchmark's references, and the decoded spectra to call it on."""
    from edge.inference import InferenceEngine, Prediction
    from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
    from firmware_bridge.frames import AxisUnit

    spectra = _decode_spectra(frames)
    now = time.time()
    refs = ReferenceSet()
    if frames.dark is not None:
        refs = refs.with_spectrum(ReferenceSpectrum(ReferenceKind.DARK, frames.dark, now, 10_000))
    if frames.white is not None:
        refs = refs.with_spectrum(ReferenceSpectrum(ReferenceKind.WHITE, frames.white, now, 10_000))
    engine = InferenceEngine(bundle, clock=lambda: now)
    # The frames' axis is in the bundle's unit; a device states it in nm (STATUS), as the engine expects.
    axis_nm = None
    if frames.wavelengths is not None:
        axis_nm = AxisUnit.from_symbol(bundle.input_contract.wavelength_unit).to_nm(frames.wavelengths)
    first = engine.process(spectra[0], refs, wavelengths_nm=axis_nm, now_s=now)
    if not isinstance(first, Prediction):
        raise RuntimeError(f"the daemon's inference stage rejected the benchmark frame: {first}")
    return (lambda s: engine.process(s, refs, wavelengths_nm=axis_nm, now_s=now)), spectra


def compute_back_to_back_us(bundle_path: Path, dataset: Path | None, n: int = 500) -> float:
    """p50 thread CPU time of the daemon's compute per frame (``InferenceEngine.process``: preprocessing, quantise,
    invoke, OOD, interval), back to back, in microseconds: ``daemon_stage_paced.cpu_back_to_back.p50_us`` of this
    command, for ``spectro-bench throughput``'s ``overhead_ratio``."""
    from edge.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    fn, spectra = _daemon_stage_fn(bundle, make_frames(bundle, dataset))
    _time_paced(fn, spectra, min(n, 100), 0.0)  # warm-up
    return float(_summary(_time_paced(fn, spectra, n, 0.0))["p50_us"])


def _time_daemon_stage(bundle: Any, frames: _Frames, n: int, warmup: int) -> np.ndarray:
    """``InferenceEngine.process`` per frame (wall clock), with the references as a ``ReferenceSet``."""
    fn, spectra = _daemon_stage_fn(bundle, frames)
    return _time_calls(fn, spectra, n, warmup)


def _summary(samples: np.ndarray) -> dict[str, Any]:
    return percentiles_us(samples)


def _skipped(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason, "p50_us": None, "p99_us": None}


# --------------------------------------------------------------------------------------------------- models
def _resolve_bundle(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None, str]:
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


def _model_bytes_from(path: Path) -> bytes:
    if path.suffix == ".spectrolite":
        from edge.bundle import load_bundle

        return load_bundle(path, self_test=False).runtime.model_content
    return path.read_bytes()


def _pls_reference(pls_npz: Path, pls_pre: Path | None, bundle: Any, frames: _Frames, n: int,
                   warmup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """PLS as ``x_pre @ coef + intercept``: the dot product alone, and with the PLS model's own preprocessing."""
    from edge.bundle import pipeline_reads_counts
    from edge.preprocess import CountsConversion, Pipeline

    with np.load(pls_npz) as d:
        coef = np.ascontiguousarray(d["coef"], dtype=np.float64)
        intercept = np.asarray(d["intercept"], dtype=np.float64)
    if pls_pre is None or not pls_pre.is_file():
        return _skipped(f"no {pls_npz.stem}_preprocessing spec"), _skipped("no PLS preprocessing spec")
    pipe = Pipeline.from_json(pls_pre.read_text(encoding="utf-8"))
    if pipeline_reads_counts(bundle.pipeline) and not pipeline_reads_counts(pipe):
        pipe = pipe.insert(0, CountsConversion(quantity="absorbance"))
    ctx = {"dark": frames.dark, "reference": frames.white, "wavelengths": frames.wavelengths}
    raw = [s.counts for s in _decode_spectra(frames)]
    feats = [np.asarray(pipe.transform(r, **ctx), dtype=np.float64).reshape(-1) for r in raw]
    if feats[0].size != coef.shape[0]:
        reason = f"expected {coef.shape[0]} PLS features, got {feats[0].size}"
        return _skipped(reason), _skipped(reason)

    def dot(x: np.ndarray) -> np.ndarray:
        return x @ coef + intercept

    def total(r: np.ndarray) -> np.ndarray:
        return pipe.transform(r, **ctx).reshape(-1) @ coef + intercept

    a = {"available": True, **_summary(_time_calls(dot, feats, n, warmup))}
    b = {"available": True, **_summary(_time_calls(total, raw, n, warmup))}
    return a, b


def _keras_references(path: Path, features: np.ndarray, n: int, warmup: int, n_predict: int,
                      int8_outputs: np.ndarray) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Per-frame ``model(x, training=False)`` and ``model.predict(x)`` of a saved Keras model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
    except ImportError as exc:
        reason = f"TensorFlow/Keras not installed ({exc})"
        return _skipped(reason), _skipped(reason), {}
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any load failure only skips this reference
        reason = f"cannot load {path.name}: {exc}"
        return _skipped(reason), _skipped(reason), {}
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    if int(np.prod(shape)) != int(np.prod(features.shape[1:])):
        reason = f"Keras input shape {shape} does not match the bundle's features {features.shape[1:]}"
        return _skipped(reason), _skipped(reason), {}
    xs = [np.asarray(f, dtype=np.float32).reshape((1, *shape)) for f in features]
    call = _time_calls(lambda x: model(x, training=False), xs, n, min(warmup, 50))
    pred = _time_calls(lambda x: model.predict(x, verbose=0), xs, max(1, n_predict), 5)
    keras_out = np.stack([np.asarray(model(x, training=False)).reshape(-1) for x in xs[: len(int8_outputs)]])
    agree = {"int8_vs_keras_max_abs_diff": float(np.max(np.abs(keras_out - int8_outputs[: len(keras_out)]))),
             "int8_vs_keras_mean_abs_diff": float(np.mean(np.abs(keras_out - int8_outputs[: len(keras_out)])))}
    return ({"available": True, **_summary(call)}, {"available": True, **_summary(pred)}, agree)


# --------------------------------------------------------------------------------------------------- run
def _threads(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise SystemExit(f"spectro-bench latency: expected --threads like 1,2,4, got {text!r}") from None
    if not values or values[0] < 1:
        raise SystemExit(f"spectro-bench latency: expected thread counts >= 1, got {text!r}")
    return values


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark and return the result dict (the JSON)."""
    from benchmarks import artifacts
    from edge.bundle import load_bundle, pipeline_reads_counts
    from edge.runtime import ModelRuntime

    threads = _threads(args.threads)
    n, warmup = max(1, int(args.frames)), max(0, int(args.warmup))
    load_before = system_load()
    bundle_path, ref_dir, dataset, how = _resolve_bundle(args)
    bundle = load_bundle(bundle_path)
    frames = make_frames(bundle, dataset)
    log.info("timing %d frames (+%d warm-up) of %s through %s", n, warmup, frames.source, bundle_path.name)
    st = _time_stages(bundle, frames, n, warmup)
    stages: dict[str, Any] = {}
    for name in STAGES:
        if name == "ood" and bundle.ood is None:
            stages[name] = {**_skipped("bundle has no OOD model"), "skipped": True}
        elif name == "interval" and bundle.intervals is None:
            stages[name] = {**_skipped("bundle has no interval model"), "skipped": True}
        else:
            stages[name] = _summary(st[name])
    compute = _summary(st["compute"])
    compute_cpu = _summary(st["compute_cpu"])
    total = _summary(st["frame_total"])
    daemon = _summary(_time_daemon_stage(bundle, frames, n, warmup))
    paced = (_daemon_stage_paced(bundle, frames, min(n, args.pace_frames), args.pace_ms / 1e3)
             if args.pace_ms > 0 else None)
    features = [f for f in st["features"]]

    refs = artifacts.find_references(ref_dir) if ref_dir is not None else artifacts.References()
    float_path = args.float_tflite or refs.float_tflite
    pruned_path = args.pruned or refs.pruned_int8_tflite
    keras_path = args.keras or refs.keras_path
    pls_path = args.pls or refs.pls_npz
    references: dict[str, Any] = {}
    sizes: dict[str, Any] = {"bundle": bundle_path.stat().st_size, "int8_tflite": len(bundle.runtime.model_content),
                             "int8_tflite_deflated": len(zlib.compress(bundle.runtime.model_content, 9))}
    references["int8_tflite"] = {"available": True,
                                 **_summary(_time_calls(bundle.runtime.predict, features, n, warmup))}
    for key, path in (("float_tflite", float_path), ("pruned_int8_tflite", pruned_path)):
        if path is None or not Path(path).is_file():
            references[key] = _skipped(str(refs.missing.get(key, f"no {key} given or found")))
            continue
        content = _model_bytes_from(Path(path))
        try:
            rt = ModelRuntime(content)
        except Exception as exc:  # noqa: BLE001 - a reference that cannot load is reported, not fatal
            references[key] = _skipped(f"cannot load {path}: {exc}")
            continue
        if tuple(rt.input_shape) != tuple(bundle.runtime.input_shape):
            references[key] = _skipped(f"input shape {rt.input_shape} differs from the bundle's "
                                       f"{bundle.runtime.input_shape}")
            continue
        references[key] = {"available": True, "path": str(path), **_summary(_time_calls(rt.predict, features, n,
                                                                                          warmup))}
        sizes[key] = len(content)
        sizes[f"{key}_deflated"] = len(zlib.compress(content, 9))
    if pls_path is not None and Path(pls_path).is_file():
        pls_pre = (refs.pls_preprocessing if args.pls is None else Path(args.pls).with_name(artifacts.PLS_PRE_NAME))
        references["pls_dot"], references["pls_with_preprocessing"] = _pls_reference(
            Path(pls_path), pls_pre, bundle, frames, n, warmup)
    else:
        references["pls_dot"] = _skipped("no pls.npz given or found")
        references["pls_with_preprocessing"] = _skipped("no pls.npz given or found")

    thread_rows = []
    for t in threads:
        rt = ModelRuntime(bundle.runtime.model_content, num_threads=t, output_affine=bundle.runtime.output_affine)
        qs = [np.array(rt.quantize(f)) for f in features]
        inv = _summary(_time_calls(rt.invoke_quantized, qs, n, warmup))
        pred = _summary(_time_calls(rt.predict, features, n, warmup))
        thread_rows.append({"num_threads": t, "invoke": inv, "predict": pred})
    rss_edge = peak_rss_mb()

    agreement: dict[str, Any] = {}
    if args.no_keras:
        references["keras_call"] = _skipped("--no-keras")
        references["keras_predict"] = _skipped("--no-keras")
    elif keras_path is None or not Path(keras_path).is_file():
        references["keras_call"] = _skipped(refs.missing.get("keras_path", "no .keras model given or found"))
        references["keras_predict"] = _skipped(references["keras_call"]["reason"])
    else:
        log.info("timing the Keras reference %s", keras_path)
        references["keras_call"], references["keras_predict"], agreement = _keras_references(
            Path(keras_path), st["features"], min(n, max(1, args.keras_frames)), warmup, args.keras_predict_frames,
            st["outputs"])
        sizes["keras_file"] = Path(keras_path).stat().st_size

    keras_p50 = references["keras_call"].get("p50_us")
    speedup = keras_p50 / compute["p50_us"] if keras_p50 else None
    # Why there is no speed-up figure, said on the console and in the JSON rather than a bare null.
    speedup_reason = None if speedup is not None else (
        f"no Keras reference: {references['keras_call'].get('reason') or 'its timing failed'}")
    if speedup_reason is not None:
        log.warning("speedup_vs_keras not measured: %s (pass --keras MODEL.keras, or build the references with "
                    "python -m benchmarks.artifacts)", speedup_reason)
    result: dict[str, Any] = {
        "benchmark": "latency",
        "bundle": {
            "path": str(bundle_path), "how": how, "model_id": bundle.model_id, "model_version": bundle.model_version,
            "frame_signal": "counts" if pipeline_reads_counts(bundle.pipeline) else "absorbance",
            "n_channels": int(bundle.golden.raw.shape[1]), "model_input_shape": list(bundle.runtime.input_shape),
            "quantized": bool(bundle.runtime.is_quantized), "pipeline": [s.op for s in bundle.pipeline.steps],
            "ood": bundle.ood is not None, "intervals": bundle.intervals is not None,
        },
        "runtime": bundle.runtime.runtime_description,
        "frames": n,
        "warmup": warmup,
        "data": frames.source,
        "pixel_format": frames.pixel_format,
        "stages": stages,
        "stage_sum_p50_us": float(sum(v["p50_us"] for v in stages.values() if v.get("p50_us") is not None)),
        "stage_sum_mean_us": float(sum(v["mean_us"] for v in stages.values() if v.get("mean_us") is not None)),
        "compute": compute,
        "compute_p50_us": compute["p50_us"],
        "compute_p99_us": compute["p99_us"],
        "compute_cpu": compute_cpu,
        "compute_cpu_p99_us": compute_cpu["p99_us"],
        "frame_total": total,
        "daemon_stage": daemon,
        "daemon_stage_paced": paced,
        "references": references,
        "agreement": agreement,
        "keras_per_frame_p50_us": keras_p50,
        "keras_predict_p50_us": references["keras_predict"].get("p50_us"),
        "speedup_vs_keras": speedup,
        "speedup_vs_keras_reason": speedup_reason,
        "speedup_definition": "p50 of model(x, training=False) per frame / p50 of compute (preprocess..interval)",
        "threads": thread_rows,
        "sizes_bytes": sizes,
        "peak_rss_mb_edge": rss_edge,
        "peak_rss_mb": peak_rss_mb(),
        "load": {"before": load_before, "after": system_load()},
        "goals": {
            "compute_p99_us_max": GOAL_COMPUTE_P99_US,
            "speedup_vs_keras_min": GOAL_SPEEDUP_VS_KERAS,
            "compute_met": compute["p99_us"] <= GOAL_COMPUTE_P99_US,
            "speedup_met": None if speedup is None else speedup >= GOAL_SPEEDUP_VS_KERAS,
        },
        "host": host_facts(),
    }
    return jsonable(result)


def render(result: dict[str, Any]) -> str:
    """The markdown tables printed to stdout and written beside the JSON."""
    rows = []
    for name, s in result["stages"].items():
        rows.append([name, s.get("p50_us"), s.get("p95_us"), s.get("p99_us"), s.get("max_us"), s.get("mean_us")])
    rows.append(["sum of stage p50 / means", result["stage_sum_p50_us"], None, None, None,
                 result["stage_sum_mean_us"]])
    for key, label in (("compute", "compute (preprocess..interval, one span)"),
                       ("compute_cpu", "compute, thread CPU time (no preemption)"),
                       ("frame_total", "frame total (decode..message, one span)"),
                       ("daemon_stage", "InferenceEngine.process (daemon stage)")):
        s = result[key]
        rows.append([label, s["p50_us"], s["p95_us"], s["p99_us"], s["max_us"], s["mean_us"]])
    parts = ["Per-frame stages (microseconds)",
             markdown_table(["stage", "p50", "p95", "p99", "max", "mean"], rows), ""]
    ref_rows = []
    for name, s in result["references"].items():
        if s.get("available"):
            ref_rows.append([name, s["p50_us"], s["p99_us"], s["mean_us"], ""])
        else:
            ref_rows.append([name, None, None, None, s.get("reason", "")])
    parts += ["References on the same frames (microseconds per frame)",
              markdown_table(["reference", "p50", "p99", "mean", "note"], ref_rows), ""]
    parts += ["Interpreter threads (microseconds)",
              markdown_table(["threads", "invoke p50", "invoke p99", "predict p50", "predict p99"],
                             [[r["num_threads"], r["invoke"]["p50_us"], r["invoke"]["p99_us"], r["predict"]["p50_us"],
                               r["predict"]["p99_us"]] for r in result["threads"]]), ""]
    g = result["goals"]
    sp = result["speedup_vs_keras"]
    summary = [
        ["bundle", f"{result['bundle']['model_id']} {result['bundle']['model_version']} ({result['bundle']['how']})"],
        ["frames", f"{result['frames']} after {result['warmup']} warm-up, {result['data']}"],
        ["runtime", result["runtime"]],
        ["compute p50 / p99 (us)", f"{result['compute_p50_us']:.1f} / {result['compute_p99_us']:.1f}"],
        ["compute thread CPU time p50 / p99 (us)",
         f"{result['compute_cpu']['p50_us']:.1f} / {result['compute_cpu']['p99_us']:.1f}"],
        [f"goal compute p99 <= {g['compute_p99_us_max']:g} us", "met" if g["compute_met"] else "NOT met"],
        ["Keras per-frame call p50 (us)", result["keras_per_frame_p50_us"]],
        ["speedup vs Keras (p50/p50)",
         sp if sp is not None else f"not measured: {result.get('speedup_vs_keras_reason')}"],
        [f"goal speedup >= {g['speedup_vs_keras_min']:g}",
         "n/a" if g["speedup_met"] is None else ("met" if g["speedup_met"] else "NOT met")],
        *([[f"daemon stage CPU time p50, back to back / {pc['pause_ms']:g} ms apart (us)",
             f"{pc['cpu_back_to_back']['p50_us']:.1f} / {pc['cpu_paced']['p50_us']:.1f} "
             f"({pc['paced_over_back_to_back_p50']:.1f}x)"]] if (pc := result.get("daemon_stage_paced")) else []),
        ["peak RSS edge only / whole run (MB)", f"{result['peak_rss_mb_edge']:.1f} / {result['peak_rss_mb']:.1f}"],
        ["sizes (bytes)", ", ".join(f"{k} {v}" for k, v in result["sizes_bytes"].items())],
        ["load average before / after", (f"{result['load']['before']['loadavg_1m']:.2f} / "
                                         f"{result['load']['after']['loadavg_1m']:.2f} on "
                                         f"{result['load']['after']['cpu_count']} CPUs")],
    ]
    parts += [markdown_table(["summary", "value"], summary)]
    return "\n".join(parts)


def run(args: argparse.Namespace) -> int:
    """``spectro-bench latency``: measure, print the tables, write JSON, markdown and the PNG plot."""
    try:
        result = measure(args)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"spectro-bench latency: {exc}", file=sys.stderr)
        return 1
    from benchmarks.plots import plot_latency

    publish(args, result, render(result), plot_latency)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from benchmarks.cli import main

    sys.exit(main(["latency", *sys.argv[1:]]))
