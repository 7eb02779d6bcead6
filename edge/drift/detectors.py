"""Drift statistics: EWMA and CUSUM detectors with hysteresis that turn samples into raise and clear events.

Everything here is pure: plain floats in, frozen :class:`DriftEvent` values out, no clock and no I/O (the caller
supplies sequence numbers and publishes the events).

How it works
------------
- :class:`EwmaDetector` (OOD statistics, instrument health): an exponentially weighted moving average
  ``m_k = (1 - a) m_{k-1} + a x_k`` becomes a score ``s = (m - center) / scale`` (its absolute value when
  two-sided).  The alert is *raised* once ``s > raise_above`` for ``min_raise_samples`` consecutive samples and
  *cleared* once ``s < clear_below`` for ``min_clear_samples`` consecutive samples.
- :class:`CusumDetector` (predictions): a two-sided CUSUM on standardised values ``z = (x - mean) / std`` with
  slack ``k``: ``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)``; raised when ``max(S+, S-) > h``,
  cleared when it falls below ``clear_below`` (default ``h / 2``).  The sums are capped at ``cap`` (default
  ``2 h``) so that the end of a long drift is noticed within ``(cap - clear_below) / k`` samples.
- Self-starting CUSUM (``baseline_samples = N > 0``): the in-control mean and standard deviation are not given
  but learned from the first ``N`` samples (Hawkins, "Self-starting CUSUM charts for location and scale", The
  Statistician 36, 1987; Hawkins & Olwell, *Cumulative Sum Charts and Charting for Quality Improvement*, Springer
  1998, section 7).  While learning, sample ``n + 1`` is standardised against the mean ``m_n`` and standard
  deviation ``s_n`` of the ``n`` samples before it: ``t = (x - m_n) / s_n * sqrt(n / (n + 1))`` follows Student's
  t with ``n - 1`` degrees of freedom in control, and its normal score (:func:`t_to_normal`) feeds the same sums,
  so a shift inside the learning window is still seen (against the samples before it).  Samples seen while the
  alert is raised are not learned.  After ``N`` learned samples the mean and standard deviation are frozen and
  the CUSUM runs on ``(x - mean_N) / std_N``; the spread never goes below ``std * STD_FLOOR_FRACTION`` (``std``:
  the configured in-control figure).

The gap between the raise and clear thresholds, the minimum durations and a warm-up (no alert before
``warmup_samples``) are the hysteresis that keeps an alert from flapping.  EWMA suits the OOD ratios (one
number of state, a score in the units of the input: a ratio to a limit); CUSUM is the classic detector of a small
persistent shift of a mean, which is what a drifting prediction looks like.

>>> det = EwmaDetector("demo", EwmaConfig(alpha=1.0, raise_above=1.0, clear_below=0.5,
...                                        min_raise_samples=2, min_clear_samples=2))
>>> [e.state.value for v in (0.2, 1.5, 1.6, 1.7, 0.1, 0.1) if (e := det.update(v, seq=0)) is not None]
['raised', 'cleared']
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from edge.errors import ConfigError
from edge.validation import require_number, require_range

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
    "STD_FLOOR_FRACTION",
    "t_to_normal",
    "cusum_z",
]

#: A self-starting CUSUM's learned standard deviation is never taken below this fraction of the configured one
#: (a line of identical predictions, e.g. a quantised output that does not move, would otherwise divide by zero).
STD_FLOOR_FRACTION = 0.01
#: The fewest samples a self-starting CUSUM may learn its baseline from (two give the first spread).
MIN_BASELINE_SAMPLES = 3


class DriftState(str, enum.Enum):
    """State a drift alert moves to; the value is what goes into the JSON message."""

    RAISED = "raised"
    CLEARED = "cleared"


class DriftKind(str, enum.Enum):
    """What a monitor watches: the model's inputs/outputs, the instrument itself, or the signal the spectrometer
    measures before the model's preprocessing (each spectrum's level: the sample's presentation or the instrument's
    light path, which scatter corrections hide from the model)."""

    MODEL = "model"
    INSTRUMENT = "instrument"
    SIGNAL = "signal"


@dataclass(frozen=True)
class EwmaConfig:
    """Parameters of one EWMA detector with hysteresis.

    Parameters
    ----------
    alpha : float
        Weight of the newest sample in the moving average, in (0, 1]; the time constant is about ``1/alpha``
        samples.
    raise_above : float
        Score above which (for ``min_raise_samples`` consecutive samples) the alert is raised.
    clear_below : float
        Score below which (for ``min_clear_samples`` consecutive samples) a raised alert is cleared; must be
        ``<= raise_above``.
    min_raise_samples, min_clear_samples : int
        Minimum durations, in samples (>= 1).
    center, scale : float
        The score is ``(ewma - center) / scale``; ``scale > 0``.
    two_sided : bool
        Use the absolute value of the score (deviation either way is drift).
    warmup_samples : int
        No alert is raised before this many samples have been seen.
    """

    alpha: float = 0.1
    raise_above: float = 1.0
    clear_below: float = 0.7
    min_raise_samples: int = 10
    min_clear_samples: int = 20
    center: float = 0.0
    scale: float = 1.0
    two_sided: bool = False
    warmup_samples: int = 0

    def __post_init__(self) -> None:
        require_number(self.alpha, "drift alpha", ConfigError, minimum=0.0, min_exclusive=True, maximum=1.0)
        if not self.clear_below <= self.raise_above:
            raise ConfigError(
                f"expected drift clear_below <= raise_above, got clear_below={self.clear_below} "
                f"and raise_above={self.raise_above}"
            )
        if self.min_raise_samples < 1 or self.min_clear_samples < 1:
            raise ConfigError(
                f"expected drift min_raise_samples and min_clear_samples >= 1, got "
                f"{self.min_raise_samples} and {self.min_clear_samples}"
            )
        require_number(self.scale, "drift scale", ConfigError, minimum=0.0, min_exclusive=True)
        require_range(self.warmup_samples, "drift warmup_samples", ConfigError, minimum=0)


@dataclass(frozen=True)
class DriftEvent:
    """A drift alert being raised or cleared.

    Parameters
    ----------
    monitor : str
        Name of the monitor (``ood_t2``, ``ood_q``, ``ood_ae``, ``prediction:<target>``, ``spectrum_level``,
        ``dark_level``, ``reference_intensity``, ``detector_temp``).
    kind : DriftKind
        Model, instrument or signal.
    state : DriftState
        Raised or cleared.
    seq : int
        Sequence number of the frame whose sample completed the transition.
    score : float
        The detector's score at the transition (dimensionless; see :class:`EwmaConfig`).
    threshold : float
        The threshold that was crossed (``raise_above`` when raised, ``clear_below`` when cleared).
    samples : int
        Number of consecutive samples beyond the threshold that completed the transition.
    detail : str
        One human-readable sentence.
    """

    monitor: str
    kind: DriftKind
    state: DriftState
    seq: int
    score: float
    threshold: float
    samples: int
    detail: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict of the event."""
        return {
            "monitor": self.monitor,
            "kind": self.kind.value,
            "state": self.state.value,
            "seq": self.seq,
            "score": self.score,
            "threshold": self.threshold,
            "samples": self.samples,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class DetectorState:
    """State of one EWMA detector between samples: the average, whether raised, and the current run length."""

    ewma: float | None = None
    raised: bool = False
    run_length: int = 0
    n_samples: int = 0

    def score(self, config: EwmaConfig) -> float | None:
        """Current score, or ``None`` before the first sample."""
        if self.ewma is None:
            return None
        s = (self.ewma - config.center) / config.scale
        return abs(s) if config.two_sided else s


def ewma_step(config: EwmaConfig, state: DetectorState, value: float) -> tuple[DetectorState, DriftState | None]:
    """Advance a detector by one sample.

    Parameters
    ----------
    config : EwmaConfig
        Detector parameters.
    state : DetectorState
        State before the sample.
    value : float
        New sample; a non-finite value is ignored (state returned unchanged).

    Returns
    -------
    state : DetectorState
        State after the sample.
    transition : DriftState or None
        ``RAISED`` or ``CLEARED`` when this sample completed a transition, else ``None``.
    """
    if not math.isfinite(value):
        return state, None
    ewma = value if state.ewma is None else (1.0 - config.alpha) * state.ewma + config.alpha * value
    new = DetectorState(ewma, state.raised, state.run_length, state.n_samples + 1)  # not replace(): hot path
    score = new.score(config)
    assert score is not None
    return _hysteresis(new, score, config.raise_above, config.clear_below, config.min_raise_samples,
                       config.min_clear_samples, config.warmup_samples)


def _hysteresis(
    new: DetectorState, score: float, raise_above: float, clear_below: float, min_raise: int, min_clear: int,
    warmup: int,
) -> tuple[DetectorState, DriftState | None]:
    """Shared raise/clear state machine of both detectors (``new`` already holds the updated statistic)."""
    if not new.raised:
        run = new.run_length + 1 if score > raise_above and new.n_samples > warmup else 0
        if run >= min_raise:
            return DetectorState(new.ewma, True, 0, new.n_samples), DriftState.RAISED
        return DetectorState(new.ewma, False, run, new.n_samples), None
    run = new.run_length + 1 if score < clear_below else 0
    if run >= min_clear:
        return DetectorState(new.ewma, False, 0, new.n_samples), DriftState.CLEARED
    return DetectorState(new.ewma, True, run, new.n_samples), None


class Detector:
    """Common part of the named detectors: state, events, reset."""

    name: str
    kind: DriftKind
    description: str
    state: DetectorState

    @property
    def raised(self) -> bool:
        """Whether the alert is currently raised."""
        return self.state.raised

    def score(self) -> float | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _thresholds(self) -> tuple[float, float, int, int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def event(self, transition: DriftState, seq: int, score: float | None = None) -> DriftEvent:
        """The event of ``transition`` at ``seq``; ``score`` is the score that completed it (default: the current
        one, for a transition made by the last sample)."""
        if score is None:
            score = self.score()
        assert score is not None
        raise_above, clear_below, min_raise, min_clear = self._thresholds()
        if transition is DriftState.RAISED:
            threshold, samples, verb = raise_above, min_raise, "above"
        else:
            threshold, samples, verb = clear_below, min_clear, "below"
        detail = f"{self.name}: {self.description} {score:.3g} {verb} {threshold:.3g} for {samples} samples"
        return DriftEvent(self.name, self.kind, transition, int(seq), float(score), float(threshold), samples, detail)

    def reset(self) -> None:
        """Forget the history (a new model or a new baseline); a raised alert is dropped silently (use
        :meth:`end_alert` first to say so)."""
        self.state = DetectorState()

    def end_alert(self, seq: int, reason: str) -> DriftEvent | None:
        """The ``cleared`` event of a raised alert that ends for ``reason`` (not because the statistic came back),
        or None when no alert is raised.  The state is left as it is: :meth:`reset` follows."""
        if not self.raised:
            return None
        score = self.score()
        _raise_above, clear_below, _min_raise, _min_clear = self._thresholds()
        return DriftEvent(self.name, self.kind, DriftState.CLEARED, int(seq),
                          float(score) if score is not None and math.isfinite(score) else 0.0, float(clear_below), 0,
                          f"{self.name}: alert ended without the statistic clearing: {reason}")


class EwmaDetector(Detector):
    """A named EWMA detector with hysteresis that turns samples into :class:`DriftEvent` values.

    Parameters
    ----------
    name : str
        Monitor name carried by its events.
    config : EwmaConfig
        Parameters.
    kind : DriftKind
        Model, instrument or signal.
    description : str
        What the score means, used in the events' ``detail``.
    """

    def __init__(
        self, name: str, config: EwmaConfig, *, kind: DriftKind = DriftKind.MODEL, description: str = "score"
    ) -> None:
        self.name = name
        self.config = config
        self.kind = kind
        self.description = description
        self.state = DetectorState()

    def score(self) -> float | None:
        """Current score (``None`` before the first sample)."""
        return self.state.score(self.config)

    def _thresholds(self) -> tuple[float, float, int, int]:
        c = self.config
        return c.raise_above, c.clear_below, c.min_raise_samples, c.min_clear_samples

    def update(self, value: float, *, seq: int) -> DriftEvent | None:
        """Feed one sample; return the event when it completed a transition."""
        self.state, transition = ewma_step(self.config, self.state, float(value))
        return None if transition is None else self.event(transition, seq)


@dataclass(frozen=True)
class CusumConfig:
    """Parameters of a two-sided CUSUM on standardised values.

    Parameters
    ----------
    mean, std : float
        In-control mean and standard deviation of the input (``std > 0``).
    k_sigma : float
        Slack per sample, in standard deviations (typically half the shift to detect).
    h_sigma : float
        Decision threshold, in standard deviations.
    clear_below : float or None
        The alert clears once the larger sum falls below this (default ``h_sigma / 2``).
    cap : float or None
        Upper bound of each sum (default ``2 * h_sigma``).
    min_clear_samples : int
        Consecutive samples below ``clear_below`` needed to clear.
    warmup_samples : int
        No alert is raised before this many samples.
    baseline_samples : int
        0: ``mean`` and ``std`` are the in-control figures.  ``N >= 3``: self-starting (see the module's
        docstring): the in-control mean and standard deviation are learned from the first ``N`` samples seen while
        no alert is raised, then frozen; ``std`` only sets the floor of the learned spread.
    """

    mean: float = 0.0
    std: float = 1.0
    k_sigma: float = 0.5
    h_sigma: float = 8.0
    clear_below: float | None = None
    cap: float | None = None
    min_clear_samples: int = 5
    warmup_samples: int = 0
    baseline_samples: int = 0

    def __post_init__(self) -> None:
        if not (self.std > 0.0 and math.isfinite(self.std) and math.isfinite(self.mean)):
            raise ConfigError(f"expected a finite CUSUM mean and std > 0, got mean={self.mean}, std={self.std}")
        if self.k_sigma < 0.0 or not self.h_sigma > 0.0:
            raise ConfigError(f"expected CUSUM k_sigma >= 0 and h_sigma > 0, got {self.k_sigma} and {self.h_sigma}")
        if self.clear_below is not None and not 0.0 <= self.clear_below <= self.h_sigma:
            raise ConfigError(f"expected CUSUM clear_below in [0, h_sigma={self.h_sigma}], got {self.clear_below}")
        if self.cap is not None and self.cap < self.h_sigma:
            raise ConfigError(f"expected CUSUM cap >= h_sigma={self.h_sigma}, got {self.cap}")
        if self.min_clear_samples < 1 or self.warmup_samples < 0:
            raise ConfigError(
                f"expected CUSUM min_clear_samples >= 1 and warmup_samples >= 0, got {self.min_clear_samples} "
                f"and {self.warmup_samples}"
            )
        if self.baseline_samples != 0 and self.baseline_samples < MIN_BASELINE_SAMPLES:
            raise ConfigError(f"expected CUSUM baseline_samples 0 (fixed in-control figures) or >= "
                              f"{MIN_BASELINE_SAMPLES}, got {self.baseline_samples}")

    @property
    def clear_threshold(self) -> float:
        """Effective clear threshold."""
        return self.h_sigma / 2.0 if self.clear_below is None else self.clear_below

    @property
    def cap_value(self) -> float:
        """Effective cap of the sums."""
        return 2.0 * self.h_sigma if self.cap is None else self.cap


@dataclass(frozen=True)
class CusumState:
    """Upper and lower cumulative sums (in standard deviations) plus the shared hysteresis state, and, for a
    self-starting CUSUM, the samples learned so far with their mean and sum of squared deviations (Welford)."""

    upper: float = 0.0
    lower: float = 0.0
    base: DetectorState = field(default_factory=DetectorState)
    learned: int = 0
    learned_mean: float = 0.0
    learned_m2: float = 0.0

    def learning(self, config: CusumConfig) -> bool:
        """Whether a self-starting CUSUM is still learning its baseline (always False for fixed figures)."""
        return self.learned < config.baseline_samples

    def in_control(self, config: CusumConfig) -> tuple[float, float]:
        """The in-control mean and standard deviation the samples are standardised against now: the configured
        ones, or the learned ones (the running estimates while learning; floored, see :data:`STD_FLOOR_FRACTION`)."""
        if not config.baseline_samples:
            return config.mean, config.std
        floor = config.std * STD_FLOOR_FRACTION
        if self.learned < 2:
            return self.learned_mean, floor
        var = self.learned_m2 / (self.learned - 1)
        return self.learned_mean, max(floor, math.sqrt(var) if var > 0.0 else 0.0)  # NaN (overflow): the floor


def t_to_normal(t: float, dof: int) -> float:
    """Normal score of a Student-t value with ``dof`` degrees of freedom: ``Phi^-1(F_t(t))``, by Wallace's
    approximation (Ann. Math. Statist. 30, 1959), ``sign(t) sqrt(dof ln(1 + t^2/dof)) (8 dof + 1) / (8 dof + 3)``
    (within 0.01 of the exact score for ``|t| <= 3`` from 3 degrees of freedom, within 0.002 for ``|t| <= 5`` from 30).

    >>> round(t_to_normal(2.0, 10), 3), t_to_normal(0.0, 5)
    (1.79, 0.0)
    """
    return math.copysign(math.sqrt(dof * math.log1p(t * t / dof)), t) * (8 * dof + 1) / (8 * dof + 3)


def cusum_z(config: CusumConfig, state: CusumState, value: float) -> float:
    """The standardised value that feeds the sums: ``(value - mean) / std`` against the fixed or frozen figures,
    and while a self-starting CUSUM learns, the normal score of the sample's t-statistic against the samples
    learned before it (0 for the first two)."""
    mean, std = state.in_control(config)
    if not state.learning(config):
        return (value - mean) / std
    n = state.learned
    if n < 2:
        return 0.0
    return t_to_normal((value - mean) / std * math.sqrt(n / (n + 1)), n - 1)


def _learn(state: CusumState, value: float) -> tuple[int, float, float]:
    """Welford's update of the learned count, mean and sum of squared deviations with ``value``."""
    n = state.learned + 1
    delta = value - state.learned_mean
    mean = state.learned_mean + delta / n
    return n, mean, state.learned_m2 + delta * (value - mean)


def cusum_step(config: CusumConfig, state: CusumState, value: float) -> tuple[CusumState, DriftState | None]:
    """Advance a two-sided CUSUM by one sample (non-finite samples are ignored); see :func:`ewma_step`."""
    if not math.isfinite(value):
        return state, None
    z = cusum_z(config, state, value)
    cap = config.cap_value
    upper = min(cap, max(0.0, state.upper + z - config.k_sigma))
    lower = min(cap, max(0.0, state.lower - z - config.k_sigma))
    score = max(upper, lower)
    base = DetectorState(score, state.base.raised, state.base.run_length, state.base.n_samples + 1)
    base, transition = _hysteresis(
        base, score, config.h_sigma, config.clear_threshold, 1, config.min_clear_samples, config.warmup_samples
    )
    if state.learning(config) and not base.raised:  # a sample under alert is not learned (Hawkins & Olwell)
        return CusumState(upper, lower, base, *_learn(state, value)), transition
    return CusumState(upper, lower, base, state.learned, state.learned_mean, state.learned_m2), transition


class CusumDetector(Detector):
    """A named two-sided CUSUM detector with hysteresis (see :class:`CusumConfig`)."""

    def __init__(
        self, name: str, config: CusumConfig, *, kind: DriftKind = DriftKind.MODEL, description: str = "CUSUM"
    ) -> None:
        self.name = name
        self.config = config
        self.kind = kind
        self.description = description
        self._cusum = CusumState()
        self.state = self._cusum.base

    def score(self) -> float | None:
        """Larger of the two sums, in standard deviations (``None`` before the first sample)."""
        return self.state.ewma

    @property
    def cusum_state(self) -> CusumState:
        """The sums and the hysteresis state (``state`` is its ``base``)."""
        return self._cusum

    @cusum_state.setter
    def cusum_state(self, value: CusumState) -> None:
        self._cusum = value
        self.state = value.base

    def _thresholds(self) -> tuple[float, float, int, int]:
        c = self.config
        return c.h_sigma, c.clear_threshold, 1, c.min_clear_samples

    def baseline(self) -> dict[str, float | int | bool]:
        """The in-control figures it standardises against now: ``learning`` (a self-starting CUSUM that has not
        frozen its baseline yet), ``learned`` (samples learned), ``mean`` and ``std`` (the configured figures, or
        the learned ones: running estimates while learning)."""
        mean, std = self._cusum.in_control(self.config)
        return {"learning": self._cusum.learning(self.config), "learned": self._cusum.learned,
                "mean": float(mean), "std": float(std)}

    def update(self, value: float, *, seq: int) -> DriftEvent | None:
        """Feed one sample; return the event when it completed a transition."""
        self._cusum, transition = cusum_step(self.config, self._cusum, float(value))
        self.state = self._cusum.base
        return None if transition is None else self.event(transition, seq)

    def reset(self) -> None:
        """Forget the sums and the alert."""
        self._cusum = CusumState()
        self.state = self._cusum.base
