"""Tests of edge.intervals: interval shapes, dict round trip, clear errors, and a trainer-built bundle's intervals
applied by the inference engine as written."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.bundle.archive import INTERVALS, read_members
from edge.errors import BundleError, InputContractError
from edge.inference import InferenceEngine, Prediction
from edge.intervals import IntervalModel
from edge.references import ReferenceSet, ReferenceSpectrum
from firmware_bridge.frames import Status
from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer
from tests.support.trained import DEMO_V1, committed


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


def test_a_trainer_built_bundle_gives_the_intervals_it_carries() -> None:
    """``spectro-train fit examples/demo.toml`` (the committed DEMO_V1): the engine's bounds on simulator frames are
    each value -/+ the half-width written in the bundle's intervals.json, with its coverage, target by target."""
    path = committed(DEMO_V1)
    written = json.loads(read_members(path)[0][INTERVALS])
    engine = InferenceEngine(load_bundle(path))
    dev = VirtualSpectrometer.from_config(SimulatorConfig(seed=0, synthetic_samples=500, synthetic_channels=256))
    refs, wl = ReferenceSet(), None
    for f in dev.session_start():
        if isinstance(f, Status):
            wl = f.wavelengths_nm()
        else:
            refs = refs.with_spectrum(ReferenceSpectrum.from_frame(f, captured_at_s=time.time()))
    preds = [o for o in (engine.process(dev.stream_next()[0], refs, wavelengths_nm=wl) for _ in range(8))
             if isinstance(o, Prediction)]
    assert len(preds) == 8
    q_hat = written["q_hat"]
    assert len(q_hat) == 3 and all(q > 0 for q in q_hat)
    for p in preds:
        assert p.lower is not None and p.upper is not None and p.interval_coverage == written["coverage"]
        assert list(p.lower) == [v - q for v, q in zip(p.values, q_hat)]
        assert list(p.upper) == [v + q for v, q in zip(p.values, q_hat)]
