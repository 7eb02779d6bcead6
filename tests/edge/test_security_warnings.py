"""Insecure settings are named (#18, finding 2): a WARNING per setting at start and the ``security`` list of the
retained status, from the real daemon serving the simulator; a hardened configuration names none."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from edge.bundle import load_bundle
from edge.config import SECURITY_WARNINGS, security_warnings
from edge.daemon import Daemon
from firmware_bridge.transport import SerialTransport
from tests.support.daemon import RecordingLink, edge_config, start_sim_thread, wait_for


def test_a_hardened_configuration_names_no_insecure_setting(tmp_path: Path, example_bundle: Path) -> None:
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=example_bundle)
    key = tmp_path / "bundle.pub"
    key.write_bytes(b"")
    hardened = dataclasses.replace(
        cfg,
        commands=dataclasses.replace(cfg.commands, require_auth=True, hmac_key_path=tmp_path / "hmac.key"),
        mqtt=dataclasses.replace(cfg.mqtt, username="nir-01", tls=dataclasses.replace(cfg.mqtt.tls, enabled=True)),
        bundle=dataclasses.replace(cfg.bundle, public_key_path=key),
    )
    assert security_warnings(hardened) == ()
    opted_out = dataclasses.replace(hardened, commands=dataclasses.replace(hardened.commands, enabled=False,
                                                                           require_auth=False))
    assert security_warnings(opted_out) == ()  # no commands at all is not a hole


def test_the_daemon_names_each_insecure_setting_at_start_and_in_its_status(
        tmp_path: Path, example_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    sim = start_sim_thread(tmp_path, count=0, rate_hz=20.0)
    cfg = edge_config(tmp_path, port_url=sim.address, bundle_path=example_bundle)
    expected = security_warnings(cfg)
    assert "mqtt_plaintext" in expected and "bundles_unsigned" in expected  # the test config is the open default
    link = RecordingLink()
    daemon = Daemon(cfg, load_bundle(example_bundle), SerialTransport(sim.address, read_timeout_s=0.05), link)
    with caplog.at_level(logging.WARNING, logger="edge.daemon"):
        daemon.start()
    try:
        wait_for(lambda: bool(link.of_kind("status")), "the first status (delivered by the publisher thread)")
        status = link.of_kind("status")[-1]
    finally:
        daemon.stop()
        sim.stop.set()
        sim.thread.join(timeout=10)
    assert status["security"] == list(expected)
    warned = [r.getMessage() for r in caplog.records if "insecure setting" in r.getMessage()]
    assert warned == [f"insecure setting: {SECURITY_WARNINGS[name]}" for name in expected]
