"""Inputs of ``spectro-bench latency``: raw frames encoded from a dataset or the bundle's golden vectors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_DISTINCT_FRAMES", "Frames", "make_frames"]

log = logging.getLogger(__name__)

#: Frames distinct frames are made from (cycled).
MAX_DISTINCT_FRAMES = 512


class Frames:
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


def make_frames(bundle: Any, dataset: Path | None) -> Frames:
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
            return Frames(enc, _readonly(dark), _readonly(white), _readonly(wl), f"{dataset.name} ({len(X)} rows)",
                           fmt)
        log.warning("%s has %d channels, the bundle %d: using the golden vectors", dataset, X.shape[1], n_ch)
    g = bundle.golden
    enc, fmt = _encode_rows(np.asarray(g.raw, dtype=np.float64), counts)
    ctx = g.context(0)
    return Frames(enc, _readonly(ctx.get("dark")), _readonly(ctx.get("reference")), _readonly(ctx.get("wavelengths")),
                   f"golden vectors ({g.count}, cycled)", fmt)
