"""Predictions held for their ANNOTATION frame (inference thread; ``device.forward_annotations``, for test benches and
the demo): :class:`AnnotationWait` pairs each prediction with the reference values a simulator sends under the same
``seq``, whichever of the two arrives first, and publishes it without them when they do not come in time.

The reference values pair with the prediction's values by position. An ANNOTATION of a regression bundle that
carries more or fewer values than the bundle has targets cannot be paired: its values are not forwarded (the
prediction is published without them), counted (``annotation_mismatch``) and a warning names the fix once per
shape (a simulator sends the bundle's targets with ``spectro-sim --targets``)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from edge.inference import Prediction
from edge.metrics import Counters
from firmware_bridge.frames import Annotation

__all__ = ["AnnotationWait", "EARLY_ANNOTATIONS_MAX"]

#: At most this many ANNOTATION frames that arrived before their spectrum are kept (the oldest go first).
EARLY_ANNOTATIONS_MAX = 64

log = logging.getLogger(__name__)


class AnnotationWait:
    """The prediction held for its ANNOTATION (at most one) and the annotations that came before their spectrum.

    Parameters
    ----------
    publish : callable(prediction, latency_ns, reference values or None)
        Publishes a prediction with the reference values of its ANNOTATION (None: none came, or they could not be
        paired with the bundle's targets).
    counters : Counters, optional
        Where ``annotation_mismatch`` is counted.
    bundle : callable() -> the serving bundle, optional
        Its task and targets judge an ANNOTATION's count (without it, every count is forwarded).
    """

    def __init__(self, publish: Callable[[Prediction, int, Sequence[float] | None], None],
                 counters: Counters | None = None, bundle: Callable[[], Any] | None = None) -> None:
        self._publish_paired = publish
        self._counters = counters
        self._bundle = bundle
        self._warned: set[tuple[int, tuple[str, ...]]] = set()
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

    def _publish(self, pred: Prediction, latency_ns: int, values: Sequence[float] | None) -> None:
        if values is not None and self._bundle is not None:
            bundle = self._bundle()
            names = tuple(str(t.name) for t in getattr(bundle, "targets", ()))
            if getattr(bundle, "task", "regression") == "regression" and names and len(values) != len(names):
                self._refuse(pred.seq, len(values), names)
                values = None
        self._publish_paired(pred, latency_ns, values)

    def _refuse(self, seq: int, count: int, names: tuple[str, ...]) -> None:
        if self._counters is not None:
            self._counters.incr("annotation_mismatch")
        if (count, names) not in self._warned:
            self._warned.add((count, names))
            log.warning(
                "ANNOTATION seq %d carries %d reference value(s), expected %d, one per target of the bundle (%s), "
                "in that order: its values are not forwarded (the message's reference pairs with its values by "
                "position; counted as annotation_mismatch, this warning once per shape). A simulator sends the "
                "bundle's targets with spectro-sim --targets %s", seq, count, len(names), ", ".join(names),
                ",".join(names))
