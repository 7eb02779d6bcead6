"""Golden version-1 payloads: what every builder emits, byte for byte, against tests/data/messages/v1_*.json.

The files are written by tests/data/messages/make_messages.py (never by a test): a change to a builder's output
(a field added, renamed, reordered or retyped) fails here and must be made on purpose, with docs/mqtt.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from edge.publish.schema import SCHEMAS, MessageError, decode, encode, validate
from tests.support.golden_messages import GOLDEN_DIR, golden_names, golden_payload
from tests.support.scripts import load_script

GENERATOR = load_script(GOLDEN_DIR / "make_messages.py", "make_messages")
CASES: dict[str, Callable[[], dict[str, Any]]] = GENERATOR.CASES
FILES = golden_names()


def test_every_case_has_its_file_and_every_file_its_case() -> None:
    assert FILES == sorted(CASES)


def test_every_kind_has_a_golden() -> None:
    assert {decode(golden_payload(name))["kind"] for name in CASES} == set(SCHEMAS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_payload_byte_for_byte(name: str) -> None:
    golden = golden_payload(name)
    built = CASES[name]()
    assert encode(built) == golden
    assert decode(golden) == built


@pytest.mark.parametrize("name", sorted(CASES))
def test_producer_refuses_fields_its_schema_does_not_list(name: str) -> None:
    msg = CASES[name]()
    msg["undocumented"] = 1
    with pytest.raises(MessageError, match=rf"{msg['kind']}\.undocumented: unknown field"):
        encode(msg)
    validate(msg)  # a consumer ignores it
    assert decode(encode(CASES[name]())[:-1] + b',"from_a_newer_minor":{"x":1}}')["from_a_newer_minor"] == {"x": 1}


def test_the_generator_never_overwrites_a_golden(capsys: pytest.CaptureFixture[str]) -> None:
    name = sorted(CASES)[0]
    before = GENERATOR.path_of(name).read_bytes()
    assert GENERATOR.main([name]) == 1
    assert "never overwritten" in capsys.readouterr().err
    assert GENERATOR.path_of(name).read_bytes() == before
