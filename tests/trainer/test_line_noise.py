"""Tests of trainer.line_noise: training spectra through the line detector (firmware_bridge.physics.DetectorModel)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import LineNoiseConfig
from trainer.config.sources import InstrumentConfig
from trainer.errors import TrainConfigError
from trainer.line_noise import line_spectra

WL = np.linspace(900.0, 1700.0, 128)


def _spectra(n: int, level: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return level + 0.2 * np.sin(WL / 80.0)[None] + rng.normal(0, 0.05, size=(n, 1))


def test_copies_are_the_spectra_plus_zero_mean_detector_noise() -> None:
    A = _spectra(40, 0.5)
    out = line_spectra(A, WL, LineNoiseConfig(copies=3), seed=1)
    assert out.shape == (3, 40, 128)
    err = out - A[None]
    assert 0.0 < float(np.std(err)) < 0.01  # bright samples: shot and read noise of a few milli-absorbance
    assert abs(float(np.mean(err))) < 0.2 * float(np.std(err))


def test_noise_falls_with_averaging_and_grows_with_absorbance() -> None:
    A = _spectra(40, 0.5)
    one = np.std(line_spectra(A, WL, LineNoiseConfig(copies=2), seed=2) - A)
    sixteen = np.std(line_spectra(A, WL, LineNoiseConfig(copies=2, averages=16), seed=2) - A)
    assert sixteen == pytest.approx(one / 4, rel=0.25)
    # The exposure suits the brightest spectra, so darker pixels (fewer counts) are noisier in absorbance.
    mixed = np.vstack([A, A + 2.0])
    err = line_spectra(mixed, WL, LineNoiseConfig(copies=2), seed=3) - mixed
    assert np.std(err[:, 40:]) > 3 * np.std(err[:, :40])


def test_instrument_noise_table_is_parsed_and_needs_a_counts_device() -> None:
    cfg = InstrumentConfig.from_dict({"signal": "counts", "noise": {"averages": 4, "read_noise_counts": 2.0}})
    assert cfg.noise == LineNoiseConfig(averages=4, read_noise_counts=2.0)
    assert cfg.noise.detector_parameters() == {"read_noise_counts": 2.0}
    assert InstrumentConfig.from_dict({}).noise is None
    with pytest.raises(TrainConfigError, match="instrument.noise: expected signal = \"counts\""):
        InstrumentConfig.from_dict({"signal": "absorbance", "noise": {}})
    with pytest.raises(TrainConfigError, match="instrument.noise.averages: expected an integer >= 1, got 0"):
        InstrumentConfig.from_dict({"noise": {"averages": 0}})
    with pytest.raises(TrainConfigError, match="instrument.noise.gain: unknown key"):
        InstrumentConfig.from_dict({"noise": {"gain": 1.0}})


def test_every_spectrum_is_read_in_a_session_of_its_own() -> None:
    """Dark and white are drawn anew per spectrum: two rows' detector errors are uncorrelated, so the OOD limits
    fitted on the copies hold over sessions, not for the few dark/white draws one session per copy would give."""
    A = np.repeat(_spectra(1, 2.5), 60, axis=0)  # one dark spectrum 60 times: dark and white noise matter
    err = line_spectra(A, WL, LineNoiseConfig(copies=1), seed=4)[0] - A
    err -= err.mean(axis=1, keepdims=True)
    corr = np.corrcoef(err)[np.triu_indices(A.shape[0], 1)]
    assert abs(float(np.mean(corr))) < 0.05
