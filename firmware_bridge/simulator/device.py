"""The simulated device without I/O: a :class:`VirtualSpectrometer` takes the host's frames and returns its own.

It holds a dataset of absorbance spectra (a ``.npz`` of ``../shared/datasets`` or
:func:`firmware_bridge.synthetic.make_synthetic_dataset`), turns rows into raw counts with
:class:`firmware_bridge.physics.DetectorModel`, answers HELLO with STATUS and COMMANDs with ACK/NACK (plus DARK,
REFERENCE or SPECTRUM frames), and applies slow and provoked drifts.  Every SPECTRUM is followed by an ANNOTATION
with the same ``seq`` carrying the dataset's ``y`` row.

Signal and boots.  By default the device sends raw detector counts (``SimulatorConfig.signal`` COUNTS, announced in
its STATUS), which the host turns back into absorbance with the DARK and REFERENCE frames.  With ``signal``
ABSORBANCE or REFLECTANCE it plays a device that processes on board: SPECTRUM frames carry the float32 signal
itself (the dataset row with the configured drifts, without detector noise), and there are no DARK or REFERENCE
frames (requests for them are refused with NACK NOT_SUPPORTED).  Every device instance draws a random non-zero
``boot_id`` (:func:`~firmware_bridge.frames.draw_boot_id`, never from ``seed``, so two runs differ);
``FaultConfig.reboot_every`` simulates a reboot of the firmware (the link stays up, as on a UART): a new
``boot_id``, ``seq`` and the device clock restart at 0, settings go back to their boot values, and an unsolicited
STATUS (plus DARK and REFERENCE for counts) announces it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from firmware_bridge.codec.layouts import max_line_spectra, max_spectrum_pixels
from firmware_bridge.frames import (
    Ack,
    Annotation,
    AxisUnit,
    Command,
    CommandCode,
    Dark,
    Frame,
    Hello,
    Line,
    Nack,
    NackCode,
    Reference,
    SampleTag,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
    draw_boot_id,
)
from firmware_bridge.physics import DetectorModel
from firmware_bridge.simulator.config import (
    MAX_AVERAGES,
    MAX_INTEGRATION_TIME_US,
    MAX_TRIGGER,
    TEMP_COEFF_NM_PER_C,
    SimulatorConfig,
    SimulatorError,
)
from firmware_bridge.simulator.dataset import fit_wavelength_polynomial, load_dataset
from firmware_bridge.simulator.scenarios import ProvokedSpectrumDrift
from firmware_bridge.synthetic import absorption_band

__all__ = ["VirtualSpectrometer"]

_LOG = logging.getLogger(__name__)


class VirtualSpectrometer:
    """The simulated device without I/O: frames in, frames out.

    Parameters
    ----------
    absorbance : ndarray, shape (n_rows, n_pixels)
        Sample spectra to cycle through, decadic absorbance.
    axis : ndarray, shape (n_pixels,)
        Their spectral axis, in ``config.axis_unit`` (nm when that is None; :meth:`from_config` resolves it from
        the dataset): strictly monotonic, and positive for cm-1.
    reference_values : ndarray, shape (n_rows, n_targets)
        The ``y`` rows carried by ANNOTATION frames.
    config : SimulatorConfig
        Settings (seed, exposure, averaging, drifts, identity, axis unit, ...).
    clock_us : callable, optional
        Device clock, microseconds since start (default: monotonic).
    """

    def __init__(
        self,
        absorbance: npt.NDArray[np.float64],
        axis: npt.NDArray[np.float64],
        reference_values: npt.NDArray[np.float64],
        config: SimulatorConfig | None = None,
        *,
        clock_us: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        x = np.asarray(absorbance, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 1:
            raise SimulatorError(f"expected absorbance of shape (n_rows, n_pixels), got {x.shape}")
        self.absorbance = x
        most = max_spectrum_pixels("counts" if self.config.signal is SignalKind.COUNTS else "absorbance")
        if x.shape[1] > most:
            raise SimulatorError(
                f"expected at most {most} pixels for a device sending {self.config.signal.name.lower()} "
                f"({'uint16' if self.config.signal is SignalKind.COUNTS else 'float32'} pixels: the most one SPECTRUM "
                f"frame carries), got {x.shape[1]}")
        #: Unit of :attr:`axis` and of the polynomial the STATUS announces.
        self.axis_unit = self.config.axis_unit or AxisUnit.NM
        #: The dataset's axis in :attr:`axis_unit`; :attr:`wavelengths_nm` is the same axis in nm.
        self.axis = np.asarray(axis, dtype=np.float64)
        if self.axis.shape != (x.shape[1],):
            raise SimulatorError(f"expected an axis of {x.shape[1]} points, got shape {self.axis.shape}")
        steps = np.diff(self.axis)
        if not (np.isfinite(self.axis).all() and (np.all(steps > 0) or np.all(steps < 0))):
            raise SimulatorError("expected a finite, strictly monotonic spectral axis")
        if self.axis_unit is AxisUnit.CM_1 and not np.all(self.axis > 0):
            raise SimulatorError(f"expected positive wavenumbers, got down to {float(self.axis.min())} cm-1")
        self.wavelengths_nm = self.axis_unit.to_nm(self.axis)
        self.reference_values = np.asarray(reference_values, dtype=np.float64).reshape(len(x), -1)
        self.model = DetectorModel(self.wavelengths_nm)  # lamp and detector live in wavelength, whatever the unit
        #: Calibration polynomial of :attr:`axis`, in :attr:`axis_unit` (what the STATUS announces).
        self.axis_coeffs = fit_wavelength_polynomial(self.axis)
        seed = self.config.seed
        self._rng = np.random.default_rng([seed, 0])
        order = np.arange(len(x))
        if self.config.shuffle:
            np.random.default_rng([seed, 2]).shuffle(order)
        self._order = order
        start = time.monotonic_ns()
        self._clock_us = clock_us or (lambda: (time.monotonic_ns() - start) // 1000)
        self._boot_at_us = 0  # reading of _clock_us at the latest reboot: the device clock counts from there
        self.boot_id = draw_boot_id() if self.config.boot_id is None else int(self.config.boot_id)
        self.reboots = 0
        self._rebooted_at = 0  # ``streamed`` at the latest scheduled reboot
        if self.config.integration_time_us is not None:
            self.integration_time_us = int(self.config.integration_time_us)
        elif self.processed:  # only reported: the spectra go out as the dataset holds them, whatever their scale
            floor = np.clip(np.nanpercentile(np.asarray(x, dtype=np.float64), 1.0), -10.0, 10.0)
            self.integration_time_us = min(MAX_INTEGRATION_TIME_US, self.model.integration_time_for([floor]))
        else:
            self.integration_time_us = self.model.integration_time_for(x)
            if self.integration_time_us > MAX_INTEGRATION_TIME_US:
                raise SimulatorError(
                    f"expected absorbance spectra that some light passes (a counts device needs an exposure of at "
                    f"most {MAX_INTEGRATION_TIME_US} us), got values whose 1st percentile is "
                    f"{np.nanpercentile(x, 1.0):.4g} (exposure {self.integration_time_us} us); stream a signal "
                    "that is not an absorbance (Raman or fluorescence intensities) with --signal absorbance")
        if not 1 <= self.integration_time_us <= MAX_INTEGRATION_TIME_US:
            raise SimulatorError(f"expected 1 to {MAX_INTEGRATION_TIME_US} us, got {self.integration_time_us}")
        per_line = self.config.line_spectra
        kind = "absorbance" if self.processed else "counts"  # float32, or measured uint16 counts
        if per_line > max_line_spectra(x.shape[1], kind):
            raise SimulatorError(
                f"expected at most {max_line_spectra(x.shape[1], kind)} spectra per LINE of {x.shape[1]} "
                f"{'float32' if self.processed else 'uint16'} pixels (one LINE frame is at most 4 MiB), got {per_line}")
        float_most = max_spectrum_pixels("absorbance")
        if not self.processed and x.shape[1] > float_most and self.model.reference_is_scaled(self.integration_time_us):
            raise SimulatorError(
                f"expected at most {float_most} pixels for a counts device whose white REFERENCE goes out scaled as "
                f"float32 (the open beam would saturate at the {self.integration_time_us} us these spectra need), got "
                f"{x.shape[1]}: stream fewer pixels, or spectra that let more light through")
        self.averages = int(self.config.averages)
        self.streaming = bool(self.config.autostart)
        self.period_s = 0.0 if self.config.rate_hz == 0 else 1.0 / self.config.rate_hz
        self.seq = 0
        self.spectra_sent = 0  # streamed and triggered
        self.streamed = 0  # streamed only (what ``count`` limits)
        span = float(self.axis.max() - self.axis.min())
        lo = float(self.axis.min())
        self._foreign_band = absorption_band(self.axis, lo + 0.6 * span, 0.08 * span, 1.0)
        self._spectrum_drift = ProvokedSpectrumDrift.of(self.config, self.axis)  # noise, product change
        self.active_pixels = self.pixel_count
        self._boot_integration_time_us = self.integration_time_us

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> VirtualSpectrometer:
        """Load the dataset named in ``config`` (or make the synthetic one) and build the device, in the unit
        ``config.axis_unit`` names or, when it names none, the dataset's (:func:`dataset_axis_unit`)."""
        x, axis, y, unit = load_dataset(config)
        if config.axis_unit is not unit:
            config = dataclasses.replace(config, axis_unit=unit)
        return cls(x, axis, y, config)

    # ------------------------------------------------------------------ state
    @property
    def pixel_count(self) -> int:
        """Pixels per spectrum."""
        return int(self.axis.size)

    @property
    def signal(self) -> SignalKind:
        """What this device's SPECTRUM frames carry (see :class:`~firmware_bridge.frames.SignalKind`)."""
        return self.config.signal

    @property
    def processed(self) -> bool:
        """Whether the device sends a processed signal (absorbance, reflectance) rather than raw counts."""
        return self.config.signal is not SignalKind.COUNTS

    def _now_us(self) -> int:
        """Device clock, microseconds since the latest boot."""
        return int(self._clock_us()) - self._boot_at_us

    @property
    def done(self) -> bool:
        """Whether ``count`` spectra have been streamed (never, for an endless run)."""
        return self.config.count > 0 and self.streamed >= self.config.count

    def _drift_state(self, index: int) -> tuple[float, float, float, float]:
        """(lamp_scale, shift, baseline, band_height) for spectrum ``index`` (shift in the axis unit)."""
        d = self.config.drift
        k = index / 1000.0
        lamp = (1.0 - d.lamp_ageing_per_kframe) ** k
        shift = d.wavelength_shift_nm_per_kframe * k
        baseline = d.baseline_offset + d.baseline_drift_per_kframe * k
        band = 0.0
        w = d.provoked_weight(index)
        if w:
            if d.drift_kind == "band":
                band = w * d.size
            elif d.drift_kind == "baseline":
                baseline += w * d.size
            elif d.drift_kind == "shift":
                shift += w * d.size
            elif d.drift_kind == "lamp":
                lamp *= 1.0 - w * min(d.size, 0.99)
        return lamp, shift, baseline, band

    def _temperature_c(self, shift: float) -> float:
        return float(25.0 + shift / TEMP_COEFF_NM_PER_C + self._rng.normal(0.0, 0.02))

    def status(self, nonce: int = 0) -> Status:
        """The device's STATUS (identity, pixel count, axis polynomial and its unit, settings)."""
        _, shift, _, _ = self._drift_state(self.spectra_sent)
        return Status(
            nonce=nonce,
            device_id=self.config.device_id,
            firmware_version=self.config.firmware_version,
            pixel_count=self.active_pixels,
            wavelength_coeffs_nm=self.axis_coeffs,
            integration_time_us=self.integration_time_us,
            averages=self.averages,
            detector_temp_c=self._temperature_c(shift),
            uptime_s=int(self._now_us() // 1_000_000),
            signal=self.config.signal,
            boot_id=self.boot_id,
            axis_unit=self.axis_unit,
        )

    # ------------------------------------------------------------------ acquisitions
    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return seq

    def dark(self) -> Dark:
        """Acquire a DARK frame at the current exposure (``config.reference_averages`` scans)."""
        _, shift, _, _ = self._drift_state(self.spectra_sent)
        temp = self._temperature_c(shift)
        acq = self.model.dark(self.integration_time_us, self._rng, averages=self.config.reference_averages, temp_c=None)
        return Dark(
            seq=self._next_seq(),
            timestamp_us=self._now_us(),
            integration_time_us=acq.integration_time_us,
            counts=acq.counts[: self.active_pixels],
            averages=acq.averages,
            saturated_count=acq.saturated_count,
            flags=SpectrumFlags.LAMP_OFF | (SpectrumFlags.SATURATED if acq.saturated else SpectrumFlags.NONE),
            detector_temp_c=temp,
        )

    def reference(self) -> Reference:
        """Acquire a white REFERENCE frame valid at the current exposure (float32 when it is scaled;
        ``config.reference_averages`` scans)."""
        lamp, shift, _, _ = self._drift_state(self.spectra_sent)
        temp = self._temperature_c(shift)
        acq = self.model.reference(self.integration_time_us, self._rng, averages=self.config.reference_averages,
                                   lamp_scale=lamp)
        return Reference(
            seq=self._next_seq(),
            timestamp_us=self._now_us(),
            integration_time_us=acq.integration_time_us,
            counts=acq.counts[: self.active_pixels],
            averages=acq.averages,
            saturated_count=acq.saturated_count,
            flags=SpectrumFlags.SATURATED if acq.saturated else SpectrumFlags.NONE,
            detector_temp_c=temp,
        )

    def sample_absorbance(self, index: int) -> npt.NDArray[np.float64]:
        """Absorbance the device sees for spectrum ``index`` (dataset row with drifts applied), shape (n_pixels,)."""
        row = int(self._order[index % len(self._order)])
        a = self.absorbance[row]
        _, shift, baseline, band = self._drift_state(index)
        if shift:
            if self.axis[-1] < self.axis[0]:  # np.interp wants an ascending axis
                a = np.interp(self.axis[::-1] + shift, self.axis[::-1], a[::-1])[::-1]
            else:
                a = np.interp(self.axis + shift, self.axis, a)
        a = np.asarray(a + baseline + band * self._foreign_band, dtype=np.float64)
        return self._spectrum_drift.apply(index, a)

    def spectrum(self, *, triggered: bool = False) -> tuple[Spectrum, Annotation]:
        """Acquire the next sample: a SPECTRUM and its ANNOTATION (same seq, the dataset's y row)."""
        index = self.spectra_sent
        row = int(self._order[index % len(self._order)])
        lamp, shift, _, _ = self._drift_state(index)
        if self.processed:
            spectrum = self._processed_spectrum(index, shift, triggered=triggered)
            self.spectra_sent += 1
            return spectrum, Annotation(seq=spectrum.seq, values=tuple(self.reference_values[row]))
        acq = self.model.measure(
            self.sample_absorbance(index), self.integration_time_us, self._rng, averages=self.averages, lamp_scale=lamp
        )
        flags = SpectrumFlags.SATURATED if acq.saturated else SpectrumFlags.NONE
        if triggered:
            flags |= SpectrumFlags.TRIGGERED
        seq = self._next_seq()
        spectrum = Spectrum(
            seq=seq,
            timestamp_us=self._now_us(),
            integration_time_us=acq.integration_time_us,
            counts=acq.counts[: self.active_pixels],
            averages=acq.averages,
            saturated_count=acq.saturated_count,
            flags=flags,
            detector_temp_c=self._temperature_c(shift),
        )
        self.spectra_sent += 1
        return spectrum, Annotation(seq=seq, values=tuple(self.reference_values[row]))

    def _processed_spectrum(self, index: int, shift: float, *, triggered: bool) -> Spectrum:
        """A SPECTRUM of float32 absorbance or reflectance, as a device that processes on board sends it."""
        a = self.sample_absorbance(index)[: self.active_pixels]
        values = a if self.config.signal is SignalKind.ABSORBANCE else np.power(10.0, -a)
        return Spectrum(
            seq=self._next_seq(),
            timestamp_us=self._now_us(),
            integration_time_us=self.integration_time_us,
            counts=values.astype(np.float32),
            averages=self.averages,
            flags=SpectrumFlags.TRIGGERED if triggered else SpectrumFlags.NONE,
            detector_temp_c=self._temperature_c(shift),
        )

    def line(self, n: int) -> Line:
        """Acquire the next ``n`` samples as one LINE (a push-broom line read in one exposure): the rows the next
        ``n`` SPECTRUM frames would carry (dataset order, drifts), read together; its seqs are the next ``n``."""
        index = self.spectra_sent
        lamp, shift, _, _ = self._drift_state(index)
        absorbance = np.stack([self.sample_absorbance(index + k) for k in range(n)])
        seq = self.seq
        self.seq = (self.seq + n) & 0xFFFFFFFF
        flags = SpectrumFlags.NONE
        if self.processed:
            a = absorbance[:, : self.active_pixels]
            values = a if self.config.signal is SignalKind.ABSORBANCE else np.power(10.0, -a)
            counts, integration_us, averages = values.astype(np.float32), self.integration_time_us, self.averages
        else:
            acq = self.model.measure(absorbance, self.integration_time_us, self._rng, averages=self.averages,
                                     lamp_scale=lamp)
            counts = acq.counts[:, : self.active_pixels]
            integration_us, averages = acq.integration_time_us, acq.averages
            if acq.saturated:
                flags |= SpectrumFlags.SATURATED
        self.spectra_sent += n
        return Line(seq=seq, timestamp_us=self._now_us(), integration_time_us=integration_us, counts=counts,
                    averages=averages, flags=flags, detector_temp_c=self._temperature_c(shift))

    def _references(self) -> list[Frame]:
        """DARK and REFERENCE for a host that computes the signal from counts; none for a processed signal."""
        if self.processed:
            return []
        return [self.dark(), self.reference()]

    def reboot(self) -> list[Frame]:
        """Reboot the firmware: new boot id, ``seq`` and clock from 0, boot-time settings; returns what it sends.

        The dataset position, drifts, pixel count and calibration carry on (they belong to the sample, the optics
        and the flash, not to the running firmware).
        """
        self.boot_id = draw_boot_id(self.boot_id)
        self.reboots += 1
        self.seq = 0
        self._boot_at_us = int(self._clock_us())
        self.integration_time_us = self._boot_integration_time_us
        self.averages = int(self.config.averages)
        self.period_s = 0.0 if self.config.rate_hz == 0 else 1.0 / self.config.rate_hz
        self.streaming = bool(self.config.autostart)
        _LOG.info("firmware event: reboot %d, boot_id 0x%08x", self.reboots, self.boot_id)
        frames: list[Frame] = [self.status()]
        if self.streaming:
            frames += self._references()
        return frames

    def stream_next(self) -> list[Frame]:
        """The next streamed sample as ``[Spectrum, Annotation]``, or the next ``[Line]`` of ``line_spectra``
        samples (empty when ``done``)."""
        if self.done:
            return []
        every = self.config.faults.reboot_every
        if every and self.streamed and self.streamed % every == 0 and self.streamed != self._rebooted_at:
            self._rebooted_at = self.streamed  # once per point in the stream, however often stream_next is called
            frames: list[Frame] = self.reboot()
            if not self.streaming:  # a device that waits for START_STREAM after boot
                return frames
        else:
            frames = []
        frames += self._firmware_events(self.spectra_sent)
        per_line = self.config.line_spectra
        span = max(1, per_line)  # the spectrum indices of the frame sent next: a tag on one of them precedes it
        frames += [SampleTag(sid, k) for at, sid, k in self.config.sample_tags
                   if self.streamed <= at < self.streamed + span]
        if per_line:
            n = per_line if not self.config.count else min(per_line, self.config.count - self.streamed)
            frames.append(self.line(n))
            self.streamed += n
            return frames
        spectrum, annotation = self.spectrum()
        self.streamed += 1
        frames += [spectrum, annotation]
        return frames

    def _firmware_events(self, index: int) -> list[Frame]:
        """Frames announcing a pixel-count change or a recalibration scheduled for spectrum ``index``."""
        faults = self.config.faults
        out: list[Frame] = []
        if faults.pixel_change_at is not None and index == faults.pixel_change_at:
            self.active_pixels = min(self.pixel_count, faults.pixel_change_to)
            _LOG.info("firmware event: pixel count now %d", self.active_pixels)
            out += [self.status(), *self._references()]
        if faults.recalibrate_at is not None and index == faults.recalibrate_at:
            coeffs = list(self.axis_coeffs)
            coeffs[0] += faults.recalibrate_shift_nm
            self.axis_coeffs = tuple(coeffs)
            _LOG.info(
                "firmware event: axis calibration shifted by %.2f %s",
                faults.recalibrate_shift_nm,
                self.axis_unit.symbol,
            )
            out.append(self.status())
        return out

    def session_start(self) -> list[Frame]:
        """Frames a device sends when a host connects: STATUS, and DARK + REFERENCE while streaming counts."""
        frames: list[Frame] = [self.status()]
        if self.streaming and not self.done:
            frames += self._references()
        return frames

    def iter_frames(self, count: int | None = None) -> Iterator[Frame]:
        """Frames the device would send to a host that just connected and never speaks: the session start
        (STATUS, DARK, REFERENCE), then ``[SPECTRUM, ANNOTATION]`` pairs with any firmware events in between, until
        ``count`` spectra (default: the config's ``count``; endless when that is 0 too).

        >>> device = VirtualSpectrometer.from_config(SimulatorConfig(synthetic_samples=5, synthetic_channels=32))
        >>> [type(f).__name__ for f in device.iter_frames(2)]
        ['Status', 'Dark', 'Reference', 'Spectrum', 'Annotation', 'Spectrum', 'Annotation']
        """
        limit = self.config.count if count is None else count
        yield from self.session_start()
        sent = 0
        while not limit or sent < limit:
            frames = self.stream_next()
            if not frames:
                return
            sent += 1
            yield from frames

    # ------------------------------------------------------------------ host requests
    def handle(self, frame: Frame) -> list[Frame]:
        """Answer one frame from the host: HELLO -> STATUS, COMMAND -> ACK/NACK (+ data); others are ignored."""
        if isinstance(frame, Hello):
            return [self.status(frame.nonce)]
        if isinstance(frame, Command):
            return self._command(frame)
        _LOG.debug("ignoring a %s frame from the host", type(frame).__name__)
        return []

    def _command(self, cmd: Command) -> list[Frame]:
        code, value = cmd.code, int(cmd.value)

        def nack(reason: NackCode, detail: str) -> list[Frame]:
            return [Nack(cmd.command_id, code, reason, detail)]

        ack: Frame = Ack(cmd.command_id, code)
        if code == CommandCode.SET_INTEGRATION_TIME:
            if not 1 <= value <= MAX_INTEGRATION_TIME_US:
                return nack(NackCode.VALUE_OUT_OF_RANGE, f"expected 1 to {MAX_INTEGRATION_TIME_US} us, got {value}")
            self.integration_time_us = value
            return [ack, self.status()]
        if code == CommandCode.SET_AVERAGING:
            if not 1 <= value <= MAX_AVERAGES:
                return nack(NackCode.VALUE_OUT_OF_RANGE, f"expected 1 to {MAX_AVERAGES} averages, got {value}")
            self.averages = value
            return [ack, self.status()]
        if code == CommandCode.TRIGGER:
            n = max(1, value)
            if n > MAX_TRIGGER:
                return nack(NackCode.VALUE_OUT_OF_RANGE, f"expected 1 to {MAX_TRIGGER} spectra, got {value}")
            out: list[Frame] = [ack]
            for _ in range(n):
                out.extend(self.spectrum(triggered=True))
            return out
        if code in (CommandCode.REQUEST_DARK, CommandCode.REQUEST_REFERENCE) and self.processed:
            return nack(
                NackCode.NOT_SUPPORTED,
                f"expected no dark or reference request: this device sends {self.config.signal.name.lower()}",
            )
        if code == CommandCode.REQUEST_DARK:
            return [ack, self.dark()]
        if code == CommandCode.REQUEST_REFERENCE:
            return [ack, self.reference()]
        if code == CommandCode.START_STREAM:
            self.period_s = value / 1e6
            self.streaming = True
            return [ack, *self._references()]
        if code == CommandCode.STOP_STREAM:
            self.streaming = False
            return [ack]
        return nack(NackCode.UNKNOWN_COMMAND, f"expected a known command, got {code!r}")  # pragma: no cover
