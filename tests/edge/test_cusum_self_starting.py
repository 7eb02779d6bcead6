"""The self-starting prediction CUSUM (``[drift] cusum_baseline_frames``, ``CusumConfig.baseline_samples``): the line's
in-control level and spread learned from its first predictions, each judged meanwhile against those before it
(Hawkins 1987; Hawkins & Olwell 1998), then frozen.  Seeded streams, so every figure is deterministic; the figures
the bounds stand for are in docs/daemon.md.  Pure, except the last test (an in-process daemon's metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config_sections import DriftConfig
from edge.drift import CusumConfig, CusumDetector, DriftMonitor, DriftMonitorConfig, TrainingStats
from edge.drift.batch import Transition, cusum_run
from edge.drift.detectors import CusumState, cusum_step, cusum_z, t_to_normal
from edge.errors import ConfigError
from tests.support.daemon import DemoBundles, edge_config, offline_stream
from tests.support.inprocess import feed, inprocess_daemon

#: The bundle's figures of the tablets model and how far the tablets' calibrate rows are off them (their reference
#: values against the training rows': mean +0.285 sd, spread x 1.39), as in test_prediction_cusum_arl.py.
MEAN, STD = 188.4, 15.7
OFF_MEAN_SD, OFF_SPREAD = 0.285, 1.39
STREAMS, LENGTH = 40, 1000
#: The issue's goal: at most 1 % of in-distribution spectra under alert.
MAX_UNDER_ALERT = 0.01
MIN_FIXED_UNDER_ALERT = 0.10
#: Exact normal scores Phi^-1(F_t(t)) (scipy.stats, computed once) and the tolerance of Wallace's approximation.
EXACT_NORMAL_SCORES = [(3, 2.0, 1.4783057154924495), (10, -3.0, -2.4744632448419357), (30, 5.0, 4.230698405964612),
                       (149, 2.5, 2.470229046532006)]
WALLACE_ATOL = {3: 0.01, 10: 0.005, 30: 0.002, 149: 0.001}
#: A shift of one line standard deviation after the baseline: caught like the fixed CUSUM's (16 spectra on average).
MAX_MEDIAN_DELAY, MAX_P95_DELAY = 20, 40


def _default_baseline() -> int:
    return int(DriftConfig().cusum_baseline_frames)


def _config(baseline: int) -> CusumConfig:
    return CusumConfig(mean=MEAN, std=STD, k_sigma=0.5, h_sigma=8.0, warmup_samples=50, baseline_samples=baseline)


def _under_alert(transitions: list[Transition], n: int) -> np.ndarray:
    mask, up = np.zeros(n, dtype=bool), None
    for i, state, _score in transitions:
        if state.value == "raised":
            up = i
        elif up is not None:
            mask[up:i], up = True, None
    if up is not None:
        mask[up:] = True
    return mask


def _first_raise(transitions: list[Transition], after: int) -> int | None:
    return next((i for i, st, _ in transitions if st.value == "raised" and i >= after), None)


@pytest.mark.parametrize(("dof", "t", "exact"), EXACT_NORMAL_SCORES)
def test_t_to_normal_is_the_exact_normal_score_within_wallace_s_accuracy(dof: int, t: float, exact: float) -> None:
    assert t_to_normal(t, dof) == pytest.approx(exact, abs=WALLACE_ATOL[dof])


def test_learning_judges_each_prediction_against_those_before_it_then_freezes_the_baseline() -> None:
    cfg = CusumConfig(mean=0.0, std=1.0, baseline_samples=5, h_sigma=50.0)
    first = [10.0, 12.0, 14.0, 11.0, 13.0]
    state = CusumState()
    zs = []
    for v in first:
        zs.append(cusum_z(cfg, state, v))
        state, _ = cusum_step(cfg, state, v)
    # the first two carry no spread; the third: t = (14 - 11) / sqrt(2) * sqrt(2/3) with 1 degree of freedom
    assert zs[:2] == [0.0, 0.0]
    assert zs[2] == pytest.approx(t_to_normal(3.0 / np.sqrt(2.0) * np.sqrt(2.0 / 3.0), 1))
    assert zs[2] > 0.0 > zs[3]  # 11 is below the mean of 10, 12, 14
    assert not state.learning(cfg)
    mean, std = state.in_control(cfg)
    assert (mean, std) == pytest.approx((np.mean(first), np.std(first, ddof=1)))
    frozen = state.in_control(cfg)
    for v in (100.0, -50.0, 13.0):  # frozen: later predictions move nothing, each is judged against the baseline
        assert cusum_z(cfg, state, v) == pytest.approx((v - mean) / std)
        state, _ = cusum_step(cfg, state, v)
    assert state.in_control(cfg) == frozen and state.learned == 5


def test_a_line_off_the_bundle_s_figures_is_in_control_once_self_started() -> None:
    """The tablets' case: the line's level and spread differ from the bundle's; the fixed CUSUM alarms on a large
    share of spectra, the daemon's default self-starting one stays under the goal."""
    rng = np.random.default_rng(16)
    streams = [rng.normal(MEAN + OFF_MEAN_SD * STD, OFF_SPREAD * STD, LENGTH) for _ in range(STREAMS)]
    fixed = np.mean([_under_alert(cusum_run(_config(0), CusumState(), s)[1], LENGTH).mean() for s in streams])
    selfs = np.mean([_under_alert(cusum_run(_config(_default_baseline()), CusumState(), s)[1], LENGTH).mean()
                     for s in streams])
    assert fixed >= MIN_FIXED_UNDER_ALERT
    assert selfs <= MAX_UNDER_ALERT


@pytest.mark.parametrize("baseline", [150, "default"])
def test_a_shift_after_or_during_the_baseline_is_caught_in_line_standard_deviations(baseline: int | str) -> None:
    """A step of one line standard deviation at prediction 200: after a baseline of 150 (frozen), and during the
    default's learning window (judged against the 200 predictions before it)."""
    n = _default_baseline() if baseline == "default" else int(baseline)
    rng = np.random.default_rng(7)
    onset, line_sd = 200, OFF_SPREAD * STD
    delays = []
    for _ in range(100):
        values = rng.normal(MEAN + 5.0, line_sd, 400)
        values[onset:] += line_sd
        found = _first_raise(cusum_run(_config(n), CusumState(), values)[1], onset)
        delays.append(10_000 if found is None else found - onset)
    assert np.median(delays) <= MAX_MEDIAN_DELAY and np.percentile(delays, 95) <= MAX_P95_DELAY


def test_a_shift_inside_the_learning_window_is_raised_and_what_follows_is_not_learned() -> None:
    """The guard of the learning window: a step of 2 line standard deviations at prediction 60 of 150 stands out
    against the predictions before it, and the predictions under alert do not enter the baseline."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        values = rng.normal(MEAN, STD, 400)
        values[60:] += 2.0 * STD
        det = CusumDetector("prediction:assay", _config(150))
        raised_at = None
        for i, v in enumerate(values):
            ev = det.update(float(v), seq=i)
            if ev is not None and ev.state.value == "raised" and raised_at is None:
                raised_at, learned = i, det.baseline()["learned"]
        assert raised_at is not None and 60 <= raised_at < 90
        assert det.raised  # the step persists: so does the alert
        assert det.baseline() == {**det.baseline(), "learning": True, "learned": learned}


def test_a_new_model_relearns_the_baseline() -> None:
    config = DriftMonitorConfig(prediction=CusumConfig(warmup_samples=50, baseline_samples=30))
    mon = DriftMonitor(config, training=TrainingStats(("assay",), (MEAN,), (STD,)))
    for i, v in enumerate(np.random.default_rng(1).normal(200.0, 20.0, 40)):
        mon.observe_prediction(i, values=[float(v)])
    base = mon.snapshot()["prediction:assay"]["baseline"]
    assert base["learning"] is False and base["learned"] == 30 and base["mean"] == pytest.approx(200.0, abs=10.0)
    mon.set_training(TrainingStats(("assay",), (MEAN,), (STD,)), seq=40)
    assert mon.predictions[0].baseline() == {"learning": True, "learned": 0, "mean": 0.0, "std": STD * 0.01}


@pytest.mark.parametrize("baseline", [1, 2])
def test_too_short_a_baseline_is_refused(baseline: int) -> None:
    with pytest.raises(ConfigError, match=f"baseline_samples 0 .* or >= 3, got {baseline}"):
        CusumConfig(baseline_samples=baseline)


def test_the_config_refuses_a_baseline_too_short_to_learn_a_spread_from(tmp_path: Path,
                                                                        demo_bundles: DemoBundles) -> None:
    with pytest.raises(ConfigError, match=r"drift.cusum_baseline_frames: expected 0 .* or at least 20 .*, got 5"):
        edge_config(tmp_path, port_url="loop://", bundle_path=demo_bundles.v1, drift={"cusum_baseline_frames": 5})
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=demo_bundles.v1, drift={"cusum_baseline_frames": 0})
    assert cfg.drift.cusum_baseline_frames == 0


def test_the_metrics_show_whether_the_baseline_is_still_being_learned(tmp_path: Path,
                                                                       demo_bundles: DemoBundles) -> None:
    stream = offline_stream(40)
    daemon, _link = inprocess_daemon(tmp_path / "d", demo_bundles.v1, drift={"cusum_baseline_frames": 25})
    head = [stream["status"], stream["dark"], stream["white"]]
    feed(daemon, [*head, *stream["spectra"][:10]])
    gauges = daemon.metrics_payload(1.0)["gauges"]
    names = [n for n in gauges if n.startswith("drift_prediction:") and n.endswith("_baseline_learning")]
    assert names and all(gauges[n] == 1.0 for n in names)
    target = names[0][len("drift_"):-len("_baseline_learning")]
    assert gauges[f"drift_{target}_baseline_learned"] == 10.0
    feed(daemon, stream["spectra"][10:])
    gauges = daemon.metrics_payload(1.0)["gauges"]
    assert all(gauges[n] == 0.0 for n in names)
    assert gauges[f"drift_{target}_baseline_learned"] == 25.0
    assert gauges[f"drift_{target}_baseline_std"] > 0.0
