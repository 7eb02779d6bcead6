"""Strict JSON reading for untrusted text: refuses ``NaN``/``Infinity`` tokens, duplicate keys and deep nesting.

Python's :func:`json.loads` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON) and keeps the *last* of
two equal keys, so two readers of the same bytes may disagree about what they say.  :func:`loads_strict` refuses
both, and turns the ``RecursionError`` of a deeply nested document into a ``ValueError`` like every other refusal,
so a caller catches one exception type and wraps it in its own error.

>>> loads_strict(b'{"a": 1}')
{'a': 1}
>>> loads_strict('{"a": 1, "a": 2}')
Traceback (most recent call last):
...
ValueError: expected unique keys in a JSON object, got 'a' twice
>>> loads_strict('[NaN]')
Traceback (most recent call last):
...
ValueError: expected finite numbers, got NaN (not valid JSON)
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads_strict"]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"expected unique keys in a JSON object, got {key!r} twice")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"expected finite numbers, got {name} (not valid JSON)")


def loads_strict(data: str | bytes) -> Any:
    """Parse JSON text (``str``, or UTF-8 ``bytes``) strictly.

    Parameters
    ----------
    data : str or bytes
        The document; bytes must be UTF-8.

    Returns
    -------
    Any
        The parsed value (objects as ``dict``).

    Raises
    ------
    ValueError
        Not UTF-8, not JSON, a ``NaN``/``Infinity`` token, a key repeated within one object, or nesting too deep
        for the parser (the message says which).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("expected JSON nested less deeply, got nesting too deep to parse") from None
