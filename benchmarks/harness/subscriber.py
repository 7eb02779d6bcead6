"""The one MQTT subscriber of the demo, the benchmarks and the end-to-end tests: a paho-mqtt client on a device's
topics keeping predictions (by ``seq``), drift alerts, status, metrics, command responses and every other message.

paho-mqtt and the standard library only: the edge-only test venv (no TensorFlow, scikit-learn or SciPy) imports it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.harness.errors import HarnessError
from benchmarks.harness.settings import DEVICE, LINE, SITE, START_TIMEOUT_S, TOPIC_PREFIX

__all__ = ["RETAINED_WAIT_S", "Endpoint", "Inbox", "Subscriber", "read_retained"]

#: Reconnect back-off after the broker went away (a stop, a kill, a restart on the same port), seconds.
RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S = 0.2, 1.0
#: Deadline of one read of a retained message (a failure to arrive, not a speed goal), seconds.
RETAINED_WAIT_S = 10.0


class Endpoint(Protocol):
    """Where a broker listens: the harness's :class:`~benchmarks.harness.broker.Broker`, a
    :class:`~benchmarks.harness.mosquitto.Mosquitto` (and the tests' ``MosquittoBroker``)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


def _kind(topic: str) -> str:
    """The last level of ``topic`` (``prediction``, ``drift``, ``status``, ``metrics``, ``response``, ...)."""
    return topic.rsplit("/", 1)[-1]


@dataclass
class Inbox:
    """What the subscriber received (guarded by ``lock``).

    Predictions are kept once per ``seq`` (a QoS 1 redelivery counts in ``duplicates``); every other message is
    kept in ``other`` in arrival order, and :attr:`drift`, :attr:`status`, :attr:`responses` and :attr:`metrics`
    are its views by topic.

    With ``keep_bodies`` false the memory stays bounded over millions of predictions (the soak): a prediction
    leaves only its ``seq`` in :attr:`seqs` (no body, no receipt time: :attr:`predictions` stays empty), and
    ``other`` keeps only the last message of each topic.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    keep_bodies: bool = True
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    receipt_us: dict[int, int] = field(default_factory=dict)  #: monotonic receipt time of each prediction
    seqs: set[int] = field(default_factory=set)  #: the predictions' ``seq`` when bodies are not kept
    received: int = 0  #: prediction messages received, duplicates included
    duplicates: int = 0
    last_prediction_us: int | None = None  #: monotonic receipt time of the last prediction message, None before
    other: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  #: (topic, body) of the rest
    undecodable: int = 0  #: messages whose payload was not JSON (counted, not kept)

    def seen(self) -> Collection[int]:
        """The ``seq`` of every distinct prediction received (caller holds the lock)."""
        return self.predictions if self.keep_bodies else self.seqs

    def add_prediction(self, seq: int, body: dict[str, Any], now_us: int) -> bool:
        """Record a prediction message (caller holds the lock); False when its ``seq`` came before."""
        self.received += 1
        self.last_prediction_us = now_us
        if seq in self.seen():
            self.duplicates += 1
            return False
        if self.keep_bodies:
            self.predictions[seq] = body
            self.receipt_us[seq] = now_us
        else:
            self.seqs.add(seq)
        return True

    def add_other(self, topic: str, body: dict[str, Any]) -> None:
        """Record a message that is not a prediction (caller holds the lock)."""
        if not self.keep_bodies:
            self.other = [(t, b) for t, b in self.other if t != topic]
        self.other.append((topic, body))

    def count(self) -> int:
        with self.lock:
            return len(self.seen())

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Bodies of the messages whose topic's last level is ``kind``, in arrival order (caller holds the lock)."""
        return [b for t, b in self.other if _kind(t) == kind]

    @property
    def drift(self) -> list[dict[str, Any]]:
        """Drift alerts (``.../drift``)."""
        return self.of_kind("drift")

    @property
    def status(self) -> list[dict[str, Any]]:
        """Status messages (``.../status``, retained)."""
        return self.of_kind("status")

    @property
    def responses(self) -> list[dict[str, Any]]:
        """Command responses (``.../cmd/<name>/response``)."""
        return self.of_kind("response")

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The last metrics message (``.../metrics``), None before the first."""
        return next((b for t, b in reversed(self.other) if _kind(t) == "metrics"), None)


class Subscriber:
    """paho-mqtt 2.x client on ``<base>/#`` at QoS ``qos``, keeping what arrives in :attr:`inbox`.

    Parameters
    ----------
    broker : Endpoint
        The broker's host and port.
    base : str, optional
        The device's topic base (default the harness daemon's ``<prefix>/<site>/<line>/<device>``).
    client_id : str, optional
        Default ``spectrolite-harness-<pid>``.
    clean_session : bool
        False keeps a persistent session on the broker: messages published while this client is away (a broker
        restart) are delivered when it is back, as the end-to-end tests need.
    on_prediction, on_drift : callable(body), optional
        Called from paho's thread for each new prediction (not a duplicate) and each drift alert.
    keep_bodies : bool
        False bounds the memory over a long run (:class:`Inbox`): predictions keep only their ``seq``, every
        other topic only its last message.

    The commands published to the device (``.../cmd/<name>``) are not kept (their responses are).  The constructor
    returns once the subscription is acknowledged, and raises :class:`HarnessError` when it is not within
    :data:`~benchmarks.harness.settings.START_TIMEOUT_S`.
    """

    def __init__(self, broker: Endpoint, *, base: str | None = None, qos: int = 1, client_id: str | None = None,
                 clean_session: bool = True, on_prediction: Callable[[dict[str, Any]], None] | None = None,
                 on_drift: Callable[[dict[str, Any]], None] | None = None, keep_bodies: bool = True) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.inbox = Inbox(keep_bodies=keep_bodies)
        self.base = base or f"{TOPIC_PREFIX}/{SITE}/{LINE}/{DEVICE}"
        self._on_prediction = on_prediction
        self._on_drift = on_drift
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, clean_session=clean_session,
                                  client_id=client_id or f"spectrolite-harness-{os.getpid()}")
        self.client.max_inflight_messages_set(100)
        # paho annotates the delays as int and takes floats at run time
        self.client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{self.base}/#", qos=qos)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise HarnessError(f"the subscriber could not subscribe to {self.base}/# on {broker.host}:{broker.port} "
                               f"within {START_TIMEOUT_S} s")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now_us = time.monotonic_ns() // 1000
        kind = _kind(msg.topic)
        if "/cmd/" in msg.topic and kind != "response":
            return  # a command to the device (possibly oversized or not JSON): its response is what counts
        inbox = self.inbox
        try:
            body = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            with inbox.lock:
                inbox.undecodable += 1
            return
        if kind == "prediction":
            with inbox.lock:
                new = inbox.add_prediction(int(body["seq"]), body, now_us)
            if new and self._on_prediction is not None:
                self._on_prediction(body)
            return
        with inbox.lock:
            inbox.add_other(msg.topic, body)
        if kind == "drift" and self._on_drift is not None:
            self._on_drift(body)

    # ------------------------------------------------------------------------------------------------ reading
    @property
    def lock(self) -> threading.Lock:
        """The inbox's lock (hold it while reading :attr:`predictions`)."""
        return self.inbox.lock

    @property
    def predictions(self) -> dict[int, dict[str, Any]]:
        """Predictions by ``seq`` (the inbox's own dict: read it holding :attr:`lock`; empty without
        ``keep_bodies``)."""
        return self.inbox.predictions

    @property
    def duplicates(self) -> int:
        return self.inbox.duplicates

    @property
    def received(self) -> int:
        """Prediction messages received, duplicates included."""
        return self.inbox.received

    def count(self) -> int:
        """Distinct predictions received."""
        return self.inbox.count()

    def max_seq(self) -> int:
        """The highest prediction ``seq`` received (-1 before the first)."""
        with self.inbox.lock:
            return max(self.inbox.seen(), default=-1)

    def last_prediction_s(self) -> float | None:
        """Monotonic time (s) the last prediction message arrived, duplicates included; None before the first."""
        with self.inbox.lock:
            last = self.inbox.last_prediction_us
        return None if last is None else last / 1e6

    def kind(self, suffix: str) -> list[dict[str, Any]]:
        """Bodies of the non-prediction messages whose topic ends with ``suffix`` (``"/status"``,
        ``"/cmd/reload_bundle/response"``), in arrival order."""
        with self.inbox.lock:
            return [b for t, b in self.inbox.other if t.endswith(suffix)]

    def response(self, name: str, request_id: str, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
        """The daemon's response to the command ``name`` with ``request_id``, once it has come; raises
        :class:`HarnessError` when it has not within ``timeout_s`` (a liveness deadline)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [r for r in self.kind(f"/cmd/{name}/response") if r.get("request_id") == request_id]
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise HarnessError(f"expected a response to {name} {request_id} within {timeout_s} s, got none")
            time.sleep(0.02)

    # ------------------------------------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Forget what arrived (between runs on one broker)."""
        with self.inbox.lock:
            lock = self.inbox.lock
            self.inbox = Inbox(lock=lock, keep_bodies=self.inbox.keep_bodies)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def read_retained(broker: Endpoint, topic: str, timeout_s: float = RETAINED_WAIT_S) -> dict[str, Any] | None:
    """The retained message on ``topic`` as a new subscriber receives it; None when there is none within
    ``timeout_s`` or the broker does not answer (it may be restarting: callers poll)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[dict[str, Any]] = []
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        # A status published while this client subscribes arrives live (retain flag 0 by MQTT 3.1.1) but is the
        # same retained message every later subscriber gets: the publisher sends its status only retained.
        if not got:
            got.append(json.loads(msg.payload.decode()))
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    c.on_message = on_message
    c.on_connect = lambda cl, ud, fl, rc, pr=None: cl.subscribe(topic, qos=1)
    try:
        c.connect(broker.host, broker.port, keepalive=10)
    except OSError:
        return None
    c.loop_start()
    try:
        done.wait(timeout_s)
    finally:
        c.loop_stop()
        c.disconnect()
    return got[0] if got else None
