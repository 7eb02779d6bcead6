"""The lab's reference values (a LIMS export, CSV) joined to archived spectra: on the sample id the ``tag_sample``
command put on them, or, when a row has only a sampling time, on the nearest archived spectrum within a window.

A row of ``lims.csv`` has a sample id column (default ``sample_id``) and/or a sampling time column (default
``sampled_at``, ISO 8601; no zone means UTC), and one column per target of the bundle it reports (named as the
bundle's targets; an empty cell or ``NA`` is a value the lab did not measure). A row with a sample id joins every
archived spectrum tagged with it (the replicates of that sample); a row with only a time joins the one untagged
spectrum received nearest to it, if within the window: a tagged spectrum (a lab sample's, or a check standard's,
``control:<name>``) is joined only on its id, and a rejected spectrum never on time. Every refusal names the file,
line and column.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.cells import _MISSING_TOKENS, _cell_number
from trainer.data.table import _read_table
from trainer.errors import DataError
from trainer.update.line import LineArchive

__all__ = ["LabJoin", "join_references", "CONTROL_PREFIX"]

log = logging.getLogger(__name__)

#: Sample ids the daemon gives spectra of check standards (``measure_control``).
CONTROL_PREFIX = "control:"


@dataclass(frozen=True)
class LabJoin:
    """Archived spectra with the lab's reference values.

    Attributes
    ----------
    rows : ndarray of int, shape (m,)
        Archive rows joined, in time order.
    y : ndarray, shape (m, t)
        Reference value of each joined spectrum per target (NaN where the lab did not measure it).
    targets : tuple of str
        The bundle's targets, columns of ``y``.
    sample : ndarray of str, shape (m,)
        The lab sample each spectrum belongs to (its id, or ``time:<line>`` for a row joined on time): the group
        that keeps replicates together.
    line : ndarray of int, shape (m,)
        Line of ``lims.csv`` each spectrum was joined to.
    how : ndarray of str, shape (m,)
        ``sample_id`` or ``time``.
    unmatched_rows : list of str
        One line per ``lims.csv`` row that joined nothing, saying why.
    unmatched_tagged : dict of str to int
        Tagged spectra (not control samples) whose sample id is not in ``lims.csv``: id -> spectra.
    untagged : int
        Archived spectra without a sample tag and not joined on time.
    lims_rows : int
        Data rows of ``lims.csv``.
    """

    rows: np.ndarray
    y: np.ndarray
    targets: tuple[str, ...]
    sample: np.ndarray
    line: np.ndarray
    how: np.ndarray
    unmatched_rows: list[str] = field(default_factory=list)
    unmatched_tagged: dict[str, int] = field(default_factory=dict)
    untagged: int = 0
    lims_rows: int = 0

    def summary(self) -> dict[str, Any]:
        """Counts for ``update.json`` and the command's output."""
        return {
            "lims_rows": self.lims_rows,
            "lims_rows_joined": self.lims_rows - len(self.unmatched_rows),
            "lims_rows_unmatched": len(self.unmatched_rows),
            "spectra_joined": int(self.rows.size),
            "spectra_joined_on_sample_id": int(np.sum(self.how == "sample_id")),
            "spectra_joined_on_time": int(np.sum(self.how == "time")),
            "lab_samples": int(np.unique(self.sample).size),
            "tagged_spectra_without_lab_row": int(sum(self.unmatched_tagged.values())),
            "tagged_sample_ids_without_lab_row": sorted(self.unmatched_tagged),
            "untagged_spectra_not_joined": self.untagged,
            "unmatched_rows": list(self.unmatched_rows),
        }


def join_references(line: LineArchive, lims: str | Path, targets: Sequence[str], *, id_column: str = "sample_id",
                    time_column: str = "sampled_at", window_s: float = 60.0, delimiter: str = "auto",
                    decimal: str = "auto") -> LabJoin:
    """Join the reference values of ``lims`` to the archived spectra of ``line`` (module docstring).

    Parameters
    ----------
    line : LineArchive
    lims : path
        The lab's CSV (delimiter and decimal comma detected as for training data).
    targets : sequence of str
        The bundle's targets; ``lims`` must have a column for at least one of them.
    id_column, time_column : str
        Names of the sample id and sampling time columns (at least one must exist).
    window_s : float
        Largest distance, seconds, between a sampling time and the spectrum it joins.

    Raises
    ------
    DataError
        A missing column, a bad number or time (file, line, column), a sample id twice, two rows on one spectrum,
        or nothing joined at all.
    """
    from edge.archive import ArchiveError, parse_time

    if not window_s > 0:
        raise DataError(f"--window-s: expected seconds > 0, got {window_s}")
    tab = _read_table(Path(lims), delimiter=delimiter, decimal=decimal, what="lab reference file")
    j_id, j_time = tab.index(id_column), tab.index(time_column)
    if j_id is None and j_time is None:
        raise DataError(f"{tab.name} line {tab.header_line}: expected a sample id column {id_column!r} and/or a "
                        f"sampling time column {time_column!r}, got columns {', '.join(tab.header)}")
    cols = {t: tab.index(t) for t in targets}
    if all(j is None for j in cols.values()):
        raise DataError(f"{tab.name} line {tab.header_line}: expected a column named like a target of the bundle "
                        f"({', '.join(targets)}), got columns {', '.join(tab.header)}")
    extra = [h for h in tab.header if h not in (id_column, time_column) and h not in targets]
    if extra:
        log.info("%s: columns not used: %s", tab.name, ", ".join(extra))

    by_id: dict[str, list[int]] = {}
    for i, sid in enumerate(line.sample_id):
        if sid:
            by_id.setdefault(str(sid), []).append(i)
    # spectra a sampling time may join: predicted and untagged (a tagged one belongs to its sample id, a check
    # standard's included)
    timed = np.flatnonzero((line.sample_id == "") & (line.outcome == "prediction"))
    order = timed[np.argsort(line.received_unix_s[timed], kind="stable")]
    times = line.received_unix_s[order]

    joined: dict[int, tuple[int, np.ndarray, str, str]] = {}  # archive row -> (lims row, y, sample, how)
    seen_ids: dict[str, int] = {}
    unmatched: list[str] = []
    for r, rec in enumerate(tab.rows):
        y = np.full(len(targets), np.nan)
        for k, (t, j) in enumerate(cols.items()):
            if j is None or rec[j].lower() in _MISSING_TOKENS:
                continue
            v = _cell_number(rec[j], tab.comma_decimal)
            if v is None:
                raise DataError(f"{tab.at(r, j)}: expected a number, got {rec[j]!r}")
            y[k] = v
        if not np.isfinite(y).any():
            unmatched.append(f"{tab.name} line {tab.lines[r]}: no reference value for any of {', '.join(targets)}")
            continue
        sid = rec[j_id] if j_id is not None else ""
        if sid:
            if sid in seen_ids:
                raise DataError(f"{tab.name} lines {tab.lines[seen_ids[sid]]} and {tab.lines[r]}: expected one row "
                                f"per {id_column}, got {sid!r} twice")
            seen_ids[sid] = r
            hits = by_id.get(sid, [])
            if not hits:
                unmatched.append(f"{tab.name} line {tab.lines[r]}: {id_column} {sid!r}: no archived spectrum is "
                                 "tagged with it")
            for i in hits:
                joined[i] = (r, y, sid, "sample_id")
            continue
        stamp = rec[j_time] if j_time is not None else ""
        if j_time is None or not stamp:
            unmatched.append(f"{tab.name} line {tab.lines[r]}: neither {id_column} nor {time_column} given")
            continue
        try:
            at = parse_time(stamp, tab.at(r, j_time))
        except ArchiveError as exc:
            raise DataError(str(exc)) from None
        if times.size == 0:
            unmatched.append(f"{tab.name} line {tab.lines[r]}: {time_column} {stamp}: no predicted spectrum in the "
                             "archive")
            continue
        k = int(np.searchsorted(times, at))
        near = [c for c in (k - 1, k) if 0 <= c < times.size]
        best = min(near, key=lambda c: abs(times[c] - at))
        gap = abs(float(times[best]) - at)
        if gap > window_s:
            unmatched.append(f"{tab.name} line {tab.lines[r]}: {time_column} {stamp}: no spectrum within "
                             f"{window_s:g} s (nearest {gap:.0f} s away)")
            continue
        i = int(order[best])
        if i in joined:
            other = joined[i][0]
            raise DataError(f"{tab.name} lines {tab.lines[other]} and {tab.lines[r]}: both join the spectrum seq "
                            f"{int(line.seq[i])} received {float(line.received_unix_s[i]):.0f}; expected one lab "
                            "row per spectrum (narrow --window-s or give sample ids)")
        joined[i] = (r, y, f"time:{tab.lines[r]}", "time")

    if not joined:
        raise DataError(f"{tab.name}: expected at least one row to join an archived spectrum of {line.path.name}, "
                        f"got none ({len(unmatched)} unmatched: " + "; ".join(unmatched[:3]) + ")")
    rows = np.array(sorted(joined, key=lambda i: (line.received_unix_s[i], i)), dtype=np.int64)
    unmatched_tagged: dict[str, int] = {}
    for sid, hits in by_id.items():
        if sid not in seen_ids and not sid.startswith(CONTROL_PREFIX):
            unmatched_tagged[sid] = sum(1 for i in hits if i not in joined)
    untagged = int(sum(1 for i in range(line.n) if not line.sample_id[i] and i not in joined))
    for msg in unmatched:
        log.warning("unmatched: %s", msg)
    if unmatched_tagged:
        log.warning("%d tagged spectra have no row in %s: %s", sum(unmatched_tagged.values()), tab.name,
                    ", ".join(sorted(unmatched_tagged)[:10]))
    return LabJoin(
        rows=rows, y=np.stack([joined[i][1] for i in rows]), targets=tuple(targets),
        sample=np.array([joined[i][2] for i in rows], dtype=str),
        line=np.array([tab.lines[joined[i][0]] for i in rows], dtype=np.int64),
        how=np.array([joined[i][3] for i in rows], dtype=str), unmatched_rows=unmatched,
        unmatched_tagged=unmatched_tagged, untagged=untagged, lims_rows=len(tab.rows),
    )
