"""Old + new data for ``spectro-train update``: the configured training data split by the config's own rules, with
the joined line spectra appended, converted to the training quantity on the training axis, one group per lab sample
(grouped cross-validation keeps its replicates together), a share of the lab samples held out as the test set
``line`` and the rest added to the training rows; then the whole of ``spectro-train fit`` (champion rule, OOD,
intervals, bundle) runs on them through :func:`trainer.pipeline.fit.fit_full`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.data import SpectralDataset, load_configured, validate_dataset
from trainer.errors import TrainConfigError
from trainer.pipeline.prepare import Prepared, prepared_from
from trainer.splits import SplitPlan, check_no_leak, group_labels, holdout_rows, make_split_plan
from trainer.update.join import LabJoin
from trainer.update.line import LineArchive, training_signal

__all__ = ["LineRows", "LINE_TEST", "ORIGIN_COLUMN", "prepare_update"]

log = logging.getLogger(__name__)

#: Name of the test set of held-out line samples in ``metrics.json``.
LINE_TEST = "line"
#: Per-row column of the combined data: ``training data`` or ``line``.
ORIGIN_COLUMN = "update_origin"


@dataclass(frozen=True)
class LineRows:
    """Where the joined spectra went: positions into the join (``LabJoin.rows``) of those trained on, held out
    (test set ``line``), and dropped (no conversion: missing references, an axis not covering the grid; or a
    target without a reference value), and the rows of the combined dataset of the first two."""

    train: np.ndarray
    test: np.ndarray
    dropped: dict[str, int]
    first_row: int  # combined-dataset row of the first line spectrum

    def summary(self) -> dict[str, Any]:
        return {"trained_on": int(self.train.size), "held_out": int(self.test.size), "dropped": dict(self.dropped)}


def _fill(col: np.ndarray, n: int, text: str) -> np.ndarray:
    """``n`` values for the line rows of a per-row column of the training data."""
    if col.dtype.kind == "b":
        return np.zeros(n, dtype=bool)
    if col.dtype.kind in "iuf":
        return np.full(n, -1, dtype=col.dtype)
    return np.full(n, text)


def prepare_update(cfg: TrainConfig, line: LineArchive, join: LabJoin, bundle: Any, engine: Any, *,
                   holdout_fraction: float) -> tuple[Prepared, LineRows]:
    """The :class:`Prepared` data of the retraining (module docstring) and where the line spectra went."""
    old = load_configured(cfg.data)
    if tuple(old.target_names) != tuple(join.targets):
        raise TrainConfigError(f"{cfg.source}: expected the targets of the bundle ({', '.join(join.targets)}) in "
                               f"[data] targets, got {', '.join(old.target_names)}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"--holdout-fraction: expected a fraction in [0, 1), got {holdout_fraction}")
    plan = make_split_plan(old, cfg.split, seed=cfg.seed)
    cv_old = group_labels(old, cfg.cv.group or cfg.split.group)

    X, converted = training_signal(line, join.rows, bundle, engine, old.wavelengths, old.axis_unit)
    complete = np.all(np.isfinite(join.y), axis=1)
    usable = np.flatnonzero(converted & complete)
    dropped = {"not_convertible": int(np.sum(~converted)),
               "missing_reference_value": int(np.sum(converted & ~complete))}
    if usable.size == 0:
        raise TrainConfigError(f"{line.path.name}: no joined spectrum can be trained on (dropped: "
                               f"{dropped['not_convertible']} not convertible, {dropped['missing_reference_value']} "
                               "without a value for every target)")
    groups = np.array([f"line:{s}" for s in join.sample[usable]])
    test = np.zeros(0, dtype=np.int64)
    train = usable
    if holdout_fraction > 0:
        if np.unique(groups).size < 2:
            raise TrainConfigError(f"--holdout-fraction {holdout_fraction:g}: expected at least 2 lab samples to hold "
                                   f"some out, got {np.unique(groups).size}; use --holdout-fraction 0")
        keep, held = holdout_rows(np.arange(usable.size), groups, holdout_fraction, seed=cfg.seed)
        train, test = usable[keep], usable[held]
    n_old = old.n_samples
    order = np.concatenate([train, test])
    new_groups = np.array([f"line:{s}" for s in join.sample[order]])
    columns = {k: np.concatenate([v, _fill(v, order.size, "line")]) for k, v in old.columns.items()
               if k != ORIGIN_COLUMN}
    columns[ORIGIN_COLUMN] = np.array(["training data"] * n_old + ["line"] * order.size)
    ds = validate_dataset(SpectralDataset(
        X=np.vstack([old.X, X[order]]), wavelengths=old.wavelengths,
        y=np.vstack([np.asarray(old.y, dtype=np.float64), join.y[order]]), target_names=old.target_names,
        class_names=old.class_names, columns=columns, axis_unit=old.axis_unit,
        source=f"{old.source} + {line.path.name} ({order.size} line spectra)"), min_samples=2)
    new_rows = n_old + np.arange(order.size)
    name = LINE_TEST if LINE_TEST not in plan.tests else f"{LINE_TEST}_update"
    tests = dict(plan.tests)
    if test.size:
        tests[name] = new_rows[train.size:]
    all_groups = np.concatenate([plan.groups.astype(str), new_groups])
    combined = SplitPlan(train_rows=np.concatenate([plan.train_rows, new_rows[:train.size]]),
                         select_rows=plan.select_rows, tests=tests, groups=all_groups,
                         group_column=plan.group_column)
    check_no_leak(all_groups, combined.roles(), test_names=list(tests))
    log.info("update: %d training rows + %d line spectra (%d lab samples) trained on, %d held out (%s)",
             plan.train_rows.size, train.size, np.unique(groups[np.isin(usable, train)]).size, test.size, name)
    prepared = prepared_from(cfg, ds, combined, np.concatenate([cv_old.astype(str), new_groups]))
    return prepared, LineRows(train=train, test=test, dropped=dropped, first_row=n_old)
