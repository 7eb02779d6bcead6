"""Spectral datasets for training: loading ``.npz``, CSV and JCAMP-DX files, and validating them once, at the door.

A :class:`SpectralDataset` holds the spectra, their axis, the reference values and the per-row metadata
(``split``, ``instrument``, ``sample_id``, ``groups``, ``meta_*``) that the split selectors and grouped
cross-validation use. Every loader ends in :func:`validate_dataset`, so later stages can trust the arrays.

Delimited text is read as a user's spreadsheet writes it: UTF-8 with or without a byte-order mark, comma,
semicolon or tab (detected), decimal commas beside a semicolon or tab, wavelength headers with units
(``1100 nm``, ``1.00100e+03cm-1``), and reference values from a second file joined on a key column. Before the
checks, ``exclude`` drops rows and rows without a reference value are refused (or dropped); a bad cell is
reported with its file, line and column (``data.csv line 7, column 12 (1104 nm): expected a number, got 'n/a'``).

JCAMP-DX files are parsed by the ``jcamp`` package (a maintained reader of the format's compressed ASDF forms);
it is imported only when a JCAMP file is loaded.

Examples
--------
>>> import numpy as np
>>> ds = SpectralDataset(X=np.ones((12, 3)) * np.arange(12)[:, None], wavelengths=np.array([900.0, 902.0, 904.0]),
...                      y=np.arange(12.0)[:, None], target_names=("fat_pct",))
>>> validate_dataset(ds).n_samples
12
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import DataError

__all__ = [
    "MIN_SAMPLES",
    "SpectralDataset",
    "load_dataset",
    "load_configured",
    "load_synthetic",
    "load_npz",
    "load_csv",
    "load_jcamp",
    "validate_dataset",
]

log = logging.getLogger(__name__)

#: Fewest rows a dataset may have: below this no calibration, cross-validation or conformal limit means anything.
MIN_SAMPLES = 10

#: Arrays of an ``.npz`` file that are not per-row metadata.
_CORE_KEYS = frozenset({"X", "wavelengths", "y", "target_names", "class_names"})

_JCAMP_SUFFIXES = (".jdx", ".dx", ".jcamp")


@dataclass(frozen=True)
class SpectralDataset:
    """Spectra with their axis, reference values and per-row metadata.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_channels), float64
        Spectra, usually absorbance (log(1/T) or log(1/R)).
    wavelengths : ndarray, shape (n_channels,), float64
        Spectral axis, strictly monotonic, in ``axis_unit``.
    y : ndarray, shape (n_samples, n_targets)
        Reference values, float64 for regression; int64 class indices into ``class_names`` for classification.
    target_names : tuple of str, length n_targets
        Name of each column of ``y``.
    class_names : tuple of str or None
        Class labels when the dataset is a classification problem, else None.
    columns : mapping of str to ndarray, each shape (n_samples,)
        Per-row metadata such as ``split``, ``instrument``, ``sample_id``, ``groups`` or ``meta_*``.
    source : str
        Where the data came from (a file name), for messages and the report.
    axis_unit : str
        Unit of ``wavelengths``: ``"nm"`` or ``"cm-1"``.
    """

    X: np.ndarray
    wavelengths: np.ndarray
    y: np.ndarray
    target_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"
    axis_unit: str = "nm"

    @property
    def n_samples(self) -> int:
        """Number of rows (spectra)."""
        return int(self.X.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of spectral channels."""
        return int(self.X.shape[1])

    @property
    def is_classification(self) -> bool:
        """True when ``y`` holds class indices into ``class_names``."""
        return self.class_names is not None

    def column(self, name: str) -> np.ndarray:
        """Per-row metadata column ``name``, shape (n_samples,); :class:`DataError` naming what exists if absent."""
        if name not in self.columns:
            known = ", ".join(sorted(self.columns)) or "none"
            raise DataError(f"{self.source}: no per-row column {name!r}; available columns: {known}")
        return self.columns[name]

    def select_targets(self, names: Sequence[str]) -> SpectralDataset:
        """Keep only the targets ``names`` (in that order); :class:`DataError` when one is missing."""
        if not names:
            raise DataError(f"{self.source}: expected at least one target name, got none")
        index = []
        for name in names:
            if name not in self.target_names:
                raise DataError(
                    f"{self.source}: target {name!r} not found; available targets: {', '.join(self.target_names)}"
                )
            index.append(self.target_names.index(name))
        return replace(self, y=self.y[:, index], target_names=tuple(names))

    def subset(self, rows: np.ndarray) -> SpectralDataset:
        """Rows ``rows`` (integer indices or boolean mask) of every per-row array."""
        return replace(
            self,
            X=self.X[rows],
            y=self.y[rows],
            columns={k: v[rows] for k, v in self.columns.items()},
        )


def validate_dataset(ds: SpectralDataset, *, min_samples: int = MIN_SAMPLES) -> SpectralDataset:
    """Check shapes, finiteness, axis monotonicity, targets and row count; return ``ds`` unchanged when valid.

    Raises
    ------
    DataError
        With a message naming the file and what was expected, e.g. "expected 650 wavelengths, got 649".
    """
    src = ds.source
    X = ds.X
    if X.ndim != 2:
        raise DataError(f"{src}: expected X with 2 dimensions (samples x channels), got shape {X.shape}")
    n, p = X.shape
    if n < min_samples:
        raise DataError(f"{src}: expected at least {min_samples} samples, got {n}")
    if p < 2:
        raise DataError(f"{src}: expected at least 2 spectral channels, got {p}")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{src}: X holds {int(bad.sum())} NaN/infinite values in {rows.size} spectra (first at row {int(rows[0])})"
        )
    wl = ds.wavelengths
    if wl.ndim != 1 or wl.shape[0] != p:
        raise DataError(f"{src}: expected {p} wavelengths (one per channel), got shape {wl.shape}")
    if not np.all(np.isfinite(wl)):
        raise DataError(f"{src}: wavelength axis holds NaN/infinite values")
    step = np.diff(wl)
    if not (np.all(step > 0) or np.all(step < 0)):
        where = int(np.flatnonzero(np.sign(step) != np.sign(step[0]))[0]) + 1 if np.any(step != 0) else 1
        raise DataError(
            f"{src}: expected a strictly monotonic wavelength axis, but it turns or repeats at channel {where} "
            f"({wl[where - 1]:g} -> {wl[where]:g} {ds.axis_unit})"
        )
    y = ds.y
    if y.ndim != 2 or y.shape[0] != n:
        raise DataError(f"{src}: expected y with {n} rows (one per spectrum) and 2 dimensions, got shape {y.shape}")
    if y.shape[1] == 0:
        raise DataError(f"{src}: expected at least one target column, got none")
    if len(ds.target_names) != y.shape[1]:
        raise DataError(f"{src}: expected {y.shape[1]} target names (one per y column), got {len(ds.target_names)}")
    if ds.class_names is not None:
        if y.shape[1] != 1:
            raise DataError(f"{src}: classification expects one label column, got {y.shape[1]}")
        k = len(ds.class_names)
        if k < 2:
            raise DataError(f"{src}: classification expects at least 2 classes, got {k}")
        if y.min() < 0 or y.max() >= k:
            raise DataError(f"{src}: class indices must lie in [0, {k - 1}], got [{int(y.min())}, {int(y.max())}]")
    else:
        for j, name in enumerate(ds.target_names):
            missing = ~np.isfinite(y[:, j])
            if missing.any():
                raise DataError(
                    f"{src}: target {name!r} is missing (NaN) for {int(missing.sum())} of {n} samples "
                    f"(first at row {int(np.flatnonzero(missing)[0])})"
                )
    for key, col in ds.columns.items():
        if col.shape != (n,):
            raise DataError(f"{src}: expected column {key!r} with {n} rows, got shape {col.shape}")
    return ds


def _as_str_tuple(a: np.ndarray | Sequence[str]) -> tuple[str, ...]:
    return tuple(str(s) for s in np.asarray(a).ravel())


# --------------------------------------------------------------------------------------------------------------
# Cells: numbers, header wavelengths with units, booleans, class labels
# --------------------------------------------------------------------------------------------------------------

#: Header units accepted on wavelength cells (lower case), and the ``axis_unit`` each one means.
_HEADER_UNITS = {"nm": "nm", "cm-1": "cm-1", "cm^-1": "cm-1", "cm⁻¹": "cm-1", "/cm": "cm-1"}
#: Header units that are recognised but not supported as an axis.
_REFUSED_UNITS = frozenset({"um", "µm", "μm", "micron", "microns", "mm", "ghz", "thz"})
_HEADER_CELL = re.compile(
    r"(?P<num>[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[^\d\s.,+-][^\s]*)?",
)
#: Cell text (lower case) read as a missing reference value.
_MISSING_TOKENS = frozenset({"", "na", "nan"})
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_BOOL_WORDS = frozenset({"true", "false", "yes", "no"})
#: Delimiters tried, in order, when ``delimiter = "auto"``.
_DELIMITERS = ("\t", ";", ",")
_DELIMITER_NAMES = {"\t": "tab", ";": "';'", ",": "','"}
#: Data lines (after the header) compared by the delimiter detection.
_SNIFF_LINES = 5
_MISSING_POLICIES = ("error", "drop")


def _cell_number(text: str, comma_decimal: bool) -> float | None:
    """A finite number from a cell, or None (empty, text, NaN, infinity); ``0,5`` is 0.5 with ``comma_decimal``."""
    try:
        v = float(text)
    except ValueError:
        if not comma_decimal or text.count(",") != 1 or "." in text:
            return None
        try:
            v = float(text.replace(",", "."))
        except ValueError:
            return None
    return v if np.isfinite(v) else None


def _header_wavelength(cell: str, comma_decimal: bool, where: str) -> tuple[float, str | None] | None:
    """(wavelength, unit or None) when a header cell is a channel (``1100``, ``1100 nm``, ``1.001e+03cm-1``)."""
    m = _HEADER_CELL.fullmatch(cell.strip())
    if m is None:
        return None
    num, unit = m.group("num"), m.group("unit")
    value = _cell_number(num, comma_decimal)
    if value is None:
        return None
    if unit is None:
        return value, None
    u = unit.lower()
    if u in _HEADER_UNITS:
        return value, _HEADER_UNITS[u]
    if u in _REFUSED_UNITS:
        raise DataError(f"{where}: expected a wavelength unit nm or cm-1, got {unit!r} (convert the axis)")
    return None  # "2nd_derivative" and the like: a metadata column


def _as_bool(values: Sequence[str]) -> np.ndarray | None:
    """A bool column when every cell is true/false/yes/no/1/0 (any case) and at least one is a word, else None."""
    low = [v.strip().lower() for v in values]
    if not low or not all(v in _TRUE or v in _FALSE for v in low) or not any(v in _BOOL_WORDS for v in low):
        return None
    return np.array([v in _TRUE for v in low], dtype=bool)


def _column_array(values: Sequence[str], comma_decimal: bool = False) -> np.ndarray:
    """A per-row column: bool (true/false/yes/no, with 1/0), int64 when every cell is an integer, float64 when
    every cell is a number, else str."""
    as_bool = _as_bool(values)
    if as_bool is not None:
        return as_bool
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        pass
    nums = [_cell_number(v, comma_decimal) for v in values]
    if values and all(v is not None for v in nums):
        return np.array(nums, dtype=np.float64)
    return np.array(values, dtype=str)


def _label_text(v: float) -> str:
    """Class name of a numeric label: ``"2"`` for 2.0, ``"0.5"`` for 0.5."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _class_names(labels: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """(label of each row, sorted class names): numeric labels are written canonically and sorted by value
    (``2`` before ``10``); any text label makes every label text, sorted as strings."""
    nums = [_cell_number(v, comma_decimal=False) for v in labels]
    if labels and all(v is not None for v in nums):
        canon = [_label_text(v) for v in nums]  # type: ignore[arg-type]
        by_value = {c: v for c, v in zip(canon, nums)}
        return canon, tuple(sorted(by_value, key=lambda c: by_value[c]))  # type: ignore[arg-type,return-value]
    return list(labels), tuple(sorted(set(labels)))


def _matches(col: np.ndarray, wanted: Any) -> np.ndarray:
    """Rows of ``col`` equal to ``wanted`` (as :func:`trainer.splits.select_rows` compares: numbers numerically
    against a numeric or bool column, everything else as text, so TOML ``true`` matches a bool column)."""
    numeric = np.issubdtype(col.dtype, np.number) or np.issubdtype(col.dtype, np.bool_)
    if numeric and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return np.asarray(col == wanted)
    return np.asarray(col.astype(str) == str(wanted))


# --------------------------------------------------------------------------------------------------------------
# Delimited text tables
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Table:
    """A delimited text file read into stripped cells, with the file line of every record for messages."""

    name: str
    header: list[str]
    header_line: int
    rows: list[list[str]]
    lines: list[int]
    comma_decimal: bool

    def at(self, i: int, j: int, label: str | None = None) -> str:
        """``refs.csv line 7, column 3 (fat_pct)`` for data row ``i`` (from 0), column ``j`` (from 0)."""
        return f"{self.name} line {self.lines[i]}, column {j + 1} ({self.header[j] if label is None else label})"

    def head(self, j: int) -> str:
        """``data.csv line 1, column 4 (1100 nm)`` for header cell ``j``."""
        return f"{self.name} line {self.header_line}, column {j + 1} ({self.header[j]})"

    def index(self, name: str) -> int | None:
        return self.header.index(name) if name in self.header else None


def _read_text(path: Path) -> str:
    """The file's text: UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8"), or UTF-16 with a BOM."""
    raw = path.read_bytes()
    enc = "utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return raw.decode(enc)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path.name} line {line}: expected UTF-8 text, got byte 0x{raw[exc.start]:02x} "
            "(save the file as 'CSV UTF-8')"
        ) from exc


def _split_line(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def _detect_delimiter(text: str, name: str) -> str:
    """Tab, ``;`` or ``,``: the first (in that order) that splits the header into 2+ fields and every one of the
    next few lines into as many; else the one that splits the header into the most fields."""
    lines = [ln for ln in text.splitlines() if ln.strip()][: _SNIFF_LINES + 1]
    if not lines:
        raise DataError(f"{name}: expected a header row and data rows, got an empty file")
    counts = {d: [len(_split_line(ln, d)) for ln in lines] for d in _DELIMITERS}
    for d in _DELIMITERS:
        c = counts[d]
        if c[0] >= 2 and all(k == c[0] for k in c[1:]):
            return d
    best = max(_DELIMITERS, key=lambda d: counts[d][0])
    if counts[best][0] < 2:
        raise DataError(
            f"{name} line 1: expected a header with fields separated by ',', ';' or tab, got one field "
            f"{lines[0][:60]!r}"
        )
    return best


def _comma_decimal(decimal: str, delimiter: str, name: str) -> bool:
    if decimal == ",":
        if delimiter == ",":
            raise DataError(f"{name}: decimal = ',' needs a ';' or tab delimiter, got a comma-separated file")
        return True
    if decimal == ".":
        return False
    return delimiter != ","


def _read_table(path: Path, *, delimiter: str = "auto", decimal: str = "auto", what: str = "data file") -> _Table:
    """Read a delimited file: header row, then records; blank lines skipped, ragged rows, duplicate and empty
    column names refused; columns with an empty name and no values (a trailing delimiter) dropped."""
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    if delimiter not in ("auto", *_DELIMITERS):
        raise DataError(f"delimiter: expected 'auto', ',', ';' or a tab, got {delimiter!r}")
    if decimal not in ("auto", ".", ","):
        raise DataError(f"decimal: expected 'auto', '.' or ',', got {decimal!r}")
    text = _read_text(path)
    delim = _detect_delimiter(text, path.name) if delimiter == "auto" else delimiter
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    records: list[list[str]] = []
    lines: list[int] = []
    try:
        for rec in reader:
            if rec and any(c.strip() for c in rec):
                records.append([c.strip() for c in rec])
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path.name} line {reader.line_num}: {exc}") from exc
    if len(records) < 2:
        raise DataError(f"{path.name}: expected a header row and data rows, got {len(records)} rows")
    header, body, body_lines = records[0], records[1:], lines[1:]
    for rec, line in zip(body, body_lines):
        if len(rec) != len(header):
            raise DataError(
                f"{path.name} line {line}: expected {len(header)} fields (as in the header, separated by "
                f"{_DELIMITER_NAMES[delim]}), got {len(rec)}"
            )
    keep = [j for j, h in enumerate(header) if h or any(rec[j] for rec in body)]
    if len(keep) < len(header):
        header = [header[j] for j in keep]
        body = [[rec[j] for j in keep] for rec in body]
    seen: dict[str, int] = {}
    for j, h in enumerate(header):
        if not h:
            raise DataError(
                f"{path.name} line {lines[0]}, column {keep[j] + 1}: expected a column name, got an empty header "
                "cell above values (a spreadsheet row index? remove that column)"
            )
        if h in seen:
            raise DataError(
                f"{path.name} line {lines[0]}: expected distinct column names, got {h!r} twice "
                f"(columns {keep[seen[h]] + 1} and {keep[j] + 1})"
            )
        seen[h] = j
    return _Table(
        name=path.name,
        header=header,
        header_line=lines[0],
        rows=body,
        lines=body_lines,
        comma_decimal=_comma_decimal(decimal, delim, path.name),
    )


# --------------------------------------------------------------------------------------------------------------
# Raw rows (before exclusions, missing references and validation) and the common finish
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Raw:
    """What a loader read, before :func:`_finish` applies exclusions and the missing-reference policy.

    ``y`` holds regression values (NaN where missing) or, with preset ``class_names``, class indices;
    ``labels`` holds classification labels as text ("" where missing). ``columns`` are typed arrays, or lists of
    cell text typed after rows are dropped. ``missing`` says, per row, why it has no reference ("" when it has).
    """

    X: np.ndarray
    wavelengths: np.ndarray
    axis_unit: str
    target_names: tuple[str, ...]
    y: np.ndarray | None
    labels: list[str] | None
    class_names: tuple[str, ...] | None
    columns: dict[str, np.ndarray | list[str]]
    source: str
    missing: list[str]
    comma_decimal: bool = False


def _typed(
    columns: Mapping[str, np.ndarray | list[str]], rows: np.ndarray | None, comma: bool
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in columns.items():
        if isinstance(v, list):
            out[k] = _column_array(v if rows is None else [v[i] for i in rows], comma)
        else:
            out[k] = v if rows is None else v[rows]
    return out


def _exclusion_mask(columns: Mapping[str, np.ndarray], exclude: Mapping[str, Any], source: str) -> np.ndarray:
    """Rows matching any ``column = [values]`` of ``exclude``; every value must match at least one row."""
    n = next(iter(columns.values())).shape[0] if columns else 0
    mask = np.zeros(n, dtype=bool)
    for name, wanted in exclude.items():
        if name not in columns:
            known = ", ".join(sorted(columns)) or "none"
            raise DataError(f"data.exclude.{name}: {source} has no per-row column {name!r}; available: {known}")
        col = columns[name]
        absent = []
        for v in wanted if isinstance(wanted, (list, tuple)) else [wanted]:
            hit = _matches(col, v)
            if not hit.any():
                absent.append(v)
            mask |= hit
        if absent:
            present = ", ".join(str(v) for v in np.unique(col)[:12])
            raise DataError(
                f"data.exclude.{name}: expected values present in column {name!r}, got {len(absent)} that no row "
                f"has: {', '.join(map(repr, absent))} (values present: {present})"
            )
    return mask


def _finish(
    raw: _Raw,
    *,
    exclude: Mapping[str, Any] | None,
    missing_reference: str,
    min_samples: int,
) -> SpectralDataset:
    """Drop excluded rows, then rows without a reference (or refuse them), order the classes, validate."""
    if missing_reference not in _MISSING_POLICIES:
        raise DataError(f"missing_reference: expected 'error' or 'drop', got {missing_reference!r}")
    n = raw.X.shape[0] if raw.X.ndim == 2 else 0
    if raw.labels is not None:
        n_ref = len(raw.labels)
    else:
        n_ref = raw.y.shape[0] if raw.y is not None and raw.y.ndim else -1
    if raw.X.ndim != 2 or n_ref != n or raw.y is not None and raw.y.ndim != 2:
        validate_dataset(  # raises the shape error, naming what was expected
            SpectralDataset(X=raw.X, wavelengths=raw.wavelengths, y=raw.y if raw.y is not None else np.zeros((0, 1)),
                            target_names=raw.target_names, source=raw.source, axis_unit=raw.axis_unit),
            min_samples=min_samples,
        )
        raise DataError(f"{raw.source}: expected {n} reference rows (one per spectrum), got {n_ref}")
    keep = np.ones(n, dtype=bool)
    if exclude:
        dropped = _exclusion_mask(_typed(raw.columns, None, raw.comma_decimal), exclude, raw.source)
        keep &= ~dropped
        log.info("%s: data.exclude dropped %d of %d rows", raw.source, int(dropped.sum()), n)
    missing = np.array([bool(m) for m in raw.missing], dtype=bool) if raw.missing else np.zeros(n, dtype=bool)
    lacking = np.flatnonzero(missing & keep)
    if lacking.size:
        reasons = list(dict.fromkeys(raw.missing[i] for i in lacking))
        shown = "; ".join(reasons[:5]) + (f"; ... ({len(reasons) - 5} more)" if len(reasons) > 5 else "")
        if missing_reference == "error":
            raise DataError(
                f"{raw.source}: expected a reference value for every row, got {lacking.size} of {int(keep.sum())} "
                f"rows without: {shown}. Fill them in, exclude them ([data] exclude) or set "
                "[data] missing_reference = \"drop\""
            )
        keep &= ~missing
        log.warning("%s: dropped %d of %d rows without a reference value (%s)", raw.source, lacking.size, n, shown)
    rows = np.flatnonzero(keep)
    class_names = raw.class_names
    if raw.labels is not None:
        labels, class_names = _class_names([raw.labels[i] for i in rows])
        y = np.array([class_names.index(v) for v in labels], dtype=np.int64).reshape(-1, 1)
    else:
        assert raw.y is not None
        y = raw.y[rows]
    ds = SpectralDataset(
        X=raw.X[rows],
        wavelengths=raw.wavelengths,
        y=y,
        target_names=raw.target_names,
        class_names=class_names,
        columns=_typed(raw.columns, rows, raw.comma_decimal),
        source=raw.source,
        axis_unit=raw.axis_unit,
    )
    return validate_dataset(ds, min_samples=min_samples)


def _check_unit(axis_unit: str | None) -> None:
    if axis_unit not in (None, "nm", "cm-1"):
        raise DataError(f"axis_unit: expected 'nm' or 'cm-1', got {axis_unit!r}")


# --------------------------------------------------------------------------------------------------------------
# .npz and synthetic
# --------------------------------------------------------------------------------------------------------------


def load_npz(
    path: str | Path,
    *,
    axis_unit: str | None = None,
    min_samples: int = MIN_SAMPLES,
    task: str | None = None,
    exclude: Mapping[str, Any] | None = None,
    missing_reference: str = "error",
) -> SpectralDataset:
    """Load a dataset in the ``../shared/datasets`` ``.npz`` layout.

    Parameters
    ----------
    path : path
        ``.npz`` file with ``X`` (n, p), ``wavelengths`` (p,), ``y`` (n,) or (n, t) and ``target_names`` (t,);
        optionally ``class_names`` (classification) and any per-row 1-D arrays (split, instrument, sample_id, ...).
    axis_unit : {"nm", "cm-1"} or None
        Unit of the wavelength axis; the file does not record it (None means nm).
    min_samples : int
        Fewest rows accepted.
    task : {"regression", "classification"} or None
        Classification without ``class_names`` takes the distinct values of ``y`` as classes (numeric ones named
        ``"0"``, ``"1"``, sorted by value); regression with ``class_names`` is refused. None follows the file.
    exclude : mapping of str to value or list, optional
        Rows to drop: ``{"sample_id": ["s1", "s7"]}`` drops rows whose column matches any listed value.
    missing_reference : {"error", "drop"}
        What to do with rows whose reference value is NaN.
    """
    path = Path(path)
    return _finish(
        _npz_raw(path, axis_unit=axis_unit, task=task),
        exclude=exclude,
        missing_reference=missing_reference,
        min_samples=min_samples,
    )


def _npz_raw(path: Path, *, axis_unit: str | None, task: str | None, targets: Sequence[str] | None = None) -> _Raw:
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    return _arrays_raw(arrays, str(path), path.name, axis_unit=axis_unit, task=task, targets=targets)


def load_synthetic(
    samples: int,
    channels: int,
    seed: int,
    *,
    min_samples: int = MIN_SAMPLES,
    exclude: Mapping[str, Any] | None = None,
) -> SpectralDataset:
    """The spectra ``spectro-sim`` streams without ``--dataset``.

    :func:`firmware_bridge.synthetic.make_synthetic_dataset` with ``--synthetic-samples``, ``--synthetic-channels``
    and ``--seed`` (absorbance, nm; a ``split`` column); ``exclude`` as in :func:`load_csv`."""
    from firmware_bridge.synthetic import make_synthetic_dataset  # noqa: PLC0415

    arrays = {k: np.asarray(v) for k, v in make_synthetic_dataset(samples, seed=seed, n_channels=channels).items()}
    name = f"synthetic(samples={samples}, channels={channels}, seed={seed})"
    raw = _arrays_raw(arrays, name, name, axis_unit="nm", task=None)
    return _finish(raw, exclude=exclude, missing_reference="error", min_samples=min_samples)


def _arrays_raw(
    arrays: Mapping[str, np.ndarray],
    where: str,
    source: str,
    *,
    axis_unit: str | None,
    task: str | None,
    targets: Sequence[str] | None = None,
) -> _Raw:
    _check_unit(axis_unit)
    for key in ("X", "wavelengths", "y"):
        if key not in arrays:
            raise DataError(f"{where}: expected an array named {key!r}; found {', '.join(sorted(arrays))}")
    X = np.asarray(arrays["X"], dtype=np.float64)
    y_raw = np.asarray(arrays["y"])
    y_raw = y_raw[:, None] if y_raw.ndim == 1 else y_raw
    preset = _as_str_tuple(arrays["class_names"]) if "class_names" in arrays else None
    if preset is not None and task == "regression":
        raise DataError(f"{source}: holds class labels (class_names) but the task is regression")
    if "target_names" in arrays:
        target_names = _as_str_tuple(arrays["target_names"])
    else:
        target_names = tuple(f"y{j}" for j in range(y_raw.shape[1] if y_raw.ndim == 2 else 1))
    if targets:
        index = []
        for name in targets:
            if name not in target_names:
                raise DataError(f"{source}: target {name!r} not found; available targets: {', '.join(target_names)}")
            index.append(target_names.index(name))
        if y_raw.ndim == 2 and y_raw.shape[1] == len(target_names):
            y_raw = y_raw[:, index]
        target_names = tuple(targets)
    n = X.shape[0] if X.ndim == 2 else -1
    columns: dict[str, np.ndarray | list[str]] = {}
    for k, v in arrays.items():
        if k in _CORE_KEYS or v.ndim != 1 or v.shape[0] != n:
            continue
        as_bool = _as_bool([str(s) for s in v]) if v.dtype.kind in "US" else None
        columns[k] = as_bool if as_bool is not None else v
    missing = [""] * max(n, 0)
    labels: list[str] | None = None
    y: np.ndarray | None = None
    if preset is not None:
        y = y_raw.astype(np.int64)
    elif task == "classification":
        if y_raw.ndim != 2 or y_raw.shape[1] != 1:
            raise DataError(f"{source}: classification expects one label column, got y of shape {y_raw.shape}")
        if y_raw.dtype.kind in "US":
            labels = [str(v).strip() for v in y_raw[:, 0]]
        else:
            values = y_raw[:, 0].astype(np.float64)
            labels = ["" if not np.isfinite(v) else _label_text(v) for v in values]
        for i, lab in enumerate(labels[: max(n, 0)]):
            if not lab:
                missing[i] = f"row {i}: {target_names[0]} is empty"
    else:
        if y_raw.dtype.kind in "USO":
            raise DataError(f"{source}: expected numeric y for regression, got {y_raw.dtype} values")
        y = y_raw.astype(np.float64)
        if y.ndim == 2 and y.shape[0] == n:
            for i in np.flatnonzero(~np.isfinite(y).all(axis=1)):
                bad = [t for t, v in zip(target_names, y[i]) if not np.isfinite(v)]
                missing[i] = f"row {i}: {', '.join(bad)} is NaN"
    return _Raw(
        X=X,
        wavelengths=np.asarray(arrays["wavelengths"], dtype=np.float64),
        axis_unit=axis_unit or "nm",
        target_names=target_names,
        y=y,
        labels=labels,
        class_names=preset,
        columns=columns,
        source=source,
        missing=missing,
    )


# --------------------------------------------------------------------------------------------------------------
# Reference values: in the spectra file, or a separate CSV joined on a key column
# --------------------------------------------------------------------------------------------------------------


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
            f"{tab.name}: expected a column {join_on!r} to join on ([data] join_on); columns: {', '.join(tab.header)}"
        )
    absent_t = [t for t in targets if t not in tab.header]
    if absent_t:
        raise DataError(
            f"{tab.name}: target column(s) {', '.join(map(repr, absent_t))} not found; columns: {', '.join(tab.header)}"
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


# --------------------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------------------


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
    per-row metadata (split, instrument, sample_id, ...).

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
                f"{tab.name}: target column(s) {', '.join(map(repr, absent))} not found; "
                f"non-spectral columns: {', '.join(meta_idx) or 'none'}"
            )
        ref = _References(table=tab, rows=list(range(len(tab.rows))), absent=[""] * len(tab.rows))
        columns = {h: [rec[j] for rec in tab.rows] for h, j in meta_idx.items() if h not in targets}
    else:
        key = join_on or "sample_id"
        if key not in meta_idx:
            raise DataError(
                f"{tab.name}: expected a column {key!r} to join the reference values on ([data] join_on); "
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


# --------------------------------------------------------------------------------------------------------------
# JCAMP-DX
# --------------------------------------------------------------------------------------------------------------


def _jcamp_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _JCAMP_SUFFIXES)
        if not files:
            raise DataError(
                f"{path}: expected JCAMP-DX files ({', '.join(_JCAMP_SUFFIXES)}) in this folder, found none"
            )
        return files
    if not path.is_file():
        raise DataError(f"{path}: no such JCAMP-DX file or folder")
    return [path]


def load_jcamp(
    path: str | Path,
    *,
    targets: Sequence[str],
    targets_path: str | Path | None = None,
    task: str = "regression",
    axis_unit: str | None = None,
    min_samples: int = MIN_SAMPLES,
    join_on: str | None = None,
    delimiter: str = "auto",
    decimal: str = "auto",
    exclude: Mapping[str, Any] | None = None,
    missing_reference: str = "error",
) -> SpectralDataset:
    """Load JCAMP-DX spectra, one spectrum per file, from a file or a folder of ``.jdx``/``.dx`` files.

    Reference values come from ``targets_path`` (a CSV joined on its ``file`` column, which names each JCAMP
    file; only base names are compared; one column per target, plus optional metadata columns), or else from
    header labels of each file named like the targets (``##$ASSAY_MG=201.3`` is target ``assay_mg``). All files
    must share one wavelength axis. ``delimiter`` and ``decimal`` apply to the targets CSV; ``exclude`` and
    ``missing_reference`` as in :func:`load_csv` (each row has a ``file`` column).
    """
    raw = _jcamp_raw(
        Path(path), targets=targets, targets_path=targets_path, task=task, axis_unit=axis_unit, join_on=join_on,
        delimiter=delimiter, decimal=decimal,
    )
    return _finish(raw, exclude=exclude, missing_reference=missing_reference, min_samples=min_samples)


def _jcamp_raw(
    path: Path,
    *,
    targets: Sequence[str],
    targets_path: str | Path | None,
    task: str,
    axis_unit: str | None,
    join_on: str | None,
    delimiter: str,
    decimal: str,
) -> _Raw:
    _check_unit(axis_unit)
    try:
        import jcamp  # noqa: PLC0415  (optional dependency, only needed for this format)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading JCAMP-DX needs the 'jcamp' package (pip install jcamp)") from exc
    if task == "classification" and len(targets) != 1:
        raise DataError(f"{path.name}: classification expects exactly one target column, got {len(targets)}")
    files = _jcamp_files(path)
    spectra: list[np.ndarray] = []
    wl: np.ndarray | None = None
    header_labels: list[dict[str, Any]] = []
    for f in files:
        try:
            d: dict[str, Any] = jcamp.jcamp_readfile(str(f)) if hasattr(jcamp, "jcamp_readfile") else jcamp.readfile(
                str(f)
            )
        except Exception as exc:  # the reader raises assorted builtins on malformed files
            raise DataError(f"{f.name}: not a readable JCAMP-DX file ({type(exc).__name__}: {exc})") from exc
        if "x" not in d or "y" not in d:
            raise DataError(f"{f.name}: JCAMP-DX file holds no XY data block")
        x = np.asarray(d["x"], dtype=np.float64)
        yv = np.asarray(d["y"], dtype=np.float64)
        if wl is None:
            wl = x
        elif x.shape != wl.shape or not np.allclose(x, wl, rtol=0, atol=1e-6 * max(1.0, float(np.abs(wl).max()))):
            raise DataError(
                f"{f.name}: wavelength axis differs from {files[0].name}'s "
                f"(expected {wl.size} points {wl[0]:g}-{wl[-1]:g}, got {x.size} points {x[0]:g}-{x[-1]:g})"
            )
        spectra.append(yv)
        header_labels.append({str(k).lower().lstrip("$"): v for k, v in d.items()})
    assert wl is not None
    names = [f.name for f in files]
    columns: dict[str, np.ndarray | list[str]] = {"file": np.array(names, dtype=str)}
    y: np.ndarray | None
    labels: list[str] | None
    if targets_path is not None:
        if (join_on or "file") != "file":
            raise DataError(
                f"join_on: expected 'file' for JCAMP-DX spectra (joined on their file name), got {join_on!r}"
            )
        ref, joined = _join_references(
            Path(targets_path), names, join_on="file", targets=targets, taken=["file"],
            spectra_name=path.name, delimiter=delimiter, decimal=decimal,
            key_of=lambda s: Path(s.strip()).name,
        )
        columns.update(joined)
        y, labels, missing = _parse_targets(ref, targets, task)
    else:
        absent = [t for t in targets if all(t.lower() not in h for h in header_labels)]
        if absent:
            raise DataError(
                f"{path.name}: target(s) {', '.join(map(repr, absent))} not found in the JCAMP-DX headers "
                "(give a targets CSV with a 'file' column)"
            )
        missing = [""] * len(files)
        if task == "classification":
            y = None
            labels = [str(h.get(targets[0].lower(), "")).strip() for h in header_labels]
            for i, lab in enumerate(labels):
                if not lab:
                    missing[i] = f"{names[i]}: no ##${targets[0].upper()} label"
        else:
            labels = None
            y = np.full((len(files), len(targets)), np.nan)
            for i, h in enumerate(header_labels):
                for k, t in enumerate(targets):
                    text = str(h.get(t.lower(), "")).strip()
                    if text.lower() in _MISSING_TOKENS:
                        missing[i] = missing[i] or f"{names[i]}: no ##${t.upper()} value"
                        continue
                    v = _cell_number(text, comma_decimal=False)
                    if v is None:
                        raise DataError(f"{names[i]}: ##${t.upper()}: expected a number, got {text!r}")
                    y[i, k] = v
    return _Raw(
        X=np.vstack(spectra),
        wavelengths=wl,
        axis_unit=axis_unit or "nm",
        target_names=tuple(targets),
        y=y,
        labels=labels,
        class_names=None,
        columns=columns,
        source=path.name,
        missing=missing,
    )


# --------------------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------------------


def load_dataset(
    path: str | Path,
    *,
    targets: Sequence[str] | None = None,
    fmt: str | None = None,
    task: str | None = None,
    targets_path: str | Path | None = None,
    axis_unit: str | None = None,
    min_samples: int = MIN_SAMPLES,
    join_on: str | None = None,
    delimiter: str = "auto",
    decimal: str = "auto",
    exclude: Mapping[str, Any] | None = None,
    missing_reference: str = "error",
) -> SpectralDataset:
    """Load a dataset by format (``"npz"``, ``"csv"``, ``"jcamp"``; inferred from the suffix when None).

    ``targets`` selects and orders the targets (required for CSV and JCAMP-DX); ``task`` forces
    ``"regression"`` or ``"classification"`` (an ``.npz`` with ``class_names`` is classification). The other
    keywords are those of :func:`load_csv` (``targets_path`` is refused for ``.npz``, whose ``y`` holds the
    references).
    """
    path = Path(path)
    if fmt is None:
        suffix = path.suffix.lower()
        if suffix == ".npz":
            fmt = "npz"
        elif suffix in (".csv", ".txt", ".tsv"):
            fmt = "csv"
        elif suffix in _JCAMP_SUFFIXES or path.is_dir():
            fmt = "jcamp"
        else:
            raise DataError(f"{path}: cannot tell the format from suffix {suffix!r}; expected .npz, .csv or .jdx/.dx")
    if fmt == "npz":
        if targets_path is not None:
            raise DataError(
                f"{path.name}: targets_path is for CSV and JCAMP-DX spectra; expected the reference values in the "
                ".npz's y, got a targets file"
            )
        raw = _npz_raw(path, axis_unit=axis_unit, task=task, targets=targets)
        return _finish(raw, exclude=exclude, missing_reference=missing_reference, min_samples=min_samples)
    if fmt not in ("csv", "jcamp"):
        raise DataError(f"unknown data format {fmt!r}; expected one of npz, csv, jcamp")
    if not targets:
        raise DataError(f"{path}: the target column names must be given for {fmt} data")
    loader = load_csv if fmt == "csv" else load_jcamp
    return loader(
        path,
        targets=targets,
        task=task or "regression",
        targets_path=targets_path,
        axis_unit=axis_unit,
        min_samples=min_samples,
        join_on=join_on,
        delimiter=delimiter,
        decimal=decimal,
        exclude=exclude,
        missing_reference=missing_reference,
    )


def load_configured(data: Any) -> SpectralDataset:
    """Load what a config's ``[data]`` table names (:class:`trainer.config.DataConfig`): a file, or synthetic
    spectra."""
    if data.synthetic is not None:
        ds = load_synthetic(data.synthetic.samples, data.synthetic.channels, data.synthetic.seed,
                            min_samples=data.min_samples, exclude=dict(data.exclude) or None)
        return ds.select_targets(list(data.targets)) if data.targets else ds
    return load_dataset(
        data.path,
        targets=list(data.targets),
        fmt=data.format,
        task=data.task,
        targets_path=data.targets_path,
        axis_unit=data.axis_unit,
        min_samples=data.min_samples,
        join_on=data.join_on,
        delimiter=data.delimiter,
        decimal=data.decimal,
        exclude=dict(data.exclude) or None,
        missing_reference=data.missing_reference,
    )
