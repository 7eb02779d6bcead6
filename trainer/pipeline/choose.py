"""Stage "choose the deployed model": the CNN or a deployable PLS (:mod:`trainer.champion`), and what the bundle
then carries (model bytes, preprocessing, output transform)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.pipeline.baseline import pls_calibration_rows
from trainer.pipeline.cnn import CnnCv, TrainedNetwork
from trainer.pipeline.int8 import Int8Network, Predictions
from trainer.pipeline.prepare import Prepared
from trainer.pipeline.recipe import Recipe

log = logging.getLogger(__name__)

#: Fewest selection rows on which the int8 cost of the CNN (int8 RMSE / float RMSE) is measured.
_MIN_COST_ROWS = 5


@dataclass(frozen=True)
class Deployed:
    """The deployed model: the champion ``selection``, the deployable PLS ``pls`` (None for classification),
    its ``tflite`` bytes, preprocessing ``steps`` (trainer spec) and ``edge_pipe`` (fitted, edge form), the
    preprocessed training spectra ``train_pre`` (for the OOD model) and the ``output_transform`` (or None)."""

    selection: Any
    pls: Any
    tflite: bytes
    steps: Sequence[Mapping[str, Any]]
    edge_pipe: Any
    train_pre: np.ndarray
    output_transform: dict[str, list[float]] | None

    @property
    def is_pls(self) -> bool:
        """PLS won (``pls`` is None only for classification, which deploys the CNN)."""
        return self.selection.winner == "pls" and self.pls is not None


def choose_deployed(
    cfg: TrainConfig, data: Prepared, pls: Any, recipe: Recipe, cv: CnnCv, net: TrainedNetwork, int8: Int8Network,
    preds: Predictions,
) -> Deployed:
    """Score the candidates (grouped cross-validation, int8 cost on the selection rows) and pick the winner."""
    from trainer.champion import choose_model, deployable_pls, pls_cv_rmse  # noqa: PLC0415

    X, Y, tr, sel, classify = data.ds.X, data.ds.y, data.plan.train_rows, data.plan.select_rows, data.classify
    int8_cost = None
    if not classify and sel.size >= _MIN_COST_ROWS:
        err_f = np.sqrt(np.mean((preds[("select", "cnn_float")] - Y[sel]) ** 2, axis=0))
        err_q = np.sqrt(np.mean((preds[("select", "cnn_int8")] - Y[sel]) ** 2, axis=0))
        int8_cost = np.where(err_f > 0, err_q / np.where(err_f > 0, err_f, 1.0), 1.0)
    X_cal, Y_cal, _ = pls_calibration_rows(cfg, data, X[tr], Y[tr].astype(np.float64), data.groups[tr])
    dep = None if classify else deployable_pls(pls, X_cal, Y_cal,
                                               candidates=cfg.preprocessing.candidates, make_pre=data.make_pre)
    selection = choose_model(
        data.ds.target_names, mode=cfg.selection.model, tie_margin=cfg.selection.tie_margin,
        pls_rmse=None if dep is None else dep.cv_rmse, pls_tuned_rmse=None if classify else pls_cv_rmse(pls),
        cnn_rmse=cv.rmse, int8_cost=int8_cost,
        folds=cfg.selection.cnn_cv_folds if cv.rmse is not None else 0, classification=classify,
    )
    log.info("deployed model: %s (%s)", selection.winner, selection.reason)
    if selection.winner == "pls" and dep is not None:  # dep is None only for classification, which deploys the CNN
        from trainer.quantize import convert_float  # noqa: PLC0415

        return Deployed(selection=selection, pls=dep,
                        tflite=convert_float(dep.keras_model(), subprocess=cfg.quantize.subprocess),
                        steps=cfg.preprocessing.candidates[dep.candidate], edge_pipe=dep.preprocess.to_edge(),
                        train_pre=dep.preprocess.transform(X[tr]), output_transform=None)
    return Deployed(selection=selection, pls=dep, tflite=int8.tflite, steps=recipe.steps, edge_pipe=net.edge_pipe,
                    train_pre=int8.X_train_pre, output_transform=int8.output_transform)
