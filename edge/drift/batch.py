"""Drift statistics over a batch of samples at once, with exactly the events and states of one sample at a time.

The daemon predicts the spectra of a micro-batch or a LINE frame together; feeding its detectors one sample at a
time (:func:`edge.drift.detectors.ewma_step`, :func:`~edge.drift.detectors.cusum_step`) builds two frozen states
per sample and detector.  Here a detector runs over a whole batch: the recurrences (the EWMA, the CUSUM sums) step
through plain floats with the very same arithmetic, in the same order, so every average, sum and score is the same
float as one by one; the scores, the threshold tests and the hysteresis run lengths are numpy over the batch, and
only the samples where an alert is raised or cleared are looked at one by one.  ``tests/edge/test_drift_batch.py``
compares both ways on random streams (events, seqs, scores and final states).

Everything here is pure: arrays in, states and transitions out.

>>> from edge.drift.detectors import EwmaConfig, DetectorState
>>> cfg = EwmaConfig(alpha=1.0, raise_above=1.0, clear_below=0.5, min_raise_samples=2, min_clear_samples=2)
>>> state, transitions = ewma_run(cfg, DetectorState(), np.array([0.2, 1.5, 1.6, 1.7, 0.1, 0.1]))
>>> [(i, t.value) for i, t, _score in transitions], state.raised
([(2, 'raised'), (5, 'cleared')], False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from edge.drift.detectors import (
    CusumConfig,
    CusumState,
    DetectorState,
    DriftEvent,
    DriftState,
    EwmaConfig,
    cusum_step,
)

__all__ = ["Transition", "ewma_run", "cusum_run", "hysteresis_run", "DriftBatch"]

#: A transition in a batch: the sample's position in the batch, the new state and the score that completed it.
Transition = tuple[int, DriftState, float]


def _run_lengths(cond: npt.NDArray[np.bool_], run0: int) -> npt.NDArray[np.int64]:
    """Length of the run of True ending at each position (``run0`` more for a run that starts the array)."""
    idx = np.arange(cond.size, dtype=np.int64)
    last_false = np.maximum.accumulate(np.where(cond, -1, idx))
    return np.where(last_false < 0, run0 + idx + 1, idx - last_false)


def hysteresis_run(scores: npt.NDArray[np.float64], n_samples: npt.NDArray[np.int64], raised: bool, run: int,
                   raise_above: float, clear_below: float, min_raise: int, min_clear: int,
                   warmup: int) -> tuple[bool, int, list[tuple[int, DriftState]]]:
    """The raise/clear state machine of :func:`edge.drift.detectors._hysteresis` over the scores of a batch.

    Parameters
    ----------
    scores : ndarray, shape (n,)
        Each sample's score.
    n_samples : ndarray, shape (n,)
        The detector's sample count after each sample (for the warm-up).
    raised, run : bool, int
        The state and run length before the batch.

    Returns
    -------
    raised, run : bool, int
        After the batch.
    transitions : list of (position, DriftState)
        In order.
    """
    out: list[tuple[int, DriftState]] = []
    pos, n = 0, scores.size
    while pos < n:
        if raised:
            cond = scores[pos:] < clear_below
            need = min_clear
        else:
            cond = (scores[pos:] > raise_above) & (n_samples[pos:] > warmup)
            need = min_raise
        runs = _run_lengths(cond, run)
        hits = np.flatnonzero(runs >= need)
        if hits.size == 0:
            run = int(runs[-1])
            break
        j = int(hits[0])
        out.append((pos + j, DriftState.CLEARED if raised else DriftState.RAISED))
        raised, run, pos = not raised, 0, pos + j + 1
    return raised, run, out


def ewma_run(config: EwmaConfig, state: DetectorState,
             values: npt.NDArray[np.float64]) -> tuple[DetectorState, list[Transition]]:
    """:func:`edge.drift.detectors.ewma_step` over ``values`` (shape (n,); non-finite samples are ignored).

    Returns the state after the batch and its transitions (position in ``values``, new state, score).
    """
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        return state, []
    xs = values[finite].tolist()
    a = config.alpha
    b = 1.0 - a  # ewma_step's (1.0 - config.alpha) * ewma + config.alpha * value, term for term
    m = xs[0] if state.ewma is None else b * state.ewma + a * xs[0]
    means = [m]
    append = means.append
    for x in xs[1:]:
        m = b * m + a * x
        append(m)
    with np.errstate(over="ignore", invalid="ignore"):  # as Python floats: an overflow gives inf, silently
        scores = (np.asarray(means, dtype=np.float64) - config.center) / config.scale
    if config.two_sided:
        scores = np.abs(scores)
    n0 = state.n_samples
    counts = n0 + 1 + np.arange(finite.size, dtype=np.int64)
    raised, run, found = hysteresis_run(scores, counts, state.raised, state.run_length, config.raise_above,
                                        config.clear_below, config.min_raise_samples, config.min_clear_samples,
                                        config.warmup_samples)
    end = DetectorState(means[-1], raised, run, n0 + finite.size)
    return end, [(int(finite[j]), st, float(scores[j])) for j, st in found]


def cusum_run(config: CusumConfig, state: CusumState,
              values: npt.NDArray[np.float64]) -> tuple[CusumState, list[Transition]]:
    """:func:`edge.drift.detectors.cusum_step` over ``values`` (shape (n,); non-finite samples are ignored).

    A self-starting CUSUM still learning its baseline steps through :func:`~edge.drift.detectors.cusum_step` one
    sample at a time until its baseline is frozen (at most ``baseline_samples`` learned samples plus those under
    alert meanwhile, once per model); the rest of the batch runs against the frozen figures as below.
    """
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        return state, []
    learning: list[Transition] = []
    start = 0
    while start < finite.size and state.learning(config):
        i = int(finite[start])
        state, transition = cusum_step(config, state, float(values[i]))
        if transition is not None and state.base.ewma is not None:  # the step's score (never None after a step)
            learning.append((i, transition, state.base.ewma))
        start += 1
    if start == finite.size:
        return state, learning
    finite = finite[start:]
    mean, std = state.in_control(config)
    with np.errstate(over="ignore", invalid="ignore"):  # as Python floats: an overflow gives inf, silently
        z = ((values[finite] - mean) / std).tolist()  # cusum_step's (value - mean) / std
    cap, k = config.cap_value, config.k_sigma
    u, lo = state.upper, state.lower
    score_list: list[float] = []
    append = score_list.append
    for zi in z:  # cusum_step's min(cap, max(0.0, s)) for each sum and max(upper, lower), written out
        v = u + zi - k
        v = v if v > 0.0 else 0.0
        u = v if v < cap else cap
        v = lo - zi - k
        v = v if v > 0.0 else 0.0
        lo = v if v < cap else cap
        append(lo if lo > u else u)
    scores = np.asarray(score_list, dtype=np.float64)
    base = state.base
    counts = base.n_samples + 1 + np.arange(finite.size, dtype=np.int64)
    raised, run, found = hysteresis_run(scores, counts, base.raised, base.run_length, config.h_sigma,
                                        config.clear_threshold, 1, config.min_clear_samples, config.warmup_samples)
    end = CusumState(u, lo, DetectorState(score_list[-1], raised, run, base.n_samples + finite.size),
                     state.learned, state.learned_mean, state.learned_m2)
    return end, [*learning, *((int(finite[j]), st, score_list[j]) for j, st in found)]


@dataclass(frozen=True)
class DriftBatch:
    """What :meth:`edge.drift.DriftMonitor.observe_spectra` found in a batch of spectra, spectrum by spectrum, as
    its ``observe_temperature`` and ``observe_prediction`` calls would have told it one spectrum at a time.

    ``temperature[i]`` and ``prediction[i]`` hold, for the spectra with events, the events of that call and the
    monitor's :meth:`~edge.drift.DriftMonitor.active` list right after it; ``instrument[i]`` the instrument alerts
    raised once spectrum ``i``'s temperature was seen (the alerts its prediction is flagged with; lists shared
    between spectra: :meth:`instrument_at` gives a copy).
    """

    temperature: Mapping[int, tuple[list[DriftEvent], list[str]]]
    prediction: Mapping[int, tuple[list[DriftEvent], list[str]]]
    instrument: Sequence[list[str]]

    def temperature_at(self, i: int) -> tuple[list[DriftEvent], list[str] | None]:
        """The temperature events of spectrum ``i`` and the active alerts after them (``([], None)``: none)."""
        return self.temperature.get(i, ([], None))

    def prediction_at(self, i: int) -> tuple[list[DriftEvent], list[str] | None]:
        """The prediction events of spectrum ``i`` and the active alerts after them (``([], None)``: none)."""
        return self.prediction.get(i, ([], None))

    def instrument_at(self, i: int) -> list[str]:
        """The instrument alerts raised once spectrum ``i``'s temperature was seen (``DriftMonitor``'s ``dark``,
        ``reference`` and ``temp`` detectors, in that order)."""
        return list(self.instrument[i])
