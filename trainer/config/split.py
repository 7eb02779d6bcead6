"""``[split]`` and ``[cv]``: which rows train, select and test (per-row selectors), and how they are grouped."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainer.config.tables import _check_keys, _fraction, _get, _group, _table
from trainer.errors import TrainConfigError

_SPLIT_METHODS = ("explicit", "grouped_kfold")
_SELECTOR_VALUE = (str, int, float, bool)
@dataclass(frozen=True)
class Selector:
    """Rows picked by per-row column values, e.g. ``{split = "test", instrument = 1}`` (all conditions hold).

    A value may be a list (any of). ``holdout_fraction`` instead carves a grouped, seeded share out of the
    training rows (only for the selection rows).
    """

    where: Mapping[str, Any] = field(default_factory=dict)
    holdout_fraction: float | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Selector:
        if not isinstance(d, Mapping):
            raise TrainConfigError(f"{where}: expected a table of column = value conditions, got {d!r}")
        d = dict(d)
        frac = d.pop("holdout_fraction", None)
        if frac is not None:
            if isinstance(frac, bool) or not isinstance(frac, (int, float)):
                raise TrainConfigError(f"{where}.holdout_fraction: expected a number, got {frac!r}")
            _fraction(float(frac), f"{where}.holdout_fraction")
            if d:
                raise TrainConfigError(f"{where}: expected holdout_fraction alone or column = value conditions, got "
                                       f"holdout_fraction with {sorted(d)}")
            return cls(where={}, holdout_fraction=float(frac))
        if not d:
            raise TrainConfigError(f"{where}: expected at least one column = value condition, got an empty table")
        for k, v in d.items():
            values = v if isinstance(v, list) else [v]
            if not values or not all(isinstance(x, _SELECTOR_VALUE) for x in values):
                raise TrainConfigError(
                    f"{where}.{k}: expected a string, number, true/false or a non-empty array of them, got {v!r}")
        return cls(where=d)

    def describe(self) -> str:
        """Short text such as ``split=test, instrument=1``."""
        if self.holdout_fraction is not None:
            return f"holdout {self.holdout_fraction:g} of train"
        return ", ".join(f"{k}={v}" for k, v in self.where.items())


@dataclass(frozen=True)
class TestSet:
    """A named set of test rows, reported under ``name`` in ``metrics.json``."""

    name: str
    selector: Selector


@dataclass(frozen=True)
class SplitConfig:
    """Which rows train, select and test.

    ``method = "explicit"`` uses selectors over per-row columns (``select`` None: no selection rows, everything
    is chosen by cross-validation on the training rows); ``"grouped_kfold"`` assigns
    whole groups to ``folds`` folds (seeded) and takes fold ``test_fold`` as test and fold ``select_fold`` as
    selection rows (none with ``select_fold = false``).
    ``group`` names the column keeping replicates together (``"row"``: every row is its own group); several
    columns together form the group when given as an array or joined by ``+`` (``"meta_sample+meta_supplier"``).
    """

    method: str = "explicit"
    group: str = "row"
    train: Selector | None = None
    select: Selector | None = None
    tests: tuple[TestSet, ...] = ()
    folds: int = 5
    test_fold: int = 0
    #: None: no selection fold (``select_fold = false``), every fold but the test fold trains.
    select_fold: int | None = 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SplitConfig:
        w = "split"
        _check_keys(d, w, {"method", "group", "train", "select", "test", "folds", "test_fold", "select_fold"})
        method = _get(d, "method", w, str, "explicit")
        if method not in _SPLIT_METHODS:
            raise TrainConfigError(f"split.method: expected one of {', '.join(_SPLIT_METHODS)}, got {method!r}")
        group = _group(d, w)
        folds = _get(d, "folds", w, int, 5)
        test_fold = _get(d, "test_fold", w, int, 0)
        select_fold: int | None = None
        if d.get("select_fold") is True:
            raise TrainConfigError("split.select_fold: expected a fold number or false (no selection fold), got true")
        if d.get("select_fold") is not False:  # false: no selection fold
            select_fold = _get(d, "select_fold", w, int, 1)
        if method == "grouped_kfold":
            if folds < 3:
                raise TrainConfigError(f"split.folds: expected an integer >= 3, got {folds}")
            for key, v in (("test_fold", test_fold), ("select_fold", select_fold)):
                if v is not None and not 0 <= v < folds:
                    raise TrainConfigError(f"split.{key}: expected an integer in [0, {folds - 1}]"
                                           + (" or false" if key == "select_fold" else "") + f", got {v}")
            if test_fold == select_fold:
                raise TrainConfigError(f"split.select_fold: must differ from split.test_fold ({test_fold})")
            for key in ("train", "select", "test"):
                if key in d:
                    raise TrainConfigError(f"split.{key}: not used with method = 'grouped_kfold'; remove it")
            return cls(method=method, group=group, folds=folds, test_fold=test_fold, select_fold=select_fold,
                       tests=(TestSet("test", Selector()),))
        for key in ("folds", "test_fold", "select_fold"):
            if key in d:
                raise TrainConfigError(f"split.{key}: used only with method = 'grouped_kfold', got it with method = "
                                       f"{method!r}; remove it or set method = 'grouped_kfold'")
        if "train" not in d:
            raise TrainConfigError("split.train: missing required table (e.g. train = {split = \"calibrate\"})")
        train = Selector.from_dict(d["train"], "split.train")
        if train.holdout_fraction is not None:
            raise TrainConfigError("split.train: holdout_fraction is only allowed for split.select")
        # Without ``select`` there are no selection rows: everything is chosen by cross-validation on the training
        # rows (a regression's or a classification's).
        select = Selector.from_dict(d["select"], "split.select") if "select" in d else None
        tests_d = _table(d, "test", w, required=True)
        if not tests_d:
            raise TrainConfigError("split.test: expected at least one named test set, e.g. [split.test] test = {...}")
        tests = []
        for name, sel in tests_d.items():
            if name in ("train", "select"):
                raise TrainConfigError(f"split.test.{name}: expected a test-set name other than 'train' and 'select' "
                                       f"(the names of the other roles), got {name!r}")
            s = Selector.from_dict(sel, f"split.test.{name}")
            if s.holdout_fraction is not None:
                raise TrainConfigError(f"split.test.{name}: holdout_fraction is only allowed for split.select")
            tests.append(TestSet(name=name, selector=s))
        return cls(method=method, group=group, train=train, select=select, tests=tuple(tests))


@dataclass(frozen=True)
class CVConfig:
    """Cross-validation on the training rows for the PLS baseline (latent variables, preprocessing choice)."""

    folds: int = 10
    group: str | None = None
    max_components: int = 20

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CVConfig:
        w = "cv"
        _check_keys(d, w, {"folds", "group", "max_components"})
        folds = _get(d, "folds", w, int, 10)
        if folds < 2:
            raise TrainConfigError(f"cv.folds: expected an integer >= 2, got {folds}")
        mc = _get(d, "max_components", w, int, 20)
        if mc < 1:
            raise TrainConfigError(f"cv.max_components: expected an integer >= 1, got {mc}")
        return cls(folds=folds, group=_group(d, w) if "group" in d else None, max_components=mc)
