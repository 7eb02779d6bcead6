"""Adapter for the SparkFun AS7265x triad (18 channels, 410-940 nm) in UART AT-command mode.

The AS72651 master answers text commands ended by a line end: ``ATCDATA`` returns the 18 calibrated channel values
(floats, comma-separated, in the device's order R S T U V W / G H I J K L / A B C D E F, i.e. the NIR, visible and
UV dies) followed by ``OK``; ``ATINTTIME=<n>`` sets the integration time in steps of 2.8 ms (n = 1..255);
``ATGAIN=<g>`` sets the gain (0: 1x, 1: 3.7x, 2: 16x, 3: 64x); a refused command answers ``ERROR``.  The module may
echo commands.  This adapter writes those commands, keeps the queue of what it is waiting for, and turns the replies
into protocol frames: a :class:`~firmware_bridge.frames.Spectrum` (float32, reordered by wavelength) for ``ATCDATA``,
:class:`~firmware_bridge.frames.Ack` / :class:`~firmware_bridge.frames.Nack` for settings.  Protocol
:class:`~firmware_bridge.frames.Command` frames map onto AT commands with :meth:`AS7265xAdapter.command_bytes`.

The channel centres are not evenly spaced, so :meth:`AS7265xAdapter.status` carries a least-squares polynomial of
the pixel index (off by up to 12 nm: six coefficients cannot follow 18 irregular centres); the exact axis is
:data:`AS7265X_WAVELENGTHS_NM`.

Signal: ``ATCDATA`` values are *calibrated* (the sensor's factory correction to uW/cm2), not raw ADC counts, but
they are still an intensity of the light on the sensor, linear in it, with the sensor's dark offset included.  They
are neither absorbance nor reflectance: a model needs them ratioed to a white reference (and a dark) like any raw
counts, so :meth:`AS7265xAdapter.status` says :attr:`~firmware_bridge.frames.SignalKind.COUNTS`, the kind whose host
processing (DARK + REFERENCE) they need; REQUEST_DARK and REQUEST_REFERENCE take those readings (see
:meth:`AS7265xAdapter.command_bytes`).  Boot id: the dialect has neither sequence numbers nor boots; the adapter
numbers the spectra itself, so its status carries a random ``boot_id`` drawn when the adapter is made.

>>> a = AS7265xAdapter(clock_us=lambda: 0)
>>> a.request_spectrum()
b'ATCDATA\\r\\n'
>>> reply = ", ".join(["1.5"] * 18).encode() + b" OK\\r\\n"
>>> [type(f).__name__ for f in a.feed(reply)]
['Spectrum']
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from firmware_bridge.adapters.lines import LineSplitter
from firmware_bridge.errors import AdapterError
from firmware_bridge.frames import (
    Ack,
    Command,
    CommandCode,
    Frame,
    Nack,
    NackCode,
    SignalKind,
    Spectrum,
    Status,
    draw_boot_id,
)

__all__ = [
    "AS7265X_CHANNEL_NM",
    "AS7265X_CHANNEL_ORDER",
    "AS7265X_GAINS",
    "AS7265X_WAVELENGTHS_NM",
    "INTTIME_STEP_US",
    "AS7265xAdapter",
    "AS7265xStats",
]

_LOG = logging.getLogger(__name__)

#: Order of the 18 values in an ``ATCDATA`` / ``ATDATA`` reply.
AS7265X_CHANNEL_ORDER: tuple[str, ...] = tuple("RSTUVWGHIJKLABCDEF")
#: Centre wavelength of each channel letter, nm.
AS7265X_CHANNEL_NM: dict[str, float] = {
    "A": 410.0, "B": 435.0, "C": 460.0, "D": 485.0, "E": 510.0, "F": 535.0,
    "G": 560.0, "H": 585.0, "R": 610.0, "I": 645.0, "S": 680.0, "J": 705.0,
    "T": 730.0, "U": 760.0, "V": 810.0, "W": 860.0, "K": 900.0, "L": 940.0,
}  # fmt: skip
#: Permutation from the reply's order to increasing wavelength.
_SORT = np.argsort([AS7265X_CHANNEL_NM[c] for c in AS7265X_CHANNEL_ORDER], kind="stable")
#: The 18 channel centres in increasing order, nm: the pixel axis of the spectra this adapter makes.
AS7265X_WAVELENGTHS_NM: tuple[float, ...] = tuple(sorted(AS7265X_CHANNEL_NM.values()))
#: Gain factor of each ``ATGAIN`` code.
AS7265X_GAINS: tuple[float, ...] = (1.0, 3.7, 16.0, 64.0)
#: One ``ATINTTIME`` step, microseconds.
INTTIME_STEP_US = 2800
#: A reply line longer than this is dropped as corrupt.
MAX_LINE_BYTES = 1024
#: Degree of the wavelength polynomial fitted for :meth:`AS7265xAdapter.status`.
_POLY_DEGREE = 5


@dataclass(frozen=True)
class AS7265xStats:
    """Counters of an :class:`AS7265xAdapter`.

    Parameters
    ----------
    spectra : int
        ``ATCDATA`` replies turned into spectra.
    acks, nacks : int
        Settings confirmed by ``OK`` / refused by ``ERROR`` (and commands refused locally).
    lines_bad : int
        Replies that failed to parse or arrived with nothing pending.
    lines_ignored : int
        Empty lines and command echoes.
    pending : int
        Commands sent and not answered yet.
    last_error : str
        Message of the latest bad reply ("" when none).
    """

    spectra: int = 0
    acks: int = 0
    nacks: int = 0
    lines_bad: int = 0
    lines_ignored: int = 0
    pending: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class _Pending:
    verb: str  # "CDATA", "INTTIME", "GAIN"
    value: int
    command_id: int | None
    code: CommandCode | None


class AS7265xAdapter:
    """Talk to an AS7265x in AT-command mode: write commands, feed replies, get protocol frames.

    Parameters
    ----------
    device_id : str
        Name reported in :meth:`status`.
    integration_time_steps : int
        ``ATINTTIME`` value assumed at start (the module's default is 50 steps, 140 ms).
    gain_code : int
        ``ATGAIN`` code assumed at start.
    strict : bool
        When true :meth:`feed` raises :class:`AdapterError` on a bad reply; otherwise it counts and skips it.
    clock_us : callable, optional
        Host clock for ``timestamp_us``, microseconds (default: monotonic clock).
    boot_id : int, optional
        ``boot_id`` of :meth:`status`, 1..2**32-1, naming this adapter's sequence numbering (default: random).
    """

    line_end = b"\r\n"

    def __init__(
        self,
        *,
        device_id: str = "as7265x",
        integration_time_steps: int = 50,
        gain_code: int = 1,
        strict: bool = False,
        clock_us: Callable[[], int] | None = None,
        boot_id: int | None = None,
    ) -> None:
        if boot_id is not None and not 1 <= boot_id <= 0xFFFF_FFFF:
            raise AdapterError(f"expected a boot_id in 1..4294967295, got {boot_id}")
        self.boot_id = draw_boot_id() if boot_id is None else int(boot_id)
        self.device_id = device_id
        self.integration_time_steps = _check_steps(integration_time_steps)
        self.gain_code = _check_gain(gain_code)
        self.strict = strict
        self._clock_us = clock_us or (lambda: time.monotonic_ns() // 1000)
        self._pending: deque[_Pending] = deque()
        self._awaiting_ok = False
        self._lines = LineSplitter(MAX_LINE_BYTES)
        self._seq = 0
        self._spectra = 0
        self._acks = 0
        self._nacks = 0
        self._bad = 0
        self._ignored = 0
        self._last_error = ""
        index = np.arange(len(AS7265X_WAVELENGTHS_NM), dtype=np.float64)
        fit = np.polynomial.polynomial.polyfit(index, np.asarray(AS7265X_WAVELENGTHS_NM), _POLY_DEGREE)
        self._coeffs = tuple(float(c) for c in fit)

    # ------------------------------------------------------------------ state
    @property
    def integration_time_us(self) -> int:
        """Current integration time, microseconds."""
        return self.integration_time_steps * INTTIME_STEP_US

    @property
    def gain(self) -> float:
        """Current gain factor."""
        return AS7265X_GAINS[self.gain_code]

    @property
    def stats(self) -> AS7265xStats:
        """Snapshot of the counters."""
        return AS7265xStats(
            self._spectra, self._acks, self._nacks, self._bad, self._ignored, len(self._pending), self._last_error
        )

    def status(self, nonce: int = 0) -> Status:
        """A :class:`Status` for this sensor: 18 pixels, fitted polynomial, current exposure, an intensity signal."""
        return Status(
            nonce=nonce,
            device_id=self.device_id,
            firmware_version="as7265x-at",
            pixel_count=len(AS7265X_WAVELENGTHS_NM),
            wavelength_coeffs_nm=self._coeffs,
            integration_time_us=self.integration_time_us,
            signal=SignalKind.COUNTS,
            boot_id=self.boot_id,
        )

    @staticmethod
    def wavelengths_nm() -> np.ndarray:
        """Exact channel centres, nm, shape (18,), in the order of the spectra's pixels."""
        return np.asarray(AS7265X_WAVELENGTHS_NM, dtype=np.float64)

    def reset(self) -> None:
        """After a reconnect: forget the partial reply and every unanswered command."""
        self.clear_pending()

    def clear_pending(self) -> int:
        """Forget every unanswered command (after a reply timeout or a reconnect); returns how many there were."""
        n = len(self._pending)
        self._pending.clear()
        self._awaiting_ok = False
        self._lines.drop_partial()
        return n

    # ------------------------------------------------------------------ commands
    def request_spectrum(self, *, command_id: int | None = None, code: CommandCode | None = None) -> bytes:
        """Bytes of ``ATCDATA``: ask for one calibrated 18-channel reading."""
        self._pending.append(_Pending("CDATA", 0, command_id, code))
        return b"ATCDATA" + self.line_end

    def set_integration_time(self, integration_time_us: int, *, command_id: int | None = None) -> bytes:
        """Bytes of ``ATINTTIME=<n>`` for the nearest step of 2.8 ms; AdapterError when out of 1..255 steps."""
        steps = _check_steps(round(int(integration_time_us) / INTTIME_STEP_US))
        code = CommandCode.SET_INTEGRATION_TIME if command_id is not None else None
        self._pending.append(_Pending("INTTIME", steps, command_id, code))
        return f"ATINTTIME={steps}".encode("ascii") + self.line_end

    def set_gain(self, gain_code: int) -> bytes:
        """Bytes of ``ATGAIN=<g>`` (0: 1x, 1: 3.7x, 2: 16x, 3: 64x)."""
        g = _check_gain(gain_code)
        self._pending.append(_Pending("GAIN", g, None, None))
        return f"ATGAIN={g}".encode("ascii") + self.line_end

    def command_bytes(self, command: Command) -> tuple[bytes, list[Frame]]:
        """Translate a protocol :class:`Command` into AT bytes to write, plus frames to deliver at once.

        TRIGGER (value spectra, at least 1), REQUEST_DARK and REQUEST_REFERENCE become ``ATCDATA`` (the AS7265x
        has no shutter: a dark or white reference is whatever the sensor sees then, so the caller arranges it);
        SET_INTEGRATION_TIME becomes ``ATINTTIME``; the rest are answered at once with a NACK.
        """
        code = command.code
        if code == CommandCode.SET_INTEGRATION_TIME:
            try:
                return self.set_integration_time(command.value, command_id=command.command_id), []
            except AdapterError as exc:
                self._nacks += 1
                return b"", [Nack(command.command_id, code, NackCode.VALUE_OUT_OF_RANGE, str(exc)[:200])]
        if code in (CommandCode.TRIGGER, CommandCode.REQUEST_DARK, CommandCode.REQUEST_REFERENCE):
            n = max(1, command.value) if code == CommandCode.TRIGGER else 1
            if n > 100:
                self._nacks += 1
                return b"", [Nack(command.command_id, code, NackCode.VALUE_OUT_OF_RANGE, f"expected 1 to 100, got {n}")]
            out = b"".join(self.request_spectrum(command_id=command.command_id, code=code) for _ in range(n))
            return out, []
        self._nacks += 1
        detail = f"the AS7265x AT dialect has no equivalent of {code.name}"
        return b"", [Nack(command.command_id, code, NackCode.NOT_SUPPORTED, detail)]

    # ------------------------------------------------------------------ replies
    def parse_cdata(self, line: bytes | str) -> np.ndarray:
        """Parse an ``ATCDATA`` reply line (with or without its trailing ``OK``) into 18 float32 values.

        Returns the values reordered by increasing wavelength, shape (18,), float32 (calibrated, uW/cm2).

        Raises
        ------
        AdapterError
            Not 18 finite numbers.
        """
        text = _text(line).strip()
        if text.upper().endswith("OK"):
            text = text[:-2].strip()
        fields = [f for f in text.rstrip(",").split(",")] if text else []
        if len(fields) != len(AS7265X_CHANNEL_ORDER):
            raise AdapterError(f"expected {len(AS7265X_CHANNEL_ORDER)} channels, got {len(fields)}")
        try:
            values = np.asarray([float(f) for f in fields], dtype=np.float64)
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            raise AdapterError(f"expected a number per channel, got {bad.strip()[:20]!r}") from None
        if not np.all(np.isfinite(values)):
            raise AdapterError("expected finite channel values, got NaN or inf")
        if np.any(np.abs(values) > np.finfo(np.float32).max):
            raise AdapterError("expected channel values within float32 range, got a larger one")
        return values[_SORT].astype(np.float32)

    def feed(self, data: bytes) -> list[Frame]:
        """Consume reply bytes (any chunking) and return the frames they complete, in order."""
        out: list[Frame] = []
        lines, overflow = self._lines.split(data)
        for line in lines:
            self._line(line, out)
        if overflow:
            self._reject(f"expected a reply line of at most {MAX_LINE_BYTES} bytes, got more")
        return out

    def _line(self, raw: bytes, out: list[Frame]) -> None:
        try:
            text = _text(raw).strip()
        except AdapterError as exc:
            self._drop_head()
            self._reject(str(exc))
            return
        upper = text.upper()
        if not text or upper.startswith("AT"):
            self._ignored += 1  # blank line or echo of our command
            return
        if upper == "OK" and self._awaiting_ok:
            self._awaiting_ok = False
            return
        if not self._pending:
            self._reject(f"expected no reply with nothing pending, got {text[:30]!r}")
            return
        head = self._pending[0]
        if upper.startswith("ERROR"):
            self._pending.popleft()
            self._nacks += 1
            if head.command_id is not None and head.code is not None:
                out.append(Nack(head.command_id, head.code, NackCode.INTERNAL_ERROR, text[:200]))
            return
        if head.verb == "CDATA":
            self._pending.popleft()
            try:
                values = self.parse_cdata(text)
            except AdapterError as exc:
                self._reject(str(exc))
                if head.command_id is not None and head.code is not None:
                    out.append(Nack(head.command_id, head.code, NackCode.INTERNAL_ERROR, str(exc)[:200]))
                return
            self._awaiting_ok = not upper.endswith("OK")
            if head.command_id is not None and head.code is not None:
                out.append(Ack(head.command_id, head.code))
            out.append(
                Spectrum(
                    seq=self._seq,
                    timestamp_us=int(self._clock_us()),
                    integration_time_us=self.integration_time_us,
                    counts=values,
                )
            )
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            self._spectra += 1
            return
        if upper == "OK":
            self._pending.popleft()
            if head.verb == "INTTIME":
                self.integration_time_steps = head.value
            elif head.verb == "GAIN":
                self.gain_code = head.value
            self._acks += 1
            if head.command_id is not None and head.code is not None:
                out.append(Ack(head.command_id, head.code))
            return
        self._drop_head()
        self._reject(f"expected OK or ERROR after AT{head.verb}, got {text[:30]!r}")

    def _drop_head(self) -> None:
        if self._pending:
            self._pending.popleft()

    def _reject(self, message: str) -> None:
        self._bad += 1
        self._last_error = message
        _LOG.debug("AS7265x reply rejected: %s", message)
        if self.strict:
            raise AdapterError(message)


def _text(line: bytes | str) -> str:
    if isinstance(line, str):
        return line
    try:
        return bytes(line).decode("ascii")
    except UnicodeDecodeError as exc:
        raise AdapterError(f"expected an ASCII reply, got a non-ASCII byte at offset {exc.start}") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_steps(steps: int) -> int:
    if not 1 <= int(steps) <= 255:
        raise AdapterError(f"expected 1 to 255 integration steps of 2.8 ms, got {steps}")
    return int(steps)


def _check_gain(code: int) -> int:
    if not 0 <= int(code) <= 3:
        raise AdapterError(f"expected a gain code 0 to 3, got {code}")
    return int(code)
