"""Control samples (check standards): each measurement of a declared standard is judged against its known value with
Shewhart limits, so drift of the whole instrument + model shows on a sample whose answer is known.

API::

    charts = ControlCharts(standards, clock)          # standards: tuple of ControlStandardConfig
    charts.arm(name, frames, request_id)              # the next ``frames`` predictions measure standard ``name``
    charts.observe(names, values) -> ControlResult | None   # one prediction; None when no measurement is armed
    charts.summary() -> dict                          # {name: {verdict, last_time_unix_s, bias}} for the status

Rules (per standard, on bias = measured - known, z = bias / sigma):

* Shewhart action limit: ``|z| > action_sigmas`` (default 3) -> ``out_of_control``;
* Western Electric rule 2: two of the last three measurements of the standard beyond ``warning_sigmas`` on the same
  side -> ``out_of_control``;
* Shewhart warning limit: ``|z| > warning_sigmas`` (default 2) -> ``warning``;
* else ``in_control``.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from edge.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.config_sections import ControlStandardConfig

log = logging.getLogger("edge.control")

IN_CONTROL = "in_control"
WARNING = "warning"
OUT_OF_CONTROL = "out_of_control"
VERDICTS = (IN_CONTROL, WARNING, OUT_OF_CONTROL)


def verdict_of(z: float, recent: Sequence[float], *, warning_sigmas: float, action_sigmas: float) -> tuple[str, str]:
    """The verdict of a measurement at ``z`` sigmas (``recent``: the z of the previous measurements of the same
    standard, oldest first), with the rule that decided it."""
    if abs(z) > action_sigmas:
        return OUT_OF_CONTROL, f"shewhart_action: |bias| > {action_sigmas:g} sigma"
    last3 = [*recent[-2:], z]
    for side in (1.0, -1.0):
        if abs(z) > warning_sigmas and z * side > 0 and sum(1 for v in last3 if v * side > warning_sigmas) >= 2:
            return OUT_OF_CONTROL, f"western_electric_2of3: 2 of the last 3 beyond {warning_sigmas:g} sigma"
    if abs(z) > warning_sigmas:
        return WARNING, f"shewhart_warning: |bias| > {warning_sigmas:g} sigma"
    return IN_CONTROL, "within limits"


def check_targets(standards: Sequence["ControlStandardConfig"], target_names: Sequence[str]) -> None:
    """Raise ConfigError naming the first standard whose target is not one of ``target_names`` (the bundle's)."""
    for s in standards:
        if s.target not in target_names:
            raise ConfigError(f"control.standards {s.name!r}: expected target to be one of the bundle's targets "
                              f"({', '.join(target_names)}), got {s.target!r}")


@dataclass(frozen=True)
class ControlResult:
    """One judged measurement of a standard."""

    name: str
    target: str
    measured: float
    known: float
    sigma: float
    bias: float
    bias_sigmas: float
    verdict: str
    rule: str
    warning_sigmas: float
    action_sigmas: float
    request_id: str | None


class ControlCharts:
    """The declared standards, the measurements armed by ``measure_control`` and each standard's last verdict.
    ``arm`` runs on the housekeeping thread, ``observe`` on the inference thread: a lock guards the state."""

    def __init__(self, standards: Sequence["ControlStandardConfig"], clock: Callable[[], float],
                 count: Callable[[str], Any] = lambda name: None) -> None:
        self.standards = {s.name: s for s in standards}
        self._clock = clock
        self._count = count  # counts an armed measurement dropped (control_skipped_missing_target)
        self._lock = threading.Lock()
        self._armed: collections.deque[tuple[str, str | None]] = collections.deque()
        self._recent: dict[str, collections.deque[float]] = {n: collections.deque(maxlen=2) for n in self.standards}
        self._last: dict[str, dict[str, Any]] = {}

    def check_targets(self, target_names: Sequence[str]) -> None:
        """Raise ConfigError naming the first standard whose target the bundle does not predict."""
        check_targets(tuple(self.standards.values()), target_names)

    def arm(self, name: str, frames: int, request_id: str | None = None) -> None:
        """The next ``frames`` predictions are measurements of standard ``name`` (after any already armed)."""
        if name not in self.standards:
            raise KeyError(f"expected one of the configured control standards ({', '.join(self.standards) or 'none'})"
                           f", got {name!r}")
        with self._lock:
            self._armed.extend([(name, request_id)] * frames)

    def pending(self) -> int:
        with self._lock:
            return len(self._armed)

    def observe(self, names: Sequence[str], values: Sequence[float]) -> ControlResult | None:
        """Judge one prediction when a measurement is armed; None otherwise."""
        with self._lock:
            if not self._armed:
                return None
            name, request_id = self._armed.popleft()
            s = self.standards[name]
            if s.target not in names:  # a reloaded bundle without the target: counted and logged, not judged
                self._count("control_skipped_missing_target")
                log.warning("control standard %s: the bundle in service does not predict %r; measurement not judged",
                            name, s.target)
                return None
            measured = float(values[list(names).index(s.target)])
            bias = measured - s.value
            z = bias / s.sigma
            verdict, rule = verdict_of(z, list(self._recent[name]), warning_sigmas=s.warning_sigmas,
                                       action_sigmas=s.action_sigmas)
            self._recent[name].append(z)
            self._last[name] = {"verdict": verdict, "last_time_unix_s": round(self._clock(), 3), "bias": bias}
            return ControlResult(name, s.target, measured, s.value, s.sigma, bias, z, verdict, rule,
                                 s.warning_sigmas, s.action_sigmas, request_id)

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{name: {verdict, last_time_unix_s, bias}}`` of every standard measured since the start."""
        with self._lock:
            return {n: dict(v) for n, v in self._last.items()}
