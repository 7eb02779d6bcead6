"""The MQTT side of the daemon: :class:`Link`, what the daemon needs of it, and :class:`MqttLink`, that link over
the durable outbox (:mod:`edge.publish.outbox`) and the MQTT client (:mod:`edge.publish.mqtt`)."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

from edge.daemon.values import OutgoingTuple
from edge.errors import EdgeError
from edge.publish.schema import MessageKind

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.config import EdgeConfig
    from edge.publish.mqtt import CommandHandler

log = logging.getLogger("edge.daemon")


class Link(Protocol):
    """What the daemon needs from the MQTT side (implemented over :mod:`edge.publish.mqtt`)."""

    def start(self) -> None: ...

    def publish(self, kind: MessageKind, message: dict[str, Any], *, command: str | None = None) -> None: ...

    def publish_many(self, messages: Sequence[OutgoingTuple]) -> list[EdgeError | None]:
        """Publish several non-STATUS messages in order (one outbox transaction); per message the error that kept
        it from being stored or sent, or None."""
        ...

    def stop(self, flush_timeout_s: float) -> None: ...

    def stats(self) -> Mapping[str, Any]: ...

    def switch_broker(self, config: "EdgeConfig") -> None: ...


class MqttLink:
    """:class:`Link` over the durable :class:`edge.publish.outbox.Outbox` and :class:`edge.publish.mqtt.MqttPublisher`.

    Parameters
    ----------
    config : EdgeConfig
        Uses ``outbox`` and ``mqtt`` (through the publisher).
    on_command : callable(name, payload, *, retained=False)
        Called on paho's network thread for every command message (:class:`edge.publish.mqtt.CommandHandler`).
    status_source : callable() -> dict, optional
        Builds the current status payload; the publisher calls it at every (re)connect.
    retained_source : callable(full=bool) -> list of (topic, payload), optional
        Further retained messages sent with the status (Home Assistant discovery;
        :class:`edge.publish.mqtt.MqttPublisher`).
    """

    def __init__(
        self,
        config: "EdgeConfig",
        on_command: "CommandHandler",
        status_source: Callable[[], Mapping[str, Any] | None] | None = None,
        retained_source: Callable[..., list[tuple[str, bytes]]] | None = None,
    ) -> None:
        from edge.publish.mqtt import MqttPublisher
        from edge.publish.outbox import Outbox

        self.outbox = Outbox.from_config(config.outbox)
        try:
            self.publisher = MqttPublisher(config, self.outbox, on_command=on_command, status_source=status_source,
                                           retained_source=retained_source)
        except BaseException:
            self.outbox.close()
            raise
        if len(self.outbox):
            log.info("outbox holds %d message(s) from a previous run; they are sent first", len(self.outbox))

    def start(self) -> None:
        self.publisher.start()

    def publish(self, kind: MessageKind, message: dict[str, Any], *, command: str | None = None) -> None:
        self.publisher.publish_message(kind, message, command=command)

    def publish_many(self, messages: Sequence[OutgoingTuple]) -> list[EdgeError | None]:
        return [r if isinstance(r, EdgeError) else None for r in self.publisher.publish_messages(messages)]

    def stop(self, flush_timeout_s: float) -> None:
        try:
            self.publisher.stop(flush_timeout_s)
        finally:
            self.outbox.close()

    def switch_broker(self, config: "EdgeConfig") -> None:
        self.publisher.switch_broker(config)

    def failure(self) -> str | None:
        """Why the MQTT side can no longer deliver (a dead network or drain thread), or None."""
        return self.publisher.failure()

    def outbox_full(self) -> bool:
        """The outbox's alert flag (``outbox_full`` of :meth:`stats`) without building the whole snapshot."""
        try:
            return self.outbox.stats().full
        except EdgeError:  # pragma: no cover - a closed or broken outbox
            return False

    def stats(self) -> Mapping[str, Any]:
        out: dict[str, Any] = {f"mqtt_{k}": v for k, v in dataclasses.asdict(self.publisher.stats()).items()}
        try:
            ob = self.outbox.stats()
        except EdgeError:  # pragma: no cover - a closed or broken outbox
            return out
        out.update({f"outbox_{k}": v for k, v in dataclasses.asdict(ob).items()})
        return out

