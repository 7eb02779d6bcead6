"""The edge daemon: serial frames in, int8 predictions with intervals, OOD statistics and drift alerts out over MQTT.

Threads and hand-overs
----------------------
::

    serial port --reader--> frames queue --inference--> outbox (SQLite) --mqtt--> broker
                                                              ^            (edge.mqtt drains it)
                  housekeeping: bundle watch + verified reload, command execution, metrics
                                --> messages queue --publisher--^

- **reader** (``spectro-reader``): :class:`firmware_bridge.transport.SerialTransport` -> decoded frames, stamped
  with their arrival time, into the *frames queue*.  Serial outages, CRC errors and skipped bytes are counted by
  the transport and its decoder and reported in the metrics.
- **inference** (``spectro-inference``): owns the bundle's runtime (a TFLite interpreter is not thread-safe), the
  references and the drift monitor.  DARK/REFERENCE frames update the references, STATUS frames the wavelength
  axis, SPECTRUM frames go through :class:`edge.inference.InferenceEngine` and the drift monitor; the resulting
  predictions and drift alerts are encoded and committed to the outbox by this thread itself (one thread
  hand-over less per frame; see docs/daemon.md).  A new bundle is swapped in here, between two frames, after it
  was verified elsewhere.
- **publisher** (``spectro-publisher``): encodes the messages of the other threads (metrics, status, command
  responses) and commits them to the durable outbox, which :mod:`edge.mqtt` drains to the broker in order;
  nothing leaves the device without first being on disk.
- **housekeeping** (``spectro-housekeeping``): polls the bundle file, loads, verifies and self-tests a new bundle
  (a reload never stalls inference), executes commands, and publishes metrics every ``metrics.period_s``.

Back-pressure policy
--------------------
The frames queue is bounded by ``queues.frames_max`` and applies ``queues.policy`` to spectra (``drop_oldest`` by
default: under overload the freshest spectra are predicted; simulator ANNOTATION frames may be dropped too);
reference, status and acknowledgement frames are never dropped.  Every dropped spectrum is counted
(``frames_dropped_queue_full``), and every gap in the device's sequence numbers is counted too
(``frames_lost_seq_gap``: frames lost on the wire, to CRC errors or to the queue), next to the decoder's own
counters (``decoder_*``), so lost frames are visible end to end.  The inference thread waits for its outbox
commits (a computed prediction or a drift alert is never thrown away here); a slow disk pushes the overload back
onto the frames queue, where it is counted.  The messages queue (``queues.messages_max``) blocks the other
threads when full, never dropping.  The outbox has its own bound and policy (``outbox.full_policy``).

Quality and rejections
----------------------
A spectrum that does not match the bundle's input contract (the signal the device announced in its STATUS, counts
until it does; pixel count, pixel format, wavelength axis), has non-finite counts, or lacks the references its
pipeline needs is counted (``frames_rejected_<reason>``) and never predicted on.  A signal mismatch is also an
alert (``signal_mismatch``) of the retained status, and a reload that would introduce one is refused.  Every other
spectrum gets a prediction whose ``quality`` is the most severe of saturated, stale reference, out of distribution
and instrument fault (``ok`` when none applies).

Retained status
---------------
:class:`ActiveAlerts` holds the conditions active now (signal mismatch, outbox full, missing or stale reference,
each drift detector in alert); every change of that set, of the model, of the device's signal or boot id re-publishes
the retained status, which is built at the moment it is sent (and by the MQTT client at every reconnect).

Watchdog
--------
The main thread checks the daemon every :data:`WATCHDOG_POLL_S` (:meth:`Daemon.health`): a stage thread that ended
(reader, inference, publisher, housekeeping), an inference loop that has not come round for
:data:`INFERENCE_STALL_S`, or a dead MQTT network or drain thread (:meth:`edge.mqtt.MqttPublisher.failure`) ends the
daemon with exit code 2, so that systemd's ``Restart=always`` starts a fresh one instead of leaving a process that
predicts into an outbox nothing drains.  Under systemd (``$NOTIFY_SOCKET``) it sends ``READY=1`` once started and,
with ``WatchdogSec=`` in the unit, ``WATCHDOG=1`` only while every stage is healthy (:mod:`edge.sdnotify`), which
also covers a main thread that hangs.

Shutdown
--------
SIGTERM or SIGINT (or ``stop_event``) stops the reader, lets inference finish what is queued, commits every
message to the outbox, gives the MQTT client ``outbox.flush_timeout_s`` to deliver the backlog, then publishes
the retained ``offline`` status and disconnects.  What is not delivered by then stays in the outbox for the next
start.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from edge.archive import Archive
from edge.audit import AuditError, AuditLog, RefusalGate
from edge.command_queue import CommandQueue, RefusalReason, Refusals
from edge.config import SECURITY_WARNINGS, security_warnings
from edge.drift import CusumConfig, DriftConfig, DriftEvent, DriftMonitor, EwmaConfig, TrainingStats
from edge.errors import BundleError, ConfigError, EdgeError, StaleCommandError
from edge.inference import InferenceEngine, Prediction, Rejection, RejectReason
from edge.messages import (
    MessageKind,
    Quality,
    Topics,
    command_response_message,
    drift_message,
    metrics_message,
    status_message,
)
from edge.metrics import Counters, LatencyWindow
from edge.queues import BoundedQueue
from edge.references import (
    ReferenceError,
    ReferenceKind,
    ReferencePolicy,
    ReferenceSet,
    ReferenceSource,
    ReferenceSpectrum,
    load_reference_file,
    save_reference_file,
)
from edge.rollback import RollbackGuard
from edge.sdnotify import SdNotifier
from firmware_bridge.errors import BridgeError
from firmware_bridge.frames import (
    Ack,
    Annotation,
    Command,
    CommandCode,
    Dark,
    Hello,
    Nack,
    PixelFormat,
    Reference,
    Spectrum,
    Status,
)
from firmware_bridge.signals import events_on_signals

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.bundle import Bundle
    from edge.config import EdgeConfig
    from edge.mqtt import CommandHandler

__all__ = [
    "ActiveAlerts",
    "Daemon",
    "run_daemon",
    "main",
    "FULL_SCALE_COUNTS",
    "drift_config_from",
]

log = logging.getLogger("edge.daemon")

#: Detector full scale per pixel format (for the instrument-health fractions); float frames have none.
FULL_SCALE_COUNTS: dict[PixelFormat, float | None] = {
    PixelFormat.UINT16: 65535.0,
    PixelFormat.UINT32: 4294967295.0,
    PixelFormat.FLOAT32: None,
}
#: How long a prediction waits for the ANNOTATION frame of the same seq when annotations are forwarded, seconds.
ANNOTATION_WAIT_S = 0.25
#: Seconds allowed for a capture command, plus this much per averaged frame.
CAPTURE_TIMEOUT_S = 5.0
CAPTURE_TIMEOUT_PER_FRAME_S = 1.0
#: Longest wait of one serial read; bounds how late the reader notices a stop request, seconds.
READ_WAIT_S = 0.2
#: Reader coalescing (see _reader_loop): frames closer together than this (ns) make the reader pause COALESCE_S
#: before its next read.  At 100 frames/s nothing changes; at 1,000 frames/s a read returns 2-3 frames.
COALESCE_BELOW_NS = 3_000_000
COALESCE_S = 0.002
#: Longest wait of the housekeeping thread for a command before it looks at metrics, the bundle file and the outbox
#: alert (commands wake it at once).  Every idle wake-up costs CPU: the daemon's threads poll only a few times a second.
HOUSEKEEPING_POLL_S = 0.25
#: Longest wait of the inference thread for a frame before it looks at held predictions and capture deadlines.
INFERENCE_POLL_S = 0.25
#: Most frames the inference thread takes off the frames queue at once (a micro-batch): what queued up while it
#: worked, never waiting for more; consecutive spectra of a batch are predicted together and the batch's messages
#: are committed to the outbox in one transaction.
INFERENCE_BATCH_MAX = 64
#: The device normally announces itself (STATUS) and its references when a host opens the port; the daemon asks
#: (HELLO, REQUEST_DARK/REQUEST_REFERENCE) only when they have not come (or were lost to a CRC error), at most this
#: often, seconds.
REQUEST_INTERVAL_S = 5.0
REFERENCE_REQUEST_INTERVAL_S = 1.0
#: Seconds after start without a STATUS frame before the daemon greets the device (HELLO).
HELLO_AFTER_S = 2.0
#: How long spectra wait for the device's STATUS when the bundle needs the device's wavelength axis (a pipeline that
#: resamples it), seconds.  A device announces itself when a host opens the port, but not to a daemon restarted
#: while the port stayed open: the daemon then greets it at once and predicts the waiting spectra when it answers.
STATUS_WAIT_S = 5.0
#: A forward jump of the device's sequence number larger than this is not counted as lost frames (one forged
#: ``seq = 0xFFFFFFF0`` would add 4.29e9 to ``frames_lost_seq_gap`` forever) but as a resynchronisation
#: (``seq_jumps``); at 1,000 spectra/s it is 100 s of frames.
SEQ_GAP_MAX = 100_000
#: Longest device-supplied text (device id, firmware version, NACK detail) written to the log, characters.
DEVICE_TEXT_MAX = 80
#: How often the main thread's watchdog looks at the stages, seconds.
WATCHDOG_POLL_S = 0.5
#: An inference loop that has not come round for this long is stuck (one frame takes milliseconds; a loop without
#: frames comes round every INFERENCE_POLL_S): the watchdog ends the daemon, seconds.
INFERENCE_STALL_S = 120.0


# ---------------------------------------------------------------------------------------------- small values
@dataclass(frozen=True)
class _Received:
    """A frame with its arrival time (``time.monotonic_ns``), as handed from the reader to inference."""

    frame: Any
    received_ns: int


@dataclass(frozen=True)
class _Outgoing:
    """A message for the publisher: its kind, payload dict and (for command responses) the command name."""

    kind: MessageKind
    message: dict[str, Any]
    command: str | None = None


@dataclass
class _Capture:
    """A capture command in progress (inference thread only)."""

    kind: ReferenceKind
    needed: int
    request_id: str | None
    command: str
    deadline_s: float
    collected: list[Any] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class _Swap:
    """A verified engine to swap in, with what asked for it."""

    engine: InferenceEngine
    request_id: str | None
    command: str | None
    reason: str


class ActiveAlerts:
    """The conditions active now (``signal_mismatch``, ``outbox_full``, ``stale_reference``, ``missing_reference``,
    ``drift:<detector>``; see :data:`edge.messages.ALERTS`), shared by the daemon's threads.

    Every change says whether the set changed, so the retained status is re-published exactly when it does.

    >>> a = ActiveAlerts()
    >>> a.set("outbox_full", True), a.set("outbox_full", True), a.names()
    (True, False, ['outbox_full'])
    >>> a.replace_prefix("drift:", ["drift:ood_q"]), a.names(), a.set("outbox_full", False), a.names()
    (True, ['drift:ood_q', 'outbox_full'], True, ['drift:ood_q'])
    """

    def __init__(self, on_change: Callable[[str, bool], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._on_change = on_change  #: told ``(name, active)`` of every alert raised or cleared (the audit trail)

    def set(self, name: str, active: bool) -> bool:
        """Raise or clear ``name``; return whether that changed anything."""
        with self._lock:
            if active == (name in self._active):
                return False
            if active:
                self._active.add(name)
            else:
                self._active.discard(name)
        if self._on_change is not None:
            self._on_change(name, active)
        return True

    def replace_prefix(self, prefix: str, names: Sequence[str]) -> bool:
        """Make the alerts starting with ``prefix`` exactly ``names``; return whether that changed anything."""
        new = set(names)
        with self._lock:
            old = {n for n in self._active if n.startswith(prefix)}
            if old == new:
                return False
            self._active = (self._active - old) | new
        if self._on_change is not None:
            for name in sorted(new - old):
                self._on_change(name, True)
            for name in sorted(old - new):
                self._on_change(name, False)
        return True

    def active(self, name: str) -> bool:
        with self._lock:
            return name in self._active

    def names(self) -> list[str]:
        """The active alerts, sorted."""
        with self._lock:
            return sorted(self._active)


#: One message for :meth:`Link.publish_many`: kind, payload dict, command name (command responses) or None.
OutgoingTuple = tuple[MessageKind, dict[str, Any], "str | None"]


class Link(Protocol):
    """What the daemon needs from the MQTT side (implemented over :mod:`edge.mqtt`)."""

    def start(self) -> None: ...

    def publish(self, kind: MessageKind, message: dict[str, Any], *, command: str | None = None) -> None: ...

    def publish_many(self, messages: Sequence[OutgoingTuple]) -> list[EdgeError | None]:
        """Publish several non-STATUS messages in order (one outbox transaction); per message the error that kept
        it from being stored or sent, or None."""
        ...

    def stop(self, flush_timeout_s: float) -> None: ...

    def stats(self) -> Mapping[str, Any]: ...

    def switch_broker(self, config: "EdgeConfig") -> None: ...


#: ``[mqtt]`` keys a configuration reload (SIGHUP) applies to the running daemon; any other change is logged and
#: needs a restart.  Topics and QoS stay: subscribers and stored messages depend on them.
LIVE_MQTT_KEYS = frozenset({
    "host", "port", "protocol", "client_id", "username", "password", "password_file", "keepalive_s",
    "clean_session", "session_expiry_s", "connect_timeout_s", "reconnect_min_delay_s", "reconnect_max_delay_s",
    "tls",
})


def config_changes(old: "EdgeConfig", new: "EdgeConfig") -> list[str]:
    """Dotted names of the keys whose values differ between two configurations (``mqtt.port``, ...)."""
    out: list[str] = []
    for section in dataclasses.fields(old):
        if section.metadata.get("internal"):
            continue
        a, b = getattr(old, section.name), getattr(new, section.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            out += [f"{section.name}.{f.name}" for f in dataclasses.fields(a)
                    if getattr(a, f.name) != getattr(b, f.name)]
        elif a != b:
            out.append(section.name)
    return out


def drift_config_from(cfg: Any) -> DriftConfig:
    """Translate the ``[drift]`` section of :class:`edge.config.EdgeConfig` into an :class:`edge.drift.DriftConfig`.

    ``ewma_alpha``, ``raise_ratio`` and ``clear_ratio`` drive the EWMA of T2/limit and Q/limit (raised after
    ``max(1, window_frames // 20)`` consecutive frames above, cleared after twice that below); ``min_frames`` is the
    warm-up; ``cusum_k_sigma``/``cusum_h_sigma`` the CUSUM of each prediction; the instrument thresholds map one
    to one.
    """
    n_raise = max(1, int(cfg.window_frames) // 20)
    ood = EwmaConfig(
        alpha=float(cfg.ewma_alpha),
        raise_above=float(cfg.raise_ratio),
        clear_below=float(cfg.clear_ratio),
        min_raise_samples=n_raise,
        min_clear_samples=2 * n_raise,
        warmup_samples=int(cfg.min_frames),
    )
    prediction = CusumConfig(
        k_sigma=float(cfg.cusum_k_sigma), h_sigma=float(cfg.cusum_h_sigma), warmup_samples=int(cfg.min_frames)
    )
    return DriftConfig(
        ood=ood,
        prediction=prediction,
        dark_max_fraction=float(cfg.dark_level_max_fraction),
        reference_min_fraction=float(cfg.reference_min_fraction),
        detector_temp_max_c=float(cfg.detector_temp_max_c),
    )


def status_signal(status: Status) -> str:
    """What a STATUS frame says the device's spectra carry: ``counts``, ``absorbance`` or ``reflectance``
    (``Status.signal.name.lower()``); ``counts`` for a device that does not say (protocol v1)."""
    signal_kind = getattr(status, "signal", None)
    if signal_kind is None:
        return "counts"
    return str(getattr(signal_kind, "name", signal_kind)).lower()


def printable(text: object, limit: int = DEVICE_TEXT_MAX) -> str:
    """Device-supplied text made safe for one log line: control characters (newline, ESC of ANSI sequences, ...)
    escaped as ``\\xNN``/``\\uNNNN``, cut to ``limit`` characters.  A hostile device cannot forge log lines.

    >>> printable("SIM-01\\n2026-01-01 INFO edge.daemon: forged\\x1b[2J")
    'SIM-01\\\\n2026-01-01 INFO edge.daemon: forged\\\\x1b[2J'
    >>> printable("x" * 100, limit=5)
    'xxxxx...'
    """
    s = str(text)
    cut = len(s) > limit
    s = s[:limit]
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return out + ("..." if cut else "")


def status_axis_problem(status: Status) -> tuple[str | None, np.ndarray | None]:
    """Check the calibration a STATUS frame announces: ``(problem, None)`` when it cannot be a detector's
    wavelength axis (fewer than 2 pixels, a polynomial that overflows or gives NaN, an axis that is not strictly
    monotonic), else ``(None, wavelengths_nm)``."""
    n = int(status.pixel_count)
    if n < 2:
        return f"expected at least 2 pixels, got {n}", None
    try:
        with np.errstate(all="ignore"):
            wl = np.asarray(status.wavelengths_nm(), dtype=np.float64)
    except (ValueError, FloatingPointError, OverflowError, TypeError) as exc:
        return f"the wavelength polynomial cannot be evaluated: {exc}", None
    if wl.shape != (n,):
        return f"expected a wavelength axis of {n} pixels, got shape {wl.shape}", None
    if not np.isfinite(wl).all():
        bad = int(np.argmin(np.isfinite(wl)))
        return f"the wavelength polynomial is not finite at pixel {bad} ({wl[bad]})", None
    d = np.diff(wl)
    if not ((d > 0).all() or (d < 0).all()):
        return "the wavelength axis is not strictly monotonic", None
    return None, wl


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex, read in blocks (raises OSError)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def signer_key_id(public_key_path: Path | None) -> str | None:
    """The audit trail's name of the bundle-signing key (:func:`edge.audit.key_id` of its raw Ed25519 bytes), or
    None when no key is configured or it cannot be read (the bundle load then says why)."""
    if public_key_path is None:
        return None
    try:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        from edge.audit import key_id
        from edge.bundle import load_public_key

        raw = load_public_key(public_key_path).public_bytes(Encoding.Raw, PublicFormat.Raw)
    except (EdgeError, ImportError, ValueError):
        return None
    return key_id("ed25519", bytes(raw))


def bundle_audit(bundle: "Bundle", key_id: str | None) -> dict[str, Any]:
    """What the audit trail records of a bundle: path, SHA-256 of the file, model and signer (the configured
    key's id when the signature was verified, ``unsigned``, or ``signed, not verified`` without a key)."""
    if bundle.signature_verified:
        signer = key_id or "ed25519 (configured key)"
    else:
        signer = "signed, not verified (no bundle.public_key_path)" if bundle.signed else "unsigned"
    return {"path": str(bundle.path), "sha256": bundle.file_sha256,
            "model": {"id": bundle.model_id, "version": bundle.model_version}, "signer": signer}


def _sha256_or_none(path: Path | None) -> str | None:
    """:func:`_file_sha256`, or None when the file cannot be read (for the audit trail)."""
    try:
        return _file_sha256(Path(path)) if path is not None else None
    except OSError:
        return None


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


# ---------------------------------------------------------------------------------------------------- daemon
class Daemon:
    """The running daemon: threads around one transport, one bundle, one outbox-backed MQTT link.

    Parameters
    ----------
    config : EdgeConfig
        Validated configuration.
    bundle : Bundle
        The initial, verified bundle.
    transport : SerialTransport
        Open (or reconnecting) serial transport.
    link : Link
        MQTT side (durable publishing through the outbox, commands in).
    forward_annotations : bool
        Put the simulator's ANNOTATION values of a spectrum into its prediction message as ``reference``
        (test benches and the demo).
    load_bundle : callable, optional
        ``load_bundle(path) -> Bundle`` used by reloads (default: :func:`edge.bundle.load_bundle` with the
        configured public key, self-test and threads).
    clock : callable
        Host time, seconds since the epoch.
    audit : AuditLog, optional
        The audit trail (:mod:`edge.audit`): bundle reloads, commands and their verdicts, configuration reloads and
        alerts are recorded in it; its head is the status's ``audit_head``.
    """

    def __init__(
        self,
        config: "EdgeConfig",
        bundle: "Bundle",
        transport: Any,
        link: Link,
        *,
        forward_annotations: bool = False,
        load_bundle: Callable[[Path], "Bundle"] | None = None,
        clock: Callable[[], float] = time.time,
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.audit = audit
        self._audit_refusals = RefusalGate()
        self._signer_key_id = signer_key_id(config.bundle.public_key_path) if audit is not None else None
        self.transport = transport
        self.link = link
        self.forward_annotations = forward_annotations
        self.clock = clock
        self.topics = Topics.from_config(config)
        self.device_id = config.device.device_id
        self.counters = Counters()
        self.latency = LatencyWindow()
        self.compute = LatencyWindow()
        self.reference_policy = ReferencePolicy(max_age_s=float(config.references.max_age_s))
        self._load_bundle = load_bundle or self._default_loader
        self.engine = InferenceEngine(bundle, reference_policy=self.reference_policy, clock=clock)
        self.drift = DriftMonitor(drift_config_from(config.drift), training=self._training_stats(bundle))
        self.refs = ReferenceSet()
        self.wavelengths_nm: np.ndarray | None = None
        self.device_status: Status | None = None
        #: What the device's spectra carry: ``counts`` until a STATUS frame says otherwise (protocol v1).
        self.device_signal = "counts"
        #: The device's boot id from its last STATUS (None when it sent none): the de-duplication key's middle part.
        self.device_boot_id: int | None = None
        self.alerts = ActiveAlerts(on_change=self._audit_alert)
        self._signal_error: str | None = None
        #: Why the device's last STATUS was refused (None once a valid one arrived): spectra are rejected meanwhile.
        self._status_error: str | None = None
        self._status_lock = threading.Lock()
        self.frames: BoundedQueue[_Received] = BoundedQueue(config.queues.frames_max, config.queues.policy)
        self.messages: BoundedQueue[_Outgoing] = BoundedQueue(config.queues.messages_max, "block")
        self.commands = CommandQueue()  # signed commands first; a full lane refuses (edge.command_queue)
        self._refusals = Refusals(count=self.counters.incr, respond=self._respond_error,
                                  unanswered=self._audit_unanswered_refusal)
        self._swaps: BoundedQueue[_Swap] = BoundedQueue(4, "drop_oldest")
        self._to_inference: BoundedQueue[Any] = BoundedQueue(64, "drop_newest")
        self._stop_reading = threading.Event()
        self._stop_inference = threading.Event()
        self._stop_housekeeping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_seq: int | None = None
        self._held: tuple[Prediction, float, int] | None = None  # prediction, held since (monotonic s), latency ns
        #: Messages the inference thread emitted during the batch it is working on (None between batches).
        self._batch_out: list[_Outgoing] | None = None
        self._parked: collections.deque[_Received] = collections.deque()  # spectra waiting for the device's STATUS
        self._parked_since = 0.0
        self._annotations: dict[int, tuple[float, ...]] = {}
        self._capture: _Capture | None = None
        self._command_id = 0
        self._bundle_stamp = _file_stamp(Path(config.bundle.path))
        self._failed_stamp: tuple[int, int] | None = None
        self._seen_stamp = self._bundle_stamp
        self._last_reload_mono = -math.inf  # last reload that swapped a new bundle in (rate limit)
        #: The watched file was refused because the device had not announced itself: its STATUS retries it.
        self._watch_waits_for_status = False
        #: Anti-rollback of signed bundles (bundle.allow_rollback); the bundle in service is its first record.
        self.rollback = RollbackGuard.from_config(config)
        self._record_version(bundle)
        self.last_error: str | None = None
        self.started_unix_s = clock()
        self._fatal: BaseException | None = None
        self._parser: Any = None
        self._last_reference_request = -math.inf
        self._last_hello = -math.inf
        self._started_mono = time.monotonic()
        self._inference_ident: int | None = None
        self._inference_beat = time.monotonic()  # last turn of the inference loop (watchdog)
        self._stopping = False
        self._restore_references()
        #: The spectrum archive (edge.archive; [archive]): offered every judged spectrum, None when disabled.
        self.archive = Archive.from_config(config.archive, clock=clock) if config.archive.enabled else None

    # ---------------------------------------------------------------------------------------- helpers
    def _default_loader(self, path: Path) -> "Bundle":
        from edge.bundle import load_bundle

        return load_bundle(
            path,
            public_key=self.config.bundle.public_key_path,
            self_test=self.config.bundle.self_test,
            num_threads=self.config.runtime.num_threads,
        )

    @staticmethod
    def _training_stats(bundle: "Bundle") -> "TrainingStats | None":
        """The training targets' statistics for the prediction CUSUM: the bundle's typed field, written by the
        trainer (:attr:`edge.bundle.Bundle.training_stats`); None turns the prediction monitor off."""
        return bundle.training_stats

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def runtime_description(self) -> str:
        rt = self.engine.runtime
        return f"{rt.runtime_description}, {rt.num_threads} thread(s)"

    def status_payload(self, state: str = "online") -> dict[str, Any]:
        """The retained ``.../status`` payload describing the daemon now (any thread; the MQTT client calls it at
        every connect, so a reconnect publishes the current alerts with a fresh time, not a start-up copy)."""
        return status_message(
            device_id=self.device_id,
            state=state,
            model_id=self.model_id,
            model_version=self.model_version,
            runtime=self.runtime_description(),
            software_version=_software_version(),
            alerts=self.alerts.names(),
            last_error=self.last_error,
            device_signal=self.device_signal if self.device_status is not None else None,
            device_boot_id=self.device_boot_id,
            security=security_warnings(self.config),
            audit_head=self.audit.head if self.audit is not None else None,
        )

    def _publish_status(self) -> None:
        """Publish the status because something in it changed (any thread; see :meth:`_publish`)."""
        self._emit(MessageKind.STATUS, self.status_payload("online"))

    def _set_alert(self, name: str, active: bool) -> None:
        """Raise or clear an alert; publish the status when the set of alerts changed."""
        if self.alerts.set(name, active):
            self.counters.incr(f"{name}_{'raised' if active else 'cleared'}")
            (log.warning if active else log.info)("alert %s %s", name, "raised" if active else "cleared")
            self._publish_status()

    def _sync_drift_alerts(self) -> None:
        if self.alerts.replace_prefix("drift:", [f"drift:{name}" for name in self.drift.active()]):
            self._publish_status()

    def _emit(self, kind: MessageKind, message: dict[str, Any], command: str | None = None) -> None:
        if kind is MessageKind.COMMAND_RESPONSE:
            self._audit_command_result(message)  # every command's verdict passes here, accepted or refused
        out = _Outgoing(kind, message, command)
        if threading.get_ident() == self._inference_ident:
            if self._batch_out is not None:
                self._batch_out.append(out)  # published, in order, when the batch ends (_flush_batch)
            else:
                self._publish(out)
        else:
            self.messages.put(out, droppable=False)

    def _audit(self, event: str, details: Mapping[str, Any]) -> None:
        """Write one audit record (any thread); a failure is counted and logged, never raised."""
        if self.audit is None:
            return
        try:
            self.audit.append(event, details)
            self.counters.incr("audit_records")
        except (OSError, AuditError) as exc:
            self.counters.incr("audit_write_errors")
            if self.counters.get("audit_write_errors") <= 3 or log.isEnabledFor(logging.DEBUG):
                log.error("audit record %s could not be written: %s", event, exc)

    def _audit_alert(self, name: str, active: bool) -> None:
        self._audit("alert", {"alert": name, "state": "raised" if active else "cleared",
                              "model": {"id": self.model_id, "version": self.model_version}})

    def _audit_unanswered_refusal(self, command: str, request_id: str | None, error: str) -> None:
        """A refusal past the response budget is not in a response, but its verdict is recorded all the same."""
        self._audit_command_result({"command": command, "request_id": request_id, "ok": False,
                                    "error": f"{error} (not answered: response budget spent)"})

    def _audit_command_result(self, message: Mapping[str, Any]) -> None:
        """Record a command's verdict (its response); refusals beyond :class:`edge.audit.RefusalGate`'s rate are
        counted (``audit_refusals_unrecorded``) and recorded as one count."""
        ok = bool(message.get("ok"))
        if not ok:
            admit, unrecorded = self._audit_refusals.admit(time.monotonic())
            if unrecorded:
                self._audit("command_refusals_unrecorded", {"count": unrecorded})
            if not admit:
                self.counters.incr("audit_refusals_unrecorded")
                return
        details: dict[str, Any] = {"command": message.get("command"), "request_id": message.get("request_id"),
                                   "verdict": "ok" if ok else "refused"}
        if ok:
            details["result"] = message.get("result")
        else:
            details["reason"] = message.get("error")
        self._audit("command_result", details)
    def _flush_batch(self) -> None:
        """Publish what the inference thread emitted during one batch, in order: runs of outbox messages through
        ``link.publish_many`` (one outbox transaction each), a status on its own (inference thread)."""
        pending, self._batch_out = self._batch_out or [], None
        run: list[_Outgoing] = []
        for out in [*pending, None]:
            if out is not None and out.kind is not MessageKind.STATUS:
                run.append(out)
                continue
            publish_many: Callable[[list[OutgoingTuple]], list[EdgeError | None]] | None = getattr(
                self.link, "publish_many", None)  # a test's link may lack it
            if len(run) == 1 or (run and publish_many is None):
                for o in run:
                    self._send(o)
            elif run and publish_many is not None:
                errors = publish_many([(o.kind, o.message, o.command) for o in run])
                for o, exc in zip(run, errors):
                    if exc is None:
                        self.counters.incr(f"messages_{o.kind.value}")
                    else:
                        self.counters.incr("messages_failed")
                        log.error("message %s could not be stored or sent: %s", o.kind.value, exc)
            run = []
            if out is not None:
                self._publish(out)

    def _publish(self, out: _Outgoing) -> None:
        if out.kind is MessageKind.STATUS:
            # Built again now, under a lock: the last status published is the last one built, so the retained
            # status is never older than the state it describes (one queued by another thread could otherwise
            # overtake a newer one).
            with self._status_lock:
                self._send(_Outgoing(MessageKind.STATUS, self.status_payload(out.message.get("state", "online"))))
            return
        self._send(out)

    def _send(self, out: _Outgoing) -> None:
        try:
            self.link.publish(out.kind, out.message, command=out.command)
            self.counters.incr(f"messages_{out.kind.value}")
        except EdgeError as exc:
            self.counters.incr("messages_failed")
            log.error("message %s could not be stored or sent: %s", out.kind.value, exc)

    def _state_path(self, kind: ReferenceKind) -> Path:
        refs = self.config.references
        configured = refs.dark_path if kind is ReferenceKind.DARK else refs.white_path
        if configured is not None and configured.suffix.lower() == ".npz":
            return configured
        return Path(self.config.outbox.path).parent / f"{self.device_id}.{kind.value}.npz"

    def _restore_references(self) -> None:
        """Load references at start: the state file written by a previous run, else the configured file."""
        refs = self.config.references
        for kind, configured in ((ReferenceKind.DARK, refs.dark_path), (ReferenceKind.WHITE, refs.white_path)):
            candidates = [self._state_path(kind)]
            if configured is not None and configured not in candidates:
                candidates.append(configured)
            for path in candidates:
                if not path.is_file():
                    continue
                try:
                    spectrum = load_reference_file(path, kind)
                except ReferenceError as exc:
                    log.warning("ignoring %s file %s: %s", kind.value, path, exc)
                    self.counters.incr("reference_file_errors")
                    continue
                self.refs = self.refs.with_spectrum(spectrum)
                log.info("%s restored from %s (%s)", kind.value, path, spectrum.source.value)
                break

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the link and the four threads; greet the device."""
        rt = self.engine.runtime
        log.info(
            "model %s %s; runtime %s, %d interpreter thread(s); %s",
            self.model_id,
            self.model_version,
            rt.runtime_description,
            rt.num_threads,
            "references needed" if self.engine.needs_references else "no references needed",
        )
        for name in security_warnings(self.config):
            log.warning("insecure setting: %s", SECURITY_WARNINGS[name])
        cmds = self.config.commands
        log.info("commands: %s", "on, each signed with the HMAC key" if cmds.enabled and cmds.require_auth
                 else "on, unsigned accepted" if cmds.enabled else "off (commands.enabled = false)")
        self.link.start()
        self._publish_status()
        if self.archive is not None:
            self.archive.start()
        for name, target in (
            ("spectro-publisher", self._publisher_loop),
            ("spectro-inference", self._inference_loop),
            ("spectro-reader", self._reader_loop),
            ("spectro-housekeeping", self._housekeeping_loop),
        ):
            t = threading.Thread(target=self._guard(target), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # a bug in a thread must stop the daemon, loudly, not hang it
                log.exception("thread %s died", threading.current_thread().name)
                self._fatal = exc

        return run

    @property
    def failed(self) -> bool:
        """Whether a thread died (the daemon then exits non-zero)."""
        return self._fatal is not None

    def health(self) -> str | None:
        """What makes the running daemon unable to do its job now, or None when every stage is healthy (the
        watchdog of :func:`run_daemon`; any thread).

        Unhealthy: a stage thread ended or died, the inference loop has not come round for
        :data:`INFERENCE_STALL_S`, or the link's own threads died (``link.failure()``, when the link has it).
        """
        if self._stopping or not self._threads:
            return None
        if self._fatal is not None:
            return f"a daemon thread died: {type(self._fatal).__name__}: {self._fatal}"
        for t in self._threads:
            if not t.is_alive():
                return f"thread {t.name} ended"
        stalled = time.monotonic() - self._inference_beat
        if stalled > INFERENCE_STALL_S:
            return f"the inference loop has not come round for {stalled:.0f} s"
        failure = getattr(self.link, "failure", None)
        problem = failure() if callable(failure) else None
        return str(problem) if problem else None

    def stop(self) -> None:
        """Stop in order: reader, inference (drains its queue), housekeeping, publisher; then flush the link."""
        self._stopping = True
        by_name = {t.name: t for t in self._threads}
        self._stop_reading.set()
        self._join(by_name.get("spectro-reader"))
        self.frames.close()
        self._stop_inference.set()
        self._join(by_name.get("spectro-inference"))
        self._stop_housekeeping.set()
        self._join(by_name.get("spectro-housekeeping"))
        if self.archive is not None:  # nothing offers or tags any more: write what is queued
            self.archive.close()
        self.messages.close()
        self._join(by_name.get("spectro-publisher"))
        try:
            self.transport.close()
        except Exception:  # pragma: no cover - closing a broken port
            log.debug("closing the transport failed", exc_info=True)
        self.link.stop(float(self.config.outbox.flush_timeout_s))
        unrecorded = self._audit_refusals.drain()
        if unrecorded:
            self._audit("command_refusals_unrecorded", {"count": unrecorded})

    @staticmethod
    def _join(t: threading.Thread | None) -> None:
        if t is not None:
            t.join(timeout=30.0)
            if t.is_alive():  # pragma: no cover - a stuck thread is reported, not waited for forever
                log.error("thread %s did not stop within 30 s", t.name)

    # ---------------------------------------------------------------------------------------- device
    def _next_command_id(self) -> int:
        self._command_id = (self._command_id + 1) & 0xFFFFFFFF
        return self._command_id

    def _send_device(self, frame: Any) -> bool:
        try:
            self.transport.send(frame)
            self.counters.incr("device_commands_sent")
            return True
        except (EdgeError, OSError, ValueError) as exc:
            self.counters.incr("device_command_errors")
            log.warning("could not send %s to the device: %s", type(frame).__name__, exc)
            return False

    # ---------------------------------------------------------------------------------------- reader
    def _reader_loop(self) -> None:
        last_ns = 0
        while not self._stop_reading.is_set():
            try:
                frames = self.transport.read_frames(READ_WAIT_S)
            except (BridgeError, OSError, ValueError) as exc:  # the transport reconnects itself; never die here
                self.counters.incr("serial_read_errors")
                log.warning("serial read failed: %s", exc)
                self._stop_reading.wait(READ_WAIT_S)
                continue
            if not frames:
                continue
            now_ns = time.monotonic_ns()
            for frame in frames:
                droppable = isinstance(frame, (Spectrum, Annotation)) and not isinstance(frame, (Dark, Reference))
                self.counters.incr("frames_in")
                self.frames.put(_Received(frame, now_ns), droppable=droppable)  # drops are counted by the queue
            # Coalescing: when frames come faster than one per COALESCE_BELOW_NS, let a few gather before the next
            # read, so the reader and the inference thread wake once per burst instead of once per frame.
            if now_ns - last_ns < COALESCE_BELOW_NS:
                time.sleep(COALESCE_S)
            last_ns = now_ns

    # ---------------------------------------------------------------------------------------- inference
    def _inference_loop(self) -> None:
        self._inference_ident = threading.get_ident()
        while True:
            self._inference_beat = time.monotonic()
            swap = self._swaps.get(0.0)
            if swap is not None:
                self._apply_swap(swap)
            order = self._to_inference.get(0.0)
            if order is not None:
                self._start_capture(order)
            if self._capture is not None:
                self._check_capture_deadline()
            if self._parked and time.monotonic() - self._parked_since > STATUS_WAIT_S:
                self._release_parked("no STATUS from the device")
            items = self.frames.get_many(INFERENCE_BATCH_MAX, INFERENCE_POLL_S)
            if not items:
                self._release_held(force=False)
                if self._stop_inference.is_set() and len(self.frames) == 0:
                    break
                continue
            self._batch_out = []
            try:
                self._handle_batch(items)
            finally:
                self._flush_batch()
        self._release_parked("stopping")
        self._release_held(force=True)

    def _handle_batch(self, items: Sequence[_Received]) -> None:
        """Handle the frames of one batch in order; consecutive spectra that need nothing but the model are
        predicted together (:meth:`_on_spectra`)."""
        run: list[_Received] = []
        for item in [*items, None]:
            if item is not None and self._batchable(item):
                run.append(item)
                continue
            if run:
                self._guarded(self._on_spectra, run)
                run = []
            if item is not None:
                self._guarded(self._handle, item)

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
            [item.frame for item in items], self.refs, wavelengths_nm=self.wavelengths_nm,
            frame_signal=self.device_signal,
        )
        for item, outcome in zip(items, outcomes):
            self._on_spectrum(item.frame, item.received_ns, outcome)

    def _handle(self, item: _Received) -> None:
        frame = item.frame
        if isinstance(frame, (Dark, Reference)):
            self._on_reference(frame)
        elif isinstance(frame, Spectrum):
            if self.device_status is None and self._status_error is None and self.engine.needs_device_axis:
                self._park(item)
            else:
                self._on_spectrum(frame, item.received_ns)
        elif isinstance(frame, Annotation):
            self._on_annotation(frame)
        elif isinstance(frame, Status):
            self._on_status(frame)
        elif isinstance(frame, Nack):
            self.counters.incr("device_nacks")
            log.warning("device refused command %s (%s): %s", frame.code.name, frame.reason.name,
                        printable(frame.detail))
            self._fail_capture_on_nack(frame)
        elif isinstance(frame, Ack):
            self.counters.incr("device_acks")
        else:
            self.counters.incr("frames_ignored")

    def _park(self, item: _Received) -> None:
        """Keep a spectrum until the device's STATUS gives its wavelength axis (at most ``queues.frames_max`` of
        them, at most :data:`STATUS_WAIT_S`); greet the device so that it answers now."""
        if not self._parked:
            self._parked_since = time.monotonic()
            log.info("spectra wait for the device's STATUS (the bundle needs its wavelength axis); greeting it")
            if time.monotonic() - self._last_hello > REFERENCE_REQUEST_INTERVAL_S:
                self._last_hello = time.monotonic()
                self._send_device(Hello(nonce=int(self.clock()) & 0xFFFFFFFF))
        self._parked.append(item)
        self.counters.incr("spectra_waited_for_status")
        if len(self._parked) > int(self.config.queues.frames_max):
            old = self._parked.popleft()
            self._on_spectrum(old.frame, old.received_ns)  # rejected (no axis) and counted, never silently lost

    def _release_parked(self, why: str) -> None:
        """Predict on the spectra that waited for the device's STATUS (rejected, and counted, if none came)."""
        if not self._parked:
            return
        if self.device_status is None:
            log.warning("%d spectra waited %.1f s for the device's STATUS in vain (%s)", len(self._parked),
                        time.monotonic() - self._parked_since, why)
        while self._parked:
            item = self._parked.popleft()
            self._on_spectrum(item.frame, item.received_ns)

    def _on_status(self, status: Status) -> None:
        problem, wl = status_axis_problem(status)
        if problem is not None:
            self._refuse_status(status, problem)
            return
        if self._status_error is not None:
            log.info("device %s: valid STATUS received, spectra are predicted on again", printable(status.device_id))
            if self.last_error is not None and self.last_error.startswith("STATUS refused"):
                self.last_error = None
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
        self.last_error = (f"STATUS refused from device {printable(status.device_id)}: {problem}; spectra are "
                           "rejected until a valid STATUS arrives")
        if first or self.counters.get("device_status_refused") <= 3:
            log.error("%s", self.last_error)
        if first:
            self._publish_status()  # carries last_error
        self._release_parked("STATUS refused")

    def _on_reference(self, frame: Dark | Reference) -> None:
        kind = ReferenceKind.DARK if isinstance(frame, Dark) else ReferenceKind.WHITE
        self.counters.incr(f"{kind.value}_frames")
        self._track_seq(frame.seq)
        cap = self._capture
        full_scale = FULL_SCALE_COUNTS.get(frame.pixel_format)
        if kind is ReferenceKind.DARK:
            events = self.drift.observe_dark(frame.seq, frame.counts, full_scale=full_scale)
        else:
            events = self.drift.observe_reference(frame.seq, frame.counts, full_scale=full_scale)
        self._publish_drift(events)
        if cap is not None and cap.kind is kind:
            cap.collected.append(frame)
            if len(cap.collected) < cap.needed:
                code = CommandCode.REQUEST_DARK if kind is ReferenceKind.DARK else CommandCode.REQUEST_REFERENCE
                self._send_device(Command(self._next_command_id(), code))
                return
            counts = np.mean([np.asarray(f.counts, dtype=np.float64) for f in cap.collected], axis=0)
            spectrum = ReferenceSpectrum(
                kind, counts, self.clock(), int(frame.integration_time_us), ReferenceSource.COMMAND, frame.seq,
                frame.timestamp_us,
            )
            self._capture = None
            self._set_reference(spectrum)
            self._emit(
                MessageKind.COMMAND_RESPONSE,
                command_response_message(
                    device_id=self.device_id,
                    command=cap.command,
                    request_id=cap.request_id,
                    ok=True,
                    result={"averaged_frames": len(cap.collected), **spectrum.describe(self.clock())},
                ),
                cap.command,
            )
            return
        try:
            spectrum = ReferenceSpectrum.from_frame(frame, captured_at_s=self.clock())
        except ReferenceError as exc:
            self.counters.incr("reference_rejected")
            log.warning("%s frame %d refused: %s", kind.value, frame.seq, exc)
            return
        self._set_reference(spectrum)

    def _set_reference(self, spectrum: ReferenceSpectrum) -> None:
        self.refs = self.refs.with_spectrum(spectrum)
        try:
            save_reference_file(self._state_path(spectrum.kind), spectrum)
        except OSError as exc:
            self.counters.incr("reference_save_errors")
            log.warning("could not save the %s spectrum: %s", spectrum.kind.value, exc)
        log.info("%s updated from %s (seq %s)", spectrum.kind.value, spectrum.source.value, spectrum.seq)

    def _on_annotation(self, frame: Annotation) -> None:
        self.counters.incr("annotation_frames")
        if not self.forward_annotations:
            return
        held = self._held
        if held is not None and held[0].seq == frame.seq:
            self._held = None
            self._publish_prediction(held[0], held[2], frame.values)
        elif self._last_seq is None or frame.seq > self._last_seq:
            self._annotations[frame.seq] = frame.values  # arrived before its spectrum
            while len(self._annotations) > 64:
                self._annotations.pop(next(iter(self._annotations)))

    def _track_seq(self, seq: int) -> None:
        """Count gaps in the device's sequence numbers (shared by SPECTRUM, DARK and REFERENCE frames)."""
        last = self._last_seq
        if last is not None:
            if seq > last + 1 + SEQ_GAP_MAX:  # implausible: a forged or corrupted seq, not lost frames
                self.counters.incr("seq_jumps")
                if self.counters.get("seq_jumps") <= 3:
                    log.warning("sequence number jumped from %d to %d: counted as a resynchronisation "
                                "(seq_jumps), not as %d lost frames", last, seq, seq - last - 1)
            elif seq > last + 1:
                self.counters.incr("frames_lost_seq_gap", seq - last - 1)
            elif seq <= last:
                self.counters.incr("seq_restarts")
        self._last_seq = seq

    def _on_spectrum(self, frame: Spectrum, received_ns: int, computed: Any = None) -> None:
        """One spectrum: counters, sequence gaps, temperature drift, the engine's outcome (``computed`` by
        :meth:`_on_spectra` for a batch, without instrument flags, else computed here), its message."""
        self._release_held(force=True)
        self.counters.incr("spectra_in")
        self._track_seq(frame.seq)
        if self._status_error is not None:  # the device's last STATUS was refused: fail closed
            self.counters.incr("frames_rejected_device_status_invalid")
            return
        self._publish_drift(self.drift.observe_temperature(frame.seq, float(frame.detector_temp_c)))
        instrument = [d.name for d in (self.drift.dark, self.drift.reference, self.drift.temp) if d.raised]
        if computed is None:
            outcome = self.engine.process(
                frame, self.refs, wavelengths_nm=self.wavelengths_nm, instrument_alerts=instrument,
                frame_signal=self.device_signal,
            )
        else:
            outcome = computed.with_instrument_alerts(instrument) if isinstance(computed, Prediction) else computed
        if self.archive is not None:  # never blocks: a full archive queue drops the record (archive_dropped)
            self.archive.offer(frame, outcome, self.refs, signal=self.device_signal, boot_id=self.device_boot_id,
                               wavelengths_nm=self.wavelengths_nm, bundle=self.engine.bundle)
        if isinstance(outcome, Rejection):
            if outcome.reason is RejectReason.SIGNAL_MISMATCH:
                if self._signal_error is None:  # no STATUS yet: the device is taken to send counts (protocol v1)
                    self._check_signal()
                self.counters.incr(f"frames_rejected_{outcome.reason.value}")
                return
            if outcome.reason is RejectReason.MISSING_REFERENCE:
                self._set_alert("missing_reference", True)
                self._request_missing_references()
            self.counters.incr(f"frames_rejected_{outcome.reason.value}")
            if self.counters.get(f"frames_rejected_{outcome.reason.value}") <= 3 or log.isEnabledFor(logging.DEBUG):
                log.warning("frame %d rejected (%s): %s", outcome.seq, outcome.reason.value, outcome.detail)
            self.last_error = f"frame {outcome.seq} rejected: {outcome.detail}"
            return
        latency_ns = time.monotonic_ns() - received_ns
        self.compute.add(outcome.compute_us)
        self._set_alert("missing_reference", False)
        self._set_alert("stale_reference", Quality.STALE_REFERENCE in outcome.flags)
        for flag in outcome.flags:
            self.counters.incr(f"predictions_flagged_{flag.value}")
        self._publish_drift(
            self.drift.observe_prediction(
                outcome.seq, t2_ratio=outcome.t2_ratio, q_ratio=outcome.q_ratio, values=outcome.values
            )
        )
        if self.forward_annotations:
            early = self._annotations.pop(outcome.seq, None)
            if early is not None:
                self._publish_prediction(outcome, latency_ns, early)
            else:
                self._held = (outcome, time.monotonic(), latency_ns)
        else:
            self._publish_prediction(outcome, latency_ns, None)

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
            self.last_error = error
        elif previous is not None and self.last_error == previous:
            self.last_error = None
        if not self.alerts.set("signal_mismatch", error is not None) and error == previous:
            return False
        self.counters.incr("signal_mismatch_raised" if error is not None and previous is None else
                           "signal_mismatch_cleared" if error is None else "signal_mismatch_changed")
        if error is None:
            log.info("signal mismatch resolved: the device sends %s, the bundle takes it", self.device_signal)
        self._publish_status()
        return True

    def _request_missing_references(self) -> None:
        """Ask the device for the references it has not sent (at most every REFERENCE_REQUEST_INTERVAL_S)."""
        now = time.monotonic()
        if now - self._last_reference_request < REFERENCE_REQUEST_INTERVAL_S or self._capture is not None:
            return
        self._last_reference_request = now
        if self.refs.dark is None:
            self._send_device(Command(self._next_command_id(), CommandCode.REQUEST_DARK))
        if self.refs.reference is None:
            self._send_device(Command(self._next_command_id(), CommandCode.REQUEST_REFERENCE))

    def _release_held(self, *, force: bool) -> None:
        held = self._held
        if held is None:
            return
        if force or time.monotonic() - held[1] >= ANNOTATION_WAIT_S:
            self._held = None
            self._publish_prediction(held[0], held[2], None)

    def _publish_prediction(self, pred: Prediction, latency_ns: int, reference: Sequence[float] | None) -> None:
        latency_ms = latency_ns / 1e6
        self.latency.add(latency_ns / 1e3)
        msg = pred.to_message(
            device_id=self.device_id, latency_ms=latency_ms, reference=reference, device_boot_id=self.device_boot_id
        )
        self._emit(MessageKind.PREDICTION, msg)
        self.counters.incr("predictions")

    def _publish_drift(self, events: Sequence[DriftEvent]) -> None:
        for ev in events:
            self.counters.incr(f"drift_{ev.state.value}")
            log.warning("drift %s: %s", ev.state.value, ev.detail)
            msg = drift_message(
                device_id=self.device_id,
                event=ev.state.value,
                detector=ev.monitor,
                statistic=ev.score,
                threshold=ev.threshold,
                seq=ev.seq,
                model_id=self.model_id,
                model_version=self.model_version,
                active_alerts=self.drift.active(),
                detail=ev.detail,
                monitor_kind=ev.kind.value,
                device_boot_id=self.device_boot_id,
            )
            self._emit(MessageKind.DRIFT, msg)
        if events:
            self._sync_drift_alerts()

    def _apply_swap(self, swap: _Swap) -> None:
        old = (self.model_id, self.model_version)
        self._release_held(force=True)
        new = swap.engine.bundle
        # The model's detectors start over: alerts they had raised end here with an explicit cleared event, sent
        # under the old model's name (the model they were raised for).
        ended = self.drift.set_training(
            self._training_stats(new), seq=self._last_seq or 0,
            reason=f"model changed from {old[0]} {old[1]} to {new.model_id} {new.model_version} ({swap.reason}); "
                   "the model's detectors start over")
        self._publish_drift(ended)
        self.engine = swap.engine
        self.counters.incr("bundle_reloads")
        self._record_version(new)
        self.last_error = None
        self._audit("bundle_load", {**bundle_audit(new, self._signer_key_id), "trigger": swap.reason,
                                    "request_id": swap.request_id, "verdict": "accepted",
                                    "previous_model": {"id": old[0], "version": old[1]},
                                    "device_seq": self._last_seq, "device_boot_id": self.device_boot_id})
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

    # captures ------------------------------------------------------------------------------------------
    def _start_capture(self, order: _Capture) -> None:
        if self._capture is not None:
            self._respond_error(order.command, order.request_id, "another capture is in progress")
            return
        code = CommandCode.REQUEST_DARK if order.kind is ReferenceKind.DARK else CommandCode.REQUEST_REFERENCE
        self._capture = order
        if not self._send_device(Command(self._next_command_id(), code)):
            self._capture = None
            self._respond_error(order.command, order.request_id, "the serial port is not available")

    def _check_capture_deadline(self) -> None:
        cap = self._capture
        if cap is not None and time.monotonic() > cap.deadline_s:
            self._capture = None
            self._respond_error(
                cap.command,
                cap.request_id,
                f"expected {cap.needed} {cap.kind.value} frame(s) from the device, got {len(cap.collected)} "
                "before the timeout; references unchanged",
            )

    def _fail_capture_on_nack(self, nack: Nack) -> None:
        cap = self._capture
        if cap is None or nack.code not in (CommandCode.REQUEST_DARK, CommandCode.REQUEST_REFERENCE):
            return
        self._capture = None
        self._respond_error(cap.command, cap.request_id, f"device refused: {nack.reason.name} {nack.detail}".strip())

    def _respond_error(self, command: str, request_id: str | None, error: str) -> None:
        self.counters.incr("command_errors")
        self._emit(
            MessageKind.COMMAND_RESPONSE,
            command_response_message(
                device_id=self.device_id, command=command, request_id=request_id, ok=False, error=error
            ),
            command,
        )

    # ---------------------------------------------------------------------------------------- publisher
    def _publisher_loop(self) -> None:
        while True:
            out = self.messages.get(0.5)
            if out is None:
                if self.messages.closed:
                    break
                continue
            self._publish(out)

    # ---------------------------------------------------------------------------------------- housekeeping
    def on_command(self, name: str, payload: bytes, *, retained: bool = False) -> None:
        """Validate a command message (paho's thread: parse, then hand over) or refuse it (:meth:`Refusals.refuse`:
        counted, logged, answered within a budget).  A retained message is refused unread: it would run again at
        every reconnect."""
        from edge.commands import CommandParser

        if retained:
            self._refusals.refuse(
                RefusalReason.RETAINED, name, CommandParser.peek_request_id(payload),
                "refused: delivered as a retained MQTT message, which the broker would deliver again at every "
                "reconnect; publish commands with retain=false and clear this one with an empty retained message")
            return
        if self._parser is None:
            self._parser = CommandParser(self.config.commands, device_id=self.device_id)
        try:
            command = self._parser.parse(name, payload)
        except EdgeError as exc:
            reason = RefusalReason.STALE if isinstance(exc, StaleCommandError) else RefusalReason.INVALID
            self._refusals.refuse(reason, name, CommandParser.peek_request_id(payload), str(exc))
            return
        self.submit_command(command)

    def submit_command(self, command: Any) -> None:
        """Queue a validated :class:`edge.commands.RemoteCommand` (any thread) or refuse it when its lane is full."""
        if not self.commands.put(command):
            n = self.commands.pending(command.authenticated)
            lane = "signed" if command.authenticated else "unsigned"
            self._refusals.refuse(RefusalReason.QUEUE_FULL, command.name.value, command.request_id,
                                  f"too many commands pending ({n} {lane} command(s) queued); try again later",
                                  authenticated=command.authenticated)

    def request_reload(self, path: Path | None = None, *, request_id: str | None = None) -> None:
        """Ask for a verified reload of ``path`` (default: the configured bundle) as if by command."""
        from edge.commands import CommandName, ReloadBundleArgs, RemoteCommand

        self.submit_command(
            RemoteCommand(CommandName.RELOAD_BUNDLE, ReloadBundleArgs(path), request_id, False, None)
        )

    def _housekeeping_loop(self) -> None:
        period = float(self.config.metrics.period_s)
        watch_every = float(self.config.bundle.watch_interval_s)
        next_metrics = time.monotonic() + period
        next_watch = time.monotonic() + watch_every
        last_metrics = time.monotonic()
        while not self._stop_housekeeping.is_set():
            cmd = self.commands.get(HOUSEKEEPING_POLL_S)
            if cmd is not None:
                self._execute(cmd)
            now = time.monotonic()
            silent = self.device_status is None and now - self._started_mono > HELLO_AFTER_S
            if silent and now - self._last_hello > REQUEST_INTERVAL_S:
                self._last_hello = now
                self._send_device(Hello(nonce=int(self.clock()) & 0xFFFFFFFF))
            if self.config.bundle.watch and now >= next_watch:
                next_watch = now + watch_every
                self._watch_bundle()
            self._check_outbox_full()
            if now >= next_metrics:
                self._emit(MessageKind.METRICS, self.metrics_payload(now - last_metrics))
                last_metrics = now
                next_metrics = now + period
        self._emit(MessageKind.METRICS, self.metrics_payload(time.monotonic() - last_metrics))

    def reload_config(self) -> bool:
        """Re-read the configuration file and apply what can change at runtime (SIGHUP; ``systemctl reload``).

        The broker connection settings (:data:`LIVE_MQTT_KEYS`) switch over without losing a message (see
        :meth:`edge.mqtt.MqttPublisher.switch_broker`); other changed keys are logged by name as needing a restart
        and left as they are.  An unreadable or invalid file, or broker settings that cannot be loaded (a missing
        certificate), change nothing: the error is logged, counted (``config_reload_failures``) and published as
        the status's ``last_error``.  Returns whether the new broker settings (if any) were applied.
        """
        from edge.config import load_config

        path = self.config.source
        if path is None:
            log.warning("configuration reload ignored: the configuration was not read from a file")
            return False
        try:
            new = load_config(path)
            changed = config_changes(self.config, new)
            live = [k for k in changed if k.startswith("mqtt.") and k[5:] in LIVE_MQTT_KEYS]
            later = [k for k in changed if k not in live]
            if later:
                log.warning("configuration reload: %s changed; restart the daemon to apply %s", ", ".join(later),
                            "it" if len(later) == 1 else "them")
            if not live:
                log.info("configuration reload: no broker setting changed")
                self.counters.incr("config_reloads")
                self._audit("config_reload", {"path": str(path), "sha256": _sha256_or_none(path), "verdict": "applied",
                                              "applied": [], "restart_needed": later,
                                              "security": list(security_warnings(self.config))})
                return True
            mqtt = dataclasses.replace(self.config.mqtt, **{k[5:]: getattr(new.mqtt, k[5:]) for k in live})
            merged = dataclasses.replace(self.config, mqtt=mqtt)
            self.link.switch_broker(merged)
        except (EdgeError, OSError, ValueError, RuntimeError) as exc:  # ssl.SSLError is an OSError
            self.counters.incr("config_reload_failures")
            self.last_error = f"configuration reload refused: {exc}"
            log.error("%s (the running settings stay)", self.last_error)
            self._audit("config_reload", {"path": str(path), "sha256": _sha256_or_none(path), "verdict": "refused",
                                          "reason": self.last_error})
            self._publish_status()
            return False
        self.config = merged
        self.counters.incr("config_reloads")
        log.info("configuration reload: applied %s", ", ".join(live))
        self._audit("config_reload", {"path": str(path), "sha256": _sha256_or_none(path), "verdict": "applied",
                                      "applied": live, "restart_needed": later,
                                      "security": list(security_warnings(self.config))})
        return True

    def _check_outbox_full(self) -> None:
        """Publish a status whose ``alerts`` carry ``outbox_full`` when the outbox's alert flag rises or clears.

        The status is retained and never queued in the outbox, so the alert reaches subscribers even while the
        full outbox refuses or evicts other messages (see docs/mqtt.md, "When the outbox is full").
        """
        full = bool(self.link.stats().get("outbox_full", False))
        self._set_alert("outbox_full", full)

    def _watch_bundle(self) -> None:
        path = Path(self.config.bundle.path)
        stamp = _file_stamp(path)
        if self._watch_waits_for_status and self.device_status is not None:
            self._watch_waits_for_status = False  # refused before the device announced itself: try it again now
            self._failed_stamp = None
        if stamp is None or stamp == self._bundle_stamp or stamp == self._failed_stamp:
            self._seen_stamp = stamp
            return
        if stamp != self._seen_stamp:  # changed since the last look: wait until it is stable (being written)
            self._seen_stamp = stamp
            return
        self._reload(path, request_id=None, command=None, reason="bundle file changed", stamp=stamp)

    def _execute(self, cmd: Any) -> None:
        from edge.commands import CommandName

        name = cmd.name.value if hasattr(cmd.name, "value") else str(cmd.name)
        self.counters.incr(f"commands_{name}")
        log.info("command %s (request %s)", name, cmd.request_id)
        self._audit("command_accepted", {"command": name, "request_id": cmd.request_id,
                                         "authenticated": bool(cmd.authenticated),
                                         "signer": "hmac-sha256 (commands.hmac_key_path)" if cmd.authenticated
                                         else "none", "issued_at_unix_s": cmd.issued_at_unix_s})
        if cmd.name is CommandName.RELOAD_BUNDLE:
            path = cmd.args.path if cmd.args.path is not None else Path(self.config.bundle.path)
            self._reload(Path(path), request_id=cmd.request_id, command=name, reason=f"command {name}")
        elif cmd.name in (CommandName.CAPTURE_DARK, CommandName.CAPTURE_REFERENCE):
            kind = ReferenceKind.DARK if cmd.name is CommandName.CAPTURE_DARK else ReferenceKind.WHITE
            n = int(cmd.args.average_frames)
            order = _Capture(
                kind, n, cmd.request_id, name, time.monotonic() + CAPTURE_TIMEOUT_S + CAPTURE_TIMEOUT_PER_FRAME_S * n
            )
            if not self._to_inference.put(order):
                self._respond_error(name, cmd.request_id, "too many commands pending")
        elif cmd.name is CommandName.SET_INTEGRATION_TIME:
            value = int(cmd.args.integration_time_us)
            ok = self._send_device(Command(self._next_command_id(), CommandCode.SET_INTEGRATION_TIME, value))
            if ok:
                self._emit(
                    MessageKind.COMMAND_RESPONSE,
                    command_response_message(
                        device_id=self.device_id,
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
            if self.archive is None:
                self._respond_error(name, cmd.request_id, "expected [archive] enabled = true, got the archive off: "
                                    "there is nothing to tag")
            else:
                at = self.archive.tag(cmd.args.sample_id, int(cmd.args.frames), cmd.request_id)
                self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
                    device_id=self.device_id, command=name, request_id=cmd.request_id, ok=True,
                    result={"sample_id": cmd.args.sample_id, "frames": int(cmd.args.frames), "tagged_unix_s": at}),
                    name)
        else:  # pragma: no cover - the parser only yields known commands
            self._respond_error(name, cmd.request_id, f"unknown command {name}")

    def _reload(
        self,
        path: Path,
        *,
        request_id: str | None,
        command: str | None,
        reason: str,
        stamp: tuple[int, int] | None = None,
    ) -> None:
        """Load, verify and self-test ``path`` off the inference thread; swap it in or report why not.

        The same bytes as the bundle in service are a no-op (said in the log and the command response: nothing is
        reset, drift detectors and alerts stay); otherwise at most one model change per
        ``bundle.min_reload_interval_s`` (a command sooner is refused and counted, ``bundle_reloads_rate_limited``; a
        file change waits).  A refused bundle does not start the interval: the operator may send a good one at once.
        """
        stamp = stamp if stamp is not None else _file_stamp(path)
        watched = path == Path(self.config.bundle.path)
        serving = self.engine.bundle
        try:
            digest = _file_sha256(path)
        except OSError:
            digest = None  # the load below reports why
        if digest is not None and digest == serving.file_sha256:
            if watched:
                self._bundle_stamp = stamp
                self._failed_stamp = None
            self.counters.incr("bundle_reloads_unchanged")
            self._audit("bundle_load", {"path": str(path), "sha256": digest, "trigger": reason,
                                        "request_id": request_id, "verdict": "unchanged",
                                        "reason": "the same bytes are in service"})
            log.info("bundle %s is the one in service (%s %s, sha256 %s): nothing reloaded, drift state kept (%s)",
                     path, self.model_id, self.model_version, digest[:16], reason)
            if command is not None:
                self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
                    device_id=self.device_id, command=command, request_id=request_id, ok=True,
                    result={"unchanged": True, "model": {"id": self.model_id, "version": self.model_version},
                            "sha256": digest, "note": "the same bytes are in service; nothing was reloaded"}),
                    command)
            return
        now = time.monotonic()
        interval = float(self.config.bundle.min_reload_interval_s)
        wait_s = self._last_reload_mono + interval - now
        if wait_s > 0:
            if command is None:  # a file change: tried again at the next look, once the interval has passed
                log.debug("bundle file change waits %.1f s (bundle.min_reload_interval_s)", wait_s)
                return
            self.counters.incr("bundle_reloads_rate_limited")
            error = (f"reload refused: at most one reload every {interval:g} s (bundle.min_reload_interval_s); "
                     f"try again in {wait_s:.1f} s; still serving {self.model_id} {self.model_version}")
            self._audit("bundle_load", {"path": str(path), "sha256": digest, "trigger": reason,
                                        "request_id": request_id, "verdict": "refused", "reason": error})
            if self.counters.get("bundle_reloads_rate_limited") <= 3 or log.isEnabledFor(logging.DEBUG):
                log.warning("%s", error)
            self._respond_error(command, request_id, error)
            return
        t0 = time.monotonic()
        try:
            bundle = self._load_bundle(path)
            engine = InferenceEngine(bundle, reference_policy=self.reference_policy, clock=self.clock)
            self._check_rollback(bundle)
            self._check_device_fit(bundle, engine, watched=watched)
        except Exception as exc:  # noqa: BLE001 - a bundle file is untrusted data: whatever it does, keep serving
            if not isinstance(exc, (EdgeError, OSError, ValueError)):
                log.exception("unexpected error while loading %s", path)
            self.counters.incr("bundle_reload_failures")
            if path == Path(self.config.bundle.path):
                self._failed_stamp = stamp
            error = f"bundle {path.name} refused, still serving {self.model_id} {self.model_version}: {exc}"
            self.last_error = error
            self._audit("bundle_load", {"path": str(path), "sha256": digest, "trigger": reason,
                                        "request_id": request_id, "verdict": "refused", "reason": error})
            log.error("%s", error)
            self._publish_status()  # carries last_error
            if command is not None:
                self._respond_error(command, request_id, error)
            return
        if path == Path(self.config.bundle.path):
            self._bundle_stamp = stamp
            self._failed_stamp = None
        log.info("bundle %s verified and self-tested in %.2f s", path, time.monotonic() - t0)
        self._last_reload_mono = time.monotonic()
        self._swaps.put(_Swap(engine, request_id, command, reason), droppable=False)

    def _check_rollback(self, bundle: "Bundle") -> None:
        """Refuse a signed bundle older than the newest one of its model served here (:mod:`edge.rollback`)."""
        problem = self.rollback.problem(bundle)
        if problem is not None:
            self.counters.incr("bundle_reloads_rollback_refused")
            raise BundleError(problem)

    def _record_version(self, bundle: "Bundle") -> None:
        """Remember a signed bundle put in service as its model's newest (a state file beside the outbox)."""
        try:
            self.rollback.record(bundle)
        except OSError as exc:
            self.counters.incr("bundle_version_mark_write_failures")
            log.error("cannot write the bundle version mark %s: %s; after a restart an older signed bundle of %s "
                      "may be accepted", self.rollback.path, exc, bundle.model_id)

    def _check_device_fit(self, bundle: "Bundle", engine: InferenceEngine | None = None, *,
                          watched: bool = False) -> None:
        """Refuse a bundle whose input contract the connected device cannot meet: the signal its spectra carry
        (``counts`` until the device's STATUS says otherwise, as protocol v1 has it), its pixel count and axis.

        Before the device has announced itself (no valid STATUS yet), what the bundle in service accepts is the
        best knowledge of the device: a bundle that accepts less (another pixel count, signal, unit, pixel format or
        a wider axis) is refused (``bundle_reload_device_unknown``); the watched file is tried again at the STATUS.
        """
        status = self.device_status
        if status is None:
            unmet = bundle.input_contract.unmet_by_devices_of(self.engine.bundle.input_contract)
            if unmet is not None:
                self.counters.incr("bundle_reload_device_unknown")
                self._watch_waits_for_status = self._watch_waits_for_status or watched
                raise BundleError(
                    f"the device has not announced itself yet (no valid STATUS), so the new bundle must accept every "
                    f"device the bundle in service accepts: {unmet}; reload it again once the device has sent its "
                    "STATUS")
        engine = engine if engine is not None else InferenceEngine(bundle, reference_policy=self.reference_policy)
        device = printable(status.device_id) if status is not None else self.device_id
        mismatch = engine.signal_mismatch(self.device_signal, device)
        if mismatch is not None:
            self.counters.incr("bundle_reload_signal_mismatch")
            raise BundleError(f"the connected device does not fit this bundle: {mismatch}")
        if status is None:
            return
        try:
            bundle.input_contract.check(status.pixel_count, wavelengths_nm=self.wavelengths_nm)
        except EdgeError as exc:
            raise BundleError(f"the connected device does not fit this bundle: {exc}") from exc

    # ---------------------------------------------------------------------------------------- metrics
    def metrics_payload(self, period_s: float) -> dict[str, Any]:
        """The ``.../metrics`` payload: counters, gauges and latency percentiles (milliseconds)."""
        counters = self.counters.snapshot()
        counters["frames_dropped_queue_full"] = self.frames.dropped
        try:
            ts = self.transport.stats
            counters.update(
                {
                    "serial_outages": ts.outages,
                    "serial_reconnects": ts.reconnects,
                    "serial_bytes_read": ts.bytes_read,
                    "serial_frames_read": ts.frames_read,
                }
            )
            dec = ts.decoder
            for field_ in dataclasses.fields(dec):
                value = getattr(dec, field_.name)
                if isinstance(value, int) and not isinstance(value, bool):
                    counters[f"decoder_{field_.name}"] = value
        except AttributeError:  # pragma: no cover - a transport without stats
            pass
        gauges: dict[str, float] = {
            "frames_queue": float(len(self.frames)),
            "frames_queue_high_water": float(self.frames.high_water),
            "messages_queue": float(len(self.messages)),
            "uptime_s": round(self.clock() - self.started_unix_s, 3),
        }
        for name, value in self.link.stats().items():
            if isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
                gauges[name] = float(value)
        if self.archive is not None:
            counters.update(self.archive.counters())
            gauges.update(self.archive.gauges())
        now = self.clock()
        for kind, ref in ((ReferenceKind.DARK, self.refs.dark), (ReferenceKind.WHITE, self.refs.reference)):
            if ref is not None:
                gauges[f"{kind.value}_age_s"] = round(now - ref.captured_at_s, 3)
        for name, snap in self.drift.snapshot().items():
            gauges[f"drift_{name}"] = float(snap["score"])  # type: ignore[arg-type]  # snapshot values: float|str|None
        lat = self.latency.summary()
        comp = self.compute.summary()
        latency_ms = {
            "count": float(lat["count"]),
            "p50": lat["p50_us"] / 1000.0,
            "p95": lat["p95_us"] / 1000.0,
            "p99": lat["p99_us"] / 1000.0,
            "max": lat["max_us"] / 1000.0,
            "compute_p50": comp["p50_us"] / 1000.0,
            "compute_p99": comp["p99_us"] / 1000.0,
        }
        return metrics_message(
            device_id=self.device_id, period_s=max(0.0, period_s), counters=counters, gauges=gauges,
            latency_ms=latency_ms,
            drift_active=[a[len("drift:"):] for a in self.alerts.names() if a.startswith("drift:")],
        )


def _software_version() -> str | None:
    try:
        from importlib import metadata

        return metadata.version("spectrolite")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a checkout)
        return None


# ---------------------------------------------------------------------------------------------- the MQTT link
class MqttLink:
    """:class:`Link` over the durable :class:`edge.outbox.Outbox` and :class:`edge.mqtt.MqttPublisher`.

    Parameters
    ----------
    config : EdgeConfig
        Uses ``outbox`` and ``mqtt`` (through the publisher).
    on_command : callable(name, payload, *, retained=False)
        Called on paho's network thread for every command message (:class:`edge.mqtt.CommandHandler`).
    status_source : callable() -> dict, optional
        Builds the current status payload; the publisher calls it at every (re)connect.
    retained_source : callable(full=bool) -> list of (topic, payload), optional
        Further retained messages sent with the status (Home Assistant discovery; :class:`edge.mqtt.MqttPublisher`).
    """

    def __init__(
        self,
        config: "EdgeConfig",
        on_command: "CommandHandler",
        status_source: Callable[[], Mapping[str, Any] | None] | None = None,
        retained_source: Callable[..., list[tuple[str, bytes]]] | None = None,
    ) -> None:
        from edge.mqtt import MqttPublisher
        from edge.outbox import Outbox

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

    def stats(self) -> Mapping[str, Any]:
        out: dict[str, Any] = {f"mqtt_{k}": v for k, v in dataclasses.asdict(self.publisher.stats()).items()}
        try:
            ob = self.outbox.stats()
        except EdgeError:  # pragma: no cover - a closed or broken outbox
            return out
        out.update({f"outbox_{k}": v for k, v in dataclasses.asdict(ob).items()})
        return out


# ---------------------------------------------------------------------------------------------- entry points
def run_daemon(
    config: "EdgeConfig",
    stop_event: threading.Event | None = None,
    *,
    forward_annotations: bool | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT or ``stop_event``; return the process exit code.

    SIGHUP re-reads the configuration file and applies the broker settings (:meth:`Daemon.reload_config`).

    Parameters
    ----------
    config : EdgeConfig
        Validated configuration (:func:`edge.config.load_config`).
    stop_event : threading.Event, optional
        Set it to stop the daemon (when run in a thread; signals are only handled in the main thread).
    forward_annotations : bool
        Forward the simulator's ANNOTATION values as ``reference`` in prediction messages; default: the config's
        ``device.forward_annotations``.

    Returns
    -------
    int
        0 after a clean stop, 2 when the bundle cannot be loaded, a thread died or the watchdog found a stage
        broken (:meth:`Daemon.health`).
    """
    from edge.bundle import load_bundle
    from firmware_bridge.transport import SerialTransport

    stop = stop_event or threading.Event()
    try:
        trail = _open_audit(config)
    except AuditError as exc:
        log.error("cannot start: %s", exc)
        return 2
    key_id = signer_key_id(config.bundle.public_key_path) if trail is not None else None
    try:
        bundle = load_bundle(
            config.bundle.path,
            public_key=config.bundle.public_key_path,
            self_test=config.bundle.self_test,
            num_threads=config.runtime.num_threads,
        )
        RollbackGuard.from_config(config).check(bundle)
    except (EdgeError, OSError) as exc:
        log.error("cannot start: %s", exc)
        _audit_to(trail, "bundle_load", {"path": str(config.bundle.path),
                                         "sha256": _sha256_or_none(Path(config.bundle.path)), "trigger": "start",
                                         "verdict": "refused", "reason": str(exc)})
        _audit_to(trail, "daemon_stopped", {"exit_code": 2, "reason": f"cannot start: {exc}"})
        if trail is not None:
            trail.close()
        return 2
    log.info("loaded %s", bundle.path)
    _audit_to(trail, "bundle_load", {**bundle_audit(bundle, key_id), "trigger": "start", "verdict": "accepted"})
    transport = SerialTransport(
        config.serial.port_url,
        baudrate=config.serial.baudrate,
        read_timeout_s=config.serial.read_timeout_s,
        reconnect_backoff_s=(
            max(1e-3, config.serial.reconnect_min_delay_s),
            max(1e-3, config.serial.reconnect_max_delay_s),
        ),
    )
    holder: list[Daemon] = []

    def on_command(name: str, payload: bytes, *, retained: bool = False) -> None:
        if holder:
            holder[0].on_command(name, payload, retained=retained)

    def current_status() -> dict[str, Any] | None:
        return holder[0].status_payload("online") if holder else None

    from edge.homeassistant import discovery_from_config, info_of_engine
    from edge.opcua import with_opcua
    from edge.prometheus import exporter_from_config

    exporter = None
    try:
        exporter = exporter_from_config(config, lambda: holder[0].metrics_payload(0.0) if holder else None)
        if exporter is not None:
            exporter.start()
        discovery = discovery_from_config(
            config, lambda: info_of_engine(holder[0].engine, _software_version()) if holder else None)
        # the MQTT link itself, or one that also feeds every prediction and status to the [opcua] server
        link = with_opcua(config, MqttLink(config, on_command, current_status,
                                           discovery.due if discovery is not None else None), bundle.targets)
    except (EdgeError, OSError) as exc:
        if exporter is not None:
            exporter.stop()
        transport.close()
        log.error("cannot start: %s", exc)
        _audit_to(trail, "daemon_stopped", {"exit_code": 2, "reason": f"cannot start: {exc}"})
        if trail is not None:
            trail.close()
        return 2
    if forward_annotations is None:
        forward_annotations = config.device.forward_annotations
    daemon = Daemon(config, bundle, transport, link, forward_annotations=forward_annotations, audit=trail)
    holder.append(daemon)
    reload = threading.Event()
    wanted = {signal.SIGTERM: stop, signal.SIGINT: stop}
    if hasattr(signal, "SIGHUP"):
        wanted[signal.SIGHUP] = reload
    notifier = SdNotifier.from_environ()
    unhealthy: str | None = None
    with events_on_signals(wanted):
        try:
            daemon.start()
            notifier.notify("READY=1")
            while not stop.wait(WATCHDOG_POLL_S):
                unhealthy = daemon.health()
                if unhealthy is not None:
                    log.critical("watchdog: %s; exiting (code 2) so that the service manager restarts the daemon",
                                 unhealthy)
                    break
                notifier.ping_watchdog()  # only while every stage is healthy
                if reload.is_set():
                    reload.clear()
                    log.info("SIGHUP: reloading %s", config.source)
                    daemon.reload_config()
        finally:
            log.info("stopping")
            notifier.notify("STOPPING=1")
            daemon.stop()
            if exporter is not None:
                exporter.stop()
            notifier.close()
    code = 2 if daemon.failed or unhealthy is not None else 0
    reason = unhealthy or (f"a daemon thread died: {daemon._fatal!r}" if daemon.failed else "stopped")
    _audit_to(trail, "daemon_stopped", {"exit_code": code, "reason": reason})
    if trail is not None:
        trail.close()
    return code


def _open_audit(config: "EdgeConfig") -> AuditLog | None:
    """Open the audit log (``[audit]``) and record the start: the configuration file and its SHA-256, the names of
    the environment overrides in force (not their values), the software version and the insecure settings.
    None when ``audit.enabled`` is false.

    Raises
    ------
    AuditError
        The log cannot be opened: the daemon does not run without the audit trail it was configured to keep.
    """
    import os

    from edge.config import ENV_PREFIX

    if not config.audit.enabled:
        return None
    directory = Path(config.audit.path or Path(config.outbox.path).parent / "audit")
    trail = AuditLog.open(directory, max_bytes=config.audit.max_bytes, keep_files=config.audit.keep_files)
    warnings = security_warnings(config)
    _audit_to(trail, "daemon_started", {
        "config_path": str(config.source) if config.source is not None else None,
        "config_sha256": _sha256_or_none(config.source),
        "env_overrides": sorted(k for k in os.environ if k.startswith(ENV_PREFIX)),
        "software_version": _software_version(),
        "device": {"site": config.device.site, "line": config.device.line, "device_id": config.device.device_id},
        "security": list(warnings),
        "pid": os.getpid(),
    })
    for name in warnings:
        _audit_to(trail, "security_warning", {"warning": name, "detail": SECURITY_WARNINGS[name]})
    return trail


def _audit_to(trail: AuditLog | None, event: str, details: Mapping[str, Any]) -> None:
    """Write one audit record outside a :class:`Daemon` (start and stop); a failure is logged, never raised."""
    if trail is None:
        return
    try:
        trail.append(event, details)
    except (OSError, AuditError) as exc:
        log.error("audit record %s could not be written: %s", event, exc)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge.daemon --config FILE [--forward-annotations]``: the daemon with test-bench options."""
    parser = argparse.ArgumentParser(prog="python -m edge.daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="edge TOML config")
    parser.add_argument(
        "--forward-annotations", action="store_true", help="forward simulator ANNOTATION values as 'reference'"
    )
    args = parser.parse_args(argv)
    from edge.config import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"edge.daemon: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_daemon(config, forward_annotations=args.forward_annotations or None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
