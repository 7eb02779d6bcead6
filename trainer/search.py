"""The Optuna search of the CNN recipe, scored by the champion rule's grouped cross-validation.

A trial is one recipe: the CNN architecture (depth, filters, kernels, strides, dense layers, activation, a linear path
beside the convolutions), its regularisation (dropout, L2), the augmentation strength (offset, slope,
multiplicative scale, noise, axis shift), the input preprocessing (one of the config's candidates), the learning
rate, the epochs, the ensemble size and, with ``[pretrain]`` enabled, whether the CNN trunk is pretrained on the
unlabeled spectra (:mod:`trainer.pretrain`; each fold pretrains through its own fitted preprocessing). Its score
is what :func:`trainer.champion.cnn_cv_predictions` gives on the training rows (grouped folds, preprocessing fitted
per fold, no selection rows): the geometric mean over targets of the out-of-fold RMSE divided by the target's
standard deviation (for one target, the RMSE in standard deviations); a classification's, the out-of-fold
cross-entropy of its class probabilities (class-stratified folds). The first trial of a new study is the
configured recipe itself, so the search can only report a recipe that beat it in the same cross-validation; the
second is that recipe with its input rescaled (:func:`trainer.search_space.rescaled_recipe`).

Optuna runs it: a seeded TPE sampler, a median pruner fed the running out-of-fold score after each fold (a trial
worse than the median of earlier trials at the same fold stops there), a wall-clock budget and a trial count. The
study lives in an Optuna storage: a SQLite file in the output folder by default, or an RDB URL (PostgreSQL, MySQL)
that several workers (``spectro-train search``) on several machines fill at once; each trial stores its whole
recipe and, when complete, its out-of-fold predictions, so ``spectro-train fit`` reuses the best trial of any
worker without retraining it.

After the search the chosen recipe is cross-validated with ``spread_seeds - 1`` more training seeds on the same
folds: the seed-to-seed spread of its CV RMSE is reported (``metrics.json`` ``search.seed_spread``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import SearchConfig, TrainConfig
from trainer.errors import TrainConfigError
from trainer.search_space import _CONFIGURED, _RESCALED, configured_recipe, rescaled_recipe, suggest_recipe
from trainer.search_storage import open_storage, resolve_storage

__all__ = ["SearchInputs", "SearchResult", "SEARCH_SPACE_VERSION", "prepare_inputs", "resolve_storage", "run_search",
           "score", "class_score", "search_base_model", "study_name_for",
           "suggest_recipe"]

log = logging.getLogger(__name__)

#: Bumped when the search space or the score changes (part of the default study name: old studies are not mixed in).
SEARCH_SPACE_VERSION = 6  # 4: [model] max_steps caps a trial's epochs; 5: and max_gmac; 6: linear_start
#: Random (TPE start-up) trials before TPE models the good and bad recipes.
_TPE_STARTUP_TRIALS = 8
#: Completed trials before the median pruner stops any (few: on two cores a budget holds only a few trials), and
#: folds a trial always runs.
_PRUNER_STARTUP_TRIALS = 2
_PRUNER_WARMUP_FOLDS = 1
#: Trials a suggested budget is sized for, when the configured budget held the configured recipe only.
_SUGGESTED_TRIALS = 10
#: The search's clock (seconds; tests substitute one that only the trials advance).
_clock = time.monotonic

@dataclass(frozen=True)
class SearchInputs:
    """What every trial trains on: the training rows (absorbance), their targets and CV groups, the preprocessing
    factory and the configured recipe.

    Attributes
    ----------
    X : ndarray, shape (n, n_channels)
    Y : ndarray, shape (n, n_targets), float64
    groups : ndarray, shape (n,)
    target_names : tuple of str
    make_pre : callable
        ``make_pre(steps)`` -> an unfitted preprocessing estimator.
    candidates : mapping of str to step lists
    base_candidate : str
        The configured CNN input (``pls_best`` resolved by the caller).
    base_model, base_augment : dict
        The configured ``[model]`` (with ``task``) and ``[augment]`` tables.
    pretrain : trainer.pretrain.PretrainPlan or None
        With ``[pretrain]`` enabled: the pretraining settings and unlabeled spectra; ``pretrain`` (on/off) is then a
        parameter of the search.
    rows_for : callable, optional
        ``[augment]`` config -> ``fn(X, y, seed)``, the CNN's training set of some rows (augmented copies and
        ``[instrument.noise] cnn_copies`` line copies: :func:`trainer.pipeline.recipe.cnn_rows_for`); None: the
        augmented copies alone.
    n_classes : int
        A classification's number of classes (``Y`` then holds the class indices as one column), 0 for a
        regression.
    """

    X: np.ndarray
    Y: np.ndarray
    groups: np.ndarray
    target_names: tuple[str, ...]
    make_pre: Callable[[Sequence[Mapping[str, Any]]], Any]
    candidates: Mapping[str, Sequence[Mapping[str, Any]]]
    base_candidate: str
    base_model: Mapping[str, Any]
    base_augment: Mapping[str, Any]
    pretrain: Any = None
    rows_for: Any = None
    n_classes: int = 0

    @property
    def labels(self) -> np.ndarray | None:
        """A classification's class indices (n,), None for a regression."""
        return self.Y[:, 0].astype(np.int64) if self.n_classes else None

    def trial_score(self, pred: np.ndarray, rows: np.ndarray | None = None) -> float:
        """A trial's score on ``rows`` (all by default; lower is better): :func:`score` for a regression, the
        out-of-fold cross-entropy of the class probabilities (:func:`class_score`) for a classification."""
        labels = self.labels
        return score(pred, self.Y, self.y_sd, rows) if labels is None else class_score(pred, labels, rows)

    def cv_errors(self, pred: np.ndarray) -> dict[str, float]:
        """Out-of-fold RMSE per target, or a classification's error rate (``metrics.json`` ``best_cv_rmse``)."""
        labels = self.labels
        if labels is None:
            return dict(zip(self.target_names, map(float, np.sqrt(np.mean((pred - self.Y) ** 2, axis=0)))))
        return {self.target_names[0]: float(np.mean(np.argmax(pred, axis=1) != labels))}

    @property
    def y_sd(self) -> np.ndarray:
        """Standard deviation of each target on the training rows (1 where constant): the score's unit."""
        sd = np.std(self.Y, axis=0)
        return np.where(sd > 0, sd, 1.0)

    @property
    def baseline_sd_abs(self) -> float:
        """Spread of the training spectra's baselines (sd of the per-spectrum mean absorbance): the augmentation's
        unit for offset, slope and noise."""
        s = float(np.std(np.mean(self.X, axis=1)))
        return s if s > 0 else float(np.std(self.X)) or 1.0


@dataclass
class SearchResult:
    """The outcome of :func:`run_search` (``metrics.json`` ``search`` is :meth:`to_dict`)."""

    study_name: str
    storage_kind: str
    recipe: dict[str, Any] | None
    best_trial: int | None
    best_value: float | None
    best_cv_rmse: dict[str, float] | None
    best_params: dict[str, Any]
    configured_value: float | None
    oof: np.ndarray | None
    folds: int
    trials_run: int
    trials_pruned: int
    trials_failed: int
    trials_in_study: int
    budget_s: float
    budget_used_s: float
    seed_spread: dict[str, Any] | None = None
    trial_log: list[dict[str, Any]] = field(default_factory=list)
    classification: bool = False
    #: Set when the budget held no trial beyond the configured recipe: what a search would need.
    budget_note: str | None = None

    @property
    def error_name(self) -> str:
        """What ``best_cv_rmse`` and the seed spread hold: "CV RMSE", or "CV error rate" for a classification."""
        return "CV error rate" if self.classification else "CV RMSE"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ran": True,
            "study_name": self.study_name,
            "storage": self.storage_kind,
            "trials_run": self.trials_run,
            "trials_pruned": self.trials_pruned,
            "trials_failed": self.trials_failed,
            "trials_in_study": self.trials_in_study,
            "folds": self.folds,
            "best_trial": self.best_trial,
            "best_is_configured": self.recipe is not None and bool(self.recipe.get(_CONFIGURED)),
            "best_score": self.best_value,
            "configured_score": self.configured_value,
            "best_cv_rmse": self.best_cv_rmse,
            "best_params": self.best_params,
            "best_recipe": None if self.recipe is None else {k: v for k, v in self.recipe.items() if k != _CONFIGURED},
            "seed_spread": self.seed_spread,
            "budget_s": self.budget_s,
            "budget_used_s": round(self.budget_used_s, 2),
            "cv_error": self.error_name,
            "score": ("out-of-fold cross-entropy of the class probabilities; best_cv_rmse and seed_spread hold error "
                      "rates (lower is better)" if self.classification else
                      "geometric mean over targets of out-of-fold RMSE / target sd (lower is better)"),
            "trials": self.trial_log,
            "budget_note": self.budget_note,
        }


def class_score(prob: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Mean cross-entropy (log loss, natural log) of the class probabilities ``prob`` (n, k) of the true ``labels``
    on ``rows`` (all rows by default); inf when not finite. Finer than the error rate, which ties most recipes."""
    p, y = (prob, labels) if rows is None else (prob[rows], labels[rows])
    loss = float(np.mean(-np.log(np.clip(p[np.arange(y.size), y], 1e-7, 1.0))))
    return loss if math.isfinite(loss) else math.inf


def score(pred: np.ndarray, Y: np.ndarray, y_sd: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Geometric mean over targets of RMSE / sd on ``rows`` (all rows by default); inf when not finite."""
    p, y = (pred, Y) if rows is None else (pred[rows], Y[rows])
    rmse = np.sqrt(np.mean((p - y) ** 2, axis=0)) / y_sd
    if not np.all(np.isfinite(rmse)):
        return math.inf
    return float(np.exp(np.mean(np.log(np.maximum(rmse, 1e-12)))))


def cv_predictions(recipe: Mapping[str, Any], inputs: SearchInputs, *, folds: int, seed: int,
                   fold_seed: int | None = None,
                   on_fold: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:
    """Out-of-fold predictions of a recipe by :func:`trainer.champion.cnn_cv_predictions` (the champion's CV; a
    classification's: class probabilities, class-stratified folds)."""
    from trainer.augment import AugmentConfig, augment
    from trainer.champion import class_rows_fn, cnn_cv_predictions
    from trainer.models import CNNConfig, train_cnn

    cnn_cfg = CNNConfig.from_dict(dict(recipe["model"]))
    aug_cfg = AugmentConfig.from_dict(dict(recipe["augment"]))
    steps = recipe.get("steps") or inputs.candidates[recipe["candidate"]]  # the rescaled trial carries its own

    def predict(model: Any, Xp: np.ndarray) -> np.ndarray:
        out = model.predict(np.asarray(Xp, dtype=np.float32), batch_size=256, verbose=0)
        return np.asarray(out, dtype=np.float64).reshape(Xp.shape[0], -1)

    rows_fn = (inputs.rows_for(aug_cfg) if inputs.rows_for is not None
               else lambda Xa, ya, sd: augment(Xa, ya, aug_cfg, seed=sd))
    labels = inputs.labels
    return cnn_cv_predictions(
        inputs.X, inputs.Y, inputs.groups,
        make_pre=lambda: inputs.make_pre(steps),
        augment_fn=rows_fn if labels is None else class_rows_fn(rows_fn, labels.dtype),
        train_fn=lambda Xp, yp, sd, trunks=None: train_cnn(Xp, yp, None, None, config=cnn_cfg, seed=sd,
                                                            trunks=trunks).model,
        predict_fn=predict,
        folds=folds,
        seed=seed,
        fold_seed=fold_seed,
        on_fold=on_fold,
        pretrain_fn=_pretrain_fn(recipe, inputs, cnn_cfg),
        y_class=labels,
    )


def _pretrain_fn(recipe: Mapping[str, Any], inputs: SearchInputs, cnn_cfg: Any) -> Callable[[Any, int], Any] | None:
    """Each fold pretrains the trunks through its own fitted preprocessing when the recipe says ``pretrain``."""
    plan = inputs.pretrain
    if plan is None or not recipe.get("pretrain"):
        return None
    from trainer.pretrain import pretrain_for

    return lambda pre, sd: pretrain_for(pre, plan, cnn_cfg, sd).trunks


def study_name_for(cfg: TrainConfig, inputs: SearchInputs, folds: int) -> str:
    """The default study name: the model id and a hash of everything a trial's score depends on (the config's
    data, instrument (its line copies train every trial), split, CV, preprocessing, model and augmentation tables,
    the seed, the folds, the training rows and the search space version)."""
    raw = {k: cfg.raw.get(k) for k in ("data", "split", "cv", "preprocessing", "model", "augment")}
    if cfg.raw.get("instrument") is not None:  # only then: the names of studies without it stay as they were
        raw["instrument"] = cfg.raw["instrument"]
    if cfg.pretrain.enabled:  # only then: the names of studies without pretraining stay as they were
        raw["pretrain"] = cfg.raw.get("pretrain")
    h = hashlib.sha256()
    h.update(json.dumps({"raw": raw, "seed": cfg.seed, "folds": folds, "version": SEARCH_SPACE_VERSION},
                        sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(inputs.X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(inputs.Y, dtype=np.float64).tobytes())
    return f"{cfg.bundle.model_id}-{h.hexdigest()[:12]}"


def prepare_inputs(cfg: TrainConfig) -> SearchInputs:
    """Load the data and split it as ``spectro-train fit`` does, for a search on its own (``spectro-train search``).

    The configured CNN input ``pls_best`` (chosen by PLS in ``fit``) is taken as the first candidate here; the
    search samples the candidates anyway."""
    from trainer.data import load_configured
    from trainer.pipeline.prepare import prepared_from
    from trainer.pipeline.recipe import cnn_rows_for, n_classes_of, pretrain_plan
    from trainer.splits import group_labels, make_split_plan

    ds = load_configured(cfg.data)
    plan_rows = make_split_plan(ds, cfg.split, seed=cfg.seed)
    tr = plan_rows.train_rows
    groups = group_labels(ds, cfg.cv.group or cfg.split.group)
    data = prepared_from(cfg, ds, plan_rows, groups)
    cand = cfg.preprocessing.cnn
    if cand == "pls_best":
        cand = next(iter(cfg.preprocessing.candidates))
    n_classes = n_classes_of(data)
    return SearchInputs(X=ds.X[tr], Y=np.asarray(ds.y[tr], dtype=np.float64), groups=groups[tr],
                        target_names=tuple(ds.target_names), make_pre=data.make_pre,
                        candidates=cfg.preprocessing.candidates, base_candidate=cand,
                        base_model=search_base_model(cfg, n_classes), base_augment=dict(cfg.augment),
                        pretrain=pretrain_plan(cfg, data), rows_for=cnn_rows_for(cfg, data), n_classes=n_classes)


def search_base_model(cfg: TrainConfig, n_classes: int) -> dict[str, Any]:
    """The configured ``[model]`` table a search starts from, with its task (and a classification's outputs fixed
    to every class, so that every fold's network gives probabilities of the same width)."""
    model = dict(cfg.model)
    model["task"] = cfg.task
    if n_classes:
        model["n_classes"] = n_classes
    return model


def _clear_keras() -> None:
    try:
        import keras

        keras.backend.clear_session()
    except Exception:  # only frees memory between trials
        log.debug("keras clear_session failed", exc_info=True)


def run_search(
    cfg: TrainConfig,
    inputs: SearchInputs,
    out_dir: str | Path,
    *,
    search: SearchConfig | None = None,
    folds: int | None = None,
    worker: int = 0,
    spread: bool = True,
    finish_configured: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Run (or continue) the study and return the best recipe, its out-of-fold predictions and the seed spread.

    Parameters
    ----------
    cfg : TrainConfig
    inputs : SearchInputs
    out_dir : path
        Where a relative SQLite storage file goes.
    search : SearchConfig, optional
        Defaults to ``cfg.search`` (the CLI's overrides are applied by the caller).
    folds : int, optional
        Defaults to ``search.folds`` or ``[selection] cnn_cv_folds``.
    worker : int
        Index of this worker: its sampler is seeded with ``seed + 1000 * worker``, so workers sharing a study do
        not sample the same recipes.
    spread : bool
        Cross-validate the chosen recipe with ``spread_seeds - 1`` more seeds (``spectro-train fit``); workers of
        ``spectro-train search`` skip it.
    finish_configured : bool
        Never cut the configured recipe's trial for the budget when it runs the folds of ``[selection]
        cnn_cv_folds`` (``spectro-train fit`` passes it when it cross-validates the CNN anyway): its out-of-fold
        predictions are then the fit's own CNN cross-validation, which a cut trial would make the fit run again.
    progress : callable, optional
        Called with one line per trial.
    """
    import optuna

    sc = cfg.search if search is None else search
    folds = int(folds or sc.folds or cfg.selection.cnn_cv_folds)
    seed = cfg.seed  # folds, augmentation and training: the champion's cross-validation exactly
    sampler_seed = cfg.seed if sc.seed is None else sc.seed
    budget_s = 60.0 * sc.budget_min
    finish_configured = finish_configured and folds == cfg.selection.cnn_cv_folds
    t0 = _clock()
    url, kind = resolve_storage(sc.storage, out_dir)
    name = sc.study_name or study_name_for(cfg, inputs, folds)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from here instead
    sampler = optuna.samplers.TPESampler(seed=sampler_seed + 1000 * worker, n_startup_trials=_TPE_STARTUP_TRIALS)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=_PRUNER_STARTUP_TRIALS, n_warmup_steps=_PRUNER_WARMUP_FOLDS)
    study = None
    for attempt in range(5):  # several workers may create the same SQLite tables at once
        try:
            study = optuna.create_study(storage=open_storage(url), study_name=name, sampler=sampler, pruner=pruner,
                                        direction="minimize", load_if_exists=True)
            break
        except Exception as exc:  # sqlalchemy's OperationalError etc.; retried, then raised
            if attempt == 4:
                raise TrainConfigError(f"search.storage: cannot open the study {name!r} in {kind} storage ({exc})") \
                    from exc
            time.sleep(0.5 + attempt)
    assert study is not None
    log.info("search: study %s in %s storage, %d trial(s) already there; budget %.1f min, at most %d trials, "
             "%d folds", name, kind, len(study.trials), sc.budget_min, sc.trials, folds)
    if not any(t.user_attrs.get(_CONFIGURED) for t in study.trials):
        study.enqueue_trial({}, user_attrs={_CONFIGURED: True})
    rescaled = rescaled_recipe(inputs) if sc.trials > 1 else None
    if rescaled is not None and not any(t.user_attrs.get(_RESCALED) for t in study.trials):
        # Its recipe is stored now: a trial still queued when this run's budget ends runs in a later process
        # (a `search` worker's configured input may be another candidate, `pls_best`).
        study.enqueue_trial({}, user_attrs={_RESCALED: True, "recipe": rescaled})

    try:  # a continued study: the best trial so far sets the seed-spread reserve until this run beats it
        best_duration = [float(study.best_trial.user_attrs.get("seconds", 0.0))]
    except ValueError:
        best_duration = [0.0]
    reserve_runs = (sc.spread_seeds - 1) if spread else 0

    def remaining_s() -> float:
        """Budget left for trials (the seed-spread runs of the best recipe so far are reserved)."""
        return budget_s - (_clock() - t0) - reserve_runs * best_duration[0]

    def objective(trial: Any) -> float:
        t_start = _clock()
        recipe = (configured_recipe(inputs) if trial.user_attrs.get(_CONFIGURED)
                  else dict(trial.user_attrs["recipe"]) if trial.user_attrs.get(_RESCALED)
                  else suggest_recipe(trial, inputs))
        trial.set_user_attr("recipe", recipe)
        trial.set_user_attr("worker", worker)

        def on_fold(i: int, pred: np.ndarray, done: np.ndarray) -> None:
            value = inputs.trial_score(pred, done)
            trial.report(value, i)
            if trial.should_prune():
                trial.set_user_attr("stopped", "pruned")
                raise optuna.TrialPruned(f"fold {i + 1}: running score {value:.4g} worse than the median")
            per_fold_s = (_clock() - t_start) / (i + 1)
            if i + 1 < folds and remaining_s() < per_fold_s:  # the next fold would overrun the budget
                if finish_configured and trial.user_attrs.get(_CONFIGURED):
                    if not trial.user_attrs.get("past_budget"):
                        trial.set_user_attr("past_budget", True)
                        msg = (f"search: the budget ends inside the configured recipe's cross-validation (fold "
                               f"{i + 1} of {folds}); it runs to the end, as the fit would run the same folds")
                        log.info(msg)
                        if progress is not None:
                            progress(msg)
                    return
                trial.set_user_attr("stopped", "budget")
                trial.set_user_attr("seconds_run", round(_clock() - t_start, 2))
                raise optuna.TrialPruned(f"fold {i + 1}: budget spent")

        try:
            pred = cv_predictions(recipe, inputs, folds=folds, seed=seed, on_fold=on_fold)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # Optuna fails the trial and goes on; the log and the trial list say why
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        finally:
            _clear_keras()
        value = inputs.trial_score(pred)
        if not math.isfinite(value):  # Optuna fails the trial; the trial list says why
            trial.set_user_attr("error", f"the cross-validation's score is not finite ({value})")
        if math.isfinite(value):
            trial.set_user_attr("oof", np.round(pred, 10).tolist())
            trial.set_user_attr("cv_rmse", inputs.cv_errors(pred))
            trial.set_user_attr("seconds", round(_clock() - t_start, 2))
        return value

    counts = {"run": 0, "pruned": 0, "failed": 0}
    trial_log: list[dict[str, Any]] = []

    def callback(st: Any, trial: Any) -> None:
        counts["run"] += 1
        state = trial.state.name.lower()
        if trial.state == optuna.trial.TrialState.PRUNED:
            counts["pruned"] += 1
        elif trial.state == optuna.trial.TrialState.FAIL:
            counts["failed"] += 1
        elapsed = _clock() - t0
        try:
            best = st.best_trial
        except ValueError:
            best = None
        if best is not None and best.number == trial.number:
            best_duration[0] = float(trial.user_attrs.get("seconds", elapsed))
        value = trial.value if trial.value is not None else (
            trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None)
        why = trial.user_attrs.get("stopped", "") or trial.user_attrs.get("error", "")
        entry = {"trial": trial.number, "state": state, "value": value,
                 "stopped": trial.user_attrs.get("stopped") or None, "error": trial.user_attrs.get("error"),
                 "configured": bool(trial.user_attrs.get(_CONFIGURED)),
                 "rescaled": bool(trial.user_attrs.get(_RESCALED)),
                 "seconds": round((trial.datetime_complete - trial.datetime_start).total_seconds(), 2)
                 if trial.datetime_complete and trial.datetime_start else None}
        trial_log.append(entry)
        label = (" (configured recipe)" if entry["configured"] else " (configured recipe, input rescaled)"
                 if entry["rescaled"] else "")
        msg = (f"search trial {trial.number}{label}: {state}"
               + (f" ({why})" if why and why != state else "")
               + (f", score {value:.4g}" if value is not None else "")
               + (f" in {entry['seconds']:.0f} s" if entry["seconds"] is not None else "")
               + (f"; best {best.value:.4g} (trial {best.number})" if best is not None else "")
               + f"; {elapsed:.0f} s elapsed, {max(0.0, remaining_s()):.0f} s of budget left for trials")
        log.info(msg)
        if progress is not None:
            progress(msg)
        if remaining_s() <= best_duration[0] / folds or (why == "budget" and best is None):  # no fold fits (no
            st.stop()  # finished trial to size one by: the cut trial's own folds did not fit)

    study.optimize(objective, n_trials=sc.trials, timeout=max(1.0, budget_s), callbacks=[callback],
                   # A sampled recipe that cannot train fails its trial (Optuna logs why), not the search.
                   catch=(Exception,), gc_after_trial=True)

    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value) and "recipe" in t.user_attrs]
    configured = [t for t in complete if t.user_attrs.get(_CONFIGURED)]
    result = SearchResult(
        study_name=name, storage_kind=kind, recipe=None, best_trial=None, best_value=None, best_cv_rmse=None,
        best_params={}, configured_value=float(configured[0].value) if configured else None, oof=None, folds=folds,
        trials_run=counts["run"], trials_pruned=counts["pruned"], trials_failed=counts["failed"],
        trials_in_study=len(study.trials), budget_s=budget_s, budget_used_s=0.0, trial_log=trial_log,
        classification=bool(inputs.n_classes),
    )
    # Sampled recipes the study judged (in this run or an earlier one): a trial the budget cut off judged nothing.
    # One still waiting (the rescaled trial, queued when the budget ran out) judged nothing either.
    judged = [t for t in study.get_trials(deepcopy=False, states=(
        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL))
              if not t.user_attrs.get(_CONFIGURED) and t.user_attrs.get("stopped") != "budget"]
    here = {e["trial"] for e in trial_log}  # a continued study's earlier cut trials are not this run's
    cut = [t for t in study.trials if t.number in here and {_CONFIGURED, "seconds_run"} <= set(t.user_attrs)]
    spread_runs, held, run_s = (max(0, sc.spread_seeds - 1) if spread else 0), None, 0.0
    if not complete and cut and sc.trials > 1:  # the budget ended inside the configured recipe's cross-validation
        done = max(1, len(cut[0].intermediate_values))
        run_s = float(cut[0].user_attrs["seconds_run"]) * folds / done
        held = (f"did not hold one cross-validation of the configured recipe ({done} of its {folds} folds, about "
                f"{run_s:.3g} s for all): no recipe was judged and the configured one is trained as is")
    elif not judged and sc.trials > 1 and configured:
        run_s = float(configured[0].user_attrs.get("seconds", 0.0))
        held = (f"held the configured recipe only ({run_s:.3g} s for its {folds} folds): no other recipe finished "
                "its cross-validation")
        if configured[0].user_attrs.get("past_budget") and configured[0].number in here:
            held = (f"did not hold one cross-validation of the configured recipe ({run_s:.3g} s for its {folds} "
                    "folds; it ran to the end, as the fit needs it): no other recipe was judged")
    if held is not None:
        want_min = math.ceil(run_s * (_SUGGESTED_TRIALS + spread_runs) / 60.0)
        result.budget_note = (f"the {sc.budget_min:g} min budget {held}; a budget of about {want_min} min "
                              f"(--budget-min or [search] budget_min) holds some {_SUGGESTED_TRIALS} trials"
                              + (" and the seed spread" if spread_runs else ""))
        log.warning("search: %s", result.budget_note)
    if complete:
        best = min(complete, key=lambda t: (t.value, t.number))
        result.recipe = dict(best.user_attrs["recipe"])
        result.best_trial = best.number
        result.best_value = float(best.value)
        result.best_params = dict(best.params)
        result.best_cv_rmse = dict(best.user_attrs.get("cv_rmse", {}))
        oof = best.user_attrs.get("oof")
        if oof is not None:
            arr = np.asarray(oof, dtype=np.float64).reshape(inputs.Y.shape[0], -1)
            result.oof = arr if np.all(np.isfinite(arr)) else None
        log.info("search: best trial %d, score %.4g%s (configured recipe %s), %s %s", best.number, best.value,
                 " (the configured recipe)" if best.user_attrs.get(_CONFIGURED) else "",
                 "n/a" if result.configured_value is None else f"{result.configured_value:.4g}", result.error_name,
                 ", ".join(f"{k} {v:.4g}" for k, v in result.best_cv_rmse.items()))
        if spread and result.oof is not None and sc.spread_seeds > 1:
            # Each further seed costs about one run of the best trial; run those that fit in the budget.
            run_s = float(best.user_attrs.get("seconds", 0.0))
            left = budget_s - (_clock() - t0)
            fits = sc.spread_seeds - 1 if run_s <= 0 else int(max(0.0, left) // run_s)
            n_seeds = 1 + min(sc.spread_seeds - 1, fits)
            result.seed_spread = _seed_spread(result, inputs, folds=folds, seed=seed, n_seeds=n_seeds,
                                              progress=progress)
            if n_seeds < sc.spread_seeds:
                result.seed_spread["note"] = (f"{n_seeds} of {sc.spread_seeds} seeds: one more run of the chosen "
                                              f"recipe (about {run_s:.0f} s) did not fit in the "
                                              f"{max(0.0, left):.0f} s left")
                log.warning("search: seed spread over %d of %d seeds (budget)", n_seeds, sc.spread_seeds)
    else:
        log.warning("search: no trial completed; the configured recipe is trained")
    result.budget_used_s = _clock() - t0
    return result


def _seed_spread(result: SearchResult, inputs: SearchInputs, *, folds: int, seed: int, n_seeds: int,
                 progress: Callable[[str], None] | None) -> dict[str, Any]:
    """CV RMSE (a classification's error rate) of the chosen recipe over ``n_seeds`` training seeds on the same folds
    (the search's run is seed 0)."""
    assert result.recipe is not None and result.oof is not None
    runs = [result.oof]
    seeds = [seed]
    for k in range(1, n_seeds):
        msg = f"search: seed spread, chosen recipe with training seed {seed + k} ({k + 1}/{n_seeds})"
        log.info(msg)
        if progress is not None:
            progress(msg)
        try:
            runs.append(cv_predictions(result.recipe, inputs, folds=folds, seed=seed + k, fold_seed=seed))
        finally:
            _clear_keras()
        seeds.append(seed + k)
    names = inputs.target_names
    rmse = np.array([[inputs.cv_errors(p)[t] for t in names] for p in runs])  # (seeds, targets)
    scores = [inputs.trial_score(p) for p in runs]
    out = {
        "seeds": seeds,
        "cv_rmse": {t: [float(v) for v in rmse[:, j]] for j, t in enumerate(names)},
        "mean": dict(zip(names, map(float, rmse.mean(axis=0)))),
        "std": dict(zip(names, map(float, rmse.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(names))))),
        "score": [float(s) for s in scores],
    }
    log.info("search: seed spread of the chosen recipe over %d seeds: %s", len(runs),
             ", ".join(f"{t} {out['mean'][t]:.4g} +/- {out['std'][t]:.2g}" for t in names))
    return out
