"""Tests of edge.frozen.built: the object a frozen dataclass's own ``__init__`` makes, field for field."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from edge.frozen import built
from edge.inference import Prediction
from edge.publish.messages import OodStats
from edge.publish.schema import Quality


def _fields() -> dict[str, object]:
    ood = OodStats(t2=1.5, q=0.25, t2_limit=9.0, q_limit=2.0, ae_score=None, ae_limit=None)
    return dict(seq=7, timestamp_us=1234, names=("moisture",), units=("%",), values=(12.5,), lower=(12.0,),
                upper=(13.0,), interval_coverage=0.9, ood=ood, flags=(Quality.SATURATED,),
                reasons=("1 saturated pixel(s)",), compute_us=3.5, model_id="m", model_version="1.0.0", level=0.4)


def test_built_is_the_dataclass_its_init_makes() -> None:
    fields = _fields()
    a, b = built(Prediction, **fields), Prediction(**fields)  # type: ignore[arg-type]  # the fields above
    assert type(a) is Prediction and a == b and hash(a) == hash(b) and repr(a) == repr(b)
    assert vars(a) == vars(b) and list(vars(a)) == list(vars(b))
    assert pickle.loads(pickle.dumps(a)) == b
    assert dataclasses.replace(a, seq=8) == dataclasses.replace(b, seq=8)
    assert a.with_instrument_alerts(("temperature",)) == b.with_instrument_alerts(("temperature",))
    assert built(OodStats, t2=1.0, q=2.0, t2_limit=3.0, q_limit=4.0, ae_score=None, ae_limit=None) == OodStats(
        t2=1.0, q=2.0, t2_limit=3.0, q_limit=4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.seq = 9  # type: ignore[misc]  # frozen: what the test checks


def test_built_refuses_missing_or_unknown_fields() -> None:
    with pytest.raises(TypeError, match=r"OodStats: expected the fields \['ae_limit', 'ae_score', 'q', "):
        built(OodStats, t2=1.0, q=2.0, t2_limit=3.0, q_limit=4.0)  # defaults are not filled in: every field given
    with pytest.raises(TypeError, match="got .*'extra'"):
        built(OodStats, t2=1.0, q=2.0, t2_limit=3.0, q_limit=4.0, ae_score=None, ae_limit=None, extra=1)
