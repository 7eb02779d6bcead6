"""A fitted calibration transfer (:class:`TransferModel`, ``X_master ~ X_slave @ F + b``) and its fit's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.errors import DataError

#: PDS window widths (channels, odd) tried by cross-validation when none is given.
DEFAULT_PDS_WINDOWS: tuple[int, ...] = (1, 3, 5, 7, 9, 11, 15, 21, 31)
#: Relative singular-value cut-off of the pseudo-inverses (as ``numpy.linalg.pinv``'s ``rcond``).
DEFAULT_RCOND = 1e-3
#: Methods :func:`fit_transfer` knows.
METHODS = ("ds", "pds")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TransferModel:
    """A fitted calibration transfer: ``X_master ~ X_slave @ matrix + offset``.

    Attributes
    ----------
    method : {"ds", "pds"}
    matrix : ndarray, shape (p, p), float64
        ``F``; banded for PDS.
    offset : ndarray, shape (p,), float64
        ``b``, in absorbance units.
    n_transfer : int
        Transfer samples it was fitted from.
    window : int or None
        PDS window width (channels); None for DS.
    cv_mse : dict of int to float
        PDS: leave-one-out mean squared reconstruction error per window tried (empty when the window was given).
    """

    method: str
    matrix: FloatArray
    offset: FloatArray
    n_transfer: int
    window: int | None = None
    cv_mse: Mapping[int, float] = field(default_factory=dict)

    def transform(self, X_slave: npt.ArrayLike) -> FloatArray:
        """Map slave spectra, shape (p,) or (n, p), into the master's domain."""
        X = np.asarray(X_slave, dtype=np.float64)
        if X.shape[-1] != self.matrix.shape[0]:
            raise DataError(f"expected {self.matrix.shape[0]} channels, got {X.shape[-1]}")
        out: FloatArray = X @ self.matrix + self.offset
        return out

    def to_edge_step(self) -> Any:
        """The edge ``linear`` step (:class:`edge.preprocess.LinearTransfer`) computing :meth:`transform`."""
        from edge.preprocess import LinearTransfer

        return LinearTransfer(self.matrix, self.offset)

    def to_dict(self) -> dict[str, Any]:
        """Summary for ``metrics.json`` (no matrix)."""
        return {
            "method": self.method,
            "n_transfer": self.n_transfer,
            "window": self.window,
            "cv_mse": {str(k): float(v) for k, v in self.cv_mse.items()},
        }
