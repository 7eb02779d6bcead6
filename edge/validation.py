"""The one validation vocabulary of the device side: small checks of parsed JSON and TOML values that raise the
caller's error type with one wording, ``"<where>: expected X, got Y"``.

Each reader of an outside document (bundle manifest, preprocessing spec, OOD and interval members, configuration,
remote commands) names where a value sits (``golden.count``, ``mqtt.port``, ``capture_dark.args.average_frames``)
and the error class its callers catch (:class:`~edge.errors.BundleError`, :class:`~edge.errors.SpecError`,
:class:`~edge.errors.ConfigError`, :class:`~edge.errors.CommandError`); these helpers do the rest.  JSON
``true``/``false`` are never numbers here, and numbers are finite.

>>> from edge.errors import ConfigError
>>> require_int(5, "mqtt.qos", ConfigError, minimum=0, maximum=2)
Traceback (most recent call last):
...
edge.errors.ConfigError: mqtt.qos: expected an integer in 0..2, got 5
>>> require_number(True, "drift.ewma_alpha", ConfigError)
Traceback (most recent call last):
...
edge.errors.ConfigError: drift.ewma_alpha: expected a number, got true
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NoReturn

__all__ = [
    "describe",
    "is_int",
    "is_number",
    "fail",
    "require",
    "require_keys",
    "require_fields",
    "require_mapping",
    "require_bool",
    "require_int",
    "require_number",
    "require_range",
    "require_enum",
    "require_str",
]


class _Unset:
    def __repr__(self) -> str:  # pragma: no cover - never shown
        return "<unset>"


_UNSET: Any = _Unset()


#: The longest a message shows a value: a remote command's string argument may be long, its refusal stays short.
MAX_SHOWN_CHARS = 80


def describe(value: Any) -> str:
    """A value as a message names it: strings quoted, ``true``/``false``, "a table"/"an array" for containers, at
    most :data:`MAX_SHOWN_CHARS` characters (longer ones cut, ending "...").

    >>> [describe(v) for v in ("x", True, {}, [1], 2.5, None)]
    ["'x'", 'true', 'a table', 'an array', '2.5', 'None']
    >>> len(describe("x" * 1000))
    80
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS - 3] + "..."


def is_int(value: Any) -> bool:
    """True for an integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a finite int or float that is not a bool (an integer beyond float range is not finite here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)


def _finite(value: float) -> bool:
    try:  # a JSON integer may lie beyond float range: math.isfinite raises OverflowError on it
        return math.isfinite(value)
    except OverflowError:
        return False


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def fail(error: type[Exception], where: str, expected: str, got: Any = _UNSET) -> NoReturn:
    """Raise ``error("<where>: expected <expected>, got <describe(got)>")`` (without ``got`` when not given; without
    ``where`` when empty)."""
    tail = "" if got is _UNSET else f", got {describe(got)}"
    raise error(f"{_where(where)}expected {expected}{tail}")


def require(cond: bool, error: type[Exception], where: str, expected: str, got: Any = _UNSET) -> None:
    """:func:`fail` unless ``cond``."""
    if not cond:
        fail(error, where, expected, got)


def require_mapping(value: Any, where: str, error: type[Exception], what: str = "an object") -> Mapping[str, Any]:
    """``value`` when it is a JSON object / TOML table: "expected <what>, got list"."""
    if not isinstance(value, Mapping):
        raise error(f"{_where(where)}expected {what}, got {type(value).__name__}")
    return value


def require_keys(
    d: Mapping[str, Any], where: str, error: type[Exception], required: Collection[str],
    optional: Collection[str] = (), *, allow_unknown: bool = False,
) -> None:
    """``d`` holds every ``required`` key and (unless ``allow_unknown``) nothing outside ``required`` and
    ``optional``: "missing key(s) a, b" or "unknown key(s) x; expected a, b, c"."""
    missing = sorted(k for k in required if k not in d)
    if missing:
        raise error(f"{_where(where)}missing key(s) {', '.join(missing)}")
    if allow_unknown:
        return
    allowed = {*required, *optional}
    extra = sorted(str(k) for k in d if k not in allowed)
    if extra:
        raise error(f"{_where(where)}unknown key(s) {', '.join(extra)}; expected {', '.join(sorted(allowed))}")


def require_fields(
    d: Mapping[str, Any], where: str, error: type[Exception], required: Sequence[str] = (),
    optional: Sequence[str] = (), *, noun: str = "argument", hints: Mapping[str, str] | None = None,
) -> None:
    """The keys of a command's ``args`` (or of an object inside them), one at a time: the first unknown one
    (sorted) as "<where>.<key>: unknown argument (expected a, b)", then the first missing ``required`` one as
    "<where>.<key>: required argument missing (<hints[key]>)"; ``noun`` names what a key is ("field", "key").

    >>> from edge.errors import CommandError
    >>> require_fields({"frames": 3}, "capture_dark.args", CommandError, optional=("average_frames",))
    Traceback (most recent call last):
    ...
    edge.errors.CommandError: capture_dark.args.frames: unknown argument (expected average_frames)
    """
    allowed = (*required, *optional)
    extra = sorted(str(k) for k in d if k not in allowed)
    if extra:
        raise error(f"{where}.{extra[0]}: unknown {noun} (expected {', '.join(allowed) or f'no {noun}s'})")
    for key in required:
        if key not in d:
            hint = (hints or {}).get(key)
            raise error(f"{where}.{key}: required {noun} missing" + (f" ({hint})" if hint else ""))


def require_bool(value: Any, where: str, error: type[Exception]) -> bool:
    """``value`` when it is ``true`` or ``false``."""
    require(isinstance(value, bool), error, where, "true or false", value)
    return bool(value)


def _num(v: float) -> str:
    return str(v) if is_int(v) else f"{v:g}"


def _bounds(minimum: float | None, maximum: float | None, min_exclusive: bool = False) -> str:
    if minimum is not None and maximum is not None and not min_exclusive:
        return f" in {_num(minimum)}..{_num(maximum)}"
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_exclusive else '>='} {_num(minimum)}")
    if maximum is not None:
        parts.append(f"<= {_num(maximum)}")
    return (" " + " and ".join(parts)) if parts else ""


def require_int(
    value: Any, where: str, error: type[Exception], *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` when it is an integer (not a bool) within ``minimum``..``maximum`` (inclusive, either optional):
    "expected an integer in 1..256", "expected an integer >= 2"."""
    ok = is_int(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    require(ok, error, where, f"an integer{_bounds(minimum, maximum)}", value)
    return int(value)


def require_number(
    value: Any, where: str, error: type[Exception], *, minimum: float | None = None, maximum: float | None = None,
    min_exclusive: bool = False,
) -> float:
    """``value`` as a float when it is a finite number (an int or a float, not a bool) within the bounds: "expected
    a number >= 0, got -1", "expected a finite number, got nan", "expected a number, got true"."""
    bounds = _bounds(minimum, maximum, min_exclusive)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        fail(error, where, f"a number{bounds}", value)
    if isinstance(value, float) and not math.isfinite(value):
        fail(error, where, f"a finite number{bounds}", value)
    if not _finite(value):  # an integer beyond float range: out of any bounds a float can state
        fail(error, where, f"a number{bounds}", value)
    ok = (minimum is None or (value > minimum if min_exclusive else value >= minimum)) and (
        maximum is None or value <= maximum)
    require(ok, error, where, f"a number{bounds}", value)
    return float(value)


def require_range(
    value: float, where: str, error: type[Exception], *, minimum: float | None = None, maximum: float | None = None,
    min_exclusive: bool = False,
) -> None:
    """A number already read, against one bound at a time: "expected a value >= 1", "> 0", "<= 65535"."""
    if minimum is not None:
        if min_exclusive and not value > minimum:
            fail(error, where, f"a value > {minimum:g}", value)
        if not min_exclusive and value < minimum:
            fail(error, where, f"a value >= {minimum:g}", value)
    if maximum is not None and value > maximum:
        fail(error, where, f"a value <= {maximum:g}", value)


def require_enum(value: Any, where: str, error: type[Exception], choices: Sequence[Any]) -> Any:
    """``value`` when it is one of ``choices``: "expected one of ['a', 'b'], got 'c'"."""
    require(_member(value, choices), error, where, f"one of {list(choices)}", value)
    return value


def _member(value: Any, choices: Sequence[Any]) -> bool:
    # bool is an int: True must not pass as 1, nor 1 as True
    return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices)


def require_str(
    value: Any, where: str, error: type[Exception], *, pattern: re.Pattern[str] | None = None,
    pattern_doc: str | None = None, non_empty: bool = False,
) -> str:
    """``value`` when it is a string (non-empty when asked), matching ``pattern`` when given (the message names
    ``pattern_doc``, for a value that is no string too, else the pattern). The whole string must match: ``$``
    alone would let a trailing newline through."""
    if not isinstance(value, str) or (non_empty and not value):
        fail(error, where, pattern_doc or ("a non-empty string" if non_empty else "a string"), value)
    if pattern is not None and not pattern.fullmatch(value):
        fail(error, where, pattern_doc or f"a string matching {pattern.pattern}", value)
    return value
