"""Tests of trainer.drift: PCA agrees with scikit-learn, limits hold their false-alarm rate, new absorbers alarm."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from trainer.drift import fit_ood, q_limit, t2_limit
from trainer.errors import CalibrationError

#: Same subspace and variances as scikit-learn's PCA, up to the 7 significant digits kept for the bundle.
PCA_RTOL = 1e-6
PCA_ATOL = 1e-6
#: In-distribution false alarms at alpha = 1 %: allow sampling noise on 2000 new spectra plus model error.
MAX_FALSE_ALARM = 0.04
N_CHANNELS = 50


def _latent_spectra(n: int, seed: int, *, extra_band: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    axis = np.linspace(0, 1, N_CHANNELS)
    basis = np.stack([np.exp(-((axis - c) ** 2) / 0.01) for c in (0.2, 0.5, 0.8)])
    X = rng.normal(size=(n, 3)) * np.array([3.0, 2.0, 1.0]) @ basis + rng.normal(0, 0.01, size=(n, N_CHANNELS))
    if extra_band:
        X += extra_band * np.exp(-((axis - 0.35) ** 2) / 0.002)
    return X


def test_pca_matches_sklearn() -> None:
    X = _latent_spectra(300, 0)
    m = fit_ood(X, n_components=3)
    ref = PCA(n_components=3).fit(X)
    np.testing.assert_allclose(m.mean, ref.mean_, rtol=PCA_RTOL, atol=PCA_ATOL)
    np.testing.assert_allclose(m.explained_variance, ref.explained_variance_, rtol=PCA_RTOL)
    np.testing.assert_allclose(np.abs(m.components @ ref.components_.T), np.eye(3), atol=PCA_ATOL)


def test_variance_rule_picks_the_latent_rank() -> None:
    assert fit_ood(_latent_spectra(300, 1), variance=0.99).n_components == 3


def test_false_alarm_rate_near_alpha_on_new_in_distribution_spectra() -> None:
    m = fit_ood(_latent_spectra(500, 2), variance=0.99, alpha=0.01)
    t2, q = m.score(_latent_spectra(2000, 3))
    assert np.mean(t2 > m.t2_limit) < MAX_FALSE_ALARM
    assert np.mean(q > m.q_limit) < MAX_FALSE_ALARM


def test_new_absorber_raises_q_and_extreme_levels_raise_t2() -> None:
    m = fit_ood(_latent_spectra(500, 4), variance=0.99)
    _, q = m.score(_latent_spectra(50, 5, extra_band=0.2))
    assert np.all(q > m.q_limit)
    t2, _ = m.score(m.mean + 10 * np.sqrt(m.explained_variance[0]) * m.components[0])
    assert t2 > m.t2_limit


def test_stacked_features_are_flattened() -> None:
    X = np.stack([_latent_spectra(200, 6), _latent_spectra(200, 6) ** 2], axis=2)
    m = fit_ood(X, n_components=4)
    assert m.feature_shape == (N_CHANNELS, 2)
    t2, q = m.score(X[:5])
    assert t2.shape == (5,) and q.shape == (5,)


def test_limits_against_known_values() -> None:
    # F(0.99; 2, 98) = 4.8239 -> 2*99*101/(100*98) * 4.8239
    assert t2_limit(100, 2, 0.01) == pytest.approx(2 * 99 * 101 / (100 * 98) * 4.8239, rel=1e-3)
    # all residual eigenvalues equal: Q/lambda ~ chi2(m), 99 % quantile of chi2(10) is 23.209
    assert q_limit(np.full(10, 1.0), 0.01) == pytest.approx(23.2, rel=0.03)


def test_bad_inputs() -> None:
    with pytest.raises(CalibrationError, match="expected at least 5 training spectra, got 3"):
        fit_ood(np.ones((3, 10)))
    with pytest.raises(CalibrationError, match="no variance"):
        fit_ood(np.ones((30, 10)))
    X = _latent_spectra(30, 7)
    X[2, 3] = np.nan
    with pytest.raises(CalibrationError, match="NaN"):
        fit_ood(X)
    with pytest.raises(CalibrationError, match="ood.n_components: expected at most"):
        fit_ood(_latent_spectra(30, 8), n_components=40)


def test_out_of_fold_limits_hold_the_flag_rate_with_few_rows_and_many_channels() -> None:
    """60 rows, 200 noisy channels: the out-of-fold limits (alpha / 2 each) keep the OOD flag (T2 or Q) near alpha
    on new in-distribution spectra, and a new absorber still raises it."""

    def spectra(n: int, seed: int, band: float = 0.0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        axis = np.linspace(0, 1, 200)
        basis = np.stack([np.exp(-((axis - c) ** 2) / 0.005) for c in (0.2, 0.4, 0.6, 0.8)])
        X = rng.normal(size=(n, 4)) @ basis + rng.normal(0, 0.05, size=(n, 200))
        return X + band * np.exp(-((axis - 0.5) ** 2) / 0.002)

    m = fit_ood(spectra(60, 10), n_components=4, alpha=0.01)
    t2, q = m.score(spectra(4000, 11))
    assert np.mean((t2 > m.t2_limit) | (q > m.q_limit)) < MAX_FALSE_ALARM
    t2, q = m.score(spectra(50, 12, band=0.5))
    assert np.mean((t2 > m.t2_limit) | (q > m.q_limit)) > 0.9


def _line(X: np.ndarray, sd: float, seed: int, copies: int = 1) -> np.ndarray:
    """``copies`` versions of ``X`` with a line detector's white noise of ``sd`` on top of the lab spectra's own."""
    return X[None] + np.random.default_rng(seed).normal(0.0, sd, size=(copies, *X.shape))


LINE_SD = 0.05  # 5 x the generator's own channel noise (0.01)


def test_limits_fitted_on_line_copies_hold_alpha_on_new_line_spectra() -> None:
    X = _latent_spectra(400, 20)
    m = fit_ood(X, n_components=3, alpha=0.01, X_pre_line=_line(X, LINE_SD, 21, copies=5))
    new = _line(_latent_spectra(3000, 22), LINE_SD, 23)[0]
    assert np.mean(m.is_outlier(new)) <= MAX_FALSE_ALARM
    # Without them the same new line spectra alarm nearly always (Q holds the extra noise): the case this fixes.
    plain = fit_ood(X, n_components=3, alpha=0.01)
    assert np.mean(plain.is_outlier(new)) > 0.5


def test_limits_fitted_on_line_copies_still_flag_a_new_absorber() -> None:
    X = _latent_spectra(400, 24)
    m = fit_ood(X, n_components=3, alpha=0.01, X_pre_line=_line(X, LINE_SD, 25, copies=5))
    shifted = _line(_latent_spectra(500, 26, extra_band=2.0), LINE_SD, 27)[0]
    assert np.mean(m.is_outlier(shifted)) > 0.9


def test_line_copies_must_match_the_training_spectra() -> None:
    X = _latent_spectra(100, 28)
    with pytest.raises(CalibrationError, match=r"expected line copies of shape \(c, 100, 50\)"):
        fit_ood(X, n_components=3, X_pre_line=X)


def _line_noisy_end(X: np.ndarray, seed: int, copies: int = 1) -> np.ndarray:
    """Line copies whose last 5 channels carry 50 x the noise of the others (a band the detector hardly measures)."""
    sd = np.where(np.arange(X.shape[1]) >= X.shape[1] - 5, 50 * LINE_SD, LINE_SD)
    return X[None] + np.random.default_rng(seed).normal(0.0, 1.0, size=(copies, *X.shape)) * sd


def test_line_copies_give_a_noise_whitening_scale_that_down_weights_the_noisy_channels() -> None:
    X = _latent_spectra(300, 30)
    m = fit_ood(X, n_components=3, alpha=0.01, X_pre_line=_line_noisy_end(X, 31, copies=5))
    assert m.scale is not None and m.scale.shape == (N_CHANNELS,)
    assert np.median(m.scale[-5:]) / np.median(m.scale[:-5]) == pytest.approx(50.0, rel=0.1)
    # The same step on a quiet channel and on a noisy one: Q weighs the noisy one 50**2 times less.
    step = np.zeros(N_CHANNELS)
    step[10] = 0.2
    _, q_quiet = m.score(m.mean + step)
    _, q_noisy = m.score(m.mean + np.roll(step, N_CHANNELS - 11))
    assert float(q_noisy) < float(q_quiet) / 1000
    assert m.to_dict()["format_version"] == 2
    assert "scale" not in fit_ood(X, n_components=3).to_dict()


def test_whitened_limits_hold_alpha_on_the_line_and_still_see_a_small_absorber_among_quiet_channels() -> None:
    X = _latent_spectra(400, 32)
    m = fit_ood(X, n_components=3, alpha=0.01, X_pre_line=_line_noisy_end(X, 33, copies=5))
    assert np.mean(m.is_outlier(_line_noisy_end(_latent_spectra(3000, 34), 35)[0])) <= MAX_FALSE_ALARM
    # A band 20 x the quiet channels' line noise: the noisy channels no longer drown it in Q.
    shifted = _line_noisy_end(_latent_spectra(500, 36, extra_band=20 * LINE_SD), 37)[0]
    assert np.mean(m.is_outlier(shifted)) > 0.9


def test_the_log_says_how_the_limits_were_set_and_calls_the_training_rates_in_sample(
        caplog: pytest.LogCaptureFixture) -> None:
    """The training rows' own alarm rates are no false-alarm rate: the log names them in-sample, and says whether
    the limits are out-of-fold quantiles or analytic (too few rows)."""
    with caplog.at_level("INFO", logger="trainer.drift"):
        fit_ood(_latent_spectra(100, 4), n_components=3, alpha=0.02)
        fit_ood(_latent_spectra(20, 5), n_components=3, alpha=0.02)
    lines = [r.getMessage() for r in caplog.records if "components" in r.getMessage()]
    assert len(lines) == 2
    assert "(out-of-fold quantiles at alpha/2 = 1% each;" in lines[0]
    assert "(analytic at alpha/2 = 1% each;" in lines[1]
    assert all("the training rows themselves, in sample and noise-free: T2 " in line for line in lines)
