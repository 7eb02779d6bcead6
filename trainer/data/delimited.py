"""The CSV (delimited text) loader: spectra as rows, wavelengths in the header, references beside or apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.cells import _HEADER_CELL, _cell_number, _header_wavelength
from trainer.data.dataset import MIN_SAMPLES, SpectralDataset
from trainer.data.raw import _check_unit, _finish, _Raw
from trainer.data.references import _join_references, _parse_targets, _References
from trainer.data.table import _read_table, _Table
from trainer.errors import DataError, did_you_mean


def load_csv(
    path: str | Path,
    *,
    targets: Sequence[str],
    task: str = "regression",
    axis_unit: str | None = None,
    min_samples: int = MIN_SAMPLES,
    targets_path: str | Path | None = None,
    join_on: str | None = None,
    delimiter: str = "auto",
    decimal: str = "auto",
    exclude: Mapping[str, Any] | None = None,
    missing_reference: str = "error",
) -> SpectralDataset:
    """Load a delimited text file whose header row holds the wavelength of each spectral column.

    Header cells that read as a number, optionally followed by a unit (``1100``, ``1100 nm``, ``675.00000cm-1``,
    ``1.00100e+03cm-1``), are spectral channels; the other columns are targets (those named in ``targets``) or
    per-row metadata (split, instrument, sample_id, ...). A header between two channels that starts with a number
    between theirs but is no wavelength (``944,95 mn``) is refused as a typo, which would otherwise drop that
    channel.

    Parameters
    ----------
    path : path
        One spectrum per row; UTF-8 with or without a byte-order mark, or UTF-16 with one.
    targets : sequence of str
        Names of the target columns (in ``path``, or in ``targets_path``).
    task : {"regression", "classification"}
        With classification, the single target column holds labels; ``class_names`` are its distinct values,
        sorted by value when every label is a number, else as text.
    axis_unit : {"nm", "cm-1"} or None
        Unit of the axis; None takes the header cells' unit, else nm. A header unit that disagrees is an error.
    targets_path : path, optional
        A CSV of reference values joined on ``join_on`` (default ``"sample_id"``): one row per key value, one
        column per target; its other columns become per-row columns.
    delimiter : {"auto", ",", ";", "\\t"}
        ``"auto"`` picks tab, ``;`` or ``,`` from the first lines.
    decimal : {"auto", ".", ","}
        ``"auto"`` reads ``0,5`` as 0.5 when the delimiter is ``;`` or tab.
    exclude : mapping of str to value or list, optional
        Rows to drop before anything else looks at them, e.g. ``{"sample_id": ["s1", "s7"]}``.
    missing_reference : {"error", "drop"}
        Rows without a reference value (empty cell, ``NA``/``NaN``, no row in ``targets_path``) are refused, or
        dropped with a logged count.

    Raises
    ------
    DataError
        With the file, line and column of the offending cell, e.g.
        "data.csv line 7, column 12 (1104 nm): expected a number, got 'n/a'".
    """
    raw = _csv_raw(
        Path(path), targets=targets, task=task, axis_unit=axis_unit, targets_path=targets_path, join_on=join_on,
        delimiter=delimiter, decimal=decimal,
    )
    return _finish(raw, exclude=exclude, missing_reference=missing_reference, min_samples=min_samples)


def _refuse_numbered_gaps(tab: _Table, spectral: list[tuple[int, float, str | None]], named: set[str]) -> None:
    """Refuse a column between two channels whose header starts with a number that lies between theirs but is no
    wavelength (``944,95 mn`` between ``942,96 nm`` and ``946,95 nm``): read as metadata it would drop that channel
    and leave a gap in the axis. Columns the config names (``named``: targets, the join column) and headers whose
    number lies outside the neighbours' (``2nd_derivative``) stay per-row columns."""
    where = {j: w for j, w, _ in spectral}
    for j in range(spectral[0][0] + 1, spectral[-1][0]):
        m = _HEADER_CELL.match(tab.header[j].strip())  # its leading number: 944,95 of 944,95 mn, 2 of 2nd_batch
        if j in where or tab.header[j] in named or m is None:
            continue
        value = _cell_number(m.group("num"), tab.comma_decimal)
        before, after = max(k for k in where if k < j), min(k for k in where if k > j)
        if value is not None and min(where[before], where[after]) < value < max(where[before], where[after]):
            raise DataError(
                f"{tab.head(j)}: expected a wavelength header (a number, then nm, cm-1 or nothing) like its "
                f"neighbours {tab.header[before]!r} and {tab.header[after]!r}, got {tab.header[j]!r}; a typo in "
                "the unit?"
            )


def _csv_raw(
    path: Path,
    *,
    targets: Sequence[str],
    task: str,
    axis_unit: str | None,
    targets_path: str | Path | None,
    join_on: str | None,
    delimiter: str,
    decimal: str,
) -> _Raw:
    _check_unit(axis_unit)
    if task == "classification" and len(targets) != 1:
        raise DataError(f"{path.name}: classification expects exactly one target column, got {len(targets)}")
    tab = _read_table(path, delimiter=delimiter, decimal=decimal)
    spectral: list[tuple[int, float, str | None]] = []
    for j, h in enumerate(tab.header):
        hw = _header_wavelength(h, tab.comma_decimal, tab.head(j))
        if hw is not None:
            spectral.append((j, hw[0], hw[1]))
    if len(spectral) < 2:
        raise DataError(
            f"{tab.name} line {tab.header_line}: expected a header whose spectral columns are wavelengths "
            f"(900, 900.5, 1100 nm, 675.0cm-1), found {len(spectral) or 'none'}; columns: "
            f"{', '.join(tab.header[:8])}{', ...' if len(tab.header) > 8 else ''}"
        )
    _refuse_numbered_gaps(tab, spectral, {*targets, *([join_on] if join_on else [])})
    with_unit = [(j, u) for j, _, u in spectral if u is not None]
    header_unit = with_unit[0][1] if with_unit else None
    for j, u in with_unit:
        if u != header_unit:
            raise DataError(
                f"{tab.head(j)}: expected every wavelength header in one unit, got {u} here and {header_unit} in "
                f"column {with_unit[0][0] + 1} ({tab.header[with_unit[0][0]]})"
            )
    if axis_unit is not None and header_unit is not None and axis_unit != header_unit:
        raise DataError(
            f"{tab.head(with_unit[0][0])}: expected wavelengths in {axis_unit} ([data] axis_unit), got a header in "
            f"{header_unit}; set axis_unit = {header_unit!r} or leave it out"
        )
    unit = axis_unit or header_unit or "nm"
    spec_idx = [j for j, _, _ in spectral]
    labels_of = {j: f"{w:g} {unit}" for j, w, _ in spectral}
    X = np.empty((len(tab.rows), len(spec_idx)), dtype=np.float64)
    comma = tab.comma_decimal
    for i, rec in enumerate(tab.rows):
        for k, j in enumerate(spec_idx):
            v = _cell_number(rec[j], comma)
            if v is None:
                got = repr(rec[j]) if rec[j] else "an empty cell"
                raise DataError(f"{tab.at(i, j, labels_of[j])}: expected a number, got {got}")
            X[i, k] = v
    meta_idx = {h: j for j, h in enumerate(tab.header) if j not in labels_of}
    columns: dict[str, np.ndarray | list[str]]
    if targets_path is None:
        if join_on is not None:
            raise DataError(f"{tab.name}: join_on = {join_on!r} needs targets_path (the CSV of reference values)")
        absent = [t for t in targets if t not in meta_idx]
        if absent:
            raise DataError(
                f"{tab.name}: target column(s) {', '.join(map(repr, absent))} not found"
                f"{did_you_mean(absent[0], meta_idx)}; non-spectral columns: {', '.join(meta_idx) or 'none'}"
            )
        ref = _References(table=tab, rows=list(range(len(tab.rows))), absent=[""] * len(tab.rows))
        columns = {h: [rec[j] for rec in tab.rows] for h, j in meta_idx.items() if h not in targets}
    else:
        key = join_on or "sample_id"
        if key not in meta_idx:
            raise DataError(
                f"{tab.name}: expected a column {key!r} to join the reference values on ([data] join_on)"
                f"{did_you_mean(key, meta_idx)}; "
                f"non-spectral columns: {', '.join(meta_idx) or 'none'}"
            )
        inside = [t for t in targets if t in meta_idx]
        if inside:
            raise DataError(
                f"{tab.name}: target column(s) {', '.join(map(repr, inside))} are in both {tab.name} and "
                f"{Path(targets_path).name}; expected them in one file"
            )
        ref, joined = _join_references(
            Path(targets_path), [rec[meta_idx[key]] for rec in tab.rows], join_on=key, targets=targets,
            taken=list(meta_idx), spectra_name=tab.name, delimiter=delimiter, decimal=decimal,
        )
        columns = {h: [rec[j] for rec in tab.rows] for h, j in meta_idx.items()}
        columns.update(joined)
    y, labels, missing = _parse_targets(ref, targets, task)
    return _Raw(
        X=X,
        wavelengths=np.array([w for _, w, _ in spectral], dtype=np.float64),
        axis_unit=unit,
        target_names=tuple(targets),
        y=y,
        labels=labels,
        class_names=None,
        columns=columns,
        source=tab.name,
        missing=missing,
        comma_decimal=comma,
    )
