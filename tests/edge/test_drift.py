"""Tests of edge.drift: EWMA detectors with hysteresis and the daemon's drift monitor (pure, no I/O)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import edge.drift.detectors
from edge.drift import (
    CusumConfig,
    CusumDetector,
    CusumState,
    DetectorState,
    DriftKind,
    DriftMonitor,
    DriftMonitorConfig,
    DriftState,
    EwmaConfig,
    EwmaDetector,
    TrainingStats,
    cusum_step,
    ewma_step,
)
from edge.errors import ConfigError

#: Samples of in-distribution noise fed before any shift.
N_STABLE = 500


def test_doctests() -> None:
    assert doctest.testmod(edge.drift.detectors).attempted > 0
    assert doctest.testmod(edge.drift.detectors).failed == 0


def _run(det: EwmaDetector, values: np.ndarray, start_seq: int = 0) -> list:
    events = []
    for i, v in enumerate(values):
        ev = det.update(float(v), seq=start_seq + i)
        if ev is not None:
            events.append(ev)
    return events


def test_ewma_step_is_pure_and_averages() -> None:
    cfg = EwmaConfig(alpha=0.5, raise_above=10.0, clear_below=5.0, min_raise_samples=1, min_clear_samples=1)
    s0 = DetectorState()
    s1, t1 = ewma_step(cfg, s0, 2.0)
    s2, t2 = ewma_step(cfg, s1, 4.0)
    assert s0 == DetectorState()  # unchanged
    assert (s1.ewma, s2.ewma, t1, t2) == (2.0, 3.0, None, None)
    assert s2.n_samples == 2


def test_non_finite_samples_are_ignored() -> None:
    cfg = EwmaConfig(alpha=0.5, raise_above=1.0, clear_below=0.5, min_raise_samples=1, min_clear_samples=1)
    state, _ = ewma_step(cfg, DetectorState(), 0.2)
    for bad in (float("nan"), float("inf"), -float("inf")):
        after, transition = ewma_step(cfg, state, bad)
        assert after == state and transition is None


def test_raise_needs_min_duration_and_clear_needs_hysteresis() -> None:
    cfg = EwmaConfig(alpha=1.0, raise_above=1.0, clear_below=0.5, min_raise_samples=3, min_clear_samples=2)
    det = EwmaDetector("x", cfg)
    # two samples above: not enough; a dip resets the run
    assert _run(det, np.array([2.0, 2.0, 0.0, 2.0, 2.0])) == []
    events = _run(det, np.array([2.0]), start_seq=5)
    assert [e.state for e in events] == [DriftState.RAISED] and events[0].seq == 5
    # between the thresholds: stays raised however long
    assert _run(det, np.full(50, 0.8)) == [] and det.raised
    events = _run(det, np.array([0.4, 0.4]), start_seq=100)
    assert [(e.state, e.seq) for e in events] == [(DriftState.CLEARED, 101)]
    assert not det.raised


def test_noisy_signal_near_threshold_does_not_flap() -> None:
    rng = np.random.default_rng(0)
    cfg = DriftMonitorConfig().ood
    det = EwmaDetector("ood_q", cfg)
    stable = np.abs(rng.normal(0.4, 0.15, N_STABLE))
    shifted = np.abs(rng.normal(2.0, 0.4, 300))
    back = np.abs(rng.normal(0.4, 0.15, N_STABLE))
    events = _run(det, np.concatenate([stable, shifted, back]))
    assert [e.state for e in events] == [DriftState.RAISED, DriftState.CLEARED]
    raised, cleared = events
    assert N_STABLE <= raised.seq < N_STABLE + 50
    assert N_STABLE + 300 <= cleared.seq < N_STABLE + 300 + 100
    assert raised.kind is DriftKind.MODEL and raised.threshold == cfg.raise_above
    d = raised.to_dict()
    assert d["state"] == "raised" and d["monitor"] == "ood_q"


def test_two_sided_detector_sees_shifts_both_ways() -> None:
    cfg = EwmaConfig(alpha=1.0, raise_above=2.0, clear_below=1.0, min_raise_samples=1, min_clear_samples=1,
                     center=10.0, scale=2.0, two_sided=True)
    det = EwmaDetector("p", cfg)
    assert [e.state for e in _run(det, np.array([10.0, 3.0]))] == [DriftState.RAISED]
    assert [e.state for e in _run(det, np.array([10.0]))] == [DriftState.CLEARED]
    assert [e.state for e in _run(det, np.array([17.0]))] == [DriftState.RAISED]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"raise_above": 1.0, "clear_below": 2.0},
        {"min_raise_samples": 0},
        {"min_clear_samples": 0},
        {"scale": 0.0},
    ],
)
def test_bad_detector_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="expected"):
        EwmaConfig(**kwargs)


def test_monitor_raises_on_q_shift_and_clears_after() -> None:
    rng = np.random.default_rng(1)
    mon = DriftMonitor()
    events = []
    for seq in range(1200):
        shifted = 400 <= seq < 700
        q = rng.gamma(2.0, 0.15) * (6.0 if shifted else 1.0)
        t2 = rng.gamma(2.0, 0.1)
        events += mon.observe_prediction(seq, t2_ratio=t2, q_ratio=q, values=[1.0])
    assert [(e.monitor, e.state) for e in events] == [("ood_q", DriftState.RAISED), ("ood_q", DriftState.CLEARED)]
    assert 400 <= events[0].seq < 450 and 700 <= events[1].seq < 800
    assert mon.active() == []


def test_monitor_watches_predictions_against_training_targets() -> None:
    rng = np.random.default_rng(2)
    mon = DriftMonitor(training=TrainingStats(("fat", "moisture"), (20.0, 60.0), (5.0, 3.0)))
    events = []
    for seq in range(600):
        fat = rng.normal(20.0, 5.0) + (20.0 if seq >= 300 else 0.0)  # +4 sigma from seq 300
        events += mon.observe_prediction(seq, values=[fat, rng.normal(60.0, 3.0)])
    assert [(e.monitor, e.state) for e in events] == [("prediction:fat", DriftState.RAISED)]
    assert events[0].seq >= 300
    assert mon.active() == ["prediction:fat"]
    snap = mon.snapshot()
    assert snap["prediction:fat"]["raised"] is True and snap["prediction:moisture"]["raised"] is False
    mon.set_training(None)  # new bundle: model side starts over
    assert mon.active() == []


def test_monitor_instrument_health() -> None:
    mon = DriftMonitor(DriftMonitorConfig(dark_max_fraction=0.2, reference_min_fraction=0.1, detector_temp_max_c=40.0))
    full = 65535.0
    assert mon.observe_dark(0, np.full(64, 1000.0), full_scale=full) == []
    ev = mon.observe_dark(1, np.full(64, 0.25 * full), full_scale=full)
    assert [(e.monitor, e.state, e.kind) for e in ev] == [("dark_level", DriftState.RAISED, DriftKind.INSTRUMENT)]
    assert mon.observe_dark(2, np.full(64, 0.19 * full), full_scale=full) == []  # inside the hysteresis band
    ev = mon.observe_dark(3, np.full(64, 0.1 * full), full_scale=full)
    assert [(e.monitor, e.state) for e in ev] == [("dark_level", DriftState.CLEARED)]
    assert mon.observe_dark(4, np.full(64, 0.9 * full), full_scale=None) == []  # unknown full scale: not judged

    assert mon.observe_reference(5, np.full(64, 0.6 * full), full_scale=full) == []
    ev = mon.observe_reference(6, np.full(64, 0.05 * full), full_scale=full)  # lamp nearly out
    assert [(e.monitor, e.state) for e in ev] == [("reference_intensity", DriftState.RAISED)]

    temps = [25.0] * 50 + [45.0] * 50 + [39.0] * 50 + [30.0] * 50
    ev = [e for i, t in enumerate(temps) for e in mon.observe_temperature(10 + i, t)]
    assert [(e.monitor, e.state) for e in ev] == [("detector_temp", DriftState.RAISED),
                                                  ("detector_temp", DriftState.CLEARED)]
    assert 60 <= ev[0].seq < 80 and ev[1].seq >= 160  # 39 degC is inside the band: clears only at 30 degC
    assert mon.observe_temperature(999, float("nan")) == []
    assert mon.active() == ["reference_intensity"]


def test_cusum_detects_small_persistent_shift_and_clears() -> None:
    rng = np.random.default_rng(3)
    det = CusumDetector("prediction:y", CusumConfig(mean=10.0, std=2.0, k_sigma=0.5, h_sigma=8.0))
    values = np.concatenate([rng.normal(10.0, 2.0, 1000), rng.normal(12.0, 2.0, 200), rng.normal(10.0, 2.0, 400)])
    events = _run(det, values)
    assert [e.state for e in events] == [DriftState.RAISED, DriftState.CLEARED]
    assert 1000 <= events[0].seq < 1100 and events[1].seq >= 1200
    assert events[0].threshold == 8.0 and events[1].threshold == 4.0


def test_cusum_step_is_pure_and_two_sided() -> None:
    cfg = CusumConfig(mean=0.0, std=1.0, k_sigma=0.5, h_sigma=2.0)
    s1, t1 = cusum_step(cfg, CusumState(), -3.0)
    assert (s1.upper, s1.lower, t1) == (0.0, 2.5, DriftState.RAISED)
    s2, t2 = cusum_step(cfg, s1, float("nan"))
    assert s2 == s1 and t2 is None
    s3, _ = cusum_step(cfg, s1, -100.0)
    assert s3.lower == cfg.cap_value == 4.0


@pytest.mark.parametrize(
    "kwargs",
    [{"std": 0.0}, {"k_sigma": -1.0}, {"h_sigma": 0.0}, {"clear_below": 9.0}, {"cap": 1.0}, {"min_clear_samples": 0}],
)
def test_bad_cusum_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="expected"):
        CusumConfig(**kwargs)


def test_warmup_delays_alerts() -> None:
    cfg = EwmaConfig(alpha=1.0, raise_above=1.0, clear_below=0.5, min_raise_samples=1, min_clear_samples=1,
                     warmup_samples=5)
    det = EwmaDetector("w", cfg)
    events = _run(det, np.full(10, 3.0))
    assert [(e.state, e.seq) for e in events] == [(DriftState.RAISED, 5)]


