"""The drift monitor of the daemon: every detector it runs, what each one watches, and their configuration.

What :class:`DriftMonitor` watches
----------------------------------
- ``ood_t2`` / ``ood_q``: Hotelling T2 and Q (SPE) divided by the bundle's limits.  In distribution both ratios
  average well below 1 (the limits are upper quantiles), so the EWMA of the ratio crossing 1 means that the
  typical spectrum now sits beyond the limit: a new interferent, a baseline change, a different product.
- ``prediction:<target>``: CUSUM of the prediction's z-score against the in-control mean and standard deviation
  of the predictions that the bundle records (``targets[i].training``: the deployed model's held-out predictions,
  line noise included); with the default k = 0.5, h = 8 its in-control average run length is about 9,500
  spectra per target (0.14 % of spectra under alert) and a 1-sigma shift is caught in 16 spectra on average.
  Self-starting (``prediction.baseline_samples = N``, the daemon's default: ``[drift] cusum_baseline_frames``):
  the mean and standard deviation are learned from the line's first N predictions instead, then frozen
  (:mod:`edge.drift.detectors`); the bundle's figures only set the floor of the learned spread.
- ``spectrum_level`` (kind ``signal``): self-starting CUSUM of each spectrum's level before the scatter
  corrections (:attr:`edge.inference.Prediction.level`: the mean absorbance over the model's range, for a pipeline
  from counts), learned from the first ``level.baseline_samples`` spectra after a start or a model change, then
  frozen.  SNV, MSC and derivatives remove a constant added to every pixel's absorbance before the model, T2, Q
  and the predictions see it (a baseline offset; a lamp that lost 30 % of its light while the white reference was
  not retaken adds 0.155), so this is the detector that sees them.
- ``dark_level``: mean dark / full scale, against a maximum fraction (light leak, detector warming).
- ``reference_intensity``: minimum fraction / (mean white reference / full scale): above 1 when the lamp or the
  optics lost too much light.
- ``ood_ae``: the autoencoder's reconstruction error divided by its limit, watched like T2 and Q (only when the
  bundle carries an autoencoder: it sees no sample otherwise).
- ``detector_temp``: detector temperature minus its maximum, degrees Celsius.

Everything here is pure: samples in, :class:`~edge.drift.detectors.DriftEvent` lists out, no clock and no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import numpy.typing as npt

from edge.drift.batch import DriftBatch, cusum_run, ewma_run
from edge.drift.detectors import (
    STD_FLOOR_FRACTION,
    CusumConfig,
    CusumDetector,
    Detector,
    DriftEvent,
    DriftKind,
    DriftState,
    EwmaConfig,
    EwmaDetector,
)
from edge.errors import ConfigError
from edge.validation import require_number

__all__ = ["TrainingStats", "DriftMonitorConfig", "DriftMonitor", "LEVEL_H_SIGMA", "LEVEL_BASELINE_SAMPLES",
           "LEVEL_STD_FLOOR", "level_cusum"]

#: Decision threshold of the ``spectrum_level`` CUSUM, in learned standard deviations (k = 0.5), chosen on the
#: in-distribution streams of ``spectro-bench drift`` (the demo and the tablets, 1 and 64 scans; docs/daemon.md).
LEVEL_H_SIGMA = 12.0
#: Spectra the ``spectrum_level`` CUSUM learns its in-control mean and spread from.
LEVEL_BASELINE_SAMPLES = 500
#: Floor of the learned spread of the level (absorbance): a line of identical spectra does not divide by zero.
LEVEL_STD_FLOOR = 1e-5


def level_cusum(*, h_sigma: float = LEVEL_H_SIGMA, baseline_samples: int = LEVEL_BASELINE_SAMPLES,
                k_sigma: float = 0.5, warmup_samples: int = 50) -> CusumConfig:
    """The ``spectrum_level`` CUSUM's configuration: self-starting from ``baseline_samples`` spectra, its learned
    spread floored at :data:`LEVEL_STD_FLOOR`."""
    return CusumConfig(std=LEVEL_STD_FLOOR / STD_FLOOR_FRACTION, k_sigma=k_sigma, h_sigma=h_sigma,
                       warmup_samples=warmup_samples, baseline_samples=baseline_samples)


@dataclass(frozen=True)
class TrainingStats:
    """Distribution of the training targets: per-target mean and standard deviation, in the targets' units."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.mean) == len(self.std):
            raise ConfigError(
                f"expected as many target means and stds as names ({len(self.names)}), "
                f"got {len(self.mean)} and {len(self.std)}"
            )


@dataclass(frozen=True)
class DriftMonitorConfig:
    """Detectors of a :class:`DriftMonitor`; defaults suit a stream of a few to a few hundred spectra per second.

    Parameters
    ----------
    ood : EwmaConfig
        For T2 / limit and Q / limit (one detector each).
    prediction : CusumConfig
        For each target (``mean``/``std`` are replaced by the training statistics of that target).  Its default
        runs on those figures (``baseline_samples = 0``); the daemon's ``[drift] cusum_baseline_frames`` (default
        500) makes it self-starting.
    dark_max_fraction : float or None
        Alert when the mean dark exceeds this fraction of the detector's full scale (``None``: not watched).
    reference_min_fraction : float or None
        Alert when the mean white reference falls below this fraction of full scale.
    detector_temp_max_c : float or None
        Alert when the detector temperature exceeds this, degrees Celsius.
    instrument_clear_fraction : float
        Instrument alerts clear at this fraction of their threshold's ratio (hysteresis), e.g. 0.8: a dark alert
        raised above 20 % of full scale clears below 16 %.
    detector_temp_clear_c : float
        The temperature alert clears this many degrees below the maximum.
    detector_temp_alpha : float
        EWMA weight of one temperature reading.
    detector_temp_min_samples : int
        Consecutive readings needed to raise or clear the temperature alert.
    monitor_predictions : bool
        Run the prediction CUSUMs when the bundle records its training targets' statistics.
    level : CusumConfig or None
        The ``spectrum_level`` CUSUM (None: not run); always self-starting (``baseline_samples >= 3``), ``std``
        only sets the floor of the learned spread (:data:`~edge.drift.detectors.STD_FLOOR_FRACTION` of it).
    """

    ood: EwmaConfig = field(default_factory=lambda: EwmaConfig(0.05, 1.0, 0.8, 10, 20, warmup_samples=50))
    prediction: CusumConfig = field(default_factory=lambda: CusumConfig(k_sigma=0.5, h_sigma=8.0, warmup_samples=50))
    dark_max_fraction: float | None = 0.2
    reference_min_fraction: float | None = 0.1
    detector_temp_max_c: float | None = 60.0
    instrument_clear_fraction: float = 0.8
    detector_temp_clear_c: float = 2.0
    detector_temp_alpha: float = 0.2
    detector_temp_min_samples: int = 5
    monitor_predictions: bool = True
    level: CusumConfig | None = field(default_factory=lambda: level_cusum())

    def __post_init__(self) -> None:
        require_number(self.instrument_clear_fraction, "drift instrument_clear_fraction", ConfigError, minimum=0.0,
                       min_exclusive=True, maximum=1.0)
        if self.level is not None and not self.level.baseline_samples:
            raise ConfigError("expected the spectrum_level CUSUM self-starting (baseline_samples >= 3): no bundle "
                              "records the in-control level, got baseline_samples=0")


class DriftMonitor:
    """All the drift detectors of one daemon; feed it samples, get :class:`DriftEvent` lists back.

    Parameters
    ----------
    config : DriftMonitorConfig
        Detector parameters.
    training : TrainingStats or None
        Training-target statistics; without them predictions are not monitored.
    """

    def __init__(self, config: DriftMonitorConfig | None = None, *, training: TrainingStats | None = None) -> None:
        self.config = c = config or DriftMonitorConfig()
        self.t2 = EwmaDetector("ood_t2", c.ood, description="EWMA of T2/limit")
        self.q = EwmaDetector("ood_q", c.ood, description="EWMA of Q/limit")
        self.ae = EwmaDetector("ood_ae", c.ood, description="EWMA of autoencoder error/limit")
        hyst = c.instrument_clear_fraction
        self.dark = EwmaDetector(
            "dark_level", EwmaConfig(1.0, 1.0, hyst, 1, 1), kind=DriftKind.INSTRUMENT,
            description="dark level / maximum",
        )
        self.reference = EwmaDetector(
            "reference_intensity", EwmaConfig(1.0, 1.0, hyst, 1, 1), kind=DriftKind.INSTRUMENT,
            description="minimum / white reference level",
        )
        n = c.detector_temp_min_samples
        self.temp = EwmaDetector(
            "detector_temp", EwmaConfig(c.detector_temp_alpha, 0.0, -c.detector_temp_clear_c, n, n),
            kind=DriftKind.INSTRUMENT, description="detector temperature above its maximum (degC)",
        )
        self.predictions: list[CusumDetector] = []
        #: The ``spectrum_level`` CUSUM, or None when ``config.level`` is None.
        self.level = None if c.level is None else CusumDetector(
            "spectrum_level", c.level, kind=DriftKind.SIGNAL, description="CUSUM of the spectrum's level (sigma)")
        self.training: TrainingStats | None = None
        self.set_training(training)

    def set_training(self, training: TrainingStats | None, *, seq: int = 0,
                     reason: str = "a new model is in service") -> list[DriftEvent]:
        """Start over on the model side for a new bundle (its training distribution and OOD limits); the
        ``spectrum_level`` CUSUM learns its baseline again.

        Returns the ``cleared`` events of the model-side alerts that were raised (their detectors start over, so
        each such alert ends here, explicitly, with ``reason``, never silently); ``seq`` is the last frame's.
        """
        ended = [ev for det in (self.t2, self.q, self.ae, *self.predictions, *self._level())
                 if (ev := det.end_alert(seq, reason)) is not None]
        self.t2.reset()
        self.q.reset()
        self.ae.reset()
        for det in self._level():  # its baseline is learned again: the new model may crop another range
            det.reset()
        self.training = training
        self.predictions = []
        if training is None or not self.config.monitor_predictions:
            return ended
        for name, mu, sd in zip(training.names, training.mean, training.std):
            if not (math.isfinite(mu) and math.isfinite(sd) and sd > 0.0):
                continue
            cfg = replace(self.config.prediction, mean=mu, std=sd)
            self.predictions.append(
                CusumDetector(f"prediction:{name}", cfg, description="CUSUM of the z-score (sigma)")
            )
        return ended

    def baseline_detectors(self) -> list[CusumDetector]:
        """The self-starting detectors, which learn their in-control baseline from the line: the prediction CUSUMs
        when ``prediction.baseline_samples`` is set, and the ``spectrum_level`` CUSUM."""
        return [d for d in (*self.predictions, *self._level()) if d.config.baseline_samples]

    def learning(self) -> list[str]:
        """Names of the self-starting detectors still learning their baseline."""
        return [d.name for d in self.baseline_detectors() if d.cusum_state.learning(d.config)]

    def select_baselines(self, names: Sequence[str] | None = None) -> list[CusumDetector]:
        """The self-starting detectors ``names`` says (None: all of them): ``prediction`` stands for every
        prediction CUSUM, ``prediction:<target>`` and ``spectrum_level`` for one.

        Raises
        ------
        ValueError
            A name that is no self-starting detector of this monitor, or none runs.
        """
        learned = self.baseline_detectors()
        known = [d.name for d in learned]
        if not learned:
            raise ValueError("expected a self-starting drift detector to reset, got none: the prediction CUSUMs run "
                             "on the bundle's figures (drift.cusum_baseline_frames = 0) or watch no target, and the "
                             "spectrum_level CUSUM is off (drift.spectrum_level_h_sigma = 0)")
        if names is None:
            return learned
        chosen: dict[str, CusumDetector] = {}
        for name in names:
            found = [d for d in learned if d.name == name or (name == "prediction" and d in self.predictions)]
            if not found:
                raise ValueError(f"expected detectors among {['prediction', *known]} (the self-starting ones), got "
                                 f"{name!r}")
            chosen.update((d.name, d) for d in found)
        return [d for d in learned if d.name in chosen]

    def reset_baselines(self, names: Sequence[str] | None = None, *, seq: int = 0,
                        reason: str = "the baseline is learned again") -> tuple[list[str], list[DriftEvent]]:
        """Make the self-starting detectors ``names`` (:meth:`select_baselines`; None: all) learn their baseline
        again from the next spectra, as after a start: a product change or a lamp recalibration gives the line a
        new in-control level.  Nothing changes when a name is refused.

        Returns the names reset and the ``cleared`` events of their alerts that were raised (each ends here,
        explicitly, with ``reason``); ``seq`` is the last frame's.

        Raises
        ------
        ValueError
            As :meth:`select_baselines`.
        """
        chosen = self.select_baselines(names)
        ended = [ev for det in chosen if (ev := det.end_alert(seq, reason)) is not None]
        for det in chosen:
            det.reset()
        return [d.name for d in chosen], ended

    def observe_prediction(
        self,
        seq: int,
        *,
        t2_ratio: float | None = None,
        q_ratio: float | None = None,
        values: Sequence[float] | npt.NDArray[np.float64] | None = None,
        ae_ratio: float | None = None,
        level: float | None = None,
    ) -> list[DriftEvent]:
        """Feed the OOD ratios (statistic / limit), predicted values and level of one frame.

        Parameters
        ----------
        seq : int
            Frame sequence number.
        t2_ratio, q_ratio : float or None
            Hotelling T2 and Q divided by their limits (dimensionless); ``None`` when the bundle has no OOD model.
        values : array_like, shape (n_targets,), or None
            Predicted values in the targets' units.
        ae_ratio : float or None
            The autoencoder's reconstruction error divided by its limit; ``None`` when the bundle has none.
        level : float or None
            The spectrum's level (:attr:`edge.inference.Prediction.level`); ``None``: not known.
        """
        events: list[DriftEvent] = []
        for det, value in ((self.t2, t2_ratio), (self.q, q_ratio), (self.ae, ae_ratio)):
            if value is not None:
                ev = det.update(float(value), seq=seq)
                if ev is not None:
                    events.append(ev)
        if values is not None and self.predictions:
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
            for pdet, v in zip(self.predictions, arr):
                ev2 = pdet.update(float(v), seq=seq)
                if ev2 is not None:
                    events.append(ev2)
        if level is not None and self.level is not None:
            ev3 = self.level.update(float(level), seq=seq)
            if ev3 is not None:
                events.append(ev3)
        return events

    def observe_spectra(
        self,
        seqs: Sequence[int],
        temps_c: Sequence[float] | npt.NDArray[np.float64],
        predictions: Sequence[tuple[float | None, float | None, Sequence[float], float | None] | None],
        levels: Sequence[float | None] | None = None,
    ) -> DriftBatch:
        """Feed a batch of spectra at once, exactly as, for each spectrum ``i`` in order,
        ``observe_temperature(seqs[i], temps_c[i])`` and then, unless ``predictions[i]`` is None (a spectrum that
        made no prediction), ``observe_prediction(seqs[i], t2_ratio=..., q_ratio=..., values=..., ae_ratio=...,
        level=levels[i])`` from ``predictions[i] = (t2_ratio, q_ratio, values, ae_ratio)`` would (``levels``: None,
        none known): the same events at the same seqs with the same scores, the same states after
        (:mod:`edge.drift.batch`).

        Returns
        -------
        DriftBatch
            Each call's events, the :meth:`active` list right after it, and the instrument alerts raised once each
            spectrum's temperature was seen.
        """
        n = len(seqs)
        dets = self.detectors()  # t2, q, ae, the predictions, the level, then dark, reference, temp
        state = [d.raised for d in dets]  # before the batch
        temp_j = len(dets) - 1
        before = [d.name for d in (self.dark, self.reference) if d.raised]  # no dark or white frame in a batch
        temp_raised = self.temp.raised
        found: list[tuple[int, int, int, DriftEvent]] = []  # (spectrum, call: 0 temperature, 1 prediction, det, ev)
        limit = self.config.detector_temp_max_c
        if limit is not None and n:
            temps = np.asarray(temps_c, dtype=np.float64).reshape(-1) - limit  # observe_temperature's temp_c - limit
            found += [(i, 0, temp_j, ev) for i, ev in _run(self.temp, temps, seqs)]
        width = len(self.predictions)
        nan = math.nan
        samples = np.full((3 + width + len(self._level()), n), nan)  # t2, q, ae, each target, the level; NaN: none
        if self.level is not None and levels is not None:
            samples[3 + width] = [nan if p is None or v is None else v for p, v in zip(predictions, levels)]
        samples[0] = [nan if p is None or p[0] is None else p[0] for p in predictions]
        samples[1] = [nan if p is None or p[1] is None else p[1] for p in predictions]
        samples[2] = [nan if p is None or p[3] is None else p[3] for p in predictions]
        if width:
            at = [i for i, p in enumerate(predictions) if p is not None and p[2] is not None]
            try:
                block = np.array([predictions[i][2] for i in at], dtype=np.float64)  # type: ignore[index]  # not None
            except ValueError:  # rows of different lengths
                block = np.empty(0)
            if block.ndim == 2 and block.shape[1] >= width:  # the usual case: one flat row of values per spectrum
                samples[3:3 + width, at] = block[:, :width].T
            else:  # as observe_prediction: each row flattened, its first values to the first detectors
                for i in at:
                    row = np.asarray(predictions[i][2], dtype=np.float64).reshape(-1)[:width]  # type: ignore[index]  # not None (at)
                    samples[3:3 + row.size, i] = row
        for j, det in enumerate((self.t2, self.q, self.ae, *self.predictions, *self._level())):  # dets[j]
            found += [(i, 1, j, ev) for i, ev in _run(det, samples[j], seqs)]
        found.sort(key=lambda f: f[:3])  # the order of the calls one by one, and of the detectors in each call
        temperature: dict[int, tuple[list[DriftEvent], list[str]]] = {}
        prediction: dict[int, tuple[list[DriftEvent], list[str]]] = {}
        flips: dict[int, bool] = {}
        for k, (i, call, j, ev) in enumerate(found):
            state[j] = ev.state is DriftState.RAISED
            if j == temp_j:
                flips[i] = state[j]
            calls = temperature if call == 0 else prediction
            calls.setdefault(i, ([], []))[0].append(ev)
            if k + 1 == len(found) or found[k + 1][:2] != (i, call):  # the call's last event: active() after it
                calls[i][1].extend(d.name for d, r in zip(dets, state) if r)
        instrument: list[list[str]] = []
        with_temp = [*before, self.temp.name]
        for i in range(n):
            temp_raised = flips.get(i, temp_raised)
            instrument.append(with_temp if temp_raised else before)
        return DriftBatch(temperature, prediction, instrument)

    def observe_dark(self, seq: int, counts: npt.ArrayLike, *, full_scale: float | None) -> list[DriftEvent]:
        """Feed a dark spectrum (counts, shape (n_pixels,)); ``full_scale`` is the ADC maximum (``None``: unknown)."""
        limit = self.config.dark_max_fraction
        if limit is None or not full_scale or limit <= 0.0:
            return []
        level = float(np.mean(np.asarray(counts, dtype=np.float64))) / full_scale
        ev = self.dark.update(level / limit, seq=seq)
        return [ev] if ev is not None else []

    def observe_reference(self, seq: int, counts: npt.ArrayLike, *, full_scale: float | None) -> list[DriftEvent]:
        """Feed a white-reference spectrum (counts, shape (n_pixels,)); see :meth:`observe_dark`."""
        limit = self.config.reference_min_fraction
        if limit is None or not full_scale or limit <= 0.0:
            return []
        level = float(np.mean(np.asarray(counts, dtype=np.float64))) / full_scale
        ev = self.reference.update(limit / max(level, 1e-12), seq=seq)
        return [ev] if ev is not None else []

    def observe_temperature(self, seq: int, temp_c: float) -> list[DriftEvent]:
        """Feed one detector temperature reading, degrees Celsius (NaN = no sensor, ignored)."""
        limit = self.config.detector_temp_max_c
        if limit is None or not math.isfinite(temp_c):
            return []
        ev = self.temp.update(float(temp_c) - limit, seq=seq)
        return [ev] if ev is not None else []

    def _level(self) -> tuple[CusumDetector, ...]:
        """The ``spectrum_level`` detector, when it runs."""
        return () if self.level is None else (self.level,)

    def detectors(self) -> list[Detector]:
        """Every detector, model side first, then the level, then the instrument."""
        return [self.t2, self.q, self.ae, *self.predictions, *self._level(), self.dark, self.reference, self.temp]

    def active(self) -> list[str]:
        """Names of the monitors whose alert is raised now."""
        return [d.name for d in self.detectors() if d.raised]

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Score and state of each detector that has seen a sample (for the metrics message); a prediction or level
        CUSUM adds its ``baseline`` (:meth:`~edge.drift.detectors.CusumDetector.baseline`: whether a self-starting one
        is still learning, the samples learned, the mean and std it standardises against)."""
        out: dict[str, dict[str, object]] = {}
        for det in self.detectors():
            score = det.score()
            if score is None:
                continue
            out[det.name] = {"score": round(float(score), 4), "raised": det.raised, "samples": det.state.n_samples}
            if isinstance(det, CusumDetector):
                out[det.name]["baseline"] = det.baseline()
        return out


def _run(det: Detector, values: npt.NDArray[np.float64], seqs: Sequence[int]) -> list[tuple[int, DriftEvent]]:
    """Feed ``values`` (shape (n,), NaN: no sample) to one detector at once; its events with their positions."""
    if isinstance(det, CusumDetector):
        det.cusum_state, found = cusum_run(det.config, det.cusum_state, values)
    else:
        assert isinstance(det, EwmaDetector)
        det.state, found = ewma_run(det.config, det.state, values)
    return [(i, det.event(st, seqs[i], score)) for i, st, score in found]
