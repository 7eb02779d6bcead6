"""Drift detectors over a batch at once (edge.drift.batch, DriftMonitor.observe_spectra): exactly the events, seqs,
scores, active lists and states of feeding the same samples one at a time, on random streams cut into random
batches, and in the daemon, where a batch of spectra publishes the messages of one frame at a time."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.drift import (
    CusumConfig,
    CusumState,
    DetectorState,
    DriftMonitor,
    DriftMonitorConfig,
    EwmaConfig,
    TrainingStats,
    cusum_step,
    ewma_step,
    level_cusum,
)
from edge.drift.batch import cusum_run, ewma_run
from tests.support.daemon import DemoBundles, RecordingLink, offline_stream
from tests.support.inprocess import feed, inprocess_daemon

#: Samples as a stream carries them: mostly plausible ratios and values, some NaN/inf (ignored by the detectors),
#: some huge (overflow), some missing (None: no OOD model, a rejected spectrum).
_SAMPLE = st.one_of(
    st.floats(min_value=-4.0, max_value=6.0, allow_nan=False),
    st.floats(min_value=-4.0, max_value=6.0, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0]),
)
_CUTS = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6)

_EWMA = st.builds(
    EwmaConfig, alpha=st.sampled_from([0.05, 0.3, 0.5, 1.0]), raise_above=st.sampled_from([0.5, 1.0, 2.0]),
    clear_below=st.sampled_from([-1.0, 0.0, 0.5]), min_raise_samples=st.integers(1, 4),
    min_clear_samples=st.integers(1, 4), center=st.sampled_from([0.0, 0.5]), scale=st.sampled_from([1.0, 0.7]),
    two_sided=st.booleans(), warmup_samples=st.integers(0, 5))
_CUSUM = st.builds(
    CusumConfig, mean=st.sampled_from([0.0, 1.5]), std=st.sampled_from([1.0, 0.4]),
    k_sigma=st.sampled_from([0.0, 0.5]), h_sigma=st.sampled_from([1.0, 3.0]), min_clear_samples=st.integers(1, 4),
    warmup_samples=st.integers(0, 5), baseline_samples=st.sampled_from([0, 3, 7, 30]))


def _batches(values: list[float], cuts: list[int]) -> list[list[float]]:
    out, start = [], 0
    for n in cuts * (len(values) // max(1, sum(cuts)) + 1):
        if start >= len(values):
            break
        out.append(values[start:start + n])
        start += n
    return out


def _over_batches(run: Any, config: Any, state: Any, values: list[float], cuts: list[int]) -> tuple[Any, list[Any]]:
    """``run`` (ewma_run or cusum_run) over ``values`` cut into the batches of ``cuts``: the final state and every
    transition found, as (index in ``values``, transition, score)."""
    got: list[Any] = []
    offset = 0
    for chunk in _batches(values, cuts):
        state, found = run(config, state, np.asarray(chunk, dtype=np.float64))
        got += [(offset + i, t, s) for i, t, s in found]
        offset += len(chunk)
    return state, got


@settings(max_examples=300, deadline=None)
@given(config=_EWMA, values=st.lists(_SAMPLE, max_size=120), cuts=_CUTS)
def test_ewma_over_batches_equals_one_sample_at_a_time(config: EwmaConfig, values: list[float],
                                                       cuts: list[int]) -> None:
    one, expected = DetectorState(), []
    for i, v in enumerate(values):
        one, transition = ewma_step(config, one, v)
        if transition is not None:
            expected.append((i, transition, one.score(config)))
    batch, got = _over_batches(ewma_run, config, DetectorState(), values, cuts)
    assert got == expected  # same transitions at the same samples, same scores to the bit
    assert batch == one


@settings(max_examples=300, deadline=None)
@given(config=_CUSUM, values=st.lists(_SAMPLE, max_size=120), cuts=_CUTS)
def test_cusum_over_batches_equals_one_sample_at_a_time(config: CusumConfig, values: list[float],
                                                        cuts: list[int]) -> None:
    one, expected = CusumState(), []
    for i, v in enumerate(values):
        one, transition = cusum_step(config, one, v)
        if transition is not None:
            expected.append((i, transition, one.base.ewma))
    batch, got = _over_batches(cusum_run, config, CusumState(), values, cuts)
    assert got == expected
    assert repr(batch) == repr(one)  # every float to the bit; NaN (1e308 - -1e308 learned) is not == NaN


_MONITOR = DriftMonitorConfig(
    ood=EwmaConfig(0.3, 1.0, 0.8, 2, 3, warmup_samples=4),
    prediction=CusumConfig(k_sigma=0.5, h_sigma=2.0, warmup_samples=4),
    detector_temp_max_c=40.0, detector_temp_min_samples=2, detector_temp_alpha=0.6,
    level=level_cusum(h_sigma=2.0, baseline_samples=5, warmup_samples=4))  # the spectrum level, from 5 spectra
#: The same with self-starting prediction CUSUMs (a baseline learned from the first 6 predictions of each target).
_SELF_STARTING = dataclasses.replace(_MONITOR, prediction=dataclasses.replace(_MONITOR.prediction, baseline_samples=6))
_TRAINING = TrainingStats(("api", "moisture", "flat"), (10.0, 3.0, 1.0), (1.0, 0.5, 0.0))  # "flat": not monitored
_SPECTRUM = st.tuples(
    st.one_of(st.floats(30.0, 50.0), st.just(math.nan)),  # detector temperature (NaN: no sensor)
    st.one_of(st.none(), st.tuples(  # None: the spectrum made no prediction (rejected)
        st.one_of(st.none(), st.floats(0.0, 3.0)), st.one_of(st.none(), st.floats(0.0, 3.0), st.just(math.nan)),
        st.lists(st.floats(0.0, 20.0), min_size=1, max_size=3),
        st.one_of(st.none(), st.floats(0.0, 3.0), st.just(math.nan)))),  # the autoencoder's ratio (None: no AE)
    st.one_of(st.none(), st.floats(0.0, 3.0), st.just(math.nan)))  # the spectrum's level (None: not known)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(_SPECTRUM, max_size=150), cuts=_CUTS, dark_raised=st.booleans(), self_starting=st.booleans())
def test_monitor_batch_equals_its_calls_one_spectrum_at_a_time(stream: list[Any], cuts: list[int],
                                                               dark_raised: bool, self_starting: bool) -> None:
    config = _SELF_STARTING if self_starting else _MONITOR
    one, batch = DriftMonitor(config, training=_TRAINING), DriftMonitor(config, training=_TRAINING)
    for m in (one, batch):
        if dark_raised:  # an instrument alert raised before the batch stays in every spectrum's flags
            m.observe_dark(0, [60000.0], full_scale=65535.0)
    offset = 0
    for chunk in _batches(stream, cuts):
        seqs = list(range(offset + 1, offset + 1 + len(chunk)))
        offset += len(chunk)
        expected_t, expected_p, expected_instrument = {}, {}, []
        for i, (temp, pred, level) in enumerate(chunk):
            events = one.observe_temperature(seqs[i], temp)
            if events:
                expected_t[i] = (events, one.active())
            expected_instrument.append([d.name for d in (one.dark, one.reference, one.temp) if d.raised])
            if pred is not None:
                events = one.observe_prediction(seqs[i], t2_ratio=pred[0], q_ratio=pred[1], values=pred[2],
                                                ae_ratio=pred[3], level=level)
                if events:
                    expected_p[i] = (events, one.active())
        got = batch.observe_spectra(seqs, [t for t, _, _ in chunk], [p for _, p, _ in chunk],
                                    [lv for _, _, lv in chunk])
        assert dict(got.temperature) == expected_t
        assert dict(got.prediction) == expected_p
        assert [got.instrument_at(i) for i in range(len(chunk))] == expected_instrument
        assert [d.state for d in batch.detectors()] == [d.state for d in one.detectors()]
        assert batch.snapshot() == one.snapshot()


def test_the_monitor_stream_above_does_raise_and_clear_alerts() -> None:
    """The property above compares batches that do hold events (not only quiet streams)."""
    m = DriftMonitor(_MONITOR, training=_TRAINING)
    temps = [30.0] * 5 + [45.0] * 5 + [30.0] * 5
    preds = [(0.1, 0.1, [10.0, 3.0], 0.1)] * 5 + [(2.5, 2.5, [15.0, 3.0], 2.5)] * 5 + [(0.1, 0.1, [10.0, 3.0], 0.1)] * 5
    levels = [1.0, 1.1, 0.9, 1.05, 0.95] + [3.0] * 5 + [1.0] * 5
    got = m.observe_spectra(list(range(15)), temps, preds, levels)
    names = {ev.monitor: ev.state.value for evs, _ in [*got.temperature.values(), *got.prediction.values()]
             for ev in evs}
    assert {"detector_temp", "ood_t2", "ood_q", "ood_ae", "prediction:api", "spectrum_level"} <= set(names)
    assert got.instrument_at(7) == ["detector_temp"] and got.instrument_at(0) == []


# ------------------------------------------------------------------------------------------------ daemon
def _run(tmp: Path, bundle: Path, frames: list[Any], *, batched: bool) -> RecordingLink:
    daemon, link = inprocess_daemon(tmp, bundle,
                                    drift={"window_frames": 40, "min_frames": 5, "detector_temp_max_c": 35.0})
    feed(daemon, frames, batched=batched)
    return link


def test_daemon_batch_publishes_the_drift_messages_and_flags_of_one_frame_at_a_time(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream = offline_stream(150, drift_at=60)
    spectra = [dataclasses.replace(s, detector_temp_c=40.0 if 30 <= i < 45 or 100 <= i < 103 else 25.0)
               for i, s in enumerate(stream["spectra"])]  # the detector overheats inside batches
    frames = [stream["status"], stream["dark"], stream["white"], *spectra]
    single = _run(tmp_path / "single", demo_bundles.v1, frames, batched=False)
    batch = _run(tmp_path / "batched", demo_bundles.v1, frames, batched=True)
    volatile = ("time_unix_s", "latency_ms", "compute_us")
    stable = [[(k.value, {f: v for f, v in m.items() if f not in volatile}) for k, m, _ in link.messages
               if k.value != "status"] for link in (single, batch)]
    assert stable[1] == stable[0]
    drift = [m for k, m in stable[0] if k == "drift"]
    assert {(m["detector"], m["event"]) for m in drift} >= {("detector_temp", "raised"), ("detector_temp", "cleared")}
    assert any(m["active_alerts"] == ["detector_temp"] for m in drift)
    flagged = [m["seq"] for k, m in stable[0] if k == "prediction" and "instrument_fault" in m["quality_flags"]]
    assert flagged and flagged == sorted(flagged)


def test_the_batch_doctest_holds() -> None:
    import doctest

    import edge.drift.batch

    result = doctest.testmod(edge.drift.batch)
    assert result.attempted > 0 and result.failed == 0
