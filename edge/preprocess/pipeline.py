"""The preprocessing pipeline: an immutable chain of steps behind an input contract, and its JSON spec.

The pipeline is the validation boundary: it checks its input once (shape, channel count, finiteness, wavelength
axis) and raises :class:`~edge.errors.InputContractError` with a message such as "expected 650 channels, got 512";
it never reshapes, pads or truncates silently. The steps behind it then run without re-checking.

Spec layout (``spec_version`` 1)::

    {"spec_version": 1,
     "input": {"n_channels": 650, "wavelength_min": 600.0, "wavelength_max": 1898.0,
               "wavelength_unit": "nm", "wavelength_tolerance": 1.0},
     "steps": [{"op": "counts", ...}, {"op": "snv", "ddof": 0}, ...]}

>>> import numpy as np
>>> from edge.preprocess import SNV, InputContract, Pipeline
>>> p = Pipeline((SNV(),), InputContract(n_channels=4))
>>> p.transform(np.array([1.0, 2.0, 3.0, 4.0])).round(3).tolist()
[-1.342, -0.447, 0.447, 1.342]
>>> Pipeline.from_json(p.to_json()).to_spec() == p.to_spec()
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import InputContractError, SpecError
from edge.preprocess import spec as _spec
from edge.preprocess.base import Axis, Step, step_from_spec
from edge.preprocess.contract import InputContract
from edge.preprocess.instrument import CountsConversion, Crop, Resample
from edge.preprocess.spec import FloatArray
from edge.preprocess.stack import Stack
from edge.validation import require_mapping

__all__ = ["InputContract", "Pipeline"]


def _finite(a: FloatArray) -> bool:
    """True when every value is finite.

    One reduction (a dot product for one spectrum, a sum for a batch) instead of an ``isfinite`` temporary: NaN
    or inf anywhere makes it non-finite. The exact check runs only then (or on an overflow of huge values).
    """
    s = np.dot(a, a) if a.ndim == 1 else np.add.reduce(a, axis=None)
    return math.isfinite(float(s)) or bool(np.isfinite(a).all())


def _finished(out: FloatArray, arr: FloatArray) -> FloatArray:
    """The steps' output ``out`` of input ``arr``, checked finite and never a view of the input."""
    if not _finite(out):
        raise InputContractError("preprocessing produced NaN or inf; check the input spectra and references")
    return out.copy() if np.may_share_memory(out, arr) else out


@dataclass(frozen=True, eq=False)
class Pipeline:
    """Immutable chain of preprocessing steps with an input contract.

    Parameters
    ----------
    steps : sequence of Step
        Applied in order. A ``resample`` step may only follow steps that keep the input axis; a ``stack`` step
        must be last.
    input_contract : InputContract
        Checked on every :meth:`transform`.

    Raises
    ------
    SpecError
        When the steps do not fit together (widths, order).
    """

    steps: tuple[Step, ...]
    input_contract: InputContract = InputContract()
    _output_shape: tuple[int, ...] | None = field(init=False, repr=False, compare=False)
    _resamples: bool = field(init=False, repr=False, compare=False)
    _on_device_axis: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    _level_index: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        if not isinstance(self.input_contract, InputContract):
            raise SpecError(f"expected an InputContract, got {type(self.input_contract).__name__}")
        axis = Axis(self.input_contract.n_channels)
        on_device_axis = []  # whether step i sees the device's channels (and gets ``wavelengths=``)
        for i, s in enumerate(steps):
            if not isinstance(s, Step):
                raise SpecError(f"step {i}: expected a Step, got {type(s).__name__}")
            if isinstance(s, Resample) and not axis.device:
                raise SpecError(f"step {i}: resample must come before any step that changes the axis")
            if isinstance(s, Stack) and i != len(steps) - 1:
                raise SpecError(f"step {i}: stack must be the last step")
            on_device_axis.append(axis.device)
            try:
                axis = s.output_axis(axis)
            except SpecError as exc:
                raise SpecError(f"step {i} ({s.op}): {exc}") from None
        object.__setattr__(self, "_on_device_axis", tuple(on_device_axis))
        n = axis.n_channels
        if steps and isinstance(steps[-1], Stack):
            shape: tuple[int, ...] | None = None if n is None else (n, len(steps[-1].branches))
        else:
            shape = None if n is None else (n,)
        object.__setattr__(self, "_output_shape", shape)
        resamples = any(isinstance(s, Resample) for s in steps)
        object.__setattr__(self, "_resamples", resamples)
        level = 0
        while level < len(steps) and isinstance(steps[level], (CountsConversion, Resample, Crop)):
            level += 1
        object.__setattr__(self, "_level_index", level)
        if self.input_contract.resamples != resamples:  # the steps say how the device's axis is judged
            object.__setattr__(self, "input_contract", dataclasses.replace(self.input_contract, resamples=resamples))

    # ------------------------------------------------------------------------------------------------ shape

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Shape of the output for one spectrum: ``(n_features,)`` or ``(n_features, n_branches)``; None if it
        depends on the input (no channel count in the contract)."""
        return self._output_shape

    @property
    def transfer_index(self) -> int:
        """Index where a calibration-transfer (``linear``) step belongs: after the leading ``counts`` and
        ``resample`` steps, where the data are absorbance on the model grid."""
        i = 0
        while i < len(self.steps) and isinstance(self.steps[i], (CountsConversion, Resample)):
            i += 1
        return i

    @property
    def level_index(self) -> int:
        """Number of leading instrument steps (``counts``, ``resample``, ``crop``): after them the data are the
        signal on the model's range (absorbance, for a pipeline from counts), before any scatter correction or
        filter.  :meth:`transform_level` takes each spectrum's level there."""
        return self._level_index

    def insert(self, index: int, step: Step) -> Pipeline:
        """New pipeline with ``step`` inserted before position ``index`` (same contract)."""
        steps = list(self.steps)
        steps.insert(index, step)
        return Pipeline(tuple(steps), self.input_contract)

    # ------------------------------------------------------------------------------------------------ run

    def _check(self, X: npt.ArrayLike, wavelengths: npt.ArrayLike | None) -> FloatArray:
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputContractError(f"expected a numeric array of spectra: {exc}") from None
        if arr.ndim not in (1, 2) or arr.shape[-1] == 0 or (arr.ndim == 2 and arr.shape[0] == 0):
            raise InputContractError(f"expected one spectrum (n,) or a batch (m, n), got shape {arr.shape}")
        self.input_contract.check_channels(arr.shape[-1])
        if not _finite(arr):
            raise InputContractError(
                f"expected finite values, got {int(np.count_nonzero(~np.isfinite(arr)))} NaN or inf"
            )
        if wavelengths is not None:
            self.check_axis(wavelengths, arr.shape[-1])
        return arr

    def check_axis(self, wavelengths: npt.ArrayLike, n_channels: int) -> None:
        """Raise :class:`~edge.errors.AxisContractError` when the input axis ``wavelengths`` of spectra with
        ``n_channels`` channels is not the one the contract names (end points within ``wavelength_tolerance``):
        :meth:`InputContract.check_axis <edge.preprocess.contract.InputContract.check_axis>`.

        A pipeline that resamples takes any axis here (its ``resample`` step judges it against the model grid),
        and so does a contract without a wavelength range.  :meth:`transform` runs this check on every
        ``wavelengths=`` it is given.
        """
        self.input_contract.check_axis(wavelengths, n_channels)

    def transform(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Preprocess one spectrum or a batch.

        Parameters
        ----------
        X : array_like of float, shape (n_channels,) or (m, n_channels)
            Spectra (counts when the pipeline starts with ``counts``, else absorbance).
        dark, reference : array_like, shape (n_channels,), optional
            Dark and white-reference counts, for a pipeline that starts from counts.
        wavelengths : array_like, shape (n_channels,), optional
            The device axis of ``X``: required by a pipeline that resamples, checked against the contract
            otherwise.

        Returns
        -------
        ndarray of float64, shape ``output_shape`` or ``(m,) + output_shape``
            A new array, never a view of ``X``.

        Raises
        ------
        InputContractError
            Wrong shape or channel count, NaN/inf, a wavelength axis outside the contract, a missing or zero
            reference, or data a step cannot handle (a constant spectrum for SNV, ...).
        """
        arr = self._check(X, wavelengths)
        return self._run(arr, dark, reference, wavelengths, rows=False)[0]

    def transform_rows(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Preprocess a batch so that every row gets the very bits :meth:`transform` gives it alone.

        Each step runs its :meth:`~edge.preprocess.base.Step.transform_rows`: steps that are
        :attr:`~edge.preprocess.base.Step.row_exact` on the whole batch in one call; the Savitzky-Golay filter
        convolves the batch in one call and computes each row's edges alone; a stack does the same per branch;
        the others (matrix products) run row by row on a fresh copy of each row, as for a single spectrum.  The
        daemon's micro-batches use this, so a prediction does not depend on the frames it was batched with.

        Parameters
        ----------
        X : array_like of float, shape (m, n_channels)
        dark, reference, wavelengths
            As :meth:`transform`.

        Returns
        -------
        ndarray of float64, shape ``(m,) + output_shape``

        Raises
        ------
        InputContractError
            As :meth:`transform`, for the batch as a whole (one bad row fails it).
        """
        arr = self._check(X, wavelengths)
        if arr.ndim != 2:
            raise InputContractError(f"expected a batch of spectra (m, n), got shape {arr.shape}")
        return self._run(arr, dark, reference, wavelengths, rows=True)[0]

    def transform_level(
        self,
        X: npt.ArrayLike,
        *,
        dark: npt.ArrayLike | None = None,
        reference: npt.ArrayLike | None = None,
        wavelengths: npt.ArrayLike | None = None,
        rows: bool = False,
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`transform` (or, with ``rows``, :meth:`transform_rows`) and each spectrum's *level*: the mean of
        its signal after the leading instrument steps (:attr:`level_index`), e.g. the mean absorbance over the
        model's range, which scatter corrections such as SNV remove before the model (a baseline offset, a lamp
        that lost light).  Same output, bit for bit; the level costs one mean per spectrum.

        Returns
        -------
        out : ndarray
            As :meth:`transform` / :meth:`transform_rows`.
        level : ndarray of float64, shape () for one spectrum, (m,) for a batch
            Each row's level; a batch's rows get the very bits each gets alone.
        """
        arr = self._check(X, wavelengths)
        if rows and arr.ndim != 2:
            raise InputContractError(f"expected a batch of spectra (m, n), got shape {arr.shape}")
        out, tapped = self._run(arr, dark, reference, wavelengths, rows=rows, tap=True)
        assert tapped is not None
        # numpy reduces each row of the last axis with the same pairwise sum as a row alone: the same bits
        # (tests/edge/test_spectrum_level.py compares them)
        return out, np.asarray(np.add.reduce(tapped, axis=-1) / tapped.shape[-1])  # np.mean's sum and divide

    def _run(self, arr: FloatArray, dark: npt.ArrayLike | None, reference: npt.ArrayLike | None,
             wavelengths: npt.ArrayLike | None, *, rows: bool,
             tap: bool = False) -> tuple[FloatArray, FloatArray | None]:
        """The steps over the checked input ``arr`` (with ``rows``, each step's
        :meth:`~edge.preprocess.base.Step.transform_rows`, on a batch laid out row by row: a column-major batch's
        sums along a row would not be those of the row alone), and, with ``tap``, the data after the first
        :attr:`level_index` steps."""
        out = np.ascontiguousarray(arr) if rows else arr
        tapped = out if tap and self._level_index == 0 else None
        for i, (step, on_device_axis) in enumerate(zip(self.steps, self._on_device_axis)):
            w = wavelengths if on_device_axis else None
            if rows:
                out = step.transform_rows(out, dark=dark, reference=reference, wavelengths=w)
            else:
                out = step.transform(out, dark=dark, reference=reference, wavelengths=w)
            if tap and i + 1 == self._level_index:
                tapped = out
        return _finished(out, arr), tapped

    # ------------------------------------------------------------------------------------------------ spec

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready dict with ``spec_version``, ``input`` and ``steps``."""
        return {
            "spec_version": _spec.SPEC_VERSION,
            "input": self.input_contract.to_spec(),
            "steps": [s.to_spec() for s in self.steps],
        }

    @classmethod
    def from_spec(cls, d: object) -> Pipeline:
        """Build a pipeline from a spec dict; :class:`SpecError` naming the problem (unknown op, newer version)."""
        d = require_mapping(d, "", SpecError, "a spec object")
        if "spec_version" not in d:
            raise SpecError(f"expected a spec_version (this code reads up to {_spec.SPEC_VERSION})")
        _spec.check_version(d["spec_version"])
        extra = sorted(set(d) - {"spec_version", "input", "steps"})
        if extra:
            raise SpecError(f"unknown key(s) {', '.join(extra)}; expected input, spec_version, steps")
        raw_steps = d.get("steps")
        if not isinstance(raw_steps, Sequence) or isinstance(raw_steps, (str, bytes)):
            raise SpecError("expected 'steps' as a list of step objects")
        steps = tuple(step_from_spec(s, f"step {i}") for i, s in enumerate(raw_steps))
        return cls(steps, InputContract.from_spec(d.get("input", {})))

    def to_json(self) -> str:
        """Spec as JSON text (``allow_nan=False``; floats round-trip exactly)."""
        return _spec.dumps(self.to_spec())

    @classmethod
    def from_json(cls, text: str | bytes) -> Pipeline:
        """Pipeline from JSON text written by :meth:`to_json`."""
        return cls.from_spec(_spec.loads(text))

    def __repr__(self) -> str:
        ops = ", ".join(s.op for s in self.steps)
        return f"Pipeline([{ops}], {self.input_contract!r})"
