"""Payload schemas of the versioned MQTT messages, their small validator and the JSON encoding.

API (stable)::

    SCHEMAS[kind] -> dict                              # JSON Schema (subset) of each MessageKind.value
    validate(message, kind=None, *, strict=False)      # strict: the producer's check (no unlisted field)
    encode(message: dict) -> bytes                     # compact UTF-8 JSON, NaN refused, validated strictly
    decode(payload: bytes, kind=None) -> dict          # parse + validate, tolerant (for subscribers and tests)

Every payload is a JSON object with ``schema_version`` (:data:`SCHEMA_VERSION`), ``kind`` and ``device_id``.
The producer sends exactly the fields its schema lists (:func:`encode` refuses any other); a consumer must ignore
unknown fields (:func:`decode` does); a change that removes or retypes a field bumps ``schema_version``.
The schemas are a subset of JSON Schema (type, properties, required, additionalProperties, items, enum,
minimum, maximum, minLength, maxLength) checked by the small :func:`validate` below, so the device needs no
``jsonschema`` package; ``docs/mqtt.md`` shows an example of every payload, and ``edge.json_schema`` turns these
into the consumers' draft 2020-12 files (``schemas/v1``).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from edge.errors import EdgeError
from edge.jsonstrict import loads_strict
from edge.publish.checkers import compile_checker

__all__ = [
    "SCHEMA_VERSION",
    "MessageError",
    "MessageKind",
    "Quality",
    "QUALITY_ORDER",
    "LINE_FLAG_BITS",
    "LINE_REJECT_REASONS",
    "SCHEMAS",
    "DEVICE_SIGNALS",
    "validate",
    "encode",
    "decode",
]

#: Version of every payload schema in this module.
SCHEMA_VERSION = 1


class MessageError(EdgeError, ValueError):
    """A payload does not match its schema (a caller mistake when building, bad input when decoding)."""


class MessageKind(str, enum.Enum):
    """Kind of a message; also the last topic level (``cmd/<name>/response`` for command responses)."""

    PREDICTION = "prediction"
    DRIFT = "drift"
    STATUS = "status"
    METRICS = "metrics"
    COMMAND_RESPONSE = "command_response"
    CONTROL = "control"
    CHALLENGER_PREDICTION = "challenger_prediction"  #: shadow mode: a challenger bundle's prediction
    LINE_PREDICTION = "line_prediction"  #: every prediction of one LINE frame, as arrays (``[lines] publish``)


class Quality(str, enum.Enum):
    """Quality flags of a prediction, most severe first (the first flag present becomes ``quality``)."""

    SATURATED = "saturated"  #: detector pixels at full scale: absorbance is unreliable
    MISSING_REFERENCE = "missing_reference"  #: no dark or white reference yet
    OUT_OF_DISTRIBUTION = "out_of_distribution"  #: T2 or Q (or the autoencoder score) beyond the training limit
    STALE_REFERENCE = "stale_reference"  #: dark or white reference older than references.max_age_s
    INSTRUMENT_FAULT = "instrument_fault"  #: an instrument-health alert is active (dark level, lamp, temperature)
    OK = "ok"  #: none of the above


#: Quality flags, most severe first.
QUALITY_ORDER = list(Quality)


# -------------------------------------------------------------------------------------------------- schemas

_STR = {"type": "string", "maxLength": 256}
_NUM = {"type": "number"}
_NAME_LIST = {"type": "array", "items": {"type": "string", "maxLength": 128}}
_MODEL = {"type": ["object", "null"], "required": ["id", "version"], "additionalProperties": False,
          "properties": {"id": _STR, "version": _STR}}
_BOOT_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": 0xFFFFFFFF}

#: What a device's STATUS frame may say its spectra carry (``Status.signal.name.lower()``), as in bundle contracts.
DEVICE_SIGNALS = ("counts", "absorbance", "reflectance")
#: Verdicts of a control-sample measurement (:mod:`edge.control_samples`).
CONTROL_VERDICTS = ("in_control", "warning", "out_of_control")
#: States of a bundle transfer in the status's ``deploy.transfer`` (:mod:`edge.deploy.staging`).
DEPLOY_STATES = ("receiving", "complete", "installed", "refused")
#: States of the last install in the status's ``deploy.rollout`` (:mod:`edge.daemon.probation`).
ROLLOUT_STATES = ("installed", "probation", "passed", "rolling_back", "rolled_back", "rollback_failed", "refused",
                  "superseded")
ROLLOUT_FIELDS = ("state", "transfer_id", "sha256", "model", "previous_model", "rule", "spectra", "ood", "rejected",
                  "reason", "detail", "updated_unix_s")
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
DEPLOY_TRANSFER_FIELDS = ("transfer_id", "name", "size", "sha256", "chunks", "received", "state", "error",
                          "updated_unix_s")


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


#: Shadow mode (edge.shadow): what a challenger runs through, step by step, as the retained status says.
CHALLENGER_STATES = ("shadowing", "promoting", "promoted", "dropped")
_COUNT = {"type": "integer", "minimum": 0}
_OPT_NUM = {"type": ["number", "null"]}
_SHADOW_SIDE = {"type": "object", "required": ["predictions", "rejected", "alarms", "alarm_rate", "flagged"],
                "additionalProperties": False, "properties": {
                    "predictions": _COUNT, "rejected": _COUNT, "alarms": _COUNT,
                    "alarm_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1}, "flagged": _COUNT}}
_SHADOW_TARGET = {"type": "object", "additionalProperties": False, "required": [
    "unit", "compared", "mean_abs_diff", "max_abs_diff", "mean_diff", "within_serving_interval", "references",
    "rmsep_serving", "rmsep_challenger"], "properties": {
        "unit": _STR, "compared": _COUNT, "mean_abs_diff": _OPT_NUM, "max_abs_diff": _OPT_NUM, "mean_diff": _OPT_NUM,
        "within_serving_interval": {"type": ["number", "null"], "minimum": 0, "maximum": 1}, "references": _COUNT,
        "rmsep_serving": _OPT_NUM, "rmsep_challenger": _OPT_NUM}}
_SHADOW_METRICS = {"type": "object", "additionalProperties": False, "required": [
    "model", "serving_model", "since_unix_s", "spectra", "compared", "serving", "challenger", "targets",
    "compute_ms", "rule", "rule_verdict"], "properties": {
        "model": _MODEL, "serving_model": _MODEL, "request_id": {"type": ["string", "null"], "maxLength": 64},
        "since_unix_s": _NUM, "spectra": _COUNT, "compared": _COUNT, "serving": _SHADOW_SIDE,
        "challenger": _SHADOW_SIDE, "targets": {"type": "object", "additionalProperties": _SHADOW_TARGET},
        "compute_ms": {"type": "object", "required": ["p50", "p99", "total"], "additionalProperties": False,
                       "properties": {"p50": _NUM, "p99": _NUM, "total": _NUM}},
        "rule": {"type": ["object", "null"]}, "rule_verdict": {"type": ["string", "null"], "maxLength": 2048}}}
_SHADOW_STATUS = {"type": "object", "additionalProperties": False, "required": [
    "state", "model", "path", "request_id", "since_unix_s", "rule", "detail"], "properties": {
        "state": {"enum": list(CHALLENGER_STATES)}, "model": _MODEL, "path": {"type": "string", "maxLength": 1024},
        "request_id": {"type": ["string", "null"], "maxLength": 64}, "since_unix_s": _NUM,
        "rule": {"type": ["object", "null"]}, "detail": {"type": ["string", "null"], "maxLength": 2048}}}


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
        "line": {"type": "object", "required": ["seq", "index", "spectra"], "additionalProperties": False,
                 "properties": {"seq": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                                "index": {"type": "integer", "minimum": 0, "maximum": 1023},
                                "spectra": {"type": "integer", "minimum": 1, "maximum": 1024}}},
    }, ["seq", "device_timestamp_us", "model", "values", "quality", "quality_flags", "latency_ms"]),
    MessageKind.DRIFT.value: _schema(MessageKind.DRIFT, {
        "event": {"enum": ["raised", "cleared"]},
        "detector": {"type": "string", "minLength": 1, "maxLength": 128},
        "monitor_kind": {"enum": ["model", "instrument", "signal"]},
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
        "control": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["verdict", "last_time_unix_s", "bias"], "additionalProperties": False,
            "properties": {"verdict": {"enum": list(CONTROL_VERDICTS)}, "last_time_unix_s": _NUM, "bias": _NUM}}},
        "deploy": {"type": "object", "required": ["groups", "transfer"], "additionalProperties": False, "properties": {
            "groups": {"type": "array", "items": {"type": "string", "maxLength": 256}},
            "transfer": {"type": ["object", "null"], "required": [*DEPLOY_TRANSFER_FIELDS],
                         "additionalProperties": False, "properties": {
                             "transfer_id": {"type": "string", "minLength": 8, "maxLength": 64},
                             "name": {"type": ["string", "null"], "maxLength": 128},
                             "size": {"type": "integer", "minimum": 1},
                             "sha256": {"type": "string", "minLength": 64, "maxLength": 64},
                             "chunks": {"type": "integer", "minimum": 1},
                             "received": {"type": "integer", "minimum": 0},
                             "state": {"enum": list(DEPLOY_STATES)},
                             "error": {"type": ["string", "null"], "maxLength": 2048},
                             "updated_unix_s": _NUM}},
            "rollout": {"type": "object", "required": [*ROLLOUT_FIELDS], "additionalProperties": False,
                        "properties": {
                            "state": {"enum": list(ROLLOUT_STATES)},
                            "transfer_id": {"type": "string", "minLength": 8, "maxLength": 64},
                            "sha256": {"type": "string", "minLength": 64, "maxLength": 64},
                            "model": _MODEL,
                            "previous_model": _MODEL,
                            "rule": {"type": ["object", "null"], "required": ["window_spectra", "max_ood_rate",
                                                                              "max_rejected_rate"],
                                     "additionalProperties": False, "properties": {
                                         "window_spectra": {"type": "integer", "minimum": 1},
                                         "max_ood_rate": _RATE, "max_rejected_rate": _RATE}},
                            "spectra": {"type": "integer", "minimum": 0},
                            "ood": {"type": "integer", "minimum": 0},
                            "rejected": {"type": "integer", "minimum": 0},
                            "reason": {"type": ["string", "null"], "maxLength": 64},
                            "detail": {"type": ["string", "null"], "maxLength": 2048},
                            "updated_unix_s": _NUM}}}},
        "challenger": _SHADOW_STATUS,
        "drift_baselines": {"type": "object", "required": ["learning", "reset"], "additionalProperties": False,
                            "properties": {
                                "learning": _NAME_LIST,
                                "reset": {"type": ["object", "null"], "required": [
                                    "time_unix_s", "detectors", "reason", "request_id"], "additionalProperties": False,
                                    "properties": {"time_unix_s": _NUM, "detectors": _NAME_LIST,
                                                   "reason": {"type": ["string", "null"], "maxLength": 200},
                                                   "request_id": {"type": ["string", "null"], "maxLength": 64}}}}},
    }, ["state", "alerts"]),
    MessageKind.METRICS.value: _schema(MessageKind.METRICS, {
        "period_s": {"type": "number", "minimum": 0},
        "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
        "gauges": {"type": "object", "additionalProperties": _NUM},
        "latency_ms": {"type": "object", "additionalProperties": _NUM},
        "drift_active": _NAME_LIST,
        "challenger": _SHADOW_METRICS,
    }, ["period_s", "counters", "gauges", "latency_ms"]),
    MessageKind.COMMAND_RESPONSE.value: _schema(MessageKind.COMMAND_RESPONSE, {
        "command": {"type": "string", "minLength": 1, "maxLength": 32},
        "request_id": {"type": ["string", "null"], "maxLength": 64},
        "ok": {"type": "boolean"},
        "error": {"type": ["string", "null"], "maxLength": 2048},
        "result": {"type": "object"},
    }, ["command", "request_id", "ok", "error", "result"]),
    MessageKind.CONTROL.value: _schema(MessageKind.CONTROL, {
        "standard": {"type": "string", "minLength": 1, "maxLength": 48},
        "target": _STR,
        "unit": _STR,
        "measured": _NUM,
        "known": _NUM,
        "sigma": {"type": "number", "minimum": 0},
        "bias": _NUM,
        "bias_sigmas": _NUM,
        "verdict": {"enum": list(CONTROL_VERDICTS)},
        "rule": {"type": "string", "maxLength": 256},
        "warning_sigmas": _NUM,
        "action_sigmas": _NUM,
        "seq": {"type": "integer", "minimum": 0},
        "device_boot_id": _BOOT_ID,
        "model": _MODEL,
        "request_id": {"type": ["string", "null"], "maxLength": 64},
    }, ["standard", "target", "measured", "known", "sigma", "bias", "bias_sigmas", "verdict", "seq"]),
}

# A challenger's prediction: the prediction's fields (no test-bench ``reference``) and the model it shadows.
SCHEMAS[MessageKind.CHALLENGER_PREDICTION.value] = _schema(MessageKind.CHALLENGER_PREDICTION, {
    **{k: v for k, v in SCHEMAS[MessageKind.PREDICTION.value]["properties"].items()
       if k not in ("schema_version", "kind", "device_id", "time_unix_s", "reference")},
    "serving_model": _MODEL,
}, ["seq", "device_timestamp_us", "model", "serving_model", "values", "quality", "quality_flags", "latency_ms"])

#: Bits of a ``line_prediction``'s ``quality_flags`` items: bit ``i`` set means flag ``LINE_FLAG_BITS[i]`` applies
#: (0: ok).  The message repeats them as ``quality_flag_bits``.
LINE_FLAG_BITS = tuple(q.value for q in Quality if q is not Quality.OK)
#: Why a spectrum of a LINE frame has no prediction in its ``line_prediction`` (``rejected[].reason``): the
#: engine's reasons (``edge.inference.RejectReason``), a refused device STATUS, or an error while processing it.
LINE_REJECT_REASONS = ("input_contract", "signal_mismatch", "missing_reference", "bad_input", "model_error",
                       "device_status_invalid", "error")
_LINE_NUMS = {"type": "array", "items": {"type": ["number", "null"]}}
_LINE_OPT_NUMS = {"type": ["array", "null"], "items": {"type": ["number", "null"]}}
SCHEMAS[MessageKind.LINE_PREDICTION.value] = _schema(MessageKind.LINE_PREDICTION, {
    "seq": {"type": "integer", "minimum": 0, "maximum": 4294967295},
    "spectra": {"type": "integer", "minimum": 1, "maximum": 1024},
    "device_timestamp_us": {"type": "integer", "minimum": 0},
    "device_boot_id": _BOOT_ID,
    "model": _MODEL,
    "predicted": {"type": "integer", "minimum": 0, "maximum": 1024},
    "targets": {"type": "array", "items": {
        "type": "object", "required": ["name", "unit", "values", "lower", "upper"], "additionalProperties": False,
        "properties": {"name": _STR, "unit": _STR, "values": _LINE_NUMS, "lower": _LINE_OPT_NUMS,
                       "upper": _LINE_OPT_NUMS}}},
    "interval_coverage": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    "ood": {"type": ["object", "null"], "required": ["t2", "q", "t2_limit", "q_limit", "ae_score", "ae_limit"],
            "additionalProperties": False, "properties": {
                "t2": _LINE_NUMS, "q": _LINE_NUMS, "t2_limit": _NUM, "q_limit": _NUM, "ae_score": _LINE_OPT_NUMS,
                "ae_limit": {"type": ["number", "null"]}}},
    "quality_flags": {"type": "array", "items": {"type": ["integer", "null"], "minimum": 0,
                                                 "maximum": (1 << len(LINE_FLAG_BITS)) - 1}},
    "quality_flag_bits": {"type": "array", "items": {"enum": list(LINE_FLAG_BITS)}},
    "rejected": {"type": "array", "items": {
        "type": "object", "required": ["index", "reason"], "additionalProperties": False,
        "properties": {"index": {"type": "integer", "minimum": 0, "maximum": 1023},
                       "reason": {"enum": list(LINE_REJECT_REASONS)}}}},
    "latency_ms": {"type": "number", "minimum": 0},
    "compute_us": {"type": ["number", "null"], "minimum": 0},
}, ["seq", "spectra", "device_timestamp_us", "device_boot_id", "model", "predicted", "targets", "interval_coverage",
    "ood", "quality_flags", "quality_flag_bits", "rejected", "latency_ms"])

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
# The same decisions as the checkers above, written out as Python source (edge.publish.checkers): run first, the
# checkers above only to name the offending field of a message they refuse.
_FAST: dict[str, Callable[[Any], bool]] = {k: compile_checker(v, _TYPES, strict=False) for k, v in SCHEMAS.items()}
_FAST_STRICT: dict[str, Callable[[Any], bool]] = {
    k: compile_checker(v, _TYPES, strict=True) for k, v in SCHEMAS.items()}


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
    if (_FAST_STRICT if strict else _FAST)[k](message):
        return
    try:
        (_STRICT_CHECKERS if strict else _CHECKERS)[k](message)
    except _Invalid as exc:
        raise MessageError(f"{k}{''.join(reversed(exc.path))}: {exc.message}") from None
    raise MessageError(f"{k}: does not match its schema")  # pragma: no cover - both checkers make one decision


#: ``json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=False)`` without building a
#: ``JSONEncoder`` for every call (what ``json.dumps`` with arguments does).
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _make_dumps() -> Callable[[Any], str]:
    """CPython's C encoder as ``json.dumps`` makes it (circular references refused: a fresh ``markers`` dict per
    call, which also makes it safe in any thread); ``_JSON.encode`` where there is none."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - CPython has it
        return _JSON.encode
    default, encode_str = _JSON.default, json.encoder.encode_basestring

    def dumps(obj: Any) -> str:
        # markers, default, encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan
        return "".join(c_make_encoder({}, default, encode_str, None, ":", ",", False, False, False)(obj, 0))

    return dumps


_dumps = _make_dumps()


def encode(message: Mapping[str, Any]) -> bytes:
    """Validate (strictly: no field the schema does not list) and serialise a payload as compact UTF-8 JSON (NaN and
    infinities are refused)."""
    validate(message, strict=True)
    try:
        return _dumps(message).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MessageError(f"{message.get('kind')}: cannot encode as JSON: {exc}") from exc


def decode(payload: bytes, kind: MessageKind | str | None = None) -> dict[str, Any]:
    """Parse and validate a payload received from the broker.

    Raises
    ------
    MessageError
        Not strict UTF-8 JSON (:func:`edge.jsonstrict.loads_strict`: ``NaN``/``Infinity``, a duplicate key or too
        deep nesting is refused), not an object, or not matching its schema (unknown fields are tolerated here).
    """
    try:
        obj = loads_strict(payload)
    except ValueError as exc:
        raise MessageError(f"payload: expected UTF-8 JSON, got an unparsable payload ({exc})") from None
    if not isinstance(obj, dict):
        raise MessageError(f"payload: expected a JSON object, got {type(obj).__name__}")
    validate(obj, kind)
    return obj

