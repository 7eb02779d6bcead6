"""Check-standard measurements among the predictions (``measure_control``): :class:`ControlWatch` judges each
prediction the charts armed, publishes its ``.../control`` message, raises or clears the
``control_out_of_control:<name>`` alert, writes the audit record and republishes the status (which carries the
verdict).  The prediction itself is published as usual by the inference stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.metrics import Counters
from edge.publish.messages import control_message
from edge.publish.schema import MessageKind

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.control_samples import ControlCharts
    from edge.inference import Prediction

__all__ = ["ControlWatch"]


class ControlWatch:
    """The inference stage's seam to the check-standard charts (inference thread).

    Parameters
    ----------
    charts : ControlCharts
        The armed measurements and their rules (:mod:`edge.control_samples`).
    device_id : str
    counters : Counters
        ``control_<verdict>`` per judged measurement.
    emit : callable(kind, message, command)
        Sends the ``.../control`` message.
    audit : callable(event, record)
        The ``control_verdict`` audit record.
    set_alert : callable(name, active)
    publish_status : callable()
    """

    def __init__(self, charts: "ControlCharts", *, device_id: str, counters: Counters,
                 emit: Callable[..., None], audit: Callable[[str, Mapping[str, Any]], None],
                 set_alert: Callable[[str, bool], None], publish_status: Callable[[], None]) -> None:
        self.charts = charts
        self._device_id = device_id
        self._counters = counters
        self._emit = emit
        self._audit = audit
        self._set_alert = set_alert
        self._publish_status = publish_status

    def observe(self, pred: "Prediction", device_boot_id: int | None) -> None:
        """Judge ``pred`` when it measures an armed check standard; nothing happens otherwise."""
        result = self.charts.observe(pred.names, pred.values)
        if result is None:
            return
        self._counters.incr(f"control_{result.verdict}")
        unit = pred.units[pred.names.index(result.target)]
        self._emit(MessageKind.CONTROL, control_message(
            device_id=self._device_id, standard=result.name, target=result.target, unit=unit,
            measured=result.measured, known=result.known, sigma=result.sigma, bias=result.bias,
            bias_sigmas=result.bias_sigmas, verdict=result.verdict, rule=result.rule,
            warning_sigmas=result.warning_sigmas, action_sigmas=result.action_sigmas, seq=pred.seq,
            device_boot_id=device_boot_id, model_id=pred.model_id, model_version=pred.model_version,
            request_id=result.request_id))
        self._audit("control_verdict", {"standard": result.name, "target": result.target, "seq": pred.seq,
                                        "measured": result.measured, "known": result.known, "bias": result.bias,
                                        "bias_sigmas": result.bias_sigmas, "verdict": result.verdict,
                                        "rule": result.rule, "request_id": result.request_id})
        if result.verdict != "warning":  # a warning neither raises nor clears the alert
            self._set_alert(f"control_out_of_control:{result.name}", result.verdict == "out_of_control")
        self._publish_status()  # the status's control field carries the verdict
