"""The PLS baseline: scikit-learn PLSRegression (PLS-DA for classes) with preprocessing and latent variables chosen
by grouped cross-validation on the training rows only.

For every preprocessing candidate and every fold, the preprocessing is fitted on the fold's fitting rows only, one
PLS model with the largest number of latent variables is fitted, and the predictions of every smaller model are
read off its first components (NIPALS components are sequential, so the first ``k`` components of a
``k_max``-component fit are those of a ``k``-component fit; the tests check this against scikit-learn). Each
regression target gets its own PLS1 model (its own candidate and latent variables); classification is PLS-DA
on one-hot targets, the predicted class being the largest response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.errors import CalibrationError
from trainer.splits import grouped_folds

__all__ = ["PlsTargetModel", "PlsBaseline", "cv_predictions_all_k", "fit_pls_baseline", "flatten_features",
           "linear_map", "pls_predict_all_k"]

log = logging.getLogger(__name__)

#: Builds an unfitted preprocessing estimator (``fit(X)`` returning self, ``transform(X)``) from a step list.
PreprocessFactory = Callable[[Sequence[Mapping[str, Any]]], Any]


def flatten_features(X: np.ndarray) -> np.ndarray:
    """Preprocessed spectra as a 2-D matrix (n, n_features * k): stacked channel axes are concatenated."""
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(X.shape[0], -1)


def _default_factory(wavelengths: np.ndarray) -> PreprocessFactory:
    from trainer.preprocessing import make_pipeline_from_config

    def make(steps: Sequence[Mapping[str, Any]]) -> Any:
        return make_pipeline_from_config([dict(s) for s in steps], wavelengths)

    return make


def pls_predict_all_k(pls: Any, X: np.ndarray) -> np.ndarray:
    """Predictions of a fitted ``PLSRegression`` truncated to 1..n_components latent variables.

    Parameters
    ----------
    pls : sklearn.cross_decomposition.PLSRegression
        Fitted model with ``n_components = K``.
    X : ndarray, shape (n, p)

    Returns
    -------
    ndarray, shape (K, n, n_targets)
        Entry ``k - 1`` is what a ``k``-component model predicts.
    """
    Xc = (X - pls._x_mean) / pls._x_std
    T = Xc @ pls.x_rotations_  # (n, K) scores
    contrib = T[:, :, None] * pls.y_loadings_.T[None, :, :]  # (n, K, t)
    cum = np.cumsum(contrib, axis=1) * pls._y_std + pls._y_mean
    return np.transpose(cum, (1, 0, 2))


@dataclass(frozen=True)
class PlsTargetModel:
    """One fitted PLS model: its preprocessing candidate, latent variables and cross-validation curve.

    Parameters
    ----------
    targets : tuple of str
        Targets it predicts (one for PLS1 regression; the class label for PLS-DA).
    candidate : str
        Name of the preprocessing candidate chosen.
    n_components : int
        Latent variables chosen.
    preprocess : object
        Fitted preprocessing (``transform(X)``), fitted on all training rows.
    pls : sklearn.cross_decomposition.PLSRegression
        Fitted on all training rows.
    cv_curves : mapping of str to ndarray, shape (K,)
        Per candidate: RMSECV (regression) or CV error rate (classification) for 1..K latent variables, on the
        measured training rows (not on their line copies, when the calibration has some).
    """

    targets: tuple[str, ...]
    candidate: str
    n_components: int
    preprocess: Any
    pls: Any
    cv_curves: Mapping[str, np.ndarray] = field(default_factory=dict)

    def predict_raw(self, X_abs: np.ndarray) -> np.ndarray:
        """PLS response, shape (n, n_responses), for absorbance spectra ``X_abs`` (n, n_channels)."""
        Xp = flatten_features(self.preprocess.transform(np.asarray(X_abs, dtype=np.float64)))
        return np.asarray(self.pls.predict(Xp), dtype=np.float64).reshape(Xp.shape[0], -1)


@dataclass(frozen=True)
class PlsBaseline:
    """The PLS baseline of a run: one model per regression target, or one PLS-DA model for classification."""

    task: str
    target_names: tuple[str, ...]
    models: tuple[PlsTargetModel, ...]
    class_names: tuple[str, ...] | None = None

    def predict(self, X_abs: np.ndarray) -> np.ndarray:
        """Predictions, shape (n, n_targets): values for regression, class indices (int) for classification."""
        if self.task == "classification":
            scores = self.models[0].predict_raw(X_abs)
            return np.argmax(scores, axis=1)[:, None].astype(np.int64)
        return np.hstack([m.predict_raw(X_abs) for m in self.models])

    @property
    def components(self) -> dict[str, int]:
        """Latent variables per target."""
        return {", ".join(m.targets): m.n_components for m in self.models}

    @property
    def candidates(self) -> dict[str, str]:
        """Preprocessing candidate chosen per target."""
        return {", ".join(m.targets): m.candidate for m in self.models}


def _one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((labels.shape[0], n_classes))
    out[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1.0
    return out


def linear_map(pls: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients (n_features, n_responses), intercepts (n_responses,)) of a fitted PLS model: it is exactly
    linear, so they are its responses to the unit vectors and to zero."""
    b0 = np.asarray(pls.predict(np.zeros((1, n_features))), dtype=np.float64).reshape(-1)
    return np.asarray(pls.predict(np.eye(n_features)), dtype=np.float64).reshape(n_features, -1) - b0, b0


def cv_predictions_all_k(
    X: np.ndarray,
    Y: np.ndarray,
    steps: Sequence[Mapping[str, Any]],
    folds: list[tuple[np.ndarray, np.ndarray]],
    max_components: int,
    make_pre: PreprocessFactory,
    per_target: bool,
) -> np.ndarray:
    """Out-of-fold predictions for 1..K components: shape (K, n, n_responses)."""
    from sklearn.cross_decomposition import PLSRegression

    n, t = Y.shape
    K = max_components
    out = np.full((K, n, t), np.nan)
    for fit_idx, held_idx in folds:
        pre = make_pre(steps).fit(X[fit_idx], None)
        Xf = flatten_features(pre.transform(X[fit_idx]))
        Xh = flatten_features(pre.transform(X[held_idx]))
        k_fold = min(K, fit_idx.size - 1, Xf.shape[1])
        responses = [[j] for j in range(t)] if per_target else [list(range(t))]
        for cols in responses:
            pls = PLSRegression(n_components=k_fold, scale=False).fit(Xf, Y[fit_idx][:, cols])
            pred = pls_predict_all_k(pls, Xh)
            out[:k_fold, held_idx[:, None], cols] = np.transpose(pred, (0, 1, 2))
            if k_fold < K:  # fewer rows than components: repeat the largest model
                out[k_fold:, held_idx[:, None], cols] = pred[-1]
    return out


def fit_pls_baseline(
    X: np.ndarray,
    y: np.ndarray,
    *,
    candidates: Mapping[str, Sequence[Mapping[str, Any]]],
    groups: np.ndarray,
    target_names: Sequence[str],
    task: str = "regression",
    class_names: Sequence[str] | None = None,
    folds: int = 10,
    max_components: int = 20,
    seed: int = 0,
    wavelengths: np.ndarray | None = None,
    make_preprocess: PreprocessFactory | None = None,
    measured_rows: int | None = None,
    warn_at_cap: bool = True,
) -> PlsBaseline:
    """Choose preprocessing and latent variables by grouped CV on the training rows, then refit on all of them.

    Parameters
    ----------
    X : ndarray, shape (n_train, n_channels)
        Training spectra (absorbance), the only rows this function sees.
    y : ndarray, shape (n_train, n_targets)
        Reference values (class indices, shape (n_train, 1), for classification).
    candidates : mapping of str to list of step tables
        Preprocessing candidates by name.
    groups : ndarray, shape (n_train,)
        Group of each training row; cross-validation keeps groups together.
    folds, max_components, seed : int
        Cross-validation folds, largest number of latent variables tried, fold shuffling seed.
    wavelengths : ndarray, shape (n_channels,), optional
        Axis handed to the default preprocessing factory (:func:`trainer.preprocessing.make_pipeline_from_config`).
    make_preprocess : callable, optional
        Factory from a step list to an unfitted preprocessing estimator; defaults to the trainer's own.
    measured_rows : int, optional
        When the rows after the first ``measured_rows`` are line copies of them (``[instrument.noise]
        calibration_copies``, :func:`trainer.line_noise.with_line_copies`): the preprocessing and latent variables
        are chosen on the cross-validation error of all rows (mostly as the line measures), and the curves kept in
        the models
        (``cv_curves``, what the champion rule compares with the CNN's) are those of the measured rows alone.
    warn_at_cap : bool
        Warn when a choice sits at ``max_components`` while the rows allowed more (off for the nested fits inside
        the champion rule, which would repeat the baseline's warning once per fold).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    y = y[:, None] if y.ndim == 1 else y
    if X.shape[0] != y.shape[0] or X.shape[0] != groups.shape[0]:
        raise CalibrationError(
            f"expected X, y and groups with the same rows, got {X.shape[0]}, {y.shape[0]} and {groups.shape[0]}"
        )
    if not candidates:
        raise CalibrationError("expected at least one preprocessing candidate, got none")
    if make_preprocess is None:
        if wavelengths is None:
            raise CalibrationError("wavelengths are needed to build the preprocessing candidates")
        make_preprocess = _default_factory(wavelengths)
    classify = task == "classification"
    if classify:
        n_classes = len(class_names) if class_names is not None else int(y.max()) + 1
        Y = _one_hot(y[:, 0], n_classes)
        fold_list = grouped_folds(groups, folds, seed=seed, y_class=y[:, 0])
    else:
        Y = y.astype(np.float64)
        fold_list = grouped_folds(groups, folds, seed=seed)
    smallest_fit = min(f.size for f, _ in fold_list)
    K = max(1, min(max_components, smallest_fit - 1, X.shape[1]))

    curves: dict[str, np.ndarray] = {}  # candidate -> (K, n_targets) CV figure, lower is better
    measured: dict[str, np.ndarray] = {}  # the same on the measured rows alone (= curves without line copies)
    m_rows = X.shape[0] if measured_rows is None else int(measured_rows)
    for name, steps in candidates.items():
        try:
            pred = cv_predictions_all_k(X, Y, steps, fold_list, K, make_preprocess, per_target=not classify)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise CalibrationError(f"preprocessing candidate {name!r}: PLS cross-validation failed ({exc})") from exc
        if classify:
            wrong = np.argmax(pred, axis=2) != y[None, :, 0]
            curves[name] = wrong.mean(axis=1)[:, None]
            measured[name] = wrong[:, :m_rows].mean(axis=1)[:, None]
        else:
            curves[name] = np.sqrt(np.mean((pred - Y[None]) ** 2, axis=1))
            measured[name] = np.sqrt(np.mean((pred[:, :m_rows] - Y[None, :m_rows]) ** 2, axis=1))
        log.info(
            "PLS CV %-16s best %s%s",
            name,
            ", ".join(f"{curves[name][:, j].min():.4g} @ {int(np.argmin(curves[name][:, j])) + 1} LV"
                      for j in range(curves[name].shape[1])),
            "" if m_rows == X.shape[0] else " with the line copies; the measured rows alone: " + ", ".join(
                f"{measured[name][:, j].min():.4g} @ {int(np.argmin(measured[name][:, j])) + 1} LV"
                for j in range(measured[name].shape[1])),
        )

    from sklearn.cross_decomposition import PLSRegression

    def refit(cols: list[int], j: int, targets: tuple[str, ...]) -> PlsTargetModel:
        best_name, best_k, best_v = "", 1, np.inf
        for name, curve in curves.items():
            k = int(np.argmin(curve[:, j]))
            if curve[k, j] < best_v - 1e-12:
                best_name, best_k, best_v = name, k + 1, float(curve[k, j])
        if warn_at_cap and best_k == K == max_components < min(smallest_fit - 1, X.shape[1]):
            log.warning("PLS %s: cross-validation chose %d latent variables (%s), the most [cv] max_components "
                        "allows, and a larger one was possible: the error may still fall with more; raise "
                        "max_components and compare", ", ".join(targets), best_k, best_name)
        pre = make_preprocess(candidates[best_name]).fit(X, None)
        Xp = flatten_features(pre.transform(X))
        k_final = min(best_k, Xp.shape[0] - 1, Xp.shape[1])
        pls = PLSRegression(n_components=k_final, scale=False).fit(Xp, Y[:, cols])
        return PlsTargetModel(
            targets=targets,
            candidate=best_name,
            n_components=k_final,
            preprocess=pre,
            pls=pls,
            cv_curves={n: c[:, j].copy() for n, c in measured.items()},
        )

    models: tuple[PlsTargetModel, ...]
    if classify:
        models = (refit(list(range(Y.shape[1])), 0, tuple(target_names)),)
    else:
        models = tuple(refit([j], j, (t,)) for j, t in enumerate(target_names))
    for m in models:
        log.info("PLS %s: preprocessing %s, %d latent variables", ", ".join(m.targets), m.candidate, m.n_components)
    return PlsBaseline(
        task=task,
        target_names=tuple(target_names),
        models=models,
        class_names=tuple(class_names) if class_names is not None else None,
    )
