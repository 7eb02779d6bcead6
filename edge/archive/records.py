"""One spectrum to archive (:class:`ArchiveRecord`) and how its parts are encoded for the store."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from edge.inference import Prediction, Rejection

if TYPE_CHECKING:
    from edge.references import ReferenceSpectrum

__all__ = ["ArchiveRecord", "DTYPES", "f8_bytes", "le_bytes", "prediction_json", "with_sample"]

#: Dtypes a spectrum is stored in (little-endian, as the frame decoder hands them over).
DTYPES = {"uint16": "<u2", "uint32": "<u4", "float32": "<f4", "float64": "<f8"}


@dataclass(frozen=True)
class ArchiveRecord:
    """One spectrum to archive: immutable references to what the daemon already holds (no copies on its thread).

    ``frame`` is the decoded :class:`firmware_bridge.frames.Spectrum` (``seq``, ``timestamp_us``,
    ``integration_time_us``, ``counts``, all read-only); ``outcome`` the engine's :class:`Prediction` or
    :class:`Rejection`; ``received_unix_s`` the host time it was offered (UTC Unix seconds).
    """

    frame: Any
    outcome: Union[Prediction, Rejection]
    dark: "ReferenceSpectrum | None"
    white: "ReferenceSpectrum | None"
    wavelengths_nm: npt.NDArray[np.float64] | None
    signal: str
    boot_id: int | None
    model_id: str
    model_version: str
    bundle_sha256: str
    received_unix_s: float
    sample_id: str | None = None

    @property
    def flagged(self) -> bool:
        """Rejected, or a prediction with any quality flag (out of distribution included)."""
        return isinstance(self.outcome, Rejection) or bool(self.outcome.flags)



def le_bytes(values: npt.NDArray[Any]) -> tuple[str, bytes]:
    """The values as little-endian bytes and their dtype code (``<u2``, ``<u4``, ``<f4``, ``<f8``)."""
    code = DTYPES.get(values.dtype.name, "<f8")
    return code, np.ascontiguousarray(values, dtype=np.dtype(code)).tobytes()


def f8_bytes(values: npt.ArrayLike) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def prediction_json(outcome: Union[Prediction, Rejection]) -> str | None:
    if not isinstance(outcome, Prediction):
        return json.dumps({"reason": outcome.reason.value, "detail": outcome.detail}, allow_nan=False)
    ood = None if outcome.ood is None else {"t2": outcome.ood.t2, "q": outcome.ood.q,
                                            "t2_limit": outcome.ood.t2_limit, "q_limit": outcome.ood.q_limit}

    def finite(v: Sequence[float] | None) -> list[float | None] | None:
        return None if v is None else [float(x) if np.isfinite(x) else None for x in v]

    return json.dumps({
        "names": list(outcome.names), "units": list(outcome.units), "values": finite(outcome.values),
        "lower": finite(outcome.lower), "upper": finite(outcome.upper),
        "flags": [f.value for f in outcome.flags], "reasons": list(outcome.reasons), "ood": ood,
    }, allow_nan=False)



def with_sample(record: ArchiveRecord, sample_id: str) -> ArchiveRecord:
    """``record`` tagged with ``sample_id``."""
    return dataclasses.replace(record, sample_id=sample_id)
