"""A site broker bridged to a central broker, run from the shipped ``deploy/mosquitto`` files on one machine, with a
fleet of simulated devices publishing through it and a consumer counting what reaches the central broker.

Used by ``spectro-bench fleet`` and by the loopback test of the bridge (tests/reliability/test_bridge.py):

- :func:`localise` turns a shipped mosquitto configuration into one for ``127.0.0.1``: it replaces the listener,
  the bridge's address, the persistence and log locations, and drops the TLS files and the authentication (the
  loopback has no certificates); every other line (persistence, queue limits, session, QoS, topics, reconnect
  timing) is used verbatim;
- :class:`BrokerPair` starts the central broker and the site broker bridged to it, and stops and starts each;
- :class:`SimulatedFleet` is N devices, each the daemon's own publishing stack (an
  :class:`edge.publish.outbox.Outbox` and an :class:`edge.publish.mqtt.MqttPublisher` built from an
  :class:`edge.config.EdgeConfig`) publishing ``prediction`` messages with consecutive ``seq`` to the site broker;
  the spectrometer, the pty and the model are left out, so 20 devices fit on a small machine (20 daemons with
  their simulators do not, on 2 cores);
- :class:`CentralConsumer` is a paho client with a persistent session on the central broker, QoS 1, collecting
  ``(device_id, seq)`` of every prediction;
- :func:`warm_up`, :func:`outage`, :func:`settle` and :func:`tally` are the steps of a run: data flowing end to
  end, a broker down for a while, waiting until what will arrive has arrived, and counting.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.mosquitto import Mosquitto
from benchmarks.harness.processes import wait_for
from edge.config import parse_config
from edge.publish.messages import TargetValue, prediction_message
from edge.publish.mqtt import MqttPublisher
from edge.publish.outbox import Outbox
from edge.publish.schema import MessageKind

log = logging.getLogger(__name__)

__all__ = ["BrokerPair", "CentralConsumer", "Tally", "SimulatedFleet", "localise", "outage", "settle",
           "shipped_conf", "tally", "wait_for", "warm_up", "SITE", "LINE_COUNT"]

#: Folder of the shipped broker configurations.
DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
#: The site the shipped site-bridge.conf forwards (its topic lines name it).
SITE = "plant-a"
#: Simulated devices are spread over this many lines.
LINE_COUNT = 2
#: Deadline for brokers, bridges and clients to connect (a failure to get there, not a figure).
CONNECT_TIMEOUT_S = 30.0

#: Directives that name machine-specific files or addresses and are dropped on the loopback: TLS files and
#: client-certificate identities (there is no PKI here) and the ACL (the simulated devices are anonymous).
_DROPPED = frozenset({"cafile", "capath", "certfile", "keyfile", "require_certificate", "use_identity_as_username",
                      "use_subject_as_username", "acl_file", "password_file", "bridge_cafile", "bridge_capath",
                      "bridge_certfile", "bridge_keyfile", "bridge_insecure", "remote_username", "remote_password",
                      "pid_file"})
#: Directives replaced by :func:`localise`.
_REPLACED = frozenset({"listener", "address", "addresses", "persistence_location", "log_dest", "allow_anonymous",
                       "user"})


def shipped_conf(name: str) -> str:
    """Text of ``deploy/mosquitto/<name>``; FileNotFoundError names the checkout it needs."""
    path = DEPLOY_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"expected the shipped broker configuration {path} (run from a checkout), found none")
    return path.read_text(encoding="utf-8")


def localise(text: str, *, port: int, workdir: Path, central_port: int | None = None) -> str:
    """``text`` (a mosquitto.conf) listening on ``127.0.0.1:port``, persisting and logging under ``workdir``, and
    bridging to ``127.0.0.1:central_port``; TLS and authentication dropped, every other directive kept verbatim.

    Raises
    ------
    ValueError
        The file has a second listener (one per broker is localised), or a bridge but no ``central_port``.
    """
    out: list[str] = []
    listeners = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split()[0]
        if key in _DROPPED:
            continue
        if key not in _REPLACED:
            out.append(line)
        elif key == "listener":
            listeners += 1
            if listeners > 1:
                raise ValueError(f"expected one listener in the configuration to localise, got {listeners}")
            out.append(f"listener {port} 127.0.0.1")
        elif key in ("address", "addresses"):
            if central_port is None:
                raise ValueError("the configuration has a bridge: expected central_port, got None")
            out.append(f"address 127.0.0.1:{central_port}")
        elif key == "persistence_location":
            out.append(f"persistence_location {workdir}/")
        elif key == "log_dest":
            out.append(f"log_dest file {workdir / 'mosquitto.log'}")
        elif key == "allow_anonymous":
            out.append("allow_anonymous true")
    if listeners == 0:
        out.insert(0, f"listener {port} 127.0.0.1")
    if not any(line.split()[0] == "log_dest" for line in out):
        out.insert(1, f"log_dest file {workdir / 'mosquitto.log'}")
    if not any(line.split()[0] == "allow_anonymous" for line in out):
        out.insert(1, "allow_anonymous true")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        out.insert(0, "user root")  # otherwise mosquitto switches to 'mosquitto' and cannot write workdir
    return "\n".join(out) + "\n"


class BrokerPair:
    """The central broker and a site broker bridged to it, each from a configuration text (localised here).

    Parameters
    ----------
    workdir : Path
        Each broker's configuration, log and persistence database go in a folder of its own below it.
    site_conf, central_conf : str
        mosquitto.conf texts (the shipped files by default); ``site_conf`` holds the bridge.
    """

    def __init__(self, workdir: Path, *, site_conf: str | None = None, central_conf: str | None = None) -> None:
        site_text = shipped_conf("site-bridge.conf") if site_conf is None else site_conf
        central_text = shipped_conf("central.conf") if central_conf is None else central_conf
        self.central = Mosquitto(workdir / "central",
                                 config=lambda b: localise(central_text, port=b.port, workdir=b.workdir))
        self.site = Mosquitto(workdir / "site", config=lambda b: localise(
            site_text, port=b.port, workdir=b.workdir, central_port=self.central.port))

    def start(self) -> BrokerPair:
        self.central.start()
        self.site.start()
        return self

    def stop(self) -> None:
        self.site.stop()
        self.central.stop()

    close = stop

    def __enter__(self) -> BrokerPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        """Both brokers' logs (for failure messages)."""
        parts = []
        for name, broker in (("site", self.site), ("central", self.central)):
            try:
                parts.append(f"--- {name} broker log\n{broker.log_path.read_text(errors='replace')}")
            except OSError:
                parts.append(f"--- {name} broker log: none")
        return "\n".join(parts)


@dataclass
class _Device:
    device_id: str
    publisher: MqttPublisher
    outbox: Outbox
    seq: int = 0


class SimulatedFleet:
    """``devices`` publishing stacks of the daemon (outbox + MQTT publisher), connected to ``port``.

    Parameters
    ----------
    workdir : Path
        Each device's outbox database goes here.
    port : int
        The site broker's port on 127.0.0.1.
    devices : int
        How many devices (ids ``nir-00``, ``nir-01``, ...; spread over :data:`LINE_COUNT` lines of :data:`SITE`).
    reconnect_min_delay_s, reconnect_max_delay_s : int
        The devices' ``mqtt.reconnect_*`` settings (full jitter between them).
    seed : int
        Seeds each device's reconnect jitter (``seed + i``), so a run can be repeated.
    extra_config : mapping of section to table, optional
        More configuration of every device (``commands``, ``deploy``: :mod:`benchmarks.rollout`).
    command_handler : callable(config, emit) -> on_command, optional
        Makes each device's command handler; ``emit(kind, message, command)`` publishes through that device.
    """

    def __init__(self, workdir: Path, port: int, devices: int, *, reconnect_min_delay_s: int = 1,
                 reconnect_max_delay_s: int = 8, seed: int = 0, extra_config: dict[str, Any] | None = None,
                 command_handler: Callable[[Any, Callable[..., None]], Any] | None = None) -> None:
        if devices < 1:
            raise ValueError(f"devices: expected at least 1, got {devices}")
        self.reconnect_window_s = (float(reconnect_min_delay_s), 2.0 * reconnect_min_delay_s)
        self._devices: list[_Device] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for i in range(devices):
            device_id = f"nir-{i:02d}"
            cfg = parse_config({
                "device": {"site": SITE, "line": f"line-{i % LINE_COUNT + 1}", "device_id": device_id},
                "serial": {"port_url": "loop://"},
                "bundle": {"path": "model.bundle"},
                "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_delay_s": reconnect_min_delay_s,
                         "reconnect_max_delay_s": reconnect_max_delay_s},
                "outbox": {"path": f"outbox-{device_id}.sqlite"},
                **(extra_config or {}),
            }, base_dir=workdir)
            outbox = Outbox.from_config(cfg.outbox)
            holder: list[MqttPublisher] = []
            on_command = None if command_handler is None else command_handler(
                cfg, lambda kind, msg, command=None, h=holder: h[0].publish_message(kind, msg, command=command))
            holder.append(MqttPublisher(cfg, outbox, rng=random.Random(seed + i), on_command=on_command))
            self._devices.append(_Device(device_id, holder[0], outbox))

    @property
    def device_ids(self) -> list[str]:
        return [d.device_id for d in self._devices]

    def topics(self) -> list[tuple[str, str, str]]:
        """``(site, line, device_id)`` of every device."""
        return [(SITE, d.publisher.topics.line, d.device_id) for d in self._devices]

    def start(self) -> None:
        """Connect every device; raises RuntimeError naming those that did not connect."""
        for d in self._devices:
            d.publisher.start()
        late = [d.device_id for d in self._devices if not d.publisher.wait_connected(CONNECT_TIMEOUT_S)]
        if late:
            raise RuntimeError(f"expected every device connected to the site broker, got {late} not connected")

    def publish_round(self) -> None:
        """One prediction from every device, with the next ``seq`` of each."""
        with self._lock:
            for d in self._devices:
                body = prediction_message(
                    device_id=d.device_id, seq=d.seq, device_timestamp_us=d.seq * 200_000, model_id="fleet-bench",
                    model_version="1", targets=[TargetValue("moisture", "%", 12.0 + (d.seq % 100) / 100.0)],
                    latency_ms=1.0, device_boot_id=1, time_unix_s=time.time(), validate_now=False)
                d.publisher.publish_message(MessageKind.PREDICTION, body)
                d.seq += 1

    def start_publishing(self, rate_hz: float) -> None:
        """Publish a round every ``1 / rate_hz`` s (each device at ``rate_hz``) on a thread, until
        :meth:`stop_publishing`."""
        if rate_hz <= 0:
            raise ValueError(f"rate_hz: expected > 0, got {rate_hz}")
        self._stop.clear()

        def loop() -> None:
            period, next_at = 1.0 / rate_hz, time.monotonic()
            while not self._stop.is_set():
                self.publish_round()
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))

        self._thread = threading.Thread(target=loop, name="fleet-publish", daemon=True)
        self._thread.start()

    def stop_publishing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def sent(self) -> set[tuple[str, int]]:
        """Every ``(device_id, seq)`` published so far."""
        with self._lock:
            return {(d.device_id, s) for d in self._devices for s in range(d.seq)}

    def last_sent(self) -> set[tuple[str, int]]:
        """The newest ``(device_id, seq)`` of each device that published."""
        with self._lock:
            return {(d.device_id, d.seq - 1) for d in self._devices if d.seq}

    def connects(self) -> list[int]:
        """Successful connections of each device so far."""
        return [d.publisher.stats().connects for d in self._devices]

    def reconnect_times(self, before: Iterable[int], timeout_s: float) -> list[float | None]:
        """``time.monotonic()`` at which each device connected again after ``before`` (its :meth:`connects` of
        then); None for a device that did not within ``timeout_s``."""
        base = list(before)
        back: list[float | None] = [None] * len(self._devices)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(t is None for t in back):
            for i, d in enumerate(self._devices):
                if back[i] is None and d.publisher.stats().connects > base[i]:
                    back[i] = time.monotonic()
            time.sleep(0.005)
        return back

    def wait_delivered_to_site(self, timeout_s: float) -> bool:
        """Every device's outbox empty and nothing in flight (the site broker acknowledged everything)."""
        return all(d.publisher.wait_until_drained(timeout_s) for d in self._devices)

    def close(self) -> None:
        self.stop_publishing()
        for d in self._devices:
            d.publisher.stop(flush_timeout_s=1.0)
            d.outbox.close()


class CentralConsumer:
    """A consumer of the central broker: persistent session (``clean_session=False``, fixed client id), QoS 1 on
    ``spectrolite/+/+/+/prediction``, reconnecting within a second or two; keeps ``(device_id, seq)`` of each
    prediction and counts duplicates."""

    def __init__(self, port: int, *, client_id: str = "spectrolite-fleet-consumer") -> None:
        import paho.mqtt.client as mqtt

        self._lock = threading.Lock()
        self._received: set[tuple[str, int]] = set()
        self.duplicates = 0
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe("spectrolite/+/+/+/prediction", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            self.close()
            raise RuntimeError(f"the consumer could not subscribe on the central broker at 127.0.0.1:{port}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload.decode("utf-8"))
            key = (str(body["device_id"]), int(body["seq"]))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            log.warning("consumer: not a prediction on %s", msg.topic)
            return
        with self._lock:
            if key in self._received:
                self.duplicates += 1
            else:
                self._received.add(key)

    def received(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self._received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------------------------- steps of a run
def warm_up(fleet: SimulatedFleet, consumer: CentralConsumer, pair: BrokerPair) -> None:
    """Wait until a prediction of every device has reached the consumer (the bridge is up); RuntimeError if not."""
    devices = set(fleet.device_ids)
    if not wait_for(lambda: {d for d, _ in consumer.received()} >= devices, CONNECT_TIMEOUT_S):
        raise RuntimeError(f"expected predictions of all {len(devices)} devices through the bridge within "
                           f"{CONNECT_TIMEOUT_S:g} s, got {len({d for d, _ in consumer.received()})}\n{pair.logs()}")


def outage(broker: Mosquitto, seconds: float) -> None:
    """Stop ``broker`` (SIGTERM: it saves its persistence database), wait ``seconds``, start it again."""
    broker.stop()
    time.sleep(seconds)
    broker.start()


def settle(consumer: CentralConsumer, expected: set[tuple[str, int]], timeout_s: float, quiet_s: float = 3.0) -> bool:
    """Wait until the consumer has everything in ``expected`` (True), or, once something new has arrived, nothing
    more for ``quiet_s`` (False: the rest is not coming), or ``timeout_s`` (False)."""
    deadline = time.monotonic() + timeout_s
    start_count = count = len(consumer.received())
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        got = consumer.received()
        if expected <= got:
            return True
        if len(got) != count:
            count, last_change = len(got), time.monotonic()
        elif count > start_count and time.monotonic() - last_change >= quiet_s:
            return False
        time.sleep(0.05)
    return False


@dataclass(frozen=True)
class Tally:
    """What reached the central consumer of what the fleet published."""

    sent: int  #: predictions published (each stored in a device's outbox first)
    received: int  #: distinct ``(device_id, seq)`` of those that reached the consumer
    lost: int  #: ``sent - received``
    duplicates: int  #: deliveries of a prediction already received (QoS 1 is at least once)
    missing_sample: list[tuple[str, int]]  #: up to 10 of the lost, oldest first

    def to_dict(self) -> dict[str, Any]:
        return {"predictions_sent": self.sent, "predictions_received_central": self.received, "lost": self.lost,
                "duplicates": self.duplicates}


def tally(fleet: SimulatedFleet, consumer: CentralConsumer) -> Tally:
    """Count :class:`Tally` now."""
    sent, got = fleet.sent(), consumer.received()
    missing = sorted(sent - got)
    return Tally(sent=len(sent), received=len(sent & got), lost=len(missing), duplicates=consumer.duplicates,
                 missing_sample=missing[:10])
