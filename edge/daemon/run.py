"""Running the daemon as a process: :func:`run_daemon` (what ``spectro-edge run`` runs) opens the audit trail,
loads the bundle, builds the transport, the link and the :class:`edge.daemon.app.Daemon`, handles SIGTERM, SIGINT
and SIGHUP, runs the watchdog and tells systemd (sd_notify).  Its one command line is ``spectro-edge run --config FILE``
(:mod:`edge.cli`), the systemd unit's."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from edge.audit import AuditError, AuditLog
from edge.config import SECURITY_WARNINGS, security_warnings
from edge.daemon.app import WATCHDOG_POLL_S, Daemon
from edge.daemon.auditing import _sha256_or_none, bundle_audit, signer_key_id
from edge.daemon.link import MqttLink
from edge.daemon.status import software_version
from edge.errors import EdgeError
from edge.rollback import RollbackGuard
from edge.sdnotify import SdNotifier
from firmware_bridge.signals import events_on_signals

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.config import EdgeConfig

log = logging.getLogger("edge.daemon")


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

    def on_command(name: str, payload: bytes, *, retained: bool = False, group: str | None = None) -> None:
        if holder:
            holder[0].on_command(name, payload, retained=retained, group=group)

    def current_status() -> dict[str, Any] | None:
        return holder[0].status_payload("online") if holder else None

    from edge.control_samples import check_targets
    from edge.homeassistant import discovery_from_config, info_of_engine
    from edge.opcua import with_opcua
    from edge.prometheus import exporter_from_config

    exporter = None
    try:
        check_targets(config.control.standards, [t.name for t in bundle.targets])  # refuse to start, clearly
        exporter = exporter_from_config(config, lambda: holder[0].metrics_payload(0.0) if holder else None)
        if exporter is not None:
            exporter.start()
        discovery = discovery_from_config(
            config, lambda: info_of_engine(holder[0].engine, software_version()) if holder else None)
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
        "software_version": software_version(),
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
