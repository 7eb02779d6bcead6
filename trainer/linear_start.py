"""A regression CNN's linear path started at PLS (``[model] linear_start = "pls"``): the network learns what PLS
leaves.

A linear path (``[model] linear_path``) makes the CNN's output ``W_h h + W_x x + b``: a linear model of its input
``x`` plus the network's nonlinear features ``h``. Trained from a random start, with L2 pulling ``W_x`` towards 0,
that linear part is a poor PLS on small calibration sets, and the network can end up worse than the PLS it should
improve on. Here ``W_x`` and ``b`` start at a PLS model of the CNN's own input, and the network trains on the
PLS residual (on standardised targets): its L2 now pulls towards PLS, not towards 0, and early in training it *is*
PLS. After training the PLS coefficients are added back into the output layer, so the deployed graph is the same
architecture as without the option (one Dense output layer; nothing changes for int8, the bundle or the edge).

The PLS model (scikit-learn's ``PLSRegression``, one per target, centred, unscaled, as :mod:`trainer.pls`) is fitted
on the rows the CNN trains on, augmented copies included; its latent variables are chosen per target by the
lowest grouped ``FOLDS``-fold cross-validation RMSE over 1..``MAX_COMPONENTS``. Augmented copies of a spectrum
share its reference values exactly, so rows are grouped by their reference values: a spectrum and its copies never
fall on both sides of a fold (no leak into the choice). On targets of a few discrete levels that grouping holds out
whole levels (a conservative choice of latent variables); with fewer than 2 rows in a fold one latent variable.

What is merged is a weight like any other afterwards: pruning's fine-tuning (``[pruning]``) and a transfer
fine-tuning recompile the network with the output layer's L2, which then pulls the PLS coefficients and the
network's corrections together towards 0, and magnitude pruning treats the PLS rows of the head as any weights.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.pls import flatten_features, linear_map, pls_predict_all_k
from trainer.splits import grouped_folds

__all__ = ["LinearStart", "fit_linear_start"]

log = logging.getLogger(__name__)

#: Latent variables tried per target (fewer when the rows or channels allow fewer).
MAX_COMPONENTS = 20
#: Folds of the grouped cross-validation that chooses them.
FOLDS = 5


@dataclass(frozen=True)
class LinearStart:
    """A linear model of the CNN's (flattened) input in standardised target units: ``x @ coef + intercept``."""

    coef: np.ndarray  # (n_features, n_targets)
    intercept: np.ndarray  # (n_targets,)
    n_components: tuple[int, ...]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_targets)`` float32 predictions for inputs of the CNN's shape."""
        return (flatten_features(np.asarray(X, dtype=np.float64)) @ self.coef + self.intercept).astype(np.float32)

    def add_to_head(self, member: Any) -> None:
        """Add the coefficients to a trained member's output layer: its rows for the linear path (the last
        ``n_features`` rows of the kernel, :func:`trainer.models.build_cnn` concatenates ``[h, x]``) and its bias."""
        out = member.layers[-1]
        kernel, bias = out.get_weights()
        n = self.coef.shape[0]
        if kernel.shape[0] <= n or kernel.shape[1] != self.coef.shape[1]:
            raise ValueError(f"expected an output kernel of more than {n} rows and {self.coef.shape[1]} columns "
                             f"(a linear path), got {kernel.shape}")
        kernel = kernel.copy()
        kernel[-n:] += self.coef.astype(kernel.dtype)
        out.set_weights([kernel, (bias + self.intercept).astype(bias.dtype)])


def fit_linear_start(X: np.ndarray, y: np.ndarray, *, seed: int) -> LinearStart:
    """PLS of ``y`` (n, n_targets), standardised, on the CNN's inputs ``X``, latent variables by grouped CV."""
    from sklearn.cross_decomposition import PLSRegression

    Xf = flatten_features(np.asarray(X, dtype=np.float64))
    Y = np.asarray(y, dtype=np.float64).reshape(len(Xf), -1)
    _, groups = np.unique(Y, axis=0, return_inverse=True)
    n_groups = int(groups.max()) + 1
    if n_groups < 2:  # one reference value for every row: nothing to regress
        return LinearStart(coef=np.zeros((Xf.shape[1], Y.shape[1])), intercept=Y[0].copy(),
                           n_components=(0,) * Y.shape[1])
    folds = grouped_folds(groups.ravel(), min(FOLDS, n_groups), seed=seed)
    smallest_fit = min(len(fit) for fit, _ in folds)
    k_max = max(1, min(MAX_COMPONENTS, Xf.shape[1], smallest_fit - 1))
    coefs, intercepts, chosen = [], [], []
    with warnings.catch_warnings():
        # A fold (or a whole target) with one reference value: sklearn warns that y's residual is constant; its
        # predictions are then that value, which the CV scores as any other.
        warnings.filterwarnings("ignore", message=".*residual is constant.*")
        for j in range(Y.shape[1]):
            sq = np.zeros(k_max)
            if smallest_fit >= 2:  # too few rows to cross-validate: one latent variable
                for fit, held in folds:
                    pls = PLSRegression(n_components=k_max, scale=False).fit(Xf[fit], Y[fit, j])
                    sq += np.sum((pls_predict_all_k(pls, Xf[held])[:, :, 0] - Y[held, j][None, :]) ** 2, axis=1)
            k = int(np.argmin(sq)) + 1
            c, b0 = linear_map(PLSRegression(n_components=k, scale=False).fit(Xf, Y[:, j]), Xf.shape[1])
            coefs.append(c[:, 0])
            intercepts.append(float(b0[0]))
            chosen.append(k)
            log.info("linear start: PLS of target %d with %d latent variables (grouped %d-fold CV RMSE %.4f sd)",
                     j, k, len(folds), float(np.sqrt(sq[k - 1] / len(Xf))))
    return LinearStart(coef=np.stack(coefs, axis=1), intercept=np.asarray(intercepts), n_components=tuple(chosen))
