"""The optional OPC UA server (:mod:`edge.opcua`): off by default, on this host only when on, read-only, each
target's latest value with a StatusCode that follows the prediction's quality, the device status as nodes, and a
clear error at start when the package is missing or the port is taken.

Real parts: an asyncua client against the real server; ``spectro-sim`` on a real pty -> ``spectro-edge run`` with
``[opcua]`` on -> a real mosquitto, the OPC UA values compared with the MQTT prediction of the same ``seq``.
"""

from __future__ import annotations

import asyncio
import doctest
import logging
import math
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Jetson): the tomli backport, an install requirement there
    import tomli as tomllib

import edge.opcua
from benchmarks.harness import free_port
from edge.config import parse_config
from edge.errors import ConfigError
from edge.opcua import NodeModel, OpcUaServer, status_of_quality, with_opcua
from edge.publish.messages import TargetValue, prediction_message, status_message
from edge.publish.schema import MessageKind
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, edge_config, wait_for
from tests.support.processes import DEVICE, Proc, Subscriber, start_daemon, start_sim, write_config

#: Deadline of one client session (a failure to answer, not a speed goal).
CLIENT_TIMEOUT_S = 20.0
NS = "urn:spectrolite:nir-01"

MODEL = {"model_id": "tablets-api-cnn", "model_version": "2026.11.3"}
#: Payloads as the daemon builds them (the builders of edge.publish.messages: the wire contract the server reads).
PREDICTION: dict[str, Any] = prediction_message(
    device_id="nir-01", time_unix_s=1767225600.25, seq=1042, device_timestamp_us=86400123456,
    device_boot_id=2882400001, **MODEL,
    targets=[TargetValue("api", "%w/w", 2.5, 2.25, 2.75), TargetValue("moisture", "%", 1.5)])
STATUS: dict[str, Any] = status_message(device_id="nir-01", time_unix_s=1767225599.0, state="online",
                                        alerts=["drift:ood_q"], device_boot_id=2882400001, **MODEL)


def _asyncua() -> Any:
    return pytest.importorskip("asyncua", reason="the opcua extra: pip install -e '.[opcua]'")


def _config(tmp: Path, **opcua: object) -> Any:
    return parse_config({"device": {"site": "s", "line": "l", "device_id": "nir-01"}, "serial": {"port_url": "loop://"},
                         "bundle": {"path": "m"}, "opcua": opcua}, base_dir=tmp)


def _client(url: str, session: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``session(client)`` with an asyncua client connected to ``url``; its result."""
    from asyncua import Client

    async def main() -> Any:
        async with Client(url, timeout=CLIENT_TIMEOUT_S) as client:
            return await session(client)

    return asyncio.run(asyncio.wait_for(main(), CLIENT_TIMEOUT_S * 2))


async def _read(client: Any, ns_uri: str, device: str, *paths: str) -> dict[str, Any]:
    """The DataValues of ``<device>.<path>`` (one Read request: the values of one moment)."""
    from asyncua import ua

    ns = await client.get_namespace_index(ns_uri)
    params = ua.ReadParameters()
    for p in paths:
        rv = ua.ReadValueId()
        rv.NodeId = ua.NodeId(f"{device}.{p}", ns)
        rv.AttributeId = ua.AttributeIds.Value
        params.NodesToRead.append(rv)
    return dict(zip(paths, await client.uaclient.read(params)))


def _status(dv: Any) -> str:
    """The name of a DataValue's StatusCode (``Good``, ``Uncertain``, ``BadOutOfService``, ...)."""
    from asyncua import ua

    names = {v: n for n, v in vars(ua.StatusCodes).items() if isinstance(v, int) and not n.startswith("_")}
    return names[dv.StatusCode.value]


# ------------------------------------------------------------------------------------------- the mapping, pure
def test_doctests() -> None:
    result = doctest.testmod(edge.opcua)
    assert result.attempted > 0 and result.failed == 0


def test_the_status_code_follows_the_quality() -> None:
    assert status_of_quality("ok") == "Good"
    assert status_of_quality("out_of_distribution") == status_of_quality("stale_reference") == "Uncertain"
    for bad in ("saturated", "missing_reference", "instrument_fault"):
        assert status_of_quality(bad) == "Bad"


def test_a_prediction_maps_to_target_and_device_nodes() -> None:
    model = NodeModel("nir-01", [("api", "%w/w")])
    assert {v.path: v.status for v in model.initial()}["Targets.api.Value"] == "BadWaitingForInitialData"
    values = {v.path: v for v in model.apply_prediction(PREDICTION)}
    assert (values["Targets.api.Value"].value, values["Targets.api.Value"].status) == (2.5, "Good")
    assert values["Targets.api.Value"].source_time_unix_s == PREDICTION["time_unix_s"]
    assert (values["Targets.api.Lower"].value, values["Targets.api.Upper"].value) == (2.25, 2.75)
    assert values["Targets.moisture.Value"].value == 1.5  # a target the bundle did not announce is added
    assert model.units["moisture"] == "%"
    assert math.isnan(values["Targets.moisture.Lower"].value) and values["Targets.moisture.Lower"].status == "Bad"
    assert values["LastSeq"].value == 1042 and values["DeviceBootId"].value == 2882400001
    assert values["DeviceTimestampUs"].value == 86400123456
    assert (values["ModelId"].value, values["ModelVersion"].value) == ("tablets-api-cnn", "2026.11.3")
    assert values["State"].value == "online"  # a prediction before the first status says the daemon runs

    ood = {v.path: v for v in model.apply_prediction({**PREDICTION, "quality": "out_of_distribution",
                                                      "values": PREDICTION["values"][:1]})}
    assert ood["Targets.api.Value"].status == ood["Targets.api.Upper"].status == "Uncertain"
    assert ood["Targets.api.Quality"].value == "out_of_distribution"
    assert ood["Targets.moisture.Value"].status == "Bad"  # not in this prediction: its last value is no data
    assert ood["Targets.moisture.Value"].value == 1.5


def test_the_status_maps_to_device_nodes_and_offline_puts_values_out_of_service() -> None:
    model = NodeModel("nir-01", [("api", "%w/w")])
    values = {v.path: v for v in model.apply_status(STATUS)}
    assert (values["State"].value, values["Alerts"].value) == ("online", ["drift:ood_q"])
    assert "Targets.api.Value" not in values  # no value yet: nothing to restatus
    model.apply_prediction(PREDICTION)
    rejected = {v.path: v for v in model.apply_status({**STATUS, "alerts": ["missing_reference"]})}
    assert (rejected["Targets.api.Value"].value, rejected["Targets.api.Value"].status) == (2.5, "Bad")
    offline = {v.path: v for v in model.apply_status({"state": "offline", "alerts": []})}
    assert offline["State"].value == "offline"
    assert offline["Targets.api.Value"].status == offline["Targets.api.Lower"].status == "BadOutOfService"


# ------------------------------------------------------------------------------------------- configuration
def test_off_by_default_and_on_this_host_only_when_on(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cfg.opcua.enabled is False and cfg.opcua.host == "127.0.0.1" and cfg.opcua.port == 4840
    link = object()
    assert with_opcua(cfg, link) is link  # type: ignore[arg-type]  # any object stands in for the link: returned as it is
    with pytest.raises(ConfigError, match=r"opcua.port: expected a value <= 65535, got 70000"):
        _config(tmp_path, port=70000)


def test_the_documented_settings_are_valid_configuration(repo_root: Path, tmp_path: Path) -> None:
    text = (repo_root / "docs" / "daemon.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "[opcua]" in b]
    cfg = _config(tmp_path, **tomllib.loads(block)["opcua"])
    assert cfg.opcua.enabled is True and (cfg.opcua.host, cfg.opcua.port) == ("127.0.0.1", 4840)
    for path in ("State", "Alerts", "ModelId", "LastSeq", "DeviceBootId", "Targets/<name>/Value"):  # the node table
        assert f"| `{path}" in text, path


def test_a_missing_package_is_a_clear_error_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncua", None)  # import asyncua now raises ImportError
    with pytest.raises(ConfigError, match=r"opcua.enabled: expected the asyncua package .* got none installed "
                                          r"\(pip install 'spectrolite\[opcua\]'"):
        with_opcua(_config(tmp_path, enabled=True), object())  # type: ignore[arg-type]  # a stand-in link: refused before it is used


def test_the_daemon_refuses_to_start_without_the_package(
    tmp_path: Path, example_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from edge.daemon import run_daemon

    monkeypatch.setitem(sys.modules, "asyncua", None)
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=example_bundle, opcua={"enabled": True})
    with caplog.at_level(logging.ERROR, logger="edge.daemon"):
        assert run_daemon(cfg) == 2
    assert "cannot start: opcua.enabled: expected the asyncua package" in caplog.text


def test_a_taken_port_is_a_clear_error() -> None:
    _asyncua()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = OpcUaServer("nir-01", host="127.0.0.1", port=port, namespace=NS)
        with pytest.raises(OSError, match=rf"opcua: cannot listen on opc.tcp://127.0.0.1:{port}/"):
            server.start()


# ------------------------------------------------------------------------------------------- the server
def test_a_client_reads_the_latest_values_and_cannot_write() -> None:
    _asyncua()
    from asyncua import ua

    server = OpcUaServer("nir-01", host="127.0.0.1", port=free_port(), namespace=NS, targets=[("api", "%w/w")])
    server.start()
    try:
        before = _client(server.url, lambda c: _read(c, NS, "nir-01", "Targets.api.Value", "State"))
        assert {_status(dv) for dv in before.values()} == {"BadWaitingForInitialData"}
        server.post(MessageKind.STATUS, STATUS)
        server.post(MessageKind.PREDICTION, {**PREDICTION, "seq": 1041, "values": [{**PREDICTION["values"][0],
                                                                                   "value": 9.0}]})
        server.post(MessageKind.PREDICTION, PREDICTION)
        server.post(MessageKind.METRICS, {"counters": {}})  # not mapped: ignored
        server.post(MessageKind.PREDICTION, {"values": [{"name": "api"}]})  # malformed: counted, logged, ignored
        paths = ("Targets.api.Value", "Targets.api.Lower", "Targets.api.Upper", "Targets.api.Quality",
                 "Targets.moisture.Value", "Targets.moisture.Upper", "State", "Alerts", "ModelId", "ModelVersion",
                 "LastSeq", "DeviceBootId", "DeviceTimestampUs", "Quality")

        def latest() -> dict[str, Any]:
            return _client(server.url, lambda c: _read(c, NS, "nir-01", *paths))

        wait_for(lambda: latest()["LastSeq"].Value.Value == 1042, "the latest prediction on the server")
        got = latest()
        assert {p: got[p].Value.Value for p in paths if p != "Targets.moisture.Upper"} == {
            "Targets.api.Value": 2.5, "Targets.api.Lower": 2.25, "Targets.api.Upper": 2.75,
            "Targets.api.Quality": "ok", "Targets.moisture.Value": 1.5, "State": "online",
            "Alerts": ["drift:ood_q"], "ModelId": "tablets-api-cnn", "ModelVersion": "2026.11.3", "LastSeq": 1042,
            "DeviceBootId": 2882400001, "DeviceTimestampUs": 86400123456, "Quality": "ok"}
        assert _status(got["Targets.api.Value"]) == "Good"
        assert _status(got["Targets.moisture.Upper"]) == "Bad"  # the bundle gives no interval for it
        assert got["Targets.api.Value"].SourceTimestamp.timestamp() == pytest.approx(PREDICTION["time_unix_s"])
        assert got["Targets.api.Value"].Value.VariantType == ua.VariantType.Double
        assert got["DeviceBootId"].Value.VariantType == ua.VariantType.UInt32
        assert server.stats()["opcua_errors"] == 1

        async def browse_and_write(c: Any) -> tuple[list[str], Any, str]:
            ns = await c.get_namespace_index(NS)
            device = await c.nodes.objects.get_child(f"{ns}:nir-01")
            names = sorted([(await n.read_browse_name()).Name for n in await device.get_children()])
            value = await device.get_child([f"{ns}:Targets", f"{ns}:api", f"{ns}:Value"])
            eu = await (await value.get_child("0:EngineeringUnits")).read_value()
            try:
                await value.write_value(ua.DataValue(ua.Variant(0.0, ua.VariantType.Double)))
                refused = "written"
            except ua.UaStatusCodeError as exc:
                refused = type(exc).__name__
            return names, eu, refused

        names, eu, refused = _client(server.url, browse_and_write)
        assert names == sorted(["Targets", "State", "Alerts", "ModelId", "ModelVersion", "LastSeq", "DeviceBootId",
                                "DeviceTimestampUs", "Quality"])
        assert eu.DisplayName.Text == "%w/w"
        assert refused in ("BadUserAccessDenied", "BadNotWritable"), refused
        assert latest()["Targets.api.Value"].Value.Value == 2.5
    finally:
        server.stop()
    with pytest.raises(OSError):  # the server is gone with stop()
        socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT_S).close()


def test_a_dead_server_thread_is_a_link_failure_for_the_watchdog() -> None:
    _asyncua()
    from edge.opcua import OpcUaLink

    class Link:
        def failure(self) -> None:
            return None

    server = OpcUaServer("nir-01", host="127.0.0.1", port=free_port(), namespace=NS)
    server.start()
    link = OpcUaLink(Link(), server)  # type: ignore[arg-type]  # a minimal Link: OpcUaLink only forwards to it
    try:
        assert link.failure() is None
        loop = server._loop
        assert loop is not None
        loop.call_soon_threadsafe(loop.stop)  # the server's loop ends under it, as on a crash
        wait_for(lambda: link.failure() is not None, "the dead server thread to be reported")
        assert link.failure() == "the OPC UA server thread ended"
    finally:
        server.stop()
    assert server.failure() is None  # stopped on purpose: not a failure


# ------------------------------------------------------------------------------------------- a real daemon
@pytest.mark.slow
def test_a_real_daemon_serves_each_prediction_to_an_opcua_client(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    _asyncua()
    sim, path = start_sim(tmp_path, count=0, rate_hz=20.0)
    procs.append(sim)
    port = free_port()
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    cfg.write_text(cfg.read_text(encoding="utf-8") + f"[opcua]\nenabled = true\nport = {port}\n", encoding="utf-8")
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 10 or not daemon.alive(), "predictions over MQTT")
    assert daemon.alive(), daemon.text()
    url = f"opc.tcp://127.0.0.1:{port}/"
    device, ns_uri = DEVICE["device_id"], f"urn:spectrolite:{DEVICE['device_id']}"

    os.kill(sim.popen.pid, signal.SIGSTOP)  # pause the device: the last prediction stays the last
    try:
        seq = -1

        def settled() -> bool:
            nonlocal seq
            last = _client(url, lambda c: _read(c, ns_uri, device, "LastSeq"))["LastSeq"].Value.Value
            settled_now = last == seq and last == subscriber.max_seq()
            seq = last
            return bool(settled_now)

        wait_for(settled, "the same last seq over OPC UA and MQTT twice in a row")
        published = subscriber.predictions[seq]

        async def session(c: Any) -> tuple[list[str], dict[str, Any]]:
            ns = await c.get_namespace_index(ns_uri)
            targets = await c.nodes.objects.get_child([f"{ns}:{device}", f"{ns}:Targets"])
            names = sorted([(await t.read_browse_name()).Name for t in await targets.get_children()])
            paths = [f"Targets.{n}.{v}" for n in names for v in ("Value", "Lower", "Upper", "Quality")]
            return names, await _read(c, ns_uri, device, "State", "LastSeq", "ModelId", "Quality", *paths)

        names, got = _client(url, session)
    finally:
        os.kill(sim.popen.pid, signal.SIGCONT)
    assert names == sorted(v["name"] for v in published["values"])
    for v in published["values"]:
        assert got[f"Targets.{v['name']}.Value"].Value.Value == v["value"], v["name"]
        for key in ("lower", "upper"):
            if v[key] is not None:
                assert got[f"Targets.{v['name']}.{key.capitalize()}"].Value.Value == v[key]
        assert got[f"Targets.{v['name']}.Quality"].Value.Value == published["quality"]
        assert _status(got[f"Targets.{v['name']}.Value"]) == status_of_quality(published["quality"])
        assert got[f"Targets.{v['name']}.Value"].SourceTimestamp.timestamp() == pytest.approx(
            published["time_unix_s"], abs=1e-3)
    assert got["State"].Value.Value == "online"
    assert got["ModelId"].Value.Value == published["model"]["id"]
    assert got["Quality"].Value.Value == published["quality"]

    # bound to 127.0.0.1 only (the default): another loopback address of this host is refused
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=CLIENT_TIMEOUT_S).close()
    assert daemon.end() == 0, daemon.text()
    with pytest.raises(OSError):  # the server went with the daemon
        socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S).close()
