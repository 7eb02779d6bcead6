"""Several preprocessings of one spectrum stacked as input channels (the ``stack`` op), and :func:`run_steps`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import InputContractError, SpecError
from edge.preprocess.base import Axis, Step, as_float, register, step_from_spec
from edge.preprocess.instrument import CountsConversion, Resample
from edge.preprocess.spec import FloatArray, read_keys

__all__ = ["Stack", "run_steps"]


def run_steps(
    steps: Sequence[Step],
    X: FloatArray,
    *,
    dark: npt.ArrayLike | None = None,
    reference: npt.ArrayLike | None = None,
    wavelengths: npt.ArrayLike | None = None,
    rows: bool = False,
) -> FloatArray:
    """Apply ``steps`` in order; ``wavelengths`` reaches a step only while the axis is still the input axis.  With
    ``rows``, ``X`` is a batch each of whose rows gets the bits it gets alone (:meth:`Step.transform_rows`)."""
    for step in steps:
        run = step.transform_rows if rows else step.transform
        X = run(X, dark=dark, reference=reference, wavelengths=wavelengths)
        if not step.keeps_device_axis:
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

    def output_axis(self, axis: Axis) -> Axis:
        lengths = []
        for b in self.branches:
            a = axis
            for s in b:
                a = s.output_axis(a)
            lengths.append(a.n_channels)
        known = {n for n in lengths if n is not None}
        if len(known) > 1:
            raise SpecError(f"stack branches give different lengths {lengths}; expected equal lengths")
        if not known or None in lengths:
            return Axis(None, device=False)
        return Axis(known.pop(), device=False)  # a new trailing axis of branches

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        return self._stacked(as_float(X), rows=False)

    def _batched(self, X: npt.NDArray[Any], *, dark: npt.ArrayLike | None, reference: npt.ArrayLike | None,
                 wavelengths: npt.ArrayLike | None) -> FloatArray:
        """A batch, each row the bits it gets alone: every branch runs on the whole batch as a pipeline does (each
        step's :meth:`Step.transform_rows`), and stacking copies values."""
        return self._stacked(as_float(X), rows=True)

    def _stacked(self, X: FloatArray, *, rows: bool) -> FloatArray:
        outs = [run_steps(b, X, rows=rows) for b in self.branches]
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
