"""Remote commands: :class:`CommandControl` validates each command message on paho's thread (or refuses it:
counted, logged, answered), queues it in its lane (:mod:`edge.command_queue`) and executes it on the housekeeping
thread: a bundle reload, a reference capture (an order for the inference thread) or a device setting."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.command_queue import CommandQueue, RefusalReason, Refusals
from edge.daemon.capture import capture_order
from edge.daemon.shadow import SHADOW_COMMANDS
from edge.daemon.values import _Capture
from edge.errors import EdgeError, StaleCommandError
from edge.metrics import Counters
from edge.publish.messages import command_response_message
from edge.publish.schema import MessageKind
from edge.references import ReferenceKind
from firmware_bridge.frames import CommandCode

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.config import EdgeConfig
    from edge.control_samples import ControlCharts
    from edge.daemon.drift_events import ResetOrder

log = logging.getLogger("edge.daemon")


class CommandControl:
    """Commands in, from validation to execution.

    Parameters
    ----------
    config : callable() -> EdgeConfig
        The configuration now (``commands.*`` for the parser, ``bundle.path`` for a reload without a path).
    device_id : str
        This daemon's device id (commands name it; responses carry it).
    queue : CommandQueue
        The command lanes (signed commands first).
    refusals : Refusals
        Refuses a command: counted, logged, answered within a budget.
    counters : Counters
        Where executed commands are counted (``commands_<name>``).
    audit : callable(event, details)
        Writes an audit record (every accepted command).
    reload : callable(path, *, request_id, command, reason)
        A verified bundle reload (:meth:`edge.daemon.reload.BundleReloader.reload`).
    order_capture : callable(_Capture) -> bool
        Hands a capture order to the inference thread; False when too many are pending.
    send_command : callable(code, value) -> bool
        Sends a command to the device; False when the serial port is not available.
    emit : callable(kind, message, command)
        Sends a message (a command response).
    respond_error : callable(command, request_id, error)
        Answers a command with an error.
    reset_drift : callable(ResetOrder) -> bool, optional
        Hands ``reset_drift`` to the inference thread; False when too many are pending.
    """

    def __init__(self, *, config: Callable[[], "EdgeConfig"], device_id: str, queue: CommandQueue,
                 refusals: Refusals, counters: Counters, audit: Callable[[str, Mapping[str, Any]], None],
                 reload: Callable[..., object], order_capture: Callable[[_Capture], bool],
                 send_command: Callable[[CommandCode, int], bool],
                 emit: Callable[[MessageKind, dict[str, Any], str | None], None],
                 respond_error: Callable[[str, str | None, str], None],
                 tag_sample: Callable[[str, int, str | None], float] | None = None,
                 control: "ControlCharts | None" = None,
                 deploy: Callable[[str, Any], None] | None = None,
                 shadow: Callable[[str, Any], None] | None = None,
                 reset_drift: "Callable[[ResetOrder], bool] | None" = None) -> None:
        self._config = config
        self._device_id = device_id
        self.queue = queue
        self._refusals = refusals
        self._counters = counters
        self._audit = audit
        self._reload = reload
        self._order_capture = order_capture
        self._send_command = send_command
        self._emit = emit
        self._respond_error = respond_error
        self._tag_sample = tag_sample  # edge.archive.Archive.tag; None when [archive] is off
        self._control = control  # edge.control_samples.ControlCharts; None when [control] declares no standard
        self._shadow = shadow  # edge.daemon.shadow.ShadowMode.execute: load/promote/drop_challenger, reference_value
        self._parser: Any = None
        self._deploy = deploy  # edge.daemon.deploy.DeployControl.execute; None when [deploy] is off
        self._group_parsers: dict[str, Any] = {}
        self._reset_drift = reset_drift  # edge.daemon.drift_events.DriftBaselines.order (the inference thread resets)

    def on_command(self, name: str, payload: bytes, *, retained: bool = False, group: str | None = None) -> None:
        """Validate a command message (paho's thread: parse, then hand over) or refuse it (:meth:`Refusals.refuse`:
        counted, logged, answered within a budget).  A retained message is refused unread: it would run again at
        every reconnect.  A message on a deployment group's topic (``group``) must be a deploy command whose
        ``device_id`` is ``group:<group>``."""
        from edge.commands import CommandParser
        from edge.deploy.args import DEPLOY_COMMANDS, chunk_payload_limit

        if retained:
            self._refusals.refuse(
                RefusalReason.RETAINED, name, CommandParser.peek_request_id(payload),
                "refused: delivered as a retained MQTT message, which the broker would deliver again at every "
                "reconnect; publish commands with retain=false and clear this one with an empty retained message")
            return
        if group is not None and name not in DEPLOY_COMMANDS:
            self._refusals.refuse(RefusalReason.INVALID, name, CommandParser.peek_request_id(payload),
                                  f"command: expected one of {', '.join(DEPLOY_COMMANDS)} on the group topic of "
                                  f"{group!r}, got {name!r} (other commands go to one device)")
            return
        config = self._config()
        limits = {"deploy_chunk": chunk_payload_limit(config.deploy.max_chunk_bytes)} if config.deploy.enabled else {}
        if group is not None and group not in self._group_parsers:
            self._group_parsers[group] = CommandParser(config.commands, device_id=f"group:{group}",
                                                       payload_limits=limits)
        if self._parser is None:
            self._parser = CommandParser(config.commands, device_id=self._device_id, payload_limits=limits)
        parser = self._parser if group is None else self._group_parsers[group]
        try:
            command = parser.parse(name, payload)
        except EdgeError as exc:
            reason = RefusalReason.STALE if isinstance(exc, StaleCommandError) else RefusalReason.INVALID
            self._refusals.refuse(reason, name, CommandParser.peek_request_id(payload), str(exc))
            return
        self.submit(command)

    def submit(self, command: Any) -> None:
        """Queue a validated :class:`edge.commands.RemoteCommand` (any thread) or refuse it when its lane is full."""
        if not self.queue.put(command):
            n = self.queue.pending(command.authenticated)
            lane = "signed" if command.authenticated else "unsigned"
            self._refusals.refuse(RefusalReason.QUEUE_FULL, command.name.value, command.request_id,
                                  f"too many commands pending ({n} {lane} command(s) queued); try again later",
                                  authenticated=command.authenticated)

    def execute(self, cmd: Any) -> None:
        """Carry out one queued command (housekeeping thread)."""
        from edge.commands import CommandName
        from edge.deploy.args import DEPLOY_COMMANDS

        name = cmd.name.value if hasattr(cmd.name, "value") else str(cmd.name)
        self._counters.incr(f"commands_{name}")
        log.info("command %s (request %s)", name, cmd.request_id)
        self._audit("command_accepted", {"command": name, "request_id": cmd.request_id,
                                         "authenticated": bool(cmd.authenticated),
                                         "signer": "hmac-sha256 (commands.hmac_key_path)" if cmd.authenticated
                                         else "none", "issued_at_unix_s": cmd.issued_at_unix_s})
        if cmd.name is CommandName.RELOAD_BUNDLE:
            path = cmd.args.path if cmd.args.path is not None else Path(self._config().bundle.path)
            self._reload(Path(path), request_id=cmd.request_id, command=name, reason=f"command {name}",
                         persist=cmd.args.path is not None)
        elif cmd.name in (CommandName.CAPTURE_DARK, CommandName.CAPTURE_REFERENCE):
            kind = ReferenceKind.DARK if cmd.name is CommandName.CAPTURE_DARK else ReferenceKind.WHITE
            order = capture_order(kind, int(cmd.args.average_frames), cmd.request_id, name)
            if not self._order_capture(order):
                self._respond_error(name, cmd.request_id, "too many commands pending")
        elif cmd.name is CommandName.SET_INTEGRATION_TIME:
            value = int(cmd.args.integration_time_us)
            ok = self._send_command(CommandCode.SET_INTEGRATION_TIME, value)
            if ok:
                self._emit(
                    MessageKind.COMMAND_RESPONSE,
                    command_response_message(
                        device_id=self._device_id,
                        command=name,
                        request_id=cmd.request_id,
                        ok=True,
                        result={
                            "integration_time_us": value,
                            "note": "references taken at another integration time now flag predictions "
                            "stale_reference until new ones are captured",
                        },
                    ),
                    name,
                )
            else:
                self._respond_error(name, cmd.request_id, "the serial port is not available")
        elif cmd.name is CommandName.TAG_SAMPLE:
            if self._tag_sample is None:
                self._respond_error(name, cmd.request_id, "expected [archive] enabled = true, got the archive off: "
                                    "there is nothing to tag")
            else:
                at = self._tag_sample(cmd.args.sample_id, int(cmd.args.frames), cmd.request_id)
                self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
                    device_id=self._device_id, command=name, request_id=cmd.request_id, ok=True,
                    result={"sample_id": cmd.args.sample_id, "frames": int(cmd.args.frames), "tagged_unix_s": at}),
                    name)
        elif cmd.name is CommandName.MEASURE_CONTROL:
            self._measure_control(name, cmd)
        elif cmd.name is CommandName.RESET_DRIFT and self._reset_drift is not None:
            from edge.daemon.drift_events import ResetOrder

            if not self._reset_drift(ResetOrder(cmd.args.detectors, cmd.args.reason, cmd.request_id, name)):
                self._respond_error(name, cmd.request_id, "too many commands pending")
        elif name in DEPLOY_COMMANDS:
            if self._deploy is None:
                self._respond_error(name, cmd.request_id, "expected [deploy] enabled = true, got deployment off on "
                                    "this device")
            else:
                self._deploy(name, cmd)
        elif name in SHADOW_COMMANDS and self._shadow is not None:
            self._shadow(name, cmd)
        else:  # pragma: no cover - the parser only yields known commands
            self._respond_error(name, cmd.request_id, f"unknown command {name}")

    def _measure_control(self, name: str, cmd: Any) -> None:
        """Arm the next ``frames`` predictions as measurements of a check standard; tag them in the archive
        (``control:<name>``) when it is on."""
        std, frames = cmd.args.name, int(cmd.args.frames)
        if self._control is None:
            self._respond_error(name, cmd.request_id, "expected [[control.standards]] in the configuration, got none: "
                                "there is no standard to measure")
            return
        if std not in self._control.standards:
            self._respond_error(name, cmd.request_id, f"args.name: expected one of the configured control standards "
                                f"({', '.join(sorted(self._control.standards))}), got {std!r}")
            return
        self._control.arm(std, frames, cmd.request_id)
        tagged = None
        if self._tag_sample is not None:
            tagged = self._tag_sample(f"control:{std}", frames, cmd.request_id)
        self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
            device_id=self._device_id, command=name, request_id=cmd.request_id, ok=True,
            result={"standard": std, "frames": frames, "pending": self._control.pending(),
                    "archive_tagged_unix_s": tagged}), name)
