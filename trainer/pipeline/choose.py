"""Stage "choose the deployed model": the CNN, a deployable PLS, or both with each target served by its winner
(:mod:`trainer.champion`), and what the bundle then carries (model bytes, preprocessing, output transform per
member)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.pipeline.baseline import pls_calibration_rows
from trainer.pipeline.cnn import CnnCv, TrainedNetwork
from trainer.pipeline.int8 import Int8Network, Predictions
from trainer.pipeline.prepare import Prepared
from trainer.pipeline.recipe import Recipe

log = logging.getLogger(__name__)

#: From this many training rows on, the PLS's nested cross-validation (its residuals calibrate the intervals of a
#: deployed PLS and score a blend) runs at most NESTED_LARGE_FOLDS outer and inner folds, not ``[cv] folds``: a fit on
#: 80 % instead of 90 % of a thousand rows changes little, and 10 x 10 folds of PLS on thousands of long spectra take
#: minutes (2,000 spectra of 1,200 channels and their line copies: 432 s with 10 x 10).
NESTED_LARGE_ROWS = 1000
NESTED_LARGE_FOLDS = 5

#: Fewest selection rows on which the int8 cost of the CNN (int8 RMSE / float RMSE) is measured.
_MIN_COST_ROWS = 5


@dataclass(frozen=True)
class Member:
    """One model the bundle carries: ``name`` (``cnn`` or ``pls``), its ``tflite`` bytes, preprocessing ``steps``
    (trainer spec) and ``edge_pipe`` (fitted, edge form), the preprocessed training spectra ``train_pre`` and its
    ``output_transform`` (or None)."""

    name: str
    tflite: bytes
    steps: Sequence[Mapping[str, Any]]
    edge_pipe: Any
    train_pre: np.ndarray
    output_transform: dict[str, list[float]] | None


@dataclass(frozen=True)
class Deployed:
    """The deployed model: the champion ``selection``, the deployable PLS ``pls`` (None for classification),
    the primary member's ``tflite`` bytes, preprocessing ``steps`` (trainer spec) and ``edge_pipe`` (fitted, edge
    form), its preprocessed training spectra ``train_pre`` (for the OOD model) and ``output_transform`` (or None);
    for a per-target choice, the ``second`` member and ``serving`` (the member name per target)."""

    selection: Any
    pls: Any
    tflite: bytes
    steps: Sequence[Mapping[str, Any]]
    edge_pipe: Any
    train_pre: np.ndarray
    output_transform: dict[str, list[float]] | None
    name: str = ""
    second: Member | None = None
    serving: tuple[str, ...] = ()
    #: PLS's weight per target where ``serving`` says ``blend`` (0 elsewhere): (1 - w) * CNN + w * PLS.
    pls_weights: tuple[float, ...] = ()
    #: The deployable PLS's nested out-of-fold predictions of the training rows, when the champion rule computed
    #: them (the intervals reuse them).
    pls_oof: np.ndarray | None = None

    @property
    def is_pls(self) -> bool:
        """PLS (PLS-DA for a classification) alone won."""
        return self.selection.winner == "pls" and self.pls is not None

    @property
    def serves_pls(self) -> bool:
        """PLS serves at least one target."""
        return self.is_pls or (self.second is not None and ("pls" in self.serving or "blend" in self.serving))

    @property
    def primary(self) -> Member:
        """The primary member (the bundle's ``model.tflite``; its features feed the OOD model)."""
        return Member(self.name, self.tflite, self.steps, self.edge_pipe, self.train_pre, self.output_transform)

    @property
    def members(self) -> tuple[Member, ...]:
        """Every member, the primary first."""
        return (self.primary,) if self.second is None else (self.primary, self.second)


def choose_deployed(
    cfg: TrainConfig, data: Prepared, pls: Any, recipe: Recipe, cv: CnnCv, net: TrainedNetwork, int8: Int8Network,
    preds: Predictions,
) -> Deployed:
    """Score the candidates (grouped cross-validation, int8 cost on the selection rows, or on the training rows
    where there are none: :func:`int8_cost_role`) and pick the winner."""
    from trainer.champion import choose_model, deployable_pls, deployable_plsda, pls_cv_rmse

    X, Y, tr, classify = data.ds.X, data.ds.y, data.plan.train_rows, data.classify
    int8_cost, basis = None, None
    role = int8_cost_role(data)
    if not classify and role is not None:
        int8_cost, basis = int8_cost_on(Y[data.plan.roles()[role]], preds[(role, "cnn_float")],
                                        preds[(role, "cnn_int8")], oof=cv.oof if role == "train" else None,
                                        held_out=role != "train")
    X_cal, Y_cal, g_cal = pls_calibration_rows(cfg, data, X[tr], Y[tr].astype(np.float64), data.groups[tr])
    select_error, cnn_int8_oof = None, None
    if not classify:
        dep = deployable_pls(pls, X_cal, Y_cal, candidates=cfg.preprocessing.candidates, make_pre=data.make_pre)
    else:  # PLS-DA competes too (trainer.champion), out of fold and on the selection rows
        dep = None if cfg.selection.model == "cnn" else deployable_plsda(
            pls, X_cal, Y_cal[:, 0], g_cal, candidates=cfg.preprocessing.candidates, make_pre=data.make_pre,
            folds=cfg.cv.folds, seed=cfg.seed, measured=tr.size)
        sel = data.plan.select_rows
        if sel.size and ("select", "pls") in preds and ("select", "cnn_int8") in preds:
            y_sel = Y[sel][:, 0]
            select_error = (float(np.mean(preds[("select", "pls")][:, 0] != y_sel)),
                            float(np.mean(preds[("select", "cnn_int8")][:, 0] != y_sel)))
        elif not sel.size and cv.oof is not None and ("train", "cnn_int8") in preds:
            cnn_int8_oof = class_int8_oof_error(Y[tr][:, 0], cv.oof, preds[("train", "cnn_float")][:, 0],
                                                preds[("train", "cnn_int8")][:, 0])
    pls_rmse = None if dep is None else dep.cv_rmse
    pls_own_folds = None
    if dep is not None and not classify and cv.rmse is not None:
        pls_own_folds, pls_rmse = pls_rmse, pls_on_cnn_folds(cfg, data, dep, X_cal, Y_cal, g_cal)
        log.info("PLS scored on the CNN's %d folds for the champion rule: CV RMSE %s (on its own %d folds %s)",
                 cfg.selection.cnn_cv_folds, _per_target(data, pls_rmse), cfg.cv.folds,
                 _per_target(data, pls_own_folds))
    pls_oof = None
    if dep is not None and not classify and cfg.selection.model == "auto" and cfg.selection.blend and \
            cv.oof is not None:
        pls_oof = nested_pls_oof(cfg, data)
    selection = choose_model(
        data.ds.target_names, mode=cfg.selection.model, tie_margin=cfg.selection.tie_margin,
        pls_rmse=pls_rmse, pls_tuned_rmse=None if classify else pls_cv_rmse(pls), pls_own_folds=pls_own_folds,
        cnn_rmse=cv.rmse, int8_cost=int8_cost,
        folds=cfg.selection.cnn_cv_folds if cv.rmse is not None else 0, classification=classify,
        oof=None if pls_oof is None else (Y[tr].astype(np.float64), cv.oof, pls_oof), select_error=select_error,
        class_rows=(tr.size, data.plan.select_rows.size), cnn_int8_oof=cnn_int8_oof,
    )
    selection = replace(selection, int8_cost_basis=basis)
    log.info("deployed model: %s (%s)", selection.winner, selection.reason)
    cnn = Member("cnn", int8.tflite, recipe.steps, net.edge_pipe, int8.X_train_pre, int8.output_transform)
    if dep is None or selection.winner == "cnn":  # dep is None only for a classification forced to the CNN
        return _deployed(selection, dep, cnn)
    from trainer.quantize import convert_float

    pls_member = Member("pls", convert_float(dep.keras_model(), subprocess=cfg.quantize.subprocess),
                        list(dep.steps), dep.preprocess.to_edge(),
                        dep.preprocess.transform(X[tr]), None)
    if selection.winner == "pls":
        return _deployed(selection, dep, pls_member, pls_oof=pls_oof)
    serving = tuple(selection.per_target[str(t)] for t in data.ds.target_names)
    weights = tuple(float(selection.blend_weights.get(str(t), 0.0)) for t in data.ds.target_names)
    # The primary serves the most targets (on a tie, the model serving the first target); its features feed OOD.
    first = max(("cnn", "pls"), key=lambda m: (serving.count(m), serving[0] == m))
    primary, second = (cnn, pls_member) if first == "cnn" else (pls_member, cnn)
    log.info("per-target bundle: %s (primary %s)",
             ", ".join(f"{t} <- {m}" for t, m in zip(data.ds.target_names, serving)), primary.name)
    return _deployed(selection, dep, primary, second=second, serving=serving, pls_weights=weights, pls_oof=pls_oof)


def pls_on_cnn_folds(cfg: TrainConfig, data: Prepared, dep: Any, X_cal: np.ndarray, Y_cal: np.ndarray,
                     g_cal: np.ndarray) -> np.ndarray:
    """The deployable PLS's out-of-fold RMSE per target on the CNN's cross-validation folds (``[selection]
    cnn_cv_folds``, the same groups and seed, so the very same held-out rows), its preprocessing and latent
    variables as chosen on ``[cv] folds``.

    The champion rule compares the two models on these: with ``[cv] folds = 10`` and 5 CNN folds, PLS was scored
    after fitting on 90 % of the rows and the CNN on 80 %, which on tens of rows favours PLS, whose error falls less
    with more rows. ``X_cal`` / ``Y_cal`` / ``g_cal`` are the PLS's calibration rows (:func:`pls_calibration_rows`:
    the training rows first, then their line copies under the same groups); each fold fits on every calibration row
    outside its held-out groups and predicts its measured rows."""
    from trainer.champion import pls_cv_predictions
    from trainer.splits import grouped_folds

    tr = data.plan.train_rows
    groups = data.groups[tr]
    pairs = [(np.flatnonzero(~np.isin(g_cal, groups[held])), held)
             for _, held in grouped_folds(groups, cfg.selection.cnn_cv_folds, seed=cfg.seed)]
    oof = pls_cv_predictions(dep, X_cal, Y_cal, g_cal, make_pre=data.make_pre, folds=cfg.selection.cnn_cv_folds,
                             seed=cfg.seed, fold_pairs=pairs)[:tr.size]
    return np.sqrt(np.mean((oof - Y_cal[:tr.size]) ** 2, axis=0))


def _per_target(data: Prepared, values: np.ndarray) -> str:
    return ", ".join(f"{t} {v:.4g}" for t, v in zip(data.ds.target_names, values))


def nested_folds(cfg: TrainConfig, rows: int) -> int:
    """Outer and inner folds of the PLS's nested cross-validation on ``rows`` training rows: ``[cv] folds``, at most
    :data:`NESTED_LARGE_FOLDS` from :data:`NESTED_LARGE_ROWS` rows on."""
    return min(cfg.cv.folds, NESTED_LARGE_FOLDS) if rows >= NESTED_LARGE_ROWS else cfg.cv.folds


def nested_pls_oof(cfg: TrainConfig, data: Prepared) -> np.ndarray:
    """The deployable PLS's out-of-fold predictions of the training rows by nested cross-validation (its
    preprocessing and latent variables chosen again in every fold): what a blend is scored with and what a
    deployed PLS's intervals calibrate on. Its cost is outer x inner folds x candidates PLS fits: on many rows
    (:func:`nested_folds`) both fold counts are capped, and each outer fold logs its progress."""
    from functools import partial

    from trainer.conformal import nested_oof_predictions
    from trainer.pipeline.baseline import deployable_pls_on

    tr = data.plan.train_rows
    folds = nested_folds(cfg, tr.size)
    if folds < cfg.cv.folds:
        log.info("nested PLS cross-validation on %d training rows: %d outer and inner folds instead of [cv] folds = "
                 "%d (from %d rows on)", tr.size, folds, cfg.cv.folds, NESTED_LARGE_ROWS)
        cfg = replace(cfg, cv=replace(cfg.cv, folds=folds))
    return nested_oof_predictions(data.ds.X[tr], data.ds.y[tr].astype(np.float64), data.groups[tr],
                                  fit_fn=partial(deployable_pls_on, cfg, data), folds=folds, seed=cfg.seed,
                                  progress="nested PLS cross-validation")


def int8_cost_on(y: np.ndarray, float_pred: np.ndarray, int8_pred: np.ndarray, *,
                 oof: np.ndarray | None = None, held_out: bool = False) -> tuple[np.ndarray, str]:
    """The CNN's int8 cost per target and how it was measured (``held_out``, ``out_of_fold`` or ``in_sample``):
    the int8 RMSE over the float RMSE of the final CNN on rows ``y``.

    On held-out rows (the selection rows) both errors are the final model's own. On the training rows (``oof``, the
    CNN's out-of-fold predictions of those same rows, given) the final model's float error is its in-sample fit,
    often a small fraction of its error on new spectra, so that ratio would overstate what int8 costs on new
    spectra (a corn calibration of 60 rows: 1.17 on the training rows, 1.02 on its test samples). There the int8
    change of each row (int8 - float prediction of the final model) is added to the row's out-of-fold residual:
    cost = RMSE(out-of-fold residual + int8 change) / RMSE(out-of-fold residual). Without a finite out-of-fold
    prediction for every row (the CNN not cross-validated), the plain ratio; a target with no float error costs 1.
    """
    err_f = np.sqrt(np.mean((float_pred - y) ** 2, axis=0))
    err_q = np.sqrt(np.mean((int8_pred - y) ** 2, axis=0))
    basis = "held_out" if held_out else "in_sample"
    if not held_out and oof is not None and np.shape(oof) == np.shape(y) and np.all(np.isfinite(oof)):
        res = np.asarray(oof, dtype=np.float64) - y
        err_f = np.sqrt(np.mean(res ** 2, axis=0))
        err_q = np.sqrt(np.mean((res + (int8_pred - float_pred)) ** 2, axis=0))
        basis = "out_of_fold"
    elif not held_out:
        log.info("int8 cost on the training rows in sample (final CNN, int8 RMSE / float RMSE): %s", "no out-of-fold "
                 "predictions of the CNN (not cross-validated)" if oof is None else "its out-of-fold predictions do "
                 "not cover every training row")
    return np.where(err_f > 0, err_q / np.where(err_f > 0, err_f, 1.0), 1.0), basis


def class_int8_oof_error(y: np.ndarray, oof_prob: np.ndarray, float_class: np.ndarray,
                         int8_class: np.ndarray) -> float:
    """A classification CNN's out-of-fold error rate as its int8 model would have made it, where no selection rows
    judge the int8 model: each training row keeps its out-of-fold class unless the deployed int8 model changes the
    final float network's class on it, where it takes the int8 class (the classes' counterpart of adding each row's
    int8 change to its out-of-fold residual, :func:`int8_cost_on`)."""
    oof_class = np.argmax(np.asarray(oof_prob), axis=1)
    flipped = np.asarray(int8_class).reshape(-1) != np.asarray(float_class).reshape(-1)
    served = np.where(flipped, np.asarray(int8_class).reshape(-1), oof_class)
    return float(np.mean(served != np.asarray(y).reshape(-1)))


def int8_cost_role(data: Prepared) -> str | None:
    """The rows the champion rule measures the CNN's int8 cost on: the selection rows, or without any the training
    rows (``[split]`` names no select); None when there are too few (fewer than :data:`_MIN_COST_ROWS`)."""
    sel, tr = data.plan.select_rows, data.plan.train_rows
    if sel.size >= _MIN_COST_ROWS:
        return "select"
    if sel.size == 0 and tr.size >= _MIN_COST_ROWS:
        return "train"
    return None


def _deployed(selection: Any, dep: Any, primary: Member, *, second: Member | None = None,
              serving: tuple[str, ...] = (), pls_weights: tuple[float, ...] = (),
              pls_oof: np.ndarray | None = None) -> Deployed:
    return Deployed(selection=selection, pls=dep, tflite=primary.tflite, steps=primary.steps,
                    edge_pipe=primary.edge_pipe, train_pre=primary.train_pre,
                    output_transform=primary.output_transform, name=primary.name, second=second, serving=serving,
                    pls_weights=pls_weights, pls_oof=pls_oof)
