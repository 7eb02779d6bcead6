"""TFLite model runtime of the device: finds an interpreter (LiteRT first) and runs int8 or float models.

The interpreter class comes from ``ai_edge_litert.interpreter`` (LiteRT, the maintained runtime), then
``tflite_runtime.interpreter`` (older devices that only have that wheel), then ``tensorflow.lite`` as a last
resort on a development machine. Nothing is imported before a model is actually loaded, so ``import edge``
stays free of TensorFlow.

Int8 scale and zero point are read from the ``.tflite`` tensors' quantization parameters, never stored
anywhere else, so a bundle cannot carry a model and scales that disagree.

The interpreter is not thread-safe: one :class:`ModelRuntime` must be used by one thread at a time (the daemon
runs inference on a single worker thread).

Examples
--------
>>> info = load_interpreter_class()                      # doctest: +SKIP
>>> info.description                                     # doctest: +SKIP
'ai_edge_litert 2.3.0'
>>> rt = ModelRuntime(model_bytes, num_threads=1)        # doctest: +SKIP
>>> rt.predict(features)                                 # doctest: +SKIP
array([100.2], dtype=float32)
"""

from __future__ import annotations

import importlib
import math
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edge.errors import InputContractError, RuntimeLoadError
from edge.validation import require_int

__all__ = [
    "BATCH_SIZES",
    "RUNTIME_CANDIDATES",
    "InterpreterInfo",
    "ModelRuntime",
    "load_interpreter_class",
]

#: (module to import, attribute holding the Interpreter class, distribution name for the version), in order.
RUNTIME_CANDIDATES: Final[tuple[tuple[str, str, str], ...]] = (
    ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
    ("tensorflow.lite", "Interpreter", "tensorflow"),
)


#: Batch sizes a runtime allocates an interpreter for (one each, made on first use); a batch runs in chunks of at
#: most the largest, each on the smallest size that holds it, the rows past its end left as padding.
BATCH_SIZES: Final[tuple[int, ...]] = (2, 4, 8, 16, 32, 64)

#: Rows of the probe that compares batched with single-row invokes (:meth:`ModelRuntime.check_batching`).
_PROBE_ROWS: Final = 64


class _BatchRefused(Exception):
    """The model cannot run a batch in one invoke (fixed batch axis, or results that differ from single rows)."""


@dataclass(frozen=True)
class InterpreterInfo:
    """Which TFLite interpreter implementation was found.

    Attributes
    ----------
    name : str
        Top-level package that provided it: ``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow``.
    version : str
        Version of its distribution, or ``"unknown"``.
    interpreter_class : type
        The ``Interpreter`` class itself.
    """

    name: str
    version: str
    interpreter_class: type

    @property
    def description(self) -> str:
        """``"<name> <version>"``, the line the daemon logs at start-up."""
        return f"{self.name} {self.version}"


_cache_lock = threading.Lock()
_cache: dict[tuple[tuple[str, str, str], ...], InterpreterInfo] = {}


def load_interpreter_class(
    candidates: tuple[tuple[str, str, str], ...] = RUNTIME_CANDIDATES,
) -> InterpreterInfo:
    """Import the first available TFLite interpreter class (LiteRT, then tflite_runtime, then TensorFlow).

    Parameters
    ----------
    candidates : tuple of (module, attribute, distribution)
        Where to look, in order; the default is :data:`RUNTIME_CANDIDATES`.

    Returns
    -------
    InterpreterInfo
        The class with the name and version of the package that provided it (cached per ``candidates``).

    Raises
    ------
    RuntimeLoadError
        When none of the candidates can be imported; the message lists what was tried and why it failed.
    """
    with _cache_lock:
        found = _cache.get(candidates)
        if found is not None:
            return found
        failures: list[str] = []
        for module_name, attribute, distribution in candidates:
            try:
                module = importlib.import_module(module_name)
                cls = getattr(module, attribute)
            except (ImportError, AttributeError) as exc:
                failures.append(f"{module_name}: {exc}")
                continue
            try:
                version = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                version = str(getattr(importlib.import_module(module_name.split(".")[0]), "__version__", "unknown"))
            info = InterpreterInfo(name=module_name.split(".")[0], version=version, interpreter_class=cls)
            _cache[candidates] = info
            return info
        raise RuntimeLoadError(
            "no TFLite runtime found; expected one of ai-edge-litert, tflite-runtime or tensorflow to be "
            "installed (tried " + "; ".join(failures) + ")"
        )


@dataclass(frozen=True)
class _TensorQuant:
    """Quantization of one tensor: ``real = scale * (q - zero_point)``; ``scale == 0`` means float."""

    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def is_quantized(self) -> bool:
        return self.scale != 0.0


def _arithmetic(interpreter: Any, input_quantized: bool) -> str:
    """``"int8"`` for an int8/uint8 input tensor, ``"int16x8"`` when float32 input and output tensors wrap 16-bit
    activations, ``"float32"`` otherwise (read from the interpreter's tensor types once, at load)."""
    if input_quantized:
        return "int8"
    try:
        kinds = {np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()}
    except (ValueError, RuntimeError, TypeError):  # a runtime that cannot list its tensors: say what the input says
        return "float32"
    return "int16x8" if np.dtype(np.int16) in kinds else "float32"


def _tensor_quant(details: dict[str, Any], role: str) -> _TensorQuant:
    dtype = np.dtype(details["dtype"])
    params = details.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zero_points = np.asarray(params.get("zero_points", []), dtype=np.int64)
    if dtype == np.float32:
        return _TensorQuant(dtype=dtype, scale=0.0, zero_point=0)
    if dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        raise RuntimeLoadError(f"{role} tensor: expected dtype float32, int8 or uint8, got {dtype}")
    if scales.size != 1 or zero_points.size != 1:
        raise RuntimeLoadError(
            f"{role} tensor: expected per-tensor quantization (1 scale, 1 zero point), "
            f"got {scales.size} scales and {zero_points.size} zero points"
        )
    scale = float(scales[0])
    if not np.isfinite(scale) or scale <= 0.0:
        raise RuntimeLoadError(f"{role} tensor: expected a positive finite quantization scale, got {scale}")
    return _TensorQuant(dtype=dtype, scale=scale, zero_point=int(zero_points[0]))


class ModelRuntime:
    """One TFLite model ready to run: quantise, invoke, dequantise with preallocated buffers.

    Parameters
    ----------
    model_content : bytes
        The ``.tflite`` flatbuffer. It must have exactly one input and one output tensor, float32 or
        per-tensor quantized int8/uint8; the input's first axis is the batch axis (size 1).
    num_threads : int, optional
        Interpreter threads (default 1).
    interpreter_info : InterpreterInfo, optional
        Which interpreter to use; by default :func:`load_interpreter_class`.
    probe : bool, optional
        Load it in a child process first (:mod:`edge.load_probe`; the bundle loader and the trainer do).

    Raises
    ------
    RuntimeLoadError
        No runtime is installed, the bytes are not a valid model, its tensors are not supported, or it killed
        the probing child.

    Notes
    -----
    ``predict`` accepts one input of :attr:`input_shape` (the model's input shape without the batch axis;
    a missing trailing channel axis of size 1 is accepted too) or a batch with one more leading axis. A batch
    is quantised in one vectorised step and invoked in one interpreter call per chunk of up to
    ``max(BATCH_SIZES)`` rows, on a second interpreter whose input is resized to the chunk's size (see
    :data:`BATCH_SIZES`). Before its first batch the runtime checks (:meth:`check_batching`) that the model accepts
    a batch axis and that a batch gives every row bit for bit the single-row output; a model that fails either runs
    its batches row by row, and :attr:`batch_refusal` says why.
    """

    def __init__(
        self,
        model_content: bytes,
        *,
        num_threads: int = 1,
        interpreter_info: InterpreterInfo | None = None,
        output_affine: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        probe: bool = False,
    ) -> None:
        if not isinstance(model_content, (bytes, bytearray, memoryview)):
            raise RuntimeLoadError(f"expected the model as bytes, got {type(model_content).__name__}")
        require_int(num_threads, "num_threads", RuntimeLoadError, minimum=1)
        if probe:  # a model that makes the interpreter abort ends a child, not this process
            from edge.load_probe import probe_model_load
            probe_model_load(bytes(model_content), num_threads=num_threads)
        info = interpreter_info if interpreter_info is not None else load_interpreter_class()
        self._info = info
        self._model_content = bytes(model_content)
        self.num_threads = num_threads
        try:
            interpreter = info.interpreter_class(model_content=self._model_content, num_threads=num_threads)
            interpreter.allocate_tensors()
            inputs = interpreter.get_input_details()
            outputs = interpreter.get_output_details()
        except (ValueError, RuntimeError, TypeError) as exc:
            raise RuntimeLoadError(f"{info.name} could not load the model ({len(model_content)} bytes): {exc}") from exc
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeLoadError(
                f"expected a model with 1 input and 1 output tensor, got {len(inputs)} inputs "
                f"and {len(outputs)} outputs"
            )
        in_det, out_det = inputs[0], outputs[0]
        in_shape = tuple(int(d) for d in in_det["shape"])
        out_shape = tuple(int(d) for d in out_det["shape"])
        if len(in_shape) < 2 or in_shape[0] != 1 or len(out_shape) < 1 or out_shape[0] != 1:
            raise RuntimeLoadError(
                f"expected input and output tensors with a leading batch axis of 1, got input {in_shape} "
                f"and output {out_shape}"
            )
        self._interpreter = interpreter
        self._in_index = int(in_det["index"])
        self._out_index = int(out_det["index"])
        self._in_q = _tensor_quant(in_det, "input")
        self._out_q = _tensor_quant(out_det, "output")
        self._arithmetic = _arithmetic(interpreter, self._in_q.is_quantized)
        self._input_shape: tuple[int, ...] = in_shape[1:]
        self._output_shape: tuple[int, ...] = out_shape[1:]
        self._affine: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
        if output_affine is not None:
            a = np.asarray(output_affine[0], dtype=np.float64)
            b = np.asarray(output_affine[1], dtype=np.float64)
            if a.shape != self._output_shape or b.shape != self._output_shape:
                raise RuntimeLoadError(
                    f"expected an output transform of shape {self._output_shape}, got scale {a.shape} "
                    f"and offset {b.shape}"
                )
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a != 0)):
                raise RuntimeLoadError("expected a finite output transform with non-zero scales")
            self._affine = (a.astype(np.float32), b.astype(np.float32))
        self._batch_interps: dict[int, tuple[Any, npt.NDArray[Any]]] = {}
        self._batch_ok: bool | None = None  # None: not checked yet
        self._batch_refusal: str | None = None
        # Preallocated buffers of the single-sample path.
        self._in_batch1 = np.zeros(in_shape, dtype=self._in_q.dtype)
        self._work = np.zeros(self._input_shape, dtype=np.float64)
        self._out_raw = np.zeros(self._output_shape, dtype=self._out_q.dtype)
        self._in_inv_scale = 1.0 / self._in_q.scale if self._in_q.is_quantized else 1.0
        self._in_zero_point = float(self._in_q.zero_point)
        self._in_min, self._in_max = (
            (float(np.iinfo(self._in_q.dtype).min), float(np.iinfo(self._in_q.dtype).max))
            if self._in_q.is_quantized
            else (0.0, 0.0)
        )

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def runtime_name(self) -> str:
        """Package providing the interpreter: ``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow``."""
        return self._info.name

    @property
    def runtime_description(self) -> str:
        """``"<name> <version>"`` for logs and status messages."""
        return self._info.description

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Model input shape without the batch axis, e.g. ``(650, 1)``."""
        return self._input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Model output shape without the batch axis, e.g. ``(1,)`` for one regression target."""
        return self._output_shape

    @property
    def is_quantized(self) -> bool:
        """True when the input tensor is int8/uint8 (full-integer model)."""
        return self._in_q.is_quantized

    @property
    def arithmetic(self) -> str:
        """What the model computes in: ``"int8"`` (full integer), ``"int16x8"`` (16-bit activations, int8 weights,
        float32 input and output tensors, as the trainer converts a CNN whose int8 rounding is too coarse) or
        ``"float32"``."""
        return self._arithmetic

    @property
    def input_dtype(self) -> np.dtype[Any]:
        """Dtype of the model's input tensor (int8 for a full-integer model, float32 otherwise)."""
        return self._in_q.dtype

    @property
    def output_dtype(self) -> np.dtype[Any]:
        """Dtype of the model's output tensor."""
        return self._out_q.dtype

    @property
    def input_quantization(self) -> tuple[float, int]:
        """``(scale, zero_point)`` of the input tensor as read from the model; ``(0.0, 0)`` for float."""
        return (self._in_q.scale, self._in_q.zero_point)

    @property
    def output_quantization(self) -> tuple[float, int]:
        """``(scale, zero_point)`` of the output tensor as read from the model; ``(0.0, 0)`` for float."""
        return (self._out_q.scale, self._out_q.zero_point)

    @property
    def output_affine(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        """``(scale, offset)`` applied in float after dequantisation (target units = output * scale + offset), or
        None: a model that emits standardised targets keeps its int8 output step small (bundle ``output_transform``)."""
        return self._affine

    @property
    def output_step(self) -> npt.NDArray[np.float64] | None:
        """One int8 output step per output, in the units :meth:`predict` returns; None for a float model."""
        if not self._out_q.is_quantized:
            return None
        step = np.full(self._output_shape, float(self._out_q.scale))
        return step * np.abs(self._affine[0]) if self._affine is not None else step

    @property
    def model_content(self) -> bytes:
        """The ``.tflite`` bytes this runtime was built from."""
        return self._model_content

    @property
    def batch_refusal(self) -> str | None:
        """Why batches run row by row (the model refused a batch axis, or a batch differed from single rows), or
        None when they run batched or have not been checked yet."""
        return self._batch_refusal

    @property
    def batches_invoked_whole(self) -> bool | None:
        """True when a batch is one interpreter call per chunk, False when row by row, None before the check."""
        return self._batch_ok

    # ----------------------------------------------------------------------------------------------- batching
    def _batch_interpreter(self, size: int) -> tuple[Any, npt.NDArray[Any]]:
        """The interpreter whose input is resized to ``size`` rows, and its preallocated input buffer."""
        found = self._batch_interps.get(size)
        if found is not None:
            return found
        try:
            interp = self._info.interpreter_class(model_content=self._model_content, num_threads=self.num_threads)
            interp.resize_tensor_input(self._in_index, [size, *self._input_shape], strict=True)
            interp.allocate_tensors()
            out_shape = tuple(int(d) for d in interp.get_output_details()[0]["shape"])
        except (ValueError, RuntimeError, TypeError, IndexError, KeyError) as exc:
            raise _BatchRefused(f"{self._info.name} cannot resize the input to {size} rows: {exc}") from exc
        if out_shape != (size, *self._output_shape):
            raise _BatchRefused(
                f"expected an output of shape {(size, *self._output_shape)} for {size} rows, got {out_shape}")
        buf = np.zeros((size, *self._input_shape), dtype=self._in_q.dtype)
        found = (interp, buf)
        self._batch_interps[size] = found
        return found

    def _invoke_rows(self, rows: npt.NDArray[Any], result: npt.NDArray[Any]) -> None:
        interp = self._interpreter
        for i in range(rows.shape[0]):
            interp.set_tensor(self._in_index, rows[i : i + 1])
            interp.invoke()
            result[i] = interp.get_tensor(self._out_index)[0]

    def _invoke_batched(self, rows: npt.NDArray[Any], result: npt.NDArray[Any]) -> None:
        largest = BATCH_SIZES[-1]
        for start in range(0, rows.shape[0], largest):
            chunk = rows[start : start + largest]
            m = chunk.shape[0]
            size = next(s for s in BATCH_SIZES if s >= m)
            interp, buf = self._batch_interpreter(size)
            buf[:m] = chunk  # rows m.. keep the previous chunk's values: padding, rows do not affect each other
            interp.set_tensor(self._in_index, buf)
            interp.invoke()
            result[start : start + m] = interp.get_tensor(self._out_index)[:m]

    def check_batching(self, features: npt.ArrayLike | None = None) -> bool:
        """Check once whether batches may run in one invoke: the model must accept a resized batch axis and give
        every row of a batch bit for bit its single-row output.

        The probe is ``features`` (e.g. the bundle's preprocessed golden vectors) quantised, followed by
        deterministic pseudo-random inputs over the input range up to 64 rows, run as batches of 64, 7 (padded to
        8) and 2 against single-row invokes. Done on the first batch when not called before; later calls return the
        first answer.

        Returns
        -------
        bool
            True when batches run whole; False when they run row by row (:attr:`batch_refusal` says why).
        """
        if self._batch_ok is not None:
            return self._batch_ok
        rng = np.random.default_rng(20260)
        if self._in_q.is_quantized:
            info = np.iinfo(self._in_q.dtype)
            noise = rng.integers(info.min, info.max, size=(_PROBE_ROWS, *self._input_shape), endpoint=True)
            probe = noise.astype(self._in_q.dtype)
        else:
            probe = rng.standard_normal((_PROBE_ROWS, *self._input_shape)).astype(np.float32)
        if features is not None:
            given = np.asarray(features, dtype=np.float64)
            given = given.reshape((-1, *self._input_shape))[:_PROBE_ROWS]
            probe[: given.shape[0]] = self.quantize(given).reshape((-1, *self._input_shape))
        single = np.empty((_PROBE_ROWS, *self._output_shape), dtype=self._out_q.dtype)
        self._invoke_rows(probe, single)
        try:
            for n in (_PROBE_ROWS, 7, 2):
                batched = np.empty((n, *self._output_shape), dtype=self._out_q.dtype)
                self._invoke_batched(probe[:n], batched)
                if not np.array_equal(batched, single[:n]):
                    row = int(np.flatnonzero(~np.all((batched == single[:n]).reshape(n, -1), axis=1))[0])
                    raise _BatchRefused(f"a batch of {n} gives row {row} another output than a single-row invoke")
        except _BatchRefused as exc:
            self._batch_interps.clear()
            self._batch_ok, self._batch_refusal = False, str(exc)
            return False
        self._batch_ok = True
        return True

    # ----------------------------------------------------------------------------------------------- shapes
    def _batch_shape(self, x: npt.NDArray[Any]) -> int | None:
        """None for one sample, n for a batch of n; raises on anything else."""
        shape = x.shape
        full = self._input_shape
        squeezed = full[:-1] if full[-1] == 1 else None
        if shape == full or (squeezed is not None and shape == squeezed):
            return None
        if len(shape) >= 1 and (shape[1:] == full or (squeezed is not None and shape[1:] == squeezed)):
            return int(shape[0])
        raise InputContractError(
            f"expected model input of shape {full} or (n, {', '.join(map(str, full))}), got {shape}"
        )

    # ----------------------------------------------------------------------------------------------- stages
    def quantize(self, x: npt.ArrayLike) -> npt.NDArray[Any]:
        """Convert float features to the model's input dtype with the input tensor's scale and zero point.

        Parameters
        ----------
        x : ndarray, shape ``input_shape`` or ``(n, *input_shape)``, float
            Preprocessed features.

        Returns
        -------
        ndarray, same leading shape, dtype ``input_dtype``
            ``clip(rint(x * (1 / scale)) + zero_point)`` computed in float64 for a quantized model (rounding
            half to even), or ``x`` as float32 for a float model. For a single sample the returned array is an
            internal buffer that the next call overwrites.
        """
        arr = np.asarray(x)
        n = self._batch_shape(arr)
        if n is None:
            work = self._work.reshape(arr.shape)
            out = self._in_batch1.reshape(arr.shape)
        else:
            work = np.empty(arr.shape, dtype=np.float64)
            out = np.empty(arr.shape, dtype=self._in_q.dtype)
        q = self._in_q
        if not q.is_quantized:
            np.copyto(out, arr, casting="unsafe")
            return out.reshape(self._input_shape if n is None else (n, *self._input_shape))
        # float64 work buffer: no intermediate casts; minimum/maximum are cheaper than np.clip's Python wrapper
        np.multiply(arr, self._in_inv_scale, out=work)
        np.rint(work, out=work)
        np.add(work, self._in_zero_point, out=work)
        np.minimum(work, self._in_max, out=work)
        np.maximum(work, self._in_min, out=work)
        np.copyto(out, work, casting="unsafe")
        return out.reshape(self._input_shape if n is None else (n, *self._input_shape))

    def invoke_quantized(self, q: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run the interpreter on already-quantized input(s) and return the raw output tensor(s).

        Parameters
        ----------
        q : ndarray, shape ``input_shape`` or ``(n, *input_shape)``, dtype ``input_dtype``

        Returns
        -------
        ndarray, shape ``output_shape`` or ``(n, *output_shape)``, dtype ``output_dtype``
            For a single sample the returned array is an internal buffer that the next call overwrites. A batch
            runs in one interpreter call per chunk of up to ``max(BATCH_SIZES)`` rows when :meth:`check_batching`
            allows it, row by row otherwise; either way each row's output is the single-row one.
        """
        arr = np.asarray(q)
        if arr.dtype != self._in_q.dtype:
            raise InputContractError(f"expected {self._in_q.dtype} input, got {arr.dtype}")
        n = self._batch_shape(arr)
        interp = self._interpreter
        if n is None:
            src = arr.reshape(self._in_batch1.shape)
            if not np.may_share_memory(src, self._in_batch1):
                np.copyto(self._in_batch1, src)
            interp.set_tensor(self._in_index, self._in_batch1)
            interp.invoke()
            np.copyto(self._out_raw, interp.get_tensor(self._out_index)[0])
            return self._out_raw
        rows = arr.reshape((n, *self._input_shape))
        result = np.empty((n, *self._output_shape), dtype=self._out_q.dtype)
        if n >= 2 and self.check_batching():
            self._invoke_batched(rows, result)
        else:
            self._invoke_rows(rows, result)
        return result

    def dequantize(self, q: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Convert raw output(s) to float32 with the output tensor's scale and zero point.

        Parameters
        ----------
        q : ndarray, shape ``output_shape`` or ``(n, *output_shape)``, dtype ``output_dtype``

        Returns
        -------
        ndarray of float32, same shape
            ``scale * (q - zero_point)``, or a float32 copy for a float model, then ``* a + b`` when the runtime has an
            :attr:`output_affine` ``(a, b)``. Always a new array.
        """
        arr = np.asarray(q)
        oq = self._out_q
        if not oq.is_quantized:
            out = np.array(arr, dtype=np.float32)
        else:
            out = arr.astype(np.float32)
            out -= np.float32(oq.zero_point)
            out *= np.float32(oq.scale)
        if self._affine is not None:
            out *= self._affine[0]
            out += self._affine[1]
        return out

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Quantise, invoke and dequantise one input or a batch.

        Parameters
        ----------
        x : ndarray, shape ``input_shape`` or ``(n, *input_shape)``, float
            Preprocessed features (a trailing channel axis of size 1 may be left out).

        Returns
        -------
        ndarray of float32, shape ``output_shape`` or ``(n, *output_shape)``
            Model outputs in target units (regression) or class probabilities (classification).

        Raises
        ------
        InputContractError
            The shape matches neither one input nor a batch, or the features are not finite.
        """
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise InputContractError(f"expected numeric features, got dtype {arr.dtype}")
        # one reduction instead of an isfinite temporary; the exact check runs only when the sum is not finite
        if not math.isfinite(float(np.add.reduce(arr, axis=None))) and not bool(np.isfinite(arr).all()):
            raise InputContractError("expected finite features, got NaN or inf")
        return self.dequantize(self.invoke_quantized(self.quantize(arr)))

    def __repr__(self) -> str:
        kind = self._arithmetic
        return (
            f"ModelRuntime({kind}, input={self._input_shape}, output={self._output_shape}, "
            f"runtime={self.runtime_description!r}, num_threads={self.num_threads})"
        )
