"""Throughput of the serial frame codec: encode and decode MB/s and frames/s for 650-pixel uint16 spectra.

``spectro-bench codec [--frames N] [--repeats R] [--chunk-bytes B] [--json PATH]``.  Spectra look like a real
detector's (lamp-shaped counts in the tens of thousands plus noise), so the COBS blocks are as long as they are in
practice.  Two more decode figures show the worst cases: dark-like spectra with counts below 256 (every other byte
is zero, one COBS block per pixel) and all-zero spectra (one block per byte, the slowest input there is).  MB/s
counts bytes on the wire (stuffed, delimiters included); ``decode`` feeds a
:class:`~firmware_bridge.codec.FrameDecoder` in chunks of ``--chunk-bytes``, as a serial read loop would.  The best
of ``--repeats`` runs is reported (the one least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np

from benchmarks.results import host_facts, markdown_table, write_json
from firmware_bridge.codec import FrameDecoder, encode
from firmware_bridge.frames import Spectrum, SpectrumFlags

#: Pixel count of the benchmark spectra (the project's reference instrument).
N_PIXELS = 650
#: Ceiling of a USB full-speed (12 Mbit/s) CDC-ACM link, bytes/s: 19 bulk packets of 64 bytes per 1 ms frame.
USB_FULL_SPEED_BYTES_PER_S = 19 * 64 * 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench codec``."""
    parser.add_argument("--frames", type=int, default=2000, help="spectra per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the best is reported (default 5)")
    parser.add_argument(
        "--chunk-bytes", type=int, default=4096, help="bytes per FrameDecoder.feed call (default 4096)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic spectra")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON (and .md beside)")


def make_spectra(n_frames: int, *, seed: int, low_counts: bool = False) -> list[Spectrum]:
    """``n_frames`` 650-pixel uint16 spectra: lamp-shaped counts with shot noise, or dark-like counts < 256."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, N_PIXELS)
    if low_counts:
        mean = 60.0 + 40.0 * np.exp(-4.0 * x**2)
    else:
        mean = 3000.0 + 45000.0 * np.exp(-2.5 * x**2)
    spectra = []
    for seq in range(n_frames):
        counts = np.clip(rng.poisson(mean), 0, 65535).astype(np.uint16)
        spectra.append(
            Spectrum(
                seq=seq,
                timestamp_us=1_000_000 + 20_000 * seq,
                integration_time_us=20_000,
                counts=counts,
                averages=4,
                saturated_count=int(np.count_nonzero(counts == 65535)),
                flags=SpectrumFlags.NONE,
                detector_temp_c=24.5,
            )
        )
    return spectra


def _best_of(repeats: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best = float("inf")
    result = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _decode_all(stream: bytes, chunk: int) -> int:
    decoder = FrameDecoder()
    n = 0
    for start in range(0, len(stream), chunk):
        n += len(decoder.feed(stream[start : start + chunk]))
    return n


def measure(n_frames: int, *, repeats: int, chunk_bytes: int, seed: int) -> dict[str, Any]:
    """Encode/decode figures as a flat dict (see the module docstring for what is measured)."""
    spectra = make_spectra(n_frames, seed=seed)
    encode_s, wires = _best_of(repeats, lambda: [encode(s) for s in spectra])
    stream = b"".join(wires)
    decode_s, decoded = _best_of(repeats, lambda: _decode_all(stream, chunk_bytes))
    if decoded != n_frames:
        raise RuntimeError(f"expected {n_frames} decoded frames, got {decoded}")
    worst_cases = {
        "low_counts": make_spectra(n_frames, seed=seed + 1, low_counts=True),
        "zero_counts": [s.replace(counts=np.zeros(N_PIXELS, np.uint16)) for s in spectra],
    }
    worst: dict[str, float] = {}
    for name, frames in worst_cases.items():
        case_stream = b"".join(encode(s) for s in frames)
        case_s, case_decoded = _best_of(repeats, lambda: _decode_all(case_stream, chunk_bytes))
        if case_decoded != n_frames:
            raise RuntimeError(f"expected {n_frames} decoded {name} frames, got {case_decoded}")
        worst[f"decode_{name}_mb_per_s"] = len(case_stream) / 1e6 / case_s
        worst[f"decode_{name}_frames_per_s"] = n_frames / case_s
    mb = len(stream) / 1e6
    decode_mb_per_s = mb / decode_s
    return {
        "benchmark": "codec",
        "n_frames": n_frames,
        "n_pixels": N_PIXELS,
        "pixel_format": "uint16",
        "wire_bytes_per_frame": len(stream) / n_frames,
        "chunk_bytes": chunk_bytes,
        "repeats": repeats,
        "encode_mb_per_s": mb / encode_s,
        "encode_frames_per_s": n_frames / encode_s,
        "encode_us_per_frame": encode_s / n_frames * 1e6,
        "decode_mb_per_s": decode_mb_per_s,
        "decode_frames_per_s": n_frames / decode_s,
        "decode_us_per_frame": decode_s / n_frames * 1e6,
        **worst,
        "decode_vs_usb_full_speed": decode_mb_per_s * 1e6 / USB_FULL_SPEED_BYTES_PER_S,
        "decode_goal_mb_per_s": 10.0,
        "host": host_facts(),
    }


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print a table, write ``--json``; returns 0."""
    if min(args.frames, args.chunk_bytes, args.repeats) < 1:
        raise SystemExit(
            f"spectro-bench codec: expected --frames, --chunk-bytes and --repeats >= 1, "
            f"got {args.frames}, {args.chunk_bytes}, {args.repeats}"
        )
    r = measure(args.frames, repeats=args.repeats, chunk_bytes=args.chunk_bytes, seed=args.seed)
    table = markdown_table(
        ["operation", "MB/s", "frames/s", "us/frame"],
        [
            ("encode", r["encode_mb_per_s"], r["encode_frames_per_s"], r["encode_us_per_frame"]),
            ("decode", r["decode_mb_per_s"], r["decode_frames_per_s"], r["decode_us_per_frame"]),
            ("decode, counts < 256", r["decode_low_counts_mb_per_s"], r["decode_low_counts_frames_per_s"], None),
            ("decode, all counts 0", r["decode_zero_counts_mb_per_s"], r["decode_zero_counts_frames_per_s"], None),
        ],
    )
    print(
        f"codec: {r['n_frames']} spectra of {N_PIXELS} uint16 pixels, {r['wire_bytes_per_frame']:.0f} wire bytes "
        f"each, best of {r['repeats']} runs, cpu {r['host']['cpu_model']}"
    )
    print(table)
    verdict = "meets" if r["decode_mb_per_s"] >= r["decode_goal_mb_per_s"] else "MISSES"
    print(
        f"decode {verdict} the {r['decode_goal_mb_per_s']:.0f} MB/s goal; "
        f"{r['decode_vs_usb_full_speed']:.0f}x a USB full-speed serial link"
    )
    write_json(args.json, r, markdown=table)
    return 0
