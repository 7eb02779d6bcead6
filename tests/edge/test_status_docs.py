"""docs/mqtt.md says what the daemon sends (issue 13): the documented fields of every payload are exactly the fields
of its schema, and every counter and gauge a running daemon publishes matches a documented name.

The running daemon is real: the simulator on a real pty, a real bundle run by LiteRT, the real MQTT link with its
outbox and a real mosquitto, so the ``mqtt_*`` and ``outbox_*`` gauges are the ones production sends.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.bundle import load_bundle
from edge.daemon import Daemon, MqttLink
from edge.publish.schema import SCHEMAS
from firmware_bridge.transport import SerialTransport
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, edge_config, start_sim_thread, wait_for

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "mqtt.md"
COMMON = {"schema_version", "kind", "device_id", "time_unix_s"}
#: ``<word>`` in a documented name stands for one name part (letters, digits, ``_`` and the ``:`` of
#: ``prediction:<target>`` detectors).
PLACEHOLDER = r"[A-Za-z0-9_:]+"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    rest = text[start + len(heading):]
    end = re.search(r"\n##+ ", rest)
    return rest[: end.start()] if end else rest


def _tables(section: str) -> list[list[list[str]]]:
    """The Markdown tables of a section: rows of cells (header and separator rows dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            current.append(cells)
        elif current:
            tables.append([row for row in current[2:]])
            current = []
    return tables


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _documented_fields(text: str, heading: str) -> set[str]:
    first = _tables(_section(text, heading))[0]
    return {name for row in first for name in _names(row[0])}


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_documented_payload_fields_are_the_schema_fields(kind: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    heading = "### `.../cmd/<name>/response`" if kind == "command_response" else f"### `.../{kind}`"
    documented = _documented_fields(text, heading)
    schema = set(SCHEMAS[kind]["properties"]) - COMMON
    assert documented == schema, f"{kind}: documented only {documented - schema}, undocumented {schema - documented}"
    assert _documented_fields(text, "## Payloads") == COMMON
    assert SCHEMAS[kind]["additionalProperties"] is False  # the producer sends nothing the doc does not list


def test_documented_alerts_are_the_known_alerts() -> None:
    from edge.publish.messages import ALERTS

    status = _tables(_section(DOC.read_text(encoding="utf-8"), "### `.../status`"))
    alerts = {name for row in status[1] for name in _names(row[0])}
    assert alerts == set(ALERTS)


def _patterns(rows: list[list[str]]) -> list[re.Pattern[str]]:
    out = []
    for row in rows:
        for name in _names(row[0]):
            parts = re.split(r"(<[^>]+>)", name)
            out.append(re.compile("".join(PLACEHOLDER if p.startswith("<") else re.escape(p) for p in parts) + "$"))
    return out


def test_every_counter_and_gauge_a_running_daemon_publishes_is_documented(
        tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker) -> None:
    text = DOC.read_text(encoding="utf-8")
    tables = _tables(_section(text, "### `.../metrics`"))
    fields, counters_doc, gauges_doc = tables[0], tables[1], tables[2]
    counter_patterns, gauge_patterns = _patterns(counters_doc), _patterns(gauges_doc)
    latency_doc = {n for row in fields if row[0] == "`latency_ms`" for n in _names(row[3] if len(row) > 3 else row[2])}

    sim = start_sim_thread(tmp_path, count=0, rate_hz=100.0, drift_at=60)
    cfg = edge_config(tmp_path, port_url=sim.address, bundle_path=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    link = MqttLink(cfg, lambda name, payload: None)
    daemon = Daemon(cfg, load_bundle(demo_bundles.v1), SerialTransport(sim.address, read_timeout_s=0.05), link)
    daemon.start()
    try:
        wait_for(lambda: daemon.counters.get("predictions") >= 150 and daemon.counters.get("drift_raised") >= 1,
                 "predictions and a drift alert")
        metrics = daemon.metrics_payload(1.0)
    finally:
        daemon.stop()
        sim.stop.set()
        sim.thread.join(timeout=10)
    undocumented = [n for n in metrics["counters"] if not any(p.match(n) for p in counter_patterns)]
    assert undocumented == [], f"counters missing from docs/mqtt.md: {undocumented}"
    undocumented = [n for n in metrics["gauges"] if not any(p.match(n) for p in gauge_patterns)]
    assert undocumented == [], f"gauges missing from docs/mqtt.md: {undocumented}"
    assert set(metrics["latency_ms"]) <= latency_doc, set(metrics["latency_ms"]) - latency_doc
    assert any(n.startswith("mqtt_") for n in metrics["gauges"]) and any(n.startswith("drift_") for n in
                                                                          metrics["gauges"])
    assert metrics["drift_active"] == [a[len("drift:"):] for a in daemon.alerts.names() if a.startswith("drift:")]


def test_every_counter_name_in_the_edge_sources_is_documented() -> None:
    """Counters appear in ``metrics`` only once they move, so a running daemon cannot show the rare ones (a refused
    STATUS, a rate-limited reload): every literal ``counters.incr("...")`` name in ``edge/`` must be documented."""
    counter_patterns = _patterns(_tables(_section(DOC.read_text(encoding="utf-8"), "### `.../metrics`"))[1])
    names = set()
    for path in (REPO / "edge").rglob("*.py"):
        names |= set(re.findall(r"\.incr\(\s*\"([a-z0-9_]+)\"", path.read_text(encoding="utf-8")))
    assert len(names) > 20  # the scan finds the daemon's counters
    undocumented = sorted(n for n in names if not any(p.match(n) for p in counter_patterns))
    assert undocumented == [], f"counters missing from docs/mqtt.md: {undocumented}"


def test_every_documented_payload_example_has_only_schema_fields() -> None:
    import json

    from edge.publish.schema import validate

    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    examples = [json.loads(b) for b in blocks]
    payloads = [e for e in examples if "kind" in e]  # command bodies and envelopes have no kind
    for payload in payloads:
        validate(payload, strict=True)
    assert {p["kind"] for p in payloads} == set(SCHEMAS)
