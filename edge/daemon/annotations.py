"""Predictions held for their ANNOTATION frame (inference thread; ``device.forward_annotations``, for test benches and
the demo): :class:`AnnotationWait` pairs each prediction with the reference values a simulator sends under the same
``seq``, whichever of the two arrives first, and publishes it without them when they do not come in time."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from edge.inference import Prediction
from firmware_bridge.frames import Annotation

__all__ = ["AnnotationWait", "EARLY_ANNOTATIONS_MAX"]

#: At most this many ANNOTATION frames that arrived before their spectrum are kept (the oldest go first).
EARLY_ANNOTATIONS_MAX = 64


class AnnotationWait:
    """The prediction held for its ANNOTATION (at most one) and the annotations that came before their spectrum.

    Parameters
    ----------
    publish : callable(prediction, latency_ns, reference values or None)
        Publishes a prediction with the reference values of its ANNOTATION (None: none came).
    """

    def __init__(self, publish: Callable[[Prediction, int, Sequence[float] | None], None]) -> None:
        self._publish = publish
        self._held: tuple[Prediction, float, int] | None = None  # prediction, held since (monotonic s), latency ns
        self._early: dict[int, tuple[float, ...]] = {}

    def on_annotation(self, frame: Annotation, last_seq: int | None) -> None:
        """An ANNOTATION frame: publish the held prediction of its seq with it, or keep it for a spectrum not seen
        yet (``last_seq``: the last seq seen)."""
        held = self._held
        if held is not None and held[0].seq == frame.seq:
            self._held = None
            self._publish(held[0], held[2], frame.values)
        elif last_seq is None or frame.seq > last_seq:
            self._early[frame.seq] = frame.values  # arrived before its spectrum
            while len(self._early) > EARLY_ANNOTATIONS_MAX:
                self._early.pop(next(iter(self._early)))

    def on_prediction(self, pred: Prediction, latency_ns: int) -> None:
        """A prediction: published at once with its annotation if that came first, else held for it."""
        early = self._early.pop(pred.seq, None)
        if early is not None:
            self._publish(pred, latency_ns, early)
        else:
            self._held = (pred, time.monotonic(), latency_ns)

    def release(self, *, force: bool, wait_s: float) -> None:
        """Publish the held prediction without annotation when it has waited ``wait_s`` seconds (or ``force``)."""
        held = self._held
        if held is not None and (force or time.monotonic() - held[1] >= wait_s):
            self._held = None
            self._publish(held[0], held[2], None)
