"""The daemon put together: :class:`Daemon` builds the stages (reader, inference, outbound, references, reloads,
commands, audit hooks), hands each the callables it needs, owns the four threads, the housekeeping loop and the
watchdog's view of them (:meth:`Daemon.health`)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge.archive import Archive
from edge.audit import AuditLog
from edge.command_queue import CommandQueue, Refusals
from edge.config import SECURITY_WARNINGS, security_warnings
from edge.control_samples import ControlCharts
from edge.daemon.auditing import AuditHooks, signer_key_id
from edge.daemon.capture import ReferenceCapture
from edge.daemon.config_reload import ConfigReloader
from edge.daemon.control import CommandControl
from edge.daemon.deploy import DeployControl
from edge.daemon.device import Greeter
from edge.daemon.drift_events import DriftBaselines
from edge.daemon.frames import InferenceStage
from edge.daemon.link import Link
from edge.daemon.outbound import Outbound
from edge.daemon.reader import Reader
from edge.daemon.reload import BundleReloader
from edge.daemon.seq_mark import SeqMark
from edge.daemon.shadow import ShadowMode
from edge.daemon.status import ActiveAlerts, LastError, metrics_payload, software_version
from edge.daemon.values import _Capture, _Received, _Swap
from edge.deploy.staging import StagingArea
from edge.drift import CusumConfig, DriftMonitor, DriftMonitorConfig, EwmaConfig, level_cusum
from edge.errors import EdgeError
from edge.inference import InferenceEngine
from edge.metrics import Counters, LatencyWindow
from edge.publish.messages import command_response_message, status_message
from edge.publish.schema import MessageKind
from edge.publish.topics import Topics
from edge.queues import BoundedQueue
from edge.references import ReferencePolicy, ReferenceSet
from edge.rollback import RollbackGuard
from firmware_bridge.frames import Command, CommandCode, Hello, Status

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.bundle import Bundle
    from edge.config import EdgeConfig

log = logging.getLogger("edge.daemon")

#: Longest wait of the housekeeping thread for a command before it looks at metrics, the bundle file and the outbox
#: alert (commands wake it at once).  Every idle wake-up costs CPU: the daemon's threads poll only a few times a second.
HOUSEKEEPING_POLL_S = 0.25
#: The device normally announces itself (STATUS) and its references when a host opens the port; the daemon asks
#: (HELLO, REQUEST_DARK/REQUEST_REFERENCE) only when they have not come (or were lost to a CRC error), at most this
#: often, seconds.
REQUEST_INTERVAL_S = 5.0
#: Seconds after start without a STATUS frame before the daemon greets the device (HELLO).
HELLO_AFTER_S = 2.0
#: How often the main thread's watchdog looks at the stages, seconds.
WATCHDOG_POLL_S = 0.5
#: An inference loop that has not come round for this long is stuck (one frame takes milliseconds; a loop without
#: frames comes round every INFERENCE_POLL_S): the watchdog ends the daemon, seconds.
INFERENCE_STALL_S = 120.0


def drift_config_from(cfg: Any) -> DriftMonitorConfig:
    """Translate the ``[drift]`` section of :class:`edge.config.EdgeConfig` into a
    :class:`edge.drift.DriftMonitorConfig`.

    ``ewma_alpha``, ``raise_ratio`` and ``clear_ratio`` drive the EWMA of T2/limit and Q/limit (raised after
    ``max(1, window_frames // 20)`` consecutive frames above, cleared after twice that below); ``min_frames`` is the
    warm-up; ``cusum_k_sigma``/``cusum_h_sigma`` the CUSUM of each prediction, ``cusum_baseline_frames`` its
    self-starting baseline (0: the bundle's figures); ``spectrum_level_h_sigma`` (0: off) and
    ``spectrum_level_baseline_frames`` the self-starting CUSUM of each spectrum's level (slack ``cusum_k_sigma``,
    warm-up ``min_frames``); the instrument thresholds map one to one.
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
        k_sigma=float(cfg.cusum_k_sigma), h_sigma=float(cfg.cusum_h_sigma), warmup_samples=int(cfg.min_frames),
        baseline_samples=int(cfg.cusum_baseline_frames),
    )
    level = None if not cfg.spectrum_level_h_sigma else level_cusum(
        h_sigma=float(cfg.spectrum_level_h_sigma), baseline_samples=int(cfg.spectrum_level_baseline_frames),
        k_sigma=float(cfg.cusum_k_sigma), warmup_samples=int(cfg.min_frames))
    return DriftMonitorConfig(
        ood=ood,
        prediction=prediction,
        level=level,
        dark_max_fraction=float(cfg.dark_level_max_fraction),
        reference_min_fraction=float(cfg.reference_min_fraction),
        detector_temp_max_c=float(cfg.detector_temp_max_c),
    )


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
        self._last_error = LastError()
        self.hooks = AuditHooks(audit, self.counters, lambda: (self.model_id, self.model_version))
        self.alerts = ActiveAlerts(on_change=self.hooks.alert)
        self.frames: BoundedQueue[_Received] = BoundedQueue(config.queues.frames_max, config.queues.policy)
        self.outbound = Outbound(link, self.counters, self.status_payload, self.hooks.command_result,
                                 config.queues.messages_max)
        self.messages = self.outbound.messages
        self._swaps: BoundedQueue[_Swap] = BoundedQueue(4, "drop_oldest")
        self._to_inference: BoundedQueue[_Capture] = BoundedQueue(64, "drop_newest")
        self._stop_reading = threading.Event()
        self._stop_inference = threading.Event()
        self._stop_housekeeping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._command_id = 0
        self.greeter = Greeter(lambda: self._send_device(Hello(nonce=int(self.clock()) & 0xFFFFFFFF)))
        self.references = ReferenceCapture(
            dark_path=config.references.dark_path, white_path=config.references.white_path,
            state_dir=Path(config.outbox.path).parent, device_id=self.device_id, counters=self.counters,
            send_command=self._send_command, emit=self.outbound.emit, respond_error=self._respond_error, clock=clock)
        self.reader = Reader(transport, self.frames, self.counters, self._stop_reading,
                             keep_annotations=forward_annotations)
        #: The spectrum archive (edge.archive; [archive]): offered every judged spectrum, None when disabled.
        self.archive = Archive.from_config(config.archive, clock=clock) if config.archive.enabled else None
        #: Check standards ([control]) that measure_control measures; None when none are declared.
        self.control_charts = (ControlCharts(config.control.standards, clock, count=self.counters.incr)
                               if config.control.standards else None)
        if self.control_charts is not None:
            self.control_charts.check_targets([t.name for t in bundle.targets])
        self.reloader = BundleReloader(
            config=lambda: self.config, serving=lambda: self.engine, device=lambda: self.inference.device_view(),
            load_bundle=load_bundle or self._default_loader, swap=lambda s: self._swaps.put(s, droppable=False),
            rollback=RollbackGuard.from_config(config), reference_policy=self.reference_policy,
            device_id=self.device_id, counters=self.counters, audit=self.hooks.record, emit=self.outbound.emit,
            respond_error=self._respond_error, refused=self._refused, clock=clock)
        drift = DriftMonitor(drift_config_from(config.drift), training=bundle.training_stats)
        #: reset_drift and the status's drift_baselines (edge.daemon.drift_events; carried out by the inference thread)
        self.baselines = DriftBaselines(
            drift, device_id=self.device_id, counters=self.counters, emit=self.outbound.emit,
            respond_error=self._respond_error, publish_status=self.outbound.publish_status, clock=clock)
        self.inference = InferenceStage(
            engine=InferenceEngine(bundle, reference_policy=self.reference_policy, clock=clock), drift=drift,
            references=self.references, frames=self.frames, swaps=self._swaps, orders=self._to_inference,
            stop=self._stop_inference, outbound=self.outbound, alerts=self.alerts, set_alert=self._set_alert,
            last_error=self._last_error, counters=self.counters, latency=self.latency, compute=self.compute,
            greeter=self.greeter, record_version=self.reloader.record_version, audit=self.hooks.record,
            signer_key_id=signer_key_id(config.bundle.public_key_path) if audit is not None else None,
            device_id=self.device_id, frames_max=int(config.queues.frames_max),
            forward_annotations=forward_annotations, clock=clock, archive=self.archive, control=self.control_charts,
            line_publish=config.lines.publish, baselines=self.baselines,
            seq_mark=SeqMark(getattr(getattr(link, "outbox", None), "marks", None), self.device_id, time.monotonic))
        #: Bundles sent over MQTT ([deploy]; edge.daemon.deploy); None when off.
        self.deploy = DeployControl(
            config=lambda: self.config, device_id=self.device_id,
            staging=StagingArea(Path(config.outbox.path).parent / "deploy"), counters=self.counters,
            emit=self.outbound.emit, respond_error=self._respond_error, reload=self.reloader.reload,
            load_with_key=self._key_loader, publish_status=self.outbound.publish_status,
            clock=clock, serving=lambda: self.engine.bundle, load_bundle=load_bundle or self._default_loader,
            guard=self.reloader.rollback, audit=self.hooks.record) if config.deploy.enabled else None
        #: Shadow mode (load_challenger): a challenger bundle run after the serving one; idle until commanded.
        self.shadow = ShadowMode(
            load_bundle=load_bundle or self._default_loader, reference_policy=self.reference_policy,
            check_fit=lambda b, e: self.reloader.check_device_fit(b, e),
            rollback_problem=self.reloader.rollback.problem,
            serving=lambda: self.engine, reload=self.reloader.reload, request_promotion=self._promote_by_rule,
            outbound=self.outbound, publish_status=self.outbound.publish_status, device_id=self.device_id,
            counters=self.counters, audit=self.hooks.record, respond_error=self._respond_error, clock=clock)
        self.inference.shadow = self.shadow
        self.commands = CommandQueue()  # signed commands first; a full lane refuses (edge.command_queue)
        self.control = CommandControl(
            config=lambda: self.config, device_id=self.device_id, queue=self.commands,
            refusals=Refusals(count=self.counters.incr, respond=self._respond_error,
                              unanswered=self.hooks.unanswered_refusal),
            counters=self.counters, audit=self.hooks.record, reload=self.reloader.reload,
            order_capture=self._to_inference.put, send_command=self._send_command, emit=self.outbound.emit,
            respond_error=self._respond_error, tag_sample=self.archive.tag if self.archive is not None else None,
            control=self.control_charts, deploy=self.deploy.execute if self.deploy is not None else None,
            shadow=self.shadow.execute, reset_drift=self.baselines.order)
        self.config_reloader = ConfigReloader(
            config=lambda: self.config, apply=self._apply_config, switch_broker=lambda c: self.link.switch_broker(c),
            counters=self.counters, audit=self.hooks.record, refused=self._refused)
        #: Anti-rollback of signed bundles (bundle.allow_rollback); the bundle in service is its first record.
        self.rollback = self.reloader.rollback
        self.reloader.record_version(bundle)
        self.started_unix_s = clock()
        self._fatal: BaseException | None = None
        self._started_mono = time.monotonic()
        self._stopping = False
        self.references.restore()

    # ---------------------------------------------------------------------------------------- what it serves
    def _default_loader(self, path: Path) -> "Bundle":
        from edge.bundle import load_bundle

        return load_bundle(
            path,
            public_key=self.config.bundle.public_key_path,
            self_test=self.config.bundle.self_test,
            num_threads=self.config.runtime.num_threads,
        )

    def _key_loader(self, path: Path, public_key: Path) -> "Bundle":
        """Load a bundle as the default loader does, verified with ``public_key`` (a deployed bundle's signer)."""
        from edge.bundle import load_bundle

        return load_bundle(path, public_key=public_key, self_test=self.config.bundle.self_test,
                           num_threads=self.config.runtime.num_threads)

    @property
    def engine(self) -> InferenceEngine:
        """The engine of the bundle in service (run by the inference thread only)."""
        return self.inference.engine

    @property
    def drift(self) -> DriftMonitor:
        return self.inference.drift

    @property
    def refs(self) -> ReferenceSet:
        """The references in use."""
        return self.references.refs

    @property
    def device_status(self) -> Status | None:
        """The device's last valid STATUS (None until one arrived)."""
        return self.inference.device_status

    @property
    def device_signal(self) -> str:
        return self.inference.device_signal

    @property
    def device_boot_id(self) -> int | None:
        return self.inference.device_boot_id

    @property
    def last_error(self) -> str | None:
        """The status's ``last_error``."""
        return self._last_error.text

    @last_error.setter
    def last_error(self, text: str | None) -> None:
        self._last_error.text = text

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def runtime_description(self) -> str:
        rt = self.engine.runtime
        return f"{rt.runtime_description}, {rt.num_threads} thread(s)"

    # ---------------------------------------------------------------------------------------- status
    def status_payload(self, state: str = "online") -> dict[str, Any]:
        """The retained ``.../status`` payload describing the daemon now (any thread; the MQTT client calls it at
        every connect, so a reconnect publishes the current alerts with a fresh time, not a start-up copy)."""
        return status_message(
            device_id=self.device_id,
            state=state,
            model_id=self.model_id,
            model_version=self.model_version,
            runtime=self.runtime_description(),
            software_version=software_version(),
            alerts=self.alerts.names(),
            last_error=self.last_error,
            device_signal=self.device_signal if self.device_status is not None else None,
            device_boot_id=self.device_boot_id,
            security=security_warnings(self.config),
            audit_head=self.audit.head if self.audit is not None else None,
            control=self.control_charts.summary() if self.control_charts is not None else None,
            deploy=self.deploy.summary() if self.deploy is not None else None,
            challenger=self.shadow.status(),
            drift_baselines=self.baselines.status(),
        )

    def _set_alert(self, name: str, active: bool) -> None:
        """Raise or clear an alert; publish the status when the set of alerts changed."""
        if self.alerts.set(name, active):
            self.counters.incr(f"{name}_{'raised' if active else 'cleared'}")
            (log.warning if active else log.info)("alert %s %s", name, "raised" if active else "cleared")
            self.outbound.publish_status()

    def _refused(self, error: str) -> None:
        """Something was refused (a bundle, a configuration): say so in the status's ``last_error``, published."""
        self.last_error = error
        self.outbound.publish_status()  # carries last_error

    def _promote_by_rule(self, request_id: str | None, authenticated: bool, verdict: str) -> None:
        """Queue ``promote_challenger`` for a met promotion rule (the inference thread finds it met; the housekeeping
        thread runs it like the command, in the lane of the load_challenger that stated the rule)."""
        from edge.commands import CommandName, RemoteCommand
        from edge.shadow import PromoteArgs

        self.control.submit(RemoteCommand(CommandName.PROMOTE_CHALLENGER, PromoteArgs(by_rule=verdict), request_id,
                                          authenticated, None))

    def _respond_error(self, command: str, request_id: str | None, error: str) -> None:
        self.counters.incr("command_errors")
        self.outbound.emit(
            MessageKind.COMMAND_RESPONSE,
            command_response_message(
                device_id=self.device_id, command=command, request_id=request_id, ok=False, error=error
            ),
            command,
        )

    def metrics_payload(self, period_s: float) -> dict[str, Any]:
        """The ``.../metrics`` payload: counters, gauges and latency percentiles (milliseconds)."""
        uptime_s = self.clock() - self.started_unix_s
        return metrics_payload(
            device_id=self.device_id, period_s=period_s, counters=self.counters, frames=self.frames,
            messages=self.messages, transport=self.transport, link_stats=self.link.stats(), refs=self.refs,
            drift=self.drift, latency=self.latency, compute=self.compute, alerts=self.alerts.names(),
            uptime_s=uptime_s, now=self.clock(), archive=self.archive, challenger=self.shadow.metrics())

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
        self.outbound.publish_status()
        if self.archive is not None:
            self.archive.start()
        for name, target in (
            ("spectro-publisher", self.outbound.publisher_loop),
            ("spectro-inference", self.inference.run),
            ("spectro-reader", self.reader.run),
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
        watchdog of :func:`edge.daemon.run.run_daemon`; any thread).

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
        stalled = time.monotonic() - self.inference.beat
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
        self.hooks.drain()

    @staticmethod
    def _join(t: threading.Thread | None) -> None:
        if t is not None:
            t.join(timeout=30.0)
            if t.is_alive():  # pragma: no cover - a stuck thread is reported, not waited for forever
                log.error("thread %s did not stop within 30 s", t.name)

    # ---------------------------------------------------------------------------------------- device
    def _send_device(self, frame: Any) -> bool:
        try:
            self.transport.send(frame)
            self.counters.incr("device_commands_sent")
            return True
        except (EdgeError, OSError, ValueError) as exc:
            self.counters.incr("device_command_errors")
            log.warning("could not send %s to the device: %s", type(frame).__name__, exc)
            return False

    def _send_command(self, code: CommandCode, value: int = 0) -> bool:
        """Send a command frame with the next command id (any thread)."""
        self._command_id = (self._command_id + 1) & 0xFFFFFFFF
        return self._send_device(Command(self._command_id, code, value))

    # ---------------------------------------------------------------------------------------- commands, config
    def on_command(self, name: str, payload: bytes, *, retained: bool = False, group: str | None = None) -> None:
        """A command message from the broker (paho's thread): :meth:`CommandControl.on_command`."""
        self.control.on_command(name, payload, retained=retained, group=group)

    def submit_command(self, command: Any) -> None:
        """Queue a validated :class:`edge.commands.RemoteCommand` (any thread) or refuse it when its lane is full."""
        self.control.submit(command)

    def reload_config(self) -> bool:
        """Re-read the configuration file and apply the broker settings (SIGHUP): :meth:`ConfigReloader.reload`."""
        return self.config_reloader.reload()

    def _apply_config(self, config: "EdgeConfig") -> None:
        self.config = config

    # ---------------------------------------------------------------------------------------- housekeeping
    def _housekeeping_loop(self) -> None:
        period = float(self.config.metrics.period_s)
        watch_every = float(self.config.bundle.watch_interval_s)
        next_metrics = time.monotonic() + period
        next_watch = time.monotonic() + watch_every
        last_metrics = time.monotonic()
        while not self._stop_housekeeping.is_set():
            cmd = self.commands.get(HOUSEKEEPING_POLL_S)
            if cmd is not None:
                self.control.execute(cmd)
            if self.deploy is not None:  # a deployed bundle on probation (edge.daemon.probation)
                self.deploy.tick()
            now = time.monotonic()
            if self.device_status is None and now - self._started_mono > HELLO_AFTER_S:
                self.greeter.greet(REQUEST_INTERVAL_S)
            if self.config.bundle.watch and now >= next_watch:
                next_watch = now + watch_every
                self.reloader.watch()
            self._check_outbox_full()
            if now >= next_metrics:
                self.outbound.emit(MessageKind.METRICS, self.metrics_payload(now - last_metrics))
                last_metrics = now
                next_metrics = now + period
        self.outbound.emit(MessageKind.METRICS, self.metrics_payload(time.monotonic() - last_metrics))

    def _check_outbox_full(self) -> None:
        """Publish a status whose ``alerts`` carry ``outbox_full`` when the outbox's alert flag rises or clears.

        The status is retained and never queued in the outbox, so the alert reaches subscribers even while the
        full outbox refuses or evicts other messages (see docs/mqtt.md, "When the outbox is full").
        """
        # Four times a second: the flag alone, not the whole stats() snapshot (a test's link may lack outbox_full).
        full_now = getattr(self.link, "outbox_full", None)
        full = bool(full_now() if full_now is not None else self.link.stats().get("outbox_full", False))
        self._set_alert("outbox_full", full)
