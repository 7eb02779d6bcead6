"""Timing of ``spectro-bench latency``: each stage the daemon runs, per frame, and the daemon's inference call."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency.frames import Frames
from benchmarks.results import percentiles_us
from firmware_bridge.frames import Spectrum

__all__ = ["BATCH_FRAMES", "DEVICE_ID", "STAGES", "daemon_stage_batch", "daemon_stage_paced", "decode_spectra",
           "skipped", "summary_of", "time_calls", "time_daemon_stage", "time_stages"]

#: Stage names, in pipeline order (the keys of ``stages`` in the JSON).
STAGES = ("decode", "preprocess", "quantize", "invoke", "dequantize", "ood", "autoencoder", "interval", "message")
#: Frames of one ``InferenceEngine.process_many`` call in ``daemon_stage_batch`` (the inference thread's largest batch).
BATCH_FRAMES = 64
#: Device id written into the benchmark's prediction messages.
DEVICE_ID = "bench-01"


def time_stages(bundle: Any, frames: Frames, n: int, warmup: int) -> dict[str, Any]:
    """The per-stage loop; returns arrays of seconds per stage plus the compute and total spans."""
    from edge.inference import bundle_targets
    from edge.publish.messages import OodStats, TargetValue, prediction_message
    from edge.publish.schema import encode
    from firmware_bridge.codec import FrameDecoder

    rt = bundle.runtime
    pipe = bundle.pipeline
    ood = bundle.ood
    ae = getattr(bundle, "autoencoder", None)
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
    T = np.zeros((n, 10), dtype=np.int64)
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
        if ae is not None:  # the bundle's autoencoder: quantise, invoke, dequantise, mean squared error
            ae_score = float(ae.score(x))
            if stats is not None:
                stats = OodStats(t2=stats.t2, q=stats.q, t2_limit=stats.t2_limit, q_limit=stats.q_limit,
                                 ae_score=ae_score, ae_limit=ae.limit)
            t6a = clock()
        else:
            t6a = t6  # no stage: the compute span stays the sum of the other stages
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
            T[i] = (t0, t1, t2, t3, t4, t5, t6, t6a, t7, t8)
            C[i] = c7 - c1
            if i < m:
                features.append(np.array(x, dtype=np.float64))
                outputs.append(np.array(y, dtype=np.float64).reshape(-1))
    d = np.diff(T, axis=1) * 1e-9
    res: dict[str, Any] = {name: d[:, k] for k, name in enumerate(STAGES)}
    res["compute"] = (T[:, 8] - T[:, 1]) * 1e-9
    res["compute_cpu"] = C * 1e-9
    res["frame_total"] = (T[:, 9] - T[:, 0]) * 1e-9
    res["features"] = np.stack(features)
    res["outputs"] = np.stack(outputs)
    return res


def decode_spectra(frames: Frames) -> list[Spectrum]:
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


def time_calls(fn: Callable[[Any], Any], inputs: list[Any], n: int, warmup: int) -> np.ndarray:
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


def daemon_stage_paced(bundle: Any, frames: Frames, n: int, pause_s: float) -> dict[str, Any]:
    """``InferenceEngine.process`` in thread CPU time, back to back and paced (see :func:`_time_paced`)."""
    fn, spectra = _daemon_stage_fn(bundle, frames)
    back = _time_paced(fn, spectra, n, 0.0)
    paced = _time_paced(fn, spectra, n, pause_s)
    b, p = summary_of(back), summary_of(paced)
    return {"pause_ms": pause_s * 1e3, "frames": n, "cpu_back_to_back": b, "cpu_paced": p,
            "paced_over_back_to_back_p50": p["p50_us"] / b["p50_us"] if b["p50_us"] else None}


def daemon_stage_batch(bundle: Any, frames: Frames, n: int, warmup: int) -> dict[str, Any]:
    """``InferenceEngine.process_many`` on batches of :data:`BATCH_FRAMES` frames (what the inference thread calls
    under load), wall clock per batch; ``batch_us_per_frame`` is the p50 batch divided by its frames."""
    fn, spectra = _daemon_stage_fn(bundle, frames, many=True)
    batch = [spectra[i % len(spectra)] for i in range(BATCH_FRAMES)]
    batches = max(1, n // BATCH_FRAMES)
    samples = time_calls(fn, [batch], batches, max(1, warmup // BATCH_FRAMES))
    summary = summary_of(samples)
    rt = bundle.runtime
    return {"frames_per_batch": BATCH_FRAMES, "batches": batches, "per_batch": summary,
            "batch_us_per_frame": summary["p50_us"] / BATCH_FRAMES,
            "interpreter": ("one invoke per chunk of rows" if rt.batches_invoked_whole
                            else f"row by row ({rt.batch_refusal})" if rt.batch_refusal else "not checked")}


def _daemon_stage_fn(bundle: Any, frames: Frames, *, many: bool = False) -> tuple[Callable[[Any], Any], list[Any]]:
    """``InferenceEngine.process`` bound to the benchmark's references, and the decoded spectra to call it on."""
    from edge.inference import InferenceEngine, Prediction
    from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
    from firmware_bridge.frames import AxisUnit

    spectra = decode_spectra(frames)
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
    if many:
        return (lambda batch: engine.process_many(batch, refs, wavelengths_nm=axis_nm, now_s=now)), spectra
    return (lambda s: engine.process(s, refs, wavelengths_nm=axis_nm, now_s=now)), spectra


def compute_back_to_back_us(bundle_path: Path, dataset: Path | None, n: int = 500) -> float:
    """p50 thread CPU time of the daemon's compute per frame (``InferenceEngine.process``: preprocessing, quantise,
    invoke, OOD, interval), back to back, in microseconds: ``daemon_stage_paced.cpu_back_to_back.p50_us`` of this
    command, for ``spectro-bench throughput``'s ``overhead_ratio``."""
    from benchmarks.latency.frames import make_frames
    from edge.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    fn, spectra = _daemon_stage_fn(bundle, make_frames(bundle, dataset))
    _time_paced(fn, spectra, min(n, 100), 0.0)  # warm-up
    return float(summary_of(_time_paced(fn, spectra, n, 0.0))["p50_us"])


def time_daemon_stage(bundle: Any, frames: Frames, n: int, warmup: int) -> np.ndarray:
    """``InferenceEngine.process`` per frame (wall clock), with the references as a ``ReferenceSet``."""
    fn, spectra = _daemon_stage_fn(bundle, frames)
    return time_calls(fn, spectra, n, warmup)


def summary_of(samples: np.ndarray) -> dict[str, Any]:
    return percentiles_us(samples)


def skipped(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason, "p50_us": None, "p99_us": None}
