"""MQTT publisher: paho-mqtt 2.x client that sends everything through the durable outbox and receives commands.

API (stable; the daemon calls exactly these)::

    outbox = Outbox.from_config(cfg.outbox)
    pub = MqttPublisher(cfg, outbox, on_command=handler)   # handler(name: str, payload: bytes) -> None
    pub.start()                                             # connect in the background, retrying with backoff
    pub.set_status(encode(status_message(...)))             # retained .../status, published now
    MqttPublisher(..., status_source=daemon.status_payload) # builds the status sent at every (re)connect
    pub.publish_message(MessageKind.PREDICTION, msg)       # -> outbox id (or None if only sent live)
    pub.publish_message(MessageKind.COMMAND_RESPONSE, msg, command="capture_dark")
    pub.publish(topic, payload, qos=None, retain=False, priority=Priority.NORMAL) -> int | None
    pub.stats() -> PublisherStats, pub.connected, pub.wait_connected(timeout_s), pub.wait_until_drained(timeout_s)
    pub.stop(flush_timeout_s=None)   # deliver the backlog (bounded), publish 'offline' retained, disconnect

Delivery: every message is committed to the :class:`~edge.publish.outbox.Outbox` first and deleted only when the
broker acknowledges it; live messages and the backlog (what the outbox held at connect) are two ordered streams;
paho reconnects with full jitter (:mod:`firmware_bridge.backoff`) and retransmits what was in flight (nothing newer
goes out until those are acknowledged or :data:`RESYNC_TIMEOUT_S` passes); the retained ``.../status`` never goes
through the outbox; commands reach ``on_command`` on paho's network thread.  How each of these works (the mid to
outbox id mapping and its locks, outbox trouble, status, commands, bounded input, health, moving to another broker)
is in ``docs/mqtt.md``, "How the publisher delivers".

Security: TLS with a CA file and an optional client certificate (``ssl.create_default_context``, hostname checked
unless ``mqtt.tls.check_hostname = false``), username with password or password file (:mod:`edge.publish.client`).

Parts: the paho client, its CONNECT arguments, the reconnect jitter and the takeover detection are in
:mod:`edge.publish.client`; the in-flight ledger and the counters in :mod:`edge.publish.inflight`; the retained
status in :mod:`edge.publish.status`; the checks of what a caller publishes and the accounting of what the outbox
refuses in :mod:`edge.publish.outgoing`.  This module keeps the live/backlog order, the drain and paho's callbacks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge.errors import OutboxError
from edge.publish.client import (
    BrokerRotation,
    CommandHandler,
    ReconnectJitter,
    TakeoverWatch,
    TokenBucket,
    build_client,
    connect_kwargs,
    deliver_command,
    network_thread_died,
    subscribe_commands,
)
from edge.publish.inflight import InFlight, PublisherStats
from edge.publish.messages import PRIORITY_OF_KIND, Priority
from edge.publish.outbox import Outbox
from edge.publish.outgoing import OutboxRefusals, check_publish, encode_batch
from edge.publish.schema import MessageError, MessageKind, encode
from edge.publish.status import StatusChannel, offline_status
from edge.publish.topics import Topics

if TYPE_CHECKING:
    from edge.config import EdgeConfig

__all__ = ["MqttPublisher", "PublisherStats", "CommandHandler", "RESYNC_TIMEOUT_S"]

log = logging.getLogger(__name__)

#: After a reconnect, how long messages in flight before the outage may take to be re-acknowledged.
RESYNC_TIMEOUT_S = 5.0
#: How often the drain thread looks at the outbox when nothing wakes it.
DRAIN_POLL_S = 0.25
#: Acknowledged messages the drain deletes in one transaction before it is woken for them (otherwise it deletes
#: them on its next poll, at most DRAIN_POLL_S after their PUBACK: one commit per poll instead of per message).
ACK_BATCH_MAX = 64

class MqttPublisher:
    """Store-and-forward MQTT publisher of one device (see the module docstring).

    Parameters
    ----------
    config : EdgeConfig
        Uses ``mqtt`` (connection), ``outbox`` (drain rate, in-flight window, flush timeout), ``device`` (topics)
        and ``commands.enabled``.
    outbox : Outbox
        The durable outbox (opened by the caller, who also closes it after :meth:`stop`).
    on_command : callable(name, payload), optional
        Called on paho's network thread for every message on ``.../cmd/<name>``; must not block.
    client : paho.mqtt.client.Client, optional
        A pre-built client (tests); default :func:`build_client`.
    status_source : callable() -> dict, optional
        Builds the current ``online`` status payload (:func:`edge.publish.messages.status_message`); called on paho's
        network thread at every connect, so a reconnect publishes the state and alerts of now with a fresh
        time.  Without it (or when it returns None or fails) the last payload given to :meth:`set_status` is sent.
    rng : random.Random, optional
        Random source of the reconnect jitter (tests pin it); default seeded by the OS, so that devices differ.
    retained_source : callable(full=bool) -> list of (topic, payload), optional
        Further retained messages (Home Assistant discovery): all of them (``full=True``) are published with the
        status at every connect, the changed ones (``full=False``) with every later status.
    """

    def __init__(self, config: EdgeConfig, outbox: Outbox, *, on_command: CommandHandler | None = None,
                 client: paho.Client | None = None,
                 status_source: Callable[[], Mapping[str, Any] | None] | None = None,
                 rng: random.Random | None = None,
                 retained_source: Callable[..., list[tuple[str, bytes]]] | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.topics = Topics.from_config(config)
        self._on_command = on_command
        self._qos = config.mqtt.qos
        self._window = config.outbox.max_inflight
        # The backlog may fill only part of the in-flight window, so live messages always find room.
        self._drain_window = max(1, (self._window * 3) // 4)
        self._bucket = TokenBucket(config.outbox.drain_rate_msgs_per_s)
        self._client = self._attach(client if client is not None else build_client(config))

        # The in-flight ledger and the counters; its lock (also guarding _pending_switch) is never held while calling
        # into paho or the outbox.  The live/backlog boundary further down is changed under _publish_lock.
        self._inflight = InFlight()
        self._map_lock = self._inflight.lock
        # _publish_lock serialises "store, then maybe send live" (publish) with the drain's live phase, so the live
        # stream leaves in id order.  Live = ids above _cutoff_id, fixed at each connect; the backlog is the rest.
        self._publish_lock = threading.Lock()
        self._refusals = OutboxRefusals(self._inflight.count)  # counted, one log line a minute
        self._cutoff_id = 0
        self._live_ready = False  # a cutoff was fixed for the current connection
        self._live_behind = False  # a live message is waiting in the outbox: newer ones must queue behind it
        self._backlog_done = False
        self._status = StatusChannel(self.topics.status, self._send_retained_message, status_source, retained_source)
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drain_thread: threading.Thread | None = None
        self._started = False
        self._takeover = TakeoverWatch()
        self._pending_switch: tuple[paho.Client, EdgeConfig] | None = None
        self._retry = ReconnectJitter(rng if rng is not None else random.Random())
        self._brokers = BrokerRotation(config.mqtt.addresses())
        self._switching = False
        self._replacing_client = False  # _do_switch is between stopping the old client and starting the new one

    def _attach(self, client: paho.Client) -> paho.Client:
        """Set the in-flight window, callbacks and last will of a new paho client."""
        client.max_inflight_messages_set(self._window)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.will_set(self.topics.status, offline_status(self.config.device.device_id, "connection lost"), qos=1,
                        retain=True)
        return client

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start connecting in the background (paho loop thread) and the backlog drain thread."""
        if self._started:
            raise RuntimeError("MqttPublisher.start() called twice")
        self._started = True
        self._client.connect_async(**connect_kwargs(self.config))
        self._client.loop_start()
        self._drain_thread = threading.Thread(target=self._drain_loop, name="mqtt-drain", daemon=True)
        self._drain_thread.start()
        m = self.config.mqtt
        others = len(self._brokers.addresses) - 1
        log.info("MQTT %s client %s connecting to %s%s%s", m.protocol, m.client_id, self._brokers.current,
                 " over TLS" if m.tls.enabled else "", f" (then {others} other broker(s) in turn)" if others else "")

    def stop(self, flush_timeout_s: float | None = None) -> None:
        """Deliver the backlog for at most ``flush_timeout_s`` (default ``outbox.flush_timeout_s``), publish the
        retained ``offline`` status, disconnect cleanly and stop the threads.  Undelivered messages stay in the
        outbox for the next start."""
        if not self._started or self._stopping.is_set():
            return
        if self.failure() is not None:  # nothing can be delivered: do not wait for a flush that cannot happen
            self._connected.clear()
        timeout = self.config.outbox.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._connected.is_set() and not self._drained():
            self._wake.set()
            time.sleep(DRAIN_POLL_S)
        self._stopping.set()
        self._wake.set()
        if self._drain_thread is not None:
            self._drain_thread.join()
        self._status.going_offline()
        if self._connected.is_set():
            info = self._send(self.topics.status, offline_status(self.config.device.device_id, None), 1, True, None)
            if info is not None:
                try:
                    info.wait_for_publish(timeout=min(2.0, max(timeout, 0.1)))
                except (RuntimeError, ValueError) as exc:  # not queued or connection lost meanwhile
                    log.warning("offline status not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._live_ready = False
        self._flush_acks()
        log.info("MQTT publisher stopped, %d messages left in the outbox", len(self.outbox))

    def failure(self) -> str | None:
        """Why this running publisher can no longer deliver anything (a thread of it died), or None when healthy.

        paho's network thread (``loop_start``) ends only on :meth:`stop` or a broker switch; anything else that ends
        it (a ``MemoryError`` while it buffers an incoming packet, a bug) leaves a client that never reconnects.
        The daemon's watchdog polls this and exits non-zero, so the service manager restarts the process.
        """
        if not self._started or self._stopping.is_set():
            return None
        drain = self._drain_thread
        if drain is not None and not drain.is_alive():
            return "the MQTT outbox drain thread died"
        if self._replacing_client or self._pending_switch is not None:
            return None
        if network_thread_died(self._client):
            return "the MQTT network thread (paho) died"
        return None

    def switch_broker(self, config: EdgeConfig) -> None:
        """Move to the connection settings in ``config.mqtt`` (host, port, TLS, credentials, ...) without losing a
        message; used by the daemon's configuration reload (SIGHUP).

        The new client is built here, so settings that cannot work (a missing certificate, an unreadable password
        file) raise before anything changes.  The drain thread then disconnects the old client, forgets what was in
        flight on it (those messages were not acknowledged, so they are still in the outbox and go out again as
        backlog: duplicates at most, never a loss) and connects the new one; live publishing waits in the outbox
        meanwhile.  Topics (``topic_prefix``, the device levels) and ``qos`` are not switched: they need a restart.

        Raises
        ------
        ssl.SSLError, OSError, ValueError
            The new TLS or credential settings cannot be loaded; the old connection is untouched.
        RuntimeError
            The publisher is not running.
        """
        if not self._started or self._stopping.is_set():
            raise RuntimeError("switch_broker() needs a running publisher")
        client = build_client(config)
        with self._map_lock:
            self._pending_switch = (client, config)
        self._wake.set()

    def _do_switch(self) -> None:
        """In the drain thread: replace the client by the pending one (see :meth:`switch_broker`)."""
        with self._map_lock:
            pending, self._pending_switch = self._pending_switch, None
        if pending is None:
            return
        client, config = pending
        self._replacing_client = True
        try:
            self._replace_client(client, config)
        finally:
            self._replacing_client = False

    def _replace_client(self, client: paho.Client, config: EdgeConfig) -> None:
        old = self._client
        self._live_ready = False  # publish() stores only, from now until the new connection's cutoff
        self._switching = True
        try:
            # Not under _publish_lock: the old loop thread may be in _on_connect, which takes it.
            old.disconnect()
            old.loop_stop()
        finally:
            self._switching = False
        with self._publish_lock:
            self._connected.clear()
            self._live_ready = False
            dropped = self._inflight.forget()
            self._backlog_done = False
            self._live_behind = False
            self.config = config
            self._brokers = BrokerRotation(config.mqtt.addresses())
            self._client = self._attach(client)
        m = config.mqtt
        log.info("switching to the MQTT broker %s%s (%d unacknowledged message(s) will be sent again)",
                 self._brokers.current, " over TLS" if m.tls.enabled else "", dropped)
        client.connect_async(**connect_kwargs(config))
        client.loop_start()

    def __enter__(self) -> MqttPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------- publishing

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the next disconnect."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected or ``timeout_s`` passes; return whether connected."""
        return self._connected.wait(timeout_s)

    def set_status(self, payload: bytes) -> None:
        """Set the retained ``.../status`` payload: published now when connected; at every connect the
        ``status_source`` builds a fresh one (this payload is the fallback)."""
        self._status.set(payload)

    def publish_message(self, kind: MessageKind, message: Mapping[str, Any], *,
                        command: str | None = None) -> int | None:
        """Encode and publish a payload built by :mod:`edge.publish.messages` on its topic with its priority.

        ``STATUS`` goes to :meth:`set_status` (never through the outbox) and returns None.
        """
        payload = encode(message)
        if kind is MessageKind.STATUS:
            self.set_status(payload)
            return None
        return self.publish(self.topics.for_kind(kind, command), payload, priority=PRIORITY_OF_KIND[kind])

    def publish(self, topic: str, payload: bytes, *, qos: int | None = None, retain: bool = False,
                priority: Priority = Priority.NORMAL) -> int | None:
        """Store ``payload`` in the outbox and send it now if connected; return its outbox id.

        Returns None when the outbox could not store it (it was then sent live without durability if
        connected, or counted as lost); never raises on broker or disk trouble.

        Raises
        ------
        ValueError
            Caller mistakes: a topic with wildcards or empty, QoS not 0..2, payload too large or not bytes.
        """
        q = self._qos if qos is None else qos
        check_publish(topic, payload, q)
        with self._publish_lock:
            try:
                stored: int | OutboxError = self.outbox.put(topic, bytes(payload), q, retain, priority)
            except OutboxError as exc:
                stored = exc
            return self._after_put(topic, bytes(payload), q, retain, stored)

    def publish_messages(self, messages: Sequence[tuple[MessageKind, Mapping[str, Any], str | None]],
                         ) -> list[int | None | MessageError]:
        """Encode and publish several payloads (not ``STATUS``) in order: one outbox transaction for all of them
        (:meth:`edge.publish.outbox.Outbox.put_many`), then each is sent as :meth:`publish` would.

        Returns, per message, its outbox id, None (not stored: sent live or counted as lost, as :meth:`publish`),
        or the :class:`edge.errors.MessageError` that kept it from being encoded (the others go out regardless).
        """
        results, batch = encode_batch(messages, self.topics)
        if not batch:
            return results
        q = self._qos
        with self._publish_lock:
            stored = self.outbox.put_many([(t, p, q, False, prio) for _, t, p, prio in batch])
            for (i, topic, payload, _), outcome in zip(batch, stored):
                results[i] = self._after_put(topic, payload, q, False, outcome)
        return results

    def _after_put(self, topic: str, payload: bytes, q: int, retain: bool, stored: int | OutboxError) -> int | None:
        """What follows the outbox's answer for one message (called under ``_publish_lock``): send it live when
        the way is clear, leave it to the drain otherwise; a message the outbox refused is sent live without
        durability when connected, else counted as lost."""
        if isinstance(stored, OutboxError):
            connected = self._connected.is_set()
            self._refusals.refused(stored, connected=connected)
            if connected:
                self._send(topic, payload, q, retain, None)
            return None
        oid = stored
        if (self._connected.is_set() and self._live_ready and not self._live_behind
                and self._inflight.claim(oid, q, self._window, live=True)):
            self._inflight.count("sent_live")
            self._send(topic, payload, q, retain, oid)
        else:
            if self._live_ready:
                self._live_behind = True
            self._wake.set()
        return oid

    def wait_until_drained(self, timeout_s: float) -> bool:
        """Block until the outbox is empty and nothing is in flight, or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._drained():
                return True
            self._wake.set()
            time.sleep(DRAIN_POLL_S)
        return self._drained()

    def stats(self) -> PublisherStats:
        """Snapshot of the counters."""
        return self._inflight.stats(connected=self._connected.is_set(), broker_index=self._brokers.index)

    # ------------------------------------------------------------------------------------------- internals

    def _drained(self) -> bool:
        return not self._inflight.busy() and len(self.outbox) == 0

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool,
              oid: int | None) -> paho.MQTTMessageInfo | None:
        """Hand one message to paho and map its mid to the outbox id (``None`` for messages not stored)."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, TypeError) as exc:
            log.error("paho refused message %s on %s: %s; dropping it", oid, topic, exc)
            if oid is not None:
                self._complete(oid, ReasonCode(PacketTypes.PUBACK, identifier=0x80))
            return None
        queued = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0)
        if not queued:
            log.debug("paho did not queue message %s (rc=%s); it stays in the outbox", oid, info.rc)
            if oid is not None:  # make sure the drain picks it up again
                self._inflight.unclaim(oid)
                if oid > self._cutoff_id:
                    self._live_behind = True
                else:
                    self._backlog_done = False
            self._wake.set()
            return None
        early = self._inflight.sent(info.mid, oid)
        if early is not None:
            self._complete(oid, early)
        return info

    def _send_retained_message(self, topic: str, payload: bytes) -> paho.MQTTMessageInfo | None:
        """Send a retained message at QoS 1 outside the outbox (the status and what goes with it)."""
        return self._send(topic, payload, 1, True, None)

    def _complete(self, oid: int | None, reason: ReasonCode | int) -> None:
        failed = isinstance(reason, ReasonCode) and reason.is_failure
        if failed:
            log.error("broker refused message %s: %s", oid, reason)
        if oid is None:
            return
        unflushed = self._inflight.complete(oid, failed=failed)
        # The drain deletes acknowledged messages in batches on its next poll; it is woken now only when the freed
        # slot lets it send something, or when the batch is full.
        if (self._live_behind or not self._backlog_done or self._inflight.resync_pending()
                or unflushed >= ACK_BATCH_MAX):
            self._wake.set()

    def _flush_acks(self) -> None:
        ids = self._inflight.unflushed()
        if not ids:
            return
        try:
            self.outbox.ack(ids)
        except OutboxError as exc:
            self._inflight.count("outbox_errors")
            log.error("cannot mark %d delivered messages in the outbox (will retry): %s", len(ids), exc)
            return
        self._inflight.flushed(ids)

    def _drain_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(DRAIN_POLL_S)
            self._wake.clear()
            try:
                if self._pending_switch is not None:
                    self._do_switch()
                if self._status.due and self._connected.is_set():
                    self._status.send_at_connect(self._connected.is_set)
                self._flush_acks()
                if not self._connected.is_set():
                    continue
                if self._inflight.resyncing():
                    continue
                self._drain_live()
                self._drain_backlog()
            except OutboxError as exc:
                self._inflight.count("outbox_errors")
                log.error("outbox drain failed (will retry): %s", exc)
                self._stopping.wait(1.0)
            except Exception:  # the drain thread must survive anything; a dead drain loses the backlog
                log.exception("unexpected error in the outbox drain thread")
                self._stopping.wait(1.0)

    def _drain_live(self) -> None:
        """Send live messages that had to wait (window full, resync), in id order, without rate limit."""
        if not self._live_behind:
            return
        with self._publish_lock:
            room, exclude = self._inflight.room(self._window)
            if room <= 0:
                return
            batch = self.outbox.pending(room, exclude=exclude, after_id=self._cutoff_id)
            if not batch:
                self._live_behind = False  # caught up: publish() may send directly again
                return
            claimed = [m for m in batch if self._inflight.claim(m.id, m.qos, self._window, live=False)]
        # Sent outside the lock: publish() queues behind us while _live_behind is set.
        for msg in claimed:
            self._send(msg.topic, msg.payload, msg.qos, msg.retain, msg.id)
        if claimed:
            self._inflight.count("sent_live", len(claimed))
            self._wake.set()

    def _drain_backlog(self) -> None:
        """Replay the messages stored before this connection, oldest first, rate-limited."""
        if self._backlog_done:
            return
        room, exclude = self._inflight.room(self._drain_window)
        if room <= 0:
            return
        budget = min(room, self._bucket.available())
        if budget <= 0:
            return
        batch = self.outbox.pending(budget, exclude=exclude, max_id=self._cutoff_id)
        if not batch:
            # re-checked until the last backlog message is acknowledged
            self._backlog_done = not self._inflight.any_in_flight_up_to(self._cutoff_id)
            return
        sent = 0
        for msg in batch:
            if self._stopping.is_set() or not self._connected.is_set():
                break
            if self._inflight.claim(msg.id, msg.qos, self._drain_window, live=False):
                self._send(msg.topic, msg.payload, msg.qos, msg.retain, msg.id)
                sent += 1
        self._bucket.take(sent)
        if sent:
            self._inflight.count("sent_backlog", sent)

    # ------------------------------------------------------------------------------------- paho callbacks

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode,
                    properties: Any) -> None:
        if reason_code.is_failure:
            self._inflight.count("connect_failures")
            log.error("broker refused the connection: %s", reason_code)
            return
        self._retry.reset()
        resending = self._inflight.connected(RESYNC_TIMEOUT_S)
        self._takeover.connected()
        # Fix the live/backlog boundary before anyone sees the connection.  Taking _publish_lock here is safe:
        # its holders call paho.publish, which never waits for a lock paho holds while running on_connect.
        with self._publish_lock:
            self._cutoff_id = self.outbox.last_id
            self._backlog_done = False
            self._live_behind = False
            self._live_ready = True
        log.info("connected to the MQTT broker %s (session present: %s, %d messages to re-send, %d in the outbox)",
                 self._brokers.current, getattr(flags, "session_present", "?"), resending, len(self.outbox))
        if self.config.commands.enabled and self._on_command is not None:
            subscribe_commands(client, self.topics.command_filter, self.config.mqtt.protocol)
            if self.config.deploy.enabled:  # deployments sent to a group this device belongs to
                for group in self.config.deploy.groups:
                    subscribe_commands(client, self.topics.group_command_filter(group), self.config.mqtt.protocol)
        self._status.due = True  # the drain thread publishes the current status first thing
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._inflight.count("connect_failures")
        self._retry.schedule(client, self.config.mqtt)
        left = self._brokers.advance(client)
        self._inflight.count("broker_failovers", int(left is not None))
        log.warning("cannot connect to the MQTT broker %s; %s with backoff", left or self._brokers.current,
                    f"trying {self._brokers.current} next," if left else "retrying")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode,
                       properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._live_ready = False
        self._status.connection_lost()
        # Closed before its CONNACK (a TLS client certificate refused, ...): a failed attempt, not a disconnect.
        self._inflight.disconnected(was_connected=was_connected)
        if self._stopping.is_set():
            return
        self._retry.schedule(client, self.config.mqtt)
        left = None if self._switching else self._brokers.advance(client)
        if left is not None:
            self._inflight.count("broker_failovers")
            log.warning("the next attempt goes to the MQTT broker %s (after %s)", self._brokers.current, left)
        if was_connected and not self._switching:
            before = self._takeover.taken_over
            self._takeover.disconnected(reason_code, self.config.mqtt.client_id)
            self._inflight.count("sessions_taken_over", self._takeover.taken_over - before)
        if self._switching:
            log.info("disconnected from the old MQTT broker to switch brokers")
        elif was_connected:
            log.warning("disconnected from the MQTT broker (%s); messages wait in the outbox", reason_code)
        else:
            log.warning("connection to the MQTT broker closed before CONNACK (%s); retrying", reason_code)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Any) -> None:
        known, oid = self._inflight.acknowledged(mid, reason_code)
        if known:  # else publish() has not returned yet: InFlight.sent completes it
            self._complete(oid, reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        deliver_command(message, self.topics, self.config.deploy.groups, self._on_command, self._inflight.count)
