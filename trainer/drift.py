"""Fitting the edge's drift / out-of-distribution model: PCA on preprocessed training spectra with T2 and Q limits.

The PCA comes from numpy's SVD of the centred training matrix. The limits are empirical quantiles of out-of-fold
T2 and Q (each row scored by a PCA fitted without its fold), so they hold their false-alarm rate on spectra the
model was not fitted on. With a declared line detector (``[instrument.noise]``) the model is a noise-whitened PCA
(the idea of maximum-likelihood PCA, Wentzell et al. 1997): each feature is divided by the spread that detector adds
to it, and the PCA and its out-of-fold scores use noisy copies of the training spectra as that detector measures
them, so the rate holds on the line, where the detector's noise comes on top of the lab spectra's own, while the
features the detector measures well keep their weight. Each limit is set at ``alpha / 2``, so the OOD flag
(either over its limit) alarms on at most ``alpha`` of in-distribution spectra. For small training sets the
analytic limits remain: the Hotelling T2 limit is the F-distribution limit for a new observation,
``T2_lim = k (n - 1) (n + 1) / (n (n - k)) * F(1 - alpha; k, n - k)``; the Q limit is Jackson and Mudholkar's
(1979) approximation from the residual eigenvalues ``theta_i = sum_{j > k} lambda_j ** i``. Quantiles come from
``scipy.stats``. The result is an :class:`edge.ood.OodModel`, which the device scores with numpy only; its arrays
are rounded to float32 precision (7 significant digits) so the JSON in the bundle stays compact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge.ood import OodModel
from edge.ood_noise import LineNoise
from trainer.errors import CalibrationError

__all__ = ["fit_ood", "t2_limit", "q_limit", "out_of_fold_scores", "empirical_limit", "line_noise_scale",
           "NoiseInputs", "noise_split"]

log = logging.getLogger(__name__)

#: Significant digits kept of the PCA arrays (float32 precision): the bundle's ``ood.json`` is text.
SIGNIFICANT_DIGITS = 7


def t2_limit(n_samples: int, n_components: int, alpha: float) -> float:
    """Hotelling T2 upper limit for a new observation at false-alarm rate ``alpha``."""
    from scipy import stats

    n, k = n_samples, n_components
    if n <= k:
        raise CalibrationError(f"T2 limit: expected more samples than components, got {n} samples, {k} components")
    f = float(stats.f.ppf(1.0 - alpha, k, n - k))
    return k * (n - 1) * (n + 1) / (n * (n - k)) * f


def q_limit(residual_eigenvalues: np.ndarray, alpha: float) -> float:
    """Jackson-Mudholkar Q (SPE) upper limit from the eigenvalues of the discarded components."""
    from scipy import stats

    lam = np.asarray(residual_eigenvalues, dtype=np.float64)
    lam = lam[lam > 0]
    if lam.size == 0:
        raise CalibrationError("Q limit: the principal components explain all training variance; use fewer")
    th1, th2, th3 = (float(np.sum(lam**i)) for i in (1, 2, 3))
    h0 = 1.0 - 2.0 * th1 * th3 / (3.0 * th2**2)
    if h0 <= 1e-6:  # degenerate spectrum of eigenvalues: fall back to Box's scaled chi-square
        g, h = th2 / th1, th1**2 / th2
        return float(g * stats.chi2.ppf(1.0 - alpha, h))
    c = float(stats.norm.ppf(1.0 - alpha))
    inner = c * np.sqrt(2.0 * th2 * h0**2) / th1 + 1.0 + th2 * h0 * (h0 - 1.0) / th1**2
    return float(th1 * inner ** (1.0 / h0))


def _round_significant(a: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant decimal digits, so the bundle's JSON stays short and round-trips exactly."""
    flat = [float(f"{v:.{digits}g}") for v in np.asarray(a, dtype=np.float64).ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(np.shape(a))


#: Folds of the out-of-fold scores that set the limits.
OOF_FOLDS = 10
#: Fewest rows for out-of-fold limits; below it the analytic limits are used (and the log says so).
MIN_OOF_ROWS = 30


def _pca(Xf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, eigenvalues (variance per component) and components of a 2-D matrix."""
    mean = Xf.mean(axis=0)
    _, s, vt = np.linalg.svd(Xf - mean, full_matrices=False)
    return mean, s**2 / (Xf.shape[0] - 1), vt


def _scores(Xf: np.ndarray, mean: np.ndarray, eig: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Xc = Xf - mean
    T = Xc @ vt.T
    resid = Xc - T @ vt
    return np.sum(T * T / eig, axis=1), np.sum(resid * resid, axis=1)


def out_of_fold_scores(
    Xf: np.ndarray, k: int, *, groups: np.ndarray | None = None, folds: int = OOF_FOLDS, seed: int = 0,
    scored: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """T2 and Q of every row from a k-component PCA fitted without its fold (grouped when ``groups`` is given).

    Parameters
    ----------
    Xf : ndarray, shape (n, n_features)
        The rows the PCA of each fold is fitted on.
    k : int
        Principal components.
    groups : ndarray, shape (n,), optional
        Rows of one group (one sample's replicates) stay in one fold.
    folds : int
    seed : int
        Seeds the assignment of groups to folds.
    scored : ndarray, shape (c, n, n_features), optional
        What is scored instead of ``Xf`` itself: ``c`` versions of every row (the rows as the line instrument
        measures them), each scored by the PCA fitted without the row's fold.

    Returns
    -------
    t2, q : ndarray, shape (n,), or (c, n) with ``scored``
    """
    n = Xf.shape[0]
    labels = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(labels.max()) + 1
    folds = max(2, min(folds, n_groups))
    fold_of_group = np.random.default_rng(seed).permutation(n_groups) % folds
    fold = fold_of_group[labels]
    S = Xf[None] if scored is None else np.asarray(scored, dtype=np.float64).reshape(-1, *Xf.shape)
    t2 = np.empty(S.shape[:2])
    q = np.empty(S.shape[:2])
    for f in range(folds):
        held = fold == f
        mean, eig, vt = _pca(Xf[~held])
        kk = min(k, int(np.count_nonzero(eig > 0)))
        for c in range(S.shape[0]):
            t2[c, held], q[c, held] = _scores(S[c, held], mean, eig[:kk], vt[:kk])
    return (t2[0], q[0]) if scored is None else (t2, q)


@dataclass(frozen=True)
class NoiseInputs:
    """What the OOD model needs to score each spectrum under its own detector noise (:class:`edge.ood_noise.LineNoise`).

    Parameters
    ----------
    pixel_variance : ndarray, shape (n, n_channels)
        Each training spectrum's per-pixel signal variance as the line detector measures it
        (:func:`trainer.line_noise.pixel_variance`, the device's formula).
    jacobian : ndarray, shape (n_channels, n_features)
        The preprocessing's sensitivity of each (flattened) feature to each input channel, at a typical spectrum.
    electrons_per_count, read_noise_counts : float
        The detector's, for the device's own computation.
    quantity : {"absorbance", "reflectance"}
    """

    pixel_variance: np.ndarray
    jacobian: np.ndarray
    electrons_per_count: float
    read_noise_counts: float
    quantity: str = "absorbance"


def noise_split(noise: np.ndarray, clean: np.ndarray, mean: np.ndarray, eig: np.ndarray,
                vt: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """How much of a PCA's variance and Q the detector's noise makes, from the (whitened) rows' noise (line copy
    minus its clean row, shape (m, n_features)) and the clean rows (shape (m', n_features)).

    Returns
    -------
    component_noise : ndarray, shape (k,)
        Variance of the noise along each axis.
    signal_variance : ndarray, shape (k,)
        ``eig - component_noise``, floored at 1e-3 ``eig``.
    q_signal : float
        Mean Q of the clean rows (floored at 1e-9 of the noise's).
    q_noise : float
        Mean Q of the noise.
    """
    Tn = noise @ vt.T
    comp_noise = np.var(Tn, axis=0, ddof=1)
    signal_var = np.maximum(eig - comp_noise, 1e-3 * eig)
    q_noise = float(np.mean(np.sum((noise - Tn @ vt) ** 2, axis=1)))
    Cc = clean - mean
    q_signal = float(np.mean(np.sum((Cc - (Cc @ vt.T) @ vt) ** 2, axis=1)))
    return comp_noise, signal_var, max(q_signal, 1e-9 * q_noise, 1e-12), q_noise


def _own_noise_scores(Z: np.ndarray, rho: np.ndarray, mean: np.ndarray, vt: np.ndarray, comp_noise: np.ndarray,
                      signal_var: np.ndarray, q_signal: float, q_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """T2 and Q of whitened rows ``Z`` under their noise levels ``rho`` (as :meth:`edge.ood.OodModel.score`)."""
    Zc = Z - mean
    T = Zc @ vt.T
    q = np.sum((Zc - T @ vt) ** 2, axis=1)
    return np.sum(T * T / (signal_var + rho[:, None] * comp_noise), axis=1), q / (q_signal + rho * q_noise)


def _own_noise_oof(rows: np.ndarray, clean: np.ndarray, rho: np.ndarray, k: int, groups: np.ndarray, *,
                   folds: int = OOF_FOLDS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold T2 and Q under each row's own noise level: ``rows`` are the whitened line copies (c * n rows),
    ``clean`` their clean rows (same shape), ``rho`` their levels; every fold's PCA and noise split are fitted
    without it (grouped as :func:`out_of_fold_scores`)."""
    labels = np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(labels.max()) + 1
    folds = max(2, min(folds, n_groups))
    fold = (np.random.default_rng(seed).permutation(n_groups) % folds)[labels]
    t2, q = np.empty(rows.shape[0]), np.empty(rows.shape[0])
    for f in range(folds):
        held = fold == f
        mean, eig, vt = _pca(rows[~held])
        kk = min(k, int(np.count_nonzero(eig > 0)))
        split = noise_split(rows[~held] - clean[~held], clean[~held], mean, eig[:kk], vt[:kk])
        t2[held], q[held] = _own_noise_scores(rows[held], rho[held], mean, vt[:kk], *split)
    return t2, q


def line_noise_scale(Xf: np.ndarray, line: np.ndarray, *, floor: float = 0.0) -> np.ndarray:
    """Per-feature scale of the noise-whitened PCA: ``sqrt(noise + floor * median(noise))``.

    ``noise`` is the mean square, over copies and rows, of line copy minus clean row per feature: what the line
    detector adds to each preprocessed feature. ``floor`` (a share of the median feature's noise) keeps features the
    detector hardly touches from getting an enormous weight.

    Parameters
    ----------
    Xf : ndarray, shape (n, n_features)
        The clean (lab) training rows, preprocessed.
    line : ndarray, shape (c, n, n_features)
        The same rows as the line detector measures them, preprocessed.
    floor : float

    Returns
    -------
    ndarray, shape (n_features,), all > 0
    """
    noise = np.mean((line - Xf[None]) ** 2, axis=(0, 1))
    positive = noise[noise > 0]
    if positive.size == 0:
        raise CalibrationError("OOD model: the line copies equal the training spectra; the detector adds no noise")
    med = float(np.median(positive))
    return np.sqrt(np.maximum(noise + floor * med, med * 1e-6))


def empirical_limit(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` held-out scores: a new in-distribution score exceeds
    it with probability at most ``alpha`` (split-conformal quantile); the largest score when ``n`` is too small."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    rank = int(np.ceil((s.size + 1) * (1.0 - alpha)))
    return float(s[min(rank, s.size) - 1])


def _checked_line(X: np.ndarray, X_pre_line: np.ndarray) -> np.ndarray:
    """The line copies, checked against the training spectra ``X`` and flattened to (c, n, n_features)."""
    line = np.asarray(X_pre_line, dtype=np.float64)
    if line.ndim != X.ndim + 1 or line.shape[1:] != X.shape:
        raise CalibrationError(f"OOD model: expected line copies of shape (c, {', '.join(map(str, X.shape))}), "
                               f"got {line.shape}")
    if not np.all(np.isfinite(line)):
        raise CalibrationError("OOD model: preprocessed line copies contain NaN or infinite values")
    return line.reshape(line.shape[0], X.shape[0], -1)


def _fit_own_noise(noise: NoiseInputs, X_clean: np.ndarray, rows: np.ndarray, scale: np.ndarray, eig: np.ndarray,
                   vt: np.ndarray, k: int, groups: np.ndarray, a_each: float, *,
                   seed: int) -> tuple[LineNoise, float, float]:
    """The :class:`edge.ood_noise.LineNoise` of the whitened line copies ``rows`` (of the clean rows ``X_clean``)
    and the out-of-fold T2 and Q limits under each copy's own noise level."""
    n = X_clean.shape[0]
    var = np.asarray(noise.pixel_variance, dtype=np.float64)
    J = np.asarray(noise.jacobian, dtype=np.float64)
    if var.shape[0] != n or J.shape != (var.shape[1], X_clean.shape[1]):
        raise CalibrationError(f"OOD noise model: expected pixel variances ({n}, p) and a Jacobian (p, "
                               f"{X_clean.shape[1]}), got {var.shape} and {J.shape}")
    gain = np.mean((J / scale) ** 2, axis=1)
    raw = var @ gain
    level = float(np.mean(raw))
    if not (np.isfinite(level) and level > 0):
        raise CalibrationError(f"OOD noise model: expected a positive mean noise level, got {level!r}")
    copies = rows.shape[0] // n
    rho = np.tile(raw / level, copies)
    clean = np.tile(X_clean / scale, (copies, 1))
    t2_oof, q_oof = _own_noise_oof(rows, clean, rho, k, groups, seed=seed)
    mean = rows.mean(axis=0)
    comp_noise, signal_var, q_signal, q_noise = noise_split(rows - clean, clean, mean, eig[:k], vt[:k])
    line_noise = LineNoise(pixel_gain=_round_significant(gain / level), electrons_per_count=noise.electrons_per_count,
                           read_noise_counts=noise.read_noise_counts,
                           component_noise=_round_significant(comp_noise),
                           signal_variance=_round_significant(signal_var), q_signal=float(f"{q_signal:.7g}"),
                           q_noise=float(f"{q_noise:.7g}"), quantity=noise.quantity)
    log.info("OOD noise model: noise levels of the training spectra %.2g to %.2g (median %.2g) of their mean; "
             "noise share of the axes' variance %.0f%% to %.0f%%, of Q %.0f%%", float(np.min(raw) / level),
             float(np.max(raw) / level), float(np.median(raw) / level), 100 * float(np.min(comp_noise / eig[:k])),
             100 * float(np.max(comp_noise / eig[:k])), 100 * q_noise / (q_noise + q_signal))
    return line_noise, empirical_limit(t2_oof, a_each), empirical_limit(q_oof, a_each)


def fit_ood(
    X_pre_train: np.ndarray,
    n_components: int | None = None,
    variance: float = 0.99,
    alpha: float = 0.01,
    *,
    max_components: int = 20,
    groups: np.ndarray | None = None,
    seed: int = 0,
    X_pre_line: np.ndarray | None = None,
    noise: NoiseInputs | None = None,
) -> OodModel:
    """PCA drift model with T2 and Q limits, fitted on preprocessed training spectra.

    The limits are empirical quantiles of out-of-fold scores (:func:`out_of_fold_scores`, then
    :func:`empirical_limit`): the analytic F and Jackson-Mudholkar limits assume scores of spectra the PCA was fitted
    on, which are systematically smaller than those of new spectra, so they alarm far above ``alpha`` on new
    in-distribution data. With fewer than :data:`MIN_OOF_ROWS` rows the analytic limits are used.

    Parameters
    ----------
    X_pre_train : ndarray, shape (n, *feature_shape)
        Preprocessed training spectra (stacked channel axes allowed; they are flattened).
    n_components : int, optional
        Principal components to keep; None picks the fewest explaining ``variance`` of the variance.
    variance : float
        Explained-variance share used when ``n_components`` is None.
    alpha : float
        False-alarm rate of the OOD flag (T2 or Q over its limit): each limit is set at ``alpha / 2``.
    max_components : int
        Cap on the number of components.
    groups : ndarray, shape (n,), optional
        Group of each row (replicates of one sample), kept in one fold of the out-of-fold scores.
    seed : int
        Seeds the folds.
    X_pre_line : ndarray, shape (c, n, *feature_shape), optional
        The same training spectra as the line instrument measures them (``c`` noisy copies through its detector,
        :func:`trainer.line_noise.line_spectra`, then preprocessed). With them the model is a noise-whitened PCA:
        every feature is divided by the spread the detector adds to it (:func:`line_noise_scale`, the model's
        ``scale``), so features the line cannot measure no longer dominate Q; the PCA is fitted on the whitened
        copies (so its plane also holds the detector's strongest correlated noise, such as the whole spectrum
        scaled by a noisy SNV), and the limits are quantiles of the copies' out-of-fold scores (grouped: a row's
        copies stay in its fold). They then hold ``alpha`` on the line's in-distribution spectra, detector noise
        included, rather than on noise-free lab spectra.
    noise : NoiseInputs, optional
        With ``X_pre_line``: score each spectrum under its own detector noise (:class:`edge.ood_noise.LineNoise`,
        ood.json format 3). A counting detector's noise grows as less light reaches it, so one average noise makes
        the dark (thick) in-distribution spectra alarm far above ``alpha``. The level ``rho`` of each spectrum is
        ``pixel_variance @ pixel_gain``, the gains the whitened squared Jacobian averaged over the features,
        scaled so the training spectra average 1; T2 divides each axis by its signal variance plus ``rho`` times
        the noise's, Q by the clean rows' mean Q plus ``rho`` times the noise's. The limits are quantiles of
        these statistics out of fold (every fold's PCA and noise split fitted without it).

    Returns
    -------
    edge.ood.OodModel
    """
    X = np.asarray(X_pre_train, dtype=np.float64)
    if X.ndim < 2:
        raise CalibrationError(f"OOD model: expected a batch of spectra (n, features), got shape {X.shape}")
    n = X.shape[0]
    if n < 5:
        raise CalibrationError(f"OOD model: expected at least 5 training spectra, got {n}")
    if not np.all(np.isfinite(X)):
        raise CalibrationError("OOD model: preprocessed training spectra contain NaN or infinite values")
    if not 0.0 < alpha < 1.0:
        raise CalibrationError(f"OOD model: expected 0 < alpha < 1, got {alpha}")
    feature_shape = X.shape[1:]
    Xf = X.reshape(n, -1)
    scale = None
    if X_pre_line is not None:  # noise-whitened PCA of the line copies: every feature in units of its line noise
        line = _checked_line(X, X_pre_line)
        scale = _round_significant(line_noise_scale(Xf, line))
        Xf = line.reshape(-1, Xf.shape[1])
        groups = np.tile(np.arange(n) if groups is None else np.asarray(groups), line.shape[0])
    mean = Xf.mean(axis=0)
    rows = Xf if scale is None else Xf / scale
    _, s, vt = np.linalg.svd(rows - rows.mean(axis=0), full_matrices=False)
    eig = s**2 / (rows.shape[0] - 1)
    total = float(eig.sum())
    if total <= 0:
        raise CalibrationError("OOD model: training spectra have no variance after preprocessing")
    limit_k = int(min(max_components, n - 2, np.count_nonzero(eig > total * 1e-12)))
    if limit_k < 1:
        raise CalibrationError(f"OOD model: too few samples ({n}) for a PCA model")
    if n_components is None:
        k = int(np.searchsorted(np.cumsum(eig) / total, variance) + 1)
        k = min(k, limit_k)
    else:
        if n_components > limit_k:
            raise CalibrationError(
                f"ood.n_components: expected at most {limit_k} components (the smallest of ood.max_components = "
                f"{max_components}, {n} spectra - 2 and the {np.count_nonzero(eig > total * 1e-12)} directions with "
                f"variance), got {n_components}"
            )
        k = n_components
    # A spectrum is flagged when either statistic exceeds its limit: each gets alpha / 2 (Bonferroni), so the flag's
    # false-alarm rate is at most alpha.
    a_each = alpha / 2.0
    t2_lim, q_lim = t2_limit(n, k, a_each), q_limit(eig[k:], a_each)
    if scale is not None and n < MIN_OOF_ROWS:
        raise CalibrationError(f"OOD model: limits on line copies need at least {MIN_OOF_ROWS} training spectra, "
                               f"got {n}")
    line_noise = None
    if noise is not None:
        if scale is None:
            raise CalibrationError("OOD model: a per-spectrum noise model needs the line copies (X_pre_line)")
        line_noise, t2_lim, q_lim = _fit_own_noise(noise, X.reshape(n, -1), rows, scale, eig, vt, k, groups,
                                                   a_each, seed=seed)
    elif n >= MIN_OOF_ROWS:
        t2_oof, q_oof = out_of_fold_scores(rows, k, groups=groups, seed=seed)
        t2_lim, q_lim = empirical_limit(t2_oof, a_each), empirical_limit(q_oof, a_each)
    else:
        log.warning("OOD model: %d training spectra, fewer than %d: analytic limits (they alarm above alpha on new "
                    "spectra)", n, MIN_OOF_ROWS)
    model = OodModel(
        mean=_round_significant(mean).reshape(feature_shape),
        components=_round_significant(vt[:k]),
        explained_variance=_round_significant(eig[:k]),
        t2_limit=t2_lim,
        q_limit=q_lim,
        alpha=alpha,
        scale=None if scale is None else scale.reshape(feature_shape),
        noise=line_noise,
    )
    t2, q = model.score(X)
    how = ("out-of-fold quantiles of the line copies under their own noise" if noise is not None
           else "out-of-fold quantiles" + (" of the line copies" if scale is not None else "")
           if n >= MIN_OOF_ROWS else "analytic")
    # The training rows scored by the model fitted on them are no false-alarm rate: held-out spectra score higher
    # (and a line model scores noise-free rows as if at the average noise). The per-split rates are in metrics.json.
    log.info(
        "OOD model: %d components (%.2f%% variance), T2 limit %.3g, Q limit %.3g (%s at alpha/2 = %.2g%% each; "
        "alarm rates per split in metrics.json ood); the training rows themselves, in sample and noise-free: "
        "T2 %.1f%% Q %.1f%%",
        k,
        100 * eig[:k].sum() / total,
        model.t2_limit,
        model.q_limit,
        how,
        100 * a_each,
        100 * np.mean(t2 > model.t2_limit),
        100 * np.mean(q > model.q_limit),
    )
    return model
