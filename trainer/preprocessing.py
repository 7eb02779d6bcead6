"""scikit-learn-style estimators over the edge preprocessing steps, and the builder of a whole chain from a config.

Each estimator takes its parameters in ``__init__``, learns in ``fit`` (fitted attributes end in ``_``), ends ``fit``
by building the immutable edge step (``step_``, an :mod:`edge.preprocess` object) and delegates ``transform`` to
it, so the trainer and the device run the very same numpy code: parity holds by construction. They subclass
scikit-learn's ``BaseEstimator``/``TransformerMixin`` and work inside ``sklearn.pipeline.Pipeline``.

The usual entry point is :func:`make_pipeline_from_config`:

>>> import numpy as np
>>> from trainer.preprocessing import make_pipeline_from_config
>>> X = np.random.default_rng(0).normal(size=(20, 50)).cumsum(axis=1)
>>> tp = make_pipeline_from_config(
...     [{"op": "snv"}, {"op": "savgol", "window": 15, "polyorder": 2, "deriv": 1}, {"op": "autoscale"}],
...     wavelengths=np.arange(600.0, 700.0, 2.0))
>>> Z = tp.fit(X).transform(X)
>>> edge_pipeline = tp.to_edge()          # edge.preprocess.Pipeline, ready for the bundle
>>> bool(np.array_equal(edge_pipeline.transform(X), Z))
True

Config steps: ``{"op": NAME, **parameters}``; the parameters are the estimator's ``__init__`` arguments.

Ops, their estimator and parameters (defaults in brackets)::

    counts     CountsConversion  quantity ["absorbance"; or "transmittance", "reflectance"], min_ratio [1e-6],
                                 saturation_counts [None]; needs dark= and reference= at fit and transform
    crop       Crop              wavelength_min [None], wavelength_max [None]: keeps the channels inside the
                                 inclusive range of the axis it sees (the pipeline follows the axis through
                                 the fitted steps with edge.preprocess.Step.output_axis and hands it over)
    resample   Resample          grid (target axis), unit ["nm"]; needs wavelengths= (the device axis)
    snv        SNV               ddof [0]
    msc        MSC               reference [None = mean of the training spectra]
    emsc       EMSC              poly_order [2], reference [None = training mean], interferents [None; (q, n)]
    savgol     SavitzkyGolay     window [15, odd], polyorder [2], deriv [0], delta [1.0], mode ["interp"]
    detrend    Detrend           order [1]
    normalize  Normalize         norm ["vector"; or "area", "max"]
    center     MeanCenter        (none; learns mean_)
    autoscale  Autoscale         (none; learns mean_ and scale_ with scikit-learn's StandardScaler)
    linear     LinearTransfer    matrix (n_in, n_out), offset [None]: a DS/PDS transfer fitted elsewhere
    stack      Stack             branches: list of lists of step configs; outputs stacked on a last channel axis
                                 (must be the last step)

Calibration transfer (DS/PDS) is fitted elsewhere and added to a fitted edge pipeline as a ``linear`` step where
the data are absorbance on the model grid: ``p.insert(p.transfer_index, edge.preprocess.LinearTransfer(F, b))``.

Errors: an unknown op or parameter raises :class:`edge.errors.SpecError` (a ``ValueError``) naming what is
known; bad data raises :class:`edge.errors.InputContractError` (also a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

import edge.preprocess as ep
from edge.errors import InputContractError, SpecError

__all__ = [
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
    "TrainerPipeline",
    "ESTIMATORS",
    "make_estimator",
    "make_pipeline_from_config",
]


def _check_X(X: npt.ArrayLike) -> np.ndarray:
    """2-D finite float64 array (a copy only when needed)."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputContractError(f"expected a 2-D array (n_samples, n_channels), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputContractError(f"expected finite values, got {int(np.count_nonzero(~np.isfinite(arr)))} NaN or inf")
    return arr


class _EdgeStepEstimator(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn is untyped: its bases are Any
    """Base: ``fit`` learns and builds ``step_`` (an edge step); ``transform`` delegates to it."""

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X: npt.ArrayLike, y: Any = None, *, axis: ep.Axis | None = None,
            **context: Any) -> _EdgeStepEstimator:
        """Learn from spectra ``X`` of shape (n_samples, n_channels); ``axis`` is the channel axis ``X`` is on (as
        :meth:`edge.preprocess.Step.output_axis` follows it, with its wavelengths: a crop's range needs them);
        ``context`` as for :meth:`transform`."""
        arr = _check_X(X)
        self.n_features_in_ = arr.shape[1]
        self.step_ = self._build(arr, {**context, "axis": axis})
        return self

    def transform(self, X: npt.ArrayLike, **context: Any) -> np.ndarray:
        """Apply the fitted edge step to one spectrum (n,) or a batch (m, n); context: dark, reference, wavelengths."""
        check_is_fitted(self, "step_")
        arr = np.asarray(X, dtype=np.float64)
        if arr.shape[-1] != self.n_features_in_:
            raise InputContractError(f"expected {self.n_features_in_} channels, got {arr.shape[-1]}")
        out: np.ndarray = self.step_.transform(arr, **context)
        return out

    def fit_transform(self, X: npt.ArrayLike, y: Any = None, *, axis: ep.Axis | None = None,
                      **context: Any) -> np.ndarray:
        """``fit(X, y, axis=axis, **context).transform(X, **context)``."""
        return self.fit(X, y, axis=axis, **context).transform(X, **context)

    def to_edge_step(self) -> ep.Step:
        """The fitted edge step."""
        check_is_fitted(self, "step_")
        step: ep.Step = self.step_
        return step


class CountsConversion(_EdgeStepEstimator):
    """Counts to absorbance/transmittance/reflectance (nothing to learn).

    See :class:`edge.preprocess.CountsConversion`; ``fit``/``transform`` need ``dark=`` and ``reference=``.
    """

    def __init__(self, quantity: str = "absorbance", min_ratio: float = 1e-6, saturation_counts: float | None = None):
        self.quantity = quantity
        self.min_ratio = min_ratio
        self.saturation_counts = saturation_counts

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        return ep.CountsConversion(
            quantity=self.quantity,
            min_ratio=float(self.min_ratio),
            saturation_counts=None if self.saturation_counts is None else float(self.saturation_counts),
        )


class Crop(_EdgeStepEstimator):
    """Keep the channels whose wavelength lies in [wavelength_min, wavelength_max]; learns ``start_``/``stop_``.

    Parameters
    ----------
    wavelength_min, wavelength_max : float or None
        Inclusive range in axis units (None = open end).
    wavelengths : array_like, shape (n_channels,), optional
        The axis of the spectra this step sees; default the wavelengths of the ``axis`` that :meth:`fit` gets
        (a :class:`TrainerPipeline` hands every step the axis it sees).
    """

    def __init__(
        self,
        wavelength_min: float | None = None,
        wavelength_max: float | None = None,
        wavelengths: npt.ArrayLike | None = None,
    ):
        self.wavelength_min = wavelength_min
        self.wavelength_max = wavelength_max
        self.wavelengths = wavelengths

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        axis: ep.Axis | None = context.get("axis")
        given = self.wavelengths if self.wavelengths is not None else None if axis is None else axis.wavelengths
        if given is None:
            raise SpecError("crop needs the wavelength axis (wavelengths=) to turn its range into channels")
        w = np.asarray(given, dtype=np.float64)
        if w.shape != (X.shape[1],):
            raise InputContractError(f"expected {X.shape[1]} wavelengths for crop, got {w.shape[0]}")
        lo = -np.inf if self.wavelength_min is None else float(self.wavelength_min)
        hi = np.inf if self.wavelength_max is None else float(self.wavelength_max)
        idx = np.flatnonzero((w >= lo) & (w <= hi))
        if idx.size == 0:
            raise SpecError(f"crop range {lo}-{hi} holds no channel of the axis {w.min()}-{w.max()}")
        self.start_, self.stop_ = int(idx[0]), int(idx[-1]) + 1
        if idx.size != self.stop_ - self.start_:
            raise SpecError("crop range selects non-contiguous channels; expected a monotonic wavelength axis")
        return ep.Crop(self.start_, self.stop_)


class Resample(_EdgeStepEstimator):
    """Linear interpolation onto ``grid`` from the device axis given as ``wavelengths=`` (nothing to learn)."""

    def __init__(self, grid: npt.ArrayLike | None = None, unit: str = "nm"):
        self.grid = grid
        self.unit = unit

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        if self.grid is None:
            raise SpecError("resample needs a target grid")
        return ep.Resample(np.asarray(self.grid, dtype=np.float64), unit=self.unit)

    def transform(self, X: npt.ArrayLike, **context: Any) -> np.ndarray:
        # The input width is the device's, not necessarily the one seen at fit.
        check_is_fitted(self, "step_")
        out: np.ndarray = self.step_.transform(np.asarray(X, dtype=np.float64), **context)
        return out


class SNV(_EdgeStepEstimator):
    """Standard normal variate (nothing to learn); ``ddof`` of the standard deviation."""

    def __init__(self, ddof: int = 0):
        self.ddof = ddof

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        return ep.SNV(ddof=int(self.ddof))


class MSC(_EdgeStepEstimator):
    """Multiplicative scatter correction; learns ``reference_`` (the training mean unless ``reference`` is given)."""

    def __init__(self, reference: npt.ArrayLike | None = None):
        self.reference = reference

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        self.reference_ = X.mean(axis=0) if self.reference is None else np.asarray(self.reference, dtype=np.float64)
        return ep.MSC(self.reference_)


class EMSC(_EdgeStepEstimator):
    """Extended MSC with a polynomial baseline of ``poly_order`` and optional ``interferents`` (q, n);
    learns ``reference_`` (the training mean unless given). Fit it after augmentation to correct what it added."""

    def __init__(
        self,
        poly_order: int = 2,
        reference: npt.ArrayLike | None = None,
        interferents: npt.ArrayLike | None = None,
    ):
        self.poly_order = poly_order
        self.reference = reference
        self.interferents = interferents

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        self.reference_ = X.mean(axis=0) if self.reference is None else np.asarray(self.reference, dtype=np.float64)
        k = None if self.interferents is None else np.atleast_2d(np.asarray(self.interferents, dtype=np.float64))
        return ep.EMSC(self.reference_, poly_order=int(self.poly_order), interferents=k)


class SavitzkyGolay(_EdgeStepEstimator):
    """Savitzky-Golay smoothing/derivative as ``scipy.signal.savgol_filter(x, window, polyorder, deriv, delta,
    mode=mode)``; learns nothing, the edge step holds the computed kernel (``kernel_``)."""

    def __init__(self, window: int = 15, polyorder: int = 2, deriv: int = 0, delta: float = 1.0, mode: str = "interp"):
        self.window = window
        self.polyorder = polyorder
        self.deriv = deriv
        self.delta = delta
        self.mode = mode

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        step = ep.SavitzkyGolay(int(self.window), int(self.polyorder), int(self.deriv), float(self.delta), self.mode)
        if X.shape[1] < step.window:
            raise InputContractError(
                f"expected at least {step.window} channels for the savgol window, got {X.shape[1]}"
            )
        self.kernel_ = step.kernel
        return step


class Detrend(_EdgeStepEstimator):
    """Subtract each spectrum's least-squares polynomial of degree ``order`` (channel axis scaled to [-1, 1])."""

    def __init__(self, order: int = 1):
        self.order = order

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        return ep.Detrend(order=int(self.order), n_channels=int(X.shape[1]))


class Normalize(_EdgeStepEstimator):
    """Divide each spectrum by its ``"vector"`` (L2), ``"area"`` (L1) or ``"max"`` (L-inf) norm."""

    def __init__(self, norm: str = "vector"):
        self.norm = norm

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        return ep.Normalize(norm=self.norm)


class MeanCenter(_EdgeStepEstimator):
    """Subtract the training mean; learns ``mean_``."""

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        self.mean_ = X.mean(axis=0)
        return ep.MeanCenter(self.mean_)


class Autoscale(_EdgeStepEstimator):
    """Centre and scale to unit variance per channel; ``mean_`` and ``scale_`` are scikit-learn
    ``StandardScaler``'s (zero-variance channels get scale 1)."""

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        scaler = StandardScaler().fit(X)
        self.mean_ = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale_ = np.asarray(scaler.scale_, dtype=np.float64)
        return ep.Autoscale(self.mean_, self.scale_)


class LinearTransfer(_EdgeStepEstimator):
    """``X @ matrix + offset`` with a matrix fitted elsewhere (DS/PDS calibration transfer); learns nothing."""

    def __init__(self, matrix: npt.ArrayLike | None = None, offset: npt.ArrayLike | None = None):
        self.matrix = matrix
        self.offset = offset

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        if self.matrix is None:
            raise SpecError("linear needs a matrix")
        offset = None if self.offset is None else np.asarray(self.offset, dtype=np.float64)
        return ep.LinearTransfer(np.asarray(self.matrix, dtype=np.float64), offset)


class Stack(_EdgeStepEstimator):
    """Several preprocessings of the same input stacked on a trailing channel axis (CNN input channels).

    Parameters
    ----------
    branches : list of list of estimators
        Each branch is fitted in order on the stack's input; an empty branch passes the input through.
        Fitted copies are kept in ``branches_``.
    """

    def __init__(self, branches: Sequence[Sequence[_EdgeStepEstimator]] = ()):
        self.branches = branches

    def _build(self, X: np.ndarray, context: Mapping[str, Any]) -> ep.Step:
        fitted: list[list[_EdgeStepEstimator]] = []
        for branch in self.branches:
            Xb, axis = X, context.get("axis")
            done = []
            for est in branch:
                est = clone(est)
                est.fit(Xb, axis=axis)
                Xb = est.transform(Xb)
                axis = None if axis is None else est.step_.output_axis(axis)
                done.append(est)
            fitted.append(done)
        self.branches_ = fitted
        return ep.Stack(tuple(tuple(e.step_ for e in b) for b in fitted))


#: Each edge step class and the estimator that fits it.
_FITS: tuple[tuple[type[ep.Step], type[_EdgeStepEstimator]], ...] = (
    (ep.CountsConversion, CountsConversion),
    (ep.Crop, Crop),
    (ep.Resample, Resample),
    (ep.SNV, SNV),
    (ep.MSC, MSC),
    (ep.EMSC, EMSC),
    (ep.SavitzkyGolay, SavitzkyGolay),
    (ep.Detrend, Detrend),
    (ep.Normalize, Normalize),
    (ep.MeanCenter, MeanCenter),
    (ep.Autoscale, Autoscale),
    (ep.LinearTransfer, LinearTransfer),
    (ep.Stack, Stack),
)

#: Config op name -> estimator class; the op names are the edge registry's (``edge.preprocess.known_ops``), not
#: written a second time here.
ESTIMATORS: dict[str, type[_EdgeStepEstimator]] = {step.op: est for step, est in _FITS}
if set(ESTIMATORS) != set(ep.known_ops()):  # pragma: no cover - a programming error caught at import
    raise RuntimeError(
        f"edge ops without a trainer estimator: {sorted(set(ep.known_ops()) - set(ESTIMATORS))}; "
        f"estimators without an edge op: {sorted(set(ESTIMATORS) - set(ep.known_ops()))}"
    )


def make_estimator(config: Mapping[str, Any], wavelengths: npt.ArrayLike | None = None) -> _EdgeStepEstimator:
    """One estimator from ``{"op": NAME, **params}``; ``wavelengths`` is the axis that step will see (for crop;
    without it, a crop takes the axis :meth:`~_EdgeStepEstimator.fit` gets).

    Raises
    ------
    SpecError
        Unknown op (the message lists the known ones) or unknown parameter (lists the accepted ones).
    """
    if not isinstance(config, Mapping) or "op" not in config:
        raise SpecError(f"expected a preprocessing step as {{'op': ..., ...}}, got {config!r}")
    op = config["op"]
    if op not in ESTIMATORS:
        raise SpecError(f"unknown preprocessing op {op!r}; known ops: {', '.join(sorted(ESTIMATORS))}")
    cls = ESTIMATORS[op]
    params = {k: v for k, v in config.items() if k != "op"}
    accepted = set(cls._get_param_names()) - {"wavelengths"}
    extra = sorted(set(params) - accepted)
    if extra:
        raise SpecError(
            f"{op} got unknown parameter(s) {', '.join(extra)}; expected: {', '.join(sorted(accepted)) or 'none'}"
        )
    if op == "stack":
        branches = params.get("branches")
        if not isinstance(branches, Sequence) or not all(isinstance(b, Sequence) for b in branches):
            raise SpecError("stack expects branches as a list of lists of step configs")
        params["branches"] = [_make_steps(b) for b in branches]
    if op == "crop" and wavelengths is not None:
        params["wavelengths"] = np.asarray(wavelengths, dtype=np.float64)
    return cls(**params)


def _make_steps(configs: Sequence[Mapping[str, Any]]) -> list[_EdgeStepEstimator]:
    """The estimators of ``configs``; the axis each sees comes at fit (:meth:`TrainerPipeline.fit`)."""
    return [make_estimator(c) for c in configs]


class TrainerPipeline(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn is untyped: its bases are Any
    """A chain of the estimators above that compiles to an :class:`edge.preprocess.Pipeline`.

    Parameters
    ----------
    steps : list of estimators
        Fitted in order (in place, as ``sklearn.pipeline.Pipeline`` does), each on the previous one's output.
    wavelengths : array_like, shape (n_channels,), optional
        Axis of the training spectra; sets the edge input contract (channel count and range). Without it the
        contract holds only the channel count seen at fit.
    unit : str
        Axis unit (``"nm"`` or ``"cm-1"``).

    Attributes
    ----------
    pipeline_ : edge.preprocess.Pipeline
        The compiled edge pipeline; :meth:`transform` runs it, so trainer output equals device output.
    n_features_in_ : int
    """

    def __init__(
        self, steps: Sequence[_EdgeStepEstimator] = (), wavelengths: npt.ArrayLike | None = None, unit: str = "nm"
    ):
        self.steps = steps
        self.wavelengths = wavelengths
        self.unit = unit

    def _contract(self, X: np.ndarray) -> ep.InputContract:
        resample = next((s for s in self.steps if isinstance(s, Resample)), None)
        if resample is not None:
            g = np.asarray(resample.grid, dtype=np.float64)
            tol = float(np.abs(np.diff(g)).min()) / 2 if g.size > 1 else 0.0
            return ep.InputContract(None, float(g.min()), float(g.max()), self.unit, tol)
        if self.wavelengths is not None:
            contract = ep.InputContract.from_wavelengths(self.wavelengths, unit=self.unit)
            if contract.n_channels != X.shape[1]:
                raise InputContractError(f"expected {contract.n_channels} channels (wavelengths), got {X.shape[1]}")
            return contract
        return ep.InputContract(n_channels=int(X.shape[1]))

    def fit(self, X: npt.ArrayLike, y: Any = None, **context: Any) -> TrainerPipeline:
        """Fit every step in order on ``X`` (n_samples, n_channels); ``context``: dark, reference, wavelengths."""
        arr = _check_X(X)
        resamples = any(isinstance(s, Resample) for s in self.steps)
        if self.wavelengths is not None and not resamples and np.shape(self.wavelengths) != (arr.shape[1],):
            raise InputContractError(
                f"expected {np.shape(self.wavelengths)[0]} channels (wavelengths), got {arr.shape[1]}"
            )
        Xc = arr
        ctx = dict(context)
        # the axis each step sees, as the edge steps say (Step.output_axis): a crop after a resample or another
        # crop takes its range on the axis it sees, and the device's axis reaches the steps while it describes X
        waves = None if self.wavelengths is None else tuple(float(w) for w in np.asarray(self.wavelengths, float))
        axis = ep.Axis(arr.shape[1], wavelengths=waves)
        for est in self.steps:
            if not isinstance(est, _EdgeStepEstimator):
                raise SpecError(f"expected preprocessing estimators, got {type(est).__name__}")
            est.fit(Xc, axis=axis, **ctx)
            Xc = est.transform(Xc, **ctx)
            axis = est.step_.output_axis(axis)
            if not axis.device:
                ctx.pop("wavelengths", None)
        self.n_features_in_ = arr.shape[1]
        self.pipeline_ = ep.Pipeline(tuple(e.step_ for e in self.steps), self._contract(arr))
        return self

    def transform(self, X: npt.ArrayLike, **context: Any) -> np.ndarray:
        """Run the compiled edge pipeline (one spectrum or a batch); same output as on the device."""
        check_is_fitted(self, "pipeline_")
        out: np.ndarray = self.pipeline_.transform(X, **context)
        return out

    def fit_transform(self, X: npt.ArrayLike, y: Any = None, **context: Any) -> np.ndarray:
        """``fit(X, y, **context).transform(X, **context)``."""
        return self.fit(X, y, **context).transform(X, **context)

    def to_edge(self) -> ep.Pipeline:
        """The fitted :class:`edge.preprocess.Pipeline` (immutable; its spec goes into the bundle)."""
        check_is_fitted(self, "pipeline_")
        p: ep.Pipeline = self.pipeline_
        return p

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Per-spectrum output shape of the fitted pipeline (``(n_features,)`` or ``(n_features, n_branches)``)."""
        return self.to_edge().output_shape


def make_pipeline_from_config(
    config: Sequence[Mapping[str, Any]], wavelengths: npt.ArrayLike | None = None, *, unit: str = "nm"
) -> TrainerPipeline:
    """Unfitted :class:`TrainerPipeline` from a list of step configs (see the module docstring for ops/params).

    Parameters
    ----------
    config : list of dict
        For example ``[{"op": "snv"}, {"op": "savgol", "window": 15, "polyorder": 2, "deriv": 1},
        {"op": "autoscale"}]``.
    wavelengths : array_like, shape (n_channels,), optional
        Axis of the training spectra (needed by ``crop``; sets the edge input contract).
    unit : str
        ``"nm"`` or ``"cm-1"``.
    """
    if isinstance(config, (str, bytes)) or not isinstance(config, Sequence):
        raise SpecError(f"expected a list of preprocessing steps, got {type(config).__name__}")
    w = None if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    return TrainerPipeline(_make_steps(config), wavelengths=w, unit=unit)
