"""The compiled payload checkers (edge.publish.checkers) decide exactly as the reference checker of
edge.publish.schema, on every golden payload and on random mutations of them; and an invalid message is still
refused on the daemon's production path (Outbound -> MqttLink -> MqttPublisher -> the outbox)."""

from __future__ import annotations

import copy
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.daemon.outbound import Outbound
from edge.metrics import Counters
from edge.publish import schema
from edge.publish.messages import LinePosition, OodStats, Priority, TargetValue, prediction_message
from edge.publish.schema import SCHEMAS, MessageError, MessageKind, Quality, encode, validate
from tests.support.daemon import edge_config
from tests.support.golden_messages import golden_names, golden_payload


class _Weird:
    """Neither a JSON value nor equal to one."""


#: Values a mutation puts somewhere in a payload: each JSON type, the Python values JSON has no type for, and the
#: edges the schemas check (non-finite numbers, bounds, lengths, bool as an integer, non-string keys).
_VALUES = st.sampled_from([
    math.nan, math.inf, -math.inf, -1, -0.5, 0, 1, 2.5, 2**32, 2**40, True, False, None, "", "x", "x" * 65,
    "x" * 300, "x" * 3000, "ok", "raised", "online", "counts", [], [1.5], ["a"], [None], ["saturated"], (1, 2), {},
    {"x": 1}, {1: 2}, {"id": "m", "version": "1"}, np.float64(2.0), np.float64(math.nan), np.int64(3),
    np.float32(1.5), _Weird(), Quality.SATURATED, Priority.HIGH,  # a str and an int subclass
])


def _containers(node: Any, out: list[Any]) -> list[Any]:
    """Every dict and list inside ``node`` (itself included)."""
    if isinstance(node, (dict, list)):
        out.append(node)
        for child in (node.values() if isinstance(node, dict) else node):
            _containers(child, out)
    return out


def _mutate(message: dict[str, Any], data: st.DataObject) -> None:
    """One to three changes at random places: a value replaced, a field removed, an unknown field added."""
    def value() -> Any:
        return copy.deepcopy(data.draw(_VALUES))  # a fresh one: a later change may go inside it

    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(_containers(message, [])))
        if isinstance(where, list):
            if where:
                where[data.draw(st.integers(0, len(where) - 1))] = value()
            else:
                where.append(value())
            continue
        action = data.draw(st.sampled_from(["set", "set", "set", "drop", "add"]))
        keys = sorted(where, key=str)
        if action == "add" or not keys:
            where[data.draw(st.sampled_from(["undocumented", "seq", "model", 7]))] = value()
        elif action == "drop":
            del where[data.draw(st.sampled_from(keys))]
        else:
            where[data.draw(st.sampled_from(keys))] = value()


def _reference_accepts(message: Any, kind: str, strict: bool) -> bool:
    check = (schema._STRICT_CHECKERS if strict else schema._CHECKERS)[kind]
    try:
        check(message)
    except schema._Invalid:
        return False
    return True


@pytest.mark.parametrize("name", golden_names())
def test_compiled_checkers_accept_every_golden(name: str) -> None:
    message = json.loads(golden_payload(name))
    for strict in (True, False):
        assert (schema._FAST_STRICT if strict else schema._FAST)[message["kind"]](message)


@settings(max_examples=1500, deadline=None)
@given(name=st.sampled_from(golden_names()), data=st.data())
def test_compiled_checkers_decide_as_the_reference_checker(name: str, data: st.DataObject) -> None:
    message = json.loads(golden_payload(name))
    kind = message["kind"]
    _mutate(message, data)
    for strict in (True, False):
        fast = (schema._FAST_STRICT if strict else schema._FAST)[kind](message)
        assert fast == _reference_accepts(message, kind, strict), (strict, message)


@pytest.mark.parametrize(("change", "error"), [
    (lambda m: m["values"][0].__setitem__("value", math.nan), r"prediction\.values\[0\]\.value: expected a finite"),
    (lambda m: m.__setitem__("seq", "42"), r"prediction\.seq: expected integer, got str"),
    (lambda m: m.__setitem__("seq", True), r"prediction\.seq: expected integer, got bool"),
    (lambda m: m["ood"].__setitem__("surprise", 1.0), r"prediction\.ood\.surprise: unknown field"),
    (lambda m: m.pop("quality"), r"prediction\.quality: required field missing"),
    (lambda m: m["line"].__setitem__("index", 1024), r"prediction\.line\.index: expected <= 1023, got 1024"),
])
def test_a_refused_message_names_its_field_as_before(change: Any, error: str) -> None:
    message = json.loads(golden_payload("prediction_line"))
    change(message)
    with pytest.raises(MessageError, match=error):
        encode(message)


def test_every_schema_compiles_to_both_checkers() -> None:
    assert set(schema._FAST) == set(schema._FAST_STRICT) == set(SCHEMAS)


# ------------------------------------------------------------------------------------------------ production path
def _valid(seq: int) -> dict[str, Any]:
    return prediction_message(
        device_id="sim-01", seq=seq, device_timestamp_us=1000 * seq, model_id="m", model_version="1",
        targets=[TargetValue("api", "%w/w", 12.5, 12.0, 13.0)], ood=OodStats(1.0, 0.01, 9.0, 0.05),
        interval_coverage=0.9, latency_ms=1.0, device_boot_id=7, validate_now=False,
        line=LinePosition(line_seq=seq, index=0, spectra=4), time_unix_s=1_700_000_000.0)


def test_invalid_messages_are_refused_on_the_production_path(tmp_path: Path, example_bundle: Path) -> None:
    """The inference thread's batch goes Outbound -> MqttLink.publish_many -> MqttPublisher.publish_messages ->
    encode (validated strictly) -> one outbox transaction: the invalid ones are counted and never stored."""
    from edge.daemon import MqttLink

    config = edge_config(tmp_path, port_url="loop://", bundle_path=example_bundle, mqtt_port=1)  # never started
    link = MqttLink(config, lambda name, payload: None)
    counters = Counters()
    outbound = Outbound(link, counters, lambda state: {}, lambda message: None, messages_max=16)
    outbound.inference_ident = threading.get_ident()
    nan, wrong_type, unknown, bool_seq = _valid(2), _valid(3), _valid(4), _valid(5)
    nan["values"][0]["lower"] = math.nan
    wrong_type["ood"]["t2"] = "1.0"
    unknown["debug"] = {"why": "a field the schema does not list"}
    bool_seq["seq"] = True
    try:
        outbound.begin_batch()
        for message in (_valid(1), nan, wrong_type, unknown, bool_seq, _valid(6)):
            outbound.emit(MessageKind.PREDICTION, copy.deepcopy(message))
        outbound.flush_batch()
        stored = [json.loads(m.payload) for m in link.outbox.pending(limit=100)]
    finally:
        link.stop(0.0)
    assert [m["seq"] for m in stored] == [1, 6]
    assert stored == [_valid(1), _valid(6)]
    assert counters.get("messages_failed") == 4 and counters.get("messages_prediction") == 2
    for bad in (nan, wrong_type, unknown, bool_seq):
        with pytest.raises(MessageError):
            validate(bad, strict=True)


def test_a_circular_payload_is_refused_as_json_dumps_refuses_it() -> None:
    """A free-form object (a promotion rule) is not walked by the schema; the encoder still refuses a cycle."""
    message = json.loads(golden_payload("status_online_challenger"))
    rule: dict[str, Any] = {"metric": "rmsep"}
    rule["again"] = rule
    message["challenger"]["rule"] = rule
    validate(message, strict=True)  # the schema says only "an object"
    with pytest.raises(MessageError, match="Circular reference"):
        encode(message)


def test_the_checkers_doctest_holds() -> None:
    import doctest

    import edge.publish.checkers

    result = doctest.testmod(edge.publish.checkers)
    assert result.attempted > 0 and result.failed == 0
