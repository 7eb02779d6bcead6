"""Tests of trainer.augment: each perturbation has the spread it is configured with, and a seed fixes the output."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.augment import AugmentConfig, augment
from trainer.errors import TrainConfigError

N_ROWS = 400
N_CHANNELS = 120
N_COPIES = 5
# Relative tolerance on an estimated standard deviation from N_ROWS * N_COPIES = 2000 draws (about 3 % sampling
# error at one sigma; 10 % is > 3 sigma).
SD_RTOL = 0.10
EXACT_ATOL = 1e-12


@pytest.fixture()
def spectra() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    wl = np.linspace(0.0, 1.0, N_CHANNELS)
    X = 1.0 + 0.5 * np.exp(-((wl[None, :] - rng.uniform(0.3, 0.7, (N_ROWS, 1))) ** 2) / 0.01)
    y = rng.normal(200.0, 10.0, size=(N_ROWS, 2))
    return X, y


def _copies(Xa: np.ndarray) -> np.ndarray:
    """Augmented copies only, shape (N_COPIES, N_ROWS, N_CHANNELS)."""
    return Xa[N_ROWS:].reshape(N_COPIES, N_ROWS, -1)


def test_shapes_order_and_targets(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    Xa, ya = augment(X, y, AugmentConfig(n_copies=N_COPIES, offset_sd_abs=0.01), seed=0)
    assert Xa.shape == (N_ROWS * (N_COPIES + 1), N_CHANNELS)
    assert ya.shape == (N_ROWS * (N_COPIES + 1), 2)
    np.testing.assert_array_equal(Xa[:N_ROWS], X)
    for c in range(N_COPIES + 1):
        np.testing.assert_array_equal(ya[c * N_ROWS:(c + 1) * N_ROWS], y)
    Xb, yb = augment(X, y, AugmentConfig(n_copies=2, offset_sd_abs=0.01, include_original=False), seed=0)
    assert Xb.shape == (2 * N_ROWS, N_CHANNELS) and yb.shape == (2 * N_ROWS, 2)
    assert not np.allclose(Xb[:N_ROWS], X)


def test_no_copies_returns_the_input(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    Xa, ya = augment(X, y, AugmentConfig(), seed=3)
    np.testing.assert_array_equal(Xa, X)
    np.testing.assert_array_equal(ya, y)


def test_offset_spread(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    sd = 0.02
    Xa, _ = augment(X, y, AugmentConfig(n_copies=N_COPIES, offset_sd_abs=sd), seed=1)
    d = _copies(Xa) - X[None]
    # A pure offset is constant along each spectrum.
    np.testing.assert_allclose(d, d[..., :1] * np.ones_like(d), atol=EXACT_ATOL)
    assert abs(d[..., 0].std() / sd - 1.0) < SD_RTOL
    assert abs(d[..., 0].mean()) < 4 * sd / np.sqrt(d[..., 0].size)


def test_slope_spread(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    sd = 0.05
    Xa, _ = augment(X, y, AugmentConfig(n_copies=N_COPIES, slope_sd_abs=sd), seed=2)
    d = _copies(Xa) - X[None]
    # Zero-centred linear tilt: change from first to last channel is the slope, the mean over channels is zero.
    tilt = d[..., -1] - d[..., 0]
    np.testing.assert_allclose(d.mean(axis=-1), 0.0, atol=1e-10)
    assert abs(tilt.std() / sd - 1.0) < SD_RTOL


def test_scale_spread(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    sd = 0.03
    Xa, _ = augment(X, y, AugmentConfig(n_copies=N_COPIES, scale_sd=sd), seed=3)
    ratio = _copies(Xa) / X[None]
    np.testing.assert_allclose(ratio, ratio[..., :1] * np.ones_like(ratio), rtol=1e-10)
    assert abs(ratio[..., 0].std() / sd - 1.0) < SD_RTOL
    assert abs(ratio[..., 0].mean() - 1.0) < 4 * sd / np.sqrt(ratio[..., 0].size)


def test_noise_spread(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    sd = 0.001
    Xa, _ = augment(X, y, AugmentConfig(n_copies=N_COPIES, noise_sd_abs=sd), seed=4)
    d = _copies(Xa) - X[None]
    assert abs(d.std() / sd - 1.0) < SD_RTOL / 3  # 240 000 draws
    # White: neighbouring channels are uncorrelated.
    r = np.corrcoef(d[..., :-1].ravel(), d[..., 1:].ravel())[0, 1]
    assert abs(r) < 0.02


def test_shift_spread_on_a_ramp() -> None:
    # On x_j = j a shift by d channels gives x_j - d away from the held edges, so d can be read back exactly.
    X = np.tile(np.arange(N_CHANNELS, dtype=np.float64), (N_ROWS, 1))
    sd = 0.7
    Xa, _ = augment(X, np.zeros(N_ROWS), AugmentConfig(n_copies=N_COPIES, shift_sd_channels=sd), seed=5)
    d = X[None, :, 20:-20] - _copies(Xa)[..., 20:-20]
    np.testing.assert_allclose(d, d[..., :1] * np.ones_like(d), atol=1e-9)
    assert abs(d[..., 0].std() / sd - 1.0) < SD_RTOL
    # Edges are held at the end values, never extrapolated.
    assert _copies(Xa).min() >= 0.0 and _copies(Xa).max() <= N_CHANNELS - 1


def test_same_seed_same_output_other_seed_differs(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    cfg = AugmentConfig(n_copies=2, offset_sd_abs=0.01, slope_sd_abs=0.01, scale_sd=0.01, noise_sd_abs=0.001,
                        shift_sd_channels=0.5)
    a, _ = augment(X, y, cfg, seed=11)
    b, _ = augment(X, y, cfg, seed=11)
    c, _ = augment(X, y, cfg, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[N_ROWS:], c[N_ROWS:])


def test_config_errors() -> None:
    with pytest.raises(TrainConfigError, match="offset_sd_abs"):
        AugmentConfig(n_copies=1, offset_sd_abs=-0.1)
    with pytest.raises(TrainConfigError, match="n_copies"):
        AugmentConfig(n_copies=-1)
    with pytest.raises(TrainConfigError, match=r"augment.offset: unknown key \(expected one of .*n_copies"):
        AugmentConfig.from_dict({"n_copies": 1, "offset": 0.1})
    with pytest.raises(TrainConfigError, match="augment.n_copies: expected an integer, got str '3'"):
        AugmentConfig.from_dict({"n_copies": "3"})
    assert AugmentConfig.from_dict({"n_copies": 2, "scale_sd": 0.1}).to_dict()["scale_sd"] == 0.1


def test_input_errors(spectra: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spectra
    cfg = AugmentConfig(n_copies=1, offset_sd_abs=0.1)
    with pytest.raises(ValueError, match="expected 400 rows of y"):
        augment(X, y[:10], cfg, seed=0)
    with pytest.raises(ValueError, match="expected X of shape"):
        augment(X[0], y, cfg, seed=0)
    bad = X.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        augment(bad, y, cfg, seed=0)
