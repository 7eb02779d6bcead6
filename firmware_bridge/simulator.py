"""A virtual spectrometer that speaks the spectrolite protocol on a pty or TCP, with drifts and injected faults.

Two layers, as everywhere in this package:

* :class:`VirtualSpectrometer` is the device's brain, without I/O: it holds a dataset of absorbance spectra (a
  ``.npz`` of ``../shared/datasets`` or :func:`firmware_bridge.synthetic.make_synthetic_dataset`), turns rows into
  raw counts with :class:`firmware_bridge.physics.DetectorModel`, answers HELLO with STATUS and COMMANDs with
  ACK/NACK (plus DARK, REFERENCE or SPECTRUM frames), and applies slow and provoked drifts.  Every SPECTRUM is
  followed by an ANNOTATION with the same ``seq`` carrying the dataset's ``y`` row.
* :class:`Simulator` runs it on an endpoint: a pty pair (:class:`PtyEndpoint`) or a TCP listener
  (:class:`TcpEndpoint`), pacing the stream (``rate_hz``), flipping bits and dropping bytes on the way out, and
  dropping the connection on a schedule.  ``Simulator.run(stop_event)`` blocks until the event is set (or the run is
  done with ``exit_when_done``), so it runs in a thread of a test as well as in the ``spectro-sim`` process.

Session rules.  The device streams only while a host has the port open (like a USB CDC device whose host side is
closed, it waits): on a pty it watches the master for hang-up, on TCP it accepts one client at a time.  When a host
arrives the device waits ``connect_delay_s`` (pyserial flushes its input buffer while it opens a port; a real
Arduino resets on open), then sends a delimiter, an unsolicited STATUS and, while streaming, a DARK and a REFERENCE
so the host can compute absorbance from the first spectrum.  Sequence numbers count every spectrum-like frame
(SPECTRUM, DARK, REFERENCE) and continue across sessions.

Signal and boots.  By default the device sends raw detector counts (``SimulatorConfig.signal`` COUNTS, announced in
its STATUS), which the host turns back into absorbance with the DARK and REFERENCE frames.  With ``signal``
ABSORBANCE or REFLECTANCE it plays a device that processes on board: SPECTRUM frames carry the float32 signal
itself (the dataset row with the configured drifts, without detector noise), and there are no DARK or REFERENCE
frames (requests for them are refused with NACK NOT_SUPPORTED).  Every device instance draws a random non-zero
``boot_id`` (:func:`~firmware_bridge.frames.draw_boot_id`, never from ``seed``, so two runs differ);
``FaultConfig.reboot_every`` simulates a reboot of the firmware (the link stays up, as on a UART): a new
``boot_id``, ``seq`` and the device clock restart at 0, settings go back to their boot values, and an unsolicited
STATUS (plus DARK and REFERENCE for counts) announces it.

Spectral axis.  The device announces the dataset's axis as a polynomial of the pixel index in the axis's own unit:
nm for grating instruments (NIR), cm-1 for FTIR ones (MIR), whose axis is even in wavenumber and which no
low-order polynomial in nm can state.  The unit is ``SimulatorConfig.axis_unit``, or, when that is None, the
dataset's own ``axis_unit`` entry (a 0-d string array ``"nm"`` or ``"cm-1"``, as
:func:`~firmware_bridge.synthetic.make_synthetic_dataset` writes it), else nm.  The ``.npz`` files of
``../shared/datasets`` carry no unit (their READMEs say which are in cm-1), and their ranges overlap (600-1898 nm,
799-1911 cm-1), so no range can tell them apart: serve an FTIR one with ``axis_unit`` cm-1 (``spectro-sim
--axis-unit cm-1``).  The detector model always works in true nm (``1e7 / wavenumber``); drifts and
recalibrations of the axis are in the axis's unit.

Disconnects and a stable device path.  A pty disappears with its master: when the simulator "unplugs"
(``disconnect_every``) it closes the master, so the host's reads fail exactly as with a USB unplug, and removes the
symlink (``link_path``); after ``disconnect_for_s`` it creates a NEW pty pair and atomically points the symlink at
the new slave.
Hosts open the symlink, never ``/dev/pts/N`` (whose number may be reused), so reopening the same path finds the
device again.  On TCP the client connection and the listener are closed and the listener comes back on the same
port.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import select
import socket
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from firmware_bridge.codec import FrameDecoder, encode
from firmware_bridge.errors import BridgeError
from firmware_bridge.frames import (
    Ack,
    Annotation,
    AxisUnit,
    Command,
    CommandCode,
    Dark,
    Frame,
    Hello,
    Nack,
    NackCode,
    Reference,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
    draw_boot_id,
)
from firmware_bridge.physics import DetectorModel
from firmware_bridge.synthetic import absorption_band, load_npz, make_synthetic_dataset

__all__ = [
    "DRIFT_KINDS",
    "DriftConfig",
    "FaultConfig",
    "PtyEndpoint",
    "Simulator",
    "SimulatorConfig",
    "SimulatorError",
    "TcpEndpoint",
    "VirtualSpectrometer",
    "dataset_axis_unit",
    "fit_wavelength_polynomial",
    "load_spectra",
]

_LOG = logging.getLogger(__name__)

#: Kinds of provoked drift and their default size (absorbance, absorbance, axis unit (nm or cm-1), fraction of lamp
#: output lost).
DRIFT_KINDS: dict[str, float] = {"band": 0.3, "baseline": 0.2, "shift": 3.0, "lamp": 0.3}
#: Axis shift per degree of detector temperature, axis unit (nm or cm-1) per degC (reported temperature follows it).
TEMP_COEFF_NM_PER_C = 0.05
#: Limits of the settings a COMMAND may ask for.
MAX_INTEGRATION_TIME_US = 60_000_000
MAX_AVERAGES = 1000
MAX_TRIGGER = 1000
_TICK_S = 0.02  # longest idle wait of the run loop


class SimulatorError(BridgeError, ValueError):
    """Invalid simulator configuration or dataset."""


class _HostGone(Exception):
    """The host closed its side of the link (internal signal of the endpoints)."""

# ---------------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DriftConfig:
    """Slow drifts (per 1000 spectra, so they show at any rate) and one provoked drift.

    Parameters
    ----------
    lamp_ageing_per_kframe : float
        Fraction of lamp output lost per 1000 spectra (compounded).
    wavelength_shift_nm_per_kframe : float
        Axis shift of the spectra per 1000 spectra, in the device's axis unit (nm, or cm-1 for a cm-1 device; the
        reported detector temperature follows it).
    baseline_offset : float
        Constant absorbance added to every spectrum.
    baseline_drift_per_kframe : float
        Absorbance added per 1000 spectra.
    drift_at_frame : int or None
        Index of the spectrum (0-based) at which the provoked drift starts; None for none.
    drift_kind : str
        One of :data:`DRIFT_KINDS`: a foreign absorption ``band`` grows in, a ``baseline`` offset, a wavelength
        ``shift`` in the axis unit (nm or cm-1), or a ``lamp`` losing a fraction of its output.
    drift_size : float or None
        Full size of the provoked drift in the kind's unit; None for the kind's default.
    drift_ramp_frames : int
        Spectra over which the provoked drift ramps up to full size (1 = a step).
    """

    lamp_ageing_per_kframe: float = 0.0
    wavelength_shift_nm_per_kframe: float = 0.0
    baseline_offset: float = 0.0
    baseline_drift_per_kframe: float = 0.0
    drift_at_frame: int | None = None
    drift_kind: str = "band"
    drift_size: float | None = None
    drift_ramp_frames: int = 20

    def __post_init__(self) -> None:
        if self.drift_kind not in DRIFT_KINDS:
            raise SimulatorError(f"expected a drift kind in {sorted(DRIFT_KINDS)}, got {self.drift_kind!r}")
        if self.drift_ramp_frames < 1:
            raise SimulatorError(f"expected a drift ramp of at least 1 frame, got {self.drift_ramp_frames}")
        if not 0.0 <= self.lamp_ageing_per_kframe < 1.0:
            raise SimulatorError(f"expected 0 <= lamp ageing per 1000 frames < 1, got {self.lamp_ageing_per_kframe}")

    def provoked_weight(self, index: int) -> float:
        """Fraction (0 to 1) of the provoked drift present in spectrum ``index``."""
        if self.drift_at_frame is None or index < self.drift_at_frame:
            return 0.0
        return min(1.0, (index - self.drift_at_frame + 1) / self.drift_ramp_frames)

    @property
    def size(self) -> float:
        """Full size of the provoked drift (the kind's default when not given)."""
        return DRIFT_KINDS[self.drift_kind] if self.drift_size is None else float(self.drift_size)


@dataclass(frozen=True)
class FaultConfig:
    """Faults: damage on the way out, link drops and stalls, and firmware events that change the device.

    Parameters
    ----------
    bit_flip_rate : float
        Probability that an outgoing byte has one random bit flipped.
    drop_byte_rate : float
        Probability that an outgoing byte is dropped.
    disconnect_every : int
        Unplug the link after every this many spectra (0: never).
    disconnect_for_s : float
        How long the link stays unplugged, seconds.
    garbage_every : int
        After every this many spectra, send a burst of 64 random bytes (0: never).
    truncate_every : int
        Cut every this many-th spectrum frame short at a random byte and end it with a delimiter (0: never).
    stall_every : int
        After every this many spectra, go silent for ``stall_for_s`` with the link up (0: never).
    stall_for_s : float
        Length of a stall, seconds.
    pixel_change_at : int or None
        From this spectrum index on, send only the first ``pixel_change_to`` pixels (a firmware with another
        region of interest), announced by an unsolicited STATUS, DARK and REFERENCE.
    pixel_change_to : int
        Pixel count after ``pixel_change_at``.
    recalibrate_at : int or None
        At this spectrum index, announce a new wavelength calibration (shifted by ``recalibrate_shift_nm``) in an
        unsolicited STATUS; the spectra themselves do not change.
    recalibrate_shift_nm : float
        Shift of the announced calibration, in the device's axis unit (nm, or cm-1 for a cm-1 device).
    reboot_every : int
        Reboot the firmware after every this many streamed spectra (0: never): a new random ``boot_id``, ``seq``
        and the device clock (``uptime_s``, ``timestamp_us``) restart at 0, integration time, averaging and
        streaming go back to their boot values, and an unsolicited STATUS (then DARK and REFERENCE, for counts)
        follows.  The link stays up, as on a UART; ``disconnect_every`` plays a USB unplug.
    """

    bit_flip_rate: float = 0.0
    drop_byte_rate: float = 0.0
    disconnect_every: int = 0
    disconnect_for_s: float = 1.0
    garbage_every: int = 0
    truncate_every: int = 0
    stall_every: int = 0
    stall_for_s: float = 1.0
    pixel_change_at: int | None = None
    pixel_change_to: int = 0
    recalibrate_at: int | None = None
    recalibrate_shift_nm: float = 5.0
    reboot_every: int = 0

    def __post_init__(self) -> None:
        for name in ("bit_flip_rate", "drop_byte_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SimulatorError(f"expected {name} between 0 and 1, got {value}")
        for name in (
            "disconnect_every",
            "disconnect_for_s",
            "garbage_every",
            "truncate_every",
            "stall_every",
            "reboot_every",
        ):
            if getattr(self, name) < 0:
                raise SimulatorError(f"expected a non-negative {name}, got {getattr(self, name)}")
        if self.stall_for_s < 0:
            raise SimulatorError(f"expected a non-negative stall_for_s, got {self.stall_for_s}")
        if self.pixel_change_at is not None and self.pixel_change_to < 1:
            raise SimulatorError(f"expected pixel_change_to of at least 1, got {self.pixel_change_to}")


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything a :class:`Simulator` run needs except the endpoint.

    Parameters
    ----------
    dataset_path : str or None
        ``.npz`` dataset to stream (absorbance on its wavelengths); None for the synthetic generator.
    rows : slice or None
        Rows of the dataset to stream (after ``split`` filtering), cycled.
    split : str or None
        Keep only rows whose ``split`` array equals this (e.g. ``"test"``).
    shuffle : bool
        Stream the rows in a seeded random order.
    rate_hz : float
        Spectra per second while streaming; 0 for as fast as the link takes them.
    count : int
        Spectra to stream in total (0: endless); triggered spectra do not count.
    seed : int
        Seed of the noise, the synthetic dataset, the row order and the faults.
    integration_time_us : int or None
        Exposure; None picks one that fills 80 % of the ADC for the least absorbing sample.
    averages : int
        Scans averaged per spectrum.
    device_id, firmware_version : str
        Identity reported in STATUS.
    autostart : bool
        Stream as soon as a host connects (otherwise wait for START_STREAM).
    connect_delay_s : float
        Wait after a host opens the port before sending (see the module docstring).
    exit_when_done : bool
        Return from :meth:`Simulator.run` ``linger_s`` after the last of ``count`` spectra.
    linger_s : float
        Grace period before returning when done, seconds (lets the host read the tail).
    synthetic_samples, synthetic_channels : int
        Size of the synthetic dataset when no ``dataset_path`` is given.
    signal : SignalKind
        What SPECTRUM frames carry: raw detector ``COUNTS`` (uint16, with DARK and REFERENCE frames; the default), or
        the processed ``ABSORBANCE`` or ``REFLECTANCE`` as float32 (no DARK or REFERENCE).  Announced in STATUS.
    boot_id : int or None
        Boot id of the first boot, 1..2**32-1; None (the default) draws a random one
        (:func:`~firmware_bridge.frames.draw_boot_id`).  Later boots (``faults.reboot_every``) always draw theirs.
    axis_unit : AxisUnit or None
        Unit of the dataset's ``wavelengths`` and of the polynomial the STATUS announces (``NM`` or ``CM_1``; the
        symbols ``"nm"``/``"cm-1"`` are accepted too); None (the default) takes the dataset's ``axis_unit`` entry,
        else nm (see :func:`dataset_axis_unit`).  The synthetic spectra are labelled with it.
    drift : DriftConfig
    faults : FaultConfig
    """

    dataset_path: str | None = None
    rows: slice | None = None
    split: str | None = None
    shuffle: bool = False
    rate_hz: float = 10.0
    count: int = 0
    seed: int = 0
    integration_time_us: int | None = None
    averages: int = 1
    device_id: str = "SIM-0001"
    firmware_version: str = "spectro-sim 1.0"
    autostart: bool = True
    connect_delay_s: float = 0.25
    exit_when_done: bool = False
    linger_s: float = 1.0
    synthetic_samples: int = 500
    synthetic_channels: int = 256
    signal: SignalKind = SignalKind.COUNTS
    boot_id: int | None = None
    axis_unit: AxisUnit | None = None
    drift: DriftConfig = field(default_factory=DriftConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "signal", SignalKind(self.signal))
        except ValueError:
            known = ", ".join(f"{int(k)} ({k.name})" for k in SignalKind)
            raise SimulatorError(f"expected a signal kind of {known}, got {self.signal!r}") from None
        if self.axis_unit is not None:
            object.__setattr__(self, "axis_unit", _axis_unit(self.axis_unit))
        if self.boot_id is not None and not 1 <= self.boot_id <= 0xFFFF_FFFF:
            raise SimulatorError(f"expected a boot_id in 1..4294967295, got {self.boot_id}")
        if self.rate_hz < 0:
            raise SimulatorError(f"expected a rate of 0 or more spectra per second, got {self.rate_hz}")
        if self.count < 0:
            raise SimulatorError(f"expected a count of 0 (endless) or more, got {self.count}")
        if not 1 <= self.averages <= MAX_AVERAGES:
            raise SimulatorError(f"expected 1 to {MAX_AVERAGES} averages, got {self.averages}")


def _axis_unit(value: object) -> AxisUnit:
    """An :class:`AxisUnit` from itself, its wire code or its symbol; :class:`SimulatorError` otherwise."""
    try:
        if isinstance(value, str):
            return AxisUnit.from_symbol(value)
        if isinstance(value, int):
            return AxisUnit(value)
    except (ValueError, TypeError):
        pass
    known = ", ".join(f"{u.symbol!r}" for u in AxisUnit)
    raise SimulatorError(f"expected an axis unit of {known}, got {value!r}")


# ---------------------------------------------------------------------------------------------------- dataset
def dataset_axis_unit(data: dict[str, npt.NDArray[Any]], configured: AxisUnit | None = None) -> AxisUnit:
    """Unit of a dataset's ``wavelengths``: ``configured`` when given, else the dataset's ``axis_unit`` entry (a 0-d
    string array ``"nm"`` or ``"cm-1"``), else nm.

    No range check can do better: the shared NIR sets (600-1898 nm) and FTIR sets (799-1911 cm-1) overlap, so a
    dataset that does not say is taken as nm and a cm-1 one must be named (``--axis-unit cm-1``).

    >>> dataset_axis_unit({"axis_unit": np.array("cm-1")}), dataset_axis_unit({}, AxisUnit.CM_1).symbol
    (<AxisUnit.CM_1: 1>, 'cm-1')
    """
    if configured is not None:
        return _axis_unit(configured)
    stated = data.get("axis_unit")
    if stated is None:
        return AxisUnit.NM
    raw = np.asarray(stated)
    if raw.ndim != 0 or raw.dtype.kind not in "US":
        raise SimulatorError(f"expected the dataset's axis_unit as one string 'nm' or 'cm-1', got {raw!r}")
    return _axis_unit(str(raw))


def _load_dataset(
    config: SimulatorConfig,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], AxisUnit]:
    """:func:`load_spectra` plus the unit of the axis (:func:`dataset_axis_unit`)."""
    if config.dataset_path is None:
        data = make_synthetic_dataset(
            config.synthetic_samples,
            seed=config.seed,
            n_channels=config.synthetic_channels,
            axis_unit=(config.axis_unit or AxisUnit.NM).symbol,
        )
    else:
        data = load_npz(config.dataset_path)
    unit = dataset_axis_unit(data, config.axis_unit)
    x = np.asarray(data["X"], dtype=np.float64)
    y = np.asarray(data["y"], dtype=np.float64)
    y = y.reshape(len(y), -1)
    wl = np.asarray(data["wavelengths"], dtype=np.float64)
    keep = np.arange(len(x))
    if config.split is not None:
        if "split" not in data:
            raise SimulatorError(f"expected a 'split' array in the dataset to select {config.split!r}, found none")
        keep = keep[np.asarray(data["split"]).astype(str) == config.split]
        if keep.size == 0:
            found = sorted(set(np.asarray(data["split"]).astype(str)))
            raise SimulatorError(f"expected rows with split {config.split!r}, found splits {found}")
    if config.rows is not None:
        keep = keep[config.rows]
        if keep.size == 0:
            raise SimulatorError(f"expected at least one row in {config.rows}, got none")
    return x[keep], wl, y[keep], unit


def load_spectra(
    config: SimulatorConfig,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Absorbance rows, spectral axis and reference values to stream: ``(X (n, p), wavelengths (p,), y (n, k))``.

    ``wavelengths`` is in the dataset's own unit (nm, or cm-1: :func:`dataset_axis_unit`).
    """
    x, wl, y, _ = _load_dataset(config)
    return x, wl, y


def fit_wavelength_polynomial(wavelengths_nm: npt.ArrayLike, *, tolerance_nm: float = 1e-3) -> tuple[float, ...]:
    """Lowest-degree (1 to 5) polynomial of the pixel index reproducing the axis within ``tolerance_nm``.

    Works in whatever unit the axis is in (nm, or cm-1 for a wavenumber axis; ``tolerance_nm`` is then in cm-1).
    The polynomial passes through the first and the last pixel (least squares under that constraint), so the
    announced axis spans exactly the dataset's range: a host that checks that a device covers a model's range, as
    the edge does, never refuses the dataset's own axis for rounding in its last decimals (the FTIR sets are
    rounded to 1e-3 cm-1).  Returns the coefficients lowest order first (the :class:`~firmware_bridge.frames.Status`
    convention); when no degree reaches the tolerance, the degree-5 fit.

    >>> axis = np.round(899.327 + 3.8575 * np.arange(235), 3)  # an FTIR axis, rounded as in fruit_puree_mir.npz
    >>> c = fit_wavelength_polynomial(axis)
    >>> ends = np.polynomial.polynomial.polyval([0.0, 234.0], c)
    >>> len(c), bool(ends[0] == axis[0]), bool(abs(ends[1] - axis[-1]) < 1e-9)
    (2, True, True)
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    if wl.size < 2:
        return tuple(float(v) for v in wl)
    last = float(wl.size - 1)
    t = np.arange(wl.size, dtype=np.float64) / last  # pixel index scaled to 0..1: a well-conditioned fit
    first, span = float(wl[0]), float(wl[-1] - wl[0])
    rest = wl - (first + span * t)  # what the straight line through both ends leaves
    powers = last ** np.arange(6, dtype=np.float64)
    best: tuple[float, ...] = ()
    for degree in range(1, min(5, wl.size - 1) + 1):
        a = np.zeros(degree + 1)
        a[0], a[1] = first, span
        if degree >= 2:  # t (t - 1) t^k vanishes at both ends: t^(k+2) - t^(k+1)
            basis = np.stack([t * (t - 1.0) * t**k for k in range(degree - 1)], axis=1)
            q = np.linalg.lstsq(basis, rest, rcond=None)[0]
            for k, qk in enumerate(q):
                a[k + 2] += qk
                a[k + 1] -= qk
        coeffs = tuple(float(c) for c in a / powers[: degree + 1])  # in powers of the pixel index
        best = coeffs
        index = t * last
        if np.max(np.abs(np.polynomial.polynomial.polyval(index, coeffs) - wl)) <= tolerance_nm:
            break
    return best


# ---------------------------------------------------------------------------------------------------- the device
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
        if x.shape[1] > 65535:
            raise SimulatorError(f"expected at most 65535 pixels, got {x.shape[1]}")
        self.absorbance = x
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
        if self.config.integration_time_us is None:
            floor = float(np.nanpercentile(x, 1.0)) - 0.05
            self.integration_time_us = self.model.auto_integration_time_us(floor)
        else:
            self.integration_time_us = int(self.config.integration_time_us)
        if not 1 <= self.integration_time_us <= MAX_INTEGRATION_TIME_US:
            raise SimulatorError(f"expected 1 to {MAX_INTEGRATION_TIME_US} us, got {self.integration_time_us}")
        self.averages = int(self.config.averages)
        self.streaming = bool(self.config.autostart)
        self.period_s = 0.0 if self.config.rate_hz == 0 else 1.0 / self.config.rate_hz
        self.seq = 0
        self.spectra_sent = 0  # streamed and triggered
        self.streamed = 0  # streamed only (what ``count`` limits)
        span = float(self.axis.max() - self.axis.min())
        lo = float(self.axis.min())
        self._foreign_band = absorption_band(self.axis, lo + 0.6 * span, 0.08 * span, 1.0)
        self.active_pixels = self.pixel_count
        self._boot_integration_time_us = self.integration_time_us

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> VirtualSpectrometer:
        """Load the dataset named in ``config`` (or make the synthetic one) and build the device, in the unit
        ``config.axis_unit`` names or, when it names none, the dataset's (:func:`dataset_axis_unit`)."""
        x, axis, y, unit = _load_dataset(config)
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
            else:
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
        """Acquire a DARK frame at the current exposure."""
        _, shift, _, _ = self._drift_state(self.spectra_sent)
        temp = self._temperature_c(shift)
        acq = self.model.dark(self.integration_time_us, self._rng, averages=self.averages, temp_c=None)
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
        """Acquire a white REFERENCE frame valid at the current exposure (float32 when it is scaled)."""
        lamp, shift, _, _ = self._drift_state(self.spectra_sent)
        temp = self._temperature_c(shift)
        acq = self.model.reference(self.integration_time_us, self._rng, averages=self.averages, lamp_scale=lamp)
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
        return np.asarray(a + baseline + band * self._foreign_band, dtype=np.float64)

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
        """The next streamed sample as ``[Spectrum, Annotation]`` (empty when ``done``)."""
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


# ---------------------------------------------------------------------------------------------------- endpoints
class Endpoint(Protocol):
    """Device side of a link, as the :class:`Simulator` uses it (non-blocking except :meth:`write`)."""

    address: str

    def open(self) -> None: ...
    def host_present(self) -> bool: ...
    def fileno(self) -> int | None: ...
    def read(self) -> bytes: ...
    def write(self, data: bytes, stop: threading.Event) -> None: ...
    def drop(self) -> None: ...
    def close(self) -> None: ...


class PtyEndpoint:
    """A pty pair whose slave is published as a stable symlink ``link_path`` (see the module docstring).

    Parameters
    ----------
    link_path : str or Path, optional
        Where to publish the device path; default ``<tempdir>/spectro-sim-XXXX/tty`` (removed on close).
    """

    def __init__(self, link_path: str | Path | None = None) -> None:
        self._own_dir: Path | None = None
        if link_path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="spectro-sim-"))
            link_path = self._own_dir / "tty"
        self.link_path = Path(link_path)
        self.address = str(self.link_path)
        self.slave_name = ""
        self._master: int | None = None
        self._poll = select.poll()

    def open(self) -> None:
        """Create a new pty pair (raw mode, so nothing is echoed) and point the symlink at its slave."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            self.slave_name = os.ttyname(slave)
        finally:
            os.close(slave)  # the master alone keeps the pair alive; a host opening the slave is then detectable
        os.set_blocking(master, False)
        self._master = master
        self._poll = select.poll()
        self._poll.register(master, select.POLLIN | select.POLLHUP)
        tmp = self.link_path.with_name(self.link_path.name + f".{os.getpid()}.tmp")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link_path)
        _LOG.info("pty %s published at %s", self.slave_name, self.link_path)

    def host_present(self) -> bool:
        """Whether some process has the slave open (the master reports hang-up while nobody does)."""
        if self._master is None:
            return False
        events = self._poll.poll(0)
        return not any(ev & select.POLLHUP for _, ev in events)

    def fileno(self) -> int | None:
        """File descriptor to wait on for incoming bytes."""
        return self._master

    def read(self) -> bytes:
        """Bytes from the host, without blocking; raises _HostGone when the slave was closed."""
        if self._master is None:
            raise _HostGone()
        try:
            return os.read(self._master, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                raise _HostGone() from exc
            raise

    def write(self, data: bytes, stop: threading.Event) -> None:
        """Write everything, waiting while the pty buffer is full (the host is slow), until ``stop``."""
        view = memoryview(data)
        while view and not stop.is_set():
            if self._master is None:
                raise _HostGone()
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                if not self.host_present():
                    raise _HostGone() from None
                select.select([], [self._master], [], _TICK_S)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise _HostGone() from exc
                raise

    def drop(self) -> None:
        """Unplug: close the master, so the host's reads fail, and remove the symlink until :meth:`open`.

        The link must not dangle: the kernel reuses pty numbers, and a host reconnecting through a stale link could
        open another program's terminal.
        """
        self._unlink()
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def _unlink(self) -> None:
        try:
            if self.link_path.is_symlink() and os.readlink(self.link_path) == self.slave_name:
                self.link_path.unlink()
        except OSError as exc:
            _LOG.debug("could not remove %s: %s", self.link_path, exc)

    def close(self) -> None:
        """Close the master and remove the symlink (and the temporary folder this endpoint made)."""
        self.drop()
        if self._own_dir is not None:
            try:
                self._own_dir.rmdir()
            except OSError:
                pass


class TcpEndpoint:
    """A TCP listener serving one client at a time; the host connects with ``socket://host:port``.

    Parameters
    ----------
    port : int
        Port to listen on (0 picks a free one; it is kept across drops).
    host : str
        Address to bind, default loopback.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = int(port)
        self.address = ""
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    def open(self) -> None:
        """Start listening (on the same port after a drop)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(1)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self.address = f"socket://{self.host}:{self.port}"
        self._listener = listener

    def host_present(self) -> bool:
        """Whether a client is connected (accepting one if it is waiting)."""
        if self._client is None and self._listener is not None:
            try:
                client, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return False
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = client
            _LOG.info("TCP client %s connected", peer)
        return self._client is not None

    def fileno(self) -> int | None:
        """File descriptor to wait on (the client, or the listener while there is none)."""
        if self._client is not None:
            return self._client.fileno()
        return self._listener.fileno() if self._listener is not None else None

    def _lose_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def read(self) -> bytes:
        """Bytes from the client, without blocking; raises _HostGone when it left."""
        if self._client is None:
            raise _HostGone()
        try:
            data = self._client.recv(65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            self._lose_client()
            raise _HostGone() from exc
        if not data:
            self._lose_client()
            raise _HostGone()
        return data

    def write(self, data: bytes, stop: threading.Event) -> None:
        """Send everything, waiting while the socket buffer is full, until ``stop``."""
        view = memoryview(data)
        while view and not stop.is_set():
            if self._client is None:
                raise _HostGone()
            try:
                n = self._client.send(view)
                view = view[n:]
            except (BlockingIOError, InterruptedError):
                select.select([], [self._client], [], _TICK_S)
            except OSError as exc:
                self._lose_client()
                raise _HostGone() from exc

    def drop(self) -> None:
        """Unplug: close the client and stop listening until :meth:`open`."""
        self._lose_client()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        """Close everything."""
        self.drop()


# ---------------------------------------------------------------------------------------------------- the runner
@dataclass
class SimulatorCounters:
    """What a :class:`Simulator` did (mutable, read after or during a run)."""

    sessions: int = 0
    disconnects: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    bits_flipped: int = 0
    bytes_dropped: int = 0
    frames_received: int = 0
    frames_truncated: int = 0
    garbage_bursts: int = 0
    stalls: int = 0


class Simulator:
    """Run a :class:`VirtualSpectrometer` on an endpoint until stopped.

    Parameters
    ----------
    config : SimulatorConfig
        What to stream and how.
    endpoint : Endpoint
        :class:`PtyEndpoint` or :class:`TcpEndpoint` (not opened yet).
    device : VirtualSpectrometer, optional
        The device; built from ``config`` when omitted.

    Examples
    --------
    In a thread of a test (the endpoint's ``address`` is what the host opens)::

        sim = Simulator(SimulatorConfig(count=100, rate_hz=0), PtyEndpoint())
        stop = threading.Event()
        ready = threading.Event()
        thread = threading.Thread(target=sim.run, args=(stop,), kwargs={"on_ready": lambda a: ready.set()})
    """

    def __init__(self, config: SimulatorConfig, endpoint: Endpoint, device: VirtualSpectrometer | None = None) -> None:
        self.config = config
        self.endpoint = endpoint
        self.device = device or VirtualSpectrometer.from_config(config)
        self.counters = SimulatorCounters()
        self._fault_rng = np.random.default_rng([config.seed, 1])
        self._decoder = FrameDecoder()
        self._last_drop_at = 0

    @property
    def address(self) -> str:
        """What the host opens: the pty symlink path or the ``socket://`` URL (after :meth:`run` opened it)."""
        return self.endpoint.address

    def _garble(self, data: bytes) -> bytes:
        faults = self.config.faults
        if not (faults.bit_flip_rate or faults.drop_byte_rate):
            return data
        buf = np.frombuffer(data, dtype=np.uint8).copy()
        if faults.bit_flip_rate:
            hit = np.flatnonzero(self._fault_rng.random(buf.size) < faults.bit_flip_rate)
            if hit.size:
                bits = self._fault_rng.integers(0, 8, hit.size).astype(np.uint8)
                buf[hit] ^= np.left_shift(np.uint8(1), bits).astype(np.uint8)
                self.counters.bits_flipped += int(hit.size)
        if faults.drop_byte_rate:
            keep = self._fault_rng.random(buf.size) >= faults.drop_byte_rate
            self.counters.bytes_dropped += int(buf.size - np.count_nonzero(keep))
            buf = buf[keep]
        return buf.tobytes()

    def _wire(self, frame: Frame) -> bytes:
        data = encode(frame)
        every = self.config.faults.truncate_every
        if every and type(frame) is Spectrum and self.device.streamed and self.device.streamed % every == 0:
            cut = int(self._fault_rng.integers(1, len(data) - 1))
            self.counters.frames_truncated += 1
            data = data[:cut] + b"\x00"
        return self._garble(data)

    def _send(self, frames: Sequence[Frame], stop: threading.Event, *, lead: bytes = b"") -> None:
        if not frames and not lead:
            return
        payload = lead + b"".join(self._wire(f) for f in frames)
        self.endpoint.write(payload, stop)
        self.counters.frames_sent += len(frames)
        self.counters.bytes_sent += len(payload)

    def _after_spectrum(self, stop: threading.Event) -> None:
        """Garbage bursts and stalls scheduled after the spectrum just streamed."""
        faults, n = self.config.faults, self.device.streamed
        if faults.garbage_every and n % faults.garbage_every == 0:
            self.counters.garbage_bursts += 1
            self.endpoint.write(self._fault_rng.integers(0, 256, 64, dtype=np.uint8).tobytes(), stop)
        if faults.stall_every and n % faults.stall_every == 0 and not self.device.done:
            self.counters.stalls += 1
            _LOG.info("stalling for %.2f s after %d spectra", faults.stall_for_s, n)
            stop.wait(faults.stall_for_s)

    def _unplug(self, stop: threading.Event) -> bool:
        """Drop the link for ``disconnect_for_s`` and bring it back; returns False when stopped meanwhile."""
        faults = self.config.faults
        self.counters.disconnects += 1
        _LOG.info("unplugging for %.2f s after %d spectra", faults.disconnect_for_s, self.device.streamed)
        self.endpoint.drop()
        if stop.wait(faults.disconnect_for_s):
            return False
        self.endpoint.open()
        return True

    def run(self, stop_event: threading.Event | None = None, *, on_ready: Callable[[str], Any] | None = None) -> int:
        """Serve until ``stop_event`` is set (or ``count`` is done with ``exit_when_done``); returns 0.

        ``on_ready(address)`` is called once the endpoint is open, with the path or URL the host should open.
        """
        stop = stop_event or threading.Event()
        device = self.device
        self.endpoint.open()
        if on_ready is not None:
            on_ready(self.endpoint.address)
        in_session = False
        next_due = time.monotonic()
        done_at: float | None = None
        try:
            while not stop.is_set():
                now = time.monotonic()
                if device.done and done_at is None:
                    done_at = now
                    _LOG.info("sent %d spectra; done", device.streamed)
                if done_at is not None and self.config.exit_when_done and now - done_at >= self.config.linger_s:
                    break
                if not self.endpoint.host_present():
                    if in_session:
                        _LOG.info("host closed the port")
                        in_session = False
                    stop.wait(_TICK_S)
                    continue
                try:
                    if not in_session:
                        if stop.wait(self.config.connect_delay_s) or not self.endpoint.host_present():
                            continue
                        in_session = True
                        self.counters.sessions += 1
                        self._decoder.reset()
                        self._send(device.session_start(), stop, lead=b"\x00")
                        next_due = time.monotonic()
                    out: list[Frame] = []
                    for frame in self._decoder.feed(self.endpoint.read()):
                        self.counters.frames_received += 1
                        out.extend(device.handle(frame))
                    self._send(out, stop)
                    if device.streaming and not device.done and time.monotonic() >= next_due:
                        streamed_before = device.streamed
                        self._send(device.stream_next(), stop)
                        period = device.period_s
                        next_due = max(next_due + period, time.monotonic() - period) if period else time.monotonic()
                        if device.streamed != streamed_before:  # not when a reboot left the device waiting
                            self._after_spectrum(stop)
                        every = self.config.faults.disconnect_every
                        if (
                            every
                            and device.streamed % every == 0
                            and device.streamed != self._last_drop_at
                            and not device.done
                        ):
                            self._last_drop_at = device.streamed
                            in_session = False
                            if not self._unplug(stop):
                                break
                            continue
                except _HostGone:
                    _LOG.info("host went away mid-transfer")
                    in_session = False
                    continue
                wait = _TICK_S
                if device.streaming and not device.done:
                    wait = min(wait, max(0.0, next_due - time.monotonic()))
                fd = self.endpoint.fileno()
                if wait > 0 and fd is not None:
                    select.select([fd], [], [], wait)
        finally:
            self.endpoint.close()
        _LOG.info(
            "simulator stopped: %d spectra, %d frames, %d sessions, %d disconnects",
            device.streamed,
            self.counters.frames_sent,
            self.counters.sessions,
            self.counters.disconnects,
        )
        return 0
