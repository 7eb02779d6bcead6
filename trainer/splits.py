"""Row splits that cannot leak.

Selectors over per-row columns, grouped K-fold, and the checks that replicates stay together.

A :class:`SplitPlan` names the training, selection and test rows of one run. Whatever produced it, the plan is
checked so that no row and no group (sample id, batch, day, ...) sits on two sides: training vs selection,
training vs any test set, selection vs any test set. Grouped folds use scikit-learn's ``GroupKFold`` /
``StratifiedGroupKFold`` (classification) and ``GroupShuffleSplit``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import Selector, SplitConfig
from trainer.data import SpectralDataset
from trainer.data.cells import _bool_hint
from trainer.errors import SplitError, did_you_mean

__all__ = [
    "SplitPlan",
    "group_labels",
    "select_rows",
    "holdout_rows",
    "grouped_folds",
    "check_no_leak",
    "make_split_plan",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitPlan:
    """Row indices (into the full dataset) of each role; ``groups`` labels every dataset row with its group.

    Parameters
    ----------
    train_rows : ndarray of int, shape (n_train,)
    select_rows : ndarray of int, shape (n_select,)
        Rows for early stopping, model choice and conformal calibration; empty when ``[split]`` names none
        (everything is then chosen by cross-validation on the training rows).
    tests : mapping of str to ndarray of int
        Named test sets, reported under their names.
    groups : ndarray, shape (n_samples,)
        Group label of every dataset row (replicates share one).
    group_column : str
        The column ``groups`` came from (``"row"`` when every row is its own group).
    """

    train_rows: np.ndarray
    select_rows: np.ndarray
    tests: Mapping[str, np.ndarray]
    groups: np.ndarray
    group_column: str = "row"

    def roles(self) -> dict[str, np.ndarray]:
        """Every role by name: ``train``, ``select`` (left out when empty) then the test sets."""
        sel = {"select": self.select_rows} if self.select_rows.size else {}
        return {"train": self.train_rows, **sel, **dict(self.tests)}


def group_labels(ds: SpectralDataset, group: str | None) -> np.ndarray:
    """Group label per row: the column ``group`` (columns ``a+b`` combined), or the row index for ``"row"``/None."""
    if group in (None, "row"):
        return np.arange(ds.n_samples)
    assert group is not None
    cols = []
    for name in group.split("+"):
        try:
            cols.append(ds.column(name))
        except ValueError as exc:
            raise SplitError(f"split.group: {exc}") from exc
    if len(cols) == 1:
        return cols[0]
    return np.array(["|".join(str(c[i]) for c in cols) for i in range(ds.n_samples)])


def _matches(col: np.ndarray, wanted: Any) -> np.ndarray:
    values = wanted if isinstance(wanted, list) else [wanted]
    mask = np.zeros(col.shape[0], dtype=bool)
    numeric = np.issubdtype(col.dtype, np.number) or np.issubdtype(col.dtype, np.bool_)
    for v in values:
        if numeric and isinstance(v, (int, float)) and not isinstance(v, bool):
            mask |= col == v
        else:
            mask |= col.astype(str) == str(v)
    return mask


def select_rows(ds: SpectralDataset, selector: Selector | Mapping[str, Any], *, where: str = "selector") -> np.ndarray:
    """Indices of the rows meeting every ``column = value`` condition (a list value means any of).

    Raises
    ------
    SplitError
        When a column does not exist or the selection is empty (the message lists the values present).
    """
    conds = selector.where if isinstance(selector, Selector) else dict(selector)
    if not conds:
        raise SplitError(f"{where}: expected at least one column = value condition")
    mask = np.ones(ds.n_samples, dtype=bool)
    for key, wanted in conds.items():
        if key not in ds.columns:
            known = ", ".join(sorted(ds.columns)) or "none"
            raise SplitError(f"{where}.{key}: {ds.source} has no per-row column {key!r}"
                             f"{did_you_mean(key, ds.columns)}; available: {known}")
        col = ds.columns[key]
        hit = _matches(col, wanted)
        if not hit.any():
            present = ", ".join(str(v) for v in np.unique(col)[:12])
            raise SplitError(f"{where}.{key}: no row has {key} = {wanted!r}; values present: {present}"
                             + _bool_hint(col, key, wanted))
        mask &= hit
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        desc = ", ".join(f"{k}={v!r}" for k, v in conds.items())
        raise SplitError(f"{where}: no row meets all of {desc}")
    return rows


def holdout_rows(
    rows: np.ndarray, groups: np.ndarray, fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (kept, held-out) with whole groups held out, about ``fraction`` of them (seeded)."""
    from sklearn.model_selection import GroupShuffleSplit

    g = groups[rows]
    if np.unique(g).size < 2:
        raise SplitError(f"cannot hold out {fraction:g} of {rows.size} rows: they form fewer than 2 groups")
    gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    keep, held = next(gss.split(rows, groups=g))
    return rows[np.sort(keep)], rows[np.sort(held)]


def grouped_folds(
    groups: np.ndarray, n_folds: int, *, seed: int, y_class: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped K-fold (stratified by ``y_class`` when given): list of (fit, held-out) positional index pairs.

    Folds are reduced to the number of groups when there are fewer groups than ``n_folds`` (logged).
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_groups = int(np.unique(groups).size)
    if n_groups < 2:
        raise SplitError(f"expected at least 2 groups for cross-validation, got {n_groups}")
    k = min(n_folds, n_groups)
    if k < n_folds:
        log.warning("only %d groups: using %d folds instead of %d", n_groups, k, n_folds)
    idx = np.arange(groups.shape[0])
    if y_class is not None:
        counts = np.bincount(np.asarray(y_class, dtype=np.int64))
        if counts[counts > 0].min() >= k:
            skf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            return [(a, b) for a, b in skf.split(idx, y_class, groups)]
    gkf = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(a, b) for a, b in gkf.split(idx, groups=groups)]


def check_no_leak(groups: np.ndarray, roles: Mapping[str, np.ndarray], *, test_names: Sequence[str] = (),
                  row_ids: tuple[str, np.ndarray] | None = None) -> None:
    """Raise :class:`SplitError` when a row or a group appears in two roles that must be disjoint.

    Pairs checked: train/select, train/each test, select/each test (test sets may share groups with each other,
    e.g. one tablet measured on two instruments). ``row_ids``: ``(column name, values)`` that name a row in the
    message (``sample_id``), beside its index.
    """
    names = list(roles)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if a in test_names and b in test_names:
                continue
            ra, rb = roles[a], roles[b]
            both_rows = np.intersect1d(ra, rb)
            if both_rows.size:
                first = int(both_rows[0])
                named = f", {row_ids[0]} {str(row_ids[1][first])!r}" if row_ids is not None else ""
                raise SplitError(f"{both_rows.size} rows are in both {a} and {b} (first: row {first}{named}); "
                                 f"the conditions of [split] select them for both")
            both = np.intersect1d(groups[ra], groups[rb])
            if both.size:
                raise SplitError(
                    f"{both.size} groups have rows in both {a} and {b} (replicates would leak), first: {both[0]!r}"
                )


def make_split_plan(ds: SpectralDataset, cfg: SplitConfig, *, seed: int) -> SplitPlan:
    """Resolve a :class:`~trainer.config.SplitConfig` on ``ds`` into checked row indices."""
    groups = group_labels(ds, cfg.group)
    if cfg.method == "grouped_kfold":
        y_class = ds.y[:, 0] if ds.is_classification else None
        folds = grouped_folds(groups, cfg.folds, seed=seed, y_class=y_class)
        if len(folds) <= max(cfg.test_fold, -1 if cfg.select_fold is None else cfg.select_fold):
            raise SplitError(f"split.folds: only {len(folds)} folds could be formed from the groups")
        test = np.sort(folds[cfg.test_fold][1])
        select = (np.zeros(0, dtype=np.int64) if cfg.select_fold is None  # select_fold = false
                  else np.sort(folds[cfg.select_fold][1]))
        train = np.setdiff1d(np.arange(ds.n_samples), np.union1d(test, select))
        tests = {"test": test}
        with_select = cfg.select_fold is not None
    else:
        assert cfg.train is not None
        train = select_rows(ds, cfg.train, where="split.train")
        chosen = cfg.select
        if chosen is None:
            select = np.zeros(0, dtype=np.int64)  # everything chosen by CV on the training rows
        elif chosen.holdout_fraction is not None:
            train, select = holdout_rows(train, groups, chosen.holdout_fraction, seed=seed)
        else:
            select = select_rows(ds, chosen, where="split.select")
        with_select = chosen is not None
        tests = {t.name: select_rows(ds, t.selector, where=f"split.test.{t.name}") for t in cfg.tests}
    for name in ("train", "select"):
        if name in tests:
            raise SplitError(f"split.test.{name}: a test set may not be called {name!r}")
    plan = SplitPlan(train_rows=train, select_rows=select, tests=tests, groups=groups, group_column=cfg.group)
    ids = next(((k, ds.columns[k]) for k in ("sample_id", "file") if k in ds.columns), None)
    check_no_leak(groups, plan.roles(), test_names=list(tests), row_ids=ids)
    if with_select and (train.size < 2 or select.size < 2):
        raise SplitError(f"expected at least 2 train and 2 select rows, got {train.size} and {select.size}")
    if not with_select and train.size < 2:
        raise SplitError(f"expected at least 2 train rows, got {train.size} (no select rows: [split] names none)")
    log.info(
        "split: train %d rows, select %d rows%s, %s",
        train.size,
        select.size,
        "" if with_select else " (none named: everything is chosen by cross-validation on the training rows)",
        ", ".join(f"{k} {v.size} rows" for k, v in tests.items()),
    )
    return plan
