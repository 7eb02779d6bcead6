"""Reading TOML tables with messages naming the key: tables, known keys, typed values, ranges."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainer.errors import TrainConfigError


def _table(d: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any]:
    full = f"{where}.{key}" if where else key
    if key not in d:
        if required:
            raise TrainConfigError(f"{full}: missing required table")
        return {}
    v = d[key]
    if not isinstance(v, Mapping):
        raise TrainConfigError(f"{full}: expected a table, got {type(v).__name__}")
    return dict(v)


def _check_keys(d: Mapping[str, Any], where: str, known: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(d) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise TrainConfigError(
            f"{prefix}{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}"
        )


def _get(d: Mapping[str, Any], key: str, where: str, types: type | tuple[type, ...], default: Any = ...) -> Any:
    full = f"{where}.{key}" if where else key
    if key not in d:
        if default is ...:
            raise TrainConfigError(f"{full}: missing required key")
        return default
    v = d[key]
    types_t = types if isinstance(types, tuple) else (types,)
    if isinstance(v, bool) and bool not in types_t:
        raise TrainConfigError(f"{full}: expected {_type_names(types_t)}, got {v!r}")
    if float in types_t and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, types_t):
        raise TrainConfigError(f"{full}: expected {_type_names(types_t)}, got {type(v).__name__} {v!r}")
    return v


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "an array",
             dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _group(d: Mapping[str, Any], where: str) -> str:
    """A grouping column name, or several joined by ``+`` (from an array or a ``+`` string)."""
    g = _get(d, "group", where, (str, list), "row")
    parts = g if isinstance(g, list) else g.split("+")
    if not parts or not all(isinstance(p, str) and p.strip() for p in parts):
        raise TrainConfigError(f"{where}.group: expected a column name or an array of column names, got {g!r}")
    return "+".join(p.strip() for p in parts)


def _positive(v: float, full: str, *, allow_zero: bool = False) -> None:
    if v < 0 or (v == 0 and not allow_zero):
        raise TrainConfigError(f"{full}: expected a number {'>=' if allow_zero else '>'} 0, got {v!r}")


def _fraction(v: float, full: str) -> None:
    if not 0.0 < v < 1.0:
        raise TrainConfigError(f"{full}: expected a number strictly between 0 and 1, got {v!r}")
