"""Shadow mode as plain values: the comparison of a challenger bundle's outcomes with the serving bundle's on the same
spectra (:class:`ShadowComparison`), the promotion rule a rollout request states (:class:`PromotionRule`) and the
arguments of the shadow-mode commands.  No threads and no I/O live here; :mod:`edge.daemon.shadow` runs the
challenger in the daemon.

>>> rule = PromotionRule.from_args({"min_spectra": 2, "max_alarm_rate": 0.5}, where="promote")
>>> cmp = ShadowComparison(("a",), ("%",), ("a",), ("%",))
>>> cmp.observe(Judged(1, (10.0,), (9.0,), (11.0,), False, False), Judged(1, (10.5,), None, None, False, True))
>>> rule.verdict(cmp.summary())
(False, 'waiting: 1 of 2 spectra compared')
>>> cmp.observe(Judged(2, (12.0,), None, None, False, False), Judged(2, (11.0,), None, None, False, False))
>>> s = cmp.summary(); s["targets"]["a"]["mean_abs_diff"], s["targets"]["a"]["within_serving_interval"]
(0.75, 1.0)
>>> rule.verdict(s)
(True, 'met: 2 spectra compared (min 2); challenger alarm rate 0.5 <= 0.5')
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edge.errors import CommandError
from edge.validation import fail, require, require_fields, require_int, require_mapping, require_number

__all__ = [
    "RECENT_MAX",
    "Judged",
    "PromotionRule",
    "ShadowComparison",
    "LoadChallengerArgs",
    "NoArgs",
    "PromoteArgs",
    "ReferenceValueArgs",
]

#: Spectra whose two predictions are kept for reference values that arrive later (``reference_value``), newest first
#: out; a reference for an older seq is refused.
RECENT_MAX = 4096
#: References that arrived before the challenger judged their spectrum, kept until it does.
PENDING_REFERENCES_MAX = 256
#: Most spectra a rule may wait for.
MIN_SPECTRA_MAX = 10_000_000


@dataclass(frozen=True)
class Judged:
    """What the comparison needs of one outcome of one model: predicted values (None: rejected), the interval
    bounds (None without an interval model), whether it raised the OOD alarm (``out_of_distribution``) and whether
    its quality was other than ``ok``."""

    seq: int
    values: tuple[float, ...] | None
    lower: tuple[float, ...] | None
    upper: tuple[float, ...] | None
    flagged: bool
    alarm: bool


@dataclass
class _Side:
    predictions: int = 0
    rejected: int = 0
    alarms: int = 0
    flagged: int = 0

    def add(self, j: Judged) -> None:
        if j.values is None:
            self.rejected += 1
            return
        self.predictions += 1
        self.alarms += int(j.alarm)
        self.flagged += int(j.flagged)

    def to_dict(self) -> dict[str, Any]:
        rate = self.alarms / self.predictions if self.predictions else None
        return {"predictions": self.predictions, "rejected": self.rejected, "alarms": self.alarms,
                "alarm_rate": rate, "flagged": self.flagged}


@dataclass
class _Target:
    unit: str
    compared: int = 0
    sum_abs: float = 0.0
    max_abs: float = 0.0
    sum_diff: float = 0.0
    in_interval: int = 0
    with_interval: int = 0
    references: int = 0
    sse_serving: float = 0.0
    sse_challenger: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        n, r = self.compared, self.references
        return {
            "unit": self.unit,
            "compared": n,
            "mean_abs_diff": self.sum_abs / n if n else None,
            "max_abs_diff": self.max_abs if n else None,
            "mean_diff": self.sum_diff / n if n else None,
            "within_serving_interval": self.in_interval / self.with_interval if self.with_interval else None,
            "references": r,
            "rmsep_serving": math.sqrt(self.sse_serving / r) if r else None,
            "rmsep_challenger": math.sqrt(self.sse_challenger / r) if r else None,
        }


class ShadowComparison:
    """The running comparison of a challenger with the serving bundle (thread-safe: the inference thread observes,
    the housekeeping thread reads the summary and applies reference values).

    Targets are compared by name where both bundles predict them in the same unit; ``diff`` is challenger minus
    serving.  ``within_serving_interval`` is the share of compared spectra whose challenger value lies inside the
    serving prediction's interval (serving bundles with an interval model).  The alarm rate of each model is the
    share of its predictions flagged ``out_of_distribution``.  RMSEP of each model is computed over the spectra
    with a reference value for the target, predicted by both.

    Parameters
    ----------
    serving_names, serving_units, challenger_names, challenger_units : sequence of str
        The two bundles' targets.
    """

    def __init__(self, serving_names: Sequence[str], serving_units: Sequence[str], challenger_names: Sequence[str],
                 challenger_units: Sequence[str]) -> None:
        cu = dict(zip(challenger_names, challenger_units))
        #: (name, index in the serving outputs, index in the challenger outputs) of each compared target.
        self.common = tuple((n, i, list(challenger_names).index(n)) for i, (n, u) in
                            enumerate(zip(serving_names, serving_units)) if cu.get(n) == u)
        self.serving_names = tuple(serving_names)
        self._lock = threading.Lock()
        self._targets = {n: _Target(serving_units[i]) for n, i, _ in self.common}
        self._serving, self._challenger = _Side(), _Side()
        self._spectra = 0
        self._compared = 0
        #: seq -> (serving values, challenger values) of the compared targets, for references that come later.
        self._recent: collections.OrderedDict[int, tuple[tuple[float, ...], tuple[float, ...]]] = (
            collections.OrderedDict())
        self._pending: collections.OrderedDict[int, dict[str, float]] = collections.OrderedDict()

    @property
    def targets(self) -> tuple[str, ...]:
        """The compared targets' names, in the serving bundle's order."""
        return tuple(n for n, _, _ in self.common)

    def observe(self, serving: Judged, challenger: Judged) -> None:
        """One spectrum judged by both models."""
        with self._lock:
            self._spectra += 1
            self._serving.add(serving)
            self._challenger.add(challenger)
            if serving.values is None or challenger.values is None:
                return
            self._compared += 1
            sv = tuple(serving.values[i] for _, i, _ in self.common)
            cv = tuple(challenger.values[j] for _, _, j in self.common)
            for k, (name, i, _) in enumerate(self.common):
                t = self._targets[name]
                d = cv[k] - sv[k]
                t.compared += 1
                t.sum_abs += abs(d)
                t.max_abs = max(t.max_abs, abs(d))
                t.sum_diff += d
                if serving.lower is not None and serving.upper is not None:
                    t.with_interval += 1
                    t.in_interval += int(serving.lower[i] <= cv[k] <= serving.upper[i])
            if self._recent and serving.seq <= next(reversed(self._recent)):
                self._recent.clear()  # the device restarted its sequence: older seqs name other spectra now
            self._recent[serving.seq] = (sv, cv)
            while len(self._recent) > RECENT_MAX:
                self._recent.popitem(last=False)
            pending = self._pending.pop(serving.seq, None)
            if pending is not None:
                self._apply(serving.seq, pending)

    def reference(self, seq: int, values: Mapping[str, float], *, pending_ok: bool = False) -> dict[str, Any]:
        """Reference values of spectrum ``seq`` (``{target: value}``, in the target's unit): each compared target's
        squared error of both models joins its RMSEP.  Returns what was applied, ``{target: {reference, serving,
        challenger}}``.

        With ``pending_ok`` (references that come with the spectrum, before the challenger judged it) an unknown
        seq is kept until it is judged; otherwise it is refused.

        Raises
        ------
        ValueError
            ``seq`` is not among the last :data:`RECENT_MAX` spectra predicted by both, or no value names a compared
            target.
        """
        unknown = sorted(set(values) - set(self._targets))
        if unknown or not values:
            raise ValueError(f"expected values of the compared targets ({', '.join(self.targets) or 'none'}), got "
                             f"{', '.join(unknown) if unknown else 'none'}")
        with self._lock:
            if seq not in self._recent:
                if pending_ok:
                    self._pending[seq] = dict(values)
                    while len(self._pending) > PENDING_REFERENCES_MAX:
                        self._pending.popitem(last=False)
                    return {}
                held = (f"{next(iter(self._recent))}..{next(reversed(self._recent))}" if self._recent else "none")
                raise ValueError(f"expected the seq of a spectrum both models predicted among the last {RECENT_MAX} "
                                 f"(held: {held}), got {seq}")
            return self._apply(seq, values)

    def _apply(self, seq: int, values: Mapping[str, float]) -> dict[str, Any]:
        sv, cv = self._recent[seq]
        applied: dict[str, Any] = {}
        for k, (name, _, _) in enumerate(self.common):
            ref = values.get(name)
            if ref is None or not math.isfinite(ref):
                continue
            t = self._targets[name]
            t.references += 1
            t.sse_serving += (sv[k] - ref) ** 2
            t.sse_challenger += (cv[k] - ref) ** 2
            applied[name] = {"reference": ref, "serving": sv[k], "challenger": cv[k]}
        return applied

    def summary(self) -> dict[str, Any]:
        """``{spectra, compared, serving, challenger, targets}``: counts and rates of each model, per target the
        agreement and RMSEP (None where nothing was compared)."""
        with self._lock:
            return {"spectra": self._spectra, "compared": self._compared, "serving": self._serving.to_dict(),
                    "challenger": self._challenger.to_dict(),
                    "targets": {n: t.to_dict() for n, t in self._targets.items()}}


def _number(where: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    return require_number(value, where, CommandError, minimum=lo, maximum=hi)


def _integer(where: str, value: Any, lo: int, hi: int) -> int:
    return require_int(value, where, CommandError, minimum=lo, maximum=hi)


@dataclass(frozen=True)
class PromotionRule:
    """When a challenger is promoted by itself: after at least ``min_spectra`` spectra predicted by both, once every
    stated condition holds (each is optional):

    - ``max_alarm_rate``: the challenger's OOD alarm rate at most this;
    - ``max_mean_abs_diff``: ``{target: x}``, the mean absolute difference from the serving prediction at most x;
    - ``min_within_serving_interval``: the share of challenger values inside the serving interval at least this
      (every compared target);
    - ``max_rmsep_ratio`` with ``min_references``: for every target with at least ``min_references`` reference
      values, the challenger's RMSEP at most this times the serving one's (and at least one such target).
    """

    min_spectra: int
    max_alarm_rate: float | None = None
    max_mean_abs_diff: Mapping[str, float] | None = None
    min_within_serving_interval: float | None = None
    max_rmsep_ratio: float | None = None
    min_references: int = 1

    KEYS = ("min_spectra", "max_alarm_rate", "max_mean_abs_diff", "min_within_serving_interval", "max_rmsep_ratio",
            "min_references")

    @classmethod
    def from_args(cls, raw: Any, *, where: str) -> "PromotionRule":
        """Parse the ``promote`` object of ``load_challenger`` (:class:`~edge.errors.CommandError` naming the field)."""
        require_mapping(raw, where, CommandError)
        require_fields(raw, where, CommandError, cls.KEYS[:1], cls.KEYS[1:], noun="field",
                       hints={"min_spectra": "spectra both models predict before the rule may promote"})
        diffs = raw.get("max_mean_abs_diff")
        if diffs is not None:
            require(isinstance(diffs, dict) and 0 < len(diffs) <= 64, CommandError, f"{where}.max_mean_abs_diff",
                    "an object {target: number} of 1-64 targets", diffs)
            diffs = {str(k): _number(f"{where}.max_mean_abs_diff.{k:.64}", v, 0.0, math.inf) for k, v in
                     diffs.items()}
        opt = raw.get
        return cls(
            min_spectra=_integer(f"{where}.min_spectra", raw["min_spectra"], 1, MIN_SPECTRA_MAX),
            max_alarm_rate=None if opt("max_alarm_rate") is None else _number(
                f"{where}.max_alarm_rate", raw["max_alarm_rate"], 0.0, 1.0),
            max_mean_abs_diff=diffs,
            min_within_serving_interval=None if opt("min_within_serving_interval") is None else _number(
                f"{where}.min_within_serving_interval", raw["min_within_serving_interval"], 0.0, 1.0),
            max_rmsep_ratio=None if opt("max_rmsep_ratio") is None else _number(
                f"{where}.max_rmsep_ratio", raw["max_rmsep_ratio"], 0.0, 1e6),
            min_references=_integer(f"{where}.min_references", opt("min_references", 1), 1, MIN_SPECTRA_MAX),
        )

    def to_dict(self) -> dict[str, Any]:
        """The rule as stated (the fields given), for the status and the audit trail."""
        out: dict[str, Any] = {"min_spectra": self.min_spectra}
        for key in self.KEYS[1:]:
            value = getattr(self, key)
            if value is not None and not (key == "min_references" and self.max_rmsep_ratio is None):
                out[key] = dict(value) if isinstance(value, Mapping) else value
        return out

    def check_targets(self, targets: Sequence[str]) -> None:
        """Refuse a rule naming a target the two bundles do not both predict (:class:`ValueError`)."""
        unknown = sorted(set(self.max_mean_abs_diff or ()) - set(targets))
        if unknown:
            raise ValueError(f"promote.max_mean_abs_diff: expected targets both bundles predict "
                             f"({', '.join(targets) or 'none'}), got {', '.join(unknown)}")

    def verdict(self, summary: Mapping[str, Any]) -> tuple[bool, str]:
        """Whether the comparison ``summary`` (:meth:`ShadowComparison.summary`) meets the rule, and why (or why
        not yet) in words."""
        n = int(summary["compared"])
        if n < self.min_spectra:
            return False, f"waiting: {n} of {self.min_spectra} spectra compared"
        met = [f"{n} spectra compared (min {self.min_spectra})"]
        failed: list[str] = []

        def judge(ok: bool, text: str) -> None:
            (met if ok else failed).append(text)

        if self.max_alarm_rate is not None:
            rate = summary["challenger"]["alarm_rate"] or 0.0
            judge(rate <= self.max_alarm_rate, f"challenger alarm rate {rate:.4g} "
                  f"{'<=' if rate <= self.max_alarm_rate else '>'} {self.max_alarm_rate:g}")
        targets = summary["targets"]
        for name, limit in (self.max_mean_abs_diff or {}).items():
            d = targets[name]["mean_abs_diff"]
            judge(d is not None and d <= limit, f"{name} mean |diff| {d if d is None else format(d, '.4g')} "
                  f"{'<=' if d is not None and d <= limit else '>'} {limit:g}")
        if self.min_within_serving_interval is not None:
            for name, t in targets.items():
                share = t["within_serving_interval"]
                ok = share is not None and share >= self.min_within_serving_interval
                judge(ok, f"{name} within the serving interval {share if share is None else format(share, '.4g')} "
                      f"{'>=' if ok else '<'} {self.min_within_serving_interval:g}")
        if self.max_rmsep_ratio is not None:
            judged = [(name, t) for name, t in targets.items() if t["references"] >= self.min_references]
            if not judged:
                return False, (f"waiting: no target has {self.min_references} reference value(s) yet; "
                               + "; ".join(met + failed))
            for name, t in judged:
                s, c = t["rmsep_serving"], t["rmsep_challenger"]
                ok = c <= self.max_rmsep_ratio * s
                judge(ok, f"{name} RMSEP {c:.4g} {'<=' if ok else '>'} {self.max_rmsep_ratio:g} x {s:.4g}")
        if failed:
            return False, "not met: " + "; ".join(failed)
        return True, "met: " + "; ".join(met)


@dataclass(frozen=True)
class LoadChallengerArgs:
    """Run the bundle at ``path`` (resolved, inside an allowed directory) as a challenger; promote it by
    ``promote`` when given."""

    path: Path  # resolved by the parser, inside commands.allowed_dirs
    promote: PromotionRule | None


@dataclass(frozen=True)
class NoArgs:
    """A command without arguments (``drop_challenger``)."""


@dataclass(frozen=True)
class PromoteArgs:
    """``promote_challenger`` (no arguments on the wire); ``by_rule`` is the met rule's verdict when the daemon
    queued it itself."""

    by_rule: str | None = None


@dataclass(frozen=True)
class ReferenceValueArgs:
    """Lab reference values of the spectrum ``seq`` (of the device boot ``device_boot_id`` when given)."""

    seq: int
    values: Mapping[str, float]
    device_boot_id: int | None


_TARGET_KEY_MAX = 128


def parse_shadow_args(name: str, args: Mapping[str, Any], confine: Callable[[Any, str], Path]
                      ) -> "LoadChallengerArgs | NoArgs | PromoteArgs | ReferenceValueArgs":
    """The arguments of a shadow-mode command (``load_challenger``, ``promote_challenger``, ``drop_challenger``,
    ``reference_value``); ``confine(raw, where)`` resolves a path inside the allowed directories.

    Raises
    ------
    CommandError
        Naming the argument and what was expected.
    """
    where = f"{name}.args"

    if name == "load_challenger":
        require_fields(args, where, CommandError, ("path",), ("promote",), hints={"path": "the challenger bundle"})
        path = confine(args["path"], f"{where}.path")
        rule = args.get("promote")
        return LoadChallengerArgs(path, None if rule is None else PromotionRule.from_args(rule,
                                                                                         where=f"{where}.promote"))
    if name == "reference_value":
        require_fields(args, where, CommandError, ("seq",), ("values", "device_boot_id"),
                       hints={"seq": "the seq of the predicted spectrum"})
        values = args.get("values")
        if not isinstance(values, dict) or not 0 < len(values) <= 64:
            fail(CommandError, f"{where}.values", "an object {target: number} of 1-64 targets", values)
        parsed = {}
        for key, value in values.items():
            require(0 < len(key) <= _TARGET_KEY_MAX, CommandError, f"{where}.values",
                    f"target names of 1-{_TARGET_KEY_MAX} characters", key)
            parsed[key] = _number(f"{where}.values.{key}", value)
        boot = args.get("device_boot_id")
        return ReferenceValueArgs(seq=_integer(f"{where}.seq", args["seq"], 0, 0xFFFFFFFF), values=parsed,
                                  device_boot_id=None if boot is None else _integer(
                                      f"{where}.device_boot_id", boot, 1, 0xFFFFFFFF))
    require_fields(args, where, CommandError)
    return PromoteArgs() if name == "promote_challenger" else NoArgs()
