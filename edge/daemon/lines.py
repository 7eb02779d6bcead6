"""LINE frames in the inference thread as plain values: a line split into its spectra (each with its own ``seq``),
the contract verdict on a line as a whole, and where each prediction sat in its line.

A LINE (``firmware_bridge.frames.Line``: one push-broom line, many spectra of one exposure) is judged once against
the bundle's contract, like one spectrum: the signal the device announced, the pixel count and format, the device
axis.  Its spectra share all of these, so a line that fails is rejected whole (each spectrum counted under
``frames_rejected_<reason>`` as if it had come alone, the line once under ``lines_rejected``); one that passes is
predicted as one batch (:meth:`edge.inference.InferenceEngine.process_many`), each spectrum becoming its own
prediction message whose ``seq`` is the line's plus its index and whose ``line`` field says where it sat
(:class:`edge.publish.messages.LinePosition`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import numpy.typing as npt

from edge.daemon.values import _Received
from edge.inference import Rejection, RejectReason
from edge.publish.messages import LinePosition
from firmware_bridge.frames import LINE_SEQ_MODULUS, Line

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.inference import InferenceEngine

__all__ = ["LINE_REJECT_REASONS", "LineInFlight", "line_rejections", "split_line"]

#: Verdicts that hold for every spectrum of a line when they hold for one: the line is rejected whole.
LINE_REJECT_REASONS = frozenset({RejectReason.SIGNAL_MISMATCH, RejectReason.INPUT_CONTRACT})


def split_line(line: Line, received_ns: int) -> list[_Received]:
    """The line's spectra as received frames, in order, each with its own ``seq`` and the line's arrival time."""
    return [_Received(spectrum, received_ns) for spectrum in line.spectra()]


def line_rejections(engine: "InferenceEngine", items: Sequence[_Received],
                    wavelengths_nm: npt.NDArray[np.float64] | None, signal: str) -> list[Rejection] | None:
    """One rejection per spectrum when the line fails the contract as a whole (signal, pixel count and format,
    device axis: checked once, on its first spectrum), else None (each spectrum is then judged by the engine as
    usual, finite counts included)."""
    first = items[0].frame
    verdict = engine.check_frame(first, wavelengths_nm, frame_signal=signal)
    if verdict is None or verdict.reason not in LINE_REJECT_REASONS:
        return None
    return [Rejection(item.frame.seq, item.frame.timestamp_us, verdict.reason, verdict.detail) for item in items]


class LineInFlight:
    """The line whose spectra the inference thread is predicting now, so that each prediction message can say
    where its spectrum sat (:meth:`position`); None between lines."""

    def __init__(self) -> None:
        self._seq: int | None = None
        self._spectra = 0

    def start(self, line: Line) -> None:
        self._seq, self._spectra = line.seq, line.spectrum_count

    def end(self) -> None:
        self._seq, self._spectra = None, 0

    @property
    def active(self) -> bool:
        """Whether a line is being predicted on."""
        return self._seq is not None

    def position(self, seq: int) -> LinePosition | None:
        """Where the spectrum ``seq`` sits in the line in flight (None outside a line)."""
        if self._seq is None:
            return None
        index = (seq - self._seq) % LINE_SEQ_MODULUS
        return LinePosition(line_seq=self._seq, index=index, spectra=self._spectra) if index < self._spectra else None
