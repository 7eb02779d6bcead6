"""Cells of a user's spreadsheet: numbers (decimal commas), header wavelengths with units, booleans, class labels."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer.errors import DataError

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
        canon = [_label_text(v) for v in nums]  # type: ignore[arg-type]  # every one is a float: checked just above
        by_value = {c: v for c, v in zip(canon, nums)}
        return canon, tuple(sorted(by_value, key=lambda c: by_value[c]))  # type: ignore[arg-type,return-value]  # floats, not None: checked above
    return list(labels), tuple(sorted(set(labels)))


def _matches(col: np.ndarray, wanted: Any) -> np.ndarray:
    """Rows of ``col`` equal to ``wanted`` (as :func:`trainer.splits.select_rows` compares: numbers numerically
    against a numeric or bool column, everything else as text, so TOML ``true`` matches a bool column)."""
    numeric = np.issubdtype(col.dtype, np.number) or np.issubdtype(col.dtype, np.bool_)
    if numeric and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return np.asarray(col == wanted)
    return np.asarray(col.astype(str) == str(wanted))


def _bool_hint(col: np.ndarray, name: str, wanted: Any) -> str:
    """For a text value that matched nothing in a bool column (``"TRUE"`` copied from the file): how to write it."""
    values = wanted if isinstance(wanted, (list, tuple)) else [wanted]
    if not np.issubdtype(col.dtype, np.bool_) or not any(isinstance(v, str) for v in values):
        return ""
    return f"; column {name!r} holds booleans: write {name} = true or false (TOML booleans, without quotes)"
