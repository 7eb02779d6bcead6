"""Settings of a simulator run: what to stream, the drifts to apply and the faults to inject, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_bridge.codec.layouts import MAX_LINE_SPECTRA
from firmware_bridge.errors import BridgeError, ProtocolError
from firmware_bridge.frames import AxisUnit, SampleTag, SignalKind

__all__ = [
    "DEFAULT_REFERENCE_AVERAGES",
    "DRIFT_KINDS",
    "MAX_AVERAGES",
    "MAX_INTEGRATION_TIME_US",
    "MAX_TRIGGER",
    "TEMP_COEFF_NM_PER_C",
    "ProvokedDriftConfig",
    "FaultConfig",
    "SimulatorConfig",
    "SimulatorError",
    "as_axis_unit",
]

#: Kinds of provoked drift and their default size (absorbance, absorbance, axis unit (nm or cm-1), fraction of lamp
#: output lost, standard deviation of added noise in absorbance, fraction of the other product in the mixture).
DRIFT_KINDS: dict[str, float] = {"band": 0.3, "baseline": 0.2, "shift": 3.0, "lamp": 0.3, "noise": 0.01,
                                 "product": 1.0}
#: Axis shift per degree of detector temperature, axis unit (nm or cm-1) per degC (reported temperature follows it).
TEMP_COEFF_NM_PER_C = 0.05
#: Limits of the settings a COMMAND may ask for.
MAX_INTEGRATION_TIME_US = 60_000_000
MAX_AVERAGES = 1000
#: Scans averaged into each DARK and REFERENCE frame by default.  The dark and the white are shared by every spectrum
#: of a session, so their noise is a bias on all of them, not a random error of one: spectrometer software takes
#: references with more scans than samples (see PROTOCOL.md, "Dark and white references").
DEFAULT_REFERENCE_AVERAGES = 64
MAX_TRIGGER = 1000


class SimulatorError(BridgeError, ValueError):
    """Invalid simulator configuration or dataset."""


@dataclass(frozen=True)
class ProvokedDriftConfig:
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
        ``shift`` in the axis unit (nm or cm-1; the reported detector temperature follows it), a ``lamp`` losing a
        fraction of its output, detector ``noise`` rising (standard deviation in absorbance), or a ``product``
        change (the fraction of another product mixed in; see :mod:`firmware_bridge.simulator.scenarios`).
    drift_size : float or None
        Full size of the provoked drift in the kind's unit; None for the kind's default.
    drift_ramp_frames : int
        Spectra over which the provoked drift ramps up to full size (1 = a step).
    product_dataset : str or None
        ``.npz`` of the other product (``product`` kind; resampled onto the device's axis); None for synthetic
        spectra with another seed.
    product_split : str or None
        Take only the other product's rows whose ``split`` equals this.
    """

    lamp_ageing_per_kframe: float = 0.0
    wavelength_shift_nm_per_kframe: float = 0.0
    baseline_offset: float = 0.0
    baseline_drift_per_kframe: float = 0.0
    drift_at_frame: int | None = None
    drift_kind: str = "band"
    drift_size: float | None = None
    drift_ramp_frames: int = 20
    product_dataset: str | None = None
    product_split: str | None = None

    def __post_init__(self) -> None:
        if self.drift_kind not in DRIFT_KINDS:
            raise SimulatorError(f"expected a drift kind in {sorted(DRIFT_KINDS)}, got {self.drift_kind!r}")
        if self.drift_ramp_frames < 1:
            raise SimulatorError(f"expected a drift ramp of at least 1 frame, got {self.drift_ramp_frames}")
        if not 0.0 <= self.lamp_ageing_per_kframe < 1.0:
            raise SimulatorError(f"expected 0 <= lamp ageing per 1000 frames < 1, got {self.lamp_ageing_per_kframe}")
        if self.drift_kind == "product" and not 0.0 < self.size <= 1.0:
            raise SimulatorError(f"expected a product change size (fraction mixed in) in (0, 1], got {self.size}")
        if self.drift_kind == "noise" and self.size < 0.0:
            raise SimulatorError(f"expected a non-negative noise size (absorbance), got {self.size}")

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
        def flag(name: str) -> str:  # the field and the spectro-sim option that sets it
            return f"{name} (spectro-sim --{name.removesuffix('_s').replace('_', '-')})"

        for name in ("bit_flip_rate", "drop_byte_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SimulatorError(f"expected {flag(name)} between 0 and 1, got {value}")
        for name in (
            "disconnect_every",
            "disconnect_for_s",
            "garbage_every",
            "truncate_every",
            "stall_every",
            "reboot_every",
        ):
            if getattr(self, name) < 0:
                raise SimulatorError(f"expected a non-negative {flag(name)}, got {getattr(self, name)}")
        if self.stall_for_s < 0:
            raise SimulatorError(f"expected a non-negative {flag('stall_for_s')}, got {self.stall_for_s}")
        if self.pixel_change_at is not None and self.pixel_change_to < 1:
            raise SimulatorError(f"expected {flag('pixel_change_to')} of at least 1 with pixel_change_at "
                                 f"(--pixel-change-at), got {self.pixel_change_to}")


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
    targets : tuple of str or None
        The reference values each ANNOTATION carries: these columns of the dataset's ``y``, named by its
        ``target_names``, in this order (give a bundle's targets, so that a daemon forwarding them pairs each with
        its prediction); None (the default): every column, in the dataset's order.
    rate_hz : float
        Spectra per second while streaming; 0 for as fast as the link takes them.
    count : int
        Spectra to stream in total (0: endless); triggered spectra do not count.
    line_spectra : int
        0 (the default): stream SPECTRUM frames, each followed by its ANNOTATION.  N >= 1: stream LINE frames of N
        consecutive spectra each, as a push-broom camera does (the last line of a ``count`` may be shorter; no
        ANNOTATION frames; ``rate_hz`` still counts spectra, so lines come at ``rate_hz / N`` per second).
    seed : int
        Seed of the noise, the synthetic dataset, the row order and the faults.
    integration_time_us : int or None
        Exposure; None picks one that fills 80 % of the ADC for the least absorbing sample.
    averages : int
        Scans averaged per spectrum.
    reference_averages : int
        Scans averaged into each DARK and REFERENCE frame (``DEFAULT_REFERENCE_AVERAGES``); the frame's
        ``averages`` field says how many.  Each scan has the same noise as a sample's.
    device_id, firmware_version : str
        Identity reported in STATUS.
    autostart : bool
        Stream as soon as a host connects (otherwise wait for START_STREAM).
    connect_delay_s : float
        Wait after a host opens the port before sending (see :mod:`firmware_bridge.simulator.runner`).
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
    sample_tags : tuple of (int, str, int)
        ``(index, sample_id, frames)``: a SAMPLE_TAG frame (the device's own sample tag, e.g. a barcode reader) is
        sent right before the frame that holds spectrum ``index`` of the stream (0 is the first), tagging the next
        ``frames`` spectra as lab sample ``sample_id``'s.
    drift : ProvokedDriftConfig
    faults : FaultConfig
    """

    dataset_path: str | None = None
    rows: slice | None = None
    split: str | None = None
    shuffle: bool = False
    targets: tuple[str, ...] | None = None
    rate_hz: float = 10.0
    count: int = 0
    line_spectra: int = 0
    seed: int = 0
    integration_time_us: int | None = None
    averages: int = 1
    reference_averages: int = DEFAULT_REFERENCE_AVERAGES
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
    sample_tags: tuple[tuple[int, str, int], ...] = ()
    drift: ProvokedDriftConfig = field(default_factory=ProvokedDriftConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "signal", SignalKind(self.signal))
        except ValueError:
            known = ", ".join(f"{int(k)} ({k.name})" for k in SignalKind)
            raise SimulatorError(f"expected a signal kind of {known}, got {self.signal!r}") from None
        if self.axis_unit is not None:
            object.__setattr__(self, "axis_unit", as_axis_unit(self.axis_unit))
        if isinstance(self.targets, str):
            raise SimulatorError(f"expected a sequence of target names, got the string {self.targets!r}")
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(self.targets))
            if not self.targets or len(set(self.targets)) != len(self.targets):
                raise SimulatorError(f"expected one or more distinct target names, got {list(self.targets)}")
        if self.boot_id is not None and not 1 <= self.boot_id <= 0xFFFF_FFFF:
            raise SimulatorError(f"expected a boot_id in 1..4294967295, got {self.boot_id}")
        if self.rate_hz < 0:
            raise SimulatorError(f"expected a rate of 0 or more spectra per second, got {self.rate_hz}")
        if self.count < 0:
            raise SimulatorError(f"expected a count of 0 (endless) or more, got {self.count}")
        if not 0 <= self.line_spectra <= MAX_LINE_SPECTRA:
            raise SimulatorError(
                f"expected 0 (SPECTRUM frames) to {MAX_LINE_SPECTRA} spectra per line, got {self.line_spectra}"
            )
        if not 1 <= self.averages <= MAX_AVERAGES:
            raise SimulatorError(f"expected 1 to {MAX_AVERAGES} averages, got {self.averages}")
        if not 1 <= self.reference_averages <= MAX_AVERAGES:
            raise SimulatorError(
                f"expected 1 to {MAX_AVERAGES} reference averages, got {self.reference_averages}"
            )
        for index, sample_id, frames in self.sample_tags:
            if index < 0:
                raise SimulatorError(f"expected a sample tag at spectrum index 0 or more, got {index}")
            try:
                SampleTag(sample_id, frames)
            except ProtocolError as exc:
                raise SimulatorError(f"sample tag at spectrum {index}: {exc}") from None


def as_axis_unit(value: object) -> AxisUnit:
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
