"""Tests of edge.intervals: interval shapes, dict round trip and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.errors import BundleError, InputContractError
from edge.intervals import IntervalModel


def test_intervals_for_single_and_batch_predictions() -> None:
    m = IntervalModel(q_hat=np.array([1.0, 0.5]), coverage=0.9, target_names=("a", "b"), n_calibration=40)
    lo, hi = m.interval(np.array([10.0, 20.0]))
    assert lo.tolist() == [9.0, 19.5] and hi.tolist() == [11.0, 20.5]
    lo, hi = m.interval(np.zeros((3, 2)))
    assert lo.shape == (3, 2) and np.all(hi - lo == np.array([2.0, 1.0]))
    with pytest.raises(InputContractError, match="expected predictions with 2 targets in the last axis"):
        m.interval(np.zeros((3, 3)))


def test_single_target_accepts_scalars_and_vectors() -> None:
    m = IntervalModel(q_hat=np.array([2.0]), coverage=0.8)
    lo, hi = m.interval(5.0)
    assert (float(lo), float(hi)) == (3.0, 7.0)
    lo, _ = m.interval(np.array([1.0, 2.0, 3.0]))
    assert lo.tolist() == [-1.0, 0.0, 1.0]


def test_round_trip() -> None:
    m = IntervalModel(q_hat=np.array([1.25, 3.0]), coverage=0.95, target_names=("a", "b"), n_calibration=40)
    back = IntervalModel.from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False)))
    assert back.q_hat.tolist() == [1.25, 3.0]
    assert (back.coverage, back.target_names, back.n_calibration) == (0.95, ("a", "b"), 40)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"format_version": 1, "q_hat": [1.0], "coverage": 1.2}, "expected 0 < coverage < 1"),
        ({"format_version": 1, "q_hat": [-1.0], "coverage": 0.9}, "expected finite half-widths >= 0"),
        ({"format_version": 1, "q_hat": [1.0], "coverage": 0.9, "target_names": ["a", "b"]}, "expected 1 target name"),
        ({"format_version": 2, "q_hat": [1.0], "coverage": 0.9}, "format_version: expected"),
        ({"format_version": 1, "coverage": 0.9}, r"missing key\(s\) q_hat"),
        ({"format_version": 1, "q_hat": ["x"], "coverage": 0.9}, "malformed values"),
    ],
)
def test_bad_dicts(d: dict[str, object], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        IntervalModel.from_dict(d)
