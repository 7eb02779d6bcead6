"""Int8 calibration variants: the activation ranges of a full-integer conversion, chosen rather than taken as is.

The TFLite converter sets every int8 tensor's scale from the min and max its representative rows reach. That is
one choice among several: a range taken over more rows covers more of what the line sends, a range clipped at a
high percentile spends the 256 int8 levels on the values that occur instead of on a few outliers (one unit of a
hidden layer that fires hard on a handful of spectra sets the step of the whole tensor). Which is better depends on
the network, so :func:`int8_candidates` builds the variants from *one* calibration pass and the trainer keeps the
one whose int8 outputs stay closest to the float network on the training and selection rows (a classifier's: that
changes the fewest classes), never on test rows (:mod:`trainer.pipeline.int8`). Those are the rows the ranges
were calibrated on, so what a clipped range costs on spectra beyond them is not seen there: the headroom below is
what covers those.

How: the converter calibrates only (``_experimental_calibrate_only``: a float flatbuffer whose tensors carry the
min/max statistics), the statistics are edited here (:mod:`tensorflow.lite.tools.flatbuffer_utils`), and the
converter's own MLIR quantiser turns the result into the same full-integer int8 model it would have written
(``mlir_quantize``, the path of TensorFlow's ``QuantizationDebugger``). Unedited, the result predicts exactly as
the plain conversion does. Percentiles come from running the calibrated float model over the rows with every
intermediate tensor kept. Only the trainer runs this (TensorFlow); the edge reads the usual scales and zero
points from the ``.tflite``.

Variants (``name``: what changes against the plain conversion):

``minmax``
    None: min/max over the representative rows (the plain conversion; like every variant, with the headroom
    below).
``minmax_all``
    Min/max over every calibration spectrum given (training and selection rows), not a subset.
``act_p9999``
    As ``minmax_all``, with every hidden activation clipped to its 0.01th-99.99th percentiles (where those are
    narrower than one int8 step of the min/max range, the tensor is almost always 0 and keeps its min/max).

One more conversion, :data:`WIDE` (``int16x8``), is not full-integer int8: 16-bit activations (input and output
included, quantised inside the graph: the ``.tflite`` has float32 input and output tensors) and int8 weights, the
weights first fine-tuned onto their int8 grid (:mod:`trainer.weight_rounding`), ranges min/max over every
calibration spectrum (with the headroom below). It removes the two losses no choice of int8 ranges can: 256 levels
for the preprocessed spectrum and the weights' rounding. The edge runs it as it runs any float-in, float-out model;
the trainer takes it only where the int8 model's gap to the float network is a visible share of the network's own
error (:mod:`trainer.pipeline.int8`).

Headroom (``[quantize] headroom``, 0.25 by default): once a variant has chosen its ranges, every range but the
input's is widened by that fraction of itself (about 0, so the zero point stays). A min/max range ends exactly at
the largest value the calibration rows produced, so a sample richer in the analyte than any of them has its output
(and the hidden units that carry it) clipped there, an error the float network does not make. On the wheat kernels
of another location the standardised output reached 4.29 against a training maximum of 3.50: int8 / float on the
test kernels was 1.059 (1.001 when, as a diagnostic only, the ranges were calibrated on the test kernels too); with
25 % headroom it was 1.009, for about 25 % more rounding noise on the training kernels (a gap of 6.0 % of the
CNN's error instead of 4.7 %). The :data:`WIDE` conversion gets the same headroom (its 65,536 levels make it
nearly free there).

The input keeps its min/max in every variant. The input tensor sees every spectrum the line sends: clipping it
narrows the step for the spectra seen in training but saturates any spectrum beyond them, a trade the training and
selection rows cannot judge (on the wheat set, whose test spectra reach twice the training range after
preprocessing, a clipped input was closer to the float network on those rows and further from it on the test rows).
Spectra far beyond the training range are the OOD detector's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["CANDIDATES", "PERCENTILE", "WIDE", "int8_candidates", "int16x8_model", "calibrate",
           "plain_with_headroom", "quantize_calibrated", "output_scale", "structure", "Structure", "tensor_ranges",
           "with_headroom", "with_ranges"]

#: The calibration variants, the plain conversion first (it wins ties).
CANDIDATES = ("minmax", "minmax_all", "act_p9999")
#: The 16-bit-activation conversion (float input and output tensors, int8 weights on their fine-tuned grid).
WIDE = "int16x8"
#: Upper percentile of the clipped variants (the lower one is ``100 - PERCENTILE``).
PERCENTILE = 99.99

#: Tensor index -> (min, max) per-tensor calibration statistics.
Ranges = dict[int, tuple[float, float]]


def _calibrated_converter(keras_model: Any, rows: np.ndarray, ops: Any) -> Any:
    """A ``TFLiteConverter`` with the default optimisations, calibrated on ``rows`` one row per step, for ``ops``."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for i in range(rows.shape[0]):
            yield [rows[i : i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [ops]
    return converter


def int8_converter(keras_model: Any, rows: np.ndarray) -> Any:
    """A ``TFLiteConverter`` for a full-integer int8 model (int8 input and output) calibrated on ``rows``, one row
    per calibration step: the plain conversion of :mod:`trainer.quantize` and the calibration pass here."""
    import tensorflow as tf

    converter = _calibrated_converter(keras_model, rows, tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def int16x8_model(keras_model: Any, rows: np.ndarray, headroom: float = 0.0) -> bytes:
    """16-bit activations, int8 weights (per channel), float32 input and output tensors; ranges min/max over
    ``rows`` (TensorFlow's ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``), every one but the
    input's widened by ``headroom`` (:func:`with_headroom`)."""
    import tensorflow as tf

    ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    converter = _calibrated_converter(keras_model, rows, ops)
    if headroom == 0:
        return bytes(converter.convert())
    converter._experimental_calibrate_only = True
    cal = bytes(converter.convert())
    return _quantize_16x8(_edited(cal, tensor_ranges(cal)[0], headroom))


def _quantize_16x8(calibrated: bytes) -> bytes:
    """The 16x8 model of a calibrated flatbuffer, from the statistics it carries.

    The MLIR quantiser has no 16-bit path for these graphs, so this is the converter's own 16x8 route (TFLite's
    calibrator and quantiser) fed no rows: with nothing to record it adds no statistics of its own and quantises
    with those in the flatbuffer (unedited, the result predicts exactly as :func:`int16x8_model` with no headroom
    does; ``tests/trainer/test_quant_ranges.py``)."""
    import tensorflow as tf
    from tensorflow.lite.python.optimize import calibrator

    quantizer = calibrator.Calibrator(calibrated)
    return bytes(quantizer.calibrate_and_quantize(lambda: iter(()), input_type=tf.float32, output_type=tf.float32,
                                                  allow_float=False, activations_type=tf.int16, bias_type=tf.int64))


def output_scale(model_bytes: bytes) -> float | None:
    """The quantisation scale of the tensor that becomes the model's output: the output tensor's own, or, for a
    float output, that of the quantised tensor its last ``DEQUANTIZE`` reads (None when there is none)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    out = int(graph.outputs[0])
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if int(op.outputs[0]) == out and max(code.builtinCode, code.deprecatedBuiltinCode) == _DEQUANTIZE:
            out = int(op.inputs[0])
    q = graph.tensors[out].quantization
    return None if q is None or q.scale is None or len(q.scale) != 1 else float(q.scale[0])


#: ``BuiltinOperator.DEQUANTIZE`` of the TFLite schema.
_DEQUANTIZE = 6


def calibrate(keras_model: Any, rows: np.ndarray) -> bytes:
    """The converter's calibration pass only: a float ``.tflite`` whose tensors carry min/max over ``rows``."""
    converter = int8_converter(keras_model, rows)
    converter.experimental_new_quantizer = True
    converter._experimental_calibrate_only = True  # the QuantizationDebugger's documented way in
    return bytes(converter.convert())


def quantize_calibrated(calibrated: bytes) -> bytes:
    """Full-integer int8 model (int8 input and output, per-channel weights) from a calibrated flatbuffer."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    return bytes(convert.mlir_quantize(calibrated, disable_per_channel=False, fully_quantize=True,
                                       input_data_type=tf.int8, output_data_type=tf.int8))


def tensor_ranges(calibrated: bytes) -> tuple[Ranges, list[int], list[int]]:
    """Per-tensor ``{index: (min, max)}`` of a calibrated flatbuffer, and its input and output tensor indices."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated)).subgraphs[0]
    out: Ranges = {}
    for i, t in enumerate(graph.tensors):
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) == 1 and q.max is not None and len(q.max) == 1:
            out[i] = (float(q.min[0]), float(q.max[0]))
    return out, [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]


def with_ranges(calibrated: bytes, ranges: Ranges) -> bytes:
    """The calibrated flatbuffer with the statistics of the tensors in ``ranges`` replaced."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    for i, (lo, hi) in ranges.items():
        if not lo <= 0.0 <= hi:
            raise ValueError(f"expected a range that includes 0 for tensor {i}, got [{lo}, {hi}]")
        tensors[i].quantization.min = np.array([lo], dtype=np.float32)
        tensors[i].quantization.max = np.array([hi], dtype=np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _tensor_values(calibrated: bytes, rows: np.ndarray, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Every value each listed tensor takes when the calibrated float model runs over ``rows``."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "intended for debugging": keeping every tensor is the point here
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    values: dict[int, list[np.ndarray]] = {i: [] for i in indices}
    for i in range(rows.shape[0]):
        interp.set_tensor(inp, rows[i : i + 1])
        interp.invoke()
        for t in indices:
            values[t].append(np.ravel(interp.get_tensor(t)))
    return {t: np.concatenate(v) for t, v in values.items()}


def _clipped(values: np.ndarray, full: tuple[float, float]) -> tuple[float, float]:
    """Percentile range of ``values``, never wider than ``full`` and always including 0.

    A tensor that is almost always 0 (a ReLU unit alive on fewer than 0.01 % of its values) has percentiles of 0:
    clipped there it would be silenced, and its near-zero scale leaves the next layer a requantisation scale that
    XNNPACK refuses. Where the percentile range is narrower than one int8 step of ``full``, ``full`` is kept."""
    lo, hi = np.percentile(values, [100.0 - PERCENTILE, PERCENTILE])
    clipped = min(max(float(lo), full[0]), 0.0), max(min(float(hi), full[1]), 0.0)
    if clipped[1] - clipped[0] < (full[1] - full[0]) / 255.0:
        return full
    return clipped


class Structure(NamedTuple):
    """What the headroom must respect in a calibrated graph."""

    #: The input tensor and those that only re-shape it (RESHAPE, EXPAND_DIMS, SQUEEZE): they keep its range.
    input_like: tuple[int, ...]
    #: Each CONCATENATION's ``(output, operands)``, in execution order: its range is the union of theirs.
    concats: tuple[tuple[int, tuple[int, ...]], ...]


#: ``BuiltinOperator`` codes of the TFLite schema: ops that re-shape a tensor, and CONCATENATION.
_RESHAPES = frozenset({22, 70, 43})  # RESHAPE, EXPAND_DIMS, SQUEEZE
_CONCATENATION = 2


def structure(calibrated: bytes) -> Structure:
    """The input-like tensors and the concatenations of a calibrated flatbuffer, found by walking its operators
    (a range equal to the input's by coincidence, e.g. a concatenation of the input with smaller features, is not
    taken for the input)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    input_like = [int(graph.inputs[0])]
    concats = []
    for op in graph.operators:  # stored in execution order
        code = model.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        if kind in _RESHAPES and int(op.inputs[0]) in input_like:
            input_like.append(int(op.outputs[0]))
        elif kind == _CONCATENATION:
            concats.append((int(op.outputs[0]), tuple(int(i) for i in op.inputs)))
    return Structure(tuple(input_like), tuple(concats))


def with_headroom(ranges: Ranges, graph: Structure, headroom: float) -> Ranges:
    """Every range but the input-like ones widened to include 0 and scaled by ``1 + headroom`` about 0 (the zero
    point stays where it was, and a tensor the line drives past its calibration extremes is not clipped there); then
    each concatenation's range is the union of its operands' (the input's copy on a linear path keeps its step
    unless the other operands need more). ``headroom`` 0 scales nothing.

    Raises
    ------
    ValueError
        A headroom that is negative or not finite.
    """
    if not 0.0 <= headroom < math.inf:
        raise ValueError(f"expected a finite headroom >= 0, got {headroom}")
    keep, f = set(graph.input_like), 1.0 + headroom
    out = dict(ranges) if headroom == 0 else {
        i: r if i in keep else (min(r[0], 0.0) * f, max(r[1], 0.0) * f) for i, r in ranges.items()}
    for concat, operands in graph.concats:
        parts = [out[i] for i in operands if i in out]
        if concat in out and parts:
            out[concat] = (min(lo for lo, _ in parts), max(hi for _, hi in parts))
    return out


def _edited(cal: bytes, ranges: Ranges, headroom: float) -> bytes:
    """``cal`` with ``ranges`` and the headroom; only the tensors whose range changed are edited (none: ``cal``
    itself, which quantises exactly as the converter does)."""
    own = tensor_ranges(cal)[0]
    edited = {i: r for i, r in with_headroom(ranges, structure(cal), headroom).items() if r != own.get(i)}
    return with_ranges(cal, edited) if edited else cal


def plain_with_headroom(keras_model: Any, rows: np.ndarray, headroom: float) -> bytes:
    """The plain conversion (min/max over ``rows``) with the headroom (:func:`with_headroom`)."""
    cal = calibrate(keras_model, rows)
    return quantize_calibrated(_edited(cal, tensor_ranges(cal)[0], headroom))


def int8_candidates(keras_model: Any, all_rows: np.ndarray, headroom: float = 0.0) -> list[tuple[str, bytes]]:
    """The :data:`CANDIDATES` but the first (the plain conversion, :func:`trainer.quantize.convert_int8`) as
    ``(name, int8 .tflite bytes)``, in that order.

    Parameters
    ----------
    keras_model : keras.Model
    all_rows : ndarray, shape (m, *input_shape), float32
        Every calibration spectrum (training and selection rows, preprocessed).
    headroom : float, optional
        Every range but the input's is widened by this fraction of itself once the variant has chosen it
        (:func:`with_headroom`; ``[quantize] headroom``). 0: the ranges as chosen.
    """
    cal = calibrate(keras_model, all_rows)
    ranges, _, outputs = tensor_ranges(cal)
    graph = structure(cal)
    out = [("minmax_all", quantize_calibrated(_edited(cal, ranges, headroom)))]
    # A concatenation takes the union of its operands' ranges (with_headroom), so it is not clipped itself.
    not_hidden = {*graph.input_like, *outputs, *(c for c, _ in graph.concats)}
    hidden = [i for i in ranges if i not in not_hidden]
    values = _tensor_values(cal, all_rows, hidden)
    clipped = {**ranges, **{i: _clipped(values[i], ranges[i]) for i in hidden}}
    out.append(("act_p9999", quantize_calibrated(_edited(cal, clipped, headroom))))
    return out
