"""The CNN recipe of a fit: the ``[model]``, ``[augment]`` and ``[pruning]`` tables as the trainer's configs, and
the ``[search]`` stage that may replace the configured recipe with the best one found."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.errors import TrainConfigError
from trainer.pipeline.prepare import Prepared, cnn_cross_validated

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How the CNN is trained: preprocessing candidate, model, augmentation and pruning configs, what the search
    said (``search`` for ``metrics.json``; the best trial's out-of-fold predictions and folds, if any), and the
    trunk pretraining (:class:`trainer.pretrain.PretrainPlan`, or None and why in ``pretrain_off``)."""

    candidate: str
    steps: Sequence[Mapping[str, Any]]
    cnn: Any
    augment: Any
    prune: Any
    search: dict[str, Any]
    search_oof: np.ndarray | None = None
    search_folds: int = 0
    pretrain: Any = None
    pretrain_off: str = "enabled = false"
    #: ``fn(X, y, seed) -> (X_train, y_train)``: the CNN's training set of some rows (:func:`cnn_rows_for`).
    rows: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None

    def training_set(self, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The CNN's training set of rows ``X``, ``y``: their ``[augment]`` copies (and line copies)."""
        if self.rows is None:
            from trainer.augment import augment

            return augment(X, y, self.augment, seed=seed)
        return self.rows(X, y, seed)


def build_cnn_config(cfg: TrainConfig) -> Any:
    from trainer.models import CNNConfig

    d = dict(cfg.model)
    if "task" in d and d["task"] != cfg.task:
        raise TrainConfigError(f"model.task: expected {cfg.task!r} (data.task), got {d['task']!r}")
    d["task"] = cfg.task
    return CNNConfig.from_dict(d)


def cnn_rows_for(cfg: TrainConfig, data: Prepared) -> Callable[[Any], Callable[..., tuple[np.ndarray, np.ndarray]]]:
    """``[augment]`` config -> ``fn(X, y, seed)``, the CNN's training set of some rows: their augmented copies,
    followed by ``[instrument.noise] cnn_copies`` line copies (:func:`trainer.line_noise.cnn_augment_fn`)."""
    from trainer.line_noise import cnn_augment_fn

    noise = cfg.instrument.noise
    return lambda aug: cnn_augment_fn(aug, noise, data.wavelengths_nm if noise is not None else None,
                                      quantity=cfg.instrument.quantity, min_ratio=data.min_ratio)


def build_augment_config(cfg: TrainConfig) -> Any:
    from trainer.augment import AugmentConfig

    return AugmentConfig.from_dict(dict(cfg.augment))


def build_prune_config(cfg: TrainConfig) -> Any:
    """The ``[pruning]`` table as :class:`trainer.pruning.PruneConfig`, or None when pruning is off.

    Pruning is on when the table sets ``target_sparsity > 0`` and does not say ``enabled = false``.
    """
    p = dict(cfg.pruning)
    enabled = p.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise TrainConfigError(f"pruning.enabled: expected true/false, got {enabled!r}")
    from trainer.pruning import PruneConfig

    pcfg = PruneConfig.from_dict(p)
    if enabled and "enabled" in cfg.pruning and (not p or pcfg.target_sparsity <= 0.0):
        raise TrainConfigError("pruning.enabled = true: expected a target_sparsity above 0 (e.g. 0.5) to prune to, got "
                               + (f"{pcfg.target_sparsity:g}" if p else "none"))
    if not enabled or not p or pcfg.target_sparsity <= 0.0:
        return None
    return pcfg


def search_off_reason(cfg: TrainConfig) -> str | None:
    """Why the ``[search]`` stage will not run (the configured recipe trains), or None when it will."""
    sc = cfg.search
    return ("no [search] table" if not sc.enabled and "search" not in cfg.raw
            else "enabled = false" if not sc.enabled
            else "budget_min = 0" if sc.budget_min <= 0
            else "trials = 0" if sc.trials <= 0
            else "--model pls: the CNN is not deployed" if cfg.selection.model == "pls"
            else None)


def _run_search(
    cfg: TrainConfig, X_tr: np.ndarray, Y_tr: np.ndarray, groups_tr: np.ndarray, target_names: Sequence[str],
    cand: str, make_pre: Callable[[Sequence[Mapping[str, Any]]], Any], out: Path, stage: Callable[[str], None],
    progress: Callable[[str], None] | None, pretrain: Any = None, rows_for: Any = None, n_classes: int = 0,
    cross_validates: bool = False,
) -> tuple[dict[str, Any], np.ndarray | None, int]:
    """The ``[search]`` stage (:mod:`trainer.search`): ``(metrics.json search, the best trial's out-of-fold
    predictions or None, its folds)``. Skipped (the configured recipe) when the search is off and for ``--model
    pls``; ``n_classes`` > 0 searches a classification (``Y_tr`` its class indices); ``cross_validates``: the fit
    cross-validates the CNN anyway, so the configured recipe's trial runs to the end whatever the budget."""
    why = search_off_reason(cfg)
    if why is not None:
        log.info("CNN recipe search off (%s): the configured recipe is trained", why)
        return {"ran": False, "reason": why}, None, 0
    stage("search CNN recipe")
    from trainer.search import SearchInputs, run_search, search_base_model

    inputs = SearchInputs(X=X_tr, Y=np.asarray(Y_tr, dtype=np.float64), groups=groups_tr,
                          target_names=tuple(target_names), make_pre=make_pre,
                          candidates=cfg.preprocessing.candidates, base_candidate=cand,
                          base_model=search_base_model(cfg, n_classes), base_augment=dict(cfg.augment),
                          pretrain=pretrain, rows_for=rows_for, n_classes=n_classes)
    result = run_search(cfg, inputs, out, progress=progress, finish_configured=cross_validates)
    return result.to_dict(), result.oof, result.folds



@dataclass(frozen=True)
class ModelConfigs:
    """The configured ``[model]``, ``[augment]`` and ``[pruning]`` tables, checked (``prune`` None: pruning off)."""

    cnn: Any
    augment: Any
    prune: Any


def build_model_configs(cfg: TrainConfig) -> ModelConfigs:
    """Validate the model sections before anything expensive runs."""
    return ModelConfigs(cnn=build_cnn_config(cfg), augment=build_augment_config(cfg), prune=build_prune_config(cfg))


def choose_recipe(
    cfg: TrainConfig, configs: ModelConfigs, data: Prepared, pls_candidate: str, out: Path,
    stage: Callable[[str], None], progress: Callable[[str], None] | None,
) -> Recipe:
    """The configured recipe (``[preprocessing] cnn = "pls_best"`` takes the PLS baseline's best candidate), or
    the ``[search]``'s best one when the search runs."""
    cnn_cfg, aug_cfg = configs.cnn, configs.augment
    cand = cfg.preprocessing.cnn
    if cand == "pls_best":
        cand = pls_candidate
    tr = data.plan.train_rows
    plan = pretrain_plan(cfg, data)
    rows_for = cnn_rows_for(cfg, data)
    search_info, search_oof, search_folds = _run_search(cfg, data.ds.X[tr], data.ds.y[tr], data.groups[tr],
                                                        data.ds.target_names, cand, data.make_pre, out, stage,
                                                        progress, plan, rows_for, n_classes=n_classes_of(data),
                                                        cross_validates=cnn_cross_validated(
                                                            cfg, data.classify, data.plan.select_rows.size))
    pretrain, off = plan, "enabled = false"
    steps = cfg.preprocessing.candidates[cand]
    if search_info.get("best_recipe") is not None:
        recipe = search_info["best_recipe"]
        cand = recipe["candidate"]
        steps = recipe.get("steps") or cfg.preprocessing.candidates[cand]  # the rescaled trial carries its own
        cnn_cfg = build_cnn_config(replace(cfg, model=recipe["model"]))
        aug_cfg = build_augment_config(replace(cfg, augment=recipe["augment"]))
        if plan is not None and not recipe.get("pretrain", True):
            pretrain, off = None, "the search's best recipe trains without pretraining"
        log.info("CNN recipe from the search (trial %s): preprocessing %s, model %s, augment %s%s",
                 search_info.get("best_trial"), cand, recipe["model"], recipe["augment"],
                 "" if plan is None else f", pretrain {pretrain is not None}")
    return Recipe(candidate=cand, steps=steps, cnn=cnn_cfg, augment=aug_cfg,
                  prune=configs.prune, search=search_info, search_oof=search_oof,
                  search_folds=search_folds, pretrain=pretrain, pretrain_off=off, rows=rows_for(aug_cfg))


def configured_instead(cfg: TrainConfig, configs: ModelConfigs, data: Prepared, pls_candidate: str, searched: Recipe,
                       why: str) -> Recipe | None:
    """The configured recipe, to train instead of the search's best when that one's int8 model was refused
    (``why``); None when the refused recipe was the configured one already (or no search chose it). The search's
    ``metrics.json`` entry keeps its figures and gains ``refused`` (the trial and why) and ``trained``."""
    srch = searched.search
    if srch.get("best_recipe") is None or srch.get("best_is_configured") or "refused" in srch:
        return None  # the refused recipe was the configured one (or the fallback already): nothing to give way to
    log.warning("the search's best recipe (trial %s) was refused at the int8 conversion (%s): the configured recipe "
                "is trained instead", srch.get("best_trial"), why)
    cand = pls_candidate if cfg.preprocessing.cnn == "pls_best" else cfg.preprocessing.cnn
    plan = pretrain_plan(cfg, data)
    rows_for = cnn_rows_for(cfg, data)
    info = {**srch, "refused": {"trial": srch.get("best_trial"), "why": why}, "trained": "the configured recipe"}
    return Recipe(candidate=cand, steps=cfg.preprocessing.candidates[cand], cnn=configs.cnn, augment=configs.augment,
                  prune=configs.prune, search=info, pretrain=plan, rows=rows_for(configs.augment))


def pretrain_plan(cfg: TrainConfig, data: Prepared) -> Any:
    """The ``[pretrain]`` settings and their unlabeled spectra (:class:`trainer.pretrain.PretrainPlan`), or None
    when pretraining is off. Only the spectra of ``[data]`` are handed over, never its reference values."""
    if not cfg.pretrain.enabled:
        return None
    from trainer.pretrain import PretrainPlan, load_unlabeled

    ds = data.ds
    unlabeled = load_unlabeled(cfg.pretrain, ds.X, ds.wavelengths, unit=ds.axis_unit,
                               quantity=cfg.instrument.quantity, min_ratio=data.min_ratio)
    log.info("pretrain: %d unlabeled spectra from %s (%s), %d epochs", unlabeled.rows, unlabeled.source,
             "+".join(cfg.pretrain.tasks), cfg.pretrain.epochs)
    return PretrainPlan(config=cfg.pretrain, unlabeled=unlabeled)


def n_classes_of(data: Prepared) -> int:
    """A classification's number of classes (every class of the data set), 0 for a regression."""
    return len(data.ds.class_names) if data.classify and data.ds.class_names is not None else 0
