"""Builder of the ``.../control`` payload: one measurement of a check standard (``measure_control``), judged
(:mod:`edge.control_samples`); re-exported by :mod:`edge.publish.messages` with the other builders."""

from __future__ import annotations

from typing import Any

from edge.publish.schema import MessageKind, validate

__all__ = ["control_message"]


def control_message(
    *,
    device_id: str,
    standard: str,
    target: str,
    unit: str,
    measured: float,
    known: float,
    sigma: float,
    bias: float,
    bias_sigmas: float,
    verdict: str,
    rule: str,
    warning_sigmas: float,
    action_sigmas: float,
    seq: int,
    device_boot_id: int | None = None,
    model_id: str | None = None,
    model_version: str | None = None,
    request_id: str | None = None,
    time_unix_s: float | None = None,
) -> dict[str, Any]:
    """Payload of ``.../control``: one measurement of a check standard (``measure_control``) judged against its
    known value: ``bias = measured - known``, ``bias_sigmas = bias / sigma`` and the ``verdict``
    (``in_control``, ``warning``, ``out_of_control``) with the ``rule`` that decided it (:mod:`edge.control_samples`).
    ``measured`` is the ``value`` of the prediction of the same ``seq`` (published too)."""
    # the same field forms as the other payloads; imported here, as edge.publish.messages re-exports this builder
    from edge.publish.messages import _boot_id, _header, _model, _num

    msg = _header(MessageKind.CONTROL, device_id, time_unix_s)
    msg.update({
        "standard": standard,
        "target": target,
        "unit": unit,
        "measured": _num(measured, "measured"),
        "known": _num(known, "known"),
        "sigma": _num(sigma, "sigma"),
        "bias": _num(bias, "bias"),
        "bias_sigmas": _num(bias_sigmas, "bias_sigmas"),
        "verdict": verdict,
        "rule": rule,
        "warning_sigmas": _num(warning_sigmas, "warning_sigmas"),
        "action_sigmas": _num(action_sigmas, "action_sigmas"),
        "seq": int(seq),
        "device_boot_id": _boot_id(device_boot_id),
        "model": _model(model_id, model_version),
        "request_id": request_id,
    })
    validate(msg, strict=True)
    return msg
