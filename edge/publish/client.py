"""Building the daemon's paho client from ``[mqtt]`` (protocol, session, TLS, credentials), its CONNECT
arguments, and the small helpers of the publisher's connection: the backlog's rate limit, the reconnect jitter, the
detection of a second client with the same client id, and the command handler's signature (see
:mod:`edge.publish.mqtt`)."""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.publish.log_limit import LOG_INTERVAL_S, LogLimiter
from firmware_bridge.backoff import Backoff

if TYPE_CHECKING:
    from edge.config import EdgeConfig, MqttConfig
    from edge.publish.topics import Topics

__all__ = ["BrokerRotation", "CommandHandler", "ReconnectJitter", "build_client", "max_incoming_packet_bytes",
           "read_password",
           "connect_kwargs",
           "network_thread_died", "subscribe_commands", "deliver_command", "PACKET_OVERHEAD_BYTES", "TokenBucket",
           "TakeoverWatch",
           "SESSION_TAKEN_OVER", "SHORT_SESSION_S", "SHORT_SESSIONS_HINT"]

log = logging.getLogger("edge.publish.mqtt")

#: Room for the fixed header, the topic and the properties of a command message on top of its payload, bytes.
PACKET_OVERHEAD_BYTES = 8192
#: MQTT 5 DISCONNECT reason "Session taken over": another client connected with this client id.
SESSION_TAKEN_OVER = 0x8E
#: A connection lost this soon after its CONNACK, SHORT_SESSIONS_HINT times in a row, is reported as a likely
#: client-id clash too (MQTT 3.1.1 brokers just close the older connection, with no reason).
SHORT_SESSION_S = 5.0
SHORT_SESSIONS_HINT = 3


def read_password(cfg: EdgeConfig) -> str | None:
    """The MQTT password: the first line of ``mqtt.password_file`` when set, else ``mqtt.password``."""
    m = cfg.mqtt
    if m.password_file is not None:
        lines = m.password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    return m.password


def build_client(cfg: EdgeConfig, client_id: str | None = None) -> paho.Client:
    """Create (not connect) a paho client from ``[mqtt]``: protocol, session, TLS, credentials, backoff.

    Exposed so that tools and tests build subscribers with the same security settings as the daemon.
    """
    m = cfg.mqtt
    v5 = m.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id if client_id is not None else m.client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else m.clean_session,
        reconnect_on_failure=True,
    )
    client.reconnect_delay_set(min_delay=m.reconnect_min_delay_s, max_delay=m.reconnect_max_delay_s)
    client.connect_timeout = m.connect_timeout_s
    if m.username is not None:
        client.username_pw_set(m.username, read_password(cfg))
    if m.tls.enabled:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(m.tls.ca_path) if m.tls.ca_path is not None else None)
        if m.tls.cert_path is not None and m.tls.key_path is not None:
            ctx.load_cert_chain(str(m.tls.cert_path), str(m.tls.key_path))
        ctx.check_hostname = m.tls.check_hostname
        client.tls_set_context(ctx)
    return client


def max_incoming_packet_bytes(cfg: EdgeConfig) -> int:
    """Largest MQTT packet the daemon accepts from the broker, bytes (the MQTT 5 Maximum Packet Size it announces).

    The daemon subscribes to its command topics only, and refuses a command payload above
    ``commands.max_payload_bytes`` (a ``deploy_chunk`` above its own bound, with ``[deploy]`` on); a packet may
    add :data:`PACKET_OVERHEAD_BYTES` for its header, topic and properties.

    >>> from pathlib import Path
    >>> from edge.config import parse_config
    >>> cfg = parse_config({"device": {"site": "a", "line": "b", "device_id": "c"}, "serial": {"port_url": "loop://"},
    ...                     "bundle": {"path": "m.spectrolite"}}, base_dir=Path("/srv"))
    >>> max_incoming_packet_bytes(cfg)
    12288
    """
    largest = int(cfg.commands.max_payload_bytes)
    if cfg.deploy.enabled:  # a bundle chunk is a larger command
        from edge.deploy.args import chunk_payload_limit

        largest = max(largest, chunk_payload_limit(int(cfg.deploy.max_chunk_bytes)))
    return largest + PACKET_OVERHEAD_BYTES


def network_thread_died(client: paho.Client) -> bool:
    """Whether the network thread of a started client (``loop_start``) has ended."""
    # paho 2.x keeps its loop thread in Client._thread and sets it to None when the thread ends; a paho without
    # that attribute cannot be watched this way (never taken for a dead thread).
    if not hasattr(client, "_thread"):
        return False
    network = client._thread
    return network is None or not network.is_alive()


def subscribe_commands(client: paho.Client, command_filter: str, protocol: str) -> None:
    """Subscribe to the command topics at QoS 1."""
    if protocol == "5":
        # Retain As Published: a retained command published while subscribed keeps its retain flag, so it
        # is refused like one delivered at subscribe (MQTT 3.1.1 clears the flag on live delivery).
        client.subscribe(command_filter, options=SubscribeOptions(qos=1, retainAsPublished=True))
    else:
        client.subscribe(command_filter, qos=1)


def connect_kwargs(cfg: EdgeConfig) -> dict[str, Any]:
    """paho's ``connect_async`` arguments: the first broker of ``[mqtt]`` (:class:`BrokerRotation` moves to the
    others), keepalive, and the MQTT 5 session properties."""
    m = cfg.mqtt
    host, port = m.addresses()[0]
    kwargs: dict[str, Any] = {"host": host, "port": port, "keepalive": m.keepalive_s}
    if m.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's Properties is untyped
        props.SessionExpiryInterval = 0 if m.clean_session else m.session_expiry_s
        # The broker must not send a larger packet (MQTT 5, 3.1.2.11.4): it discards it instead.
        props.MaximumPacketSize = max_incoming_packet_bytes(cfg)
        kwargs["clean_start"] = m.clean_session
        kwargs["properties"] = props
    return kwargs


class TokenBucket:
    """Rate limiter of the backlog drain: ``rate`` tokens per second, bursts up to one second's worth."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate = rate_per_s
        self.capacity = max(1.0, rate_per_s)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def available(self) -> int:
        if self.rate <= 0:
            return 1 << 30
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return math.floor(self.tokens)

    def take(self, n: int) -> None:
        if self.rate > 0:
            self.tokens -= n


class TakeoverWatch:
    """Says so when another client with this client id (a second daemon with the same device_id) keeps knocking
    this one off the broker.  :meth:`connected` at every CONNACK, :meth:`disconnected` when an established connection
    is lost; ``taken_over`` counts the MQTT 5 "session taken over" disconnects."""

    def __init__(self) -> None:
        self.connected_at = 0.0
        self.taken_over = 0
        self._short_sessions = 0  # consecutive connections lost within SHORT_SESSION_S (3.1.1 takeover hint)
        self._logs = LogLimiter(LOG_INTERVAL_S, time.monotonic)

    def connected(self) -> None:
        self.connected_at = time.monotonic()

    def disconnected(self, reason_code: ReasonCode, client_id: str) -> None:
        """Say so when another client with this client id (a second daemon with the same device_id) keeps knocking
        this one off the broker: MQTT 5 gives the reason; under 3.1.1, repeated short sessions are the hint."""
        if getattr(reason_code, "value", None) == SESSION_TAKEN_OVER:
            self.taken_over += 1
            due = self._logs.event("taken_over")
            if due is not None:
                log.error("the broker closed this connection %d time(s) in the last %.0f s because another client "
                          "connected with the same client id %r: is a second daemon running with this device_id? "
                          "Give each device its own device.device_id (or mqtt.client_id)", due[0], LOG_INTERVAL_S,
                          client_id)
            return
        if time.monotonic() - self.connected_at >= SHORT_SESSION_S:
            self._short_sessions = 0
            return
        self._short_sessions += 1
        if self._short_sessions >= SHORT_SESSIONS_HINT and self._logs.event("short") is not None:
            log.error("%d connections in a row lost within %.0f s of connecting: another client using the client id "
                      "%r (a second daemon with this device_id?) or the broker refusing this client",
                      self._short_sessions, SHORT_SESSION_S, client_id)


class CommandHandler(Protocol):
    """``on_command(name, payload)`` for a command message; ``retained=True`` is added for a retained one (which
    the handler must refuse: the broker delivers it again at every subscribe); ``group`` names the deployment group
    (``deploy.groups``) whose topic it came on, None for the device's own ``.../cmd/<name>``."""

    def __call__(self, name: str, payload: bytes, *, retained: bool = False, group: str | None = None) -> None: ...


class ReconnectJitter:
    """The delay before paho's next connection attempt, drawn with full jitter (:mod:`firmware_bridge.backoff`):
    paho's own backoff has none, so a fleet that lost its broker at once would retry in lock-step."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._backoff: Backoff | None = None

    def reset(self) -> None:
        """A connection succeeded: the next outage starts from the smallest window again."""
        if self._backoff is not None:
            self._backoff.reset()

    def schedule(self, client: paho.Client, m: MqttConfig) -> None:
        """Set the delay of ``client``'s next attempt: paho waits ``min_delay`` after a failure, and this runs in its
        network thread right before that wait (on_connect_fail, on_disconnect)."""
        bounds = (float(m.reconnect_min_delay_s), float(m.reconnect_max_delay_s))
        if self._backoff is None or self._backoff.bounds_s != bounds:  # first failure, or another broker's settings
            self._backoff = Backoff(bounds, self._rng)
        delay = self._backoff.next_delay_s()
        # paho hints int seconds; it only adds the value to time.monotonic() and sleeps, so a float is exact.
        client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]


class BrokerRotation:
    """The brokers of ``[mqtt]`` (``brokers``, or ``host`` and ``port``) and the one the client tries now.

    :meth:`advance` runs in paho's network thread after a lost connection or a failed attempt, right before paho
    waits the jittered delay (:class:`ReconnectJitter`) and reconnects: the next attempt goes to the next broker, round
    robin, so a client whose cluster node stopped reaches another node after one delay.
    """

    def __init__(self, addresses: Sequence[tuple[str, int]]) -> None:
        if not addresses:
            raise ValueError("expected at least one broker address, got none")
        self.addresses = tuple(addresses)
        self.index = 0

    @property
    def current(self) -> str:
        """``host:port`` of the broker being tried or connected to."""
        host, port = self.addresses[self.index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def advance(self, client: paho.Client) -> str | None:
        """Point ``client``'s next reconnect at the next broker and return the one it leaves (``host:port``); None
        (nothing changed) with a single broker."""
        if len(self.addresses) < 2:
            return None
        left = self.current
        self.index = (self.index + 1) % len(self.addresses)
        host, port = self.addresses[self.index]
        # paho's host and port setters refuse while the client is between attempts (its state is "connecting" or
        # "connection lost", not "new"); reconnect() reads these two attributes, as connect_async() left them.
        client._host = host
        client._port = port
        return left


def deliver_command(message: paho.MQTTMessage, topics: "Topics", groups: Sequence[str],
                    on_command: Callable[..., None] | None, count: Callable[[str], None]) -> None:
    """Hand a message on a command topic to ``on_command`` (paho's network thread), counted
    (``commands_received``, ``commands_ignored``): ``on_command(name, payload)``, with ``retained=True`` for a
    retained one, and ``retained=..., group=...`` for a deployment group's command (answered on this device's own
    response topic).  A failing handler is logged and never kills paho's thread."""
    name = topics.parse_command(message.topic)
    grouped = None if name is not None else topics.parse_group_command(message.topic, groups)
    if grouped is not None and on_command is not None:
        count("commands_received")
        try:
            on_command(grouped[1], bytes(message.payload), retained=bool(message.retain), group=grouped[0])
        except Exception:  # a failing handler must not kill paho's network thread
            log.exception("command handler failed for %s", grouped[1])
        return
    if name is None or on_command is None:
        count("commands_ignored")
        log.warning("ignored unexpected message on %s", message.topic)
        return
    count("commands_received")
    try:
        if message.retain:
            on_command(name, bytes(message.payload), retained=True)
        else:
            on_command(name, bytes(message.payload))
    except Exception:  # a failing handler must not kill paho's network thread
        log.exception("command handler failed for %s", name)
