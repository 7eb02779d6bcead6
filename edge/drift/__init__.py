"""Drift detection: EWMA and CUSUM statistics with hysteresis over OOD scores, predictions and instrument health.

Everything here is pure: plain floats and arrays in, frozen :class:`DriftEvent` values out, no clock and no I/O
(the daemon supplies sequence numbers and publishes the events). :mod:`edge.drift.detectors` holds the statistics
(how an alert is raised and cleared), :mod:`edge.drift.batch` the same over a batch of samples at once,
:mod:`edge.drift.monitor` the :class:`DriftMonitor` of the daemon (what is
watched) and its :class:`DriftMonitorConfig`.
"""

from __future__ import annotations

from edge.drift.batch import DriftBatch
from edge.drift.detectors import (
    CusumConfig,
    CusumDetector,
    CusumState,
    Detector,
    DetectorState,
    DriftEvent,
    DriftKind,
    DriftState,
    EwmaConfig,
    EwmaDetector,
    cusum_step,
    ewma_step,
)
from edge.drift.monitor import (
    LEVEL_BASELINE_SAMPLES,
    LEVEL_H_SIGMA,
    DriftMonitor,
    DriftMonitorConfig,
    TrainingStats,
    level_cusum,
)

__all__ = [
    "DriftState",
    "DriftKind",
    "EwmaConfig",
    "DriftEvent",
    "DetectorState",
    "ewma_step",
    "Detector",
    "EwmaDetector",
    "CusumConfig",
    "CusumState",
    "cusum_step",
    "CusumDetector",
    "DriftMonitorConfig",
    "DriftMonitor",
    "DriftBatch",
    "TrainingStats",
    "LEVEL_H_SIGMA",
    "LEVEL_BASELINE_SAMPLES",
    "level_cusum",
]
