"""Issue 18, finding 7, with real processes: ``spectro-edge run`` on a real pty played by the test, a real mosquitto,
a paho subscriber, trainer-built bundles and real Ed25519 signatures.  Reloads go through the watched bundle file, as
a deployment tool would.  (In the integration suite: the 512-channel bundle is trained fresh by ``spectro-train fit``,
which needs TensorFlow.)

* Before the device has announced itself (no STATUS), a bundle for another channel count is refused (it would
  refuse every frame once the device speaks): the status says why, the refusal is counted, and the file is tried
  again when the STATUS arrives (then refused on the device's real pixel count).
* Anti-rollback: a signed bundle older than the newest signed one of its model served on this device is refused,
  at a reload and at a restart (the mark is kept beside the outbox), unless ``bundle.allow_rollback = true``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import MosquittoBroker
from tests.support.daemon import REPO, DemoBundles, offline_stream, wait_for
from tests.support.processes import Proc, Subscriber, start_daemon, write_config
from tests.support.pty_device import PtyDevice

#: Channels of the other-channel-count bundle: the demo's synthetic stream has 256, and a trainer-built bundle takes
#: devices with at least as many pixels as it was trained on (it resamples), so 512 refuses the 256-pixel device.
OTHER_CHANNELS = 512


@pytest.fixture(scope="session")
def bundle_512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle for 512-channel spectra, trained by ``spectro-train fit`` from the shipped demo config with
    ``synthetic.channels = 512`` (few epochs: accuracy is not tested)."""
    directory = tmp_path_factory.getbasetemp() / "bundle-512"
    bundle = directory / "out" / "synthetic-demo.spectrolite"
    if bundle.is_file():
        return bundle
    directory.mkdir(parents=True, exist_ok=True)
    text = (REPO / "examples" / "demo.toml").read_text(encoding="utf-8")
    text, n_channels = re.subn(r"channels = 256", f"channels = {OTHER_CHANNELS}", text, count=1)
    text, n_version = re.subn(r'(?m)^model_version = ".*"$', 'model_version = "1.0.1-ch512"', text)
    text = re.sub(r"(?m)^epochs = \d+$", "epochs = 5", text)
    assert n_channels == 1 and n_version == 1, "examples/demo.toml changed shape: update this fixture"
    config = directory / "demo-512.toml"
    config.write_text(text, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "trainer.cli", "fit", str(config), "--out", str(directory / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and bundle.is_file(), proc.stderr[-4000:]
    return bundle


def _watched_config(tmp: Path, *, port_url: str, bundle: Path, mqtt_port: int, extra: str = "") -> Path:
    cfg = write_config(tmp, port_url=port_url, bundle=bundle, mqtt_port=mqtt_port)
    text = cfg.read_text(encoding="utf-8").replace(
        "watch = false\n", f"watch = true\nwatch_interval_s = 0.2\nmin_reload_interval_s = 0\n{extra}")
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _replace(live: Path, source: Path) -> None:
    """Put ``source``'s bytes in place of the watched file atomically (a new file renamed over it)."""
    tmp = live.with_name(live.name + ".new")
    shutil.copyfile(source, tmp)
    os.replace(tmp, live)


def _last_status(sub: Subscriber) -> dict[str, Any]:
    statuses = sub.kind("/status")
    return statuses[-1] if statuses else {}


def _version(sub: Subscriber) -> str | None:
    model = _last_status(sub).get("model") or {}
    return model.get("version")


def _counter(sub: Subscriber, name: str) -> int:
    metrics = sub.kind("/metrics")
    return int(metrics[-1]["counters"].get(name, 0)) if metrics else 0


def test_a_bundle_for_another_channel_count_is_refused_before_the_device_has_announced_itself(
    tmp_path: Path, demo_bundles: DemoBundles, bundle_512: Path, mosquitto_broker: MosquittoBroker,
    subscriber: Subscriber, procs: list[Proc], pty_device: PtyDevice,
) -> None:
    live = Path(shutil.copy(demo_bundles.v1, tmp_path / "model.spectrolite"))
    cfg = _watched_config(tmp_path, port_url=pty_device.path, bundle=live, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: _last_status(subscriber).get("state") == "online" or not daemon.alive(), "the daemon online")
    assert daemon.alive(), daemon.text()
    assert not [f for f in pty_device.received if type(f).__name__ == "Status"]  # the test's device said nothing

    _replace(live, bundle_512)
    wait_for(lambda: "has not announced itself" in (_last_status(subscriber).get("last_error") or "")
             or "now serving" in daemon.text(), "the reload's outcome in the status")
    status = _last_status(subscriber)
    assert status["model"]["version"] == "1.0.0", status
    assert "expected 512 to 5614 pixels, the bundle in service takes 256 to 5614" in status["last_error"], status
    wait_for(lambda: _counter(subscriber, "bundle_reload_device_unknown") == 1, "the refusal counted")

    # The device announces 256 pixels: the watched file is tried again and refused on the real pixel count; the
    # bundle in service predicts on its spectra.
    stream = offline_stream(5)
    pty_device.send(stream["status"], stream["dark"], stream["white"])
    wait_for(lambda: "does not fit this bundle" in (_last_status(subscriber).get("last_error") or ""),
             "the retry at the STATUS")
    assert "expected 512 to 5614 pixels, got 256" in _last_status(subscriber)["last_error"]
    pty_device.send(*stream["spectra"])
    wait_for(lambda: subscriber.count() >= 5, "predictions of the bundle in service")
    assert {p["model"]["version"] for p in subscriber.predictions.values()} == {"1.0.0"}
    assert "now serving" not in daemon.text()
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()


@pytest.fixture
def signed(tmp_path: Path, demo_bundles: DemoBundles) -> dict[str, Path]:
    """Signed copies of the demo bundles 1.0.0 and 1.1.0 and the public key (``spectro-train``'s own key pair and
    signer)."""
    from trainer.bundle import generate_keypair, sign_bundle

    private, public = generate_keypair(tmp_path / "keys")
    out = {"public": public}
    for name, source in (("v1", demo_bundles.v1), ("v2", demo_bundles.v2)):
        out[name] = sign_bundle(shutil.copy(source, tmp_path / f"signed-{name}.spectrolite"), private)
    return out


def test_an_older_signed_bundle_is_refused_at_a_reload_and_at_a_restart_unless_allowed(
    tmp_path: Path, signed: dict[str, Path], mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc], pty_device: PtyDevice,
) -> None:
    live = Path(shutil.copy(signed["v1"], tmp_path / "model.spectrolite"))
    keyline = f'public_key_path = "{signed["public"]}"\n'
    cfg = _watched_config(tmp_path, port_url=pty_device.path, bundle=live, mqtt_port=mosquitto_broker.port,
                          extra=keyline)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: _version(subscriber) == "1.0.0" or not daemon.alive(), "1.0.0 online")
    assert daemon.alive(), daemon.text()

    _replace(live, signed["v2"])  # newer: served
    wait_for(lambda: _version(subscriber) == "1.1.0", "1.1.0 in service")
    _replace(live, signed["v1"])  # older: refused, said why
    wait_for(lambda: "rollback refused" in (_last_status(subscriber).get("last_error") or ""), "the refusal")
    status = _last_status(subscriber)
    assert status["model"]["version"] == "1.1.0", status
    assert "synthetic-demo 1.0.0" in status["last_error"] and "older than synthetic-demo 1.1.0" in status["last_error"]
    wait_for(lambda: _counter(subscriber, "bundle_reloads_rollback_refused") == 1, "the refusal counted")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()

    # A restart on the older file: the mark beside the outbox still refuses it.
    again = start_daemon(tmp_path, cfg, n=1)
    procs.append(again)
    wait_for(lambda: not again.alive(), "the daemon to refuse to start")
    assert again.popen.returncode == 2 and "rollback refused" in again.text(), again.text()

    # Explicitly allowed: served.
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(keyline, keyline + "allow_rollback = true\n"),
                   encoding="utf-8")
    allowed = start_daemon(tmp_path, cfg, n=2)
    procs.append(allowed)
    wait_for(lambda: "model synthetic-demo 1.0.0" in allowed.text() or not allowed.alive(), "1.0.0 served again")
    assert allowed.alive(), allowed.text()
    assert allowed.end(signal.SIGTERM) == 0, allowed.text()
