"""A bundle put in service from another file survives a restart: real mosquitto, ``spectro-sim`` over a pty and
``spectro-edge run`` serving signed copies of the committed trainer-built demo bundles.

``reload_bundle`` with a ``path`` (and a challenger's promotion) swaps in another file than ``bundle.path``.  With
signed bundles the anti-rollback guard then remembers the newer version, so a restart that loaded the old file at
``bundle.path`` again refused it and the daemon did not start (exit 2).  The served file is now written over
``bundle.path`` (the old one kept as ``.previous``; ``bundle.persist``), and a restart serves it; with
``bundle.persist = false`` the file is left alone and the restart is refused, as documented."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import Proc, Subscriber, send_command, start_daemon, start_sim, write_config
from tests.support.signing import make_signing_key, signed_copy


def _serving(sub: Subscriber) -> str | None:
    statuses = [s for s in sub.kind("/status") if s.get("state") == "online"]
    return str(statuses[-1]["model"]["version"]) if statuses and statuses[-1].get("model") else None


@pytest.mark.parametrize("persist", [True, False])
def test_a_bundle_reloaded_from_another_path_is_served_after_a_restart(
    persist: bool, tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker,
    subscriber: Subscriber, procs: list[Proc],
) -> None:
    key = make_signing_key(tmp_path)
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    live = signed_copy(demo_bundles.v1, bundles / "model.spectrolite", key)
    v1_bytes = live.read_bytes()
    newer = signed_copy(demo_bundles.v2, bundles / "newer.spectrolite", key)
    sim, device = start_sim(tmp_path, count=0, rate_hz=20.0)
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=device, bundle=live, mqtt_port=mosquitto_broker.port)
    text = cfg.read_text(encoding="utf-8").replace(  # the test harness turns bundle.persist off; here it is the subject
        "persist = false\n", f'public_key_path = "{key.public_pem}"\npersist = {str(persist).lower()}\n')
    cfg.write_text(text, encoding="utf-8")
    daemon = start_daemon(tmp_path, cfg, 0)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 3 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()
    assert _serving(subscriber) == "1.0.0"

    send_command(mosquitto_broker.port, "reload_bundle", {"path": newer.name}, "r-1")
    answer = subscriber.response("reload_bundle", "r-1")
    assert answer["ok"] is True, answer
    assert answer["result"]["model"]["version"] == "1.1.0"
    wait_for(lambda: _serving(subscriber) == "1.1.0", "the status to show 1.1.0 in service")
    assert daemon.end(signal.SIGTERM) == 0

    if persist:
        assert live.read_bytes() == newer.read_bytes()  # written over bundle.path, atomically
        assert (bundles / "model.spectrolite.previous").read_bytes() == v1_bytes
    else:
        assert live.read_bytes() == v1_bytes  # left alone

    before = len(subscriber.kind("/status"))
    daemon2 = start_daemon(tmp_path, cfg, 1)
    procs.append(daemon2)
    if persist:
        wait_for(lambda: len(subscriber.kind("/status")) > before and _serving(subscriber) == "1.1.0"
                 or not daemon2.alive(), "the restarted daemon to serve 1.1.0")
        assert daemon2.alive(), daemon2.text()
        assert _serving(subscriber) == "1.1.0"
        assert daemon2.end(signal.SIGTERM) == 0
    else:  # the documented consequence: the older signed file at bundle.path is refused at start
        wait_for(lambda: not daemon2.alive(), "the restarted daemon to refuse the older bundle", timeout_s=60.0)
        assert daemon2.popen.returncode == 2, daemon2.text()
        assert "older" in daemon2.text() or "rollback" in daemon2.text(), daemon2.text()
