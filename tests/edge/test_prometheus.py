"""The optional Prometheus endpoint (:mod:`edge.prometheus`): off by default, the same counters and gauges as the
MQTT ``.../metrics`` payload when on, listening on this host only by default, and a clear error at start when the
package is missing or the port is taken.

Real parts: ``spectro-sim`` on a real pty -> ``spectro-edge run`` -> a real mosquitto, and an HTTP scrape of the
daemon's endpoint parsed with ``prometheus_client.parser``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Jetson): the tomli backport, an install requirement there
    import tomli as tomllib

from benchmarks.harness import free_port
from edge.config import parse_config
from edge.errors import ConfigError
from edge.prometheus import PrometheusExporter, exporter_from_config, families, metric_name
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, edge_config, wait_for
from tests.support.golden_messages import golden_payload
from tests.support.processes import Proc, Subscriber, start_daemon, start_sim, write_config

#: Deadline of one HTTP scrape (a failure to answer, not a speed goal).
SCRAPE_TIMEOUT_S = 10.0


def _prometheus_client() -> ModuleType:
    return pytest.importorskip("prometheus_client", reason="the prometheus extra: pip install -e '.[prometheus]'")


def _config(tmp: Path, **metrics: object) -> object:
    return parse_config({"device": {"site": "s", "line": "l", "device_id": "nir-01"}, "serial": {"port_url": "loop://"},
                         "bundle": {"path": "m"}, "metrics": metrics}, base_dir=tmp)


def test_off_by_default_and_on_this_host_only_when_on(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cfg.metrics.prometheus_port == 0 and cfg.metrics.prometheus_bind == "127.0.0.1"
    assert exporter_from_config(cfg, lambda: None) is None  # type: ignore[arg-type]  # a stand-in metrics source: never called
    with pytest.raises(ConfigError, match=r"metrics.prometheus_port: expected a value <= 65535, got 70000"):
        _config(tmp_path, prometheus_port=70000)


def test_families_name_every_counter_and_gauge_of_the_payload() -> None:
    payload = json.loads(golden_payload("metrics"))
    fams = {f.name: f for f in families(payload)}
    for name, value in payload["counters"].items():
        assert fams[metric_name(name)].kind == "counter"
        assert fams[metric_name(name)].samples == [({"device_id": "nir-01"}, float(value))]
    for name, value in payload["gauges"].items():
        assert fams[metric_name(name)].kind == "gauge"
        assert fams[metric_name(name)].samples == [({"device_id": "nir-01"}, float(value))]
    assert fams["spectrolite_latency_ms"].samples == [({"device_id": "nir-01", "stat": "p50"}, 3.1)]
    assert fams["spectrolite_drift_active"].samples == [({"device_id": "nir-01", "detector": "ood_q"}, 1.0)]
    assert metric_name("drift:ood_q.x-y") == "spectrolite_drift_ood_q_x_y"


def test_a_missing_package_is_a_clear_error_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import prometheus_client now raises ImportError
    cfg = _config(tmp_path, prometheus_port=9464)
    with pytest.raises(ConfigError, match=r"metrics.prometheus_port: expected the prometheus-client package .*"
                                          r"got none installed \(pip install 'spectrolite\[prometheus\]'"):
        exporter_from_config(cfg, lambda: None)  # type: ignore[arg-type]  # a stand-in metrics source: never called


def test_the_daemon_refuses_to_start_without_the_package(
    tmp_path: Path, example_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from edge.daemon import run_daemon

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=example_bundle, metrics={"prometheus_port": 9464})
    with caplog.at_level(logging.ERROR, logger="edge.daemon"):
        assert run_daemon(cfg) == 2
    assert "cannot start: metrics.prometheus_port: expected the prometheus-client package" in caplog.text


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    _prometheus_client()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = PrometheusExporter(lambda: None, bind="127.0.0.1", port=port)
        with pytest.raises(OSError, match=rf"metrics.prometheus_port: cannot listen on http://127.0.0.1:{port}/"):
            exporter.start()


def test_a_failing_source_is_counted_and_the_endpoint_keeps_answering() -> None:
    _prometheus_client()
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    exporter = PrometheusExporter(broken, bind="127.0.0.1", port=free_port())  # type: ignore[arg-type]  # a metrics source that raises: the failure under test
    exporter.start()
    try:
        for expected in (1.0, 2.0):
            text = _scrape(exporter.url)
            assert f"spectrolite_exporter_errors_total {expected}" in text
    finally:
        exporter.stop()
    assert len(calls) == 2


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as resp:
        assert resp.status == 200
        return str(resp.read().decode("utf-8"))


@pytest.mark.slow
def test_a_real_daemon_serves_the_metrics_payload_to_prometheus(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    prometheus_client = _prometheus_client()
    from prometheus_client.parser import text_string_to_metric_families

    sim, path = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    port = free_port()
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    cfg.write_text(cfg.read_text(encoding="utf-8") + f"prometheus_port = {port}\n", encoding="utf-8")  # [metrics]
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: len(subscriber.kind("/metrics")) >= 1 and subscriber.count() >= 20 or not daemon.alive(),
             "predictions and a metrics message")
    assert daemon.alive(), daemon.text()
    wait_for(lambda: any(m["counters"].get("frames_in", 0) > 0 for m in subscriber.kind("/metrics")),
             "a metrics message counting frames")
    published = subscriber.kind("/metrics")[-1]

    url = f"http://127.0.0.1:{port}/metrics"
    scraped = {f.name: f for f in text_string_to_metric_families(_scrape(url))}
    assert prometheus_client.__name__ == "prometheus_client"
    for name, value in published["counters"].items():
        fam = scraped.get(metric_name(name))
        assert fam is not None, f"expected {metric_name(name)}_total in the scrape, got {sorted(scraped)}"
        assert fam.type == "counter"
        (sample,) = fam.samples
        assert sample.name == metric_name(name) + "_total"
        assert sample.labels == {"device_id": "sim-01"}
        assert sample.value >= value  # scraped after the message was published: counters only grow
    for name in published["gauges"]:
        assert scraped[metric_name(name)].type == "gauge", name
    frames = scraped[metric_name("frames_in")].samples[0].value
    wait_for(lambda: next(s.value for f in text_string_to_metric_families(_scrape(url)) if f.name ==
                          metric_name("frames_in") for s in f.samples) > frames, "the counters to move between scrapes")
    assert {s.labels["stat"] for s in scraped["spectrolite_latency_ms"].samples} >= {"p50", "p99", "count"}

    # bound to 127.0.0.1 only (the default): another loopback address of this host is refused
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=SCRAPE_TIMEOUT_S).close()
    assert daemon.end() == 0
    with pytest.raises(OSError):  # the endpoint went with the daemon
        socket.create_connection(("127.0.0.1", port), timeout=SCRAPE_TIMEOUT_S).close()


def test_the_documented_settings_are_valid_configuration(repo_root: Path, tmp_path: Path) -> None:
    text = (repo_root / "docs" / "mqtt.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "prometheus_port" in b]
    cfg = _config(tmp_path, **tomllib.loads(block)["metrics"])
    assert cfg.metrics.prometheus_port == 9464 and cfg.metrics.prometheus_bind == "127.0.0.1"
