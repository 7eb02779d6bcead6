"""``spectro-bench latency``: per-stage edge latency of a bundle, with float, pruned, Keras and PLS references.

Usage::

    spectro-bench latency [--bundle B | --synthetic] [--frames N] [--warmup W] [--threads 1,2]
                          [--float-tflite F] [--pruned P] [--keras K] [--pls N] [--no-keras] [--json PATH]

Each of ``--frames`` raw frames (after ``--warmup`` untimed ones) goes through the stages the daemon runs, each
timed on its own with ``time.perf_counter_ns``: ``decode`` (serial bytes -> :class:`~firmware_bridge.frames.Spectrum`
by :class:`firmware_bridge.codec.FrameDecoder`), ``preprocess`` (the bundle's pipeline, with read-only dark and white
references as the daemon holds them), ``quantize``, ``invoke``, ``dequantize`` (:class:`edge.runtime.ModelRuntime`),
``ood`` (Hotelling T2 and Q), ``autoencoder`` (the bundle's autoencoder score, when it has one: what it adds to
``compute``; goal <= 50 us at p50, #16), ``interval`` (conformal bounds) and ``message`` (prediction payload built,
validated and encoded as the publisher does). ``compute`` is the span from the start of ``preprocess`` to the end of
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
import logging
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency.frames import make_frames
from benchmarks.latency.references import keras_references, model_bytes_from, pls_reference, resolve_bundle
from benchmarks.latency.timing import (
    STAGES,
    compute_back_to_back_us,
    daemon_stage_batch,
    daemon_stage_paced,
    skipped,
    summary_of,
    time_calls,
    time_daemon_stage,
    time_stages,
)
from benchmarks.results import (
    host_facts,
    jsonable,
    markdown_table,
    peak_rss_mb,
    publish,
    system_load,
)

__all__ = ["STAGES", "add_arguments", "compute_back_to_back_us", "measure", "render", "run"]

log = logging.getLogger(__name__)

#: Goals of issue 6 on the development machine.
GOAL_COMPUTE_P99_US = 300.0
#: Most the bundle's autoencoder may add to the compute p50, microseconds (#16).
GOAL_AUTOENCODER_P50_US = 50.0
GOAL_SPEEDUP_VS_KERAS = 50.0
#: ``model.predict`` per frame costs a fraction of a second: it is timed on this many frames by default.
KERAS_PREDICT_FRAMES = 100
#: The per-frame Keras call costs milliseconds: it is timed on at most this many frames by default.
KERAS_CALL_FRAMES = 1000


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
    bundle_path, ref_dir, dataset, how = resolve_bundle(args)
    bundle = load_bundle(bundle_path)
    frames = make_frames(bundle, dataset)
    log.info("timing %d frames (+%d warm-up) of %s through %s", n, warmup, frames.source, bundle_path.name)
    st = time_stages(bundle, frames, n, warmup)
    stages: dict[str, Any] = {}
    for name in STAGES:
        if name == "ood" and bundle.ood is None:
            stages[name] = {**skipped("bundle has no OOD model"), "skipped": True}
        elif name == "autoencoder" and bundle.autoencoder is None:
            stages[name] = {**skipped("bundle has no autoencoder"), "skipped": True}
        elif name == "interval" and bundle.intervals is None:
            stages[name] = {**skipped("bundle has no interval model"), "skipped": True}
        else:
            stages[name] = summary_of(st[name])
    compute = summary_of(st["compute"])
    compute_cpu = summary_of(st["compute_cpu"])
    total = summary_of(st["frame_total"])
    daemon = summary_of(time_daemon_stage(bundle, frames, n, warmup))
    daemon_batch = daemon_stage_batch(bundle, frames, n, warmup)
    paced = (daemon_stage_paced(bundle, frames, min(n, args.pace_frames), args.pace_ms / 1e3)
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
                                 **summary_of(time_calls(bundle.runtime.predict, features, n, warmup))}
    for key, path in (("float_tflite", float_path), ("pruned_int8_tflite", pruned_path)):
        if path is None or not Path(path).is_file():
            references[key] = skipped(str(refs.missing.get(key, f"no {key} given or found")))
            continue
        content = model_bytes_from(Path(path))
        try:
            rt = ModelRuntime(content)
        except Exception as exc:  # a reference that cannot load is reported, not fatal
            references[key] = skipped(f"cannot load {path}: {exc}")
            continue
        if tuple(rt.input_shape) != tuple(bundle.runtime.input_shape):
            references[key] = skipped(f"input shape {rt.input_shape} differs from the bundle's "
                                       f"{bundle.runtime.input_shape}")
            continue
        references[key] = {"available": True, "path": str(path), **summary_of(time_calls(rt.predict, features, n,
                                                                                          warmup))}
        sizes[key] = len(content)
        sizes[f"{key}_deflated"] = len(zlib.compress(content, 9))
    if pls_path is not None and Path(pls_path).is_file():
        pls_pre = (refs.pls_preprocessing if args.pls is None else Path(args.pls).with_name(artifacts.PLS_PRE_NAME))
        references["pls_dot"], references["pls_with_preprocessing"] = pls_reference(
            Path(pls_path), pls_pre, bundle, frames, n, warmup)
    else:
        references["pls_dot"] = skipped("no pls.npz given or found")
        references["pls_with_preprocessing"] = skipped("no pls.npz given or found")

    thread_rows = []
    for t in threads:
        rt = ModelRuntime(bundle.runtime.model_content, num_threads=t, output_affine=bundle.runtime.output_affine)
        qs = [np.array(rt.quantize(f)) for f in features]
        inv = summary_of(time_calls(rt.invoke_quantized, qs, n, warmup))
        pred = summary_of(time_calls(rt.predict, features, n, warmup))
        thread_rows.append({"num_threads": t, "invoke": inv, "predict": pred})
    rss_edge = peak_rss_mb()

    agreement: dict[str, Any] = {}
    if args.no_keras:
        references["keras_call"] = skipped("--no-keras")
        references["keras_predict"] = skipped("--no-keras")
    elif keras_path is None or not Path(keras_path).is_file():
        references["keras_call"] = skipped(refs.missing.get("keras_path", "no .keras model given or found"))
        references["keras_predict"] = skipped(references["keras_call"]["reason"])
    else:
        log.info("timing the Keras reference %s", keras_path)
        references["keras_call"], references["keras_predict"], agreement = keras_references(
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
            "quantized": bool(bundle.runtime.is_quantized), "arithmetic": bundle.runtime.arithmetic,
            "pipeline": [s.op for s in bundle.pipeline.steps],
            "ood": bundle.ood is not None, "intervals": bundle.intervals is not None,
            "autoencoder": bundle.autoencoder is not None,
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
        "daemon_stage_batch": daemon_batch,
        "batch_us_per_frame": daemon_batch["batch_us_per_frame"],
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
            # #16: the autoencoder stage's p50 is what it adds to the compute p50 (compare runs with and without)
            "autoencoder_stage_p50_us_max": GOAL_AUTOENCODER_P50_US,
            "autoencoder_met": (None if bundle.autoencoder is None
                                else stages["autoencoder"]["p50_us"] <= GOAL_AUTOENCODER_P50_US),
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
        [f"goal autoencoder stage p50 <= {g['autoencoder_stage_p50_us_max']:g} us",
         "n/a (no autoencoder)" if g["autoencoder_met"] is None else ("met" if g["autoencoder_met"] else "NOT met")],
        *([[f"daemon stage CPU time p50, back to back / {pc['pause_ms']:g} ms apart (us)",
             f"{pc['cpu_back_to_back']['p50_us']:.1f} / {pc['cpu_paced']['p50_us']:.1f} "
             f"({pc['paced_over_back_to_back_p50']:.1f}x)"]] if (pc := result.get("daemon_stage_paced")) else []),
        *([[f"daemon stage per frame in batches of {db['frames_per_batch']} (us; interpreter {db['interpreter']})",
             f"{db['batch_us_per_frame']:.1f}"]] if (db := result.get("daemon_stage_batch")) else []),
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
