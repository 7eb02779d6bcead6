"""Keras model to ``.tflite``: full-integer int8 post-training quantisation and plain float conversion.

Full-integer int8 means int8 weights, activations, input and output (``Optimize.DEFAULT``, a representative
dataset, ``TFLITE_BUILTINS_INT8`` and ``inference_input_type``/``inference_output_type`` ``tf.int8``), so the device
runs integer kernels only and reads the input/output scale and zero point from the model itself.

The representative dataset must be *real preprocessed training spectra*: the converter derives every activation
range from it, and random data gives wrong scales (a visible accuracy loss).

The TFLite converter keeps memory after each call (graphs, MLIR contexts), which adds up over a hyperparameter
search, so by default :func:`convert_int8` runs in a child process: the model is saved to a temporary ``.keras``
file and converted by ``python -m trainer.quantize``, which is also a small command line::

    python -m trainer.quantize --model m.keras --representative X.npy --out model.tflite [--float]
    python -m trainer.quantize --model m.keras --representative X.npy --all-rows A.npy --out DIR [--headroom H]

:func:`convert_int8_candidates` returns the plain conversion, the calibration variants of
:mod:`trainer.quant_ranges` (ranges over more rows, percentile-clipped activations) and its 16-bit-activation
conversion, one ``.tflite`` each; the trainer chooses among them on training and selection rows
(:mod:`trainer.pipeline.int8`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import math
import os
import subprocess as _subprocess
import sys
import tempfile
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from edge.load_probe import cap_tf_log_level
from trainer.errors import TrainerError

__all__ = [
    "QuantizeError",
    "MAX_REPRESENTATIVE_SAMPLES",
    "MIN_REPRESENTATIVE_SAMPLES",
    "convert_int8",
    "convert_int8_candidates",
    "convert_float",
    "main",
]

log = logging.getLogger(__name__)

#: At most this many rows of the representative data are fed to the converter (a seeded random subset).
MAX_REPRESENTATIVE_SAMPLES = 500
#: Fewer rows than this cannot calibrate activation ranges reliably.
MIN_REPRESENTATIVE_SAMPLES = 10
#: Prefix of the child process's progress lines on its stdout, forwarded to this module's logger.
_PROGRESS_PREFIX = "progress: "
#: A child's WARNING (and worse) lines: the parent logs them as warnings (the fit's ``metrics.json`` ``warnings``).
_WARNING_PREFIX = "warning: "
#: File listing the candidates' names, in order, in the child's output folder.
_CANDIDATE_LIST = "candidates.txt"
_REPO_ROOT = Path(__file__).resolve().parents[1]


class QuantizeError(TrainerError, RuntimeError):
    """The TFLite conversion failed, or its result is not the full-integer model that was asked for."""


def _model_input_shape(keras_model: Any) -> tuple[int, ...]:
    shape = keras_model.inputs[0].shape if getattr(keras_model, "inputs", None) else keras_model.input_shape
    return tuple(int(d) for d in tuple(shape)[1:])


def _prepare_representative(representative_X: npt.ArrayLike, input_shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Validate the representative rows against the model input shape and pick a seeded subset (float32)."""
    X = np.asarray(representative_X)
    if X.dtype.kind not in "fiu":
        raise QuantizeError(f"expected numeric representative data, got dtype {X.dtype}")
    if X.ndim >= 1 and X.shape[1:] == input_shape:
        pass
    elif X.ndim >= 1 and input_shape and input_shape[-1] == 1 and X.shape[1:] == input_shape[:-1]:
        X = X[..., None]
    else:
        raise QuantizeError(
            f"expected representative data of shape (n, {', '.join(map(str, input_shape))}), got {X.shape}"
        )
    if X.shape[0] < MIN_REPRESENTATIVE_SAMPLES:
        raise QuantizeError(
            f"expected at least {MIN_REPRESENTATIVE_SAMPLES} representative spectra (real preprocessed training "
            f"rows), got {X.shape[0]}"
        )
    if not np.isfinite(X).all():
        raise QuantizeError("expected finite representative data, got NaN or inf")
    if X.shape[0] > MAX_REPRESENTATIVE_SAMPLES:
        rows = np.sort(np.random.default_rng(seed).permutation(X.shape[0])[:MAX_REPRESENTATIVE_SAMPLES])
        X = X[rows]
    return np.ascontiguousarray(X, dtype=np.float32)


def _convert_in_process(keras_model: Any, representative: np.ndarray | None) -> bytes:
    """Run the TFLite converter here; int8 when ``representative`` is given, float otherwise."""
    import tensorflow as tf

    from trainer.quant_ranges import int8_converter

    if representative is None:
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    else:
        converter = int8_converter(keras_model, representative)
    with _quiet_converter("TFLite conversion failed"):
        return bytes(converter.convert())


@contextlib.contextmanager
def _quiet_converter(failure: str) -> Iterator[None]:
    """Run the converter with its stdout chatter (export summaries) sent to debug logs, since data goes to stdout,
    and its errors raised as :class:`QuantizeError` starting with ``failure``."""
    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            # Emitted for every int8-input conversion: input statistics come from the representative data.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            yield
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        raise QuantizeError(f"{failure}: {exc}") from exc
    finally:
        for line in chatter.getvalue().splitlines():
            if line.strip():
                log.debug("converter: %s", line)


def _check_result(model_bytes: bytes, *, int8: bool, input_shape: tuple[int, ...]) -> None:
    """Load the converted model with the edge runtime and check its dtypes and input shape."""
    from edge.errors import RuntimeLoadError
    from edge.runtime import ModelRuntime

    try:  # probed in a child first: a model that makes LiteRT abort is refused, the fit lives on
        runtime = ModelRuntime(model_bytes, probe=True)
    except RuntimeLoadError as exc:
        raise QuantizeError(f"the converted model does not load in the edge runtime: {exc}") from exc
    want = np.dtype(np.int8) if int8 else np.dtype(np.float32)
    if runtime.input_dtype != want or runtime.output_dtype != want:
        raise QuantizeError(
            f"expected {want} input and output tensors, got {runtime.input_dtype} input and "
            f"{runtime.output_dtype} output"
        )
    if runtime.input_shape != input_shape:
        raise QuantizeError(f"expected a converted input shape {input_shape}, got {runtime.input_shape}")


def _candidates_in_process(
    keras_model: Any, representative: np.ndarray, all_rows: np.ndarray, int16x8: bool = True, headroom: float = 0.0
) -> list[tuple[str, bytes]]:
    """The plain int8 conversion, the calibration variants of :func:`trainer.quant_ranges.int8_candidates`, then
    the 16-bit-activation conversion of the network with its weights fine-tuned onto their int8 grid on the
    representative rows (:mod:`trainer.weight_rounding`) unless ``int16x8`` is False; each with ``headroom``."""
    from trainer.quant_ranges import WIDE, int8_candidates, int16x8_model, plain_with_headroom
    from trainer.weight_rounding import fine_tune_rounded

    if headroom == 0:
        plain = _convert_in_process(keras_model, representative)
    else:
        with _quiet_converter("TFLite int8 conversion failed"):
            plain = plain_with_headroom(keras_model, representative, headroom)
    with _quiet_converter("TFLite calibration variants failed"):
        variants = int8_candidates(keras_model, all_rows, headroom)
    if not int16x8:
        return [("minmax", plain), *variants]
    tuned, _ = fine_tune_rounded(keras_model, representative)
    try:
        with _quiet_converter("TFLite 16-bit-activation conversion failed"):
            wide = int16x8_model(tuned, all_rows, headroom)
    except QuantizeError as exc:  # an op without 16-bit kernels: the int8 variants still stand
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("%s; %s left out, the int8 variants only", first, WIDE)  # one line: the child forwards lines
        return [("minmax", plain), *variants]
    return [("minmax", plain), *variants, (WIDE, wide)]


class _ChildFormatter(logging.Formatter):
    """A conversion child's log line for its parent: warnings marked as such, the rest as progress."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = _WARNING_PREFIX if record.levelno >= logging.WARNING else _PROGRESS_PREFIX
        return prefix + "child: " + super().format(record)  # the message, and a traceback where there is one


def _convert_in_child(
    keras_model: Any, representative: np.ndarray | None, custom_modules: Sequence[str],
    all_rows: np.ndarray | None = None, int16x8: bool = True, headroom: float = 0.0,
) -> bytes | list[tuple[str, bytes]]:
    """Save the model, convert it in ``python -m trainer.quantize`` and read the result back (every candidate
    when ``all_rows`` is given)."""
    with tempfile.TemporaryDirectory(prefix="spectrolite-quantize-") as tmp:
        tmp_dir = Path(tmp)
        model_path = tmp_dir / "model.keras"
        out_path = tmp_dir / ("candidates" if all_rows is not None else "model.tflite")
        t0 = time.perf_counter()
        keras_model.save(model_path)
        cmd = [sys.executable, "-m", "trainer.quantize", "--model", str(model_path), "--out", str(out_path)]
        if representative is None:
            cmd.append("--float")
        else:
            rep_path = tmp_dir / "representative.npy"
            np.save(rep_path, representative, allow_pickle=False)
            cmd += ["--representative", str(rep_path)]
        if all_rows is not None:
            all_path = tmp_dir / "all_rows.npy"
            np.save(all_path, all_rows, allow_pickle=False)
            cmd += ["--all-rows", str(all_path), "--headroom", repr(float(headroom))]
            cmd += [] if int16x8 else ["--no-int16x8"]
        for module in custom_modules:
            cmd += ["--import", module]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        # Its output is logged at debug level only; C++ errors stay in it for the failure message below.
        cap_tf_log_level(env)
        log.info("converting in a child process (model saved in %.1f s)", time.perf_counter() - t0)
        tail: deque[str] = deque(maxlen=40)
        with _subprocess.Popen(
            cmd, stdout=_subprocess.PIPE, stderr=_subprocess.STDOUT, stdin=_subprocess.DEVNULL, env=env, text=True
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                line = line.rstrip()
                tail.append(line)
                if line.startswith(_PROGRESS_PREFIX):
                    log.info("%s", line[len(_PROGRESS_PREFIX) :])
                elif line.startswith(_WARNING_PREFIX):
                    log.warning("%s", line[len(_WARNING_PREFIX) :])
                else:
                    log.debug("converter: %s", line)
            rc = child.wait()
        if rc != 0 or not out_path.exists():
            raise QuantizeError(
                f"conversion child process exited with status {rc}; last output:\n" + "\n".join(tail)
            )
        if all_rows is not None:
            names = (out_path / _CANDIDATE_LIST).read_text().split()
            return [(name, (out_path / f"{name}.tflite").read_bytes()) for name in names]
        return out_path.read_bytes()


def convert_int8(
    keras_model: Any,
    representative_X: npt.ArrayLike,
    *,
    subprocess: bool = True,
    seed: int = 0,
    custom_modules: Sequence[str] = (),
) -> bytes:
    """Convert a Keras model to a full-integer int8 ``.tflite`` (int8 input and output).

    Parameters
    ----------
    keras_model : keras.Model
        A model with one input of shape ``(None, *input_shape)`` and one output.
    representative_X : ndarray, shape (n, *input_shape), float
        Real preprocessed training spectra (a missing trailing channel axis of size 1 is added). At most
        :data:`MAX_REPRESENTATIVE_SAMPLES` rows, a seeded random subset, are used; at least
        :data:`MIN_REPRESENTATIVE_SAMPLES` are required.
    subprocess : bool, optional
        Convert in a child process (default) so the converter's memory is returned to the system.
    seed : int, optional
        Seed of the representative subset.
    custom_modules : sequence of str, optional
        Modules the child imports before loading the model (where custom Keras layers are registered).

    Returns
    -------
    bytes
        The ``.tflite`` flatbuffer, already checked to load in :class:`edge.runtime.ModelRuntime` with int8
        input and output tensors.

    Raises
    ------
    QuantizeError
        Bad representative data, or the conversion failed.
    """
    input_shape = _model_input_shape(keras_model)
    rep = _prepare_representative(representative_X, input_shape, seed)
    t0 = time.perf_counter()
    log.info(
        "int8 conversion: %d representative spectra of shape %s%s",
        rep.shape[0],
        input_shape,
        " (child process)" if subprocess else "",
    )
    if subprocess:
        model_bytes = _convert_in_child(keras_model, rep, custom_modules)
    else:
        model_bytes = _convert_in_process(keras_model, rep)
    assert isinstance(model_bytes, bytes)
    _check_result(model_bytes, int8=True, input_shape=input_shape)
    log.info("int8 conversion done: %d bytes in %.1f s", len(model_bytes), time.perf_counter() - t0)
    return model_bytes


def convert_int8_candidates(
    keras_model: Any,
    representative_X: npt.ArrayLike,
    all_X: npt.ArrayLike,
    *,
    subprocess: bool = True,
    seed: int = 0,
    custom_modules: Sequence[str] = (),
    int16x8: bool = True,
    headroom: float = 0.0,
) -> list[tuple[str, bytes]]:
    """The int8 conversions of :data:`trainer.quant_ranges.CANDIDATES`, then :data:`~trainer.quant_ranges.WIDE`,
    ``(name, .tflite bytes)`` in that order.

    The first, ``"minmax"``, is exactly :func:`convert_int8` of the same arguments (with ``headroom`` 0); the others
    calibrate on ``all_X`` (every calibration spectrum, never test rows) and choose their ranges as
    :mod:`trainer.quant_ranges` says. Each int8 one is checked to load in the edge runtime with int8 input and
    output; ``int16x8`` (weights fine-tuned onto their int8 grid on ``representative_X``, 16-bit activations) with
    float32 input and output.

    Parameters
    ----------
    keras_model, representative_X, subprocess, seed, custom_modules
        As :func:`convert_int8`.
    all_X : ndarray, shape (m, *input_shape), float
        Preprocessed training and selection spectra (at least :data:`MIN_REPRESENTATIVE_SAMPLES`; a seeded subset
        of :data:`MAX_REPRESENTATIVE_SAMPLES` when more).
    int16x8 : bool, optional
        Build the ``int16x8`` conversion too (default); False: the int8 variants only (``[quantize] int16x8 =
        "never"``).
    headroom : float, optional
        Every int8 range but the input's widened by this fraction of itself
        (:func:`trainer.quant_ranges.with_headroom`, ``[quantize] headroom``); 0 (default): the ranges as
        calibrated. The same for the ``int16x8`` conversion's ranges.
    """
    if not 0.0 <= headroom < math.inf:
        raise QuantizeError(f"expected a finite headroom >= 0 (a fraction of each range), got {headroom}")
    input_shape = _model_input_shape(keras_model)
    rep = _prepare_representative(representative_X, input_shape, seed)
    all_rows = _prepare_representative(all_X, input_shape, seed)
    t0 = time.perf_counter()
    log.info("int8 conversion with calibration variants: %d representative spectra, %d calibration spectra, "
             "headroom %g%s", rep.shape[0], all_rows.shape[0], headroom, " (child process)" if subprocess else "")
    if subprocess:
        result = _convert_in_child(keras_model, rep, custom_modules, all_rows, int16x8, headroom)
        assert isinstance(result, list)
    else:
        result = _candidates_in_process(keras_model, rep, all_rows, int16x8, headroom)
    from trainer.quant_ranges import WIDE

    for name, model_bytes in result:
        _check_result(model_bytes, int8=name != WIDE, input_shape=input_shape)
    log.info("int8 conversion done: %d candidates in %.1f s", len(result), time.perf_counter() - t0)
    return result


def convert_float(keras_model: Any, *, subprocess: bool = False, custom_modules: Sequence[str] = ()) -> bytes:
    """Convert a Keras model to a float32 ``.tflite`` (no quantisation), the reference for int8 parity.

    Parameters
    ----------
    keras_model : keras.Model
        A model with one input and one output.
    subprocess : bool, optional
        Convert in a child process (default False).
    custom_modules : sequence of str, optional
        Modules the child imports before loading the model.

    Returns
    -------
    bytes
        The ``.tflite`` flatbuffer with float32 input and output.
    """
    input_shape = _model_input_shape(keras_model)
    t0 = time.perf_counter()
    log.info("float conversion of a model with input shape %s", input_shape)
    if subprocess:
        model_bytes = _convert_in_child(keras_model, None, custom_modules)
    else:
        model_bytes = _convert_in_process(keras_model, None)
    assert isinstance(model_bytes, bytes)
    _check_result(model_bytes, int8=False, input_shape=input_shape)
    log.info("float conversion done: %d bytes in %.1f s", len(model_bytes), time.perf_counter() - t0)
    return model_bytes


def main(argv: Sequence[str] | None = None) -> int:
    """Child-process entry point: convert a saved ``.keras`` model and write the ``.tflite`` file."""
    parser = argparse.ArgumentParser(prog="python -m trainer.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="saved .keras model")
    parser.add_argument("--out", required=True, help="output .tflite path")
    parser.add_argument("--representative", help=".npy of real preprocessed training spectra (int8 conversion)")
    parser.add_argument("--float", action="store_true", help="float32 conversion (no representative data)")
    parser.add_argument("--all-rows", help=".npy of every calibration spectrum: write each int8 calibration variant "
                        "into the folder --out")
    parser.add_argument("--no-int16x8", action="store_true", help="with --all-rows: the int8 variants only")
    parser.add_argument("--headroom", type=float, default=0.0,
                        help="with --all-rows: widen every range but the input's by this fraction (default 0)")
    parser.add_argument("--import", dest="imports", action="append", default=[], help="module to import first")
    args = parser.parse_args(argv)
    if args.float == bool(args.representative):
        parser.error("give exactly one of --representative or --float")
    if args.all_rows and not args.representative:
        parser.error("--all-rows needs --representative")
    if args.headroom and not args.all_rows:
        parser.error("--headroom needs --all-rows")
    if not 0.0 <= args.headroom < math.inf:
        parser.error(f"--headroom: expected a finite number >= 0, got {args.headroom}")

    def progress(message: str) -> None:
        print(_PROGRESS_PREFIX + message, flush=True)

    # The trainer's own log lines (the weights' fine-tuning, a left-out conversion) reach the parent's log.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ChildFormatter())
    # Run as ``python -m trainer.quantize`` this module's own logger is ``__main__``, outside ``trainer``.
    for name in ("trainer", __name__):
        trainer_log = logging.getLogger(name)
        trainer_log.addHandler(handler)
        trainer_log.setLevel(logging.INFO)

    for module in args.imports:
        importlib.import_module(module)
    t0 = time.perf_counter()
    import keras

    progress(f"child: loading {Path(args.model).name}")
    model = keras.models.load_model(args.model, compile=False)
    rep = None
    if args.representative:
        rep = np.load(args.representative, allow_pickle=False)
        progress(f"child: calibrating on {rep.shape[0]} representative spectra")
    try:
        if args.all_rows:
            assert rep is not None
            all_rows = np.load(args.all_rows, allow_pickle=False)
            progress(f"child: calibration variants on {all_rows.shape[0]} calibration spectra")
            candidates = _candidates_in_process(model, rep, all_rows, not args.no_int16x8, args.headroom)
        else:
            model_bytes = _convert_in_process(model, rep)
    except QuantizeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    if args.all_rows:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in candidates:
            (out_dir / f"{name}.tflite").write_bytes(data)
        (out_dir / _CANDIDATE_LIST).write_text("\n".join(name for name, _ in candidates) + "\n")
        progress(f"child: wrote {len(candidates)} candidates in {time.perf_counter() - t0:.1f} s")
        return 0
    tmp_out = Path(args.out + ".part")
    tmp_out.write_bytes(model_bytes)
    os.replace(tmp_out, args.out)
    progress(f"child: wrote {len(model_bytes)} bytes in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through convert_int8(subprocess=True)
    sys.exit(main())
