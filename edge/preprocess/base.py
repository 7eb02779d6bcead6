"""What every preprocessing step is: the :class:`Step` interface, the op registry, and the array helpers the steps
share.

A step module defines a frozen dataclass subclassing :class:`Step` and registers it under its op name with
:func:`register`; :func:`step_from_spec` rebuilds any registered step from its JSON spec. The registry is the one
list of ops: the trainer's estimators are checked against it (``trainer.preprocessing``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from edge.errors import InputContractError, SpecError
from edge.preprocess.spec import FloatArray
from edge.validation import require_mapping

__all__ = [
    "Axis",
    "Step",
    "register",
    "known_ops",
    "step_class",
    "step_from_spec",
    "readonly",
    "all_positive",
    "is_immutable",
    "vecdot",
    "as_float",
    "check_width",
]


def readonly(a: npt.ArrayLike, name: str, ndim: int) -> FloatArray:
    """Read-only float64 copy of ``a`` with ``ndim`` dimensions and finite values (construction-time check)."""
    arr = np.array(a, dtype=np.float64)
    if arr.ndim != ndim or arr.size == 0:
        raise SpecError(f"expected {name} as a non-empty {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"expected finite values in {name}")
    arr.setflags(write=False)
    return arr


def all_positive(a: FloatArray) -> bool:
    """True when every value of ``a`` is > 0 (NaN counts as not positive); cheap for one value."""
    if a.size == 1:
        return bool(a.item() > 0.0)
    return bool(a.min() > 0.0)


def is_immutable(a: object) -> bool:
    """True for an ndarray that is read-only all the way down to memory nobody can write (None or bytes)."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return a is None or isinstance(a, bytes)


def vecdot(a: FloatArray, b: FloatArray) -> Any:
    """Dot product along the last axis (``numpy.vecdot`` where available, numpy >= 2.0)."""
    if _HAVE_VECDOT:
        return np.vecdot(a, b)
    return np.einsum("...i,...i->...", a, b)


_HAVE_VECDOT = hasattr(np, "vecdot")


def as_float(X: npt.ArrayLike) -> FloatArray:
    """``X`` as float64 (no copy when it already is)."""
    return np.asarray(X, dtype=np.float64)


@dataclass(frozen=True)
class Axis:
    """The channel axis between two steps, as :meth:`Step.output_axis` follows it through a pipeline.

    Attributes
    ----------
    n_channels : int or None
        Channels per spectrum; None when known only at run time (a pipeline that takes any device axis).
    device : bool
        True while channel i is still the device's channel i, so the device's wavelength axis (``wavelengths=``)
        still describes it and reaches the step; False once a step has cropped, resampled or projected it.
    wavelengths : tuple of float or None
        Where each channel lies (axis units), when the one following the axis knows it: the trainer starts from its
        training spectra's axis and gets the axis every step sees from here (a crop's range becomes channels of
        it); None once a step has projected the channels (``linear``, ``stack``) or where nobody gave it (the
        device's pipeline, which takes the device's axis at run time).

    >>> from edge.preprocess import SNV, Crop
    >>> Crop(2, 10).output_axis(SNV().output_axis(Axis(650)))
    Axis(n_channels=8, device=False)
    """

    n_channels: int | None = None
    device: bool = True
    wavelengths: tuple[float, ...] | None = field(default=None, repr=False)

    def with_channels(self, n_channels: int | None) -> Axis:
        """This axis with ``n_channels`` (a step that keeps each channel where it is: same device flag and
        wavelengths)."""
        return Axis(n_channels, self.device, self.wavelengths)


class Step(abc.ABC):
    """One preprocessing operation. Subclasses are frozen dataclasses registered under their ``op`` name."""

    op: ClassVar[str]
    #: True when a batch gives every row the very bits that row gives alone (elementwise arithmetic and reductions
    #: along each row); False for steps built on matrix products or convolutions, whose summation order BLAS may
    #: change with the batch size.  :meth:`transform_rows` takes a batch whole for the former, row by row for the
    #: latter unless the step overrides it.
    row_exact: ClassVar[bool] = False

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

    def transform_rows(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """A batch ``X`` (shape (m, n), m >= 1) whose every row gets the very bits :meth:`transform` gives that row
        alone; :class:`InputContractError` for anything else.

        The batch is laid out row by row first (a later step's sums along a row of a column-major batch would not
        be those of the row alone).  A :attr:`row_exact` step then takes it whole; any other goes row by row, each
        on a fresh copy of its row (the layout of a single spectrum), unless it overrides :meth:`_batched` to batch
        what it can exactly (the Savitzky-Golay filter, a stack).
        """
        batch = np.ascontiguousarray(X)
        if batch.ndim != 2 or batch.shape[0] == 0:
            raise InputContractError(f"expected a batch of spectra, shape (m >= 1, n), got shape {batch.shape}")
        return self._batched(batch, dark=dark, reference=reference, wavelengths=wavelengths)

    def _batched(self, X: npt.NDArray[Any], *, dark: npt.ArrayLike | None, reference: npt.ArrayLike | None,
                 wavelengths: npt.ArrayLike | None) -> FloatArray:
        """:meth:`transform_rows` of a checked, C-ordered batch; what it returns is C-ordered too."""
        if self.row_exact:
            return self.transform(X, dark=dark, reference=reference, wavelengths=wavelengths)
        return np.stack([self.transform(np.array(row), dark=dark, reference=reference, wavelengths=wavelengths)
                         for row in X])

    @abc.abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """JSON-ready dict with ``"op"`` and every parameter needed to rebuild the step exactly."""

    @classmethod
    @abc.abstractmethod
    def from_spec(cls, d: Mapping[str, Any]) -> Step:
        """Rebuild the step from :meth:`to_spec` output; :class:`SpecError` on anything malformed."""

    def output_axis(self, axis: Axis) -> Axis:
        """The axis this step gives from its input ``axis``: the one place a step says how it transforms the
        channel axis (how many channels, and whether they are still the device's, see :class:`Axis`).  The
        pipeline, a stack's branches and the trainer follow the axis through the steps with it; the default keeps
        the axis as it is (an elementwise or per-spectrum operation).

        Raises :class:`SpecError` when the step cannot take ``axis.n_channels`` channels.
        """
        return axis

    @property
    def keeps_device_axis(self) -> bool:
        """True when output channel i is input channel i (:meth:`output_axis` of the device's axis keeps it)."""
        return self.output_axis(Axis()).device


def check_width(step: str, expected: int, n_in: int | None) -> None:
    if n_in is not None and n_in != expected:
        raise SpecError(f"{step} expects {expected} input channels, but the previous step gives {n_in}")


_T = TypeVar("_T", bound="type[Step]")
_REGISTRY: dict[str, type[Step]] = {}


def register(op: str) -> Callable[[_T], _T]:
    """Class decorator adding a step class to the op registry under ``op`` (also set as its ``op`` attribute)."""

    def decorate(cls: _T) -> _T:
        if op in _REGISTRY:
            raise RuntimeError(f"op {op!r} registered twice")  # programming error, not data
        _REGISTRY[op] = cls
        return cls

    return decorate


def known_ops() -> tuple[str, ...]:
    """Sorted names of every op the registry knows."""
    return tuple(sorted(_REGISTRY))


def step_class(op: object) -> type[Step]:
    """Step class registered for ``op``; :class:`SpecError` naming the known ops when there is none."""
    if not isinstance(op, str) or op not in _REGISTRY:
        raise SpecError(f"unknown op {op!r}; known ops: {', '.join(known_ops())}")
    return _REGISTRY[op]


def step_from_spec(d: object, where: str = "step") -> Step:
    """Build one step from its spec dict (``{"op": ..., ...}``) through the registry."""
    d = require_mapping(d, where, SpecError, "an object with an 'op' key")
    if "op" not in d:
        raise SpecError(f"{where}: expected an 'op' key; known ops: {', '.join(known_ops())}")
    cls = step_class(d["op"])
    try:
        return cls.from_spec(d)
    except SpecError as exc:
        raise SpecError(f"{where} ({d['op']}): {exc}") from None
