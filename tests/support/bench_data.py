"""Inputs of the throughput benchmark's tests: a committed counts bundle and spectra on its axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["COUNTS_BUNDLE", "counts_dataset"]

#: A committed bundle of two targets on counts over 1000-1630 nm (64 channels).
COUNTS_BUNDLE = Path(__file__).resolve().parents[1] / "data" / "bundles" / "v1_counts_two_targets.spectrolite"


def counts_dataset(path: Path) -> Path:
    """64-channel absorbance spectra on :data:`COUNTS_BUNDLE`'s axis (1000-1630 nm), two Gaussian bands."""
    rng = np.random.default_rng(3)
    wl = np.linspace(1000.0, 1630.0, 64)
    y = rng.uniform(0.2, 1.0, size=(50, 2))
    A = (0.1 + y[:, :1] * np.exp(-0.5 * ((wl - 1200.0) / 40.0) ** 2)
         + y[:, 1:] * np.exp(-0.5 * ((wl - 1450.0) / 60.0) ** 2))
    np.savez(path, X=A, y=y * 10.0, wavelengths=wl, target_names=np.array(["band1", "band2"]))
    return path
