"""Versioned JSON spec of preprocessing steps: the op registry, ``SPEC_VERSION`` and strict field readers.

A spec is plain JSON written with ``allow_nan=False``. Floats are written by Python's ``repr`` (shortest string that
round-trips), so every float read back is bit-for-bit the float that was written; arrays are lists of floats
(matrices: lists of rows). Readers here reject anything unexpected (unknown op, unknown key, wrong type, NaN,
newer ``spec_version``) with a :class:`~edge.errors.SpecError` naming what is known or expected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import SpecError
from edge.jsonstrict import loads_strict
from edge.validation import require_bool, require_enum, require_int, require_keys, require_number

__all__ = [
    "SPEC_VERSION",
    "SUPPORTED_SPEC_VERSIONS",
    "FloatArray",
    "check_version",
    "dumps",
    "loads",
    "array_to_spec",
    "read_keys",
    "read_int",
    "read_float",
    "read_optional_float",
    "read_str",
    "read_bool",
    "read_vector",
    "read_matrix",
    "read_optional_vector",
    "read_optional_matrix",
]

#: Version written by this code. Version 1 is the first public format; every version up to this one still loads.
SPEC_VERSION = 1
#: Every ``spec_version`` this code reads.
SUPPORTED_SPEC_VERSIONS = (1,)

FloatArray = npt.NDArray[np.float64]


def check_version(version: object) -> int:
    """Validate a ``spec_version`` value; newer than this code or not an int gives :class:`SpecError`."""
    version = require_int(version, "spec_version", SpecError)
    if version > SPEC_VERSION:
        raise SpecError(
            f"spec_version {version} is newer than this code supports (up to {SPEC_VERSION}); upgrade spectrolite"
        )
    if version not in SUPPORTED_SPEC_VERSIONS:
        require_enum(version, "spec_version", SpecError, SUPPORTED_SPEC_VERSIONS)
    return version


def dumps(obj: Any) -> str:
    """JSON text with ``allow_nan=False`` and sorted keys; a NaN or inf anywhere raises :class:`SpecError`."""
    try:
        return json.dumps(obj, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except ValueError as exc:
        raise SpecError(f"cannot write the spec as JSON: {exc}") from None


def loads(text: str | bytes) -> Any:
    """Parse JSON text strictly (:func:`edge.jsonstrict.loads_strict`: no ``NaN``/``Infinity`` tokens, no duplicate
    keys); a refusal raises :class:`SpecError`."""
    try:
        return loads_strict(text)
    except ValueError as exc:
        raise SpecError(f"spec is not valid JSON: {exc}") from None


def array_to_spec(a: npt.ArrayLike) -> Any:
    """Nested lists of Python floats (exact: ``float`` repr round-trips) for a float array."""
    return np.asarray(a, dtype=np.float64).tolist()


def read_keys(d: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()) -> None:
    """Check that ``d`` holds every required key and nothing outside ``op``/required/optional."""
    require_keys(d, "", SpecError, required, ("op", *optional))


def read_int(d: Mapping[str, Any], key: str, *, minimum: int | None = None) -> int:
    """Integer field (JSON bools rejected), at least ``minimum`` when given."""
    return require_int(d[key], key, SpecError, minimum=minimum)


def read_float(d: Mapping[str, Any], key: str) -> float:
    """Finite float field (ints accepted and converted exactly)."""
    return require_number(d[key], key, SpecError)


def read_optional_float(d: Mapping[str, Any], key: str) -> float | None:
    """Finite float field that may be absent or null."""
    return None if d.get(key) is None else read_float(d, key)


def read_str(d: Mapping[str, Any], key: str, choices: Sequence[str]) -> str:
    """String field restricted to ``choices``."""
    return str(require_enum(d[key], key, SpecError, choices))


def read_bool(d: Mapping[str, Any], key: str) -> bool:
    """Boolean field."""
    return require_bool(d[key], key, SpecError)


def _to_array(v: Any, key: str, ndim: int) -> FloatArray:
    try:
        a = np.array(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(
            f"expected {key} as {'a list' if ndim == 1 else 'a list of equal-length lists'} of numbers"
        ) from None
    if a.ndim != ndim or a.size == 0 or a.dtype != np.float64:
        raise SpecError(f"expected {key} as a non-empty {ndim}-D list of numbers, got shape {a.shape}")
    if isinstance(v, (str, bytes)) or not np.all(np.isfinite(a)):
        raise SpecError(f"expected finite numbers in {key}")
    a.setflags(write=False)
    return a


def read_vector(d: Mapping[str, Any], key: str, length: int | None = None) -> FloatArray:
    """1-D float array field, of ``length`` values when given; the array is read-only."""
    v = d[key]
    if not isinstance(v, list) or any(isinstance(x, (bool, list)) for x in v):
        raise SpecError(f"expected {key} as a list of numbers")
    a = _to_array(v, key, 1)
    if length is not None and a.shape[0] != length:
        raise SpecError(f"expected {length} values in {key}, got {a.shape[0]}")
    return a


def read_matrix(d: Mapping[str, Any], key: str, shape: tuple[int | None, int | None] = (None, None)) -> FloatArray:
    """2-D float array field (list of rows), checked against ``shape`` where given; read-only."""
    v = d[key]
    if not isinstance(v, list) or not all(isinstance(r, list) for r in v):
        raise SpecError(f"expected {key} as a list of rows")
    if any(isinstance(x, bool) for r in v for x in r):
        raise SpecError(f"expected numbers in {key}, got a boolean")
    a = _to_array(v, key, 2)
    for axis, want in enumerate(shape):
        if want is not None and a.shape[axis] != want:
            raise SpecError(f"expected {key} of shape {shape}, got {a.shape}")
    return a


def read_optional_vector(d: Mapping[str, Any], key: str, length: int | None = None) -> FloatArray | None:
    """Like :func:`read_vector`, but absent or null gives ``None``."""
    return None if d.get(key) is None else read_vector(d, key, length)


def read_optional_matrix(
    d: Mapping[str, Any], key: str, shape: tuple[int | None, int | None] = (None, None)
) -> FloatArray | None:
    """Like :func:`read_matrix`, but absent or null gives ``None``."""
    return None if d.get(key) is None else read_matrix(d, key, shape)
