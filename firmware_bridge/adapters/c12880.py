"""Adapter for the ASCII line format of Hamamatsu C12880MA Arduino readers: one line of 288 counts per spectrum.

The common open-source readers (an Arduino clocking the C12880MA's CLK/ST lines and sampling VIDEO with its ADC)
print each spectrum at 115200 baud as one line of 288 comma-separated integer counts, sometimes with a trailing
comma, ended by ``\\r\\n``; some print a banner or other chatter at reset.  This adapter turns each data line into
a :class:`~firmware_bridge.frames.Spectrum` (uint16 counts, host-side sequence number and timestamp, since the
dialect carries neither) and offers a :class:`~firmware_bridge.frames.Status` with the unit's wavelength
calibration (the C12880MA's fifth-order polynomial in the pixel index; the default is typical, each unit's own
coefficients come on its test sheet).

Signal: the values are the Arduino ADC's raw readings of the sensor's VIDEO output, so the status says
:attr:`~firmware_bridge.frames.SignalKind.COUNTS` and the host needs DARK and REFERENCE spectra (lamp off, white
standard) to compute absorbance or reflectance.  Boot id: the dialect has neither sequence numbers nor boots; the
adapter numbers the spectra itself from 0, so its status carries a random ``boot_id`` drawn when the adapter is
made, which names that numbering: ``(device_id, boot_id, seq)`` stays unique when the host process restarts.

>>> a = C12880Adapter(clock_us=lambda: 0)
>>> frames = a.feed(b"C12880MA reader v1\\r\\n" + b",".join([b"512"] * 288) + b"\\r\\n")
>>> len(frames), frames[0].pixel_count, int(frames[0].counts[0]), a.stats.lines_ignored
(1, 288, 512, 1)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from firmware_bridge.adapters.lines import LineSplitter
from firmware_bridge.errors import AdapterError
from firmware_bridge.frames import SignalKind, Spectrum, SpectrumFlags, Status, draw_boot_id

__all__ = ["C12880_DEFAULT_COEFFS_NM", "C12880_PIXELS", "MAX_LINE_BYTES", "C12880Adapter", "C12880Stats"]

_LOG = logging.getLogger(__name__)

#: Pixels of the C12880MA line sensor.
C12880_PIXELS = 288
#: Typical wavelength calibration, nm, lowest order first, pixel index from 0 (about 305 to 880 nm).
C12880_DEFAULT_COEFFS_NM: tuple[float, ...] = (305.0, 2.715, -1.35e-3, -7.0e-6, 9.0e-9, 5.5e-12)
#: A line longer than this (bytes, without its end) is dropped as corrupt: 288 five-digit values fit 3 times over.
MAX_LINE_BYTES = 6 * C12880_PIXELS * 3


@dataclass(frozen=True)
class C12880Stats:
    """Counters of a :class:`C12880Adapter`.

    Parameters
    ----------
    lines_ok : int
        Data lines turned into spectra.
    lines_bad : int
        Data lines that failed to parse (wrong channel count, bad number, out of range, too long).
    lines_ignored : int
        Empty lines and text chatter (banners) that carry no data.
    bytes_fed : int
        Bytes passed to :meth:`C12880Adapter.feed`.
    last_error : str
        Message of the latest bad line ("" when none).
    """

    lines_ok: int = 0
    lines_bad: int = 0
    lines_ignored: int = 0
    bytes_fed: int = 0
    last_error: str = ""


class C12880Adapter:
    """Turn the C12880MA Arduino ASCII stream into :class:`Spectrum` frames.

    Parameters
    ----------
    pixel_count : int
        Values expected per line (288 for the C12880MA).
    adc_full_scale_counts : int
        Full scale of the reader's ADC, counts (1023 for an Arduino's 10-bit ``analogRead``); values at it are
        counted as saturated, values above it are an error.
    integration_time_us : int
        Exposure the reader's sketch uses, microseconds (the dialect does not report it).
    wavelength_coeffs_nm : tuple of float
        Calibration polynomial of the unit, nm, lowest order first, pixel index from 0.
    device_id : str
        Name reported in :meth:`status`.
    strict : bool
        When true :meth:`feed` raises :class:`AdapterError` on a bad line; otherwise it counts and skips it.
    clock_us : callable, optional
        Host clock for ``timestamp_us``, microseconds (default: monotonic clock).
    boot_id : int, optional
        ``boot_id`` of :meth:`status`, 1..2**32-1, naming this adapter's sequence numbering (default: random).
    """

    def __init__(
        self,
        *,
        pixel_count: int = C12880_PIXELS,
        adc_full_scale_counts: int = 1023,
        integration_time_us: int = 10_000,
        wavelength_coeffs_nm: tuple[float, ...] = C12880_DEFAULT_COEFFS_NM,
        device_id: str = "c12880ma",
        strict: bool = False,
        clock_us: Callable[[], int] | None = None,
        boot_id: int | None = None,
    ) -> None:
        if not 1 <= pixel_count <= 65535:
            raise AdapterError(f"expected 1 to 65535 pixels, got {pixel_count}")
        if not 1 <= adc_full_scale_counts <= 65535:
            raise AdapterError(f"expected an ADC full scale of 1 to 65535 counts, got {adc_full_scale_counts}")
        self.pixel_count = int(pixel_count)
        self.adc_full_scale_counts = int(adc_full_scale_counts)
        self.integration_time_us = int(integration_time_us)
        self.wavelength_coeffs_nm = tuple(float(c) for c in wavelength_coeffs_nm)
        self.device_id = device_id
        self.strict = strict
        if boot_id is not None and not 1 <= boot_id <= 0xFFFF_FFFF:
            raise AdapterError(f"expected a boot_id in 1..4294967295, got {boot_id}")
        self.boot_id = draw_boot_id() if boot_id is None else int(boot_id)
        self._clock_us = clock_us or (lambda: time.monotonic_ns() // 1000)
        self._seq = 0
        self._lines = LineSplitter(MAX_LINE_BYTES)
        self._ok = 0
        self._bad = 0
        self._ignored = 0
        self._fed = 0
        self._last_error = ""

    @property
    def stats(self) -> C12880Stats:
        """Snapshot of the counters."""
        return C12880Stats(self._ok, self._bad, self._ignored, self._fed, self._last_error)

    def reset(self) -> None:
        """Drop a partially received line (after a reconnect); it is not counted."""
        self._lines.reset()

    def status(self, nonce: int = 0) -> Status:
        """A :class:`Status` describing this reader (pixel count, calibration, exposure; raw ADC counts)."""
        return Status(
            nonce=nonce,
            device_id=self.device_id,
            firmware_version="c12880-ascii",
            pixel_count=self.pixel_count,
            wavelength_coeffs_nm=self.wavelength_coeffs_nm,
            integration_time_us=self.integration_time_us,
            signal=SignalKind.COUNTS,
            boot_id=self.boot_id,
        )

    def wavelengths_nm(self) -> np.ndarray:
        """Wavelength of each pixel, nm, shape (pixel_count,)."""
        return self.status().wavelengths_nm()

    def parse_line(self, line: bytes | str) -> Spectrum:
        """Parse one data line (without or with its line end) into a :class:`Spectrum`; the sequence advances.

        Raises
        ------
        AdapterError
            The line does not hold ``pixel_count`` integers within the ADC range.
        """
        values = self._parse_values(line)
        saturated = int(np.count_nonzero(values >= self.adc_full_scale_counts))
        spectrum = Spectrum(
            seq=self._seq,
            timestamp_us=int(self._clock_us()),
            integration_time_us=self.integration_time_us,
            counts=values,
            saturated_count=saturated,
            flags=SpectrumFlags.SATURATED if saturated else SpectrumFlags.NONE,
        )
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return spectrum

    def _parse_values(self, line: bytes | str) -> np.ndarray:
        if isinstance(line, (bytes, bytearray)):
            try:
                text = bytes(line).decode("ascii")
            except UnicodeDecodeError as exc:
                raise AdapterError(f"expected an ASCII line, got a non-ASCII byte at offset {exc.start}") from None
        else:
            text = line
        text = text.strip().rstrip(",").strip()
        fields = text.split(",") if text else []
        if len(fields) != self.pixel_count:
            raise AdapterError(f"expected {self.pixel_count} channels, got {len(fields)}")
        try:
            ints = [int(f) for f in fields]  # int() accepts surrounding blanks, rejects "12.5" and "1e3"
        except ValueError:
            bad = next(f for f in fields if not f.strip().lstrip("+").isdigit())
            raise AdapterError(f"expected integer counts, got {bad.strip()[:20]!r}") from None
        values = np.asarray(ints, dtype=np.int64)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > self.adc_full_scale_counts:
            worst = lo if lo < 0 else hi
            raise AdapterError(f"expected counts between 0 and {self.adc_full_scale_counts}, got {worst}")
        return values.astype(np.uint16)

    def feed(self, data: bytes) -> list[Spectrum]:
        """Consume bytes as they arrive (any chunking) and return the spectra of the lines they complete.

        Empty lines and text chatter are ignored; a bad data line is counted and skipped (or raises
        :class:`AdapterError` when ``strict``); a line longer than :data:`MAX_LINE_BYTES` is dropped as bad.
        """
        self._fed += len(data)
        out: list[Spectrum] = []
        lines, overflow = self._lines.split(data)
        for line in lines:
            spectrum = self._line(line)
            if spectrum is not None:
                out.append(spectrum)
        if overflow:
            self._reject(f"expected a line of at most {MAX_LINE_BYTES} bytes, got more")
        return out

    def _line(self, line: bytes) -> Spectrum | None:
        stripped = line.strip()
        if not stripped or (b"," not in stripped and not stripped[:1].isdigit()):
            self._ignored += 1
            return None
        try:
            spectrum = self.parse_line(stripped)
        except AdapterError as exc:
            self._reject(str(exc))
            return None
        self._ok += 1
        return spectrum

    def _reject(self, message: str) -> None:
        self._bad += 1
        self._last_error = message
        _LOG.debug("C12880 line rejected: %s", message)
        if self.strict:
            raise AdapterError(message)
