"""Every preprocessing step, in one import: small immutable numpy objects with ``transform``, ``to_spec`` and
``from_spec``.

Every step takes one spectrum, shape ``(n,)``, or a batch, shape ``(m, n)``, of float64 and returns float64 of the
same leading shape, without modifying its input. All parameters (fitted ones included) are fixed at construction,
where everything derivable is precomputed, so ``transform`` is a handful of vectorised numpy calls. Runtime
instrument data arrives as keyword context: ``dark=`` and ``reference=`` (detector counts) for
:class:`CountsConversion`, ``wavelengths=`` (the device axis) for :class:`Resample`; other steps ignore it.

Steps trust their ``X`` (finite float64 of the right width): :class:`edge.preprocess.pipeline.Pipeline` validates
it once at its boundary. Guards that depend on the data itself (a zero reference, a constant spectrum for SNV, a
zero norm) raise :class:`~edge.errors.InputContractError` there.

Where they live: :mod:`~edge.preprocess.base` (the interface and the op registry),
:mod:`~edge.preprocess.instrument` (counts, crop, resample), :mod:`~edge.preprocess.scatter` (snv, msc, emsc,
detrend, normalize), :mod:`~edge.preprocess.filters` (savgol), :mod:`~edge.preprocess.scaling` (center,
autoscale, linear), :mod:`~edge.preprocess.stack` (stack). Importing this module registers them all.

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

from edge.preprocess.base import Step
from edge.preprocess.filters import SavitzkyGolay
from edge.preprocess.instrument import CountsConversion, Crop, Resample
from edge.preprocess.scaling import Autoscale, LinearTransfer, MeanCenter
from edge.preprocess.scatter import EMSC, MSC, SNV, Detrend, Normalize
from edge.preprocess.stack import Stack, run_steps

__all__ = [
    "Step",
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
