"""Seeded augmentation of absorbance spectra (offset, slope, multiplicative scale, noise, wavelength shift).

Augmentation works in the absorbance domain, *before* preprocessing, so that the network learns what the
preprocessing leaves of realistic baseline, path-length and calibration variation (Bjerrum, Glahder and Skov,
"Data augmentation of spectral data for convolutional neural network (CNN) based deep chemometrics", 2017).
Each augmented copy of a spectrum ``x`` (absorbance over channels ``j = 0..n-1``) is::

    x' = (1 + s) * shift(x, d) + a + b * (j / (n - 1) - 0.5) + e

with, per copy, ``a ~ N(0, offset_sd_abs)``, ``b ~ N(0, slope_sd_abs)`` (absorbance change over the full axis),
``s ~ N(0, scale_sd)``, a fractional channel shift ``d ~ N(0, shift_sd_channels)`` applied by linear interpolation
(edges held), and white noise ``e ~ N(0, noise_sd_abs)`` per channel. The reference values ``y`` are copied
unchanged. It is a few lines of numpy rather than a library because no maintained package offers these
spectroscopy-specific perturbations with a seed and a frozen parameter record.

>>> import numpy as np
>>> X = np.ones((4, 10))
>>> Xa, ya = augment(X, np.arange(4.0), AugmentConfig(n_copies=2, offset_sd_abs=0.1), seed=0)
>>> Xa.shape, ya.shape
((12, 10), (12,))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trainer.config.tables import record_from_table
from trainer.errors import TrainConfigError

__all__ = ["AugmentConfig", "augment"]


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of absorbance-domain augmentation; every spread is one standard deviation.

    Parameters
    ----------
    n_copies : int
        Augmented copies made per input spectrum (0 disables augmentation).
    offset_sd_abs : float
        Additive baseline offset, absorbance units.
    slope_sd_abs : float
        Linear baseline tilt, absorbance change from the first to the last channel.
    scale_sd : float
        Relative multiplicative scaling (path length, density), e.g. 0.05 for 5 %.
    noise_sd_abs : float
        White noise added to every channel, absorbance units.
    shift_sd_channels : float
        Wavelength-axis shift in (fractional) channels.
    include_original : bool
        Keep the unmodified spectra in front of the augmented copies.
    """

    n_copies: int = 0
    offset_sd_abs: float = 0.0
    slope_sd_abs: float = 0.0
    scale_sd: float = 0.0
    noise_sd_abs: float = 0.0
    shift_sd_channels: float = 0.0
    include_original: bool = True

    def __post_init__(self) -> None:
        if int(self.n_copies) != self.n_copies or self.n_copies < 0:
            raise TrainConfigError(f"augment.n_copies: expected an integer >= 0, got {self.n_copies!r}")
        for name in ("offset_sd_abs", "slope_sd_abs", "scale_sd", "noise_sd_abs", "shift_sd_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise TrainConfigError(f"augment.{name}: expected a finite number >= 0, got {value!r}")
        if not self.include_original and self.n_copies == 0:
            raise TrainConfigError("augment: include_original=false needs n_copies >= 1, got 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        """Build from the ``[augment]`` table: unknown keys and values of the wrong type are refused, naming the key."""
        return record_from_table(cls, d, "augment")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for ``metrics.json`` and reports."""
        return asdict(self)


def _shift_rows(X: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each row of ``X`` by a fractional number of channels with linear interpolation, edges held."""
    n = X.shape[1]
    pos = np.arange(n, dtype=np.float64)[None, :] - shifts[:, None]
    np.clip(pos, 0.0, n - 1.0, out=pos)
    left = np.floor(pos).astype(np.intp)
    np.minimum(left, n - 2, out=left)
    frac = pos - left
    rows = np.arange(X.shape[0])[:, None]
    return X[rows, left] * (1.0 - frac) + X[rows, left + 1] * frac


def augment(
    X: np.ndarray, y: np.ndarray, config: AugmentConfig, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``config.n_copies`` perturbed copies of every spectrum (and the originals, if asked).

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_channels), absorbance
        Spectra before any preprocessing.
    y : ndarray, shape (n_samples,) or (n_samples, n_targets)
        Reference values or class labels, repeated unchanged for each copy.
    config : AugmentConfig
        Perturbation spreads.
    seed : int
        Seed of the numpy ``Generator``; the same seed gives the same output.

    Returns
    -------
    X_aug : ndarray, shape (n_samples * (n_copies + include_original), n_channels), float64
        Originals first (when kept), then copy 1 of every row, copy 2 of every row, ...
    y_aug : ndarray, shape (n_samples * (n_copies + include_original), ...)
        ``y`` tiled to match ``X_aug``.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"expected X of shape (n_samples, n_channels), got shape {X.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"expected {X.shape[0]} rows of y to match X, got {y.shape[0]}")
    if X.shape[1] < 2:
        raise ValueError(f"expected at least 2 channels, got {X.shape[1]}")
    if not np.isfinite(X).all():
        raise ValueError("expected finite spectra, got NaN or inf in X")
    n, m = X.shape
    k = config.n_copies
    rng = np.random.default_rng(seed)
    blocks = [X] if config.include_original else []
    ramp = np.linspace(-0.5, 0.5, m)[None, :]
    for _ in range(k):
        offset = rng.normal(0.0, config.offset_sd_abs, size=(n, 1))
        slope = rng.normal(0.0, config.slope_sd_abs, size=(n, 1))
        scale = 1.0 + rng.normal(0.0, config.scale_sd, size=(n, 1))
        shifts = np.asarray(rng.normal(0.0, config.shift_sd_channels, size=n))
        noise = rng.normal(0.0, config.noise_sd_abs, size=(n, m)) if config.noise_sd_abs > 0 else 0.0
        Xs = _shift_rows(X, shifts) if config.shift_sd_channels > 0 else X
        blocks.append(scale * Xs + offset + slope * ramp + noise)
    reps = k + (1 if config.include_original else 0)
    y_aug = np.concatenate([y] * reps, axis=0)
    return np.concatenate(blocks, axis=0), y_aug
