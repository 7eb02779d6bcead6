"""Spectral preprocessing shared by trainer and device: numpy-only steps, the pipeline and its versioned JSON spec.

The trainer fits these steps (through :mod:`trainer.preprocessing`) and the device runs the very same objects
rebuilt from the spec, so training and deployment compute the same function by construction.
"""

from __future__ import annotations

from edge.preprocess.base import Axis, known_ops, step_class, step_from_spec
from edge.preprocess.contract import FRAME_SIGNALS, PIXEL_FORMATS, InputContract
from edge.preprocess.pipeline import Pipeline
from edge.preprocess.spec import SPEC_VERSION, SUPPORTED_SPEC_VERSIONS
from edge.preprocess.steps import (
    EMSC,
    MSC,
    SNV,
    Autoscale,
    CountsConversion,
    Crop,
    Detrend,
    LinearTransfer,
    MeanCenter,
    Normalize,
    Resample,
    SavitzkyGolay,
    Stack,
    Step,
)

__all__ = [
    "FRAME_SIGNALS",
    "PIXEL_FORMATS",
    "SPEC_VERSION",
    "SUPPORTED_SPEC_VERSIONS",
    "Autoscale",
    "Axis",
    "CountsConversion",
    "Crop",
    "Detrend",
    "EMSC",
    "InputContract",
    "LinearTransfer",
    "MSC",
    "MeanCenter",
    "Normalize",
    "Pipeline",
    "Resample",
    "SNV",
    "SavitzkyGolay",
    "Stack",
    "Step",
    "known_ops",
    "step_class",
    "step_from_spec",
]
