"""The probation of a deployed bundle, pure (no I/O): the rule a ``deploy_commit`` may carry, what was seen over its
window and the verdict.

A rule ``{"window_spectra": N, "max_ood_rate": x, "max_rejected_rate": y}`` (one of the two rates at least) puts a
newly installed bundle on probation for its first ``N`` spectra: it fails as soon as the spectra flagged
``out_of_distribution`` (or rejected) are more than ``x`` (or ``y``) times ``N``, which no later spectrum can undo,
and passes when ``N`` spectra have been judged without that.  Rates are shares of the spectra judged (a rejected
spectrum counts in the window and is never an OOD alarm).

>>> rule = parse_probation("deploy_commit.args.probation", {"window_spectra": 20, "max_ood_rate": 0.1})
>>> verdict(rule, Tally(spectra=5, ood=3, rejected=0))[:2]
('failed', 'ood_rate')
>>> print(verdict(rule, Tally(spectra=5, ood=3, rejected=0))[2])
3 of the first 5 spectra flagged out_of_distribution: more than max_ood_rate 0.1 of the window of 20 allows (2)
>>> verdict(rule, Tally(spectra=20, ood=2, rejected=0))[0]
'passed'
>>> verdict(rule, Tally(spectra=19, ood=2, rejected=0))[0] is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edge.errors import CommandError
from edge.validation import require_fields, require_int, require_mapping, require_number

__all__ = ["ProbationRule", "Tally", "parse_probation", "verdict", "MAX_WINDOW_SPECTRA"]

#: The longest probation window a rule may ask for, spectra.
MAX_WINDOW_SPECTRA = 1_000_000
_KEYS = ("window_spectra", "max_ood_rate", "max_rejected_rate")


@dataclass(frozen=True)
class ProbationRule:
    """Judge a new bundle over its first ``window_spectra`` spectra: at most ``max_ood_rate`` of them flagged
    ``out_of_distribution``, at most ``max_rejected_rate`` rejected (None: not judged on it)."""

    window_spectra: int
    max_ood_rate: float | None = None
    max_rejected_rate: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"window_spectra": self.window_spectra, "max_ood_rate": self.max_ood_rate,
                "max_rejected_rate": self.max_rejected_rate}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProbationRule:
        return parse_probation("probation", {k: v for k, v in d.items() if v is not None})


@dataclass(frozen=True)
class Tally:
    """What the new bundle did so far: spectra judged, of them flagged ``out_of_distribution``, rejected."""

    spectra: int
    ood: int
    rejected: int

    def to_json(self) -> dict[str, int]:
        return {"spectra": self.spectra, "ood": self.ood, "rejected": self.rejected}


def _rate(where: str, value: Any) -> float:
    return require_number(value, where, CommandError, minimum=0.0, maximum=1.0)


def parse_probation(where: str, value: Any) -> ProbationRule:
    """Validate a probation rule (``deploy_commit.args.probation``).

    Raises
    ------
    CommandError
        Not an object, an unknown key, a window out of 1..:data:`MAX_WINDOW_SPECTRA`, a rate out of 0..1, or no
        rate at all.
    """
    require_mapping(value, where, CommandError)
    require_fields(value, where, CommandError, optional=_KEYS, noun="key")
    window = require_int(value.get("window_spectra"), f"{where}.window_spectra", CommandError, minimum=1,
                         maximum=MAX_WINDOW_SPECTRA)
    ood = value.get("max_ood_rate")
    rejected = value.get("max_rejected_rate")
    if ood is None and rejected is None:
        raise CommandError(f"{where}: expected max_ood_rate or max_rejected_rate (or both), got neither")
    return ProbationRule(window, None if ood is None else _rate(f"{where}.max_ood_rate", ood),
                         None if rejected is None else _rate(f"{where}.max_rejected_rate", rejected))


def verdict(rule: ProbationRule, tally: Tally) -> tuple[str | None, str | None, str | None]:
    """``(state, reason, detail)``: ``("failed", "ood_rate" | "rejected_rate", why)`` as soon as the window cannot
    end within a rate, ``("passed", None, summary)`` once ``window_spectra`` spectra were judged, else
    ``(None, None, None)`` (still on probation)."""
    n = rule.window_spectra
    for reason, seen, limit, what in (("ood_rate", tally.ood, rule.max_ood_rate, "flagged out_of_distribution"),
                                      ("rejected_rate", tally.rejected, rule.max_rejected_rate, "rejected")):
        if limit is None:
            continue
        allowed = math.floor(limit * n + 1e-9)
        if seen > allowed:
            return ("failed", reason, f"{seen} of the first {tally.spectra} spectra {what}: more than max_{reason} "
                    f"{limit:g} of the window of {n} allows ({allowed})")
    if tally.spectra >= n:
        return ("passed", None, f"{tally.spectra} spectra judged: {tally.ood} flagged out_of_distribution, "
                f"{tally.rejected} rejected")
    return (None, None, None)
