"""``[preprocessing]``, ``[selection]`` and ``[search]``: the candidates, the champion choice, the recipe search."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainer.config.tables import _check_keys, _get, _table
from trainer.errors import TrainConfigError


@dataclass(frozen=True)
class PreprocessingConfig:
    """Named preprocessing candidates (lists of step tables) and which one the CNN uses.

    ``cnn`` names a candidate or is ``"pls_best"`` (the candidate PLS cross-validation chose on training rows).
    """

    candidates: Mapping[str, tuple[Mapping[str, Any], ...]]
    cnn: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessingConfig:
        w = "preprocessing"
        _check_keys(d, w, {"candidates", "cnn"})
        cands_d = _table(d, "candidates", w, required=True)
        if not cands_d:
            raise TrainConfigError(
                "preprocessing.candidates: expected at least one named candidate, got an empty table")
        cands: dict[str, tuple[Mapping[str, Any], ...]] = {}
        for name, steps in cands_d.items():
            full = f"preprocessing.candidates.{name}"
            if not isinstance(steps, list):
                raise TrainConfigError(f"{full}: expected an array of step tables, got {type(steps).__name__}")
            for i, s in enumerate(steps):
                if not isinstance(s, Mapping) or not isinstance(s.get("op"), str):
                    raise TrainConfigError(f"{full}[{i}]: expected a table with an 'op' string, got {s!r}")
            cands[name] = tuple(dict(s) for s in steps)
        cnn = _get(d, "cnn", w, str, next(iter(cands)) if len(cands) == 1 else "pls_best")
        if cnn != "pls_best" and cnn not in cands:
            raise TrainConfigError(
                f"preprocessing.cnn: expected 'pls_best' or a candidate name ({', '.join(cands)}), got {cnn!r}"
            )
        return cls(candidates=cands, cnn=cnn)


@dataclass(frozen=True)
class SelectionConfig:
    """``[selection]``: which model the bundle carries (:mod:`trainer.champion`).

    Parameters
    ----------
    model : {"auto", "cnn", "pls"}
        ``auto`` (default) applies the champion rule; ``cnn``/``pls`` force one (``spectro-train fit --model``).
    cnn_cv_folds : int
        Grouped folds of the CNN's cross-validation (each trains the recipe once more); the PLS figure uses
        ``[cv] folds``.
    tie_margin : float
        Per target, the CNN must beat PLS by more than this share to serve it, and a blend of the two must beat
        the better of them by more than this share.
    blend : bool
        With ``auto``, a target the CNN won may be served by a weighted average of the CNN and PLS when its
        out-of-fold RMSE beats both models' (default true; :func:`trainer.champion.blend_weight`).
    """

    model: str = "auto"
    cnn_cv_folds: int = 5
    tie_margin: float = 0.02
    blend: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SelectionConfig:
        w = "selection"
        _check_keys(d, w, {"model", "cnn_cv_folds", "tie_margin", "blend"})
        model = _get(d, "model", w, str, "auto")
        if model not in ("auto", "cnn", "pls"):
            raise TrainConfigError(f"selection.model: expected auto, cnn or pls, got {model!r}")
        folds = _get(d, "cnn_cv_folds", w, int, 5)
        if folds < 2:
            raise TrainConfigError(f"selection.cnn_cv_folds: expected an integer >= 2, got {folds}")
        margin = _get(d, "tie_margin", w, float, 0.02)
        if not 0.0 <= margin < 0.5:
            raise TrainConfigError(f"selection.tie_margin: expected a number in [0, 0.5), got {margin}")
        blend = _get(d, "blend", w, bool, True)
        return cls(model=model, cnn_cv_folds=folds, tie_margin=float(margin), blend=bool(blend))


@dataclass(frozen=True)
class SearchConfig:
    """``[search]``: the Optuna search of the CNN recipe (:mod:`trainer.search`), scored by the champion rule's
    grouped cross-validation.

    Without a ``[search]`` table the search is off and the configured recipe (``[model]``, ``[augment]``,
    ``[preprocessing] cnn``) is trained, as before; a table (even an empty one) turns it on with these defaults.

    Parameters
    ----------
    enabled : bool
        ``false`` keeps the configured recipe.
    trials : int
        Most trials this process runs (0: no search). Trials already in the study (an earlier run into the same
        output folder, or other workers) are not counted.
    budget_min : float
        Wall-clock minutes this process spends on the search, the seed-spread retraining included (0: no search).
        ``spectro-train fit --budget-min`` overrides it.
    storage : str
        An Optuna storage URL (``postgresql://...``, ``mysql+pymysql://...``, ``sqlite:///...``) shared by several
        workers, or a SQLite file name, relative to the output folder (default ``search.db``).
    study_name : str or None
        None: derived from the config and the training data (a changed config or data starts a new study).
    folds : int or None
        Grouped folds of each trial's cross-validation; None: ``[selection] cnn_cv_folds`` (the champion's, so the
        best trial's out-of-fold predictions are reused by the champion rule).
    spread_seeds : int
        Training seeds the chosen recipe is cross-validated with (its own included) to report seed-to-seed spread.
    seed : int or None
        Seed of the TPE sampler; None: the top-level ``seed``.
    """

    enabled: bool = False
    trials: int = 40
    budget_min: float = 8.0
    storage: str = "search.db"
    study_name: str | None = None
    folds: int | None = None
    spread_seeds: int = 3
    seed: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SearchConfig:
        """``None`` (no ``[search]`` table): the search is off."""
        if d is None:
            return cls(enabled=False)
        w = "search"
        _check_keys(d, w, {"enabled", "trials", "budget_min", "storage", "study_name", "folds", "spread_seeds",
                           "seed"})
        trials = _get(d, "trials", w, int, 40)
        if trials < 0:
            raise TrainConfigError(f"search.trials: expected an integer >= 0, got {trials}")
        budget = _get(d, "budget_min", w, float, 8.0)
        if not budget >= 0 or budget == float("inf"):
            raise TrainConfigError(f"search.budget_min: expected a finite number >= 0, got {budget!r}")
        storage = _get(d, "storage", w, str, "search.db")
        if not storage.strip():
            raise TrainConfigError(f"search.storage: expected a storage URL or a file name, got {storage!r}")
        name = _get(d, "study_name", w, str, None)
        if name is not None and not name.strip():
            raise TrainConfigError(f"search.study_name: expected a non-empty name, got {name!r}")
        folds = _get(d, "folds", w, int, None)
        if folds is not None and folds < 2:
            raise TrainConfigError(f"search.folds: expected an integer >= 2, got {folds}")
        spread = _get(d, "spread_seeds", w, int, 3)
        if spread < 1:
            raise TrainConfigError(f"search.spread_seeds: expected an integer >= 1, got {spread}")
        seed = _get(d, "seed", w, int, None)
        if seed is not None and seed < 0:
            raise TrainConfigError(f"search.seed: expected an integer >= 0, got {seed}")
        return cls(enabled=_get(d, "enabled", w, bool, True), trials=trials, budget_min=float(budget),
                   storage=storage, study_name=name, folds=folds, spread_seeds=spread, seed=seed)

    @property
    def active(self) -> bool:
        """Whether a search runs: enabled, with a budget and at least one trial."""
        return self.enabled and self.trials > 0 and self.budget_min > 0
