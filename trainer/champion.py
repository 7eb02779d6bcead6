"""Which model the bundle carries: the CNN or PLS, chosen by grouped cross-validation on the training rows, and PLS
made deployable through the same bundle and edge runtime.

The rule (documented in docs/training.md, reported in ``metrics.json`` under ``selection``):

- each candidate is scored per target by its out-of-fold RMSE on the training rows, grouped by the same column:
  PLS by the out-of-fold RMSE of its chosen preprocessing and latent variables (chosen on ``[cv] folds``,
  :mod:`trainer.pls`) on the CNN's folds (:func:`trainer.pipeline.choose.pls_on_cnn_folds`: both fitted on the
  same rows), the CNN by training the configured recipe (preprocessing fitted per fold, augmentation, no
  selection rows: the held-out fold is never seen, not even for choosing the kept epoch) on each fold's fitting
  rows (``[selection] cnn_cv_folds``);
- the CNN's figure is multiplied by its int8 cost (int8 RMSE / float RMSE of the final model on the selection rows;
  without any, on the training rows with the int8 change of each row added to its out-of-fold residual:
  :func:`trainer.pipeline.choose.int8_cost_on`), because the int8 model is what would be deployed;
- the rule is applied per target: the CNN serves a target only when its figure is better than PLS's by more than
  ``tie_margin`` (CNN/PLS < 1 - ``tie_margin``); otherwise PLS, the simpler model, serves it. When the CNN wins
  every target the bundle carries the CNN, when it wins none PLS, otherwise both (``winner`` ``per_target``: a
  format-4 bundle, :mod:`edge.bundle.serving`, each target served by its winner). ``--model cnn|pls`` forces one
  model for every target (the scores are then still reported when computed);
- then, per target the CNN won (``[selection] blend``, on by default), a *blend* ``(1 - w) * CNN + w * PLS`` may
  serve it instead; a target PLS won stays PLS alone (the CNN lost it and is not shipped there, not even in part).
  ``w`` is chosen on a grid (:data:`BLEND_GRID`) by the out-of-fold RMSE of the averaged out-of-fold predictions of
  every training row (the CNN's from its cross-validation, PLS's from nested cross-validation, its preprocessing
  and latent variables chosen again in each fold, as its intervals use), and the blend serves only when that RMSE,
  with the CNN's int8 cost on its share, beats the better of the two single models' (the same out-of-fold
  predictions) by more than ``tie_margin``. Two models whose errors are not fully correlated average to a smaller
  error than either (model averaging): a blend hedges a CNN that won in cross-validation with the PLS. The
  bundle then carries both (format 5, ``serving.weights``).

Classification: PLS-DA competes too, made deployable by a softmax of its responses whose temperature is fitted on
their out-of-fold values (:func:`deployable_plsda`: class probabilities, as the CNN's softmax gives). The
candidates are scored by their error rate over every row that can judge them (:func:`pooled_error`): the training
rows out of fold (grouped, class-stratified folds: PLS-DA's ``[cv] folds`` of its chosen recipe, the CNN's recipe
trained on each of ``[selection] cnn_cv_folds`` folds as for a regression) and the selection rows where the split
names them (the CNN there as its int8 model), each part weighted by its rows. A few dozen selection rows alone
move an error rate by several points per spectrum. The CNN is deployed only when its error rate is lower than
PLS-DA's by more than ``tie_margin`` (relative), otherwise PLS-DA, the simpler model, is (both perfect is a tie).

A deployed PLS model is its preprocessing (the edge steps, as for the CNN; targets that chose different candidates
get them stacked, :mod:`trainer.pls_deploy`) and one dense layer holding the PLS regression coefficients and
intercepts, converted to a float32 ``.tflite`` so it runs in the same LiteRT runtime,
with the same OOD statistics, intervals, drift monitors and golden self-test as a CNN bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.errors import TrainConfigError
from trainer.pls import PlsBaseline, flatten_features
from trainer.pls_deploy import DeployablePls, deployable_pls, deployable_plsda, fit_temperature, softmax
from trainer.splits import grouped_folds

__all__ = ["MODES", "PER_TARGET", "BLEND", "BLEND_GRID", "Selection", "blend_weight", "DeployablePls",
           "class_rows_fn", "cnn_cv_predictions", "pls_cv_rmse", "choose_model", "pooled_error", "deployable_pls",
           "deployable_plsda", "fit_temperature", "pls_cv_predictions", "softmax"]

log = logging.getLogger(__name__)

#: ``--model`` choices.
MODES = ("auto", "cnn", "pls")
#: ``winner`` (and ``metrics.json`` ``deployed_model``) when the CNN serves some targets and PLS the others.
PER_TARGET = "per_target"
#: ``per_target`` value of a target served by a weighted average of the CNN and PLS.
BLEND = "blend"
#: PLS's weights tried for a blend (0 and 1 are the single models).
BLEND_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass(frozen=True)
class Selection:
    """The decision and what it rests on (``metrics.json`` ``selection``)."""

    winner: str
    mode: str
    rule: str
    reason: str
    cv_rmse: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    int8_cost: Mapping[str, float] = field(default_factory=dict)
    ratio_cnn_to_pls: Mapping[str, float] = field(default_factory=dict)
    folds: int = 0
    #: The model serving each target (``cnn`` or ``pls``), in target order.
    per_target: Mapping[str, str] = field(default_factory=dict)
    #: Why, per target.
    per_target_reason: Mapping[str, str] = field(default_factory=dict)
    #: PLS's weight in each blended target (``per_target`` ``blend``): the target is (1 - w) * CNN + w * PLS.
    blend_weights: Mapping[str, float] = field(default_factory=dict)
    #: How ``int8_cost`` was measured (:func:`trainer.pipeline.choose.int8_cost_on`): ``held_out`` (the selection
    #: rows), ``out_of_fold`` (the training rows' out-of-fold residuals with the int8 change added), ``in_sample``
    #: (the final CNN on its training rows, without the CNN's cross-validation); None when not measured.
    int8_cost_basis: str | None = None

    @property
    def split(self) -> bool:
        """Some targets are served by the CNN, the others by PLS."""
        return self.winner == PER_TARGET

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_target": dict(self.per_target),
            "per_target_reason": dict(self.per_target_reason),
            "blend_weights": dict(self.blend_weights),
            "winner": self.winner,
            "mode": self.mode,
            "rule": self.rule,
            "reason": self.reason,
            "cv_rmse": {m: dict(v) for m, v in self.cv_rmse.items()},
            "int8_cost": dict(self.int8_cost),
            "int8_cost_basis": self.int8_cost_basis,
            "ratio_cnn_to_pls": dict(self.ratio_cnn_to_pls),
            "folds": self.folds,
        }


def rule_text(tie_margin: float) -> str:
    """The champion rule in one sentence."""
    return (
        "out-of-fold RMSE on the training rows (grouped folds), the CNN's times its int8/float cost; per target, "
        f"the CNN serves it only if better than PLS by more than {100 * tie_margin:g} %, otherwise PLS (the simpler "
        "model wins a tie); then a blend (1 - w) CNN + w PLS serves a target the CNN won where its out-of-fold RMSE "
        f"(PLS nested) beats both models' by more than {100 * tie_margin:g} %; the bundle carries the models that "
        "serve a target"
    )


def classification_rule_text(tie_margin: float) -> str:
    """The champion rule of a classification in one sentence."""
    return ("error rate over the training rows out of fold (grouped, class-stratified folds) and the selection rows "
            "where the split names them (the int8 CNN there; without them, a training row whose class the int8 CNN "
            "changes counts with its int8 class), PLS-DA (softmax of its responses) against the CNN: the CNN is "
            f"deployed only if better than PLS-DA by more than {100 * tie_margin:g} %, otherwise PLS-DA (the simpler "
            "model wins a tie)")


def blend_weight(y: np.ndarray, cnn: np.ndarray, pls: np.ndarray, *, cnn_cost: float = 1.0) -> tuple[float, float]:
    """The PLS weight ``w`` of :data:`BLEND_GRID` whose blend ``(1 - w) * cnn + w * pls`` has the smallest RMSE
    against ``y`` (one target's out-of-fold predictions), and that RMSE times the int8 cost of the CNN's share,
    ``1 + (1 - w) * (cnn_cost - 1)``."""
    y, cnn, pls = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (y, cnn, pls))
    best = (float("nan"), float("inf"))
    for w in BLEND_GRID:
        rmse = float(np.sqrt(np.mean(((1.0 - w) * cnn + w * pls - y) ** 2))) * (1.0 + (1.0 - w) * (cnn_cost - 1.0))
        if rmse < best[1]:
            best = (w, rmse)
    return best


def pls_cv_rmse(pls: PlsBaseline) -> np.ndarray:
    """RMSECV of each target's chosen PLS model (candidate and latent variables), shape (n_targets,)."""
    out = []
    for m in pls.models:
        curve = np.asarray(m.cv_curves[m.candidate], dtype=np.float64)
        out.append(float(curve[m.n_components - 1]))
    return np.asarray(out)


def cnn_cv_predictions(
    X: np.ndarray,
    Y: np.ndarray,
    groups: np.ndarray,
    *,
    make_pre: Callable[[], Any],
    augment_fn: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    train_fn: Callable[[np.ndarray, np.ndarray, int], Any],
    predict_fn: Callable[[Any, np.ndarray], np.ndarray],
    folds: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
    fold_seed: int | None = None,
    on_fold: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    pretrain_fn: Callable[[Any, int], Any] | None = None,
    y_class: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold predictions of the CNN recipe, shape (n, n_targets) (the RMSE per target is the CV score).

    Parameters
    ----------
    X, Y : ndarray, shapes (n, n_channels) and (n, n_targets)
        Training spectra (absorbance) and reference values.
    groups : ndarray, shape (n,)
        Rows of a group stay in one fold.
    make_pre : callable
        Returns an unfitted preprocessing estimator (``fit(X)``, ``transform(X)``).
    augment_fn, train_fn, predict_fn : callable
        ``augment_fn(X, y, seed) -> (X_aug, y_aug)``, ``train_fn(X_pre, y, seed) -> model``,
        ``predict_fn(model, X_pre) -> (n, n_targets)``.
    folds, seed : int
        Fold count; ``seed`` seeds the folds (unless ``fold_seed``), the augmentation and the training
        (``seed + fold``).
    progress : callable, optional
        Called with one line per fold.
    fold_seed : int, optional
        Seed of the fold assignment when it differs from ``seed`` (the same folds, other training seeds: the
        seed-to-seed spread of :mod:`trainer.search`).
    on_fold : callable, optional
        ``on_fold(i, pred, done)`` after fold ``i`` (0-based): the predictions so far (NaN where not yet predicted)
        and a boolean mask of the rows predicted so far. It may raise to stop (the search prunes trials this way).
    pretrain_fn : callable, optional
        ``pretrain_fn(pre, seed) -> trunks`` with the fold's fitted preprocessing: pretrained trunks
        (:mod:`trainer.pretrain`), then handed to ``train_fn(X_pre, y, seed, trunks)``.
    y_class : ndarray, shape (n,), optional
        Class indices of a classification: the folds are class-stratified, ``predict_fn`` returns class
        probabilities (n, n_classes; the returned predictions have that shape) and each fold logs its error rate.
    """
    fold_list = grouped_folds(groups, folds, seed=seed if fold_seed is None else fold_seed, y_class=y_class)
    done = np.zeros(Y.shape[0], dtype=bool)
    pred = np.full(Y.shape, np.nan) if y_class is None else None  # a classification's: its probabilities' width
    for i, (fit_idx, held_idx) in enumerate(fold_list):
        pre = make_pre().fit(X[fit_idx])
        X_aug, y_aug = augment_fn(X[fit_idx], Y[fit_idx], seed + i)
        if pretrain_fn is None:
            model = train_fn(pre.transform(X_aug), y_aug, seed + i)
        else:
            model = train_fn(pre.transform(X_aug), y_aug, seed + i, pretrain_fn(pre, seed + i))
        out = np.asarray(predict_fn(model, pre.transform(X[held_idx])), dtype=np.float64).reshape(held_idx.size, -1)
        if pred is None:
            pred = np.full((Y.shape[0], out.shape[1]), np.nan)
        pred[held_idx] = out
        if y_class is None:
            rmse = np.sqrt(np.nanmean((pred[held_idx] - Y[held_idx]) ** 2, axis=0))
            msg = f"CNN CV fold {i + 1}/{len(fold_list)}: RMSE " + ", ".join(f"{v:.4g}" for v in rmse)
        else:
            wrong = np.argmax(pred[held_idx], axis=1) != np.asarray(y_class)[held_idx]
            msg = f"CNN CV fold {i + 1}/{len(fold_list)}: error rate {float(np.mean(wrong)):.4g}"
        log.info(msg)
        if progress is not None:
            progress(msg)
        done[held_idx] = True
        if on_fold is not None:
            on_fold(i, pred, done)
    assert pred is not None
    return pred


def class_rows_fn(rows_fn: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                  dtype: Any) -> Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """A CNN training-set function ``rows_fn(X, y, seed)`` of class labels, fed as :func:`cnn_cv_predictions`
    hands a classification's labels over (one column): flattened back to ``dtype``."""
    return lambda X, y, seed: rows_fn(X, np.asarray(y)[:, 0].astype(dtype), seed)


def pls_cv_predictions(
    dep: DeployablePls,
    X: np.ndarray,
    Y: np.ndarray,
    groups: np.ndarray,
    *,
    make_pre: Callable[[Sequence[Mapping[str, Any]]], Any],
    folds: int,
    seed: int,
    fold_pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Out-of-fold predictions (n, n_targets) of the deployable PLS recipe (its preprocessing ``dep.steps`` and each
    target's latent variables, on its stack branch where it has one), with grouped folds, or on the given
    ``fold_pairs`` (fit, held-out positions into ``X``; rows in no held-out part stay NaN)."""
    from sklearn.cross_decomposition import PLSRegression

    pred = np.full(Y.shape, np.nan)
    for fit_idx, held_idx in (grouped_folds(groups, folds, seed=seed) if fold_pairs is None else fold_pairs):
        pre = make_pre(dep.steps).fit(X[fit_idx])
        Pf, Ph = pre.transform(X[fit_idx]), pre.transform(X[held_idx])
        for j, k in enumerate(dep.n_components.values()):
            b = None if dep.branch_of is None else dep.branch_of[j]
            Xf, Xh = (flatten_features(P if b is None else P[..., b]) for P in (Pf, Ph))
            kk = min(k, Xf.shape[0] - 1, Xf.shape[1])
            reg = PLSRegression(n_components=kk, scale=False).fit(Xf, Y[fit_idx, j])
            pred[held_idx, j] = np.asarray(reg.predict(Xh), dtype=np.float64).reshape(-1)
    return pred


def choose_model(
    target_names: Sequence[str],
    *,
    mode: str,
    tie_margin: float,
    pls_rmse: np.ndarray | None,
    cnn_rmse: np.ndarray | None,
    pls_tuned_rmse: np.ndarray | None = None,
    pls_own_folds: np.ndarray | None = None,
    int8_cost: np.ndarray | None,
    folds: int,
    classification: bool = False,
    oof: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    select_error: tuple[float, float] | None = None,
    class_rows: tuple[int, int] = (0, 0),
    cnn_int8_oof: float | None = None,
) -> Selection:
    """Apply the champion rule (module docstring) or a forced ``mode``.

    A classification is decided by its error rates (:func:`pooled_error`): ``pls_rmse`` and ``cnn_rmse`` are then
    PLS-DA's and the CNN's out-of-fold error rates on the training rows (each None when not computed: no deployable
    PLS-DA was built, the CNN was not cross-validated), ``select_error`` those of PLS-DA and of the int8 CNN on the
    selection rows (None without them) and ``class_rows`` the numbers of training and selection rows. Without
    selection rows ``cnn_int8_oof`` (the CNN's out-of-fold error rate with its int8 model's class changes,
    :func:`trainer.pipeline.choose.class_int8_oof_error`) judges the CNN in place of its float rate.

    ``oof`` (``y``, the CNN's and PLS's out-of-fold predictions of the training rows, each (n, n_targets)) lets a
    blend of the two serve a target (``auto`` only); None, or any non-finite prediction, keeps single models.
    """
    if mode not in MODES:
        raise TrainConfigError(f"model: expected one of {', '.join(MODES)}, got {mode!r}")
    names = [str(t) for t in target_names]
    rule = classification_rule_text(tie_margin) if classification else rule_text(tie_margin)
    scores: dict[str, dict[str, float]] = {}
    if pls_rmse is not None:
        scores["pls"] = dict(zip(names, map(float, pls_rmse)))
    if pls_tuned_rmse is not None:
        scores["pls_per_target_preprocessing"] = dict(zip(names, map(float, pls_tuned_rmse)))
    if pls_own_folds is not None:  # pls: on the CNN's folds; this: the same PLS on its own [cv] folds
        scores["pls_own_folds"] = dict(zip(names, map(float, pls_own_folds)))
    cost = np.ones(len(names)) if int8_cost is None else np.asarray(int8_cost, dtype=np.float64)
    ratios: dict[str, float] = {}
    if cnn_rmse is not None:
        scores["cnn_float"] = dict(zip(names, map(float, cnn_rmse)))
    if cnn_rmse is not None and not classification:
        scores["cnn_int8_estimate"] = dict(zip(names, map(float, np.asarray(cnn_rmse) * cost)))
        if pls_rmse is not None:
            ratios = dict(zip(names, map(float, np.asarray(cnn_rmse) * cost / np.asarray(pls_rmse))))
    common = dict(mode=mode, rule=rule, cv_rmse=scores, int8_cost=dict(zip(names, map(float, cost))),
                  ratio_cnn_to_pls=ratios, folds=folds)
    if classification:
        errors = None
        sel_pls, sel_cnn = (None, None) if select_error is None else select_error
        if cnn_int8_oof is not None and cnn_rmse is not None and select_error is None:
            scores["cnn_int8_oof"] = dict.fromkeys(names, float(cnn_int8_oof))
        if pls_rmse is not None and (cnn_rmse is not None or select_error is not None):
            # Out of fold only where both were cross-validated: each model is judged on the same rows.
            cv_pls, cv_cnn = (None, None) if cnn_rmse is None else (float(pls_rmse[0]), float(cnn_rmse[0]))
            int8_oof = "cnn_int8_oof" in scores  # set above only with the CNN's out-of-fold rate
            if int8_oof:
                cv_cnn = scores["cnn_int8_oof"][names[0]]
            basis = " and ".join(
                text for text, used in ((f"{class_rows[0]} training rows out of fold"
                                         + (" (the CNN with its int8 class changes)" if int8_oof else ""),
                                         cv_cnn is not None),
                                        (f"{class_rows[1]} selection rows", sel_cnn is not None and class_rows[1] > 0))
                if used)
            errors = (pooled_error(cv_pls, sel_pls, class_rows), pooled_error(cv_cnn, sel_cnn, class_rows),
                      f"error rate over {basis}")
        winner, why = _classification_winner(mode, tie_margin, pls_rmse is not None, select_error, errors, scores,
                                             names)
        return Selection(winner=winner, reason=why, per_target=dict.fromkeys(names, winner),
                         per_target_reason=dict.fromkeys(names, why), **common)
    if mode != "auto":
        why = f"forced by --model {mode}"
        return Selection(winner=mode, reason=why, per_target=dict.fromkeys(names, mode),
                         per_target_reason=dict.fromkeys(names, why), **common)
    if not ratios:
        raise TrainConfigError("model selection needs cross-validation scores of both PLS and the CNN")
    per_target, why_target = {}, {}
    for t, r in ratios.items():
        if r < 1.0 - tie_margin:
            per_target[t], why_target[t] = "cnn", f"CNN better in cross-validation: CNN/PLS RMSE {r:.3f}"
        elif r > 1.0:
            per_target[t], why_target[t] = "pls", f"PLS better in cross-validation: CNN/PLS RMSE {r:.3f}"
        else:
            per_target[t], why_target[t] = "pls", (f"a tie within {100 * tie_margin:g} %: CNN/PLS RMSE {r:.3f}; "
                                                   "the simpler model wins")
    # Only where the CNN won: a blend hedges a winning CNN with PLS; where PLS won, PLS is deployed alone.
    won = [t for t in names if per_target[t] == "cnn"]
    blends = _blends(names, won, oof, cost, tie_margin, scores) if oof is not None else {}
    for t, (w, why) in blends.items():
        per_target[t], why_target[t] = BLEND, why
    served = set(per_target.values())
    winner = next(iter(served)) if len(served) == 1 and BLEND not in served else PER_TARGET
    if len(names) == 1:
        reason = why_target[names[0]]
    elif winner == PER_TARGET:
        reason = "per target: " + "; ".join(f"{t} {per_target[t].upper()} ({why_target[t]})" for t in names)
    else:
        t = max(ratios, key=lambda k: ratios[k])  # the CNN's worst target
        reason = f"{winner.upper()} serves every target; {t}: {why_target[t]}"
    return Selection(winner=winner, reason=reason, per_target=per_target, per_target_reason=why_target,
                     blend_weights={t: w for t, (w, _) in blends.items()}, **common)


def pooled_error(cv_error: float | None, select_error: float | None, rows: tuple[int, int]) -> float:
    """A model's classification error rate over every row that judged it: its out-of-fold error rate on the
    ``rows[0]`` training rows and its error rate on the ``rows[1]`` selection rows, weighted by their rows (either
    may be None: not computed)."""
    parts = [(e, n) for e, n in zip((cv_error, select_error), rows) if e is not None and n > 0]
    if not parts:
        raise TrainConfigError("model selection needs error rates of both PLS-DA and the CNN")
    return sum(e * n for e, n in parts) / sum(n for _, n in parts)


def _classification_winner(mode: str, tie_margin: float, have_pls: bool, select_error: tuple[float, float] | None,
                            errors: tuple[float, float, str] | None, scores: dict[str, dict[str, float]],
                            names: Sequence[str]) -> tuple[str, str]:
    """(winner, why) of a classification (module docstring) from the pooled error rates ``errors`` (PLS-DA, CNN,
    the rows they were counted on); records the selection rows' and the pooled error rates in ``scores``."""
    if select_error is not None:
        scores["select_error_pls_da"] = dict.fromkeys(names, float(select_error[0]))
        scores["select_error_cnn_int8"] = dict.fromkeys(names, float(select_error[1]))
    if errors is not None:
        scores["pooled_error_pls_da"] = dict.fromkeys(names, float(errors[0]))
        scores["pooled_error_cnn"] = dict.fromkeys(names, float(errors[1]))
    if mode != "auto" or not have_pls:
        winner = mode if mode != "auto" and (mode == "cnn" or have_pls) else "cnn"
        return winner, (f"forced by --model {mode}" if mode != "auto" else "no deployable PLS-DA: the CNN is deployed")
    if errors is None:
        return "cnn", "classification without error rates to compare PLS-DA and the CNN on: the CNN is deployed"
    e_pls, e_cnn, basis = errors
    figures = f"{basis}: CNN {e_cnn:.4f}, PLS-DA {e_pls:.4f}"
    if e_cnn < (1.0 - tie_margin) * e_pls:
        return "cnn", f"CNN better: {figures}"
    if e_cnn > e_pls:
        return "pls", f"PLS-DA better: {figures}"
    return "pls", f"a tie within {100 * tie_margin:g} %: {figures}; the simpler model wins"


def _blends(names: Sequence[str], candidates: Sequence[str], oof: tuple[np.ndarray, np.ndarray, np.ndarray],
            cost: np.ndarray, tie_margin: float, scores: dict[str, dict[str, float]]) -> dict[str, tuple[float, str]]:
    """The targets a blend serves, among ``candidates`` (the targets the CNN won): ``{target: (PLS weight, why)}``;
    fills ``scores`` with the out-of-fold figures the decision rests on (``cnn_int8_oof``, ``pls_nested`` and
    ``blend``, each target's best blend)."""
    y, cnn, pls = (np.asarray(a, dtype=np.float64) for a in oof)
    if not (y.shape == cnn.shape == pls.shape and np.all(np.isfinite(cnn)) and np.all(np.isfinite(pls))):
        log.info("no blend: the out-of-fold predictions of both models are needed on every training row")
        return {}
    out: dict[str, tuple[float, str]] = {}
    for key in ("cnn_int8_oof", "pls_nested", "blend"):
        scores[key] = {}
    for j, t in enumerate(names):
        e_cnn = float(np.sqrt(np.mean((cnn[:, j] - y[:, j]) ** 2))) * float(cost[j])
        e_pls = float(np.sqrt(np.mean((pls[:, j] - y[:, j]) ** 2)))
        w, e_blend = blend_weight(y[:, j], cnn[:, j], pls[:, j], cnn_cost=float(cost[j]))
        scores["cnn_int8_oof"][t], scores["pls_nested"][t] = e_cnn, e_pls
        scores["blend"][t] = e_blend
        if t in candidates and e_blend < (1.0 - tie_margin) * min(e_cnn, e_pls):
            out[t] = (w, f"a blend {1 - w:.2f} CNN + {w:.2f} PLS beats both out of fold: RMSE {e_blend:.4g} against "
                         f"CNN {e_cnn:.4g}, PLS {e_pls:.4g} (nested)")
        log.info("blend of %s: PLS weight %.2f, out-of-fold RMSE %.4g against CNN %.4g, PLS %.4g: %s", t, w,
                 e_blend, e_cnn, e_pls, "serves" if t in out else "PLS won the target: PLS serves it alone"
                 if t not in candidates else "not better by the margin")
    return out
