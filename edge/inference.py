"""The daemon's inference stage as plain values: one spectrum frame and its references in, a prediction or a
rejection out (preprocess, int8 quantise/invoke/dequantise, OOD T2/Q and, when the bundle has one, the autoencoder's
reconstruction error against the bundle's limits, interval).

No threads, no queues and no I/O live here, so the stage is tested directly on a real bundle and reused by the
benchmarks; :mod:`edge.daemon` wraps it in its inference thread.

A frame is *rejected* (counted by the daemon, never predicted on) when it cannot be judged against the bundle's
input contract: another signal than the bundle takes (counts vs absorbance vs reflectance), a pixel count other
than the contract's, a wavelength axis outside it, non-finite counts, or
missing references for a pipeline that starts from counts.  Everything else becomes a :class:`Prediction` whose
quality flags say how far to trust it (saturated, stale reference, out of distribution, instrument fault).

The device's axis comes in nm (``Status.wavelengths_nm()``, whatever unit the device calibrates in) and is
converted here, once per axis array, into the unit of the bundle's wavelength grid (``wavelength_grid.unit``:
``nm`` or ``cm-1``, ``1e7 / nm``): the bundle's input contract and the pipeline's resampling step both see it
in that unit.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np
import numpy.typing as npt

from edge.errors import AxisContractError, ChannelCountError, InputContractError
from edge.frozen import built
from edge.ood import frame_noise_level
from edge.publish.messages import OodStats
from edge.publish.schema import Quality
from edge.references import ReferenceCheck, ReferencePolicy, ReferenceQuality, ReferenceSet
from edge.targets import bundle_targets
from firmware_bridge.frames import AxisUnit, Spectrum, SpectrumFlags

if TYPE_CHECKING:
    from edge.bundle import Bundle

__all__ = ["RejectReason", "Prediction", "Rejection", "Outcome", "InferenceEngine", "bundle_targets",
           "bundle_needs_references", "drift_samples"]


class RejectReason(str, enum.Enum):
    """Why a spectrum was not predicted on; the value names the daemon's counter ``frames_rejected_<value>``."""

    INPUT_CONTRACT = "input_contract"  #: pixel count or wavelength axis does not match the bundle
    #: the device sends another signal (counts, absorbance, ...) than the bundle takes
    SIGNAL_MISMATCH = "signal_mismatch"
    MISSING_REFERENCE = "missing_reference"  #: the pipeline needs a dark/white reference the daemon lacks
    BAD_INPUT = "bad_input"  #: NaN/inf counts, or preprocessing could not handle the spectrum
    MODEL_ERROR = "model_error"  #: the runtime refused the features (should not happen with a self-tested bundle)


@dataclass(frozen=True)
class Prediction:
    """One spectrum's prediction with everything the message carries.

    Parameters
    ----------
    seq, timestamp_us : int
        The frame's sequence number and device timestamp (microseconds).
    names, units : tuple of str
        Target names and units.
    values : tuple of float
        Predicted values, in ``units``.
    lower, upper : tuple of float or None
        Prediction interval bounds (``None`` when the bundle has no interval model).
    interval_coverage : float or None
        Nominal coverage of the interval.
    ood : OodStats or None
        T2, Q and their limits (``None`` without an OOD model).
    flags : tuple of Quality
        Every quality flag that applies (empty = ok).
    reasons : tuple of str
        Human-readable reasons for the flags.
    compute_us : float
        Time spent in this stage (preprocess to interval), microseconds.
    model_id, model_version : str
        Model that computed it.
    level : float or None
        The spectrum's level before scatter correction (:meth:`edge.preprocess.Pipeline.transform_level`: the mean
        absorbance over the model's range, for a pipeline from counts), for the drift monitor; not published.
    """

    seq: int
    timestamp_us: int
    names: tuple[str, ...]
    units: tuple[str, ...]
    values: tuple[float, ...]
    lower: tuple[float, ...] | None
    upper: tuple[float, ...] | None
    interval_coverage: float | None
    ood: OodStats | None
    flags: tuple[Quality, ...]
    reasons: tuple[str, ...]
    compute_us: float
    model_id: str
    model_version: str
    level: float | None = None

    @property
    def t2_ratio(self) -> float | None:
        """T2 / its limit (``None`` without OOD model)."""
        return None if self.ood is None else self.ood.t2 / self.ood.t2_limit

    @property
    def q_ratio(self) -> float | None:
        """Q / its limit (``None`` without OOD model)."""
        return None if self.ood is None else self.ood.q / self.ood.q_limit

    @property
    def ae_ratio(self) -> float | None:
        """Autoencoder reconstruction error / its limit (``None`` without an autoencoder in the bundle)."""
        if self.ood is None or self.ood.ae_score is None or not self.ood.ae_limit:
            return None
        return self.ood.ae_score / self.ood.ae_limit

    def with_instrument_alerts(self, alerts: Sequence[str]) -> "Prediction":
        """This prediction with the ``instrument_fault`` flag (last) and its reason when ``alerts`` names any
        active instrument-health alert; itself when none."""
        if not alerts:
            return self
        return dataclasses.replace(
            self, flags=(*self.flags, Quality.INSTRUMENT_FAULT),
            reasons=(*self.reasons, "instrument alert: " + ", ".join(alerts)))


@dataclass(frozen=True)
class Rejection:
    """A spectrum that was not predicted on, and why (``detail`` reads like "expected 650 channels, got 512")."""

    seq: int
    timestamp_us: int
    reason: RejectReason
    detail: str


Outcome = Union[Prediction, Rejection]


def drift_samples(outcomes: Sequence["Outcome"]) -> tuple[
        list[tuple[float | None, float | None, tuple[float, ...], float | None] | None], list[float | None]]:
    """What :meth:`edge.drift.DriftMonitor.observe_spectra` takes of a batch's outcomes: each prediction's
    ``(t2_ratio, q_ratio, values, ae_ratio)`` and each one's level (None for a rejection)."""
    preds = [o if isinstance(o, Prediction) else None for o in outcomes]
    return ([None if p is None else (p.t2_ratio, p.q_ratio, p.values, p.ae_ratio) for p in preds],
            [None if p is None else p.level for p in preds])
#: ``SpectrumFlags.SATURATED`` as a plain int (tested against ``int(flags)`` without the enum's operators).
_SATURATED = int(SpectrumFlags.SATURATED)


def bundle_needs_references(bundle: Any) -> bool:
    """Whether a bundle's frames are raw counts (so the pipeline needs a dark and a white reference)."""
    contract = getattr(bundle, "input_contract", None)
    if contract is not None and hasattr(contract, "needs_references"):
        return bool(contract.needs_references)
    from edge.preprocess import CountsConversion

    return any(isinstance(step, CountsConversion) for step in getattr(bundle.pipeline, "steps", ()))


class InferenceEngine:
    """One bundle ready to turn spectrum frames into :class:`Prediction` or :class:`Rejection` values.

    Parameters
    ----------
    bundle : edge.bundle.Bundle
        Loaded (and self-tested) bundle: ``pipeline``, ``runtime``, ``ood``, ``intervals``, ``model_id``,
        ``model_version``, ``targets``.
    reference_policy : ReferencePolicy, optional
        Staleness rules; ``require_dark``/``require_reference`` are set from the pipeline.
    clock : callable, optional
        Host time in seconds since the epoch (``time.time``), used to age the references.
    """

    def __init__(
        self,
        bundle: "Bundle",
        *,
        reference_policy: ReferencePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bundle = bundle
        self.pipeline = bundle.pipeline
        self.runtime = bundle.runtime
        #: A per-target bundle's second model and which model serves each target (None: one model serves all).
        self.serving = getattr(bundle, "serving", None)
        self.ood = getattr(bundle, "ood", None)
        #: The bundle's autoencoder (:class:`edge.autoencoder.AutoencoderModel`), or None.
        self.autoencoder = getattr(bundle, "autoencoder", None)
        self.intervals = getattr(bundle, "intervals", None)
        self.model_id = str(getattr(bundle, "model_id", "") or "")
        self.model_version = str(getattr(bundle, "model_version", "") or "")
        self.needs_references = bundle_needs_references(bundle)
        base = reference_policy or ReferencePolicy()
        self.reference_policy = ReferencePolicy(
            max_age_s=base.max_age_s,
            require_dark=self.needs_references,
            require_reference=self.needs_references,
            match_integration_time=base.match_integration_time,
            min_dark_margin=base.min_dark_margin,
        )
        self.clock = clock
        self.contract = bundle.input_contract
        n_out = int(np.prod(self.runtime.output_shape)) if self.runtime.output_shape else 1
        self.names, self.units = bundle_targets(bundle, n_out)
        self.coverage = None if self.intervals is None else float(self.intervals.coverage)
        from edge.preprocess import Resample

        self._resamples = any(isinstance(step, Resample) for step in getattr(self.pipeline, "steps", ()))
        #: Unit of the bundle's wavelength grid: the device axis (nm) is converted into it once per array.
        self.axis_unit = AxisUnit.from_symbol(str(getattr(self.contract, "wavelength_unit", "nm")))
        #: The last device axis converted (identity: the daemon keeps one nm array per STATUS frame) and the
        #: converted, read-only array, in ``axis_unit``.
        self._axis_nm: npt.NDArray[np.float64] | None = None
        self._axis_in_unit: npt.NDArray[np.float64] | None = None
        #: The last device axis judged, in ``axis_unit`` (identity, as above), and why it was refused (None when it
        #: passed).
        self._axis: npt.NDArray[np.float64] | None = None
        self._axis_error: str | None = None

    @property
    def needs_device_axis(self) -> bool:
        """Whether spectra can only be predicted on with the device's wavelength axis (the pipeline resamples it
        onto the model's grid); the daemon has it from the device's STATUS frame."""
        return self._resamples

    def device_axis(self, wavelengths_nm: npt.NDArray[np.float64] | None) -> npt.NDArray[np.float64] | None:
        """The device's axis, given in nm, in the unit of the bundle's grid (:attr:`axis_unit`), shape unchanged.

        An nm bundle gets the array itself; a cm-1 bundle ``1e7 / wavelengths_nm``, computed once per array (the
        same array object passed again gets the same converted, read-only array back, so the identity caches of
        the checks below keep working).  None stays None.
        """
        if wavelengths_nm is None or self.axis_unit is AxisUnit.NM:
            return wavelengths_nm
        if wavelengths_nm is not self._axis_nm or self._axis_in_unit is None:
            converted = self.axis_unit.from_nm(wavelengths_nm)
            converted.flags.writeable = False
            self._axis_nm, self._axis_in_unit = wavelengths_nm, converted
        return self._axis_in_unit

    def _axis_detail(self, text: str, wavelengths_nm: npt.NDArray[np.float64] | None) -> str:
        """``text`` plus the device's own axis in nm when it was converted for the check (messages name both)."""
        if wavelengths_nm is None or self.axis_unit is AxisUnit.NM or wavelengths_nm.size == 0:
            return text
        with np.errstate(all="ignore"):
            lo, hi = float(np.nanmin(wavelengths_nm)), float(np.nanmax(wavelengths_nm))
        return f"{text} (the device's axis, {lo:g}-{hi:g} nm, in the bundle's {self.axis_unit.symbol})"

    # ------------------------------------------------------------------------------------------- checks
    def signal_mismatch(self, frame_signal: str, device: str = "") -> str | None:
        """Why frames carrying ``frame_signal`` (``counts``, ``absorbance``, ...) cannot be predicted on by this
        bundle, or None when the bundle takes them, e.g. "bundle tablets-api 1.2.0 expects absorbance frames, the
        device SIM-0001 sends counts".
        """
        want = str(self.contract.frame_signal)
        if frame_signal == want:
            return None
        who = f"the device {device}" if device else "the device"
        return f"bundle {self.model_id} {self.model_version} expects {want} frames, {who} sends {frame_signal}"

    def check_frame(
        self,
        spectrum: Spectrum,
        wavelengths_nm: npt.NDArray[np.float64] | None,
        *,
        frame_signal: str | None = None,
    ) -> Rejection | None:
        """Contract checks that need no preprocessing: the signal the device announced, then the bundle's one input
        contract (pixel count and format, and the device axis, ``wavelengths_nm`` in nm judged in the bundle's unit,
        once per axis), finite counts."""
        axis = self.device_axis(wavelengths_nm)
        if frame_signal is not None:
            mismatch = self.signal_mismatch(frame_signal)
            if mismatch is not None:
                return Rejection(spectrum.seq, spectrum.timestamp_us, RejectReason.SIGNAL_MISMATCH, mismatch)
        if axis is not None and axis.shape[0] != spectrum.pixel_count:
            return Rejection(
                spectrum.seq,
                spectrum.timestamp_us,
                RejectReason.INPUT_CONTRACT,
                f"expected {axis.shape[0]} pixels as the device reported, got {spectrum.pixel_count}",
            )
        axis_known = axis is not None and axis is self._axis
        if axis_known and self._axis_error is not None:
            return Rejection(spectrum.seq, spectrum.timestamp_us, RejectReason.INPUT_CONTRACT, self._axis_error)
        try:
            self.contract.check(
                spectrum.pixel_count,
                wavelengths=None if axis_known else axis,
                pixel_format=spectrum.pixel_format.name,
            )
        except InputContractError as exc:
            return self._contract_rejection(spectrum, exc, axis, wavelengths_nm)
        if axis is not None and not axis_known:
            self._axis, self._axis_error = axis, None  # one verdict per device axis: this one passed the contract
        if spectrum.counts.dtype.kind == "f" and not np.isfinite(spectrum.counts).all():
            bad = int(np.count_nonzero(~np.isfinite(spectrum.counts)))
            return Rejection(
                spectrum.seq,
                spectrum.timestamp_us,
                RejectReason.BAD_INPUT,
                f"expected finite counts, got {bad} NaN or inf",
            )
        return None

    def _contract_rejection(
        self,
        spectrum: Spectrum,
        exc: InputContractError,
        axis: npt.NDArray[np.float64] | None,
        wavelengths_nm: npt.NDArray[np.float64] | None,
    ) -> Rejection:
        """The ``input_contract`` rejection of ``spectrum``; a refused device axis is remembered with its reason."""
        text = str(exc)
        if axis is not None and isinstance(exc, AxisContractError):
            text = self._axis_detail(text, wavelengths_nm)
            self._axis, self._axis_error = axis, text
        return Rejection(spectrum.seq, spectrum.timestamp_us, RejectReason.INPUT_CONTRACT, text)

    def check_references(self, spectrum: Spectrum, refs: ReferenceSet, now_s: float) -> ReferenceCheck:
        """Verdict on ``refs`` for this spectrum (OK when the pipeline needs none)."""
        if not self.needs_references:
            return ReferenceCheck(ReferenceQuality.OK)
        return refs.check(
            pixel_count=spectrum.pixel_count,
            integration_time_us=spectrum.integration_time_us,
            now_s=now_s,
            policy=self.reference_policy,
        )

    # ------------------------------------------------------------------------------------------- stage
    def process(
        self,
        spectrum: Spectrum,
        refs: ReferenceSet | None = None,
        *,
        wavelengths_nm: npt.NDArray[np.float64] | None = None,
        now_s: float | None = None,
        instrument_alerts: Sequence[str] = (),
        frame_signal: str | None = None,
    ) -> Outcome:
        """Predict on one spectrum frame.

        Parameters
        ----------
        spectrum : Spectrum
            The frame (counts, or absorbance for a pipeline that does not start from counts).
        refs : ReferenceSet, optional
            Current dark and white references.
        wavelengths_nm : ndarray, shape (pixel_count,), optional
            The device's wavelength axis in nm (``Status.wavelengths_nm()``, whatever unit the device calibrates
            in), converted once into the bundle's grid unit, then checked against the contract or used to resample.
        now_s : float, optional
            Host time for reference ageing (default ``clock()``).
        instrument_alerts : sequence of str
            Active instrument-health alerts; any sets the ``instrument_fault`` flag.
        frame_signal : str, optional
            What the device says its spectra carry (``counts``, ``absorbance``, ``reflectance``; the daemon passes
            ``counts`` until the device's STATUS says otherwise, as protocol v1 has it).  A spectrum whose signal is
            not the bundle's ``input_contract.frame_signal`` is rejected (``signal_mismatch``), never predicted on.
            None: not checked (offline callers that know their data).

        Returns
        -------
        Prediction or Rejection
        """
        t0 = time.perf_counter_ns()
        refs = refs if refs is not None else ReferenceSet()
        rejected = self.check_frame(spectrum, wavelengths_nm, frame_signal=frame_signal)
        if rejected is not None:
            return rejected
        verdict = self.check_references(spectrum, refs, self.clock() if now_s is None else now_s)
        if not verdict.usable:
            return Rejection(
                spectrum.seq, spectrum.timestamp_us, RejectReason.MISSING_REFERENCE, "; ".join(verdict.reasons)
            )
        context = refs.context() if self.needs_references else {"dark": None, "reference": None}
        # check_frame judged the device axis against the contract (once per axis): a pipeline that does not
        # resample gets no axis (nothing to check again), one that resamples always does.
        device_axis = self.device_axis(wavelengths_nm)  # in the bundle's unit; the same array check_frame judged
        try:
            x_pre, level = self.pipeline.transform_level(
                spectrum.counts,
                dark=context["dark"],
                reference=context["reference"],
                wavelengths=device_axis if self._resamples else None,
            )
        except InputContractError as exc:
            text = str(exc)
            # The pipeline's own contract check (channels, wavelength axis) vs. data it cannot process.
            if device_axis is not None and isinstance(exc, AxisContractError):
                text = self._axis_detail(text, wavelengths_nm)
                self._axis, self._axis_error = device_axis, text
            contract = isinstance(exc, (AxisContractError, ChannelCountError))
            reason = RejectReason.INPUT_CONTRACT if contract else RejectReason.BAD_INPUT
            return Rejection(spectrum.seq, spectrum.timestamp_us, reason, text)
        try:
            y = np.asarray(self.runtime.predict(x_pre), dtype=np.float64).reshape(-1)
            if self.serving is not None:  # the second model on its own preprocessing of the same frame
                y = np.asarray(self.serving.assemble(y, self.serving.second.predict(
                    spectrum.counts, dark=context["dark"], reference=context["reference"],
                    wavelengths=device_axis if self._resamples else None)), dtype=np.float64).reshape(-1)
            ae_score = None if self.autoencoder is None else float(self.autoencoder.score(x_pre))
        except InputContractError as exc:
            return Rejection(spectrum.seq, spectrum.timestamp_us, RejectReason.MODEL_ERROR, str(exc))
        return self._finish(spectrum, verdict, x_pre, y, instrument_alerts, t0, ae_score,
                            noise_level=frame_noise_level(self.ood, spectrum, context), level=float(level))

    def process_many(
        self,
        spectra: Sequence[Spectrum],
        refs: ReferenceSet | None = None,
        *,
        wavelengths_nm: npt.NDArray[np.float64] | None = None,
        now_s: float | None = None,
        instrument_alerts: Sequence[str] = (),
        frame_signal: str | None = None,
    ) -> list[Outcome]:
        """Predict on several spectrum frames of one device state (same references, axis and signal) at once.

        Each outcome is the one :meth:`process` gives that frame alone, value for value (only ``compute_us``
        differs: the batch's shared work is split evenly between its predictions): the contract checks run per
        frame (once per kind of spectrum: pixel count and format), preprocessing runs on the batch
        (:meth:`edge.preprocess.Pipeline.transform_rows`, bit for bit the single-spectrum result), the interpreter
        once per chunk of rows (:meth:`edge.runtime.ModelRuntime.invoke_quantized`: bit for bit the single-row
        outputs, or row by row for a model that is not), the autoencoder likewise, OOD
        (:meth:`edge.ood.OodModel.score_rows`) and the interval on the batch, each row's value bit for bit.
        References are aged at one ``now_s`` for the batch.  A batch the pipeline or the model refuses as a whole
        (one bad row) is processed frame by frame, so only that frame is rejected; so is a batch of one.

        Parameters
        ----------
        spectra : sequence of Spectrum
        refs, wavelengths_nm, now_s, instrument_alerts, frame_signal
            As :meth:`process`, for every frame.

        Returns
        -------
        list of Prediction or Rejection, one per frame, in order
        """
        t0 = time.perf_counter_ns()
        refs = refs if refs is not None else ReferenceSet()
        now = self.clock() if now_s is None else now_s
        outcomes: list[Outcome | None] = [None] * len(spectra)
        accepted: list[tuple[int, ReferenceCheck]] = []
        # The references' verdict depends on the spectrum's pixel count and integration time only (one ``now``):
        # judged once per kind of spectrum in the batch (a LINE frame's spectra share both).
        verdicts: dict[tuple[int, int], ReferenceCheck] = {}
        # check_frame passes a spectrum of integer counts whose pixel count and format one before it passed (same
        # axis and signal; nothing it remembers changes then): checked once per such kind in the batch.
        passed: set[tuple[int, int]] = set()
        for i, spectrum in enumerate(spectra):
            kind = (spectrum.pixel_count, spectrum.pixel_format)
            rejected = None if kind in passed else self.check_frame(spectrum, wavelengths_nm, frame_signal=frame_signal)
            if rejected is not None:
                outcomes[i] = rejected
                continue
            if spectrum.counts.dtype.kind != "f":
                passed.add(kind)
            key = (spectrum.pixel_count, spectrum.integration_time_us)
            judged = verdicts.get(key)
            if judged is None:
                judged = verdicts[key] = self.check_references(spectrum, refs, now)
            verdict = judged
            if not verdict.usable:
                outcomes[i] = Rejection(
                    spectrum.seq, spectrum.timestamp_us, RejectReason.MISSING_REFERENCE, "; ".join(verdict.reasons))
                continue
            accepted.append((i, verdict))
        device_axis = self.device_axis(wavelengths_nm)  # judged by check_frame when any frame was accepted
        batch: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[float | None], list[float]] | None = None
        if len(accepted) >= 2:
            context = refs.context() if self.needs_references else {"dark": None, "reference": None}
            try:
                x_pre, levels = self.pipeline.transform_level(
                    np.stack([spectra[i].counts for i, _ in accepted]),
                    dark=context["dark"],
                    reference=context["reference"],
                    wavelengths=device_axis if self._resamples else None, rows=True,
                )
                y = np.asarray(self.runtime.predict(x_pre), dtype=np.float64).reshape(len(accepted), -1)
                if self.serving is not None:  # the second model on its own preprocessing of the same frames
                    y = np.asarray(self.serving.assemble(y, self.serving.second.predict_rows(
                        np.stack([spectra[i].counts for i, _ in accepted]), dark=context["dark"],
                        reference=context["reference"], wavelengths=device_axis if self._resamples else None)),
                        dtype=np.float64).reshape(len(accepted), -1)
                ae: list[float | None] = ([None] * len(accepted) if self.autoencoder is None
                                          else [float(v) for v in self.autoencoder.score(x_pre)])
                batch = (x_pre, y, ae, levels.tolist())
            except InputContractError:
                batch = None  # one frame spoils the batch: each frame alone, so that only it is rejected
        if batch is None:
            for i, _ in accepted:
                outcomes[i] = self.process(spectra[i], refs, wavelengths_nm=wavelengths_nm, now_s=now,
                                           instrument_alerts=instrument_alerts, frame_signal=frame_signal)
        else:
            x_pre, y, ae, level_list = batch
            share_ns = (time.perf_counter_ns() - t0) // len(accepted)
            rows = y.tolist()  # the values as Python floats, once for the batch (float(v) of each, bit for bit)
            finite_rows: list[bool] = np.isfinite(y).all(axis=1).astype(bool).tolist()
            t2s, qs = ([], []) if self.ood is None else self.ood.score_rows(  # each row's score(), bit for bit
                x_pre, [frame_noise_level(self.ood, spectra[i], context) for i, _ in accepted])
            los, his = ([None] * len(rows),) * 2 if self.intervals is None else (  # element by element: each row's
                [tuple(r) for r in b.tolist()] for b in self.intervals.interval(y))  # interval(y[k]), bit for bit
            for k, (i, verdict) in enumerate(accepted):
                outcomes[i] = self._finish(spectra[i], verdict, x_pre[k], y[k], instrument_alerts,
                                           time.perf_counter_ns() - share_ns, ae[k], values=(rows[k], finite_rows[k]),
                                           scores=None if self.ood is None else (t2s[k], qs[k]), level=level_list[k],
                                           bounds=(los[k], his[k]))
        return [o for o in outcomes if o is not None]

    def _finish(
        self,
        spectrum: Spectrum,
        verdict: ReferenceCheck,
        x_pre: npt.NDArray[np.float64],
        y: npt.NDArray[np.float64],
        instrument_alerts: Sequence[str],
        t0: int,
        ae_score: float | None = None,
        values: tuple[list[float], bool] | None = None,
        noise_level: float | None = None,
        level: float | None = None,
        scores: tuple[float, float] | None = None,
        bounds: tuple[tuple[float, ...] | None, tuple[float, ...] | None] | None = None,
    ) -> Outcome:
        """Quality flags, OOD, interval and the :class:`Prediction` of one preprocessed spectrum ``x_pre`` whose
        model output is ``y`` and autoencoder score ``ae_score`` (None without an autoencoder) (shared by
        :meth:`process` and :meth:`process_many`, so both give the same values); ``values`` is ``y`` as Python
        floats and whether all are finite, when the caller had them for a whole batch; ``noise_level`` the frame's
        detector noise level for the OOD statistics (:func:`edge.ood.frame_noise_level`), ``level`` the
        spectrum's level (:attr:`Prediction.level`); ``scores`` its OOD T2 and Q when the caller had them for a batch
        (:meth:`edge.ood.OodModel.score_rows`: the same values), ``bounds`` its interval likewise."""
        flags: list[Quality] = []
        reasons: list[str] = []
        if spectrum.saturated_count > 0 or int(spectrum.flags) & _SATURATED:
            flags.append(Quality.SATURATED)
            reasons.append(f"{spectrum.saturated_count} saturated pixel(s)")
        if verdict.quality is ReferenceQuality.STALE:
            flags.append(Quality.STALE_REFERENCE)
            reasons.extend(verdict.reasons)
        ood: OodStats | None = None
        ae_limit = None if self.autoencoder is None or ae_score is None else float(self.autoencoder.limit)
        if self.ood is not None:
            t2, q = self.ood.score(x_pre, noise_level) if scores is None else scores
            t2f, qf = float(t2), float(q)
            if not (math.isfinite(t2f) and math.isfinite(qf)):
                return Rejection(spectrum.seq, spectrum.timestamp_us, RejectReason.BAD_INPUT, "non-finite T2 or Q")
            ood = built(OodStats, t2=t2f, q=qf, t2_limit=self.ood.t2_limit, q_limit=self.ood.q_limit,
                        ae_score=ae_score if ae_limit is not None else None, ae_limit=ae_limit)
            if t2f > self.ood.t2_limit or qf > self.ood.q_limit:
                flags.append(Quality.OUT_OF_DISTRIBUTION)
                reasons.append(
                    f"T2 {t2f:.3g} (limit {self.ood.t2_limit:.3g}), Q {qf:.3g} (limit {self.ood.q_limit:.3g})"
                )
        if ae_score is not None and ae_limit is not None:
            if not math.isfinite(ae_score):
                return Rejection(spectrum.seq, spectrum.timestamp_us, RejectReason.BAD_INPUT,
                                 "non-finite autoencoder score")
            if ae_score > ae_limit:
                if Quality.OUT_OF_DISTRIBUTION not in flags:
                    flags.append(Quality.OUT_OF_DISTRIBUTION)
                reasons.append(f"autoencoder reconstruction error {ae_score:.3g} (limit {ae_limit:.3g})")
        lower, upper = (None, None) if bounds is None else bounds
        if self.intervals is not None and bounds is None:
            lo, hi = self.intervals.interval(y)
            lower = tuple(np.asarray(lo, dtype=np.float64).reshape(-1).tolist())
            upper = tuple(np.asarray(hi, dtype=np.float64).reshape(-1).tolist())
        y_values, y_finite = (y.tolist(), bool(np.isfinite(y).all())) if values is None else values
        if not y_finite:
            return Rejection(spectrum.seq, spectrum.timestamp_us, RejectReason.MODEL_ERROR, "non-finite model output")
        compute_us = (time.perf_counter_ns() - t0) / 1000.0
        pred = built(  # Prediction(...) without the frozen __init__'s setattr per field (edge.frozen)
            Prediction,
            seq=spectrum.seq,
            timestamp_us=spectrum.timestamp_us,
            names=self.names,
            units=self.units,
            values=tuple(y_values),
            lower=lower,
            upper=upper,
            interval_coverage=self.coverage,
            ood=ood,
            flags=tuple(flags),
            reasons=tuple(reasons),
            compute_us=compute_us,
            model_id=self.model_id,
            model_version=self.model_version,
            level=level,
        )
        return pred.with_instrument_alerts(instrument_alerts)
