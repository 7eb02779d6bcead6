"""The inference thread's drift side: drift events published as messages and alerts
(:func:`publish_drift_events`), ``reset_drift`` and what the retained status says of the learned baselines
(:class:`DriftBaselines`).

The housekeeping thread executes the command by ordering the reset (:meth:`DriftBaselines.order`); the inference
thread, which owns the drift monitor, carries it out between two batches (:meth:`DriftBaselines.tick`): the chosen
self-starting detectors forget their baseline and learn it again from the next spectra, the alerts they had raised
end with a ``cleared`` drift event that names the reason, and the command is answered.  Each turn of the inference
loop also looks at which detectors are still learning and publishes the retained status when that changed (after a
reset, a start or a model change, and when they have learned), so the status's ``drift_baselines`` is never stale.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edge.daemon.status import ActiveAlerts
from edge.drift import DriftEvent, DriftMonitor
from edge.metrics import Counters
from edge.publish.messages import command_response_message, drift_message
from edge.publish.schema import MessageKind
from edge.queues import BoundedQueue

__all__ = ["DriftBaselines", "ResetOrder", "MAX_PENDING_RESETS", "publish_drift_events"]

log = logging.getLogger("edge.daemon")

#: Resets ordered and not yet carried out by the inference thread (more are answered "too many commands pending").
MAX_PENDING_RESETS = 8
#: What a reset's events and status say when the command gave no reason.
NO_REASON = "reset_drift without a reason"


def publish_drift_events(events: Sequence[DriftEvent], active: Sequence[str], *,
                         emit: Callable[[MessageKind, dict[str, Any]], None], counters: Counters,
                         alerts: ActiveAlerts, device_id: str, model: tuple[str, str],
                         device_boot_id: int | None) -> bool:
    """Send each event as a ``.../drift`` message (counted ``drift_raised``/``drift_cleared``, logged) and make the
    ``drift:`` alerts ``active`` (the detectors in alert right after them); return whether the alerts changed (the
    retained status is then due)."""
    for ev in events:
        counters.incr(f"drift_{ev.state.value}")
        log.warning("drift %s: %s", ev.state.value, ev.detail)
        emit(MessageKind.DRIFT, drift_message(
            device_id=device_id, event=ev.state.value, detector=ev.monitor, statistic=ev.score,
            threshold=ev.threshold, seq=ev.seq, model_id=model[0], model_version=model[1],
            active_alerts=list(active), detail=ev.detail, monitor_kind=ev.kind.value, device_boot_id=device_boot_id))
    return alerts.replace_prefix("drift:", [f"drift:{name}" for name in active])


@dataclass(frozen=True)
class ResetOrder:
    """A ``reset_drift`` for the inference thread: the detectors (None: every self-starting one) and why."""

    detectors: tuple[str, ...] | None
    reason: str | None
    request_id: str | None
    command: str = "reset_drift"


class DriftBaselines:
    """Resets of the learned drift baselines and their place in the retained status.

    Parameters
    ----------
    monitor : DriftMonitor
        The daemon's drift monitor at start (what the first status says is learning).
    device_id : str
        This daemon's device id (responses carry it).
    counters : Counters
        ``drift_baseline_resets`` counts the resets carried out.
    emit : callable(kind, message, command)
        Sends the command response.
    respond_error : callable(command, request_id, error)
        Answers a reset that cannot be carried out.
    publish_status : callable()
        Publishes the retained status (it reads :meth:`status`).
    clock : callable() -> float
        Host time, seconds since the epoch.
    """

    def __init__(self, monitor: DriftMonitor, *, device_id: str, counters: Counters,
                 emit: Callable[[MessageKind, dict[str, Any], "str | None"], None],
                 respond_error: Callable[[str, "str | None", str], None], publish_status: Callable[[], None],
                 clock: Callable[[], float]) -> None:
        self._orders: BoundedQueue[ResetOrder] = BoundedQueue(MAX_PENDING_RESETS, "drop_newest")
        self._device_id = device_id
        self._counters = counters
        self._emit = emit
        self._respond_error = respond_error
        self._publish_status = publish_status
        self._clock = clock
        self._lock = threading.Lock()
        self._runs = bool(monitor.baseline_detectors())
        self._learning: tuple[str, ...] = tuple(monitor.learning())
        self._last: dict[str, Any] | None = None

    def order(self, order: ResetOrder) -> bool:
        """Hand a reset to the inference thread (any thread); False when too many are pending."""
        return self._orders.put(order)

    def tick(self, monitor: DriftMonitor, seq: int, publish_drift: Callable[[Sequence[DriftEvent]], None]) -> None:
        """Carry out the pending resets and publish the status when the set of learning detectors changed
        (inference thread, between two batches; ``seq`` is the device's last seq)."""
        reset = False
        while (order := self._orders.get(0.0)) is not None:
            reset |= self._reset(monitor, seq, order, publish_drift)
        runs, learning = bool(monitor.baseline_detectors()), tuple(monitor.learning())
        if reset or (runs, learning) != (self._runs, self._learning):
            with self._lock:
                self._runs, self._learning = runs, learning
            self._publish_status()

    def _reset(self, monitor: DriftMonitor, seq: int, order: ResetOrder,
               publish_drift: Callable[[Sequence[DriftEvent]], None]) -> bool:
        why = order.reason or NO_REASON
        try:
            names, ended = monitor.reset_baselines(
                order.detectors, seq=seq, reason=f"{why}; its baseline is learned again from the next spectra")
        except ValueError as exc:
            self._respond_error(order.command, order.request_id, f"args.detectors: {exc}")
            return False
        self._counters.incr("drift_baseline_resets")
        log.info("drift baselines of %s learned again (%s; request %s)", ", ".join(names), why, order.request_id)
        publish_drift(ended)
        learn = {d.name: d.config.baseline_samples for d in monitor.baseline_detectors() if d.name in names}
        with self._lock:
            self._last = {"time_unix_s": float(self._clock()), "detectors": list(names), "reason": order.reason,
                          "request_id": order.request_id}
        self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
            device_id=self._device_id, command=order.command, request_id=order.request_id, ok=True,
            result={"detectors": list(names), "cleared": [ev.monitor for ev in ended], "reason": order.reason,
                    "baseline_frames": learn, "seq": seq}), order.command)
        return True

    def status(self) -> dict[str, Any] | None:
        """The status's ``drift_baselines`` (any thread): ``{"learning": [names], "reset": {time_unix_s, detectors,
        reason, request_id} or None}``, or None when no self-starting detector runs."""
        with self._lock:
            if not self._runs:
                return None
            return {"learning": list(self._learning), "reset": None if self._last is None else dict(self._last)}
