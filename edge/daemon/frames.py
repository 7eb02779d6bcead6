"""The inference thread: :class:`InferenceStage` takes the frames off the frames queue in micro-batches and
dispatches each: STATUS frames give the device's signal and wavelength axis, DARK/REFERENCE frames the references,
SPECTRUM frames go through :class:`edge.inference.InferenceEngine` and the drift monitor, and the predictions and
drift alerts they make are committed to the outbox by this thread itself.  A verified bundle is swapped in here,
between two batches."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from edge.daemon.annotations import AnnotationWait
from edge.daemon.auditing import bundle_audit
from edge.daemon.capture import ReferenceCapture
from edge.daemon.control_watch import ControlWatch
from edge.daemon.device import (
    FULL_SCALE_COUNTS,
    DeviceView,
    Greeter,
    SeqTracker,
    printable,
    status_axis_problem,
    status_signal,
)
from edge.daemon.drift_events import DriftBaselines, publish_drift_events
from edge.daemon.lines import LineInFlight, line_message, line_rejections, split_line
from edge.daemon.outbound import Outbound
from edge.daemon.seq_mark import SeqMark
from edge.daemon.status import ActiveAlerts, LastError
from edge.daemon.status_wait import StatusWait
from edge.daemon.values import _Capture, _Received, _Swap
from edge.drift import DriftBatch, DriftEvent, DriftMonitor
from edge.errors import EdgeError
from edge.inference import InferenceEngine, Prediction, Rejection, RejectReason, drift_samples
from edge.metrics import Counters, LatencyWindow
from edge.publish.messages import command_response_message, prediction_message_of
from edge.publish.schema import MessageKind, Quality
from edge.queues import BoundedQueue
from edge.references import ReferenceKind
from firmware_bridge.frames import Ack, Annotation, Dark, Line, Nack, Reference, SampleTag, Spectrum, Status

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.archive import Archive
    from edge.bundle import Bundle
    from edge.control_samples import ControlCharts
    from edge.daemon.lines import CollectedLine
    from edge.daemon.shadow import ShadowMode

log = logging.getLogger("edge.daemon")

#: How long a prediction waits for the ANNOTATION frame of the same seq when annotations are forwarded, seconds.
ANNOTATION_WAIT_S = 0.25
#: Longest wait of the inference thread for a frame before it looks at held predictions and capture deadlines.
INFERENCE_POLL_S = 0.25
#: Most frames the inference thread takes off the frames queue at once (a micro-batch): what queued up while it
#: worked, never waiting for more; consecutive spectra of a batch are predicted together and the batch's messages
#: are committed to the outbox in one transaction.  Frames, not spectra: a simulator's ANNOTATION frames count too.
INFERENCE_BATCH_MAX = 128
#: How long spectra wait for the device's STATUS when the bundle needs the device's wavelength axis (a pipeline that
#: resamples it), seconds.  A device announces itself when a host opens the port, but not to a daemon restarted
#: while the port stayed open: the daemon then greets it at once and predicts the waiting spectra when it answers.
STATUS_WAIT_S = 5.0


class InferenceStage:
    """The ``spectro-inference`` thread and the state only it changes: the engine in service, the drift monitor,
    what the device announced, held and parked spectra.

    Parameters
    ----------
    engine : InferenceEngine
        The engine of the bundle in service (a TFLite interpreter is not thread-safe: only this thread runs it).
    drift : DriftMonitor
        The drift detectors.
    references : ReferenceCapture
        The references and the capture in progress.
    frames, swaps, orders : BoundedQueue
        Frames from the reader, verified engines from the reloader, capture orders from the commands.
    stop : threading.Event
        Set to finish what is queued and end the loop.
    outbound : Outbound
        Where messages go (committed by this thread at the end of each batch).
    alerts : ActiveAlerts
        The active alerts; ``set_alert(name, active)`` raises or clears one (published, counted).
    last_error : LastError
        The status's ``last_error``.
    counters, latency, compute : Counters, LatencyWindow, LatencyWindow
        Frame counters; end-to-end and compute latency of predictions.
    greeter : Greeter
        Greets the device when spectra wait for its STATUS.
    record_version : callable(Bundle)
        Records a bundle put in service (anti-rollback).
    audit : callable(event, details)
        Writes an audit record (a bundle swapped in).
    signer_key_id : str or None
        The audit trail's name of the bundle-signing key.
    device_id : str
        This daemon's device id.
    frames_max : int
        At most this many spectra wait for the device's STATUS (``queues.frames_max``).
    forward_annotations : bool
        Hold each prediction for the ANNOTATION frame of its seq (test benches and the demo).
    clock : callable() -> float
        Host time, seconds since the epoch.
    line_publish : str
        ``[lines] publish``: ``"line"`` publishes one ``.../line_prediction`` per LINE frame, ``"spectrum"`` one
        ``.../prediction`` per spectrum of it.
    seq_mark : SeqMark, optional
        The last device seq committed, kept across restarts (:mod:`edge.daemon.seq_mark`); None keeps nothing.
    """

    def __init__(self, *, engine: InferenceEngine, drift: DriftMonitor, references: ReferenceCapture,
                 frames: BoundedQueue[_Received], swaps: BoundedQueue[_Swap], orders: BoundedQueue[_Capture],
                 stop: threading.Event, outbound: Outbound, alerts: ActiveAlerts,
                 set_alert: Callable[[str, bool], None], last_error: LastError, counters: Counters,
                 latency: LatencyWindow, compute: LatencyWindow, greeter: Greeter,
                 record_version: Callable[["Bundle"], None], audit: Callable[[str, Mapping[str, Any]], None],
                 signer_key_id: str | None, device_id: str, frames_max: int, forward_annotations: bool,
                 clock: Callable[[], float], archive: "Archive | None" = None,
                 control: "ControlCharts | None" = None, shadow: "ShadowMode | None" = None,
                 line_publish: str = "line", seq_mark: SeqMark | None = None,
                 baselines: DriftBaselines | None = None) -> None:
        self.engine = engine
        self.baselines = baselines  # reset_drift's resets, and the status's drift_baselines (edge.daemon.drift_events)
        self.shadow = shadow  # a challenger run after the serving bundle (edge.daemon.shadow); None: never
        self.control = control  # check-standard measurements armed by measure_control (edge.control_samples)
        self._archive = archive  # offered every judged spectrum (edge.archive); None when [archive] is off
        self.drift = drift
        self.references = references
        self.frames = frames
        self._swaps = swaps
        self._orders = orders
        self._stop = stop
        self._outbound = outbound
        self._emit = outbound.emit
        self._publish_status = outbound.publish_status
        self.alerts = alerts
        self._set_alert = set_alert
        self._last_error = last_error
        self.counters = counters
        self.latency = latency
        self.compute = compute
        self._greeter = greeter
        self._record_version = record_version
        self._audit = audit
        self._signer_key_id = signer_key_id
        self.device_id = device_id
        self._frames_max = frames_max
        self.forward_annotations = forward_annotations
        self.clock = clock
        self.wavelengths_nm: np.ndarray | None = None
        self.device_status: Status | None = None
        #: What the device's spectra carry: ``counts`` until a STATUS frame says otherwise (protocol v1).
        self.device_signal = "counts"
        #: The device's boot id from its last STATUS (None when it sent none): the de-duplication key's middle part.
        self.device_boot_id: int | None = None
        self._signal_error: str | None = None
        #: Why the device's last STATUS was refused (None once a valid one arrived): spectra are rejected meanwhile.
        self._status_error: str | None = None
        self._seq_mark = seq_mark or SeqMark(None, device_id)
        self._seqs = SeqTracker(counters, self._seq_mark.resume)  # gaps, jumps and restarts of the device's seqs
        # predictions held for their ANNOTATION (whose count the serving bundle's targets judge)
        self._annotated = AnnotationWait(self._publish_prediction, counters, lambda: self.engine.bundle)
        self._parked = StatusWait(counters, greeter, frames_max, self._on_parked)  # spectra waiting for STATUS
        self._line = LineInFlight()  # the LINE frame being predicted on (its spectra's messages say where they sat)
        self._collect_lines = line_publish == "line"  # one .../line_prediction per LINE frame ([lines] publish)
        self.beat = time.monotonic()  # last turn of the loop (watchdog)
        self._control_watch = None if control is None else ControlWatch(
            control, device_id=device_id, counters=counters, emit=self._emit, audit=audit, set_alert=set_alert,
            publish_status=self._publish_status)

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def device_view(self) -> DeviceView:
        """What the device has announced (any thread; a reload must fit it)."""
        return DeviceView(self.device_status, self.device_signal, self.wavelengths_nm)

    # ---------------------------------------------------------------------------------------- the loop
    def run(self) -> None:
        self._outbound.inference_ident = threading.get_ident()
        while True:
            self.beat = time.monotonic()
            if self.shadow is not None:  # the challenger judges the last batch's spectra, its messages after
                self.shadow.flush()
            swap = self._swaps.get(0.0)
            if swap is not None:
                self._apply_swap(swap)
            order = self._orders.get(0.0)
            if order is not None:
                self.references.start(order)
            if self.references.busy:
                self.references.check_deadline()
            if self.baselines is not None:
                self.baselines.tick(self.drift, self._seqs.last or 0, self._publish_drift)
            if self._parked and time.monotonic() - self._parked.since > STATUS_WAIT_S:
                self._release_parked("no STATUS from the device")
            self._seq_mark.tick()
            items = self.frames.get_many(INFERENCE_BATCH_MAX, INFERENCE_POLL_S)
            if not items:
                self._release_held(force=False)
                if self._stop.is_set() and len(self.frames) == 0:
                    break
                continue
            self._outbound.begin_batch()
            try:
                self.handle_batch(items)
            finally:  # the batch's last seq is committed with its last message
                self._outbound.flush_batch(lambda: self._seq_mark.stage(self.device_boot_id, self._seqs.last))
        self._release_parked("stopping")
        self._release_held(force=True)
        self._seq_mark.stage(self.device_boot_id, self._seqs.last)
        self._seq_mark.tick(force=True)
        if self.shadow is not None:
            self.shadow.flush()

    def handle_batch(self, items: Sequence[_Received]) -> None:
        """Handle the frames of one batch in order; consecutive spectra that need nothing but the model are
        predicted together (:meth:`_on_spectra`).  An ANNOTATION that is not forwarded is only counted, so it does
        not end such a run (a simulator or test bench sends one after every spectrum)."""
        run: list[_Received] = []
        for item in [*items, None]:
            if item is not None and self._batchable(item):
                run.append(item)
                continue
            if item is not None and not self.forward_annotations and isinstance(item.frame, Annotation):
                self.counters.incr("annotation_frames")
                continue
            if run:
                self._guarded(self._on_spectra, run)
                run = []
            if item is not None:
                self._guarded(self.handle, item)

    def _guarded(self, handler: Callable[[Any], None], arg: Any) -> None:
        try:
            handler(arg)
        except (EdgeError, ValueError, ArithmeticError) as exc:  # data never kills the daemon
            self.counters.incr("frames_errors")
            what = arg[0].frame if isinstance(arg, list) else arg.frame
            log.warning("frame %s could not be processed: %s", type(what).__name__, exc)

    def _batchable(self, item: _Received) -> bool:
        """A spectrum that goes straight to the model: not a reference, not waiting for the device's STATUS, not
        held for its annotation."""
        frame = item.frame
        return (isinstance(frame, Spectrum) and not isinstance(frame, (Dark, Reference))
                and not self.forward_annotations
                and not (self.device_status is None and self._status_error is None and self.engine.needs_device_axis))

    def _on_spectra(self, items: Sequence[_Received]) -> None:
        """Spectra in a row with one device state (references, axis, signal and model change only between
        batches or on other frames): the engine predicts them as one batch (:meth:`InferenceEngine.process_many`,
        the same values as one by one), then each goes through :meth:`_on_spectrum` in order, so counters, drift
        and messages are exactly those of frames handled one at a time."""
        if len(items) < 2 or self._status_error is not None:
            for item in items:
                self._on_spectrum(item.frame, item.received_ns)
            return
        outcomes = self.engine.process_many(
            [item.frame for item in items], self.references.refs, wavelengths_nm=self.wavelengths_nm,
            frame_signal=self.device_signal,
        )
        # The drift detectors see the batch at once: the same events, alerts and states as one by one (each
        # spectrum's temperature, then its prediction and level); their messages go out spectrum by spectrum below.
        drift = self.drift.observe_spectra(
            [item.frame.seq for item in items], [float(item.frame.detector_temp_c) for item in items],
            *drift_samples(outcomes))
        for i, (item, outcome) in enumerate(zip(items, outcomes)):
            self._on_spectrum(item.frame, item.received_ns, outcome, (drift, i))

    def handle(self, item: _Received) -> None:
        """One frame, whatever its kind (inference thread)."""
        frame = item.frame
        if isinstance(frame, (Dark, Reference)):
            self._on_reference(frame)
        elif isinstance(frame, Spectrum):
            if self.device_status is None and self._status_error is None and self.engine.needs_device_axis:
                self._parked.park(item)
            else:
                self._on_spectrum(frame, item.received_ns)
        elif isinstance(frame, Line):
            if self.device_status is None and self._status_error is None and self.engine.needs_device_axis:
                self._parked.park(item)
            else:
                self._on_line(item)
        elif isinstance(frame, Annotation):
            self._on_annotation(frame)
        elif isinstance(frame, Status):
            self._on_status(frame)
        elif isinstance(frame, Nack):
            self.counters.incr("device_nacks")
            log.warning("device refused command %s (%s): %s", frame.code.name, frame.reason.name,
                        printable(frame.detail))
            self.references.fail_on_nack(frame)
        elif isinstance(frame, Ack):
            self.counters.incr("device_acks")
        elif isinstance(frame, SampleTag):
            self._on_sample_tag(frame)
        else:
            self.counters.incr("frames_ignored")

    # ---------------------------------------------------------------------------------------- the device's STATUS
    def _release_parked(self, why: str) -> None:
        """Predict on the spectra that waited for the device's STATUS (rejected, and counted, if none came)."""
        self._parked.release(why, status_known=self.device_status is not None)

    def _on_parked(self, item: _Received) -> None:
        if isinstance(item.frame, Line):
            self._on_line(item)
        else:
            self._on_spectrum(item.frame, item.received_ns)

    def _on_line(self, item: _Received) -> None:
        """A LINE frame: judged against the contract once (a line that fails is rejected whole, each spectrum
        counted as if it had come alone), else predicted as one batch, one ``.../line_prediction`` message for the
        line or one message per spectrum (``[lines] publish``; :mod:`edge.daemon.lines`)."""
        line: Line = item.frame
        self.counters.incr("lines_in")
        items = split_line(line, item.received_ns)
        rejections = None
        if self._status_error is None:
            rejections = line_rejections(self.engine, items, self.wavelengths_nm, self.device_signal)
        if rejections is not None:
            self.counters.incr("lines_rejected")
            for spectrum, rejection in zip(items, rejections):
                self._on_spectrum(spectrum.frame, spectrum.received_ns, rejection)
            return
        self._line.start(line, collect=self._collect_lines)
        try:
            self._on_spectra(items)
        finally:
            collected = self._line.end()
            if collected is not None:  # what was predicted is published, even when an error stopped the line
                self._publish_line(collected, item.received_ns)

    def _on_status(self, status: Status) -> None:
        problem, wl = status_axis_problem(status)
        if problem is not None:
            self._refuse_status(status, problem)
            return
        if self._status_error is not None:
            log.info("device %s: valid STATUS received, spectra are predicted on again", printable(status.device_id))
            if self._last_error.text is not None and self._last_error.text.startswith("STATUS refused"):
                self._last_error.text = None
            self._status_error = None
            self.device_status = None  # published below as a change
        signal_now = status_signal(status)
        boot_id = int(getattr(status, "boot_id", 0) or 0) or None
        changed = self.device_status is None or (signal_now, boot_id) != (self.device_signal, self.device_boot_id)
        if boot_id != self.device_boot_id and self.device_boot_id is not None:
            log.info("device rebooted (boot id %s -> %s): its sequence numbers start again", self.device_boot_id,
                     boot_id)
        self.device_status = status
        self.device_signal, self.device_boot_id = signal_now, boot_id
        self._seqs.session(boot_id)  # the first boot id: resume from the previous run's last seq when it is this one
        self.wavelengths_nm = wl
        if not self._check_signal() and changed:
            self._publish_status()  # the device's signal and boot id are part of the retained status
        self.counters.incr("device_status_frames")
        log.info(
            "device %s firmware %s: %d pixels, integration %d us, sends %s, boot id %s",
            printable(status.device_id),
            printable(status.firmware_version),
            status.pixel_count,
            status.integration_time_us,
            self.device_signal,
            self.device_boot_id,
        )
        self._release_parked("STATUS received")

    def _refuse_status(self, status: Status, problem: str) -> None:
        """Refuse a STATUS whose calibration is broken: no axis is better than a wrong one, and a device that
        announces a broken calibration is not measuring what the bundle was trained on.  Every spectrum is rejected
        (``frames_rejected_device_status_invalid``) until a valid STATUS arrives (inference thread)."""
        self.counters.incr("device_status_refused")
        first = self._status_error is None
        self._status_error = problem
        self.wavelengths_nm = None
        self._last_error.text = (f"STATUS refused from device {printable(status.device_id)}: {problem}; spectra are "
                                 "rejected until a valid STATUS arrives")
        if first or self.counters.get("device_status_refused") <= 3:
            log.error("%s", self._last_error.text)
        if first:
            self._publish_status()  # carries last_error
        self._release_parked("STATUS refused")

    def _check_signal(self) -> bool:
        """Raise or clear ``signal_mismatch`` for the bundle in service and what the device sends (inference thread);
        return whether that published the status.

        While raised, every spectrum is rejected (``frames_rejected_signal_mismatch``) by the engine itself; the
        mismatch is the status's ``last_error`` until it is resolved.
        """
        device = printable(self.device_status.device_id) if self.device_status is not None else self.device_id
        error = self.engine.signal_mismatch(self.device_signal, device)
        if error is not None and self.device_status is None:
            error += " (it sent no STATUS yet, so protocol v1 counts are assumed)"
        previous, self._signal_error = self._signal_error, error
        if error is not None:
            if error != previous:
                log.error("%s: no prediction is made until the device or the bundle changes", error)
            self._last_error.text = error
        elif previous is not None and self._last_error.text == previous:
            self._last_error.text = None
        if not self.alerts.set("signal_mismatch", error is not None) and error == previous:
            return False
        self.counters.incr("signal_mismatch_raised" if error is not None and previous is None else
                           "signal_mismatch_cleared" if error is None else "signal_mismatch_changed")
        if error is None:
            log.info("signal mismatch resolved: the device sends %s, the bundle takes it", self.device_signal)
        self._publish_status()
        return True

    # ---------------------------------------------------------------------------------------- references
    def _on_reference(self, frame: Dark | Reference) -> None:
        kind = ReferenceKind.DARK if isinstance(frame, Dark) else ReferenceKind.WHITE
        self.counters.incr(f"{kind.value}_frames")
        self._seqs.track(frame.seq)
        full_scale = FULL_SCALE_COUNTS.get(frame.pixel_format)
        if kind is ReferenceKind.DARK:
            events = self.drift.observe_dark(frame.seq, frame.counts, full_scale=full_scale)
        else:
            events = self.drift.observe_reference(frame.seq, frame.counts, full_scale=full_scale)
        self._publish_drift(events)
        self.references.take(frame, kind)

    def _on_sample_tag(self, frame: SampleTag) -> None:
        """The device says the next spectra on the link are lab sample ``sample_id``'s (PROTOCOL.md, SAMPLE_TAG):
        tagged in the archive as by ``tag_sample``, here, in the link's order."""
        self.counters.incr("device_sample_tags" if self._archive is not None else "device_sample_tags_ignored")
        if self._archive is not None:
            self._archive.tag(frame.sample_id, frame.frames, None)
        elif self.counters.get("device_sample_tags_ignored") <= 3:
            log.warning("device tagged sample %r, but [archive] is off: there is nothing to tag", frame.sample_id)

    def _on_annotation(self, frame: Annotation) -> None:
        self.counters.incr("annotation_frames")
        if self.forward_annotations:
            self._annotated.on_annotation(frame, self._seqs.last)

    # ---------------------------------------------------------------------------------------- spectra
    def _on_spectrum(self, frame: Spectrum, received_ns: int, computed: Any = None,
                     drift_at: tuple[DriftBatch, int] | None = None) -> None:
        """One spectrum: counters, sequence gaps, temperature drift, the engine's outcome (``computed`` by
        :meth:`_on_spectra` for a batch, without instrument flags, else computed here), its message; ``drift_at``
        is what the drift detectors found at this spectrum of a batch they saw at once (else it is fed here)."""
        self._release_held(force=True)
        self.counters.incr("spectra_in")
        self._seqs.track(frame.seq)
        if self._status_error is not None:  # the device's last STATUS was refused: fail closed
            self.counters.incr("frames_rejected_device_status_invalid")
            if self._line.collecting:
                self._line.reject(frame.seq, "device_status_invalid")
            return
        if drift_at is None:
            self._publish_drift(self.drift.observe_temperature(frame.seq, float(frame.detector_temp_c)))
            instrument = [d.name for d in (self.drift.dark, self.drift.reference, self.drift.temp) if d.raised]
        else:
            self._publish_drift(*drift_at[0].temperature_at(drift_at[1]))
            instrument = drift_at[0].instrument_at(drift_at[1])
        if computed is None:
            outcome = self.engine.process(
                frame, self.references.refs, wavelengths_nm=self.wavelengths_nm, instrument_alerts=instrument,
                frame_signal=self.device_signal,
            )
        else:
            outcome = computed.with_instrument_alerts(instrument) if isinstance(computed, Prediction) else computed
        if self.shadow is not None:
            self.shadow.observe(frame, outcome, received_ns, refs=self.references.refs,
                                wavelengths_nm=self.wavelengths_nm, signal=self.device_signal, instrument=instrument,
                                boot_id=self.device_boot_id, line=self._line.position(frame.seq))
        if self._archive is not None:  # never blocks: a full archive queue drops the record (archive_dropped)
            self._archive.offer(frame, outcome, self.references.refs, signal=self.device_signal,
                                boot_id=self.device_boot_id, wavelengths_nm=self.wavelengths_nm,
                                bundle=self.engine.bundle)
        if isinstance(outcome, Rejection):
            if self._line.collecting:
                self._line.reject(outcome.seq, outcome.reason.value)
            if outcome.reason is RejectReason.SIGNAL_MISMATCH:
                if self._signal_error is None:  # no STATUS yet: the device is taken to send counts (protocol v1)
                    self._check_signal()
                self.counters.incr(f"frames_rejected_{outcome.reason.value}")
                return
            if outcome.reason is RejectReason.MISSING_REFERENCE:
                self._set_alert("missing_reference", True)
                self.references.request_missing()
            self.counters.incr(f"frames_rejected_{outcome.reason.value}")
            if self.counters.get(f"frames_rejected_{outcome.reason.value}") <= 3 or log.isEnabledFor(logging.DEBUG):
                log.warning("frame %d rejected (%s): %s", outcome.seq, outcome.reason.value, outcome.detail)
            self._last_error.text = f"frame {outcome.seq} rejected: {outcome.detail}"
            return
        latency_ns = time.monotonic_ns() - received_ns
        self.compute.add(outcome.compute_us)
        self._set_alert("missing_reference", False)
        self._set_alert("stale_reference", Quality.STALE_REFERENCE in outcome.flags)
        for flag in outcome.flags:
            self.counters.incr(f"predictions_flagged_{flag.value}")
        if drift_at is None:
            self._publish_drift(self.drift.observe_prediction(
                outcome.seq, t2_ratio=outcome.t2_ratio, q_ratio=outcome.q_ratio, values=outcome.values,
                ae_ratio=outcome.ae_ratio, level=outcome.level))
        else:
            self._publish_drift(*drift_at[0].prediction_at(drift_at[1]))
        if self._control_watch is not None:
            self._control_watch.observe(outcome, self.device_boot_id)
        if self.forward_annotations and not self._line.active:  # a line's spectra have no ANNOTATION frames
            self._annotated.on_prediction(outcome, latency_ns)
        elif self._line.collecting:  # published with the rest of its line (_publish_line)
            self._line.add(outcome)
            self.counters.incr("predictions")
        else:
            self._publish_prediction(outcome, latency_ns, None)

    def _release_held(self, *, force: bool) -> None:
        self._annotated.release(force=force, wait_s=ANNOTATION_WAIT_S)

    def _publish_prediction(self, pred: Prediction, latency_ns: int, reference: Sequence[float] | None) -> None:
        latency_ms = latency_ns / 1e6
        self.latency.add(latency_ns / 1e3)
        # encode() validates the final payload once, when it is published
        msg = prediction_message_of(pred, device_id=self.device_id, latency_ms=latency_ms, reference=reference,
                                    device_boot_id=self.device_boot_id, validate_now=False,
                                    line=self._line.position(pred.seq))
        self._emit(MessageKind.PREDICTION, msg)
        self.counters.incr("predictions")
        if self.shadow is not None and reference is not None:
            self.shadow.observe_reference(pred.seq, reference)

    def _publish_line(self, line: "CollectedLine", received_ns: int) -> None:
        """One ``.../line_prediction`` for the predictions of a LINE frame (none when all its spectra were rejected;
        each was counted then); its latency is one sample of the latency window."""
        latency_ns = time.monotonic_ns() - received_ns
        msg = line_message(line, device_id=self.device_id, device_boot_id=self.device_boot_id,
                           latency_ms=max(0.0, latency_ns / 1e6))
        if msg is None:
            return
        self.latency.add(latency_ns / 1e3)
        self._emit(MessageKind.LINE_PREDICTION, msg)
        self.counters.incr("line_predictions")

    def _publish_drift(self, events: Sequence[DriftEvent], active: list[str] | None = None) -> None:
        """Publish drift events; ``active`` is the detectors in alert right after them (default: now)."""
        if events and publish_drift_events(
                events, self.drift.active() if active is None else active, emit=self._emit, counters=self.counters,
                alerts=self.alerts, device_id=self.device_id, model=(self.model_id, self.model_version),
                device_boot_id=self.device_boot_id):
            self._publish_status()

    # ---------------------------------------------------------------------------------------- bundle swap
    def _apply_swap(self, swap: _Swap) -> None:
        old = (self.model_id, self.model_version)
        self._release_held(force=True)
        new = swap.engine.bundle
        # The model's detectors start over: alerts they had raised end here with an explicit cleared event, sent
        # under the old model's name (the model they were raised for).
        ended = self.drift.set_training(
            new.training_stats, seq=self._seqs.last or 0,
            reason=f"model changed from {old[0]} {old[1]} to {new.model_id} {new.model_version} ({swap.reason}); "
                   "the model's detectors start over")
        self._publish_drift(ended)
        self.engine = swap.engine
        self.counters.incr("bundle_reloads")
        self._record_version(new)
        self._last_error.text = None
        self._audit("bundle_load", {**bundle_audit(new, self._signer_key_id), "trigger": swap.reason,
                                    "request_id": swap.request_id, "verdict": "accepted",
                                    "previous_model": {"id": old[0], "version": old[1]},
                                    "device_seq": self._seqs.last, "device_boot_id": self.device_boot_id})
        log.info("now serving %s %s (was %s %s; %s)", self.model_id, self.model_version, *old, swap.reason)
        if self.device_status is not None or self._signal_error is not None:
            self._check_signal()
        self.alerts.replace_prefix("drift:", [f"drift:{name}" for name in self.drift.active()])
        self._publish_status()
        if swap.command is not None:
            self._emit(
                MessageKind.COMMAND_RESPONSE,
                command_response_message(
                    device_id=self.device_id,
                    command=swap.command,
                    request_id=swap.request_id,
                    ok=True,
                    result={
                        "model": {"id": self.model_id, "version": self.model_version},
                        "previous_model": {"id": old[0], "version": old[1]},
                        "path": str(swap.engine.bundle.path),
                    },
                ),
                swap.command,
            )
