"""The daemon's retained status and metrics: :class:`ActiveAlerts` (the conditions active now, which the retained
status carries) and :func:`metrics_payload` (the ``.../metrics`` message built from the stages' counters and
gauges)."""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, Callable, Mapping, Sequence

from edge.drift import DriftMonitor
from edge.metrics import Counters, LatencyWindow
from edge.publish.messages import metrics_message
from edge.queues import BoundedQueue
from edge.references import ReferenceKind, ReferenceSet


class LastError:
    """The status's ``last_error``: the latest problem worth a look, None once resolved (shared by the stages that
    refuse things; read by the status)."""

    def __init__(self) -> None:
        self.text: str | None = None


class ActiveAlerts:
    """The conditions active now (``signal_mismatch``, ``outbox_full``, ``stale_reference``, ``missing_reference``,
    ``drift:<detector>``; see :data:`edge.publish.messages.ALERTS`), shared by the daemon's threads.

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


def software_version() -> str | None:
    try:
        from importlib import metadata

        return metadata.version("spectrolite")
    except Exception:  # not installed as a distribution (a checkout)
        return None



def metrics_payload(
    *,
    device_id: str,
    period_s: float,
    counters: Counters,
    frames: BoundedQueue[Any],
    messages: BoundedQueue[Any],
    transport: Any,
    link_stats: Mapping[str, Any],
    refs: ReferenceSet,
    drift: DriftMonitor,
    latency: LatencyWindow,
    compute: LatencyWindow,
    alerts: Sequence[str],
    uptime_s: float,
    now: float,
    archive: Any = None,
    challenger: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``.../metrics`` payload: counters, gauges and latency percentiles (milliseconds).

    ``frames``/``messages`` are the daemon's queues, ``transport`` the serial transport (its ``stats``),
    ``link_stats`` the link's, ``alerts`` the active alerts' names, ``now`` host time (seconds since the epoch),
    ``archive`` the spectrum archive (:class:`edge.archive.Archive`, its counters and gauges) or None, ``challenger``
    the shadow-mode comparison (:meth:`edge.daemon.shadow.ShadowMode.metrics`) or None.
    """
    snapshot = counters.snapshot()
    snapshot["frames_dropped_queue_full"] = frames.dropped
    try:
        ts = transport.stats
        snapshot.update(
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
                snapshot[f"decoder_{field_.name}"] = value
    except AttributeError:  # pragma: no cover - a transport without stats
        pass
    gauges: dict[str, float] = {
        "frames_queue": float(len(frames)),
        "frames_queue_high_water": float(frames.high_water),
        "messages_queue": float(len(messages)),
        "uptime_s": round(uptime_s, 3),
    }
    for name, value in link_stats.items():
        if isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
            gauges[name] = float(value)
    if archive is not None:
        snapshot.update(archive.counters())
        gauges.update(archive.gauges())
    for kind, ref in ((ReferenceKind.DARK, refs.dark), (ReferenceKind.WHITE, refs.reference)):
        if ref is not None:
            gauges[f"{kind.value}_age_s"] = round(now - ref.captured_at_s, 3)
    for name, snap in drift.snapshot().items():
        gauges[f"drift_{name}"] = float(snap["score"])  # type: ignore[arg-type]  # snapshot values: float|str|None
        base = snap.get("baseline")
        if isinstance(base, dict):  # a prediction CUSUM: is its (self-starting) baseline still being learned?
            gauges[f"drift_{name}_baseline_learning"] = 1.0 if base["learning"] else 0.0
            gauges.update({f"drift_{name}_baseline_{k}": float(base[k]) for k in ("learned", "mean", "std")})
    lat = latency.summary()
    comp = compute.summary()
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
        device_id=device_id, period_s=max(0.0, period_s), counters=snapshot, gauges=gauges,
        latency_ms=latency_ms,
        drift_active=[a[len("drift:"):] for a in alerts if a.startswith("drift:")],
        challenger=challenger,
    )
