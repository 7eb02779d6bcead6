"""LINE frames in the inference thread as plain values: a line split into its spectra (each with its own ``seq``),
the contract verdict on a line as a whole, and where each prediction sat in its line.

A LINE (``firmware_bridge.frames.Line``: one push-broom line, many spectra of one exposure) is judged once against
the bundle's contract, like one spectrum: the signal the device announced, the pixel count and format, the device
axis.  Its spectra share all of these, so a line that fails is rejected whole (each spectrum counted under
``frames_rejected_<reason>`` as if it had come alone, the line once under ``lines_rejected``); one that passes is
predicted as one batch (:meth:`edge.inference.InferenceEngine.process_many`).  With ``[lines] publish = "line"``
(the default) its predictions are collected (:meth:`LineInFlight.add`, :meth:`LineInFlight.reject`) and published
as one ``.../line_prediction`` message of arrays (:func:`line_message`); with ``"spectrum"`` each spectrum becomes
its own prediction message whose ``seq`` is the line's plus its index and whose ``line`` field says where it sat
(:class:`edge.publish.messages.LinePosition`).  Either way every spectrum is counted, archived and watched by the
drift detectors on its own, as if it had come alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import numpy.typing as npt

from edge.daemon.values import _Received
from edge.inference import Prediction, Rejection, RejectReason
from edge.publish.line_messages import LineOod, LineTarget, flag_mask, line_prediction_message
from edge.publish.messages import LinePosition
from firmware_bridge.frames import LINE_SEQ_MODULUS, Line

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.inference import InferenceEngine

__all__ = ["LINE_REJECT_REASONS", "CollectedLine", "LineInFlight", "line_message", "line_rejections", "split_line"]

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


@dataclass(frozen=True)
class CollectedLine:
    """What became of the spectra of one LINE frame (``[lines] publish = "line"``): the predictions in the order
    they were made and the rejected spectra by index (``(index, reason)``)."""

    seq: int
    spectra: int
    timestamp_us: int
    predictions: list[Prediction]
    rejected: list[tuple[int, str]]


class LineInFlight:
    """The line whose spectra the inference thread is predicting now, so that each prediction message can say
    where its spectrum sat (:meth:`position`), or, when collecting (``[lines] publish = "line"``), so that its
    predictions and rejections are kept for one message (:meth:`add`, :meth:`reject`, :meth:`end`); None between
    lines."""

    def __init__(self) -> None:
        self._seq: int | None = None
        self._spectra = 0
        self._timestamp_us = 0
        #: Whether the line's predictions are collected for one message (else each is published on its own).
        self.collecting = False
        self._predictions: list[Prediction] = []
        self._rejected: list[tuple[int, str]] = []

    def start(self, line: Line, *, collect: bool = False) -> None:
        self._seq, self._spectra, self._timestamp_us = line.seq, line.spectrum_count, line.timestamp_us
        self.collecting = collect
        self._predictions, self._rejected = [], []

    def add(self, prediction: Prediction) -> None:
        """A prediction of the line's (collecting)."""
        self._predictions.append(prediction)

    def reject(self, seq: int, reason: str) -> None:
        """The line's spectrum ``seq`` has no prediction, for ``reason`` (collecting)."""
        if self._seq is not None:
            self._rejected.append(((seq - self._seq) % LINE_SEQ_MODULUS, reason))

    def end(self) -> CollectedLine | None:
        """End the line; what was collected (None when not collecting).  A spectrum neither predicted nor rejected
        (an error stopped the line: ``frames_errors``) is listed as rejected for ``error``."""
        seq, collected = self._seq, None
        if self.collecting and seq is not None:
            done = {(p.seq - seq) % LINE_SEQ_MODULUS for p in self._predictions}
            done.update(i for i, _ in self._rejected)
            rejected = self._rejected + [(i, "error") for i in range(self._spectra) if i not in done]
            collected = CollectedLine(seq, self._spectra, self._timestamp_us, self._predictions,
                                      sorted(rejected))
        self._seq, self._spectra, self.collecting = None, 0, False
        self._predictions, self._rejected = [], []
        return collected

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


def _spread(values: list[Any], index: list[int], n: int) -> list[Any]:
    """``values`` at their ``index`` in a list of ``n`` entries, None elsewhere (``values`` itself when dense)."""
    if len(values) == n and index == list(range(n)):
        return values
    out: list[Any] = [None] * n
    for i, v in zip(index, values):
        out[i] = v
    return out


def line_message(line: CollectedLine, *, device_id: str, device_boot_id: int | None,
                 latency_ms: float) -> dict[str, Any] | None:
    """The ``.../line_prediction`` payload of a collected line (None when none of its spectra was predicted: each
    rejection is counted, nothing is published, as for a SPECTRUM frame).  Not validated here: the outbox's
    :func:`edge.publish.schema.encode` checks it strictly when it is published."""
    preds = line.predictions
    if not preds:
        return None
    n, first = line.spectra, preds[0]
    index = [(p.seq - line.seq) % LINE_SEQ_MODULUS for p in preds]
    targets = []
    # The ignores below: every prediction of a line comes from one bundle, so when the first carries intervals or OOD
    # scores they all do; mypy cannot follow that from ``first`` to the others.
    for j, (name, unit) in enumerate(zip(first.names, first.units)):
        lower = None if first.lower is None else _spread([p.lower[j] for p in preds], index, n)  # type: ignore[index]
        upper = None if first.upper is None else _spread([p.upper[j] for p in preds], index, n)  # type: ignore[index]
        targets.append(LineTarget(name, unit, _spread([p.values[j] for p in preds], index, n), lower, upper))
    ood = None
    if first.ood is not None:
        o = first.ood
        ood = LineOod(t2=_spread([p.ood.t2 for p in preds], index, n),  # type: ignore[union-attr]
                      q=_spread([p.ood.q for p in preds], index, n),  # type: ignore[union-attr]
                      t2_limit=o.t2_limit, q_limit=o.q_limit,
                      ae_score=None if o.ae_limit is None else
                      _spread([p.ood.ae_score for p in preds], index, n),  # type: ignore[union-attr]
                      ae_limit=o.ae_limit)
    flags = _spread([flag_mask(p.flags) if p.flags else 0 for p in preds], index, n)
    return line_prediction_message(
        device_id=device_id, seq=line.seq, spectra=n, device_timestamp_us=line.timestamp_us,
        model_id=first.model_id, model_version=first.model_version, targets=targets, quality_flags=flags,
        rejected=line.rejected, ood=ood, interval_coverage=first.interval_coverage, latency_ms=latency_ms,
        device_boot_id=device_boot_id, compute_us=round(sum(p.compute_us for p in preds), 1),
        validate_now=False)
