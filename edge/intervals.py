"""Prediction intervals on the device: split-conformal half-widths per target, applied around each prediction.

``trainer.conformal.fit_intervals`` calibrates one half-width ``q_hat`` per target on held-out (selection) rows so
that ``[pred - q_hat, pred + q_hat]`` covers the reference value with probability at least ``coverage`` for a new
spectrum exchangeable with those rows (Vovk et al.; Lei et al. 2018). The model travels in the bundle as a dict.

>>> import numpy as np
>>> m = IntervalModel(q_hat=np.array([2.0]), coverage=0.9)
>>> lo, hi = m.interval(np.array([[100.0], [50.0]]))
>>> lo.ravel().tolist(), hi.ravel().tolist()
([98.0, 48.0], [102.0, 52.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import BundleError, InputContractError
from edge.validation import require_int, require_keys, require_mapping

__all__ = ["INTERVALS_FORMAT_VERSION", "IntervalModel"]

#: Version of the dict layout written by :meth:`IntervalModel.to_dict`.
INTERVALS_FORMAT_VERSION = 1

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class IntervalModel:
    """Symmetric split-conformal intervals.

    Parameters
    ----------
    q_hat : ndarray, shape (n_targets,), float64
        Half-width per target, in the target's units (finite, >= 0).
    coverage : float
        Nominal coverage the half-widths were calibrated for, in (0, 1).
    target_names : tuple of str
        Names of the targets, in the order of ``q_hat`` (empty when unknown).
    n_calibration : int
        Number of calibration rows (0 when unknown).
    """

    q_hat: FloatArray
    coverage: float
    target_names: tuple[str, ...] = field(default_factory=tuple)
    n_calibration: int = 0

    def __post_init__(self) -> None:
        q = np.array(self.q_hat, dtype=np.float64).reshape(-1)
        if q.size < 1:
            raise BundleError("intervals: expected at least one half-width, got none")
        if not np.all(np.isfinite(q)) or np.any(q < 0):
            raise BundleError(f"intervals: expected finite half-widths >= 0, got {q.tolist()}")
        cov = float(self.coverage)
        if not 0.0 < cov < 1.0:
            raise BundleError(f"intervals: expected 0 < coverage < 1, got {cov!r}")
        names = tuple(str(n) for n in self.target_names)
        if names and len(names) != q.size:
            raise BundleError(f"intervals: expected {q.size} target names (one per half-width), got {len(names)}")
        q.setflags(write=False)
        object.__setattr__(self, "q_hat", q)
        object.__setattr__(self, "coverage", cov)
        object.__setattr__(self, "target_names", names)
        object.__setattr__(self, "n_calibration", int(self.n_calibration))

    @property
    def n_targets(self) -> int:
        """Number of targets."""
        return int(self.q_hat.size)

    def interval(self, pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Lower and upper bounds around predictions.

        Parameters
        ----------
        pred : array_like, shape (n_targets,) or (n, n_targets); with one target also () or (n,)

        Returns
        -------
        lo, hi : ndarray, same shape as ``pred``, float64
        """
        p = np.asarray(pred, dtype=np.float64)
        t = self.n_targets
        if t == 1 and p.ndim <= 1:
            half: FloatArray | float = float(self.q_hat[0])
        elif p.ndim >= 1 and p.shape[-1] == t:
            half = self.q_hat
        else:
            raise InputContractError(
                f"intervals: expected predictions with {t} targets in the last axis, got {p.shape}"
            )
        return p - half, p + half

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        return {
            "format_version": INTERVALS_FORMAT_VERSION,
            "kind": "split_conformal_abs",
            "q_hat": self.q_hat.tolist(),
            "coverage": self.coverage,
            "target_names": list(self.target_names),
            "n_calibration": self.n_calibration,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntervalModel:
        """Rebuild from :meth:`to_dict` output; :class:`~edge.errors.BundleError` naming what is wrong."""
        require_mapping(d, "intervals", BundleError)
        require_int(d.get("format_version"), "intervals: format_version", BundleError, minimum=1,
                    maximum=INTERVALS_FORMAT_VERSION)
        require_keys(d, "intervals", BundleError, ("q_hat", "coverage"), allow_unknown=True)
        names: Sequence[Any] = d.get("target_names", ())
        try:
            return cls(
                q_hat=np.asarray(d["q_hat"], dtype=np.float64),
                coverage=float(d["coverage"]),
                target_names=tuple(str(n) for n in names),
                n_calibration=int(d.get("n_calibration", 0)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"intervals: malformed values ({exc})") from exc
