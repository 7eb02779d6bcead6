"""Dark and white references: :class:`ReferenceCapture` holds the references in use, restores them at start, takes
the device's DARK/REFERENCE frames, runs capture commands (averaging several frames, with a deadline), asks the
device for missing references and saves each new one to its state file (inference thread)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.daemon.values import _Capture
from edge.metrics import Counters
from edge.publish.messages import command_response_message
from edge.publish.schema import MessageKind
from edge.references import (
    ReferenceKind,
    ReferenceSet,
    ReferenceSource,
    ReferenceSpectrum,
    ReferenceSpectrumError,
    load_reference_file,
    save_reference_file,
)
from firmware_bridge.frames import CommandCode, Dark, Nack, Reference

log = logging.getLogger("edge.daemon")

#: Seconds allowed for a capture command, plus this much per averaged frame.
CAPTURE_TIMEOUT_S = 5.0
CAPTURE_TIMEOUT_PER_FRAME_S = 1.0
#: The daemon asks for missing references (REQUEST_DARK/REQUEST_REFERENCE) at most this often, seconds.
REFERENCE_REQUEST_INTERVAL_S = 1.0


class ReferenceCapture:
    """The references in use (:attr:`refs`) and the capture in progress (inference thread, but :attr:`refs` is read
    by the metrics too).

    Parameters
    ----------
    dark_path, white_path : Path or None
        The configured reference files (``references.dark_path``/``white_path``); a ``.npz`` one is also the
        state file, else the state file is ``<state_dir>/<device_id>.<kind>.npz``.
    state_dir : Path
        Where the state files live (beside the outbox).
    device_id : str
        This daemon's device id (names the state files and the command responses).
    counters : Counters
        Where reference frames and errors are counted.
    send_command : callable(code) -> bool
        Sends a command to the device; False when the serial port is not available.
    emit : callable(kind, message, command)
        Sends a message (a capture's command response).
    respond_error : callable(command, request_id, error)
        Answers a command with an error.
    clock : callable() -> float
        Host time, seconds since the epoch.
    """

    def __init__(self, *, dark_path: Path | None, white_path: Path | None, state_dir: Path, device_id: str,
                 counters: Counters, send_command: Callable[[CommandCode], bool],
                 emit: Callable[[MessageKind, dict[str, Any], str | None], None],
                 respond_error: Callable[[str, str | None, str], None], clock: Callable[[], float]) -> None:
        self._dark_path = dark_path
        self._white_path = white_path
        self._state_dir = state_dir
        self._device_id = device_id
        self._counters = counters
        self._send_command = send_command
        self._emit = emit
        self._respond_error = respond_error
        self._clock = clock
        self.refs = ReferenceSet()
        self._capture: _Capture | None = None
        self._last_reference_request = -math.inf

    def state_path(self, kind: ReferenceKind) -> Path:
        configured = self._dark_path if kind is ReferenceKind.DARK else self._white_path
        if configured is not None and configured.suffix.lower() == ".npz":
            return configured
        return self._state_dir / f"{self._device_id}.{kind.value}.npz"

    def restore(self) -> None:
        """Load references at start: the state file written by a previous run, else the configured file."""
        for kind, configured in ((ReferenceKind.DARK, self._dark_path), (ReferenceKind.WHITE, self._white_path)):
            candidates = [self.state_path(kind)]
            if configured is not None and configured not in candidates:
                candidates.append(configured)
            for path in candidates:
                if not path.is_file():
                    if path == configured:  # named in [references] and absent: say so (the device's frames are used)
                        key = "dark_path" if kind is ReferenceKind.DARK else "white_path"
                        log.warning("references.%s: %s does not exist; the %s comes from the device", key, path,
                                    kind.value)
                    continue
                try:
                    spectrum = load_reference_file(path, kind)
                except ReferenceSpectrumError as exc:
                    log.warning("ignoring %s file %s: %s", kind.value, path, exc)
                    self._counters.incr("reference_file_errors")
                    continue
                self.refs = self.refs.with_spectrum(spectrum)
                log.info("%s restored from %s (%s)", kind.value, path, spectrum.source.value)
                break

    def take(self, frame: Dark | Reference, kind: ReferenceKind) -> None:
        """A DARK or REFERENCE frame from the device: one frame of the capture in progress, or the new reference."""
        cap = self._capture
        if cap is not None and cap.kind is kind:
            cap.collected.append(frame)
            if len(cap.collected) < cap.needed:
                self._send_command(CommandCode.REQUEST_DARK if kind is ReferenceKind.DARK
                                   else CommandCode.REQUEST_REFERENCE)
                return
            counts = np.mean([np.asarray(f.counts, dtype=np.float64) for f in cap.collected], axis=0)
            spectrum = ReferenceSpectrum(
                kind, counts, self._clock(), int(frame.integration_time_us), ReferenceSource.COMMAND, frame.seq,
                frame.timestamp_us,
            )
            self._capture = None
            self.set_reference(spectrum)
            self._emit(
                MessageKind.COMMAND_RESPONSE,
                command_response_message(
                    device_id=self._device_id,
                    command=cap.command,
                    request_id=cap.request_id,
                    ok=True,
                    result={"averaged_frames": len(cap.collected), **spectrum.describe(self._clock())},
                ),
                cap.command,
            )
            return
        try:
            spectrum = ReferenceSpectrum.from_frame(frame, captured_at_s=self._clock())
        except ReferenceSpectrumError as exc:
            self._counters.incr("reference_rejected")
            log.warning("%s frame %d refused: %s", kind.value, frame.seq, exc)
            return
        self.set_reference(spectrum)

    def set_reference(self, spectrum: ReferenceSpectrum) -> None:
        self.refs = self.refs.with_spectrum(spectrum)
        try:
            save_reference_file(self.state_path(spectrum.kind), spectrum)
        except OSError as exc:
            self._counters.incr("reference_save_errors")
            log.warning("could not save the %s spectrum: %s", spectrum.kind.value, exc)
        log.info("%s updated from %s (seq %s)", spectrum.kind.value, spectrum.source.value, spectrum.seq)

    def request_missing(self) -> None:
        """Ask the device for the references it has not sent (at most every REFERENCE_REQUEST_INTERVAL_S)."""
        now = time.monotonic()
        if now - self._last_reference_request < REFERENCE_REQUEST_INTERVAL_S or self._capture is not None:
            return
        self._last_reference_request = now
        if self.refs.dark is None:
            self._send_command(CommandCode.REQUEST_DARK)
        if self.refs.reference is None:
            self._send_command(CommandCode.REQUEST_REFERENCE)

    # captures ------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a capture is in progress."""
        return self._capture is not None

    def start(self, order: _Capture) -> None:
        if self._capture is not None:
            self._respond_error(order.command, order.request_id, "another capture is in progress")
            return
        code = CommandCode.REQUEST_DARK if order.kind is ReferenceKind.DARK else CommandCode.REQUEST_REFERENCE
        self._capture = order
        if not self._send_command(code):
            self._capture = None
            self._respond_error(order.command, order.request_id, "the serial port is not available")

    def check_deadline(self) -> None:
        cap = self._capture
        if cap is not None and time.monotonic() > cap.deadline_s:
            self._capture = None
            self._respond_error(
                cap.command,
                cap.request_id,
                f"expected {cap.needed} {cap.kind.value} frame(s) from the device, got {len(cap.collected)} "
                "before the timeout; references unchanged",
            )

    def fail_on_nack(self, nack: Nack) -> None:
        cap = self._capture
        if cap is None or nack.code not in (CommandCode.REQUEST_DARK, CommandCode.REQUEST_REFERENCE):
            return
        self._capture = None
        self._respond_error(cap.command, cap.request_id, f"device refused: {nack.reason.name} {nack.detail}".strip())


def capture_order(kind: ReferenceKind, average_frames: int, request_id: str | None, command: str) -> _Capture:
    """A capture command's order for the inference thread, with its deadline."""
    n = int(average_frames)
    return _Capture(kind, n, request_id, command,
                    time.monotonic() + CAPTURE_TIMEOUT_S + CAPTURE_TIMEOUT_PER_FRAME_S * n)
