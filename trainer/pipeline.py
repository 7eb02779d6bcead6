"""The ``spectro-train fit`` orchestration: data -> splits -> PLS baseline -> CNN recipe search (with ``[search]``,
:mod:`trainer.search`) -> CNN cross-validation -> CNN -> pruning ->
int8 -> champion (CNN or PLS) -> OOD and intervals -> bundle -> evaluation through the edge runtime ->
``metrics.json`` and the HTML report.

Only the training rows fit anything (preprocessing, PLS, CNN weights, OOD model) and score the candidates by grouped
cross-validation (:mod:`trainer.champion`); the selection rows pick the CNN's kept epoch and measure its int8 cost;
the conformal intervals come from the held-out residuals of every calibration row (the selection rows, and the
training rows out of fold, the deployed recipe cross-validated); the test rows are only predicted. The bundle
carries the winner, behind the steps that turn what the instrument sends (``[instrument] signal``: counts by
default) into the model's input: counts -> absorbance with the device's dark and white references, then
resampling of the device's axis onto the training grid. The ``deployed`` figures come from loading the written
bundle with :func:`edge.bundle.load_bundle` and feeding it what a device would send
(:meth:`edge.bundle.Bundle.frames_from_signal`), i.e. the edge's own preprocessing and LiteRT runtime.

``metrics.json`` (read by benchmarks and other tools):

- ``evaluations``: one row per (split, target, model) with ``split`` (``train``, ``select`` and every named test
  set), ``target``, ``model`` (``pls``, ``cnn_float``, ``cnn_int8``, ``deployed``), ``n`` and ``rmsep``, ``bias``
  (mean of prediction - reference), ``sep``, ``r2`` for regression or ``accuracy`` for classification;
- ``deployed_model`` (``cnn`` or ``pls``) and ``selection`` (``winner``, ``mode``, ``rule``, ``reason``,
  ``cv_rmse`` per candidate and target, ``int8_cost``, ``ratio_cnn_to_pls``, ``folds``); ``deployed_pls``
  (candidate and latent variables) when PLS is deployed;
- ``comparison``: per test split and target, the four models' figure and the ratios int8/PLS, int8/float and
  deployed/PLS;
- ``pls_components`` (target -> latent variables), ``preprocessing`` (``cnn`` candidate, ``pls`` candidate per
  target, all ``candidates``), ``sparsity`` (share of zero kernel weights of the CNN), ``pruning``,
  ``model_bytes`` (the deployed ``.tflite``), ``cnn_model_bytes`` (the int8 CNN), ``cnn_int8_output_step``
  (target -> one int8 output step of the CNN in target units; its outputs are standardised targets, turned into
  units in float by the bundle's ``output_transform``), ``bundle_bytes``,
  ``train_seconds`` (wall time of the whole fit), ``timings_s`` per stage, ``interval_coverage`` (nominal,
  ``calibration_rows`` and where they come from, half-widths, and measured coverage of the deployed model per test
  split and target), ``ood`` (components,
  limits, alarm rates per split), ``splits`` (rows per role);
- ``search``: the CNN recipe search (:meth:`trainer.search.SearchResult.to_dict`), or ``{"ran": false, "reason"}``.
  When it ran, the CNN figures come from its best recipe, and the champion's CNN cross-validation is its best trial's.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.data import load_configured
from trainer.errors import TrainConfigError, TrainerError
from trainer.splits import group_labels, make_split_plan

__all__ = ["fit", "FitResult", "regression_metrics", "classification_metrics", "MODELS", "N_GOLDEN"]

log = logging.getLogger(__name__)

#: Model names of the ``evaluations`` rows of ``metrics.json``.
MODELS = ("pls", "cnn_float", "cnn_int8", "deployed")
#: Golden vectors stored in the bundle (real training spectra spanning the target range).
N_GOLDEN = 4
#: Fewest selection rows on which the int8 cost of the CNN (int8 RMSE / float RMSE) is measured.
_MIN_COST_ROWS = 5
#: The cnn_int8 predictions of the re-written final bundle must equal those of the first one (same model bytes).
_REPRODUCE_ATOL = 0.0

_STAGES = ("load data", "split rows", "PLS baseline", "search CNN recipe", "cross-validate CNN", "train CNN", "prune",
           "int8 conversion", "choose the deployed model", "OOD + intervals",
           "bundle", "evaluate through the edge runtime", "report")


@dataclass
class FitResult:
    """What :func:`fit` produced, for callers that want more than the ``metrics.json`` dict."""

    metrics: dict[str, Any]
    bundle_path: Path
    metrics_path: Path
    report_path: Path | None
    extras: dict[str, Any] = field(default_factory=dict)


class _Progress:
    """Numbered stage lines on the ``trainer.pipeline`` logger (the CLI shows them on stderr)."""

    def __init__(self, callback: Callable[[str], None] | None) -> None:
        self.t0 = time.perf_counter()
        self.stage_t0 = self.t0
        self.timings: dict[str, float] = {}
        self.current: str | None = None
        self.callback = callback

    def stage(self, name: str) -> None:
        self.end()
        self.current = name
        self.stage_t0 = time.perf_counter()
        msg = f"[{_STAGES.index(name) + 1}/{len(_STAGES)}] {name}"
        log.info(msg)
        if self.callback is not None:
            self.callback(msg)

    def end(self) -> None:
        if self.current is not None:
            self.timings[self.current] = round(time.perf_counter() - self.stage_t0, 3)
            self.current = None

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSEP, bias (mean of prediction - reference), SEP (bias-corrected spread) and R2 of one target.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n,)
    """
    yt = np.asarray(y_true, dtype=np.float64).ravel()
    yp = np.asarray(y_pred, dtype=np.float64).ravel()
    err = yp - yt
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    n = yt.size
    return {
        "n": int(n),
        "rmsep": float(np.sqrt(np.mean(err**2))),
        "bias": float(err.mean()),
        "sep": float(err.std(ddof=1)) if n > 1 else 0.0,
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy (share of correctly predicted class indices)."""
    yt = np.asarray(y_true).ravel().astype(np.int64)
    yp = np.asarray(y_pred).ravel().astype(np.int64)
    return {"n": int(yt.size), "accuracy": float(np.mean(yt == yp))}


def _clean_json(obj: Any) -> Any:
    """Replace non-finite floats by None and numpy scalars/arrays by Python values, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean_json(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _model_grid(steps: Sequence[Mapping[str, Any]], wavelengths: np.ndarray) -> np.ndarray:
    """The wavelength grid the model sees: the data axis after any crop, or a resampling grid."""
    grid = np.asarray(wavelengths, dtype=np.float64)
    for s in steps:
        if s.get("op") == "crop":
            lo = s.get("wavelength_min")
            hi = s.get("wavelength_max")
            keep = np.ones(grid.size, dtype=bool)
            if lo is not None:
                keep &= grid >= float(lo)
            if hi is not None:
                keep &= grid <= float(hi)
            grid = grid[keep]
        elif s.get("op") == "resample" and s.get("grid") is not None:
            grid = np.asarray(s["grid"], dtype=np.float64)
    return grid


def _golden_rows(y: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` training rows spanning the first target's range (evenly spaced in rank)."""
    order = rows[np.argsort(y[rows, 0], kind="stable")]
    pick = np.unique(np.linspace(0, order.size - 1, min(n, order.size)).round().astype(int))
    return order[pick]


def _bundle_targets(names: Sequence[str], units: Mapping[str, str], y_train: np.ndarray | None) -> list[Any]:
    """The manifest's targets, each regression target with its training distribution (read by the edge's
    prediction-drift monitor)."""
    from edge.bundle import Target, TargetStats  # noqa: PLC0415

    out = []
    for j, name in enumerate(names):
        stats = None
        if y_train is not None and y_train.shape[0] >= 2 and float(np.std(y_train[:, j])) > 0:
            stats = TargetStats(mean=float(np.mean(y_train[:, j])), std=float(np.std(y_train[:, j])),
                                n=int(y_train.shape[0]))
        out.append(Target(name=str(name), unit=units.get(name, ""), training=stats))
    return out


#: Largest absorbance a counts -> absorbance conversion is asked to produce: 10 decades of attenuation, far beyond
#: any spectrometer's dynamic range. Training spectra above it are not absorbance.
_MAX_ABSORBANCE = 10.0
#: Default floor of the counts ratio (absorbance at most 6); lowered to cover the training spectra.
_MIN_RATIO = 1e-6


def _check_signal(cfg: TrainConfig, X: np.ndarray, source: str) -> float:
    """The counts conversion's ratio floor for these training spectra; refuses spectra a counts -> ``quantity``
    conversion cannot produce (they are another quantity: set ``[instrument] signal`` to what the device sends)."""
    if cfg.instrument.signal != "counts":
        return _MIN_RATIO
    hint = ("; if the line instrument sends this processed signal itself, set [instrument] signal = "
            f"\"{cfg.instrument.quantity}\", else give the quantity the spectra hold")
    if cfg.instrument.quantity == "absorbance":
        top = float(np.max(X))
        if top > _MAX_ABSORBANCE:
            raise TrainConfigError(
                f"instrument: expected absorbance spectra (at most {_MAX_ABSORBANCE:g}) for a counts instrument, "
                f"got values up to {top:.4g} in {source}" + hint
            )
        return min(_MIN_RATIO, 0.1 * 10.0 ** (-top))
    low, top = float(np.min(X)), float(np.max(X))
    if low <= 0 or top > 2.0:
        raise TrainConfigError(
            f"instrument: expected reflectance as a fraction (0 < R <= 2) for a counts instrument, got {low:.4g} to "
            f"{top:.4g} in {source}" + hint
        )
    return min(_MIN_RATIO, 0.1 * low)


def _line_pipeline(
    edge_pipe: Any, cfg: TrainConfig, wavelengths: np.ndarray, unit: str, X_golden: np.ndarray,
    min_ratio: float = _MIN_RATIO,
) -> tuple[Any, dict[str, Any]]:
    """The bundle's pipeline from what the device sends to the model's input, and golden vectors expressed that way.

    The trained preprocessing is preceded by a resampling onto the training axis (a device whose calibrated axis
    differs from it but covers it is served on the model's grid; one that does not cover it is refused) and, when
    the instrument sends counts, by the counts -> ``quantity`` conversion with the device's dark and white
    references.
    """
    from edge.bundle import counts_from_signal  # noqa: PLC0415
    from edge.preprocess import CountsConversion, InputContract, Pipeline, Resample  # noqa: PLC0415

    grid = np.asarray(wavelengths, dtype=np.float64)
    steps: list[Any] = [Resample(grid=grid, unit=unit), *edge_pipe.steps]
    golden: dict[str, Any] = {"golden_inputs": X_golden, "golden_wavelengths": grid}
    if cfg.instrument.signal == "counts":
        quantity = cfg.instrument.quantity
        steps.insert(0, CountsConversion(quantity=quantity, min_ratio=min_ratio))
        counts, dark, white = counts_from_signal(X_golden, quantity)
        golden.update(golden_inputs=counts, golden_dark=dark, golden_reference=white)
    # Any pixel count: the resampling step reads the device's axis; the range is what it must cover.
    contract = InputContract(None, float(grid.min()), float(grid.max()), unit)
    return Pipeline(tuple(steps), contract), golden


#: Largest pixel count a device may send (uint16 pixels in the protocol's largest frame).
_MAX_DEVICE_PIXELS = 5614


def _line_contract(pipe: Any, cfg: TrainConfig, wavelengths: np.ndarray) -> dict[str, Any]:
    """Input contract of a bundle that resamples: any device axis covering the training range with at least as
    many pixels as the training axis, in the signal the instrument sends."""
    from trainer.bundle import make_input_contract  # noqa: PLC0415

    return make_input_contract(
        pixel_count_min=int(len(wavelengths)),
        pixel_count_max=max(_MAX_DEVICE_PIXELS, int(len(wavelengths))),
        wavelength_min=float(np.min(wavelengths)),
        wavelength_max=float(np.max(wavelengths)),
        frame_signal=cfg.instrument.signal,
    )


def _sparsity(model: Any) -> float:
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


def _histories(trained: Any) -> list[dict[str, list[float]]]:
    """Learning curves as a list of ``{loss, val_loss, ...}`` dicts (one joint history or one per member)."""
    h = getattr(trained, "history", None)
    if isinstance(h, Mapping):
        return [dict(h)]
    if isinstance(h, Sequence):
        return [dict(x) for x in h if isinstance(x, Mapping)]
    return []


def _standardised_history(history: Mapping[str, Sequence[float]], trained: Any, classify: bool) -> dict[str, Any]:
    """Pruning losses (MSE in reference units) on the CNN's standardised-target scale, for one shared plot."""
    scale = np.asarray(getattr(trained, "y_scale", np.ones(1)), dtype=np.float64)
    factor = 1.0 if classify or scale.size == 0 else float(np.mean(scale**2))
    return {k: [float(v) / factor for v in vals] for k, vals in history.items()}


def _best_epochs(trained: Any) -> list[int]:
    if hasattr(trained, "best_epochs"):
        return [int(e) for e in trained.best_epochs]
    if getattr(trained, "best_epoch", None) is not None:
        return [int(trained.best_epoch)]
    return []


def _keras_predict(model: Any, X: np.ndarray) -> np.ndarray:
    out = model.predict(np.asarray(X, dtype=np.float32), batch_size=256, verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(X.shape[0], -1)


def _build_cnn_config(cfg: TrainConfig) -> Any:
    from trainer.models import CNNConfig  # noqa: PLC0415

    d = dict(cfg.model)
    if "task" in d and d["task"] != cfg.task:
        raise TrainConfigError(f"model.task: expected {cfg.task!r} (data.task), got {d['task']!r}")
    d["task"] = cfg.task
    return CNNConfig.from_dict(d)


def _build_augment_config(cfg: TrainConfig) -> Any:
    from trainer.augment import AugmentConfig  # noqa: PLC0415

    return AugmentConfig.from_dict(dict(cfg.augment))


def _build_prune_config(cfg: TrainConfig) -> Any:
    """The ``[pruning]`` table as :class:`trainer.pruning.PruneConfig`, or None when pruning is off.

    Pruning is on when the table sets ``target_sparsity > 0`` and does not say ``enabled = false``.
    """
    p = dict(cfg.pruning)
    enabled = p.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise TrainConfigError(f"pruning.enabled: expected true/false, got {enabled!r}")
    from trainer.pruning import PruneConfig  # noqa: PLC0415

    pcfg = PruneConfig.from_dict(p)
    if not enabled or not p or pcfg.target_sparsity <= 0.0:
        return None
    return pcfg


def _check_rows(cfg: TrainConfig, tr: np.ndarray, sel: np.ndarray, groups: np.ndarray, classify: bool) -> None:
    """Refuse, before anything trains, a split that leaves too few rows for cross-validation, the OOD model or the
    intervals (the message gives the numbers)."""
    from trainer.conformal import min_calibration_rows  # noqa: PLC0415

    problems = []
    n_groups = int(np.unique(groups[tr]).size)
    folds = max(cfg.cv.folds, cfg.selection.cnn_cv_folds if cfg.selection.model == "auto" and not classify else 2,
                (cfg.search.folds or cfg.selection.cnn_cv_folds) if cfg.search.active and not classify else 2)
    if n_groups < folds:
        problems.append(f"cross-validation with {folds} folds needs at least {folds} groups of training rows, "
                        f"got {n_groups}")
    if tr.size < 5:
        problems.append(f"the OOD model needs at least 5 training rows, got {tr.size}")
    if not classify:
        need = min_calibration_rows(cfg.intervals.coverage)
        if sel.size < need:
            problems.append(f"intervals at coverage {cfg.intervals.coverage:g} need at least {need} selection rows, "
                            f"got {sel.size}")
    if problems:
        raise TrainConfigError("split: " + "; ".join(problems) + " (nothing was trained)")


def _prune(trained: Any, pcfg: Any, cfg: TrainConfig, X_tr: np.ndarray, y_tr: np.ndarray, X_sel: np.ndarray,
           y_sel: np.ndarray) -> tuple[Any, dict[str, Any]]:
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
    from trainer.pruning import prune_model  # noqa: PLC0415

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


def _search_recipe(
    cfg: TrainConfig, X_tr: np.ndarray, Y_tr: np.ndarray, groups_tr: np.ndarray, target_names: Sequence[str],
    cand: str, make_pre: Callable[[Sequence[Mapping[str, Any]]], Any], out: Path, prog: _Progress,
    progress: Callable[[str], None] | None,
) -> tuple[dict[str, Any], np.ndarray | None, int]:
    """The ``[search]`` stage (:mod:`trainer.search`): ``(metrics.json search, the best trial's out-of-fold
    predictions or None, its folds)``. Skipped (the configured recipe) when the search is off, for classification
    and for ``--model pls``."""
    sc = cfg.search
    why = ("no [search] table" if not sc.enabled and "search" not in cfg.raw
           else "enabled = false" if not sc.enabled
           else "budget_min = 0" if sc.budget_min <= 0
           else "trials = 0" if sc.trials <= 0
           else "classification is not searched" if cfg.task == "classification"
           else "--model pls: the CNN is not deployed" if cfg.selection.model == "pls"
           else None)
    if why is not None:
        log.info("CNN recipe search off (%s): the configured recipe is trained", why)
        return {"ran": False, "reason": why}, None, 0
    prog.stage("search CNN recipe")
    from trainer.search import SearchInputs, run_search  # noqa: PLC0415

    model = dict(cfg.model)
    model["task"] = cfg.task
    inputs = SearchInputs(X=X_tr, Y=np.asarray(Y_tr, dtype=np.float64), groups=groups_tr,
                          target_names=tuple(target_names), make_pre=make_pre,
                          candidates=cfg.preprocessing.candidates, base_candidate=cand, base_model=model,
                          base_augment=dict(cfg.augment))
    result = run_search(cfg, inputs, out, progress=progress)
    return result.to_dict(), result.oof, result.folds


def fit(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a whole training and write the bundle, ``metrics.json`` and ``report/index.html`` into ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
        From :func:`trainer.config.load_config`.
    out_dir : str or Path
        Output folder (created; an existing bundle of the same model id is replaced).
    progress : callable, optional
        Called with one line per stage (the log carries the same lines).

    Returns
    -------
    dict
        The content of ``metrics.json`` (keys in the module docstring).
    """
    return fit_full(config, out_dir, progress=progress).metrics


def fit_full(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> FitResult:
    """:func:`fit`, returning the paths and in-memory results as well."""
    cfg = config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prog = _Progress(progress)
    classify = cfg.task == "classification"

    # Validate the model sections before anything expensive runs.
    cnn_cfg = _build_cnn_config(cfg)
    aug_cfg = _build_augment_config(cfg)
    prune_cfg = _build_prune_config(cfg)

    prog.stage("load data")
    ds = load_configured(cfg.data)
    log.info("data: %s, %d spectra x %d channels, targets %s", ds.source, ds.n_samples, ds.n_channels,
             ", ".join(ds.target_names))

    prog.stage("split rows")
    plan = make_split_plan(ds, cfg.split, seed=cfg.seed)
    tr, sel = plan.train_rows, plan.select_rows
    X, Y = ds.X, ds.y
    cv_groups = group_labels(ds, cfg.cv.group or cfg.split.group)
    _check_rows(cfg, tr, sel, cv_groups, classify)
    min_ratio = _check_signal(cfg, X, ds.source)

    from trainer.preprocessing import make_pipeline_from_config  # noqa: PLC0415

    def make_pre(steps: Sequence[Mapping[str, Any]]) -> Any:
        return make_pipeline_from_config([dict(s) for s in steps], ds.wavelengths, unit=ds.axis_unit)

    prog.stage("PLS baseline")
    from trainer.pls import fit_pls_baseline  # noqa: PLC0415

    pls = fit_pls_baseline(
        X[tr], Y[tr],
        candidates=cfg.preprocessing.candidates,
        groups=cv_groups[tr],
        target_names=ds.target_names,
        task=cfg.task,
        class_names=ds.class_names,
        folds=cfg.cv.folds,
        max_components=cfg.cv.max_components,
        seed=cfg.seed,
        make_preprocess=make_pre,
    )

    cand = cfg.preprocessing.cnn
    if cand == "pls_best":
        cand = pls.models[0].candidate
    search_info, search_oof, search_folds = _search_recipe(cfg, X[tr], Y[tr], cv_groups[tr], ds.target_names, cand,
                                                           make_pre, out, prog, progress)
    if search_info.get("best_recipe") is not None:
        recipe = search_info["best_recipe"]
        cand = recipe["candidate"]
        cnn_cfg = _build_cnn_config(replace(cfg, model=recipe["model"]))
        aug_cfg = _build_augment_config(replace(cfg, augment=recipe["augment"]))
        log.info("CNN recipe from the search (trial %s): preprocessing %s, model %s, augment %s",
                 search_info.get("best_trial"), cand, recipe["model"], recipe["augment"])
    steps = cfg.preprocessing.candidates[cand]
    from trainer.augment import augment  # noqa: PLC0415
    from trainer.champion import (  # noqa: PLC0415
        choose_model,
        cnn_cv_predictions,
        deployable_pls,
        pls_cv_predictions,
        pls_cv_rmse,
    )
    from trainer.models import train_cnn  # noqa: PLC0415

    mode = cfg.selection.model
    cnn_cv = cnn_oof = None
    if search_oof is not None and search_folds == cfg.selection.cnn_cv_folds and mode != "pls":
        # The best trial ran exactly this cross-validation (same folds, seeds and recipe): reuse it.
        prog.stage("cross-validate CNN")
        log.info("CNN cross-validation: the out-of-fold predictions of search trial %s", search_info.get("best_trial"))
        cnn_oof = search_oof
        cnn_cv = np.sqrt(np.mean((cnn_oof - Y[tr]) ** 2, axis=0))
    elif mode == "auto" and not classify:
        prog.stage("cross-validate CNN")
        cnn_oof = cnn_cv_predictions(
            X[tr], Y[tr].astype(np.float64), cv_groups[tr],
            make_pre=lambda: make_pre(steps),
            augment_fn=lambda Xa, ya, sd: augment(Xa, ya, aug_cfg, seed=sd),
            train_fn=lambda Xp, yp, sd: train_cnn(Xp, yp, None, None, config=cnn_cfg, seed=sd).model,
            predict_fn=_keras_predict,
            folds=cfg.selection.cnn_cv_folds,
            seed=cfg.seed,
            progress=progress,
        )
        cnn_cv = np.sqrt(np.mean((cnn_oof - Y[tr]) ** 2, axis=0))

    prog.stage("train CNN")
    pre = make_pre(steps).fit(X[tr])
    edge_pipe = pre.to_edge()

    y_tr = Y[tr][:, 0] if classify else Y[tr]
    y_sel = Y[sel][:, 0] if classify else Y[sel]
    X_aug, y_aug = augment(X[tr], y_tr, aug_cfg, seed=cfg.seed)
    X_tr_pre = pre.transform(X_aug)
    X_sel_pre = pre.transform(X[sel])
    log.info("CNN input: preprocessing %s, %d training spectra (%d after augmentation), input shape %s",
             cand, tr.size, X_aug.shape[0], X_tr_pre.shape[1:])
    trained = train_cnn(X_tr_pre, y_aug, X_sel_pre, y_sel, config=cnn_cfg, seed=cfg.seed)
    roles = plan.roles()
    role_pre = {role: pre.transform(X[rows]) for role, rows in roles.items()}

    def cnn_predict(keras_model: Any, Xp: np.ndarray) -> np.ndarray:
        out_f = _keras_predict(keras_model, Xp)
        return np.argmax(out_f, axis=1)[:, None].astype(np.float64) if classify else out_f

    # Dense (unpruned) predictions first: pruning fine-tunes the same model object in place.
    dense_preds = {role: cnn_predict(trained.model, Xp) for role, Xp in role_pre.items()} if prune_cfg else {}

    prog.stage("prune")
    model, pruning_info = _prune(trained, prune_cfg, cfg, X_tr_pre, y_aug, X_sel_pre, y_sel)
    sparsity = float(pruning_info.get("sparsity", _sparsity(model)))
    pruning_info["sparsity"] = sparsity
    pruning_info["sparsity_all_kernels"] = _sparsity(model)
    log.info("kernel sparsity %.1f%%", 100 * sparsity)

    prog.stage("int8 conversion")
    from trainer.quantize import convert_int8  # noqa: PLC0415

    X_train_pre = pre.transform(X[tr])  # real, un-augmented training spectra: the representative set
    rng = np.random.default_rng(cfg.seed)
    n_rep = min(cfg.quantize.representative_samples, X_train_pre.shape[0])
    rep = X_train_pre[np.sort(rng.choice(X_train_pre.shape[0], n_rep, replace=False))]
    # Regression: the int8 model emits standardised targets, the edge turns them into units in float.
    cnn_transform = None
    to_convert = model
    if not classify:
        from trainer.models import standardised_output_copy  # noqa: PLC0415

        to_convert = standardised_output_copy(model, trained.y_mean, trained.y_scale)
        cnn_transform = {"scale": [float(v) for v in np.reshape(trained.y_scale, -1)],
                         "offset": [float(v) for v in np.reshape(trained.y_mean, -1)]}
    tflite_int8 = convert_int8(to_convert, rep, subprocess=cfg.quantize.subprocess, seed=cfg.seed)

    from edge.runtime import ModelRuntime  # noqa: PLC0415

    # Predictions of PLS, the float CNN and the int8 CNN (edge preprocessing and LiteRT) on every role.
    preds: dict[tuple[str, str], np.ndarray] = {}
    rt_cnn = ModelRuntime(tflite_int8, output_affine=None if cnn_transform is None
                          else (cnn_transform["scale"], cnn_transform["offset"]))
    output_step = rt_cnn.output_step
    if output_step is not None and not classify:
        log.info("int8 output step: %s", ", ".join(f"{t} {v:.3g}" for t, v in zip(ds.target_names, output_step)))
    for role, rows in roles.items():
        preds[(role, "pls")] = pls.predict(X[rows]).astype(np.float64)
        preds[(role, "cnn_float")] = cnn_predict(model, role_pre[role])
        out_q = np.asarray(rt_cnn.predict(edge_pipe.transform(X[rows])), dtype=np.float64).reshape(rows.size, -1)
        preds[(role, "cnn_int8")] = np.argmax(out_q, axis=1)[:, None].astype(np.float64) if classify else out_q

    prog.stage("choose the deployed model")
    int8_cost = None
    if not classify and sel.size >= _MIN_COST_ROWS:
        err_f = np.sqrt(np.mean((preds[("select", "cnn_float")] - Y[sel]) ** 2, axis=0))
        err_q = np.sqrt(np.mean((preds[("select", "cnn_int8")] - Y[sel]) ** 2, axis=0))
        int8_cost = np.where(err_f > 0, err_q / np.where(err_f > 0, err_f, 1.0), 1.0)
    dep = None if classify else deployable_pls(pls, X[tr], Y[tr].astype(np.float64),
                                               candidates=cfg.preprocessing.candidates, make_pre=make_pre)
    selection = choose_model(
        ds.target_names, mode=mode, tie_margin=cfg.selection.tie_margin,
        pls_rmse=None if dep is None else dep.cv_rmse, pls_tuned_rmse=None if classify else pls_cv_rmse(pls),
        cnn_rmse=cnn_cv, int8_cost=int8_cost,
        folds=cfg.selection.cnn_cv_folds if cnn_cv is not None else 0, classification=classify,
    )
    log.info("deployed model: %s (%s)", selection.winner, selection.reason)
    if selection.winner == "pls" and dep is not None:  # dep is None only for classification, which deploys the CNN
        from trainer.quantize import convert_float  # noqa: PLC0415

        dep_tflite = convert_float(dep.keras_model(), subprocess=cfg.quantize.subprocess)
        dep_steps = cfg.preprocessing.candidates[dep.candidate]
        dep_edge_pipe = dep.preprocess.to_edge()
        dep_train_pre = dep.preprocess.transform(X[tr])
        dep_transform = None
    else:
        dep_tflite, dep_steps, dep_edge_pipe, dep_train_pre = tflite_int8, steps, edge_pipe, X_train_pre
        dep_transform = cnn_transform

    prog.stage("OOD + intervals")
    from trainer.conformal import empirical_coverage, fit_intervals  # noqa: PLC0415
    from trainer.drift import fit_ood  # noqa: PLC0415

    ood = fit_ood(dep_train_pre, cfg.ood.n_components, cfg.ood.variance, cfg.ood.alpha,
                  max_components=cfg.ood.max_components, groups=cv_groups[tr], seed=cfg.seed)
    intervals = None
    if not classify:
        rt = ModelRuntime(dep_tflite, output_affine=None if dep_transform is None
                          else (dep_transform["scale"], dep_transform["offset"]))
        sel_pred = np.asarray(rt.predict(dep_edge_pipe.transform(X[sel])), dtype=np.float64).reshape(sel.size, -1)
        # Held-out residuals of every calibration row: the selection rows (final model) and the training rows
        # out of fold (the deployed recipe cross-validated), not the selection rows alone.
        oof = None
        if selection.winner == "pls" and dep is not None:
            oof = pls_cv_predictions(dep, X[tr], Y[tr].astype(np.float64), cv_groups[tr],
                                     steps=cfg.preprocessing.candidates[dep.candidate], make_pre=make_pre,
                                     folds=cfg.cv.folds, seed=cfg.seed)
        elif cnn_oof is not None:
            oof = cnn_oof
        resid = Y[sel] - sel_pred
        interval_rows = {"select": int(sel.size), "train_out_of_fold": 0}
        if oof is not None and np.all(np.isfinite(oof)):
            resid = np.concatenate([resid, Y[tr] - oof])
            interval_rows["train_out_of_fold"] = int(tr.size)
        intervals = fit_intervals(resid, cfg.intervals.coverage, target_names=ds.target_names)
        log.info("conformal half-widths at %.0f%% from %d held-out residuals: %s", 100 * cfg.intervals.coverage,
                 resid.shape[0], ", ".join(f"{t} +/-{q:.4g}" for t, q in zip(ds.target_names, intervals.q_hat)))

    prog.stage("bundle")
    from trainer.bundle import hash_training_data, write_bundle  # noqa: PLC0415

    units = dict(cfg.bundle.units)
    targets = _bundle_targets(ds.target_names, units, None if classify else Y[tr].astype(np.float64))
    golden_rows = _golden_rows(Y.astype(np.float64), tr, N_GOLDEN)
    line_pipe, golden = _line_pipeline(dep_edge_pipe, cfg, ds.wavelengths, ds.axis_unit, X[golden_rows], min_ratio)
    bundle_path = out / f"{cfg.bundle.model_id}.spectrolite"
    for stale in out.glob("*.spectrolite"):
        if stale != bundle_path:
            log.warning("removing an older bundle from the output folder: %s", stale.name)
            stale.unlink()
    common = dict(
        model_id=cfg.bundle.model_id,
        model_version=cfg.bundle.model_version,
        task=cfg.task,
        targets=targets,
        wavelengths=_model_grid(dep_steps, ds.wavelengths),
        tflite_bytes=dep_tflite,
        pipeline=line_pipe,
        output_transform=dep_transform,
        input_contract=_line_contract(line_pipe, cfg, ds.wavelengths),
        **golden,
        training_data_sha256=hash_training_data(X[tr], Y[tr]),
        seed=cfg.seed,
        class_labels=list(ds.class_names) if ds.class_names else None,
        wavelength_unit=ds.axis_unit,
        ood=ood,
        intervals=intervals,
    )
    write_bundle(bundle_path, metrics={"stage": "pre-evaluation"}, **common)

    prog.stage("evaluate through the edge runtime")
    from edge.bundle import load_bundle  # noqa: PLC0415

    bundle = load_bundle(bundle_path)
    if bundle.ood is None:
        raise TrainerError(f"{bundle_path.name}: the written bundle carries no OOD model")
    bundle_ood = bundle.ood
    ood_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for role, rows in roles.items():
        frames, ctx = bundle.frames_from_signal(X[rows], ds.wavelengths)  # as the device sends them
        out_q = np.asarray(bundle.predict_spectra(frames, **ctx), dtype=np.float64).reshape(rows.size, -1)
        preds[(role, "deployed")] = np.argmax(out_q, axis=1)[:, None].astype(np.float64) if classify else out_q
        ood_scores[role] = bundle_ood.score(bundle.preprocess(frames, **ctx))

    evaluations: list[dict[str, Any]] = []
    for role, rows in roles.items():
        for j, target in enumerate(ds.target_names):
            for m in MODELS:
                p = preds[(role, m)][:, j]
                row: dict[str, Any] = {"split": role, "target": target, "model": m}
                row.update(
                    classification_metrics(Y[rows][:, j], p) if classify else regression_metrics(Y[rows][:, j], p)
                )
                evaluations.append(row)
    coverage: dict[str, Any] = {}
    if intervals is not None:
        assert bundle.intervals is not None
        coverage = {"nominal": cfg.intervals.coverage, "calibration_rows": sum(interval_rows.values()),
                    "calibration": interval_rows,
                    "half_widths": dict(zip(ds.target_names, bundle.intervals.q_hat.tolist()))}
        for name, rows in plan.tests.items():
            cov = empirical_coverage(bundle.intervals, Y[rows], preds[(name, "deployed")])
            coverage[name] = dict(zip(ds.target_names, cov.tolist()))

    def _metric(role: str, model_name: str, target: str, key: str) -> float:
        for e in evaluations:
            if (e["split"], e["model"], e["target"]) == (role, model_name, target):
                return float(e[key])
        return float("nan")

    key = "accuracy" if classify else "rmsep"
    comparison = []
    for name in plan.tests:
        for t in ds.target_names:
            a = _metric(name, "pls", t, key)
            b = _metric(name, "cnn_int8", t, key)
            f = _metric(name, "cnn_float", t, key)
            d = _metric(name, "deployed", t, key)
            comparison.append({"split": name, "target": t, f"pls_{key}": a, f"cnn_int8_{key}": b,
                               f"cnn_float_{key}": f, f"deployed_{key}": d,
                               "ratio_int8_to_pls": b / a if a else None,
                               "ratio_int8_to_float": b / f if f else None,
                               "ratio_deployed_to_pls": d / a if a else None})
    if dense_preds:
        cost: dict[str, dict[str, dict[str, float]]] = {}
        for role, rows in roles.items():
            for j, t in enumerate(ds.target_names):
                d = dense_preds[role][:, j]
                before = (classification_metrics(Y[rows][:, j], d) if classify
                          else regression_metrics(Y[rows][:, j], d))[key]
                cost.setdefault(role, {})[t] = {f"{key}_dense": before,
                                                f"{key}_pruned": _metric(role, "cnn_float", t, key)}
        pruning_info["accuracy_cost"] = cost

    ood_summary = {
        "n_components": bundle_ood.n_components,
        "t2_limit": bundle_ood.t2_limit,
        "q_limit": bundle_ood.q_limit,
        "alpha": bundle_ood.alpha,
        "alarm_rate": {r: {"t2": float(np.mean(s[0] > bundle_ood.t2_limit)),
                           "q": float(np.mean(s[1] > bundle_ood.q_limit))} for r, s in ood_scores.items()},
    }
    model_bytes = len(dep_tflite)
    metrics: dict[str, Any] = {
        "schema_version": 1,
        "task": cfg.task,
        "dataset": ds.source,
        "targets": list(ds.target_names),
        "class_names": list(ds.class_names) if ds.class_names else None,
        "model_id": cfg.bundle.model_id,
        "model_version": cfg.bundle.model_version,
        "seed": cfg.seed,
        "splits": {r: int(rows.size) for r, rows in roles.items()},
        "evaluations": evaluations,
        "comparison": comparison,
        "deployed_model": selection.winner,
        "selection": selection.to_dict(),
        "search": search_info,
        "deployed_pls": ({"candidate": dep.candidate, "n_components": dict(dep.n_components)}
                         if selection.winner == "pls" and dep is not None else None),
        "pls_components": pls.components,
        "preprocessing": {"cnn": cand, "pls": pls.candidates,
                          "candidates": {k: [dict(s) for s in v] for k, v in cfg.preprocessing.candidates.items()}},
        "sparsity": sparsity,
        "pruning": pruning_info,
        "model_bytes": model_bytes,
        "cnn_model_bytes": len(tflite_int8),
        "cnn_int8_output_step": (dict(zip(ds.target_names, map(float, output_step)))
                                 if output_step is not None and not classify else None),
        "bundle_bytes": 0,
        "train_seconds": 0.0,
        "cnn_train_seconds": float(trained.train_seconds),
        "cnn_params": int(getattr(trained, "n_params", 0)),
        "cnn_best_epochs": _best_epochs(trained),
        "cnn_epochs_run": getattr(trained, "epochs_run", None),
        "interval_coverage": coverage,
        "ood": ood_summary,
        "runtime": bundle.runtime.runtime_description if hasattr(bundle.runtime, "runtime_description") else "",
    }

    # Final bundle: same model, pipeline, OOD and intervals, now carrying the complete metrics.
    metrics["train_seconds"] = round(prog.elapsed_s, 2)
    write_bundle(bundle_path, metrics=_clean_json(metrics), **common)
    final = load_bundle(bundle_path)
    check_rows = next(iter(plan.tests.values()))
    again = np.asarray(
        final.predict_signal(X[check_rows], ds.wavelengths), dtype=np.float64
    ).reshape(check_rows.size, -1)
    first = np.asarray(
        bundle.predict_signal(X[check_rows], ds.wavelengths), dtype=np.float64
    ).reshape(check_rows.size, -1)
    if not np.allclose(again, first, rtol=0, atol=_REPRODUCE_ATOL):
        raise TrainerError("the final bundle predicts differently from the evaluated one")
    metrics["bundle_bytes"] = bundle_path.stat().st_size
    metrics["bundle"] = bundle_path.name

    report_path = None
    if cfg.report:
        prog.stage("report")
        metrics["timings_s"] = dict(prog.timings)
        from trainer.explain import explain_run, html_section  # noqa: PLC0415
        from trainer.report import ReportInputs, write_report  # noqa: PLC0415

        # What the network and PLS look at, over the mean spectrum (integrated gradients, occlusion, VIP, kernels).
        explain_paths = explain_run(
            out / "report",
            X_abs_train=X[tr],
            X_abs_explain=X[sel],
            wavelengths=ds.wavelengths,
            target_names=list(ds.class_names) if classify and ds.class_names else list(ds.target_names),
            unit=ds.axis_unit,
            keras_model=model,
            preprocess=pre,
            pls_baseline=pls,
        )
        report_path = write_report(
            out / "report",
            ReportInputs(
                title=f"{cfg.bundle.model_id} {cfg.bundle.model_version}",
                config_source=cfg.source,
                dataset=ds,
                plan=plan,
                metrics=metrics,
                predictions=preds,
                histories=[("CNN", h) for h in _histories(trained)]
                + ([("pruning fine-tune", _standardised_history(pruning_info["history"], trained, classify))]
                   if pruning_info.get("history") else []),
                pls_curves={", ".join(m.targets): dict(m.cv_curves) for m in pls.models},
                ood_scores=ood_scores,
                ood_limits=(bundle_ood.t2_limit, bundle_ood.q_limit),
                intervals=bundle.intervals,
                units=units,
                extra_html=html_section(explain_paths, out / "report"),
            ),
        )
    prog.end()
    metrics["timings_s"] = dict(prog.timings)
    metrics["train_seconds"] = round(prog.elapsed_s, 2)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(_clean_json(metrics), indent=2, allow_nan=False) + "\n")
    log.info("wrote %s, %s%s in %.1f s", bundle_path.name, metrics_path.name,
             ", report/index.html" if report_path else "", prog.elapsed_s)
    return FitResult(metrics=_clean_json(metrics), bundle_path=bundle_path, metrics_path=metrics_path,
                     report_path=report_path, extras={"plan": plan, "pls": pls, "trained": trained})

