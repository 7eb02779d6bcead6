"""Builder of the ``.../line_prediction`` payload: every prediction of one LINE frame (a push-broom line) in one
message, as arrays indexed by the spectrum's place in the line (``[lines] publish = "line"``, the default).

A push-broom camera sends a hundred lines a second of hundreds of spectra each; one MQTT message per spectrum
costs more than predicting it, and its consumers want a line as arrays anyway.  The message carries the line's
first ``seq`` and its spectrum count (spectrum ``i`` is ``seq (seq + i) % 2**32``, its de-duplication key
``(device_id, device_boot_id, (seq + i) % 2**32)`` as for ``.../prediction``), and per spectrum each target's
value and interval bounds, the OOD statistics and the quality flags as a bit mask (:data:`LINE_FLAG_BITS`).  A
spectrum without prediction (rejected) is ``null`` in every array and listed in ``rejected`` with its reason.

>>> from edge.publish.schema import encode
>>> msg = line_prediction_message(
...     device_id="hsi-01", seq=10, spectra=2, device_timestamp_us=5, model_id="m", model_version="1",
...     targets=[LineTarget("api", "%", [1.5, None])], quality_flags=[1, None], rejected=[(1, "bad_input")],
...     latency_ms=2.0, time_unix_s=1.0)
>>> encode(msg)[:105]
b'{"schema_version":1,"kind":"line_prediction","device_id":"hsi-01","time_unix_s":1.0,"seq":10,"spectra":2,'
>>> msg["predicted"], msg["targets"][0]["values"], msg["rejected"]
(1, [1.5, None], [{'index': 1, 'reason': 'bad_input'}])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge.publish.messages import _boot_id, _model, _now  # the same field forms as .../prediction
from edge.publish.schema import (
    LINE_FLAG_BITS,
    LINE_REJECT_REASONS,
    SCHEMA_VERSION,
    MessageError,
    MessageKind,
    Quality,
    validate,
)

__all__ = ["LINE_FLAG_BITS", "LineOod", "LineTarget", "flag_mask", "line_prediction_message"]

_KIND = MessageKind.LINE_PREDICTION.value
_BIT_OF = {Quality(name): 1 << i for i, name in enumerate(LINE_FLAG_BITS)}
_isfinite = math.isfinite


def flag_mask(flags: Sequence[Quality]) -> int:
    """The bit mask of quality ``flags`` (bit ``i``: :data:`LINE_FLAG_BITS` ``[i]``; 0: ok).

    >>> flag_mask([Quality.OUT_OF_DISTRIBUTION, Quality.SATURATED]), flag_mask([])
    (5, 0)
    """
    mask = 0
    for flag in flags:
        mask |= _BIT_OF.get(flag, 0)
    return mask


@dataclass(frozen=True)
class LineTarget:
    """One target over a line: its ``values`` and (optional) interval bounds, one entry per spectrum of the line
    (None where the spectrum has no prediction), all in ``unit``."""

    name: str
    unit: str
    values: Sequence[float | None]
    lower: Sequence[float | None] | None = None
    upper: Sequence[float | None] | None = None


@dataclass(frozen=True)
class LineOod:
    """Out-of-distribution statistics over a line, one entry per spectrum (None where it has no prediction), with
    the bundle's limits (same units as the statistics)."""

    t2: Sequence[float | None]
    q: Sequence[float | None]
    t2_limit: float
    q_limit: float
    ae_score: Sequence[float | None] | None = None
    ae_limit: float | None = None


def _nums(values: Sequence[Any], n: int, what: str) -> list[float | None]:
    """``values`` as a list of ``n`` finite floats or None (the common case, Python floats, as it is)."""
    if len(values) != n:
        raise MessageError(f"{what}: expected {n} entries (one per spectrum of the line), got {len(values)}")
    out = values if isinstance(values, list) else list(values)
    for i, v in enumerate(out):
        if v is None or (type(v) is float and _isfinite(v)):
            continue
        if isinstance(v, (str, bytes, bool)):
            raise MessageError(f"{what}[{i}]: expected a number or None, got {v!r}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise MessageError(f"{what}[{i}]: expected a number or None, got {v!r}") from None
        if not _isfinite(f):
            raise MessageError(f"{what}[{i}]: expected a finite number or None, got {f}")
        if out is values:
            out = list(values)
        out[i] = f
    return out  # every entry is now a float or None


def _num(value: Any, what: str) -> float:
    if isinstance(value, (str, bytes, bool)) or not isinstance(value, (int, float)) or not _isfinite(float(value)):
        raise MessageError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def line_prediction_message(
    *,
    device_id: str,
    seq: int,
    spectra: int,
    device_timestamp_us: int,
    model_id: str,
    model_version: str,
    targets: Sequence[LineTarget],
    quality_flags: Sequence[int | None],
    rejected: Sequence[tuple[int, str]] = (),
    ood: LineOod | None = None,
    interval_coverage: float | None = None,
    latency_ms: float = 0.0,
    device_boot_id: int | None = None,
    compute_us: float | None = None,
    time_unix_s: float | None = None,
    validate_now: bool = True,
) -> dict[str, Any]:
    """Payload of ``.../line_prediction`` for one LINE frame.

    Parameters
    ----------
    seq : int
        The ``seq`` of the line's first spectrum (uint32); spectrum ``i`` is ``(seq + i) % 2**32``.
    spectra : int
        Spectra in the line (1-1024): the length of every per-spectrum array.
    device_timestamp_us : int
        The line's device timestamp (end of its exposure, shared by its spectra), microseconds.
    targets : sequence of LineTarget
        Each target's values and interval bounds, one entry per spectrum (None for a rejected one).
    quality_flags : sequence of int or None
        Per spectrum, the bit mask of its quality flags (:func:`flag_mask`; 0: ok; None for a rejected one).
    rejected : sequence of (index, reason)
        The spectra without prediction and why (a reason of :data:`edge.publish.schema.LINE_REJECT_REASONS`;
        each is also counted under ``frames_rejected_<reason>``).  Every other spectrum has a prediction.
    ood : LineOod, optional
        T2, Q (and the autoencoder score) per spectrum with the bundle's limits (None without an OOD model).
    interval_coverage : float, optional
        Nominal coverage of the intervals, in (0, 1).
    latency_ms : float
        Time from the line's arrival to this message, milliseconds (a negative one, a clock step, is sent as 0).
    device_boot_id : int, optional
        The device's boot id from its last STATUS (see :func:`edge.publish.messages.prediction_message`).
    compute_us : float, optional
        Time spent predicting the whole line (preprocessing, model, OOD, intervals), microseconds.
    validate_now : bool
        Check the schema here (default); the daemon passes False (:func:`edge.publish.schema.encode` validates the
        payload strictly when it is published).
    """
    n = int(spectra)
    if not 1 <= n <= 1024:
        raise MessageError(f"spectra: expected 1-1024 spectra in a line, got {spectra}")
    if len(quality_flags) != n:
        raise MessageError(f"quality_flags: expected {n} entries (one per spectrum of the line), got "
                           f"{len(quality_flags)}")
    rejected_items = []
    for index, reason in rejected:
        if reason not in LINE_REJECT_REASONS:
            raise MessageError(f"rejected: expected a reason of {LINE_REJECT_REASONS}, got {reason!r}")
        if not 0 <= index < n:
            raise MessageError(f"rejected: expected an index in 0-{n - 1}, got {index}")
        rejected_items.append({"index": int(index), "reason": reason})
    msg = {
        "schema_version": SCHEMA_VERSION,
        "kind": _KIND,
        "device_id": device_id,
        "time_unix_s": _now(time_unix_s),
        "seq": int(seq),
        "spectra": n,
        "device_timestamp_us": int(device_timestamp_us),
        "device_boot_id": _boot_id(device_boot_id),
        "model": _model(model_id, model_version),
        "predicted": n - len(rejected_items),
        "targets": [{"name": t.name, "unit": t.unit, "values": _nums(t.values, n, t.name),
                     "lower": None if t.lower is None else _nums(t.lower, n, t.name + ".lower"),
                     "upper": None if t.upper is None else _nums(t.upper, n, t.name + ".upper")} for t in targets],
        "interval_coverage": None if interval_coverage is None else _num(interval_coverage, "interval_coverage"),
        "ood": None if ood is None else {
            "t2": _nums(ood.t2, n, "ood.t2"), "q": _nums(ood.q, n, "ood.q"),
            "t2_limit": _num(ood.t2_limit, "ood.t2_limit"), "q_limit": _num(ood.q_limit, "ood.q_limit"),
            "ae_score": None if ood.ae_score is None else _nums(ood.ae_score, n, "ood.ae_score"),
            "ae_limit": None if ood.ae_limit is None else _num(ood.ae_limit, "ood.ae_limit")},
        "quality_flags": list(quality_flags),
        "quality_flag_bits": list(LINE_FLAG_BITS),
        "rejected": rejected_items,
        "latency_ms": max(0.0, _num(latency_ms, "latency_ms")),
        "compute_us": None if compute_us is None else _num(compute_us, "compute_us"),
    }
    if validate_now:
        validate(msg, strict=True)
    return msg
