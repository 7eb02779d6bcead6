"""A bundle's input contract: the one :class:`~edge.preprocess.contract.InputContract`, derived from the
pipeline's spec and the manifest's ``input_contract`` section, and the flat references of offline evaluation.

:func:`bundle_input_contract` takes the pipeline's contract (channel count, axis tolerance, whether it resamples)
and adds what the manifest says of raw frames: pixel count range, pixel formats, the wavelength range the
instrument's axis must cover (in the unit of the bundle's grid) and what frames carry (:data:`FRAME_SIGNALS`).
:func:`counts_from_signal` expresses processed spectra as the counts a ``counts`` bundle reads, for offline
evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edge.preprocess.contract import FRAME_SIGNALS, PIXEL_FORMATS, InputContract

__all__ = [
    "FRAME_SIGNALS",
    "PIXEL_FORMATS",
    "InputContract",
    "OFFLINE_DARK_COUNTS",
    "OFFLINE_WHITE_COUNTS",
    "counts_from_signal",
    "bundle_input_contract",
]

#: Flat dark and white levels (counts) with which :meth:`edge.bundle.Bundle.frames_from_signal` expresses spectra
#: as counts.
OFFLINE_DARK_COUNTS: Final[float] = 1000.0
OFFLINE_WHITE_COUNTS: Final[float] = 50000.0


def counts_from_signal(
    X: npt.ArrayLike, quantity: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Counts (and the flat dark and white references) that a ``counts`` step with ``quantity`` turns back into
    ``X``: ``dark + (white - dark) * ratio``, the ratio being ``10 ** -X`` for absorbance, ``X`` otherwise."""
    A = np.asarray(X, dtype=np.float64)
    n = A.shape[-1]
    dark, white = np.full(n, OFFLINE_DARK_COUNTS), np.full(n, OFFLINE_WHITE_COUNTS)
    ratio = np.power(10.0, -A) if quantity == "absorbance" else A
    return dark + (white - dark) * ratio, dark, white


def bundle_input_contract(manifest: Mapping[str, Any], pipeline_contract: InputContract) -> InputContract:
    """The bundle's one input contract: ``pipeline_contract`` (the pipeline's, from its spec) with the manifest's
    ``input_contract`` section (validated by :func:`edge.bundle.manifest.validate_manifest`) and the unit of its
    ``wavelength_grid``."""
    c = manifest["input_contract"]
    return pipeline_contract.with_frames(
        pixel_count_min=int(c["pixel_count_min"]),
        pixel_count_max=int(c["pixel_count_max"]),
        pixel_formats=tuple(c["pixel_formats"]),
        frame_signal=str(c["frame_signal"]),
        wavelength_min=float(c["wavelength_min"]),
        wavelength_max=float(c["wavelength_max"]),
        wavelength_unit=str(manifest["wavelength_grid"]["unit"]),
    )
