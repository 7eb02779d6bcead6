"""The Savitzky-Golay step (``savgol``): smoothing and derivatives, kernels from :mod:`edge.preprocess.savgol`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import ChannelCountError, SpecError
from edge.preprocess import savgol as _sg
from edge.preprocess.base import Axis, Step, readonly, register
from edge.preprocess.spec import (
    FloatArray,
    array_to_spec,
    read_float,
    read_int,
    read_keys,
    read_optional_matrix,
    read_optional_vector,
    read_str,
)
from edge.validation import require_int

__all__ = ["KERNEL_CHECK_RTOL", "SavitzkyGolay"]

#: Kernel values stored in a spec may differ from the ones recomputed here by this much (relative to the largest).
KERNEL_CHECK_RTOL = 1e-9


@register("savgol")
@dataclass(frozen=True, eq=False)
class SavitzkyGolay(Step):
    """Savitzky-Golay smoothing or derivative, as ``scipy.signal.savgol_filter(x, window, polyorder, deriv,
    delta, mode=mode)`` (see :mod:`edge.preprocess.savgol` for the edge modes; default ``"interp"``).

    Parameters
    ----------
    window : int
        Odd window length in channels, ``polyorder < window <= n``.
    polyorder : int
        Degree of the local polynomial.
    deriv : int
        Derivative order (0 = smoothing); derivatives above ``polyorder`` are zero.
    delta : float
        Channel spacing in axis units (nm): derivatives are per axis unit; 1.0 = per channel.
    mode : {"interp", "mirror", "nearest", "wrap"}
        Edge handling.
    kernel, edge_left, edge_right : array_like, optional
        Precomputed coefficients (as written by :meth:`to_spec`); when given they are checked against the ones
        computed here from the parameters (the pseudo-inverse of the window's Vandermonde matrix, once at load)
        and used as stored, so device and trainer convolve with the very same floats.
    """

    window: int
    polyorder: int
    deriv: int = 0
    delta: float = 1.0
    mode: str = "interp"
    kernel: FloatArray | None = field(default=None, repr=False)
    edge_left: FloatArray | None = field(default=None, repr=False)
    edge_right: FloatArray | None = field(default=None, repr=False)
    op: ClassVar[str] = "savgol"
    _kernel_rev: FloatArray = field(init=False, repr=False, compare=False)
    _left_t: FloatArray = field(init=False, repr=False, compare=False)
    _right_t: FloatArray = field(init=False, repr=False, compare=False)
    _pad_cache: dict[int, npt.NDArray[np.intp]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w, p, dv = self.window, self.polyorder, self.deriv
        for name, v in (("window", w), ("polyorder", p), ("deriv", dv)):
            require_int(v, name, SpecError, minimum=0)
        if w < 1 or w % 2 == 0:
            raise SpecError(f"expected an odd window, got {w}")
        if p >= w:
            raise SpecError(f"expected polyorder < window, got polyorder={p}, window={w}")
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise SpecError(f"expected a positive delta, got {self.delta!r}")
        if self.mode not in _sg.SAVGOL_MODES:
            raise SpecError(f"expected mode in {list(_sg.SAVGOL_MODES)}, got {self.mode!r}")
        delta = float(self.delta)
        object.__setattr__(self, "delta", delta)
        kernel = _sg.savgol_kernel(w, p, dv, delta)
        left, right = _sg.savgol_edge_matrices(w, p, dv, delta)
        kernel = self._stored("kernel", self.kernel, kernel, 1)
        if self.mode == "interp":
            left = self._stored("edge_left", self.edge_left, left, 2)
            right = self._stored("edge_right", self.edge_right, right, 2)
        elif self.edge_left is not None or self.edge_right is not None:
            raise SpecError(f"edge_left/edge_right apply to mode 'interp' only, got mode {self.mode!r}")
        else:
            left = right = None  # type: ignore[assignment]  # no edge matrices outside 'interp'
        for a in (kernel, left, right):
            if a is not None:
                a.setflags(write=False)
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "edge_left", left)
        object.__setattr__(self, "edge_right", right)
        if left is not None and right is not None:
            left_t, right_t = np.ascontiguousarray(left.T), np.ascontiguousarray(right.T)
            left_t.setflags(write=False)
            right_t.setflags(write=False)
            object.__setattr__(self, "_left_t", left_t)
            object.__setattr__(self, "_right_t", right_t)
        kernel_rev = np.ascontiguousarray(kernel[::-1])
        kernel_rev.setflags(write=False)
        object.__setattr__(self, "_kernel_rev", kernel_rev)
        object.__setattr__(self, "_pad_cache", {})

    @staticmethod
    def _stored(name: str, given: npt.ArrayLike | None, computed: FloatArray, ndim: int) -> FloatArray:
        if given is None:
            return computed
        arr = readonly(given, name, ndim)
        if arr.shape != computed.shape:
            raise SpecError(f"expected {name} of shape {computed.shape}, got {arr.shape}")
        scale = max(float(np.abs(computed).max()), np.finfo(np.float64).tiny)
        if float(np.abs(arr - computed).max()) > KERNEL_CHECK_RTOL * scale:
            raise SpecError(f"{name} does not match window/polyorder/deriv/delta")
        return np.array(arr)

    def output_axis(self, axis: Axis) -> Axis:
        n_in = axis.n_channels
        if n_in is not None and n_in < self.window:
            raise SpecError(f"savgol window {self.window} is longer than the {n_in} input channels")
        return axis

    def _pad_index(self, n: int) -> npt.NDArray[np.intp]:
        cache = self._pad_cache
        idx = cache.get(n)
        if idx is None:
            idx = _sg.savgol_pad_index(n, self.window // 2, self.mode)
            idx.setflags(write=False)
            cache[n] = idx
        return idx

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        n = X.shape[-1]
        w = self.window
        half = w // 2
        if n < w:
            raise ChannelCountError(f"expected at least {w} channels for the savgol window, got {n}")
        kr = self._kernel_rev
        if self.mode != "interp":
            padded = np.ascontiguousarray(X[..., self._pad_index(n)])
            return np.array(_sg.convolve_rows(padded, kr))
        out = np.empty(X.shape)
        out[..., half : n - half] = _sg.convolve_rows(X, kr)
        if half:
            out[..., :half] = X[..., :w] @ self._left_t
            out[..., n - half :] = X[..., n - w :] @ self._right_t
        return out

    def _batched(self, X: npt.NDArray[Any], *, dark: npt.ArrayLike | None, reference: npt.ArrayLike | None,
                 wavelengths: npt.ArrayLike | None) -> FloatArray:
        """A batch, each row the bits it gets alone: the convolution (and a padded mode's whole filter) runs on the
        batch in one call (:func:`edge.preprocess.savgol.convolve_rows`: each value the same dot product, in the
        same order, as for that row alone); the ``"interp"`` mode's edges are small matrix products, whose
        summation order BLAS may change with the number of rows, so each row's are computed on a fresh copy of
        that row, as :meth:`transform` computes them for one spectrum."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = self.transform(X)
        w, half = self.window, self.window // 2
        if self.mode == "interp" and half:  # the batch's edges, computed above, replaced by each row's own
            n = X.shape[-1]
            for r, row in enumerate(X):
                alone = np.array(row)
                out[r, :half] = alone[:w] @ self._left_t
                out[r, n - half :] = alone[n - w :] @ self._right_t
        return out

    def to_spec(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "op": self.op,
            "window": self.window,
            "polyorder": self.polyorder,
            "deriv": self.deriv,
            "delta": self.delta,
            "mode": self.mode,
            "kernel": array_to_spec(self.kernel),  # type: ignore[arg-type]  # set by __post_init__
        }
        if self.mode == "interp":
            d["edge_left"] = array_to_spec(self.edge_left) if self.window > 1 else []  # type: ignore[arg-type]  # set
            d["edge_right"] = array_to_spec(self.edge_right) if self.window > 1 else []  # type: ignore[arg-type]  # set
        return d

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> SavitzkyGolay:
        read_keys(d, ["window", "polyorder"], ["deriv", "delta", "mode", "kernel", "edge_left", "edge_right"])
        window = read_int(d, "window", minimum=1)
        half = window // 2
        edges: dict[str, FloatArray | None] = {}
        for key in ("edge_left", "edge_right"):
            if half == 0 and d.get(key) == []:
                edges[key] = None
            else:
                edges[key] = read_optional_matrix(d, key, (half, window))
        return cls(
            window=window,
            polyorder=read_int(d, "polyorder", minimum=0),
            deriv=read_int(d, "deriv", minimum=0) if "deriv" in d else 0,
            delta=read_float(d, "delta") if "delta" in d else 1.0,
            mode=read_str(d, "mode", _sg.SAVGOL_MODES) if "mode" in d else "interp",
            kernel=read_optional_vector(d, "kernel", window),
            edge_left=edges["edge_left"],
            edge_right=edges["edge_right"],
        )
