"""The CNN stages of a fit: cross-validate the recipe (for the champion choice and the intervals), train the final
network on the training rows (kept epoch picked on the selection rows; without selection rows, the recipe's epochs),
and prune it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.pipeline.prepare import Prepared, cnn_cross_validated
from trainer.pipeline.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CnnCv:
    """Out-of-fold predictions of the CNN recipe on the training rows (None when not cross-validated) and their
    RMSE per target (a classification: the class probabilities, (n, n_classes), and their error rate)."""

    oof: np.ndarray | None = None
    rmse: np.ndarray | None = None


@dataclass(frozen=True)
class TrainedNetwork:
    """The final CNN and what came with it.

    ``pre`` is the fitted trainer preprocessing (``edge_pipe`` its edge form), ``trained`` what
    :func:`trainer.models.train_cnn` returned, ``model`` the (pruned) Keras model, ``role_pre`` the preprocessed
    spectra of every role, ``dense_preds`` the unpruned network's predictions per role (empty without pruning),
    ``pruning`` the ``metrics.json`` pruning entry, ``sparsity`` the share of zero kernel weights and ``pretrain``
    the ``metrics.json`` pretraining entry.
    """

    pre: Any
    edge_pipe: Any
    trained: Any
    model: Any
    role_pre: dict[str, np.ndarray]
    dense_preds: dict[str, np.ndarray]
    pruning: dict[str, Any]
    sparsity: float
    pretrain: dict[str, Any] | None = None


def cross_validate_cnn(
    cfg: TrainConfig, data: Prepared, recipe: Recipe, stage: Callable[[str], None],
    progress: Callable[[str], None] | None,
) -> CnnCv:
    """Stage "cross-validate CNN": the search's best trial when it ran exactly this cross-validation, else a grouped
    cross-validation of the recipe (``--model auto``; class-stratified folds for a classification); nothing
    otherwise."""
    from trainer.champion import class_rows_fn, cnn_cv_predictions
    from trainer.models import train_cnn

    mode = cfg.selection.model
    tr, X, Y = data.plan.train_rows, data.ds.X, data.ds.y
    labels = np.asarray(Y[tr][:, 0]) if data.classify else None
    if recipe.search_oof is not None and recipe.search_folds == cfg.selection.cnn_cv_folds and mode != "pls":
        # The best trial ran exactly this cross-validation (same folds, seeds and recipe): reuse it.
        stage("cross-validate CNN")
        log.info("CNN cross-validation: the out-of-fold predictions of search trial %s",
                 recipe.search.get("best_trial"))
        cnn_oof = recipe.search_oof
    elif cnn_cross_validated(cfg, data.classify, data.plan.select_rows.size):
        # With --model cnn and no selection rows, the out-of-fold predictions calibrate the intervals; a
        # classification's champion rule weighs the CNN's out-of-fold errors (and the selection rows' where any).
        stage("cross-validate CNN")
        cnn_oof = cnn_cv_predictions(
            X[tr], Y[tr].astype(np.float64), data.groups[tr],
            make_pre=lambda: data.make_pre(recipe.steps),
            augment_fn=recipe.training_set if labels is None else class_rows_fn(recipe.training_set, labels.dtype),
            train_fn=lambda Xp, yp, sd, trunks=None: train_cnn(Xp, yp, None, None, config=cv_config(recipe.cnn, data),
                                                                seed=sd, trunks=trunks).model,
            predict_fn=keras_predict,
            folds=cfg.selection.cnn_cv_folds,
            seed=cfg.seed,
            progress=progress,
            pretrain_fn=pretrain_fn(recipe),
            y_class=labels,
        )
    else:
        return CnnCv()
    if labels is not None:  # class probabilities: the figure is the error rate
        error = float(np.mean(np.argmax(cnn_oof, axis=1) != labels))
        log.info("CNN cross-validation: error rate %.4f over %d training rows", error, labels.size)
        return CnnCv(oof=cnn_oof, rmse=np.array([error]))
    return CnnCv(oof=cnn_oof, rmse=np.sqrt(np.mean((cnn_oof - Y[tr]) ** 2, axis=0)))


def cv_config(cnn: Any, data: Prepared) -> Any:
    """The CNN config of a cross-validation fold: a classification's outputs fixed to every class of the data set,
    so that a fold whose fitting rows lack a class still gives probabilities of the same width."""
    from trainer.pipeline.recipe import n_classes_of

    k = n_classes_of(data)
    if not k:
        return cnn
    import dataclasses

    return dataclasses.replace(cnn, n_classes=k)


def train_network(cfg: TrainConfig, data: Prepared, recipe: Recipe, stage: Callable[[str], None]) -> TrainedNetwork:
    """Stages "pretrain CNN trunk" (with ``[pretrain]``), "train CNN" and "prune"."""
    from trainer.fitting import capped_epochs
    from trainer.models import train_cnn

    X, Y, tr, sel, classify = data.ds.X, data.ds.y, data.plan.train_rows, data.plan.select_rows, data.classify
    pre = data.make_pre(recipe.steps).fit(X[tr])  # on the labeled training rows only
    trunks, pretrain_info = None, {"ran": False, "reason": recipe.pretrain_off}
    if recipe.pretrain is not None:
        from trainer.pretrain import pretrain_for

        stage("pretrain CNN trunk")
        result = pretrain_for(pre, recipe.pretrain, recipe.cnn, cfg.seed)  # unlabeled spectra through that pre
        trunks, pretrain_info = result.trunks, recipe.pretrain.summary(result)
    stage("train CNN")
    edge_pipe = pre.to_edge()

    y_tr = Y[tr][:, 0] if classify else Y[tr]
    X_aug, y_aug = recipe.training_set(X[tr], y_tr, cfg.seed)
    X_tr_pre = pre.transform(X_aug)
    # No selection rows: a fixed number of epochs (the recipe's), early stopping and the plateau schedule watch the
    # training loss, the last epoch is kept (trainer.models.train_cnn without X_sel), as in the CNN cross-validation.
    X_sel_pre = pre.transform(X[sel]) if sel.size else None
    y_sel = (Y[sel][:, 0] if classify else Y[sel]) if sel.size else None
    if sel.size == 0:
        log.info("no selection rows: the CNN trains at most %d epochs on all %d training rows (max_gmac may cap them "
                 "further), the last epoch kept",
                 capped_epochs(recipe.cnn.epochs, X_aug.shape[0], recipe.cnn.batch_size, recipe.cnn.max_steps),
                 tr.size)
    noise = cfg.instrument.noise
    log.info("CNN input: preprocessing %s, %d training spectra (%d after augmentation%s), input shape %s",
             recipe.candidate, tr.size, X_aug.shape[0],
             f" and {noise.cnn_copies} line copies of each" if noise is not None and noise.cnn_copies else "",
             X_tr_pre.shape[1:])
    trained = train_cnn(X_tr_pre, y_aug, X_sel_pre, y_sel, config=recipe.cnn, seed=cfg.seed, trunks=trunks)
    role_pre = {role: pre.transform(X[rows]) for role, rows in data.plan.roles().items()}

    # Dense (unpruned) predictions first: pruning fine-tunes the same model object in place.
    dense_preds = ({role: cnn_predict(trained.model, Xp, classify) for role, Xp in role_pre.items()}
                   if recipe.prune else {})

    stage("prune")
    model, pruning_info = _prune(trained, recipe.prune, cfg, X_tr_pre, y_aug, X_sel_pre, y_sel)
    sparsity_ = float(pruning_info.get("sparsity", sparsity(model)))
    pruning_info["sparsity"] = sparsity_
    pruning_info["sparsity_all_kernels"] = sparsity(model)
    log.info("kernel sparsity %.1f%%", 100 * sparsity_)
    return TrainedNetwork(pre=pre, edge_pipe=edge_pipe, trained=trained, model=model, role_pre=role_pre,
                          dense_preds=dense_preds, pruning=pruning_info, sparsity=sparsity_, pretrain=pretrain_info)


def pretrain_fn(recipe: Recipe) -> Callable[[Any, int], Any] | None:
    """``pretrain_fn(fitted_pre, seed) -> trunks`` for :func:`trainer.champion.cnn_cv_predictions` when the recipe
    pretrains (each fold pretrains through its own fitted preprocessing), else None."""
    plan = recipe.pretrain
    if plan is None:
        return None
    from trainer.pretrain import pretrain_for

    return lambda pre, sd: pretrain_for(pre, plan, recipe.cnn, sd).trunks


def cnn_predict(keras_model: Any, Xp: np.ndarray, classify: bool) -> np.ndarray:
    """Float predictions of a Keras model: class indices (n, 1) for classification, outputs otherwise."""
    out_f = keras_predict(keras_model, Xp)
    return np.argmax(out_f, axis=1)[:, None].astype(np.float64) if classify else out_f


def sparsity(model: Any) -> float:
    """Share of exactly-zero weights over all convolution and dense kernels of a Keras model."""
    zeros = 0
    total = 0
    for w in model.weights:
        name = w.path if hasattr(w, "path") else w.name
        if "kernel" not in name:
            continue
        arr = np.asarray(w.numpy())
        zeros += int(np.count_nonzero(arr == 0))
        total += arr.size
    return zeros / total if total else 0.0


def histories(trained: Any) -> list[dict[str, list[float]]]:
    """Learning curves as a list of ``{loss, val_loss, ...}`` dicts (one joint history or one per member)."""
    h = getattr(trained, "history", None)
    if isinstance(h, Mapping):
        return [dict(h)]
    if isinstance(h, Sequence):
        return [dict(x) for x in h if isinstance(x, Mapping)]
    return []


def standardised_history(history: Mapping[str, Sequence[float]], trained: Any, classify: bool) -> dict[str, Any]:
    """Pruning losses (MSE in reference units) on the CNN's standardised-target scale, for one shared plot."""
    scale = np.asarray(getattr(trained, "y_scale", np.ones(1)), dtype=np.float64)
    factor = 1.0 if classify or scale.size == 0 else float(np.mean(scale**2))
    return {k: [float(v) / factor for v in vals] for k, vals in history.items()}


def best_epochs(trained: Any) -> list[int]:
    if hasattr(trained, "best_epochs"):
        return [int(e) for e in trained.best_epochs]
    if getattr(trained, "best_epoch", None) is not None:
        return [int(trained.best_epoch)]
    return []


def keras_predict(model: Any, X: np.ndarray) -> np.ndarray:
    out = model.predict(np.asarray(X, dtype=np.float32), batch_size=256, verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(X.shape[0], -1)



def _prune(trained: Any, pcfg: Any, cfg: TrainConfig, X_tr: np.ndarray, y_tr: np.ndarray, X_sel: np.ndarray | None,
           y_sel: np.ndarray | None) -> tuple[Any, dict[str, Any]]:
    """Magnitude pruning with fine-tuning (:func:`trainer.pruning.prune_model`) when configured.

    Fine-tuning uses the CNN's own training loss on the folded output units (``TrainedCNN.fine_tune_loss``, e.g.
    Huber, so reference outliers do not pull the model during pruning either).
    """
    model = trained.model
    if pcfg is None:
        p = dict(cfg.pruning)
        why = ("enabled = false" if p.pop("enabled", True) is False
               else "the [pruning] table sets nothing (give target_sparsity to prune)" if not p
               else "target_sparsity is 0")
        log.info("pruning off (%s): the CNN is converted dense", why)
        return model, {"enabled": False, "reason": why}
    from trainer.pruning import prune_model

    if hasattr(trained, "fine_tune_loss"):
        loss = trained.fine_tune_loss()
    else:
        loss = "sparse_categorical_crossentropy" if cfg.task == "classification" else "mse"
    result = prune_model(model, X_tr, y_tr, config=pcfg, seed=cfg.seed, loss=loss, X_sel=X_sel, y_sel=y_sel)
    info = {
        "enabled": True,
        "config": pcfg.to_dict(),
        "sparsity": float(result.sparsity),
        "layer_sparsity": dict(result.layer_sparsity),
        "prune_seconds": float(result.prune_seconds),
        "history": dict(result.history),
    }
    return result.model, info

