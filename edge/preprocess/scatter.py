"""Scatter and baseline corrections: SNV, MSC, EMSC, detrending and normalisation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import ChannelCountError, InputContractError, SpecError
from edge.preprocess.base import Axis, Step, all_positive, as_float, check_width, readonly, register, vecdot
from edge.preprocess.spec import (
    FloatArray,
    array_to_spec,
    read_int,
    read_keys,
    read_optional_matrix,
    read_str,
    read_vector,
)
from edge.validation import require_int

__all__ = ["SNV", "MSC", "EMSC", "Detrend", "Normalize"]


@register("snv")
@dataclass(frozen=True, eq=False)
class SNV(Step):
    """Standard normal variate: each spectrum minus its mean, divided by its standard deviation.

    ``ddof`` is the delta degrees of freedom of that standard deviation (0, as ``numpy.std``; 1 for the sample
    standard deviation). A constant spectrum (standard deviation 0) raises :class:`InputContractError`.
    """

    ddof: int = 0
    op: ClassVar[str] = "snv"
    row_exact: ClassVar[bool] = True

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
        X = as_float(X)
        n = X.shape[-1]
        if n - self.ddof < 1:
            raise ChannelCountError(f"expected at least {self.ddof + 1} channels for SNV, got {n}")
        mean = np.add.reduce(X, axis=-1) / n
        out: FloatArray
        if X.ndim == 1:
            out = X - mean
            std = math.sqrt(float(vecdot(out, out)) / (n - self.ddof))
            if not std > 0.0:
                raise InputContractError("SNV of a constant spectrum: standard deviation is 0")
            out /= std
            return out
        out = X - mean[:, None]
        stds = np.sqrt(vecdot(out, out) / (n - self.ddof))
        if not all_positive(stds):
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
        r = readonly(self.reference, "reference", 1)
        rc = r - r.mean()
        ss = float(rc @ rc)
        if not ss > 0.0:
            raise SpecError("expected a non-constant MSC reference")
        object.__setattr__(self, "reference", r)
        rc_scaled = rc / ss
        rc_scaled.setflags(write=False)
        object.__setattr__(self, "_rc_scaled", rc_scaled)
        object.__setattr__(self, "_ref_mean", float(r.mean()))

    def output_axis(self, axis: Axis) -> Axis:
        check_width("msc", self.reference.shape[0], axis.n_channels)
        return axis.with_channels(int(self.reference.shape[0]))

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = as_float(X)
        b = X @ self._rc_scaled
        if not all_positive(np.abs(b)):
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
        r = readonly(self.reference, "reference", 1)
        n = r.shape[0]
        require_int(self.poly_order, "poly_order", SpecError, minimum=0)
        cols = [r[:, None], np.vander(_poly_axis(n), self.poly_order + 1, increasing=True)]
        k = None
        if self.interferents is not None:
            k = readonly(self.interferents, "interferents", 2)
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

    def output_axis(self, axis: Axis) -> Axis:
        check_width("emsc", self.reference.shape[0], axis.n_channels)
        return axis.with_channels(int(self.reference.shape[0]))

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = as_float(X)
        coef = X @ self._proj_t
        b = coef[..., :1]
        if not all_positive(np.abs(b)):
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
        require_int(self.order, "order", SpecError, minimum=0)
        require_int(self.n_channels, "n_channels", SpecError, minimum=self.order + 1)  # more channels than order
        vander = np.vander(_poly_axis(self.n_channels), self.order + 1, increasing=True)
        proj_t = np.ascontiguousarray(np.linalg.pinv(vander).T)
        vander_t = np.ascontiguousarray(vander.T)
        for a in (proj_t, vander_t):
            a.setflags(write=False)
        object.__setattr__(self, "_proj_t", proj_t)
        object.__setattr__(self, "_vander_t", vander_t)

    def output_axis(self, axis: Axis) -> Axis:
        check_width("detrend", self.n_channels, axis.n_channels)
        return axis.with_channels(self.n_channels)

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = as_float(X)
        if X.shape[-1] != self.n_channels:
            raise ChannelCountError(f"expected {self.n_channels} channels for detrend, got {X.shape[-1]}")
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
    row_exact: ClassVar[bool] = True

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
        X = as_float(X)
        if self.norm == "vector":
            scale = np.sqrt((X * X).sum(axis=-1, keepdims=True))
        elif self.norm == "area":
            scale = np.abs(X).sum(axis=-1, keepdims=True)
        else:
            scale = np.abs(X).max(axis=-1, keepdims=True)
        if not all_positive(scale):
            raise InputContractError(f"cannot normalise a spectrum whose {self.norm} norm is 0")
        out: FloatArray = X / scale
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"op": self.op, "norm": self.norm}

    @classmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Normalize:
        read_keys(d, ["norm"])
        return cls(norm=read_str(d, "norm", _NORMS))
