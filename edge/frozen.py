"""Frozen dataclasses built without their generated ``__init__`` where a hot path makes many of them.

A frozen dataclass's ``__init__`` sets each field with one ``object.__setattr__`` call (a LINE frame's
:class:`~edge.inference.Prediction` and :class:`~edge.publish.messages.OodStats` are made 256 times per frame):
:func:`built` fills the instance's ``__dict__`` at once, the same object ``cls(**fields)`` makes for a class
without ``__post_init__`` when every field is given.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["built"]

_T = TypeVar("_T")


def built(cls: type[_T], **fields: Any) -> _T:
    """``cls(**fields)`` for a frozen dataclass ``cls`` without ``__post_init__`` (or slots), every field given;
    a TypeError naming the fields otherwise, as the ``__init__`` would raise."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]  # any dataclass has it
    if fields.keys() != names.keys():
        raise TypeError(f"{cls.__name__}: expected the fields {sorted(names)}, got {sorted(fields)}")
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj
