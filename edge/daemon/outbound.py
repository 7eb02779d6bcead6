"""Every message the daemon sends, on its way to the link: :class:`Outbound` takes the stages' messages (``emit``),
commits those of the inference thread itself, batch by batch, and hands the others' to the publisher thread through
the messages queue; a status is built again at the moment it is sent."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from edge.daemon.link import Link
from edge.daemon.values import OutgoingTuple, _Outgoing
from edge.errors import EdgeError
from edge.metrics import Counters
from edge.publish.schema import MessageKind
from edge.queues import BoundedQueue

log = logging.getLogger("edge.daemon")


class Outbound:
    """The daemon's messages to the link, in order, each counted (``messages_<kind>``, ``messages_failed``).

    Parameters
    ----------
    link : Link
        Where messages go (durable publishing through the outbox).
    counters : Counters
        Where sent and failed messages are counted.
    status_payload : callable(state) -> dict
        Builds the retained status now (a queued status is built again when it is sent).
    on_response : callable(message)
        Told every command response before it is sent (the audit trail's verdict).
    messages_max : int
        Bound of the messages queue (``queues.messages_max``; a full queue blocks, never drops).
    """

    def __init__(self, link: Link, counters: Counters, status_payload: Callable[[str], dict[str, Any]],
                 on_response: Callable[[Mapping[str, Any]], None], messages_max: int) -> None:
        self.link = link
        self._counters = counters
        self._status_payload = status_payload
        self._on_response = on_response
        self.messages: BoundedQueue[_Outgoing] = BoundedQueue(messages_max, "block")
        self._status_lock = threading.Lock()
        #: The inference thread's id: what it emits is committed by itself, not queued for the publisher.
        self.inference_ident: int | None = None
        #: Messages the inference thread emitted during the batch it is working on (None between batches).
        self._batch_out: list[_Outgoing] | None = None

    def emit(self, kind: MessageKind, message: dict[str, Any], command: str | None = None) -> None:
        """Send a message (any thread): the inference thread's at the end of its batch, others' through the
        publisher thread."""
        if kind is MessageKind.COMMAND_RESPONSE:
            self._on_response(message)  # every command's verdict passes here, accepted or refused
        out = _Outgoing(kind, message, command)
        if threading.get_ident() == self.inference_ident:
            if self._batch_out is not None:
                self._batch_out.append(out)  # published, in order, when the batch ends (flush_batch)
            else:
                self.publish(out)
        else:
            self.messages.put(out, droppable=False)

    def publish_status(self) -> None:
        """Publish the status because something in it changed (any thread; see :meth:`publish`)."""
        self.emit(MessageKind.STATUS, self._status_payload("online"))

    def begin_batch(self) -> None:
        """The inference thread starts a batch: what it emits is kept until :meth:`flush_batch`."""
        self._batch_out = []

    def flush_batch(self, before_last: Callable[[], None] | None = None) -> None:
        """Publish what the inference thread emitted during one batch, in order: runs of outbox messages through
        ``link.publish_many`` (one outbox transaction each), a status on its own (inference thread).
        ``before_last`` is called right before the batch's last outbox commit (or at the end when none): the
        device seq mark staged then is committed with it (:mod:`edge.daemon.seq_mark`)."""
        pending, self._batch_out = self._batch_out or [], None
        last = max((i for i, o in enumerate(pending) if o.kind is not MessageKind.STATUS), default=-1)
        run: list[_Outgoing] = []
        for i, out in enumerate([*pending, None]):
            if out is not None and out.kind is not MessageKind.STATUS:
                run.append(out)
                continue
            if before_last is not None and i - 1 == last:
                before_last()
                before_last = None
            publish_many: Callable[[list[OutgoingTuple]], list[EdgeError | None]] | None = getattr(
                self.link, "publish_many", None)  # a test's link may lack it
            if len(run) == 1 or (run and publish_many is None):
                for o in run:
                    self._send(o)
            elif run and publish_many is not None:
                errors = publish_many([(o.kind, o.message, o.command) for o in run])
                for o, exc in zip(run, errors):
                    if exc is None:
                        self._counters.incr(f"messages_{o.kind.value}")
                    else:
                        self._counters.incr("messages_failed")
                        log.error("message %s could not be stored or sent: %s", o.kind.value, exc)
            run = []
            if out is not None:
                self.publish(out)

    def publish(self, out: _Outgoing) -> None:
        if out.kind is MessageKind.STATUS:
            # Built again now, under a lock: the last status published is the last one built, so the retained
            # status is never older than the state it describes (one queued by another thread could otherwise
            # overtake a newer one).
            with self._status_lock:
                self._send(_Outgoing(MessageKind.STATUS, self._status_payload(out.message.get("state", "online"))))
            return
        self._send(out)

    def _send(self, out: _Outgoing) -> None:
        try:
            self.link.publish(out.kind, out.message, command=out.command)
            self._counters.incr(f"messages_{out.kind.value}")
        except EdgeError as exc:
            self._counters.incr("messages_failed")
            log.error("message %s could not be stored or sent: %s", out.kind.value, exc)

    def publisher_loop(self) -> None:
        """The publisher thread: commit the other threads' messages until the queue is closed and empty (it sleeps
        until a message comes or the queue is closed: no idle wake-ups)."""
        while True:
            out = self.messages.get()
            if out is None:
                if self.messages.closed:
                    break
                continue
            self.publish(out)
