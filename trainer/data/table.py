"""Delimited text tables as a spreadsheet writes them: encoding, delimiter and decimal-comma detection."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

from trainer.data.cells import _DELIMITER_NAMES, _DELIMITERS, _SNIFF_LINES
from trainer.errors import DataError


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
            # "850,00 nm" split in two: a whole part "850", then "00 nm" (repeated by the next channel's "00 nm")
            split = delim == "," and h[:1].isdigit() and all(
                k > 0 and header[k - 1].isdigit() and header[k - 1] != h for k in (seen[h], j))
            raise DataError(
                f"{path.name} line {lines[0]}: expected distinct column names, got {h!r} twice "
                f"(columns {keep[seen[h]] + 1} and {keep[j] + 1})"
                + ("; decimal commas in a comma-separated file split each number in two: re-export with ';' or "
                   "tab as the delimiter" if split else "")
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
