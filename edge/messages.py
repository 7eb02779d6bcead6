"""MQTT topics and the versioned JSON payloads the daemon publishes: builders, schemas and a validator.

API (stable; the daemon builds every outgoing payload with these)::

    Topics.from_config(cfg: EdgeConfig) -> Topics     # .prediction .drift .status .metrics .command(name) ...
    topic(prefix, site, line, device_id, kind) -> str  # '<prefix>/<site>/<line>/<device>/<kind>'
    prediction_message(...) / drift_message(...) / status_message(...) / metrics_message(...)
        / command_response_message(...) -> dict       # validated against SCHEMAS[kind]
    encode(message: dict) -> bytes                     # compact UTF-8 JSON, NaN refused, validated
    decode(payload: bytes, kind=None) -> dict          # parse + validate (for subscribers and tests)
    PRIORITY_OF_KIND[MessageKind] -> Priority          # outbox eviction class of each kind

Every payload is a JSON object with ``schema_version`` (:data:`SCHEMA_VERSION`), ``kind`` and ``device_id``.
The producer sends exactly the fields its schema lists (:func:`encode` refuses any other); a consumer must ignore
unknown fields (:func:`decode` does); a change that removes or retypes a field bumps ``schema_version``.
The schemas are a subset of JSON Schema (type, properties, required, additionalProperties, items, enum,
minimum, maximum, minLength, maxLength) checked by the small :func:`validate` below, so the device needs no
``jsonschema`` package; ``docs/mqtt.md`` shows an example of every payload.

>>> t = Topics(prefix="spectrolite", site="plant-a", line="line-3", device_id="nir-01")
>>> t.prediction, t.command_response("capture_dark")
('spectrolite/plant-a/line-3/nir-01/prediction', 'spectrolite/plant-a/line-3/nir-01/cmd/capture_dark/response')
>>> msg = status_message(device_id="nir-01", state="online", time_unix_s=1.5)
>>> encode(msg)
b'{"schema_version":1,"kind":"status","device_id":"nir-01","time_unix_s":1.5,"state":"online","model":null,\
"runtime":null,"software_version":null,"alerts":[],"last_error":null,"device_signal":null,"device_boot_id":null,\
"security":[],"audit_head":null}'
"""

from __future__ import annotations

import enum
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.config import EdgeConfig

__all__ = [
    "SCHEMA_VERSION",
    "MessageError",
    "MessageKind",
    "Quality",
    "Priority",
    "PRIORITY_OF_KIND",
    "Topics",
    "topic",
    "TargetValue",
    "OodStats",
    "prediction_message",
    "drift_message",
    "status_message",
    "metrics_message",
    "command_response_message",
    "SCHEMAS",
    "DEVICE_SIGNALS",
    "ALERTS",
    "validate",
    "encode",
    "decode",
]

#: Version of every payload schema in this module.
SCHEMA_VERSION = 1

_LEVEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Command names: lower-case identifiers (one topic level).
COMMAND_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class MessageError(EdgeError, ValueError):
    """A payload does not match its schema (a caller mistake when building, bad input when decoding)."""


class MessageKind(str, enum.Enum):
    """Kind of a message; also the last topic level (``cmd/<name>/response`` for command responses)."""

    PREDICTION = "prediction"
    DRIFT = "drift"
    STATUS = "status"
    METRICS = "metrics"
    COMMAND_RESPONSE = "command_response"


class Quality(str, enum.Enum):
    """Quality flags of a prediction, most severe first (the first flag present becomes ``quality``)."""

    SATURATED = "saturated"  #: detector pixels at full scale: absorbance is unreliable
    MISSING_REFERENCE = "missing_reference"  #: no dark or white reference yet
    OUT_OF_DISTRIBUTION = "out_of_distribution"  #: T2 or Q (or the autoencoder score) beyond the training limit
    STALE_REFERENCE = "stale_reference"  #: dark or white reference older than references.max_age_s
    INSTRUMENT_FAULT = "instrument_fault"  #: an instrument-health alert is active (dark level, lamp, temperature)
    OK = "ok"  #: none of the above


_QUALITY_ORDER = list(Quality)

#: Alerts the retained ``.../status`` lists while their condition holds (``drift:<detector>`` for each drift
#: detector in alert, e.g. ``drift:ood_q``, ``drift:prediction:api``, ``drift:dark_level``).
ALERTS: dict[str, str] = {
    "signal_mismatch": "the bundle expects another signal (counts, absorbance, reflectance) than the device sends; "
                       "no prediction is made",
    "outbox_full": "the outbox reached its bounds: messages are evicted or refused",
    "missing_reference": "the bundle needs a dark or white reference the daemon does not have; no prediction is made",
    "stale_reference": "a reference is older than references.max_age_s or from another integration time",
    "drift:<detector>": "a drift detector is in alert (see .../drift)",
}


class Priority(enum.IntEnum):
    """Outbox eviction class: when the outbox is full, lower classes are evicted first (oldest first)."""

    LOW = 0  #: metrics: superseded by the next period anyway
    NORMAL = 1  #: predictions: the data
    HIGH = 2  #: drift alerts, status and command responses: rare and important


PRIORITY_OF_KIND: dict[MessageKind, Priority] = {
    MessageKind.METRICS: Priority.LOW,
    MessageKind.PREDICTION: Priority.NORMAL,
    MessageKind.DRIFT: Priority.HIGH,
    MessageKind.STATUS: Priority.HIGH,
    MessageKind.COMMAND_RESPONSE: Priority.HIGH,
}


# ------------------------------------------------------------------------------------------------------ topics


def _check_level(what: str, value: str) -> str:
    if not isinstance(value, str) or not _LEVEL_RE.match(value):
        raise MessageError(f"{what}: expected 1-64 characters from A-Z a-z 0-9 . _ -, got {value!r}")
    return value


def topic(prefix: str, site: str, line: str, device_id: str, kind: MessageKind | str) -> str:
    """Build ``<prefix>/<site>/<line>/<device_id>/<kind>`` after checking every level holds no wildcard."""
    levels = prefix.split("/")
    for level in levels:
        _check_level("topic prefix level", level)
    for what, value in (("site", site), ("line", line), ("device_id", device_id)):
        _check_level(what, value)
    k = kind.value if isinstance(kind, MessageKind) else kind
    return "/".join([*levels, site, line, device_id, k])


@dataclass(frozen=True)
class Topics:
    """All topics of one device.

    Layout: ``<prefix>/<site>/<line>/<device_id>/{prediction,drift,status,metrics}``, commands on
    ``.../cmd/<name>`` and their responses on ``.../cmd/<name>/response``.  A fleet subscribes with wildcards,
    e.g. ``spectrolite/plant-a/+/+/prediction``.
    """

    prefix: str
    site: str
    line: str
    device_id: str

    def __post_init__(self) -> None:
        topic(self.prefix, self.site, self.line, self.device_id, "x")  # validates every level

    @classmethod
    def from_config(cls, cfg: EdgeConfig) -> Topics:
        """Topics of the device described by ``cfg.device`` under ``cfg.mqtt.topic_prefix``."""
        return cls(prefix=cfg.mqtt.topic_prefix, site=cfg.device.site, line=cfg.device.line,
                   device_id=cfg.device.device_id)

    @property
    def base(self) -> str:
        """``<prefix>/<site>/<line>/<device_id>``."""
        return f"{self.prefix}/{self.site}/{self.line}/{self.device_id}"

    @property
    def prediction(self) -> str:
        return f"{self.base}/prediction"

    @property
    def drift(self) -> str:
        return f"{self.base}/drift"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    def command(self, name: str) -> str:
        """Topic a command ``name`` is received on."""
        if not COMMAND_NAME_RE.match(name):
            raise MessageError(f"command name: expected a lower-case identifier, got {name!r}")
        return f"{self.base}/cmd/{name}"

    def command_response(self, name: str) -> str:
        """Topic the response to command ``name`` is published on."""
        return f"{self.command(name)}/response"

    @property
    def command_filter(self) -> str:
        """Subscription filter matching every command (and no response): ``.../cmd/+``."""
        return f"{self.base}/cmd/+"

    def parse_command(self, topic_name: str) -> str | None:
        """Return the command name of a topic of this device's ``cmd/<name>``, or None for any other topic."""
        head = f"{self.base}/cmd/"
        if not topic_name.startswith(head):
            return None
        name = topic_name[len(head):]
        return name if COMMAND_NAME_RE.match(name) else None

    def for_kind(self, kind: MessageKind, command: str | None = None) -> str:
        """Topic of a message kind (``command`` names the command of a COMMAND_RESPONSE)."""
        if kind is MessageKind.COMMAND_RESPONSE:
            if command is None:
                raise MessageError("command_response: expected the command name, got None")
            return self.command_response(command)
        return f"{self.base}/{kind.value}"


# ------------------------------------------------------------------------------------------------- builders


@dataclass(frozen=True)
class TargetValue:
    """One predicted quantity with its unit and (optional) prediction interval, all in ``unit``."""

    name: str
    unit: str
    value: float
    lower: float | None = None
    upper: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "value": _num(self.value, self.name),
                "lower": _opt_num(self.lower, f"{self.name}.lower"),
                "upper": _opt_num(self.upper, f"{self.name}.upper")}


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
        return {"t2": _num(self.t2, "ood.t2"), "q": _num(self.q, "ood.q"),
                "t2_limit": _num(self.t2_limit, "ood.t2_limit"), "q_limit": _num(self.q_limit, "ood.q_limit"),
                "ae_score": _opt_num(self.ae_score, "ood.ae_score"),
                "ae_limit": _opt_num(self.ae_limit, "ood.ae_limit")}


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


def _opt_num(value: Any, what: str) -> float | None:
    return None if value is None else _num(value, what)


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
) -> dict[str, Any]:
    """Payload of ``.../prediction`` for one spectrum.

    Parameters
    ----------
    seq : int
        The frame's sequence number; restarts when the device reboots, so subscribers deduplicate on
        ``(device_id, device_boot_id, seq)``.
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
    validate_now : bool
        Check the schema here (default).  The daemon passes False for the one message per frame it extends
        before publishing, because :func:`encode` validates the final payload anyway.
    """
    flags = sorted({Quality(f) for f in quality_flags} - {Quality.OK}, key=_QUALITY_ORDER.index)
    msg = _header(MessageKind.PREDICTION, device_id, time_unix_s)
    msg.update({
        "seq": seq,
        "device_timestamp_us": device_timestamp_us,
        "model": _model(model_id, model_version),
        "values": [t.to_dict() for t in targets],
        "interval_coverage": _opt_num(interval_coverage, "interval_coverage"),
        "ood": ood.to_dict() if ood is not None else None,
        "quality": flags[0].value if flags else Quality.OK.value,
        "quality_flags": [f.value for f in flags],
        "latency_ms": _num(latency_ms, "latency_ms"),
        "device_boot_id": _boot_id(device_boot_id),
        "quality_reasons": [str(r) for r in quality_reasons],
        "compute_us": _opt_num(compute_us, "compute_us"),
    })
    if reference is not None:
        msg["reference"] = [None if v is None or not math.isfinite(float(v)) else float(v) for v in reference]
    if validate_now:
        validate(msg, strict=True)
    return msg


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

    ``detector`` names what is monitored (``ood_t2``, ``ood_q``, ``prediction:<target>``, ``dark_level``,
    ``reference_intensity``, ``detector_temp``); ``monitor_kind`` says whether it watches the ``model`` (inputs and
    outputs) or the ``instrument``; ``statistic`` is its current value and ``threshold`` the level crossed
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
    anchor to check the log against (``spectro-edge audit verify --expect-head``).
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
    time_unix_s: float | None = None,
) -> dict[str, Any]:
    """Payload of ``.../metrics``: monotonically increasing counters, gauges, and latency percentiles.

    ``latency_ms`` holds keys such as ``p50``, ``p95``, ``p99``, ``max`` (milliseconds) and ``count``;
    ``drift_active`` names the drift detectors in alert.
    """
    msg = _header(MessageKind.METRICS, device_id, time_unix_s)
    msg.update({
        "period_s": _num(period_s, "period_s"),
        "counters": {str(k): int(v) for k, v in counters.items()},
        "gauges": {str(k): _num(v, f"gauges.{k}") for k, v in (gauges or {}).items()},
        "latency_ms": {str(k): _num(v, f"latency_ms.{k}") for k, v in (latency_ms or {}).items()},
        "drift_active": [str(d) for d in drift_active],
    })
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


# -------------------------------------------------------------------------------------------------- schemas

_STR = {"type": "string", "maxLength": 256}
_NUM = {"type": "number"}
_NAME_LIST = {"type": "array", "items": {"type": "string", "maxLength": 128}}
_MODEL = {"type": ["object", "null"], "required": ["id", "version"], "additionalProperties": False,
          "properties": {"id": _STR, "version": _STR}}
_BOOT_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": 0xFFFFFFFF}

#: What a device's STATUS frame may say its spectra carry (``Status.signal.name.lower()``), as in bundle contracts.
DEVICE_SIGNALS = ("counts", "absorbance", "reflectance")


def _schema(kind: MessageKind, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    base = {
        "schema_version": {"type": "integer", "minimum": 1},
        "kind": {"enum": [kind.value]},
        "device_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "time_unix_s": _NUM,
    }
    return {
        "$id": f"spectrolite/{kind.value}/v{SCHEMA_VERSION}",
        "type": "object",
        "required": ["schema_version", "kind", "device_id", "time_unix_s", *required],
        "properties": {**base, **props},
        # The producer's contract: every field it sends is listed here (encode() refuses any other), so this
        # module, docs/mqtt.md and the payloads cannot drift apart.  Consumers (decode) ignore unknown fields.
        "additionalProperties": False,
    }


#: JSON Schema (subset) of each payload kind, keyed by ``MessageKind.value``.  These are the producer's schemas:
#: objects with fixed fields refuse unknown ones (``additionalProperties: false``); :func:`validate` with
#: ``strict=False`` (the default, for consumers) ignores unknown fields instead.
SCHEMAS: dict[str, dict[str, Any]] = {
    MessageKind.PREDICTION.value: _schema(MessageKind.PREDICTION, {
        "seq": {"type": "integer", "minimum": 0},
        "device_timestamp_us": {"type": "integer", "minimum": 0},
        "device_boot_id": _BOOT_ID,
        "model": _MODEL,
        "values": {"type": "array", "items": {
            "type": "object", "required": ["name", "unit", "value", "lower", "upper"], "additionalProperties": False,
            "properties": {"name": _STR, "unit": _STR, "value": _NUM,
                           "lower": {"type": ["number", "null"]}, "upper": {"type": ["number", "null"]}}}},
        "interval_coverage": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "ood": {"type": ["object", "null"], "required": ["t2", "q", "t2_limit", "q_limit"],
                "additionalProperties": False, "properties": {
                    "t2": _NUM, "q": _NUM, "t2_limit": _NUM, "q_limit": _NUM,
                    "ae_score": {"type": ["number", "null"]}, "ae_limit": {"type": ["number", "null"]}}},
        "quality": {"enum": [q.value for q in Quality]},
        "quality_flags": {"type": "array", "items": {"enum": [q.value for q in Quality if q is not Quality.OK]}},
        "quality_reasons": {"type": "array", "items": {"type": "string", "maxLength": 1024}},
        "latency_ms": {"type": "number", "minimum": 0},
        "compute_us": {"type": ["number", "null"], "minimum": 0},
        "reference": {"type": "array", "items": {"type": ["number", "null"]}},
    }, ["seq", "device_timestamp_us", "model", "values", "quality", "quality_flags", "latency_ms"]),
    MessageKind.DRIFT.value: _schema(MessageKind.DRIFT, {
        "event": {"enum": ["raised", "cleared"]},
        "detector": {"type": "string", "minLength": 1, "maxLength": 128},
        "monitor_kind": {"enum": ["model", "instrument"]},
        "statistic": _NUM,
        "threshold": _NUM,
        "seq": {"type": ["integer", "null"], "minimum": 0},
        "device_boot_id": _BOOT_ID,
        "model": _MODEL,
        "active_alerts": _NAME_LIST,
        "detail": {"type": "string", "maxLength": 1024},
    }, ["event", "detector", "statistic", "threshold", "active_alerts"]),
    MessageKind.STATUS.value: _schema(MessageKind.STATUS, {
        "state": {"enum": ["online", "offline"]},
        "model": _MODEL,
        "runtime": {"type": ["string", "null"], "maxLength": 256},
        "software_version": {"type": ["string", "null"], "maxLength": 64},
        "alerts": _NAME_LIST,
        "last_error": {"type": ["string", "null"], "maxLength": 2048},
        "device_signal": {"enum": [*DEVICE_SIGNALS, None]},
        "device_boot_id": _BOOT_ID,
        "security": _NAME_LIST,
        "audit_head": {"type": ["string", "null"], "minLength": 64, "maxLength": 64},
    }, ["state", "alerts"]),
    MessageKind.METRICS.value: _schema(MessageKind.METRICS, {
        "period_s": {"type": "number", "minimum": 0},
        "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
        "gauges": {"type": "object", "additionalProperties": _NUM},
        "latency_ms": {"type": "object", "additionalProperties": _NUM},
        "drift_active": _NAME_LIST,
    }, ["period_s", "counters", "gauges", "latency_ms"]),
    MessageKind.COMMAND_RESPONSE.value: _schema(MessageKind.COMMAND_RESPONSE, {
        "command": {"type": "string", "minLength": 1, "maxLength": 32},
        "request_id": {"type": ["string", "null"], "maxLength": 64},
        "ok": {"type": "boolean"},
        "error": {"type": ["string", "null"], "maxLength": 2048},
        "result": {"type": "object"},
    }, ["command", "request_id", "ok", "error", "result"]),
}

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list, tuple), "string": (str,), "boolean": (bool,), "null": (type(None),),
    "integer": (int,), "number": (int, float),
}


class _Invalid(Exception):
    """Internal: a schema violation; the path to the field is filled in while it propagates (no cost on success)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _compile(schema: Mapping[str, Any], strict: bool = True) -> Callable[[Any], None]:
    """A checker for ``schema`` (the subset of JSON Schema used above) that raises :class:`_Invalid`.

    Compiled once per schema, so a message is checked by one closure call per field instead of re-reading the
    schema's keys for every value (the daemon validates every prediction it publishes).
    """
    types = schema.get("type")
    names: tuple[str, ...] | None = None if types is None else ((types,) if isinstance(types, str) else tuple(types))
    allowed = None if names is None else tuple(t for n in names for t in _TYPES[n])
    bool_ok = names is None or "boolean" in names  # bool is an int in Python, not an integer in JSON Schema
    type_text = "" if names is None else " or ".join(names)
    enum = schema.get("enum")
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    min_len, max_len = schema.get("minLength", 0), schema.get("maxLength")
    required = tuple(schema.get("required", ()))
    props = {k: _compile(v, strict) for k, v in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    if extra is False and not strict:
        extra = True  # a consumer ignores fields it does not know
    extra_check = _compile(extra, strict) if isinstance(extra, Mapping) else None
    items = _compile(schema["items"], strict) if "items" in schema else None

    def check(value: Any) -> None:
        if allowed is not None and (not isinstance(value, allowed) or (not bool_ok and type(value) is bool)):
            raise _Invalid(f"expected {type_text}, got {type(value).__name__}")
        if enum is not None and value not in enum:
            raise _Invalid(f"expected one of {enum}, got {value!r}")
        if isinstance(value, (int, float)) and type(value) is not bool:
            if isinstance(value, float) and not math.isfinite(value):
                raise _Invalid(f"expected a finite number, got {value}")
            if minimum is not None and value < minimum:
                raise _Invalid(f"expected >= {minimum}, got {value}")
            if maximum is not None and value > maximum:
                raise _Invalid(f"expected <= {maximum}, got {value}")
        elif isinstance(value, str):
            if len(value) < min_len:
                raise _Invalid(f"expected at least {min_len} characters, got {len(value)}")
            if max_len is not None and len(value) > max_len:
                raise _Invalid(f"expected at most {max_len} characters, got {len(value)}")
        elif isinstance(value, dict):
            for key in required:
                if key not in value:
                    exc = _Invalid("required field missing")
                    exc.path.append(f".{key}")
                    raise exc
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _Invalid(f"expected string keys, got {key!r}")
                sub = props.get(key)
                if sub is None:
                    if extra is False:
                        exc = _Invalid("unknown field")
                        exc.path.append(f".{key}")
                        raise exc
                    if extra_check is None:
                        continue
                    sub = extra_check
                try:
                    sub(item)
                except _Invalid as exc:
                    exc.path.append(f".{key}")
                    raise
        elif items is not None and isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                try:
                    items(item)
                except _Invalid as exc:
                    exc.path.append(f"[{i}]")
                    raise

    return check


_CHECKERS: dict[str, Callable[[Any], None]] = {k: _compile(v, strict=False) for k, v in SCHEMAS.items()}
_STRICT_CHECKERS: dict[str, Callable[[Any], None]] = {k: _compile(v, strict=True) for k, v in SCHEMAS.items()}


def validate(message: Mapping[str, Any], kind: MessageKind | str | None = None, *, strict: bool = False) -> None:
    """Check ``message`` against the schema of its ``kind`` (or of ``kind`` when given).

    ``strict=True`` (the producer's check, done by :func:`encode`) also refuses fields the schema does not list;
    the default (a consumer's check, done by :func:`decode`) ignores them, so a newer producer's additions do not
    break an older consumer.

    Raises
    ------
    MessageError
        Naming the first offending field, e.g. ``prediction.seq: expected integer, got str``.
    """
    if not isinstance(message, Mapping):
        raise MessageError(f"message: expected a JSON object, got {type(message).__name__}")
    k = kind.value if isinstance(kind, MessageKind) else (kind or message.get("kind"))
    if k not in SCHEMAS:
        raise MessageError(f"kind: expected one of {sorted(SCHEMAS)}, got {k!r}")
    version = message.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise MessageError(
            f"{k}.schema_version: expected <= {SCHEMA_VERSION}, got {message['schema_version']} (newer producer)")
    try:
        (_STRICT_CHECKERS if strict else _CHECKERS)[k](message)
    except _Invalid as exc:
        raise MessageError(f"{k}{''.join(reversed(exc.path))}: {exc.message}") from None


def encode(message: Mapping[str, Any]) -> bytes:
    """Validate (strictly: no field the schema does not list) and serialise a payload as compact UTF-8 JSON (NaN and
    infinities are refused)."""
    validate(message, strict=True)
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MessageError(f"{message.get('kind')}: cannot encode as JSON: {exc}") from exc


def decode(payload: bytes, kind: MessageKind | str | None = None) -> dict[str, Any]:
    """Parse and validate a payload received from the broker.

    Raises
    ------
    MessageError
        Not UTF-8 JSON, not an object, or not matching its schema.
    """
    try:
        obj = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"payload: expected UTF-8 JSON, got an unparsable payload ({exc})") from None
    if not isinstance(obj, dict):
        raise MessageError(f"payload: expected a JSON object, got {type(obj).__name__}")
    validate(obj, kind)
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
