"""Tests of trainer.conformal: split-conformal half-widths reach their nominal coverage on held-out data."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.conformal import (
    empirical_coverage,
    fit_intervals,
    min_calibration_rows,
    nested_oof_predictions,
    residual_shift,
)
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


class _Picker:
    """A fitting procedure with a model choice in it: of ``X``'s columns (pure noise), the one most correlated with
    ``y`` on the rows it is given, with its least-squares slope. Its ``seen`` records the row ids (column 0)."""

    def __init__(self) -> None:
        self.seen: list[set[int]] = []

    def __call__(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> _Picker.Model:
        self.seen.append({int(v) for v in X[:, 0]})
        F, y = X[:, 1:], Y[:, 0]
        c = np.abs((F - F.mean(0)).T @ (y - y.mean())) / np.linalg.norm(F - F.mean(0), axis=0)
        j = int(np.argmax(c))
        slope, icpt = np.polyfit(F[:, j], y, 1)
        return _Picker.Model(j + 1, float(slope), float(icpt))

    class Model:
        def __init__(self, col: int, slope: float, icpt: float) -> None:
            self.col, self.slope, self.icpt = col, slope, icpt

        def predict(self, X: np.ndarray) -> np.ndarray:
            return (self.slope * X[:, self.col] + self.icpt)[:, None]


def _noise(rng: np.random.Generator, n: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.c_[np.arange(n), rng.standard_normal((n, features))]
    return X, rng.standard_normal((n, 1))


def test_nested_cv_never_lets_a_held_out_row_reach_the_fit_or_the_choice() -> None:
    rng = np.random.default_rng(1)
    X, Y = _noise(rng, 60, 5)
    groups = np.repeat(np.arange(20), 3)  # three rows per group
    picker = _Picker()
    pred = nested_oof_predictions(X, Y, groups, fit_fn=picker, folds=5, seed=0)
    assert pred.shape == (60, 1) and np.all(np.isfinite(pred))
    assert len(picker.seen) == 5
    held = [set(range(60)) - s for s in picker.seen]
    assert sorted(r for h in held for r in h) == list(range(60))  # every row held out exactly once
    for h in held:
        assert {int(g) for g in groups[sorted(h)]}.isdisjoint(groups[sorted(set(range(60)) - h)])


#: Repeats of the selection-bias experiment below, and the Monte-Carlo slack on its mean coverage (measured with
#: seed 2: 0.859 from the choice made on all rows, 0.908 nested).
N_SELECTION_REPEATS = 30
SELECTION_COVERAGE_SLACK = 0.02


def test_nested_residuals_keep_coverage_where_a_choice_on_the_same_rows_makes_them_optimistic() -> None:
    """y is noise; the procedure picks the best of 500 noise columns. Out-of-fold residuals of the column chosen on
    all rows look better than the procedure is; nested ones do not, and their intervals keep the coverage on new
    rows."""
    rng = np.random.default_rng(2)
    plain_cov, nested_cov = [], []
    for _ in range(N_SELECTION_REPEATS):
        X, Y = _noise(rng, 60, 500)
        groups = np.arange(60)
        chosen = _Picker()(X, Y, groups).col
        fixed = nested_oof_predictions(X, Y, groups, folds=10, seed=0, fit_fn=lambda Xf, Yf, g: _Picker.Model(
            chosen, *np.polyfit(Xf[:, chosen], Yf[:, 0], 1)))
        nested = nested_oof_predictions(X, Y, groups, fit_fn=_Picker(), folds=10, seed=0)
        final = _Picker()(X, Y, groups)
        Xn, Yn = _noise(rng, 2000, 500)
        for oof, out in ((fixed, plain_cov), (nested, nested_cov)):
            model = fit_intervals(Y - oof, 0.9)
            out.append(float(empirical_coverage(model, Yn, final.predict(Xn))[0]))
    assert np.mean(nested_cov) >= 0.9 - SELECTION_COVERAGE_SLACK
    assert np.mean(plain_cov) < np.mean(nested_cov) - SELECTION_COVERAGE_SLACK


def test_nested_cv_refuses_mismatched_rows_and_targets() -> None:
    X, Y = _noise(np.random.default_rng(3), 20, 3)
    with pytest.raises(CalibrationError, match="expected X, Y and groups with the same rows, got 20, 20 and 19"):
        nested_oof_predictions(X, Y, np.arange(19), fit_fn=_Picker(), folds=5, seed=0)

    class TwoTargets:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.zeros((X.shape[0], 2))

    with pytest.raises(CalibrationError, match="expected predictions of 1 targets, got 2"):
        nested_oof_predictions(X, Y, np.arange(20), fit_fn=lambda *a: TwoTargets(), folds=5, seed=0)


def test_residual_shift_tells_exchangeable_errors_from_larger_ones() -> None:
    """A split drawn like the calibration rows is not shifted; one whose errors are 1.5 x larger is, and its
    coverage falls short of the nominal, which is what the flag is there to explain."""
    rng = np.random.default_rng(3)
    cal = rng.standard_normal((500, 2))
    same = rng.standard_normal((155, 2))
    larger = rng.standard_normal((155, 2)) * np.array([1.0, 1.5])
    a, b = residual_shift(cal, same)
    assert not a["shifted"] and not b["shifted"] and a["p_value"] > 0.01
    kept, shifted = residual_shift(cal, larger)
    assert not kept["shifted"]
    assert shifted["shifted"] and shifted["p_value"] < 1e-4 and shifted["ratio"] == pytest.approx(1.5, rel=0.2)
    assert shifted["median_abs_calibration"] == pytest.approx(float(np.median(np.abs(cal[:, 1]))))
    model = fit_intervals(cal, 0.9)
    assert empirical_coverage(model, larger, np.zeros_like(larger))[1] < 0.85
    smaller = residual_shift(cal, same * 0.5)
    assert smaller[0]["ratio"] < 1 and not smaller[0]["shifted"]  # over-coverage is not called a shift


def test_residual_shift_refuses_mismatched_targets() -> None:
    with pytest.raises(CalibrationError, match="same targets"):
        residual_shift(np.zeros((10, 2)), np.zeros((5, 1)))


def test_residual_shift_of_an_exactly_predicted_calibration_set_has_no_ratio() -> None:
    import json

    (got,) = residual_shift(np.zeros((20, 1)), np.ones((10, 1)))
    assert got["ratio"] is None and got["shifted"] and got["median_abs_test"] == 1.0
    json.dumps(got, allow_nan=False)  # metrics.json refuses NaN and infinity
