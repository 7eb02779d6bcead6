"""Reference values: in the spectra file, or a separate CSV joined on a key column."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.cells import _MISSING_TOKENS, _cell_number
from trainer.data.table import _read_table, _Table
from trainer.errors import DataError, did_you_mean

log = logging.getLogger(__name__)


@dataclass
class _References:
    """Reference values for each spectrum: the table they come from and its row per spectrum (-1: none)."""

    table: _Table
    rows: list[int]
    absent: list[str]  # why a spectrum has no row ("" when it has one)


def _parse_targets(
    ref: _References, targets: Sequence[str], task: str
) -> tuple[np.ndarray | None, list[str] | None, list[str]]:
    """(y with NaN where missing, or labels with "" where missing; reason per row) from the reference cells."""
    tab = ref.table
    cols = [tab.header.index(t) for t in targets]
    n = len(ref.rows)
    missing = list(ref.absent)
    if task == "classification":
        labels = []
        for i, r in enumerate(ref.rows):
            text = tab.rows[r][cols[0]] if r >= 0 else ""
            if r >= 0 and not text:
                missing[i] = f"{tab.at(r, cols[0])}: empty"
            labels.append(text)
        return None, labels, missing
    y = np.full((n, len(cols)), np.nan)
    for i, r in enumerate(ref.rows):
        if r < 0:
            continue
        for k, j in enumerate(cols):
            text = tab.rows[r][j]
            if text.lower() in _MISSING_TOKENS:
                missing[i] = missing[i] or f"{tab.at(r, j)}: {'empty' if not text else repr(text)}"
                continue
            v = _cell_number(text, tab.comma_decimal)
            if v is None:
                raise DataError(f"{tab.at(r, j)}: expected a number, got {text!r}")
            y[i, k] = v
    return y, None, missing


def _join_references(
    refs_path: Path,
    keys: Sequence[str],
    *,
    join_on: str,
    targets: Sequence[str],
    taken: Sequence[str],
    spectra_name: str,
    delimiter: str,
    decimal: str,
    key_of: Any = None,
) -> tuple[_References, dict[str, list[str]]]:
    """Match each spectrum's ``join_on`` value (``keys``) to the one row of the references CSV with that value.

    Returns the references and the CSV's other columns as per-row text columns ("" for unmatched spectra).
    """
    tab = _read_table(refs_path, delimiter=delimiter, decimal=decimal, what="targets file")
    j_key = tab.index(join_on)
    if j_key is None:
        raise DataError(
            f"{tab.name}: expected a column {join_on!r} to join on ([data] join_on)"
            f"{did_you_mean(join_on, tab.header)}; columns: {', '.join(tab.header)}"
        )
    absent_t = [t for t in targets if t not in tab.header]
    if absent_t:
        raise DataError(
            f"{tab.name}: target column(s) {', '.join(map(repr, absent_t))} not found"
            f"{did_you_mean(absent_t[0], tab.header)}; columns: {', '.join(tab.header)}"
        )
    clash = [c for c in tab.header if c != join_on and c in taken]
    if clash:
        raise DataError(
            f"{tab.name}: expected columns not already in {spectra_name}, got {', '.join(map(repr, clash))} in both "
            "(remove them from one file)"
        )
    norm = key_of or (lambda s: s)
    index: dict[str, int] = {}
    for r, rec in enumerate(tab.rows):
        k = norm(rec[j_key])
        if k in index:
            raise DataError(
                f"{tab.name} lines {tab.lines[index[k]]} and {tab.lines[r]}: expected one row per {join_on}, "
                f"got {rec[j_key]!r} twice"
            )
        index[k] = r
    rows = [index.get(norm(k), -1) for k in keys]
    absent = ["" if r >= 0 else f"{join_on} {k!r}: no row in {tab.name}" for k, r in zip(keys, rows)]
    used = {r for r in rows if r >= 0}
    log.info("%s: reference values for %d of %d spectra, joined on %s", tab.name,
             sum(r >= 0 for r in rows), len(rows), join_on)
    if len(used) < len(tab.rows):
        log.info("%s: %d of %d rows match no spectrum (ignored)", tab.name, len(tab.rows) - len(used), len(tab.rows))
    meta = {
        name: [tab.rows[r][j] if r >= 0 else "" for r in rows]
        for j, name in enumerate(tab.header)
        if name != join_on and name not in targets
    }
    return _References(table=tab, rows=rows, absent=absent), meta
