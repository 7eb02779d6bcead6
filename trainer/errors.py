"""Exception tree of the lab side: every expected failure ``trainer`` raises derives from :class:`TrainerError`.

Each error is mixed with the builtin a caller would naturally catch (``ValueError`` for bad data or configuration),
so ``spectro-train`` can turn any of them into one clear line and a non-zero exit code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["TrainerError", "DataError", "TrainConfigError", "SplitError", "CalibrationError", "BundleWriteError",
           "did_you_mean"]


class TrainerError(Exception):
    """Base class of every expected failure raised by ``trainer``."""


class DataError(TrainerError, ValueError):
    """A spectral dataset is unreadable or invalid (NaN, non-monotonic axis, missing targets, too few samples)."""


class TrainConfigError(TrainerError, ValueError):
    """A training configuration is invalid; the message names the key and what was expected."""


class SplitError(TrainerError, ValueError):
    """Rows cannot be split as asked (empty selection, overlapping or leaking train/test rows)."""


class CalibrationError(TrainerError, ValueError):
    """A statistical calibration (PLS, OOD limits, conformal intervals) cannot be fitted on the given rows."""


class BundleWriteError(TrainerError, ValueError):
    """A bundle cannot be written: bad arguments, or the written bundle fails the edge reader's check."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to ``name`` (a typo, a slip of case), else ``""``.

    >>> did_you_mean("ensemble_sise", ["ensemble_size", "epochs"]), did_you_mean("Fat_pct", ["fat_pct"])
    ("; did you mean 'ensemble_size'?", "; did you mean 'fat_pct'?")
    >>> did_you_mean("colour", ["seed", "split"])
    ''
    """
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""
