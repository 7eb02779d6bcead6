"""Builders of the versioned JSON payloads the daemon publishes, and the outbox class of each kind.

API (stable; the daemon builds every outgoing payload with these)::

    prediction_message(...) / drift_message(...) / status_message(...) / metrics_message(...)
        / command_response_message(...) -> dict       # every field it emits is a parameter; validated strictly
    PRIORITY_OF_KIND[MessageKind] -> Priority          # outbox eviction class of each kind
    ALERTS                                             # the alerts the retained status may list

Each builder takes every field its payload carries (nothing is added to a message after its builder), so the
payload, :data:`edge.publish.schema.SCHEMAS` and ``docs/mqtt.md`` list the same fields;
``tests/data/messages/v1_*.json`` hold one golden payload per case, byte for byte.

>>> from edge.publish.schema import encode
>>> msg = status_message(device_id="nir-01", state="online", time_unix_s=1.5)
>>> encode(msg)
b'{"schema_version":1,"kind":"status","device_id":"nir-01","time_unix_s":1.5,"state":"online","model":null,\
"runtime":null,"software_version":null,"alerts":[],"last_error":null,"device_signal":null,"device_boot_id":null,\
"security":[],"audit_head":null}'
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edge.publish.schema import QUALITY_ORDER, SCHEMA_VERSION, MessageError, MessageKind, Quality, validate

__all__ = [
    "ALERTS",
    "Priority",
    "PRIORITY_OF_KIND",
    "TargetValue",
    "OodStats",
    "LinePosition",
    "prediction_message",
    "PredictionFields",
    "prediction_message_of",
    "drift_message",
    "status_message",
    "metrics_message",
    "command_response_message",
    "control_message",
    "challenger_prediction_message_of",
]

#: Alerts the retained ``.../status`` lists while their condition holds (``drift:<detector>`` for each drift
#: detector in alert, e.g. ``drift:ood_q``, ``drift:prediction:api``, ``drift:dark_level``).
ALERTS: dict[str, str] = {
    "signal_mismatch": "the bundle expects another signal (counts, absorbance, reflectance) than the device sends; "
                       "no prediction is made",
    "outbox_full": "the outbox reached its bounds: messages are evicted or refused",
    "missing_reference": "the bundle needs a dark or white reference the daemon does not have; no prediction is made",
    "stale_reference": "a reference is older than references.max_age_s or from another integration time",
    "drift:<detector>": "a drift detector is in alert (see .../drift)",
    "control_out_of_control:<standard>": "the last measurement of a check standard was out of control (see "
                                         ".../control); cleared by its next in-control measurement",
}


class Priority(enum.IntEnum):
    """Outbox eviction class: when the outbox is full, lower classes are evicted first (oldest first)."""

    LOW = 0  #: metrics: superseded by the next period anyway
    NORMAL = 1  #: predictions: the data
    HIGH = 2  #: drift alerts, status and command responses: rare and important


_isfinite = math.isfinite
_PREDICTION = MessageKind.PREDICTION.value
_OK = Quality.OK.value

PRIORITY_OF_KIND: dict[MessageKind, Priority] = {
    MessageKind.METRICS: Priority.LOW,
    MessageKind.PREDICTION: Priority.NORMAL,
    MessageKind.DRIFT: Priority.HIGH,
    MessageKind.STATUS: Priority.HIGH,
    MessageKind.COMMAND_RESPONSE: Priority.HIGH,
    MessageKind.CONTROL: Priority.HIGH,
    MessageKind.CHALLENGER_PREDICTION: Priority.LOW,  # shadow mode: evicted before the serving predictions
    MessageKind.LINE_PREDICTION: Priority.NORMAL,  # the predictions of one LINE frame (edge.publish.line_messages)
}




@dataclass(frozen=True)
class TargetValue:
    """One predicted quantity with its unit and (optional) prediction interval, all in ``unit``."""

    name: str
    unit: str
    value: float
    lower: float | None = None
    upper: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _target_dict(self.name, self.unit, self.value, self.lower, self.upper)


@dataclass(frozen=True)
class LinePosition:
    """Where a spectrum sat in the LINE frame it came in (a push-broom line): the line's first ``seq``, this
    spectrum's ``index`` in it (its own ``seq`` is ``(line_seq + index) % 2**32``) and the line's spectrum count."""

    line_seq: int
    index: int
    spectra: int

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.line_seq, "index": self.index, "spectra": self.spectra}


@dataclass(frozen=True)
class OodStats:
    """Out-of-distribution statistics of one spectrum and the bundle's limits (same units as the statistics)."""

    t2: float
    q: float
    t2_limit: float
    q_limit: float
    ae_score: float | None = None
    ae_limit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        ae_score, ae_limit = self.ae_score, self.ae_limit
        return {"t2": _num_at(self.t2, "ood.t2"), "q": _num_at(self.q, "ood.q"),
                "t2_limit": _num_at(self.t2_limit, "ood.t2_limit"), "q_limit": _num_at(self.q_limit, "ood.q_limit"),
                "ae_score": None if ae_score is None else _num_at(ae_score, "ood.ae_score"),
                "ae_limit": None if ae_limit is None else _num_at(ae_limit, "ood.ae_limit")}


def _num(value: Any, what: str) -> float:
    """A finite float from a Python or numpy number (strings and booleans are caller mistakes)."""
    if isinstance(value, (str, bytes, bool)):
        raise MessageError(f"{what}: expected a number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise MessageError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(f):
        raise MessageError(f"{what}: expected a finite number, got {f}")
    return f


def _num_at(value: Any, what: str, suffix: str = "") -> float:
    """:func:`_num` of ``value`` (``what + suffix`` names it in an error), without a call or a label to format for
    the common case, a finite Python float (returned as it is, as ``float()`` would)."""
    if type(value) is float and _isfinite(value):
        return value
    return _num(value, what + suffix)


def _opt_num(value: Any, what: str) -> float | None:
    return None if value is None else _num(value, what)


def _target_dict(name: str, unit: str, value: Any, lower: Any, upper: Any) -> dict[str, Any]:
    """The ``values`` item of one target (what :meth:`TargetValue.to_dict` returns)."""
    return {"name": name, "unit": unit, "value": _num_at(value, name),
            "lower": None if lower is None else _num_at(lower, name, ".lower"),
            "upper": None if upper is None else _num_at(upper, name, ".upper")}


def _boot_id(value: int | None) -> int | None:
    """The wire form of a device boot id: a uint32, or None when the device sent none (0 or no STATUS)."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 0xFFFFFFFF:
        raise MessageError(f"device_boot_id: expected a uint32 or None, got {value!r}")
    return value


def _now(time_unix_s: float | None) -> float:
    return round(time.time(), 6) if time_unix_s is None else float(time_unix_s)


def _header(kind: MessageKind, device_id: str, time_unix_s: float | None) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "kind": kind.value, "device_id": device_id,
            "time_unix_s": _now(time_unix_s)}


def _model(model_id: str | None, model_version: str | None) -> dict[str, str] | None:
    if model_id is None:
        return None
    return {"id": str(model_id), "version": str(model_version) if model_version is not None else ""}


def prediction_message(
    *,
    device_id: str,
    seq: int,
    device_timestamp_us: int,
    model_id: str,
    model_version: str,
    targets: Sequence[TargetValue],
    quality_flags: Sequence[Quality | str] = (),
    ood: OodStats | None = None,
    interval_coverage: float | None = None,
    latency_ms: float = 0.0,
    device_boot_id: int | None = None,
    quality_reasons: Sequence[str] = (),
    compute_us: float | None = None,
    reference: Sequence[float | None] | None = None,
    time_unix_s: float | None = None,
    validate_now: bool = True,
    line: LinePosition | None = None,
) -> dict[str, Any]:
    """Payload of ``.../prediction`` for one spectrum.

    Parameters
    ----------
    seq : int
        The spectrum's sequence number (a spectrum of a LINE frame: the line's ``seq`` plus its index); restarts
        when the device reboots, so subscribers deduplicate on ``(device_id, device_boot_id, seq)``.
    device_timestamp_us : int
        The frame's device timestamp, microseconds.
    targets : sequence of TargetValue
        Predicted values with units and interval bounds.
    quality_flags : sequence of Quality or str
        Every flag that applies; empty means ``ok``.  ``quality`` is the most severe one.
    ood : OodStats, optional
        Hotelling T2, Q residual (and autoencoder score) with the bundle's limits.
    interval_coverage : float, optional
        Nominal coverage of the intervals, in (0, 1).
    latency_ms : float
        Time from the frame's arrival to this message, milliseconds.
    device_boot_id : int, optional
        The device's boot id from its last STATUS frame (uint32, random per boot); ``None`` (JSON null) when the
        device announced none (0 on the wire, or no STATUS yet).
    quality_reasons : sequence of str
        Why each flag was set, in words.
    compute_us : float, optional
        Time spent preprocessing, running the model and scoring, microseconds.
    reference : sequence of float or None, optional
        Known reference values of the spectrum (test benches: the simulator's ANNOTATION frame); omitted when None.
    line : LinePosition, optional
        For a spectrum that came in a LINE frame: the field ``line`` (``{"seq", "index", "spectra"}``); omitted
        for a SPECTRUM frame.
    validate_now : bool
        Check the schema here (default).  A caller that encodes the message at once (the daemon, once per frame)
        passes False: :func:`edge.publish.schema.encode` validates it strictly anyway.
    """
    return _prediction(
        device_id=device_id, seq=seq, device_timestamp_us=device_timestamp_us, model_id=model_id,
        model_version=model_version, values=[t.to_dict() for t in targets], quality_flags=quality_flags, ood=ood,
        interval_coverage=interval_coverage, latency_ms=latency_ms, device_boot_id=device_boot_id,
        quality_reasons=quality_reasons, compute_us=compute_us, reference=reference, time_unix_s=time_unix_s,
        validate_now=validate_now, line=line)


def _prediction(
    *, device_id: str, seq: int, device_timestamp_us: int, model_id: str, model_version: str,
    values: list[dict[str, Any]], quality_flags: Sequence[Quality | str], ood: OodStats | None,
    interval_coverage: float | None, latency_ms: float, device_boot_id: int | None, quality_reasons: Sequence[str],
    compute_us: float | None, reference: Sequence[float | None] | None, time_unix_s: float | None,
    validate_now: bool, line: LinePosition | None,
) -> dict[str, Any]:
    """The prediction payload of both builders, in one dict literal (the daemon builds thousands a second)."""
    if quality_flags:
        flags = sorted({Quality(f) for f in quality_flags} - {Quality.OK}, key=QUALITY_ORDER.index)
        quality, flag_values = (flags[0].value if flags else _OK), [f.value for f in flags]
    else:
        quality, flag_values = _OK, []
    msg = {
        "schema_version": SCHEMA_VERSION,
        "kind": _PREDICTION,
        "device_id": device_id,
        "time_unix_s": _now(time_unix_s),
        "seq": seq,
        "device_timestamp_us": device_timestamp_us,
        "model": _model(model_id, model_version),
        "values": values,
        "interval_coverage": None if interval_coverage is None else _num_at(interval_coverage, "interval_coverage"),
        "ood": ood.to_dict() if ood is not None else None,
        "quality": quality,
        "quality_flags": flag_values,
        "latency_ms": _num_at(latency_ms, "latency_ms"),
        "device_boot_id": _boot_id(device_boot_id),
        "quality_reasons": [str(r) for r in quality_reasons] if quality_reasons else [],
        "compute_us": None if compute_us is None else _num_at(compute_us, "compute_us"),
    }
    if reference is not None:
        msg["reference"] = [None if v is None or not math.isfinite(float(v)) else float(v) for v in reference]
    if line is not None:
        msg["line"] = line.to_dict()
    if validate_now:
        validate(msg, strict=True)
    return msg


class PredictionFields(Protocol):
    """What :func:`prediction_message_of` reads from a prediction (``edge.inference.Prediction`` has it), so that
    the domain value needs no knowledge of the wire format and this module none of inference."""

    @property
    def seq(self) -> int: ...
    @property
    def timestamp_us(self) -> int: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def units(self) -> tuple[str, ...]: ...
    @property
    def values(self) -> tuple[float, ...]: ...
    @property
    def lower(self) -> tuple[float, ...] | None: ...
    @property
    def upper(self) -> tuple[float, ...] | None: ...
    @property
    def interval_coverage(self) -> float | None: ...
    @property
    def ood(self) -> OodStats | None: ...
    @property
    def flags(self) -> tuple[Quality, ...]: ...
    @property
    def reasons(self) -> tuple[str, ...]: ...
    @property
    def compute_us(self) -> float: ...
    @property
    def model_id(self) -> str: ...
    @property
    def model_version(self) -> str: ...


def prediction_message_of(
    pred: PredictionFields,
    *,
    device_id: str,
    latency_ms: float,
    reference: Sequence[float | None] | None = None,
    device_boot_id: int | None = None,
    time_unix_s: float | None = None,
    validate_now: bool = True,
    line: LinePosition | None = None,
) -> dict[str, Any]:
    """The ``.../prediction`` payload of one prediction (see :func:`prediction_message` for the fields).

    ``pred.reasons`` become ``quality_reasons``; ``compute_us`` is rounded to 0.1 us; a negative ``latency_ms``
    (clock steps) is sent as 0; ``reference`` (the simulator's known values, test benches only) becomes the field
    ``reference``; ``device_boot_id`` is the boot id of the device's last STATUS.
    """
    lower, upper = pred.lower, pred.upper
    values = [_target_dict(n, u, v, None if lower is None else lower[i], None if upper is None else upper[i])
              for i, (n, u, v) in enumerate(zip(pred.names, pred.units, pred.values))]
    return _prediction(
        device_id=device_id, seq=pred.seq, device_timestamp_us=pred.timestamp_us, model_id=pred.model_id,
        model_version=pred.model_version, values=values, quality_flags=pred.flags, ood=pred.ood,
        interval_coverage=pred.interval_coverage, latency_ms=max(0.0, latency_ms), device_boot_id=device_boot_id,
        quality_reasons=pred.reasons, compute_us=round(pred.compute_us, 1), reference=reference,
        time_unix_s=time_unix_s, validate_now=validate_now, line=line)


def drift_message(
    *,
    device_id: str,
    event: str,
    detector: str,
    statistic: float,
    threshold: float,
    seq: int | None = None,
    model_id: str | None = None,
    model_version: str | None = None,
    active_alerts: Sequence[str] = (),
    detail: str = "",
    monitor_kind: str = "model",
    device_boot_id: int | None = None,
    time_unix_s: float | None = None,
) -> dict[str, Any]:
    """Payload of ``.../drift``: an alert ``raised`` or ``cleared`` by one detector.

    ``detector`` names what is monitored (``ood_t2``, ``ood_q``, ``ood_ae``, ``prediction:<target>``,
    ``spectrum_level``, ``dark_level``, ``reference_intensity``, ``detector_temp``); ``monitor_kind`` says whether
    it watches the ``model`` (inputs and outputs), the ``instrument`` or the ``signal`` (each spectrum's level before
    the model's preprocessing); ``statistic`` is its current value and ``threshold`` the level crossed
    (the raise level for ``raised``, the clear level for ``cleared``); ``active_alerts`` lists every detector
    in alert after this event; ``device_boot_id`` is the device's boot id (see :func:`prediction_message`).
    """
    msg = _header(MessageKind.DRIFT, device_id, time_unix_s)
    msg.update({
        "event": event,
        "detector": detector,
        "statistic": _num(statistic, "statistic"),
        "threshold": _num(threshold, "threshold"),
        "seq": seq,
        "model": _model(model_id, model_version),
        "active_alerts": list(active_alerts),
        "detail": detail,
        "monitor_kind": monitor_kind,
        "device_boot_id": _boot_id(device_boot_id),
    })
    validate(msg, strict=True)
    return msg


def status_message(
    *,
    device_id: str,
    state: str,
    model_id: str | None = None,
    model_version: str | None = None,
    runtime: str | None = None,
    software_version: str | None = None,
    alerts: Sequence[str] = (),
    last_error: str | None = None,
    device_signal: str | None = None,
    device_boot_id: int | None = None,
    security: Sequence[str] = (),
    audit_head: str | None = None,
    control: Mapping[str, Mapping[str, Any]] | None = None,
    deploy: Mapping[str, Any] | None = None,
    challenger: Mapping[str, Any] | None = None,
    drift_baselines: Mapping[str, Any] | None = None,
    time_unix_s: float | None = None,
) -> dict[str, Any]:
    """Payload of ``.../status`` (retained): ``online`` at connect and on changes, ``offline`` as last will.

    ``alerts`` lists the conditions active now (see :data:`ALERTS`: ``signal_mismatch``, ``outbox_full``,
    ``stale_reference``, ``missing_reference``, ``drift:<detector>``); ``last_error`` the most recent failure an
    operator should see (a refused bundle reload, ...); ``device_signal`` what the device's STATUS says its spectra
    carry (``counts``, ``absorbance``, ``reflectance``; null before the first STATUS) and ``device_boot_id`` its
    boot id (null when it sent none); ``security`` the insecure settings in force (``edge.config.SECURITY_WARNINGS``:
    ``commands_unauthenticated``, ``mqtt_plaintext``, ``mqtt_anonymous``, ``bundles_unsigned``); ``audit_head``
    the hash of the last record of the audit log when the status was built (null without an audit log), an
    anchor to check the log against (``spectro-edge audit verify --expect-head``); ``control`` (only when
    ``[control]`` declares standards) the last verdict of each check standard measured since the start,
    ``{name: {verdict, last_time_unix_s, bias}}``; ``deploy`` (only when ``[deploy]`` is on) the deployment
    groups and the last bundle transfer, ``{groups, transfer: {transfer_id, name, size, sha256, chunks, received,
    state, error, updated_unix_s} or null}`` (state ``receiving``, ``complete``, ``installed`` or ``refused``) and,
    once a transfer was committed, ``rollout``: the last install and its probation, ``{state, transfer_id, sha256,
    model, previous_model, rule, spectra, ood, rejected, reason, detail, updated_unix_s}`` (state ``installed``,
    ``probation``, ``passed``, ``rolling_back``, ``rolled_back``, ``rollback_failed``, ``refused`` or
    ``superseded``; :mod:`edge.daemon.probation`);
    ``challenger`` (only once a challenger was commanded since the start: shadow mode, :mod:`edge.daemon.shadow`)
    its last step, ``{state, model, path, request_id, since_unix_s, rule, detail}``;
    ``drift_baselines`` (only when a self-starting drift detector runs) the detectors still learning their
    in-control baseline and the last ``reset_drift``, ``{learning: [names], reset: {time_unix_s, detectors, reason,
    request_id} or null}``.
    """
    msg = _header(MessageKind.STATUS, device_id, time_unix_s)
    msg.update({
        "state": state,
        "model": _model(model_id, model_version),
        "runtime": runtime,
        "software_version": software_version,
        "alerts": list(alerts),
        "last_error": last_error,
        "device_signal": device_signal,
        "device_boot_id": _boot_id(device_boot_id),
        "security": list(security),
        "audit_head": audit_head,
    })
    if control is not None:
        msg["control"] = {str(k): {"verdict": v["verdict"], "last_time_unix_s": _num(v["last_time_unix_s"],
                                                                                 "last_time_unix_s"),
                                   "bias": _num(v["bias"], "bias")} for k, v in control.items()}
    if deploy is not None:
        msg["deploy"] = {"groups": list(deploy["groups"]),
                         "transfer": dict(deploy["transfer"]) if deploy.get("transfer") is not None else None}
        if deploy.get("rollout") is not None:
            msg["deploy"]["rollout"] = dict(deploy["rollout"])
    if challenger is not None:
        msg["challenger"] = {"state": challenger["state"], "model": challenger["model"], "path": challenger["path"],
                             "request_id": challenger["request_id"],
                             "since_unix_s": _num(challenger["since_unix_s"], "challenger.since_unix_s"),
                             "rule": challenger["rule"], "detail": challenger["detail"]}
    if drift_baselines is not None:
        reset = drift_baselines["reset"]
        msg["drift_baselines"] = {"learning": list(drift_baselines["learning"]), "reset": None if reset is None else {
            "time_unix_s": _num(reset["time_unix_s"], "drift_baselines.reset.time_unix_s"),
            "detectors": list(reset["detectors"]), "reason": reset["reason"], "request_id": reset["request_id"]}}
    validate(msg, strict=True)
    return msg


def metrics_message(
    *,
    device_id: str,
    period_s: float,
    counters: Mapping[str, int],
    gauges: Mapping[str, float] | None = None,
    latency_ms: Mapping[str, float] | None = None,
    drift_active: Sequence[str] = (),
    challenger: Mapping[str, Any] | None = None,
    time_unix_s: float | None = None,
) -> dict[str, Any]:
    """Payload of ``.../metrics``: monotonically increasing counters, gauges, and latency percentiles.

    ``latency_ms`` holds keys such as ``p50``, ``p95``, ``p99``, ``max`` (milliseconds) and ``count``;
    ``drift_active`` names the drift detectors in alert; ``challenger`` (only while a challenger runs in shadow
    mode) the comparison with the serving bundle (:meth:`edge.shadow.ShadowComparison.summary` with the two
    models, the challenger's compute time and the promotion rule's verdict).
    """
    msg = _header(MessageKind.METRICS, device_id, time_unix_s)
    msg.update({
        "period_s": _num(period_s, "period_s"),
        "counters": {str(k): int(v) for k, v in counters.items()},
        "gauges": {str(k): _num(v, f"gauges.{k}") for k, v in (gauges or {}).items()},
        "latency_ms": {str(k): _num(v, f"latency_ms.{k}") for k, v in (latency_ms or {}).items()},
        "drift_active": [str(d) for d in drift_active],
    })
    if challenger is not None:
        msg["challenger"] = {k: challenger[k] for k in (
            "model", "serving_model", "request_id", "since_unix_s", "spectra", "compared", "serving", "challenger",
            "targets", "compute_ms", "rule", "rule_verdict")}
    validate(msg, strict=True)
    return msg


def command_response_message(
    *,
    device_id: str,
    command: str,
    request_id: str | None,
    ok: bool,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
    time_unix_s: float | None = None,
) -> dict[str, Any]:
    """Payload of ``.../cmd/<command>/response``: ``ok`` with a ``result`` object, or an ``error`` message."""
    if ok and error is not None:
        raise MessageError("command_response: expected error to be None when ok is true")
    if not ok and not error:
        raise MessageError("command_response: expected an error message when ok is false")
    msg = _header(MessageKind.COMMAND_RESPONSE, device_id, time_unix_s)
    msg.update({"command": command, "request_id": request_id, "ok": bool(ok), "error": error,
                "result": dict(result or {})})
    validate(msg, strict=True)
    return msg


def challenger_prediction_message_of(
    pred: PredictionFields,
    *,
    device_id: str,
    latency_ms: float,
    serving_model_id: str,
    serving_model_version: str,
    device_boot_id: int | None = None,
    time_unix_s: float | None = None,
    validate_now: bool = True,
    line: LinePosition | None = None,
) -> dict[str, Any]:
    """Payload of ``.../challenger_prediction``: a challenger bundle's prediction of one spectrum in shadow mode,
    with the fields of ``.../prediction`` (values with their intervals, OOD statistics, quality; ``model`` is the
    challenger) and ``serving_model``, the bundle in service that predicted the same ``seq`` on ``.../prediction``.
    ``latency_ms`` runs from the frame's arrival to this message (after the serving prediction)."""
    msg = prediction_message_of(pred, device_id=device_id, latency_ms=latency_ms, device_boot_id=device_boot_id,
                                time_unix_s=time_unix_s, validate_now=False, line=line)
    msg["kind"] = MessageKind.CHALLENGER_PREDICTION.value
    msg["serving_model"] = _model(serving_model_id, serving_model_version)
    if validate_now:
        validate(msg, strict=True)
    return msg


# re-exported with the other builders (it imports the helpers above when called)
from edge.publish.control_messages import control_message  # noqa: E402
