"""The daemon's default prediction CUSUM (``DriftMonitor``'s ``prediction:<target>``, k = 0.5, h = 8 sigma) against its
documented in-control figures (docs/daemon.md, docs/training.md): fed in-control predictions (exchangeable, with
the mean and std of the bundle's ``training`` figures) it holds far under the issue's 1 % of spectra under alert,
and it catches a shift of one standard deviation within a few tens of spectra; fed predictions whose mean and
spread are off by what the tablets' ``calibrate`` rows are off from the training rows' reference values (mean
+0.285 sd, spread x 1.39), it alarms on a large share: the reason the trainer centres it on the predictions and
the drift benchmark reports whether its stream is in control.  Pure: no bundle, no TensorFlow."""

from __future__ import annotations

import numpy as np

from edge.drift import DriftMonitor, TrainingStats
from edge.drift.batch import cusum_run
from edge.drift.detectors import CusumState

MEAN, STD = 188.4, 15.7
STREAMS, LENGTH = 40, 2500
#: Documented: about 0.14 % of in-control spectra under alert (in-control ARL about 9,500 spectra, each alarm
#: holding at least (2h - h/2) / k + 5 = 29 spectra); the bound leaves room for the sampling of 100,000 spectra.
MAX_IN_CONTROL_UNDER_ALERT = 0.005
MIN_IN_CONTROL_RUN = 3000
#: Documented: a 1-sigma shift is caught in 16 spectra on average, 30 at the 95th percentile.
SHIFT_SIGMA, MAX_SHIFT_DELAY = 1.0, 40
ONSET = 200
#: The tablets' calibrate rows against the training rows' reference values.
OFF_MEAN_SD, OFF_SPREAD = 0.285, 1.39
MIN_OFF_UNDER_ALERT = 0.10


def _under_alert(values: np.ndarray) -> tuple[float, int, int | None]:
    """Share of spectra under the alert, alarms raised and the first alarm's index, by the monitor's own detector."""
    monitor = DriftMonitor(training=TrainingStats(names=("assay_mg",), mean=(MEAN,), std=(STD,)))
    (det,) = monitor.predictions
    _state, transitions = cusum_run(det.config, CusumState(), values)
    under, up, raised, first = 0, None, 0, None
    for i, state, _score in transitions:
        if state.value == "raised":
            up, raised = i, raised + 1
            first = i if first is None else first
        elif up is not None:
            under, up = under + i - up, None
    if up is not None:
        under += values.size - up
    return under / values.size, raised, first


def _stream(rng: np.random.Generator, shift_sd: float = 0.0, spread: float = 1.0) -> np.ndarray:
    return MEAN + STD * (shift_sd + spread * rng.standard_normal(LENGTH))


def test_in_control_predictions_stay_near_the_documented_false_alarm_rate() -> None:
    rng = np.random.default_rng(0)
    results = [_under_alert(_stream(rng)) for _ in range(STREAMS)]
    share = float(np.mean([r[0] for r in results]))
    alarms = sum(r[1] for r in results)
    assert share <= MAX_IN_CONTROL_UNDER_ALERT, share
    assert STREAMS * LENGTH / max(alarms, 1) >= MIN_IN_CONTROL_RUN, alarms


def test_a_one_sigma_shift_of_the_predictions_is_caught() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):  # in control past the monitor's warm-up (50 spectra), then shifted
        values = np.concatenate([_stream(rng)[:ONSET], _stream(rng, shift_sd=SHIFT_SIGMA)])
        _share, _alarms, first = _under_alert(values)
        assert first is not None and 0 <= first - ONSET <= MAX_SHIFT_DELAY, first


def test_predictions_off_the_in_control_mean_and_spread_alarm_on_many_spectra() -> None:
    rng = np.random.default_rng(2)
    share = float(np.mean([_under_alert(_stream(rng, OFF_MEAN_SD, OFF_SPREAD))[0] for _ in range(10)]))
    assert share >= MIN_OFF_UNDER_ALERT, share
