"""Steps that map the instrument's channels: counts to absorbance (or reflectance), crop, resample to the model's grid.

They run first in a pipeline and take the device's runtime context (``dark=``, ``reference=``, ``wavelengths=``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import AxisContractError, ChannelCountError, InputContractError, SpecError
from edge.preprocess.base import Axis, Step, as_float, is_immutable, readonly, register
from edge.preprocess.contract import covering_problem
from edge.preprocess.spec import (
    FloatArray,
    array_to_spec,
    read_float,
    read_int,
    read_keys,
    read_optional_float,
    read_str,
    read_vector,
)
from edge.validation import require_str

__all__ = ["CountsConversion", "Crop", "Resample", "AXIS_SLACK"]


_QUANTITIES = ("absorbance", "transmittance", "reflectance")


@register("counts")
@dataclass(frozen=True, eq=False)
class CountsConversion(Step):
    """Raw detector counts to transmittance/reflectance ``(S - D) / (W - D)`` or absorbance ``-log10`` of it.

    Parameters
    ----------
    quantity : {"absorbance", "transmittance", "reflectance"}
        ``"transmittance"`` and ``"reflectance"`` are the same ratio (the name records the geometry);
        ``"absorbance"`` is ``-log10(ratio)`` (log(1/T), or log(1/R) pseudo-absorbance).
    min_ratio : float
        Floor applied to the ratio (signal at or below dark would give a ratio <= 0 and an infinite or undefined
        absorbance); absorbance is therefore at most ``-log10(min_ratio)`` (6 by default).
    saturation_counts : float or None
        Counts at or above which a pixel is saturated (for example 65535 for a 16-bit detector), recorded in the
        spec; values are left as computed. Saturation is flagged per frame from the device's ``saturated_count``.

    Context (keyword, required): ``dark`` and ``reference``, counts of shape (n,) (or the shape of ``X``).
    A missing reference, non-finite values, or a reference not above dark at every channel (zero or negative
    denominator) raise :class:`InputContractError`.
    """

    quantity: str = "absorbance"
    min_ratio: float = 1e-6
    saturation_counts: float | None = None
    op: ClassVar[str] = "counts"
    row_exact: ClassVar[bool] = True
    _cache: tuple[Any, Any, FloatArray, FloatArray] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.quantity not in _QUANTITIES:
            raise SpecError(f"expected quantity in {list(_QUANTITIES)}, got {self.quantity!r}")
        if not (math.isfinite(self.min_ratio) and 0.0 < self.min_ratio < 1.0):
            raise SpecError(f"expected 0 < min_ratio < 1, got {self.min_ratio!r}")
        if self.saturation_counts is not None and not (
            math.isfinite(self.saturation_counts) and self.saturation_counts > 0
        ):
            raise SpecError(f"expected a positive saturation_counts or None, got {self.saturation_counts!r}")
        object.__setattr__(self, "min_ratio", float(self.min_ratio))
        object.__setattr__(self, "_cache", None)

    def _references(
        self, X: FloatArray, dark: npt.ArrayLike | None, reference: npt.ArrayLike | None
    ) -> tuple[FloatArray, FloatArray]:
        """Validated dark and denominator ``reference - dark``.

        When ``dark`` and ``reference`` are read-only arrays whose memory nobody can write (as the bridge's frame
        counts are), the validated pair is remembered and reused while the same two objects are passed again.
        """
        cache = self._cache
        if (
            cache is not None
            and cache[0] is dark
            and cache[1] is reference
            and cache[2].shape[0] == X.shape[-1]
            and is_immutable(dark)
            and is_immutable(reference)
        ):
            return cache[2], cache[3]
        if reference is None:
            raise InputContractError("counts conversion needs reference= (white reference counts), got none")
        if dark is None:
            raise InputContractError("counts conversion needs dark= (dark counts), got none")
        d = as_float(dark)
        w = as_float(reference)
        n = X.shape[-1]
        for name, a in (("dark", d), ("reference", w)):
            if a.shape != (n,) and a.shape != X.shape:
                raise InputContractError(f"expected {name} of shape ({n},), got {a.shape}")
        denom = w - d
        # reference - dark is finite exactly when both are (barring overflow), so one sum checks both.
        if not math.isfinite(float(np.add.reduce(denom, axis=None))):
            for name, a in (("dark", d), ("reference", w)):
                if not np.isfinite(a).all():
                    raise InputContractError(f"expected finite {name} counts, got NaN or inf")
        if not denom.min() > 0.0:
            if not np.any(w):
                raise InputContractError("white reference is all zeros; expected counts above dark")
            bad = np.flatnonzero(denom <= 0.0) if denom.ndim == 1 else np.flatnonzero((denom <= 0.0).any(axis=0))
            i = int(bad[0])
            raise InputContractError(
                f"expected white reference above dark at every channel, got {bad.size} channel(s) at or below dark "
                f"(first: channel {i}, reference {float(np.take(w, i, axis=-1).flat[0])!r}, "
                f"dark {float(np.take(d, i, axis=-1).flat[0])!r})"
            )
        if d.shape == (n,) and denom.shape == (n,) and is_immutable(dark) and is_immutable(reference):
            object.__setattr__(self, "_cache", (dark, reference, d, denom))
        return d, denom

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = as_float(X)
        d, denom = self._references(X, dark, reference)
        out = np.subtract(X, d)
        out /= denom
        np.maximum(out, self.min_ratio, out=out)
        if self.quantity == "absorbance":
            np.log10(out, out=out)
            np.negative(out, out=out)
        return out

    def to_spec(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "quantity": self.quantity,
            "min_ratio": self.min_ratio,
            "saturation_counts": self.saturation_counts,
        }

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> CountsConversion:
        read_keys(d, ["quantity", "min_ratio"], ["saturation_counts"])
        return cls(
            quantity=read_str(d, "quantity", _QUANTITIES),
            min_ratio=read_float(d, "min_ratio"),
            saturation_counts=read_optional_float(d, "saturation_counts"),
        )


@register("crop")
@dataclass(frozen=True, eq=False)
class Crop(Step):
    """Keep channels ``start`` to ``stop - 1`` (the trainer turns a wavelength range into these indices)."""

    start: int
    stop: int
    op: ClassVar[str] = "crop"
    row_exact: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.stop):
            raise SpecError(f"expected 0 <= start < stop, got start={self.start}, stop={self.stop}")

    def output_axis(self, axis: Axis) -> Axis:
        n_in = axis.n_channels
        if n_in is not None and self.stop > n_in:
            raise SpecError(f"crop stop={self.stop} is beyond the {n_in} input channels")
        kept = None if axis.wavelengths is None else axis.wavelengths[self.start : self.stop]
        return Axis(self.stop - self.start, device=False, wavelengths=kept)

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = as_float(X)
        if X.shape[-1] < self.stop:
            raise ChannelCountError(f"expected at least {self.stop} channels to crop, got {X.shape[-1]}")
        out: FloatArray = X[..., self.start : self.stop]
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "start": self.start, "stop": self.stop}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Crop:
        read_keys(d, ["start", "stop"])
        return cls(start=read_int(d, "start", minimum=0), stop=read_int(d, "stop", minimum=1))


#: Share of the grid's span by which a device axis may miss the grid's ends and still count as covering it (the
#: ends are then taken from the device's first/last pixel): rounding of a calibration polynomial, not extrapolation.
AXIS_SLACK = 1e-6


@register("resample")
@dataclass(frozen=True, eq=False)
class Resample(Step):
    """Linear interpolation (``numpy.interp``) from the device axis onto the model's ``grid``.

    Parameters
    ----------
    grid : array_like of float, shape (k,)
        Target axis (nm, or cm-1 as ``unit`` says), strictly monotonic.
    unit : str
        Axis unit, used in messages.

    Context (keyword, required): ``wavelengths``, the device axis of ``X``, shape (n,), strictly monotonic
    (ascending or descending), covering the whole grid; otherwise :class:`InputContractError`, for example
    "expected a wavelength axis covering 600-1898 nm, got 610-1890 nm". No extrapolation ever happens.
    """

    grid: FloatArray
    unit: str = "nm"
    op: ClassVar[str] = "resample"
    #: A batch is resampled row by row with the same ``numpy.interp`` call as one spectrum (the axis checked once):
    #: the same bits, without checking the axis again for every row of a LINE frame.
    row_exact: ClassVar[bool] = True
    _lo: float = field(init=False, repr=False, compare=False)
    _hi: float = field(init=False, repr=False, compare=False)
    #: The last immutable device axis that passed the checks, as given, and as used (ascending), and whether it was
    #: reversed: the same array object again (a daemon passes its device's axis with every frame) is not checked
    #: again.  One tuple, replaced whole (another thread may read it).
    _checked: tuple[Any, FloatArray, bool] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        g = readonly(self.grid, "grid", 1)
        steps = np.diff(g)
        if g.size > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
            raise SpecError("expected a strictly monotonic grid")
        object.__setattr__(self, "grid", g)
        object.__setattr__(self, "_lo", float(g.min()))
        object.__setattr__(self, "_hi", float(g.max()))

    def output_axis(self, axis: Axis) -> Axis:
        # the model's grid from here on
        return Axis(int(self.grid.shape[0]), device=False, wavelengths=tuple(float(w) for w in self.grid))

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = as_float(X)
        lo, hi = self._lo, self._hi
        if wavelengths is None:
            raise AxisContractError(
                f"resampling needs wavelengths= (the device axis covering {lo!r}-{hi!r} {self.unit}), got none"
            )
        checked = self._checked
        if checked is not None and wavelengths is checked[0]:
            w, descending = checked[1], checked[2]  # this very (immutable) axis passed the checks below
            if w.shape[0] != X.shape[-1]:
                raise AxisContractError(f"expected wavelengths of shape ({X.shape[-1]},), got {w.shape}")
        else:
            w, descending = self._checked_axis(wavelengths, X.shape[-1])
        if descending:
            X = X[..., ::-1]
        if X.ndim == 1:
            out1: FloatArray = np.interp(self.grid, w, X)
            return out1
        out = np.empty((X.shape[0], self.grid.shape[0]))
        for i in range(X.shape[0]):
            out[i] = np.interp(self.grid, w, X[i])
        return out

    def _checked_axis(self, wavelengths: npt.ArrayLike, n_channels: int) -> tuple[FloatArray, bool]:
        """The device axis ascending and whether it was given descending, once it is known to be one of
        ``n_channels`` finite, strictly monotonic values that cover the grid; AxisContractError otherwise.  An
        immutable axis that passes is remembered (:attr:`_checked`)."""
        lo, hi = self._lo, self._hi
        w = as_float(wavelengths)
        if w.ndim != 1 or w.shape[0] != n_channels:
            raise AxisContractError(f"expected wavelengths of shape ({n_channels},), got {w.shape}")
        if w.shape[0] < 2 or not np.all(np.isfinite(w)):
            raise AxisContractError("expected at least 2 finite wavelengths")
        dw = np.diff(w)
        descending = bool(np.all(dw < 0))
        if descending:
            w = w[::-1]
        elif not np.all(dw > 0):
            raise AxisContractError("expected a strictly monotonic wavelength axis")
        # A polynomial calibration may miss the grid's ends by rounding (AXIS_SLACK of the grid's span).
        problem = covering_problem(float(w[0]), float(w[-1]), lo, hi, self.unit, AXIS_SLACK * (hi - lo))
        if problem is not None:
            raise AxisContractError(problem)
        if is_immutable(wavelengths):  # nobody can change it: the verdict holds for the same object
            object.__setattr__(self, "_checked", (wavelengths, w, descending))
        return w, descending

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "grid": array_to_spec(self.grid), "unit": self.unit}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Resample:
        read_keys(d, ["grid"], ["unit"])
        unit = d.get("unit", "nm")
        require_str(unit, "unit", SpecError)
        return cls(grid=read_vector(d, "grid"), unit=unit)
