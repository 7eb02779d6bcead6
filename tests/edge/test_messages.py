"""Tests of edge.publish (topics, schema, messages): topic layout, payload builders, schema validation and the
JSON encoding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.publish.messages import (
    PRIORITY_OF_KIND,
    OodStats,
    Priority,
    TargetValue,
    command_response_message,
    control_message,
    drift_message,
    metrics_message,
    prediction_message,
    status_message,
)
from edge.publish.schema import SCHEMA_VERSION, SCHEMAS, MessageError, MessageKind, Quality, decode, encode, validate
from edge.publish.topics import Topics, topic

TOPICS = Topics(prefix="spectrolite", site="plant-a", line="line-3", device_id="nir-01")


def _prediction(**overrides: object) -> dict:
    kwargs: dict = dict(
        device_id="nir-01", seq=42, device_timestamp_us=1_234_567, model_id="tablets-pls", model_version="3",
        targets=[TargetValue("api", "%w/w", 12.5, 12.1, 12.9)],
        quality_flags=[Quality.STALE_REFERENCE, Quality.OUT_OF_DISTRIBUTION],
        ood=OodStats(t2=3.0, q=0.1, t2_limit=9.5, q_limit=0.4), interval_coverage=0.9, latency_ms=2.5,
        time_unix_s=1_700_000_000.0)
    kwargs.update(overrides)
    return prediction_message(**kwargs)


def test_topic_layout() -> None:
    base = "spectrolite/plant-a/line-3/nir-01"
    assert TOPICS.prediction == f"{base}/prediction"
    assert TOPICS.drift == f"{base}/drift"
    assert TOPICS.status == f"{base}/status"
    assert TOPICS.metrics == f"{base}/metrics"
    assert TOPICS.command("reload_bundle") == f"{base}/cmd/reload_bundle"
    assert TOPICS.command_response("reload_bundle") == f"{base}/cmd/reload_bundle/response"
    assert TOPICS.command_filter == f"{base}/cmd/+"
    assert TOPICS.parse_command(f"{base}/cmd/capture_dark") == "capture_dark"
    assert TOPICS.parse_command(f"{base}/cmd/capture_dark/response") is None
    assert TOPICS.parse_command("spectrolite/plant-a/line-3/other/cmd/capture_dark") is None
    assert TOPICS.for_kind(MessageKind.COMMAND_RESPONSE, "capture_dark").endswith("cmd/capture_dark/response")
    assert topic("a/b", "s", "l", "d", MessageKind.METRICS) == "a/b/s/l/d/metrics"


@pytest.mark.parametrize("bad", ["plant/a", "+", "#", "", "a b", "x" * 65])
def test_topic_levels_refuse_wildcards_and_separators(bad: str) -> None:
    with pytest.raises(MessageError):
        Topics(prefix="spectrolite", site=bad, line="l", device_id="d")


def test_topics_from_config(tmp_path: Path) -> None:
    cfg = parse_config({"device": {"site": "s1", "line": "l1", "device_id": "d1"}, "serial": {"port_url": "loop://"},
                        "bundle": {"path": "m"}, "mqtt": {"topic_prefix": "acme/nir"}}, base_dir=tmp_path)
    assert Topics.from_config(cfg).prediction == "acme/nir/s1/l1/d1/prediction"


def test_prediction_payload_fields_and_quality_order() -> None:
    msg = _prediction()
    assert msg["schema_version"] == SCHEMA_VERSION
    assert msg["kind"] == "prediction"
    assert msg["seq"] == 42 and msg["device_timestamp_us"] == 1_234_567
    assert msg["model"] == {"id": "tablets-pls", "version": "3"}
    assert msg["values"] == [{"name": "api", "unit": "%w/w", "value": 12.5, "lower": 12.1, "upper": 12.9}]
    # the most severe flag wins; flags are listed most severe first
    assert msg["quality"] == "out_of_distribution"
    assert msg["quality_flags"] == ["out_of_distribution", "stale_reference"]
    assert _prediction(quality_flags=[])["quality"] == "ok"
    assert _prediction(quality_flags=["ok"])["quality_flags"] == []


def test_encode_decode_roundtrip_is_compact_json() -> None:
    msg = _prediction()
    raw = encode(msg)
    assert b" " not in raw.replace(b"%w/w", b"")
    assert decode(raw) == msg
    assert decode(raw, MessageKind.PREDICTION) == msg


@pytest.mark.parametrize("bad", [math.nan, math.inf, "12"])
def test_non_finite_or_non_numeric_values_are_refused(bad: object) -> None:
    with pytest.raises(MessageError, match="api"):
        _prediction(targets=[TargetValue("api", "%", bad)])  # type: ignore[arg-type]  # deliberately the wrong type


def test_unknown_quality_flag_is_refused() -> None:
    with pytest.raises(ValueError):
        _prediction(quality_flags=["fine"])


def _challenger_prediction() -> dict[str, object]:
    from edge.inference import Prediction
    from edge.publish.messages import challenger_prediction_message_of

    pred = Prediction(seq=9, timestamp_us=5, names=("api",), units=("%",), values=(12.5,), lower=None, upper=None,
                      interval_coverage=None, ood=None, flags=(), reasons=(), compute_us=3.04, model_id="c",
                      model_version="2")
    return challenger_prediction_message_of(pred, device_id="nir-01", latency_ms=2.0, serving_model_id="m",
                                            serving_model_version="1", time_unix_s=1.0)


def test_a_challenger_prediction_has_the_prediction_fields_and_the_serving_model() -> None:
    """Shadow mode: the challenger's payload carries every field of a prediction (no test-bench reference) plus the
    model it shadows, under its own kind; the prediction's own schema is unchanged."""
    msg = _challenger_prediction()
    assert msg["kind"] == "challenger_prediction" and msg["model"] == {"id": "c", "version": "2"}
    assert msg["serving_model"] == {"id": "m", "version": "1"}
    plain = {k for k in SCHEMAS["prediction"]["properties"] if k != "reference"}
    assert set(SCHEMAS["challenger_prediction"]["properties"]) == plain | {"serving_model"}
    assert "serving_model" not in SCHEMAS["prediction"]["properties"]
    with pytest.raises(MessageError, match="serving_model"):
        validate({k: v for k, v in msg.items() if k != "serving_model"})


def _line_prediction() -> dict[str, object]:
    from edge.publish.line_messages import LineTarget, line_prediction_message

    return line_prediction_message(device_id="hsi-01", seq=9, spectra=2, device_timestamp_us=5, model_id="m",
                                   model_version="1", targets=[LineTarget("api", "%", [12.5, None])],
                                   quality_flags=[0, None], rejected=[(1, "bad_input")], time_unix_s=1.0)


def test_every_builder_output_validates_and_examples() -> None:
    msgs = [
        _prediction(),
        drift_message(device_id="nir-01", event="raised", detector="t2_ewma", statistic=1.3, threshold=1.0, seq=9,
                      model_id="m", model_version="1", active_alerts=["t2_ewma"], time_unix_s=1.0),
        status_message(device_id="nir-01", state="online", model_id="m", model_version="1", runtime="ai_edge_litert",
                       alerts=["outbox_full"], time_unix_s=1.0),
        metrics_message(device_id="nir-01", period_s=30, counters={"frames": 10}, gauges={"outbox_pending": 3},
                        latency_ms={"p50": 1.0, "p99": 4.0}, time_unix_s=1.0),
        command_response_message(device_id="nir-01", command="capture_dark", request_id="r1", ok=True,
                                 result={"frames": 16}, time_unix_s=1.0),
        command_response_message(device_id="nir-01", command="reload_bundle", request_id=None, ok=False,
                                 error="bundle: signature does not verify", time_unix_s=1.0),
        control_message(device_id="nir-01", standard="check-A", target="api", unit="%", measured=12.5, known=12.0,
                        sigma=0.2, bias=0.5, bias_sigmas=2.5, verdict="warning", rule="shewhart_warning",
                        warning_sigmas=2.0, action_sigmas=3.0, seq=9, time_unix_s=1.0),
        _challenger_prediction(),
        _line_prediction(),
    ]
    for msg in msgs:
        validate(msg)
        assert decode(encode(msg)) == msg
    assert {m["kind"] for m in msgs} == set(SCHEMAS)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda m: m.pop("seq"), "prediction.seq: required field missing"),
        (lambda m: m.update(seq="1"), "prediction.seq: expected integer, got str"),
        (lambda m: m.update(seq=True), "prediction.seq: expected integer, got bool"),
        (lambda m: m.update(seq=-1), "prediction.seq: expected >= 0"),
        (lambda m: m.update(quality="great"), "prediction.quality: expected one of"),
        (lambda m: m["values"][0].pop("unit"), "prediction.values[0].unit: required field missing"),
        (lambda m: m.update(schema_version=SCHEMA_VERSION + 1), "expected <= 1"),
        (lambda m: m.update(kind="nope"), "kind: expected one of"),
    ],
)
def test_validation_names_the_offending_field(mutate, fragment: str) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    msg = json.loads(encode(_prediction()))
    mutate(msg)
    with pytest.raises(MessageError) as err:
        validate(msg)
    assert fragment in str(err.value)


def test_unknown_fields_are_allowed_for_forward_compatibility() -> None:
    msg = _prediction()
    msg["extra_from_a_newer_producer"] = {"x": 1}
    validate(msg)


@pytest.mark.parametrize("raw", [b"\xff", b"[1]", b"{", b'{"kind": "status", "x": NaN}'])
def test_decode_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(MessageError):
        decode(raw)


def test_decode_refuses_a_duplicate_key_but_tolerates_an_unknown_field() -> None:
    """Parse is strict (one reading of the bytes), schema is tolerant (a newer producer may add fields)."""
    raw = encode(_prediction())
    assert decode(raw[:-1] + b',"from_a_newer_producer":1}')["from_a_newer_producer"] == 1
    with pytest.raises(MessageError, match="expected unique keys in a JSON object, got 'seq' twice"):
        decode(raw[:-1] + b',"seq":2}')


def test_command_response_consistency() -> None:
    with pytest.raises(MessageError):
        command_response_message(device_id="d", command="c", request_id=None, ok=False)
    with pytest.raises(MessageError):
        command_response_message(device_id="d", command="c", request_id=None, ok=True, error="x")


def test_priorities_put_metrics_lowest_and_alerts_highest() -> None:
    assert PRIORITY_OF_KIND[MessageKind.METRICS] is Priority.LOW
    assert PRIORITY_OF_KIND[MessageKind.PREDICTION] is Priority.NORMAL
    for kind in (MessageKind.DRIFT, MessageKind.STATUS, MessageKind.COMMAND_RESPONSE):
        assert PRIORITY_OF_KIND[kind] is Priority.HIGH
    assert set(PRIORITY_OF_KIND) == set(MessageKind)


def test_every_json_example_in_the_mqtt_doc_matches_its_schema(repo_root: Path) -> None:
    import re

    text = (repo_root / "docs" / "mqtt.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    kinds = []
    for block in blocks:
        obj = json.loads(block)
        if "kind" in obj:  # payloads the device publishes (command bodies and envelopes have none)
            validate(obj)
            kinds.append(obj["kind"])
    assert set(kinds) == set(SCHEMAS)


def test_boot_id_is_a_uint32_or_null() -> None:
    assert _prediction(device_boot_id=0)["device_boot_id"] is None  # 0 on the wire: the device sent none
    assert _prediction(device_boot_id=None)["device_boot_id"] is None
    assert _prediction(device_boot_id=0xFFFFFFFF)["device_boot_id"] == 0xFFFFFFFF
    for bad in (-1, 1 << 32, True, "7"):
        with pytest.raises(MessageError, match="device_boot_id"):
            _prediction(device_boot_id=bad)


def test_the_publish_modules_doctests_hold() -> None:
    import doctest

    import edge.publish.client
    import edge.publish.line_messages
    import edge.publish.messages
    import edge.publish.topics

    for module in (edge.publish.messages, edge.publish.topics, edge.publish.client, edge.publish.line_messages):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_a_prediction_becomes_its_payload_without_knowing_the_wire_format() -> None:
    from edge.inference import Prediction
    from edge.publish.messages import prediction_message_of

    pred = Prediction(
        seq=42, timestamp_us=1_234_567, names=("api",), units=("%w/w",), values=(12.5,), lower=(12.1,),
        upper=(12.9,), interval_coverage=0.9, ood=OodStats(t2=3.0, q=0.1, t2_limit=9.5, q_limit=0.4),
        flags=(Quality.STALE_REFERENCE, Quality.OUT_OF_DISTRIBUTION), reasons=("white 4000 s old", "T2"),
        compute_us=812.46, model_id="tablets-pls", model_version="3")
    msg = prediction_message_of(pred, device_id="nir-01", latency_ms=-0.5, reference=[12.4], device_boot_id=7,
                                time_unix_s=1_700_000_000.0)
    assert msg == _prediction(latency_ms=0.0, quality_reasons=["white 4000 s old", "T2"], compute_us=812.5,
                              reference=[12.4], device_boot_id=7)
    assert not hasattr(pred, "to_message")  # a domain value: the builder owns the wire format
