"""Tests of edge.jsonstrict: the one strict JSON reader of the edge's untrusted inputs."""

from __future__ import annotations

import doctest

import pytest

import edge.jsonstrict
from edge.jsonstrict import loads_strict


def test_doctests() -> None:
    assert doctest.testmod(edge.jsonstrict).failed == 0


def test_reads_plain_json_from_text_and_utf8_bytes() -> None:
    doc = {"a": [1, 2.5, None, True], "b": {"c": "é"}}
    assert loads_strict('{"a": [1, 2.5, null, true], "b": {"c": "é"}}') == doc
    assert loads_strict('{"a": [1, 2.5, null, true], "b": {"c": "é"}}'.encode()) == doc


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 1}', "expected unique keys in a JSON object, got 'a' twice"),
        ('{"x": {"k": 1, "k": 2}}', "got 'k' twice"),
        ("[NaN]", "expected finite numbers, got NaN"),
        ('{"v": Infinity}', "got Infinity"),
        ("[-Infinity]", "got -Infinity"),
        ("{not json", "Expecting property name"),
        (b"\xff\xfe", "can't decode"),
        ("[" * 100_000 + "]" * 100_000, "nesting too deep"),
    ],
)
def test_refusals_are_value_errors_that_say_why(text: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loads_strict(text)
