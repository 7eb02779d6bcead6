"""The ``reset_drift`` command's arguments: which learned drift baselines to learn again, and why.

The self-starting detectors (the prediction CUSUMs under ``[drift] cusum_baseline_frames`` and the
``spectrum_level`` CUSUM) learn the line's in-control mean and spread from its first spectra after a start or a
model change, then freeze them.  After a product change or a lamp recalibration the line has a new in-control
level, and ``reset_drift`` makes them learn it (:meth:`edge.drift.DriftMonitor.reset_baselines`).

>>> from edge.errors import CommandError
>>> parse_reset_drift_args({"detectors": ["spectrum_level"], "reason": "product change to B-20"})
ResetDriftArgs(detectors=('spectrum_level',), reason='product change to B-20')
>>> parse_reset_drift_args({})
ResetDriftArgs(detectors=None, reason=None)
>>> parse_reset_drift_args({"detectors": []})
Traceback (most recent call last):
...
edge.errors.CommandError: reset_drift.args.detectors: expected 1-32 detector names ('prediction' for every \
prediction CUSUM, 'prediction:<target>', 'spectrum_level'), got an array
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from edge.errors import CommandError
from edge.validation import fail, require_fields, require_str

__all__ = ["ResetDriftArgs", "parse_reset_drift_args", "MAX_RESET_DETECTORS", "MAX_REASON_CHARS"]

#: Most detector names one ``reset_drift`` lists.
MAX_RESET_DETECTORS = 32
#: Longest ``reason`` (it goes into the drift events' ``detail`` and the audit log).
MAX_REASON_CHARS = 200
_DETECTOR_RE = re.compile(r"^[!-~](?:[ -~]{0,126}[!-~])?$")  # printable ASCII, as target names in the messages
_REASON_RE = re.compile(rf"^[!-~](?:[ -~]{{0,{MAX_REASON_CHARS - 2}}}[!-~])?$")
_DETECTORS_DOC = (f"1-{MAX_RESET_DETECTORS} detector names ('prediction' for every prediction CUSUM, "
                  "'prediction:<target>', 'spectrum_level')")


@dataclass(frozen=True)
class ResetDriftArgs:
    """Learn these detectors' baselines again (None: every self-starting detector), for ``reason`` (None: unsaid)."""

    detectors: tuple[str, ...] | None
    reason: str | None


def parse_reset_drift_args(args: Mapping[str, Any]) -> ResetDriftArgs:
    """The arguments of ``reset_drift``: ``detectors`` (optional list of names) and ``reason`` (optional text).

    Raises
    ------
    CommandError
        Naming the argument and what was expected.
    """
    where = "reset_drift.args"
    require_fields(args, where, CommandError, optional=("detectors", "reason"))
    names = args.get("detectors")
    detectors = None
    if names is not None:
        if not isinstance(names, list) or not 0 < len(names) <= MAX_RESET_DETECTORS:
            fail(CommandError, f"{where}.detectors", _DETECTORS_DOC, names)
        detectors = tuple(dict.fromkeys(  # in order, each once
            require_str(n, f"{where}.detectors[{i}]", CommandError, pattern=_DETECTOR_RE,
                        pattern_doc="a detector name of 1-128 printable ASCII characters")
            for i, n in enumerate(names)))
    reason = args.get("reason")
    if reason is not None:
        require_str(reason, f"{where}.reason", CommandError, pattern=_REASON_RE,
                    pattern_doc=f"1-{MAX_REASON_CHARS} printable ASCII characters without a space at either end")
    return ResetDriftArgs(detectors=detectors, reason=reason)
