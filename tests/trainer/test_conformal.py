"""Tests of trainer.conformal: split-conformal half-widths reach their nominal coverage on held-out data."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.conformal import empirical_coverage, fit_intervals, min_calibration_rows
from trainer.errors import CalibrationError

#: Averaged over many calibrations, coverage must reach the nominal level up to Monte-Carlo noise.
MEAN_COVERAGE_SLACK = 0.01
#: Upper side: with n calibration rows, mean coverage is at most nominal + 1/(n+1); plus Monte-Carlo noise.
N_CAL = 100
N_REPEATS = 200


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_coverage_on_held_out_rows_is_near_nominal(coverage: float) -> None:
    rng = np.random.default_rng(0)
    covs = []
    for _ in range(N_REPEATS):
        cal = rng.standard_t(3, size=(N_CAL, 2)) * np.array([1.0, 5.0])  # heavy tails, two targets
        model = fit_intervals(cal, coverage)
        new = rng.standard_t(3, size=(2000, 2)) * np.array([1.0, 5.0])
        covs.append(empirical_coverage(model, new, np.zeros_like(new)))
    mean = np.mean(covs, axis=0)
    assert np.all(mean >= coverage - MEAN_COVERAGE_SLACK)
    assert np.all(mean <= coverage + 1 / (N_CAL + 1) + MEAN_COVERAGE_SLACK)


def test_half_width_is_the_conformal_order_statistic() -> None:
    r = np.arange(1.0, 20.0)  # 19 residuals: rank ceil(20 * 0.9) = 18
    m = fit_intervals(-r, 0.9, target_names=["a"])
    assert m.q_hat.tolist() == [18.0]
    assert m.target_names == ("a",) and m.n_calibration == 19


def test_too_few_rows_for_the_coverage() -> None:
    assert min_calibration_rows(0.9) == 9
    with pytest.raises(CalibrationError, match="coverage 0.9 needs at least 9 calibration rows, got 5"):
        fit_intervals(np.ones(5), 0.9)
    with pytest.raises(CalibrationError, match="NaN"):
        fit_intervals(np.array([1.0, np.nan] * 10), 0.9)
