"""Latency of the typical edge preprocessing chain on 650 channels: one spectrum (p50/p99) and a batch of 1,000.

``spectro-bench preprocess [--runs N] [--warmup W] [--batch-repeats R] [--json PATH]``. The chain is the one the
device runs in front of a tablet model: counts -> absorbance (dark and white reference), SNV, Savitzky-Golay first
derivative (window 15, order 2), crop to 1100-1800 nm, autoscale fitted on training spectra. Inputs are counts
made from real IDRC 2002 tablet spectra (``../shared/datasets``; synthetic spectra when the file is absent).
Dark and reference are read-only arrays, as the bridge's frames deliver them, so the validated reference pair is
reused across calls; the figure with writeable references (re-validated every call) is timed interleaved with it,
call by call, so both see the same load. Each single call is timed on its own after a warm-up; the batch figure
is the median of ``--batch-repeats`` runs.
Goal (issue 3): p50 of one spectrum at most 50 microseconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results import host_facts, markdown_table, percentiles_us, write_json
from edge.preprocess import (
    SNV,
    Autoscale,
    CountsConversion,
    Crop,
    InputContract,
    Pipeline,
    SavitzkyGolay,
)

#: Goal for one spectrum, microseconds (p50).
GOAL_SINGLE_US = 50.0
N_CHANNELS = 650
BATCH = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench preprocess``."""
    parser.add_argument("--runs", type=int, default=20000, help="timed single-spectrum calls (default 20000)")
    parser.add_argument("--warmup", type=int, default=2000, help="untimed calls first (default 2000)")
    parser.add_argument("--batch-repeats", type=int, default=21, help="timed batch-of-1000 calls (default 21)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON (and .md beside)")


def _datasets_dir() -> Path:
    env = os.environ.get("SPECTROLITE_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def _absorbance() -> tuple[np.ndarray, np.ndarray, str]:
    """(spectra, wavelengths_nm, source) with at least 1,000 spectra of 650 channels."""
    path = _datasets_dir() / "idrc2002_tablets.npz"
    if path.is_file():
        with np.load(path) as d:
            return d["X"].astype(np.float64), d["wavelengths"].astype(np.float64), "idrc2002_tablets"
    rng = np.random.default_rng(0)
    wl = np.linspace(600.0, 1898.0, N_CHANNELS)
    bands = sum(np.exp(-0.5 * ((wl - c) / w) ** 2) for c, w in [(1200.0, 40.0), (1450.0, 60.0), (1700.0, 30.0)])
    X = 2.5 + rng.normal(0.0, 0.1, (1310, 1)) + rng.uniform(0.2, 1.0, (1310, 1)) * bands
    return X + rng.normal(0.0, 1e-3, X.shape), wl, "synthetic"


def build_chain() -> tuple[Pipeline, np.ndarray, np.ndarray, np.ndarray, str]:
    """The benchmarked pipeline with its counts inputs: (pipeline, counts (n, 650), dark, reference, source)."""
    A, wl, source = _absorbance()
    rng = np.random.default_rng(1)
    dark = np.round(1000.0 + rng.normal(0.0, 4.0, N_CHANNELS))
    white = np.round(dark + 50000.0 + rng.normal(0.0, 200.0, N_CHANNELS))
    counts = np.round(dark + (white - dark) * 10.0 ** (-A / 2.0))  # /2 keeps counts well above dark
    keep = np.flatnonzero((wl >= 1100.0) & (wl <= 1800.0))
    head = (
        CountsConversion("absorbance", 1e-6, 65535.0),
        SNV(),
        SavitzkyGolay(15, 2, 1, 2.0),
        Crop(int(keep[0]), int(keep[-1]) + 1),
    )
    Z = Pipeline(head, InputContract(N_CHANNELS)).transform(counts[:460], dark=dark, reference=white)
    chain = Pipeline((*head, Autoscale(Z.mean(axis=0), Z.std(axis=0))), InputContract.from_wavelengths(wl))
    return chain, counts, dark, white, source


def _time_single(fn: Any, x: np.ndarray, runs: int, warmup: int, **ctx: Any) -> np.ndarray:
    for _ in range(warmup):
        fn(x, **ctx)
    samples = np.empty(runs)
    clock = time.perf_counter_ns
    for i in range(runs):
        t0 = clock()
        fn(x, **ctx)
        samples[i] = clock() - t0
    return samples * 1e-9


def _time_pair(
    fn: Any,
    x: np.ndarray,
    runs: int,
    warmup: int,
    refs_a: tuple[np.ndarray, np.ndarray],
    refs_b: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Time ``fn`` with two (dark, reference) pairs, interleaved call by call so both see the same machine load."""
    for _ in range(warmup):
        fn(x, dark=refs_a[0], reference=refs_a[1])
        fn(x, dark=refs_b[0], reference=refs_b[1])
    a, b = np.empty(runs), np.empty(runs)
    clock = time.perf_counter_ns
    for i in range(runs):
        t0 = clock()
        fn(x, dark=refs_a[0], reference=refs_a[1])
        t1 = clock()
        fn(x, dark=refs_b[0], reference=refs_b[1])
        t2 = clock()
        a[i], b[i] = t1 - t0, t2 - t1
    return a * 1e-9, b * 1e-9


def run(args: argparse.Namespace) -> int:
    """Time the chain; print a table; write JSON with ``single_us_p50``, ``single_us_p99``, ``batch1000_ms``."""
    chain, counts, dark, white, source = build_chain()
    dark_ro, white_ro = dark.copy(), white.copy()
    dark_ro.setflags(write=False)
    white_ro.setflags(write=False)
    x = counts[0].copy()
    ro_s, rw_s = _time_pair(chain.transform, x, args.runs, args.warmup, (dark_ro, white_ro), (dark, white))
    single = percentiles_us(ro_s)
    writable = percentiles_us(rw_s)
    # per step, on the intermediate each step sees
    steps: list[tuple[str, float]] = []
    inter = x
    for step in chain.steps:
        t = percentiles_us(
            _time_single(
                step.transform, inter, max(args.runs // 4, 1), args.warmup // 4, dark=dark_ro, reference=white_ro
            )
        )
        steps.append((step.op, t["p50_us"]))
        inter = step.transform(inter, dark=dark_ro, reference=white_ro)
    batch = np.ascontiguousarray(counts[:BATCH])
    chain.transform(batch, dark=dark_ro, reference=white_ro)
    batch_s = []
    for _ in range(args.batch_repeats):
        t0 = time.perf_counter()
        chain.transform(batch, dark=dark_ro, reference=white_ro)
        batch_s.append(time.perf_counter() - t0)
    batch_ms = float(np.median(batch_s) * 1e3)
    result: dict[str, Any] = {
        "benchmark": "preprocess",
        "chain": [s.op for s in chain.steps],
        "n_channels": N_CHANNELS,
        "n_features": int(chain.output_shape[0]) if chain.output_shape else None,
        "data": source,
        "single_us_p50": single["p50_us"],
        "single_us_p99": single["p99_us"],
        "single_us_mean": single["mean_us"],
        "single_runs": single["n"],
        "single_writable_refs_us_p50": writable["p50_us"],
        "single_writable_refs_us_p99": writable["p99_us"],
        "step_us_p50": dict(steps),
        "batch1000_ms": batch_ms,
        "batch1000_ms_min": float(min(batch_s) * 1e3),
        "batch1000_us_per_spectrum": batch_ms * 1e3 / BATCH,
        "goal_single_us": GOAL_SINGLE_US,
        "meets_goal": single["p50_us"] <= GOAL_SINGLE_US,
        "host": host_facts(),
    }
    table = markdown_table(
        ["measure", "value"],
        [
            ["single p50 (us)", single["p50_us"]],
            ["single p99 (us)", single["p99_us"]],
            ["single p50, writeable refs (us)", writable["p50_us"]],
            *[[f"  step {op} p50 (us)", v] for op, v in steps],
            ["batch of 1000 (ms, median)", batch_ms],
            ["batch per spectrum (us)", batch_ms * 1e3 / BATCH],
            [f"goal: single p50 <= {GOAL_SINGLE_US:g} us", "met" if result["meets_goal"] else "NOT met"],
        ],
    )
    print(f"preprocess chain {' -> '.join(result['chain'])} on {N_CHANNELS} channels ({source})")
    print(table)
    write_json(args.json, result, markdown=table)
    return 0
