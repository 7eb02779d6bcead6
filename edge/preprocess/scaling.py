"""Column scaling and linear maps: mean centring, autoscaling and the linear (calibration-transfer) step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import ChannelCountError, SpecError
from edge.preprocess.base import Axis, Step, as_float, check_width, readonly, register
from edge.preprocess.spec import FloatArray, array_to_spec, read_keys, read_matrix, read_optional_vector, read_vector

__all__ = ["MeanCenter", "Autoscale", "LinearTransfer"]


@register("center")
@dataclass(frozen=True, eq=False)
class MeanCenter(Step):
    """Subtract a fitted per-channel ``mean`` (shape (n,))."""

    mean: FloatArray
    op: ClassVar[str] = "center"
    row_exact: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", readonly(self.mean, "mean", 1))

    def output_axis(self, axis: Axis) -> Axis:
        check_width("center", self.mean.shape[0], axis.n_channels)
        return axis.with_channels(int(self.mean.shape[0]))

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        out: FloatArray = as_float(X) - self.mean
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
    row_exact: ClassVar[bool] = True

    def __post_init__(self) -> None:
        mean = readonly(self.mean, "mean", 1)
        scale = readonly(self.scale, "scale", 1)
        if scale.shape != mean.shape:
            raise SpecError(f"expected scale of shape {mean.shape}, got {scale.shape}")
        if not np.all(scale > 0):
            raise SpecError("expected every scale > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)

    def output_axis(self, axis: Axis) -> Axis:
        check_width("autoscale", self.mean.shape[0], axis.n_channels)
        return axis.with_channels(int(self.mean.shape[0]))

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        out = as_float(X) - self.mean
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

    def __post_init__(self) -> None:
        m = readonly(self.matrix, "matrix", 2)
        object.__setattr__(self, "matrix", m)
        if self.offset is not None:
            b = readonly(self.offset, "offset", 1)
            if b.shape[0] != m.shape[1]:
                raise SpecError(f"expected offset of length {m.shape[1]}, got {b.shape[0]}")
            object.__setattr__(self, "offset", b)

    def output_axis(self, axis: Axis) -> Axis:
        check_width("linear", self.matrix.shape[0], axis.n_channels)
        return Axis(int(self.matrix.shape[1]), device=False)  # each output mixes every input channel

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        X = as_float(X)
        if X.shape[-1] != self.matrix.shape[0]:
            raise ChannelCountError(f"expected {self.matrix.shape[0]} channels, got {X.shape[-1]}")
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
