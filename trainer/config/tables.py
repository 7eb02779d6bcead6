"""Reading TOML tables with messages naming the key: tables, known keys, typed values, ranges."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from types import UnionType as _UnionType
from typing import Any

from trainer.errors import TrainConfigError, did_you_mean


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


def unknown_key_error(where: str, unknown: Iterable[str], known: Iterable[str]) -> TrainConfigError:
    """The error for keys of a table that it does not have: the first unknown key with its table, the closest known
    key (:func:`did_you_mean`) and every known one."""
    first, known = sorted(unknown)[0], sorted(known)
    prefix = f"{where}." if where else ""
    return TrainConfigError(f"{prefix}{first}: unknown key{did_you_mean(first, known)} (expected one of "
                            f"{', '.join(known)})")


def _check_keys(d: Mapping[str, Any], where: str, known: set[str] | frozenset[str]) -> None:
    unknown = set(d) - set(known)
    if unknown:
        raise unknown_key_error(where, unknown, known)


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


def record_from_table(cls: Any, d: Mapping[str, Any], where: str, *, also_known: tuple[str, ...] = ()) -> Any:
    """``cls(**d)`` for a frozen dataclass read from the config table ``[where]``: unknown keys are refused with the
    known ones named, and each value must have its field's TOML type (an integer for ``int``, an integer or a number
    for ``float``, true/false for ``bool``, a string for ``str``, an array of integers for ``tuple[int, ...]``;
    ``X | None`` fields take ``X``), so a wrong value is named by its key before anything else reads it.
    ``also_known`` names keys of the table that the caller has already taken out of ``d`` (listed as known)."""
    import typing

    known = set(cls.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise unknown_key_error(where, unknown, known | set(also_known))
    hints = typing.get_type_hints(cls)
    for key, v in d.items():
        hint = hints[key]
        options = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
            typing.Union, _UnionType) else [hint]
        if len(options) == 1 and typing.get_origin(options[0]) is tuple and typing.get_args(options[0])[0] is int:
            if not (isinstance(v, (list, tuple))
                    and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in v)):
                raise TrainConfigError(f"{where}.{key}: expected an array of integers, got {v!r}")
        elif len(options) == 1 and options[0] in (int, float, bool, str):
            _get(d, key, where, options[0])
    return cls(**d)
