"""The preprocessing steps: small immutable numpy objects with ``transform``, ``to_spec`` and ``from_spec``.

Every step takes one spectrum, shape ``(n,)``, or a batch, shape ``(m, n)``, of float64 and returns float64 of the
same leading shape, without modifying its input. All parameters (fitted ones included) are fixed at construction,
where everything derivable is precomputed, so ``transform`` is a handful of vectorised numpy calls. Runtime
instrument data arrives as keyword context: ``dark=`` and ``reference=`` (detector counts) for
:class:`CountsConversion`, ``wavelengths=`` (the device axis) for :class:`Resample`; other steps ignore it.

Steps trust their ``X`` (finite float64 of the right width): :class:`edge.preprocess.pipeline.Pipeline` validates
it once at its boundary. Guards that depend on the data itself (a zero reference, a constant spectrum for SNV, a
zero norm) raise :class:`~edge.errors.InputContractError` here.

Op names and spec keys (``spec_version`` 1)::

    counts     quantity ("absorbance"|"transmittance"|"reflectance"), min_ratio, saturation_counts (or null)
    crop       start, stop                      (channel indices, half-open)
    resample   grid, unit                       (target axis; device axis from wavelengths= context)
    snv        ddof
    msc        reference
    emsc       reference, poly_order, interferents (list of spectra or null)
    savgol     window, polyorder, deriv, delta, mode, kernel, edge_left, edge_right (the last three optional)
    detrend    order, n_channels
    normalize  norm ("vector"|"area"|"max")
    center     mean
    autoscale  mean, scale
    linear     matrix (n_in x n_out), offset (n_out, or null)
    stack      branches (list of lists of step specs; adds a trailing channel axis; must be the last step)
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import InputContractError, SpecError
from edge.preprocess import savgol as _sg
from edge.preprocess.spec import (
    FloatArray,
    array_to_spec,
    read_float,
    read_int,
    read_keys,
    read_matrix,
    read_optional_float,
    read_optional_matrix,
    read_optional_vector,
    read_str,
    read_vector,
    register,
    step_from_spec,
)

__all__ = [
    "Step",
    "CountsDiagnostics",
    "CountsConversion",
    "Crop",
    "Resample",
    "SNV",
    "MSC",
    "EMSC",
    "SavitzkyGolay",
    "Detrend",
    "Normalize",
    "MeanCenter",
    "Autoscale",
    "LinearTransfer",
    "Stack",
    "run_steps",
]

#: Kernel values stored in a spec may differ from the ones recomputed here by this much (relative to the largest).
KERNEL_CHECK_RTOL = 1e-9


def _readonly(a: npt.ArrayLike, name: str, ndim: int) -> FloatArray:
    """Read-only float64 copy of ``a`` with ``ndim`` dimensions and finite values (construction-time check)."""
    arr = np.array(a, dtype=np.float64)
    if arr.ndim != ndim or arr.size == 0:
        raise SpecError(f"expected {name} as a non-empty {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"expected finite values in {name}")
    arr.setflags(write=False)
    return arr


def _all_positive(a: FloatArray) -> bool:
    """True when every value of ``a`` is > 0 (NaN counts as not positive); cheap for one value."""
    if a.size == 1:
        return bool(a.item() > 0.0)
    return bool(a.min() > 0.0)


def _immutable(a: object) -> bool:
    """True for an ndarray that is read-only all the way down to memory nobody can write (None or bytes)."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return a is None or isinstance(a, bytes)


def _vecdot(a: FloatArray, b: FloatArray) -> Any:
    """Dot product along the last axis (``numpy.vecdot`` where available, numpy >= 2.0)."""
    if _HAVE_VECDOT:
        return np.vecdot(a, b)
    return np.einsum("...i,...i->...", a, b)


_HAVE_VECDOT = hasattr(np, "vecdot")


def _as_float(X: npt.ArrayLike) -> FloatArray:
    return np.asarray(X, dtype=np.float64)


class Step(abc.ABC):
    """One preprocessing operation. Subclasses are frozen dataclasses registered under their ``op`` name."""

    op: ClassVar[str]
    #: True when output channel i is input channel i (the wavelength axis is unchanged).
    preserves_axis: ClassVar[bool] = True

    @abc.abstractmethod
    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Apply the step.

        Parameters
        ----------
        X : array_like of float, shape (n,) or (m, n)
            One spectrum or a batch, on this step's input axis.
        dark, reference : array_like of float, shape (n,), optional
            Dark and white-reference detector counts (used by ``counts`` only).
        wavelengths : array_like of float, shape (n,), optional
            The device axis of ``X`` (used by ``resample`` only).

        Returns
        -------
        ndarray of float64, shape (k,) or (m, k)
            A new array (``X`` is never modified).
        """

    @abc.abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """JSON-ready dict with ``"op"`` and every parameter needed to rebuild the step exactly."""

    @classmethod
    @abc.abstractmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Step:
        """Rebuild the step from :meth:`to_spec` output; :class:`SpecError` on anything malformed."""

    def output_length(self, n_in: int | None) -> int | None:
        """Channel count produced from ``n_in`` input channels (None = not known until run time).

        Raises :class:`SpecError` when the step cannot take ``n_in`` channels.
        """
        return n_in


def _check_width(step: str, expected: int, n_in: int | None) -> None:
    if n_in is not None and n_in != expected:
        raise SpecError(f"{step} expects {expected} input channels, but the previous step gives {n_in}")


# ---------------------------------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class CountsDiagnostics:
    """What a counts conversion had to guard against, for the caller to report (nothing is hidden).

    Attributes
    ----------
    saturated : ndarray of bool, shape like X
        Signal counts at or above ``saturation_counts`` (all False when that is not set).
    below_dark : ndarray of bool, shape like X
        Signal at or below the dark counts: the ratio was floored at ``min_ratio``.
    reference_saturated : ndarray of bool, shape (n,)
        White-reference counts at or above ``saturation_counts``.
    """

    saturated: npt.NDArray[np.bool_]
    below_dark: npt.NDArray[np.bool_]
    reference_saturated: npt.NDArray[np.bool_]

    @property
    def n_saturated(self) -> int:
        """Number of saturated signal pixels (all spectra together)."""
        return int(np.count_nonzero(self.saturated))

    @property
    def n_below_dark(self) -> int:
        """Number of signal pixels at or below dark."""
        return int(np.count_nonzero(self.below_dark))

    @property
    def n_reference_saturated(self) -> int:
        """Number of saturated white-reference pixels."""
        return int(np.count_nonzero(self.reference_saturated))


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
        absorbance); absorbance is therefore at most ``-log10(min_ratio)`` (6 by default). Floored pixels are
        reported by :meth:`diagnose`.
    saturation_counts : float or None
        Counts at or above which a pixel is saturated (for example 65535 for a 16-bit detector); reported by
        :meth:`diagnose`, values are left as computed.

    Context (keyword, required): ``dark`` and ``reference``, counts of shape (n,) (or the shape of ``X``).
    A missing reference, non-finite values, or a reference not above dark at every channel (zero or negative
    denominator) raise :class:`InputContractError`.
    """

    quantity: str = "absorbance"
    min_ratio: float = 1e-6
    saturation_counts: float | None = None
    op: ClassVar[str] = "counts"
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
            and _immutable(dark)
            and _immutable(reference)
        ):
            return cache[2], cache[3]
        if reference is None:
            raise InputContractError("counts conversion needs reference= (white reference counts), got none")
        if dark is None:
            raise InputContractError("counts conversion needs dark= (dark counts), got none")
        d = _as_float(dark)
        w = _as_float(reference)
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
        if d.shape == (n,) and denom.shape == (n,) and _immutable(dark) and _immutable(reference):
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
        X = _as_float(X)
        d, denom = self._references(X, dark, reference)
        out = np.subtract(X, d)
        out /= denom
        np.maximum(out, self.min_ratio, out=out)
        if self.quantity == "absorbance":
            np.log10(out, out=out)
            np.negative(out, out=out)
        return out

    def diagnose(
        self, X: npt.ArrayLike, *, dark: npt.ArrayLike | None = None, reference: npt.ArrayLike | None = None
    ) -> CountsDiagnostics:
        """Saturated and below-dark pixels of ``X`` (validates dark/reference like :meth:`transform`)."""
        X = _as_float(X)
        d, _ = self._references(X, dark, reference)
        w = _as_float(reference)  # type: ignore[arg-type]  # not None: checked by _references
        sat: npt.NDArray[np.bool_]
        ref_sat: npt.NDArray[np.bool_]
        if self.saturation_counts is None:
            sat = np.zeros(X.shape, dtype=bool)
            ref_sat = np.zeros(X.shape[-1:], dtype=bool)
        else:
            sat = np.asarray(X >= self.saturation_counts)
            ref_sat = np.asarray((w >= self.saturation_counts).reshape(-1, X.shape[-1]).any(axis=0))
        return CountsDiagnostics(saturated=sat, below_dark=X <= d, reference_saturated=ref_sat)

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


# ---------------------------------------------------------------------------------------------------- axis


@register("crop")
@dataclass(frozen=True, eq=False)
class Crop(Step):
    """Keep channels ``start`` to ``stop - 1`` (the trainer turns a wavelength range into these indices)."""

    start: int
    stop: int
    op: ClassVar[str] = "crop"
    preserves_axis: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.stop):
            raise SpecError(f"expected 0 <= start < stop, got start={self.start}, stop={self.stop}")

    def output_length(self, n_in: int | None) -> int | None:
        if n_in is not None and self.stop > n_in:
            raise SpecError(f"crop stop={self.stop} is beyond the {n_in} input channels")
        return self.stop - self.start

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        if X.shape[-1] < self.stop:
            raise InputContractError(f"expected at least {self.stop} channels to crop, got {X.shape[-1]}")
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
    "expected wavelengths covering 600.0-1898.0 nm, got 610.0-1890.0 nm". No extrapolation ever happens.
    """

    grid: FloatArray
    unit: str = "nm"
    op: ClassVar[str] = "resample"
    _lo: float = field(init=False, repr=False, compare=False)
    _hi: float = field(init=False, repr=False, compare=False)
    preserves_axis: ClassVar[bool] = False

    def __post_init__(self) -> None:
        g = _readonly(self.grid, "grid", 1)
        steps = np.diff(g)
        if g.size > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
            raise SpecError("expected a strictly monotonic grid")
        object.__setattr__(self, "grid", g)
        object.__setattr__(self, "_lo", float(g.min()))
        object.__setattr__(self, "_hi", float(g.max()))

    def output_length(self, n_in: int | None) -> int | None:
        return int(self.grid.shape[0])

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        lo, hi = self._lo, self._hi
        if wavelengths is None:
            raise InputContractError(
                f"resampling needs wavelengths= (the device axis covering {lo!r}-{hi!r} {self.unit}), got none"
            )
        w = _as_float(wavelengths)
        if w.ndim != 1 or w.shape[0] != X.shape[-1]:
            raise InputContractError(f"expected wavelengths of shape ({X.shape[-1]},), got {w.shape}")
        if w.shape[0] < 2 or not np.all(np.isfinite(w)):
            raise InputContractError("expected at least 2 finite wavelengths")
        dw = np.diff(w)
        if np.all(dw < 0):
            w = w[::-1]
            X = X[..., ::-1]
        elif not np.all(dw > 0):
            raise InputContractError("expected a strictly monotonic wavelength axis")
        slack = AXIS_SLACK * (hi - lo)  # a polynomial calibration may miss the grid's ends by rounding
        if w[0] > lo + slack or w[-1] < hi - slack:
            raise InputContractError(
                f"expected wavelengths covering {lo!r}-{hi!r} {self.unit}, "
                f"got {float(w[0])!r}-{float(w[-1])!r} {self.unit}"
            )
        if X.ndim == 1:
            out1: FloatArray = np.interp(self.grid, w, X)
            return out1
        out = np.empty((X.shape[0], self.grid.shape[0]))
        for i in range(X.shape[0]):
            out[i] = np.interp(self.grid, w, X[i])
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "grid": array_to_spec(self.grid), "unit": self.unit}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Resample:
        read_keys(d, ["grid"], ["unit"])
        unit = d.get("unit", "nm")
        if not isinstance(unit, str):
            raise SpecError(f"expected unit as a string, got {unit!r}")
        return cls(grid=read_vector(d, "grid"), unit=unit)


# ---------------------------------------------------------------------------------------------------- scatter


@register("snv")
@dataclass(frozen=True, eq=False)
class SNV(Step):
    """Standard normal variate: each spectrum minus its mean, divided by its standard deviation.

    ``ddof`` is the delta degrees of freedom of that standard deviation (0, as ``numpy.std``; 1 for the sample
    standard deviation). A constant spectrum (standard deviation 0) raises :class:`InputContractError`.
    """

    ddof: int = 0
    op: ClassVar[str] = "snv"

    def __post_init__(self) -> None:
        if self.ddof not in (0, 1):
            raise SpecError(f"expected ddof 0 or 1, got {self.ddof!r}")

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        n = X.shape[-1]
        if n - self.ddof < 1:
            raise InputContractError(f"expected at least {self.ddof + 1} channels for SNV, got {n}")
        mean = np.add.reduce(X, axis=-1) / n
        out: FloatArray
        if X.ndim == 1:
            out = X - mean
            std = math.sqrt(float(_vecdot(out, out)) / (n - self.ddof))
            if not std > 0.0:
                raise InputContractError("SNV of a constant spectrum: standard deviation is 0")
            out /= std
            return out
        out = X - mean[:, None]
        stds = np.sqrt(_vecdot(out, out) / (n - self.ddof))
        if not _all_positive(stds):
            raise InputContractError("SNV of a constant spectrum: standard deviation is 0")
        out /= stds[:, None]
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "ddof": self.ddof}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> SNV:
        read_keys(d, [], ["ddof"])
        return cls(ddof=read_int(d, "ddof", minimum=0) if "ddof" in d else 0)


@register("msc")
@dataclass(frozen=True, eq=False)
class MSC(Step):
    """Multiplicative scatter correction against a fitted ``reference`` (usually the training mean spectrum).

    Each spectrum x is regressed on the reference, ``x ~ a + b * reference`` (ordinary least squares), and
    replaced by ``(x - a) / b``. A spectrum with ``b == 0`` raises :class:`InputContractError`.
    """

    reference: FloatArray
    op: ClassVar[str] = "msc"
    _rc_scaled: FloatArray = field(init=False, repr=False, compare=False)
    _ref_mean: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        r = _readonly(self.reference, "reference", 1)
        rc = r - r.mean()
        ss = float(rc @ rc)
        if not ss > 0.0:
            raise SpecError("expected a non-constant MSC reference")
        object.__setattr__(self, "reference", r)
        rc_scaled = rc / ss
        rc_scaled.setflags(write=False)
        object.__setattr__(self, "_rc_scaled", rc_scaled)
        object.__setattr__(self, "_ref_mean", float(r.mean()))

    def output_length(self, n_in: int | None) -> int | None:
        _check_width("msc", self.reference.shape[0], n_in)
        return int(self.reference.shape[0])

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        b = X @ self._rc_scaled
        if not _all_positive(np.abs(b)):
            raise InputContractError("MSC slope is 0: the spectrum does not vary with the reference")
        a = X.mean(axis=-1) - b * self._ref_mean
        out: FloatArray = X - a[..., None]
        out /= b[..., None]
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "reference": array_to_spec(self.reference)}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> MSC:
        read_keys(d, ["reference"])
        return cls(reference=read_vector(d, "reference"))


def _poly_axis(n: int) -> FloatArray:
    """Normalised channel axis in [-1, 1] used by the polynomial terms of EMSC and detrend."""
    return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)


@register("emsc")
@dataclass(frozen=True, eq=False)
class EMSC(Step):
    """Extended multiplicative signal correction (Martens and Stark; Afseth and Kohler 2012).

    Each spectrum x is modelled by least squares as
    ``x ~ b * reference + sum_k c_k t**k (k = 0..poly_order) + sum_j h_j interferents[j]``, with ``t`` the channel
    axis scaled linearly to [-1, 1]; the corrected spectrum is ``(x - baseline terms - interferent terms) / b``.
    The projection (``numpy.linalg.pinv`` of the design matrix) is computed once at construction.

    Parameters
    ----------
    reference : array_like, shape (n,)
        Fitted reference spectrum (usually the training mean).
    poly_order : int
        Degree of the polynomial baseline (0 = offset only, 2 = the usual quadratic).
    interferents : array_like, shape (q, n), optional
        Spectra of known interferents (for example water) whose contribution is removed.
    """

    reference: FloatArray
    poly_order: int = 2
    interferents: FloatArray | None = None
    op: ClassVar[str] = "emsc"
    _proj_t: FloatArray = field(init=False, repr=False, compare=False)
    _baseline_t: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        r = _readonly(self.reference, "reference", 1)
        n = r.shape[0]
        if not isinstance(self.poly_order, int) or self.poly_order < 0:
            raise SpecError(f"expected poly_order >= 0, got {self.poly_order!r}")
        cols = [r[:, None], np.vander(_poly_axis(n), self.poly_order + 1, increasing=True)]
        k = None
        if self.interferents is not None:
            k = _readonly(self.interferents, "interferents", 2)
            if k.shape[1] != n:
                raise SpecError(f"expected interferents with {n} channels, got {k.shape[1]}")
            cols.append(k.T)
        design = np.hstack(cols)
        if design.shape[1] > n:
            raise SpecError(f"EMSC has {design.shape[1]} terms but only {n} channels")
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise SpecError("EMSC design matrix is rank deficient (reference collinear with baseline/interferents)")
        proj = np.linalg.pinv(design)
        proj_t = np.ascontiguousarray(proj.T)
        baseline_t = np.ascontiguousarray(design[:, 1:].T)
        for a in (proj_t, baseline_t):
            a.setflags(write=False)
        object.__setattr__(self, "reference", r)
        object.__setattr__(self, "interferents", k)
        object.__setattr__(self, "_proj_t", proj_t)
        object.__setattr__(self, "_baseline_t", baseline_t)

    def output_length(self, n_in: int | None) -> int | None:
        _check_width("emsc", self.reference.shape[0], n_in)
        return int(self.reference.shape[0])

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        coef = X @ self._proj_t
        b = coef[..., :1]
        if not _all_positive(np.abs(b)):
            raise InputContractError("EMSC reference coefficient is 0: the spectrum does not contain the reference")
        out: FloatArray = X - coef[..., 1:] @ self._baseline_t
        out /= b
        return out

    def to_spec(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "reference": array_to_spec(self.reference),
            "poly_order": self.poly_order,
            "interferents": None if self.interferents is None else array_to_spec(self.interferents),
        }

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> EMSC:
        read_keys(d, ["reference", "poly_order"], ["interferents"])
        return cls(
            reference=read_vector(d, "reference"),
            poly_order=read_int(d, "poly_order", minimum=0),
            interferents=read_optional_matrix(d, "interferents"),
        )


# ---------------------------------------------------------------------------------------------------- filters


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
        computed from the parameters and used as stored, so the device needs no least-squares solve to agree
        with the trainer.
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
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SpecError(f"expected a non-negative integer {name}, got {v!r}")
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
            left = right = None  # type: ignore[assignment]
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
        arr = _readonly(given, name, ndim)
        if arr.shape != computed.shape:
            raise SpecError(f"expected {name} of shape {computed.shape}, got {arr.shape}")
        scale = max(float(np.abs(computed).max()), np.finfo(np.float64).tiny)
        if float(np.abs(arr - computed).max()) > KERNEL_CHECK_RTOL * scale:
            raise SpecError(f"{name} does not match window/polyorder/deriv/delta")
        return np.array(arr)

    def output_length(self, n_in: int | None) -> int | None:
        if n_in is not None and n_in < self.window:
            raise SpecError(f"savgol window {self.window} is longer than the {n_in} input channels")
        return n_in

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
            raise InputContractError(f"expected at least {w} channels for the savgol window, got {n}")
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

    def to_spec(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "op": self.op,
            "window": self.window,
            "polyorder": self.polyorder,
            "deriv": self.deriv,
            "delta": self.delta,
            "mode": self.mode,
            "kernel": array_to_spec(self.kernel),  # type: ignore[arg-type]
        }
        if self.mode == "interp":
            d["edge_left"] = array_to_spec(self.edge_left) if self.window > 1 else []  # type: ignore[arg-type]
            d["edge_right"] = array_to_spec(self.edge_right) if self.window > 1 else []  # type: ignore[arg-type]
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


@register("detrend")
@dataclass(frozen=True, eq=False)
class Detrend(Step):
    """Subtract from each spectrum its least-squares polynomial of degree ``order`` over the channel axis
    (scaled to [-1, 1]); ``n_channels`` fixes the axis so the projection is computed once."""

    order: int
    n_channels: int
    op: ClassVar[str] = "detrend"
    _proj_t: FloatArray = field(init=False, repr=False, compare=False)
    _vander_t: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.order, int) or self.order < 0:
            raise SpecError(f"expected order >= 0, got {self.order!r}")
        if not isinstance(self.n_channels, int) or self.n_channels <= self.order:
            raise SpecError(f"expected n_channels > order, got n_channels={self.n_channels!r}, order={self.order}")
        vander = np.vander(_poly_axis(self.n_channels), self.order + 1, increasing=True)
        proj_t = np.ascontiguousarray(np.linalg.pinv(vander).T)
        vander_t = np.ascontiguousarray(vander.T)
        for a in (proj_t, vander_t):
            a.setflags(write=False)
        object.__setattr__(self, "_proj_t", proj_t)
        object.__setattr__(self, "_vander_t", vander_t)

    def output_length(self, n_in: int | None) -> int | None:
        _check_width("detrend", self.n_channels, n_in)
        return self.n_channels

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        if X.shape[-1] != self.n_channels:
            raise InputContractError(f"expected {self.n_channels} channels for detrend, got {X.shape[-1]}")
        out: FloatArray = X - (X @ self._proj_t) @ self._vander_t
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "order": self.order, "n_channels": self.n_channels}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Detrend:
        read_keys(d, ["order", "n_channels"])
        return cls(order=read_int(d, "order", minimum=0), n_channels=read_int(d, "n_channels", minimum=1))


_NORMS = ("vector", "area", "max")


@register("normalize")
@dataclass(frozen=True, eq=False)
class Normalize(Step):
    """Divide each spectrum by its Euclidean norm (``"vector"``), sum of absolute values (``"area"``) or largest
    absolute value (``"max"``); a zero norm raises :class:`InputContractError`."""

    norm: str = "vector"
    op: ClassVar[str] = "normalize"

    def __post_init__(self) -> None:
        if self.norm not in _NORMS:
            raise SpecError(f"expected norm in {list(_NORMS)}, got {self.norm!r}")

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        if self.norm == "vector":
            scale = np.sqrt((X * X).sum(axis=-1, keepdims=True))
        elif self.norm == "area":
            scale = np.abs(X).sum(axis=-1, keepdims=True)
        else:
            scale = np.abs(X).max(axis=-1, keepdims=True)
        if not _all_positive(scale):
            raise InputContractError(f"cannot normalise a spectrum whose {self.norm} norm is 0")
        out: FloatArray = X / scale
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "norm": self.norm}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Normalize:
        read_keys(d, ["norm"])
        return cls(norm=read_str(d, "norm", _NORMS))


# ---------------------------------------------------------------------------------------------------- scaling


@register("center")
@dataclass(frozen=True, eq=False)
class MeanCenter(Step):
    """Subtract a fitted per-channel ``mean`` (shape (n,))."""

    mean: FloatArray
    op: ClassVar[str] = "center"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _readonly(self.mean, "mean", 1))

    def output_length(self, n_in: int | None) -> int | None:
        _check_width("center", self.mean.shape[0], n_in)
        return int(self.mean.shape[0])

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        out: FloatArray = _as_float(X) - self.mean
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "mean": array_to_spec(self.mean)}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> MeanCenter:
        read_keys(d, ["mean"])
        return cls(mean=read_vector(d, "mean"))


@register("autoscale")
@dataclass(frozen=True, eq=False)
class Autoscale(Step):
    """``(X - mean) / scale`` with fitted per-channel ``mean`` and positive ``scale`` (as StandardScaler)."""

    mean: FloatArray
    scale: FloatArray
    op: ClassVar[str] = "autoscale"

    def __post_init__(self) -> None:
        mean = _readonly(self.mean, "mean", 1)
        scale = _readonly(self.scale, "scale", 1)
        if scale.shape != mean.shape:
            raise SpecError(f"expected scale of shape {mean.shape}, got {scale.shape}")
        if not np.all(scale > 0):
            raise SpecError("expected every scale > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)

    def output_length(self, n_in: int | None) -> int | None:
        _check_width("autoscale", self.mean.shape[0], n_in)
        return int(self.mean.shape[0])

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        out = _as_float(X) - self.mean
        out /= self.scale
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "mean": array_to_spec(self.mean), "scale": array_to_spec(self.scale)}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Autoscale:
        read_keys(d, ["mean", "scale"])
        return cls(mean=read_vector(d, "mean"), scale=read_vector(d, "scale"))


@register("linear")
@dataclass(frozen=True, eq=False)
class LinearTransfer(Step):
    """``X @ matrix + offset``: a linear map such as a DS/PDS calibration-transfer matrix fitted by the trainer.

    Parameters
    ----------
    matrix : array_like, shape (n_in, n_out)
    offset : array_like, shape (n_out,), optional
    """

    matrix: FloatArray
    offset: FloatArray | None = None
    op: ClassVar[str] = "linear"
    preserves_axis: ClassVar[bool] = False

    def __post_init__(self) -> None:
        m = _readonly(self.matrix, "matrix", 2)
        object.__setattr__(self, "matrix", m)
        if self.offset is not None:
            b = _readonly(self.offset, "offset", 1)
            if b.shape[0] != m.shape[1]:
                raise SpecError(f"expected offset of length {m.shape[1]}, got {b.shape[0]}")
            object.__setattr__(self, "offset", b)

    def output_length(self, n_in: int | None) -> int | None:
        _check_width("linear", self.matrix.shape[0], n_in)
        return int(self.matrix.shape[1])

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        if X.shape[-1] != self.matrix.shape[0]:
            raise InputContractError(f"expected {self.matrix.shape[0]} channels, got {X.shape[-1]}")
        out: FloatArray = X @ self.matrix
        if self.offset is not None:
            out += self.offset
        return out

    def to_spec(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "matrix": array_to_spec(self.matrix),
            "offset": None if self.offset is None else array_to_spec(self.offset),
        }

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> LinearTransfer:
        read_keys(d, ["matrix"], ["offset"])
        m = read_matrix(d, "matrix")
        return cls(matrix=m, offset=read_optional_vector(d, "offset", int(m.shape[1])))


# ---------------------------------------------------------------------------------------------------- stack


def run_steps(
    steps: Sequence[Step],
    X: FloatArray,
    *,
    dark: npt.ArrayLike | None = None,
    reference: npt.ArrayLike | None = None,
    wavelengths: npt.ArrayLike | None = None,
) -> FloatArray:
    """Apply ``steps`` in order; ``wavelengths`` reaches a step only while the axis is still the input axis."""
    for step in steps:
        X = step.transform(X, dark=dark, reference=reference, wavelengths=wavelengths)
        if not step.preserves_axis:
            wavelengths = None
    return X


@register("stack")
@dataclass(frozen=True, eq=False)
class Stack(Step):
    """Run several sub-pipelines (``branches``) on the same input and stack their outputs on a new last axis.

    Output shape ``(k, n_branches)`` or ``(m, k, n_branches)``: channels-last input for a CNN fed several
    preprocessings at once. Every branch must give the same length; an empty branch passes its input through.
    A stack must be the last step of a pipeline and cannot contain another stack.
    """

    branches: tuple[tuple[Step, ...], ...]
    op: ClassVar[str] = "stack"
    preserves_axis: ClassVar[bool] = False

    def __post_init__(self) -> None:
        branches = tuple(tuple(b) for b in self.branches)
        if not branches:
            raise SpecError("expected at least one branch in a stack")
        for b in branches:
            for s in b:
                if not isinstance(s, Step):
                    raise SpecError(f"expected steps in stack branches, got {type(s).__name__}")
                if isinstance(s, Stack):
                    raise SpecError("a stack cannot contain another stack")
                if isinstance(s, (CountsConversion, Resample)):
                    raise SpecError(f"op {s.op!r} belongs before the stack, not inside a branch")
        object.__setattr__(self, "branches", branches)

    def output_length(self, n_in: int | None) -> int | None:
        lengths = []
        for b in self.branches:
            n = n_in
            for s in b:
                n = s.output_length(n)
            lengths.append(n)
        known = {n for n in lengths if n is not None}
        if len(known) > 1:
            raise SpecError(f"stack branches give different lengths {lengths}; expected equal lengths")
        if not known or None in lengths:
            return None
        return known.pop()

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = _as_float(X)
        outs = [run_steps(b, X) for b in self.branches]
        shapes = {o.shape for o in outs}
        if len(shapes) != 1:
            raise InputContractError(f"stack branches gave different shapes {sorted(shapes)}")
        return np.stack(outs, axis=-1)

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "branches": [[s.to_spec() for s in b] for b in self.branches]}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Stack:
        read_keys(d, ["branches"])
        raw = d["branches"]
        if not isinstance(raw, list) or not all(isinstance(b, list) for b in raw):
            raise SpecError("expected branches as a list of lists of step specs")
        return cls(
            branches=tuple(
                tuple(step_from_spec(s, f"branch {i} step {j}") for j, s in enumerate(b)) for i, b in enumerate(raw)
            )
        )
