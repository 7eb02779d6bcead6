"""The prediction builders (edge.publish.messages) build in one dict literal what they built field by field before
(#17): the same payload, byte for byte and type for type, on random predictions (Python and numpy numbers,
intervals or none, OOD or none, flags, reasons, lines, references), and the same refusals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.inference import Prediction
from edge.publish.messages import (
    LinePosition,
    OodStats,
    TargetValue,
    _boot_id,
    _num,
    _opt_num,
    challenger_prediction_message_of,
    prediction_message,
    prediction_message_of,
)
from edge.publish.schema import QUALITY_ORDER, MessageError, Quality, encode, validate

T = 1_767_225_600.25


def _reference(pred: Any, *, device_id: str, latency_ms: float, reference: Any, device_boot_id: int | None,
               line: LinePosition | None) -> dict[str, Any]:
    """``prediction_message_of`` as it was written before (TargetValue and OodStats to dicts, field by field)."""
    targets = [TargetValue(n, u, v, None if pred.lower is None else pred.lower[i],
                           None if pred.upper is None else pred.upper[i])
               for i, (n, u, v) in enumerate(zip(pred.names, pred.units, pred.values))]
    flags = sorted({Quality(f) for f in pred.flags} - {Quality.OK}, key=QUALITY_ORDER.index)
    ood = pred.ood
    msg: dict[str, Any] = {"schema_version": 1, "kind": "prediction", "device_id": device_id, "time_unix_s": T}
    msg.update({
        "seq": pred.seq, "device_timestamp_us": pred.timestamp_us,
        "model": {"id": str(pred.model_id), "version": str(pred.model_version)},
        "values": [{"name": t.name, "unit": t.unit, "value": _num(t.value, t.name),
                    "lower": _opt_num(t.lower, f"{t.name}.lower"), "upper": _opt_num(t.upper, f"{t.name}.upper")}
                   for t in targets],
        "interval_coverage": _opt_num(pred.interval_coverage, "interval_coverage"),
        "ood": None if ood is None else {
            "t2": _num(ood.t2, "ood.t2"), "q": _num(ood.q, "ood.q"), "t2_limit": _num(ood.t2_limit, "ood.t2_limit"),
            "q_limit": _num(ood.q_limit, "ood.q_limit"), "ae_score": _opt_num(ood.ae_score, "ood.ae_score"),
            "ae_limit": _opt_num(ood.ae_limit, "ood.ae_limit")},
        "quality": flags[0].value if flags else Quality.OK.value,
        "quality_flags": [f.value for f in flags],
        "latency_ms": _num(max(0.0, latency_ms), "latency_ms"),
        "device_boot_id": _boot_id(device_boot_id),
        "quality_reasons": [str(r) for r in pred.reasons],
        "compute_us": _opt_num(round(pred.compute_us, 1), "compute_us"),
    })
    if reference is not None:
        msg["reference"] = [None if v is None or not math.isfinite(float(v)) else float(v) for v in reference]
    if line is not None:
        msg["line"] = {"seq": line.line_seq, "index": line.index, "spectra": line.spectra}
    validate(msg, strict=True)
    return msg


def _types(node: Any) -> Any:
    """The payload's shape with the type of every leaf (a numpy scalar left in a payload shows up here)."""
    if isinstance(node, dict):
        return {k: _types(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_types(v) for v in node]
    return type(node)


_FLOAT = st.floats(-1e6, 1e6, allow_nan=False)
_NUMBER = st.one_of(_FLOAT, _FLOAT.map(np.float64), _FLOAT.map(np.float32), st.integers(-1000, 1000))


@st.composite
def _predictions(draw: st.DrawFn) -> Prediction:
    n = draw(st.integers(1, 3))
    interval = draw(st.booleans())
    ood = draw(st.one_of(st.none(), st.builds(
        OodStats, _NUMBER, _NUMBER, _NUMBER, _NUMBER, st.one_of(st.none(), _NUMBER), st.one_of(st.none(), _NUMBER))))
    return Prediction(
        seq=draw(st.integers(0, 2**32 - 1)), timestamp_us=draw(st.integers(0, 2**40)),
        names=tuple(f"t{i}" for i in range(n)), units=tuple(draw(st.sampled_from(["%", "%w/w", "°Brix"]))
                                                          for _ in range(n)),
        values=tuple(draw(_NUMBER) for _ in range(n)),
        lower=tuple(draw(_NUMBER) for _ in range(n)) if interval else None,
        upper=tuple(draw(_NUMBER) for _ in range(n)) if interval else None,
        interval_coverage=draw(st.one_of(st.none(), st.sampled_from([0.9, 0.95, 1, np.float64(0.5)]))),
        ood=ood, flags=tuple(draw(st.lists(st.sampled_from(list(Quality)), max_size=4))),
        reasons=tuple(draw(st.lists(st.sampled_from(["T2 3.5 > 2.1", "12 pixels at full scale"]), max_size=2))),
        compute_us=draw(st.one_of(_FLOAT.map(abs), _FLOAT.map(lambda v: np.float64(abs(v))))),
        model_id="tablets-api-cnn", model_version=draw(st.sampled_from(["1", "2026.11.3"])))


@settings(max_examples=400, deadline=None)
@given(pred=_predictions(), latency_ms=st.floats(-5.0, 50.0), boot=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       line=st.one_of(st.none(), st.builds(LinePosition, st.integers(0, 2**32 - 1), st.integers(0, 1023),
                                           st.integers(1024, 1024))),
       reference=st.one_of(st.none(), st.lists(st.one_of(st.none(), _FLOAT, st.just(math.nan)), max_size=3)))
def test_prediction_message_of_builds_what_it_built_field_by_field(
        pred: Prediction, latency_ms: float, boot: int | None, line: LinePosition | None,
        reference: list[float | None] | None) -> None:
    kwargs: dict[str, Any] = dict(device_id="hsi-01", latency_ms=latency_ms, reference=reference,
                                  device_boot_id=boot, line=line)
    built = prediction_message_of(pred, time_unix_s=T, **kwargs)
    expected = _reference(pred, **kwargs)
    assert encode(built) == encode(expected)
    assert _types(built) == _types(expected)
    challenger = challenger_prediction_message_of(pred, device_id="hsi-01", latency_ms=latency_ms,
                                                  serving_model_id="m", serving_model_version="1",
                                                  device_boot_id=boot, line=line, time_unix_s=T)
    assert {k: v for k, v in challenger.items() if k not in ("kind", "serving_model")} == \
        {k: v for k, v in expected.items() if k not in ("kind", "reference")}


@pytest.mark.parametrize(("where", "value", "error"), [
    ("value", math.nan, r"api: expected a finite number"),
    ("lower", math.inf, r"api\.lower: expected a finite number"),
    ("upper", "12", r"api\.upper: expected a number"),
    ("value", True, r"api: expected a number"),
])
def test_a_bad_number_is_still_refused_by_the_builder(where: str, value: Any, error: str) -> None:
    fields = {"value": 12.5, "lower": 12.0, "upper": 13.0, where: value}
    with pytest.raises(MessageError, match=error):
        prediction_message(device_id="d", seq=1, device_timestamp_us=0, model_id="m", model_version="1",
                           targets=[TargetValue("api", "%", **fields)], time_unix_s=T)
    pred = Prediction(seq=1, timestamp_us=0, names=("api",), units=("%",), values=(fields["value"],),
                      lower=(fields["lower"],), upper=(fields["upper"],), interval_coverage=None, ood=None, flags=(),
                      reasons=(), compute_us=1.0, model_id="m", model_version="1")
    with pytest.raises(MessageError, match=error):
        prediction_message_of(pred, device_id="d", latency_ms=1.0)
