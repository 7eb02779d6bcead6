"""Tests of trainer.quantize: real Keras model -> real full-integer int8 / float .tflite -> real LiteRT."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.runtime import ModelRuntime
from tests.support.bundles import SEED, TinyModels, tiny_models
from trainer.errors import TrainerError
from trainer.quantize import MIN_REPRESENTATIVE_SAMPLES, QuantizeError, convert_int8

#: The child-process conversion and the in-process one calibrate on the same rows: their predictions agree to
#: within this many output LSBs (the flatbuffers may differ in names/metadata only).
CHILD_VS_INPROCESS_MAX_LSB = 1.0
#: A model calibrated on random data instead of real spectra is at least this much worse (RMSEP ratio).
RANDOM_CALIBRATION_MIN_PENALTY = 1.0


@pytest.fixture(scope="module")
def models(datasets_dir: Path) -> TinyModels:
    return tiny_models(datasets_dir)


def test_int8_conversion_is_full_integer(models: TinyModels) -> None:
    rt = ModelRuntime(models.int8_bytes)
    assert rt.input_dtype == np.int8 and rt.output_dtype == np.int8
    assert rt.input_shape == (models.X_pre_train.shape[1], 1)
    # every tensor of the graph except the dequantised float weights is integer: no float ops remain
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=models.int8_bytes)
    interp.allocate_tensors()
    op_names = {op["op_name"] for op in interp._get_ops_details()}
    assert "DEQUANTIZE" not in op_names and "QUANTIZE" not in op_names, op_names


def test_float_conversion_keeps_float_io(models: TinyModels) -> None:
    rt = ModelRuntime(models.float_bytes)
    assert rt.input_dtype == np.float32 and rt.output_dtype == np.float32


def test_representative_data_is_validated(models: TinyModels) -> None:
    m = models.keras_model
    with pytest.raises(QuantizeError, match=f"at least {MIN_REPRESENTATIVE_SAMPLES} representative"):
        convert_int8(m, models.X_pre_train[:3], subprocess=False)
    with pytest.raises(QuantizeError, match=r"expected representative data of shape \(n, 650, 1\)"):
        convert_int8(m, models.X_pre_train[:, :100], subprocess=False)
    bad = models.X_pre_train[:50].copy()
    bad[4, 7] = np.nan
    with pytest.raises(QuantizeError, match="finite"):
        convert_int8(m, bad, subprocess=False)
    assert issubclass(QuantizeError, TrainerError)


def test_real_representative_data_beats_random_calibration(models: TinyModels) -> None:
    """Why the representative set must be real spectra: random data sets wrong activation ranges."""
    rng = np.random.default_rng(SEED)
    fake = rng.uniform(-0.01, 0.01, size=(100, models.X_pre_train.shape[1]))
    fake_bytes = convert_int8(models.keras_model, fake, subprocess=False)
    real = ModelRuntime(models.int8_bytes).predict(models.X_pre_test)[:, 0]
    rand = ModelRuntime(fake_bytes).predict(models.X_pre_test)[:, 0]
    rmsep_real = float(np.sqrt(np.mean((real - models.y_test) ** 2)))
    rmsep_rand = float(np.sqrt(np.mean((rand - models.y_test) ** 2)))
    assert rmsep_rand > rmsep_real * RANDOM_CALIBRATION_MIN_PENALTY


@pytest.mark.slow
def test_child_process_conversion_matches_in_process(models: TinyModels, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trainer.quantize"):
        child_bytes = convert_int8(models.keras_model, models.X_pre_train, subprocess=True, seed=SEED)
    messages = [r.getMessage() for r in caplog.records]
    assert any("child process" in msg for msg in messages)
    assert any(msg.startswith("child: wrote") for msg in messages), messages
    a = ModelRuntime(child_bytes)
    b = ModelRuntime(models.int8_bytes)
    assert a.input_quantization == b.input_quantization
    assert a.output_quantization == b.output_quantization
    diff = np.abs(a.predict(models.X_pre_test) - b.predict(models.X_pre_test))
    assert float(diff.max()) <= CHILD_VS_INPROCESS_MAX_LSB * a.output_quantization[0]


def test_child_entry_point_rejects_ambiguous_arguments(repo_root: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trainer.quantize", "--model", "m.keras", "--out", str(tmp_path / "o.tflite")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "exactly one of --representative or --float" in out.stderr


def test_child_failure_is_a_quantize_error(models: TinyModels) -> None:
    """A child that dies (here: a module to import that does not exist) surfaces as a QuantizeError."""
    with pytest.raises(QuantizeError, match="child process exited with status"):
        convert_int8(
            models.keras_model,
            models.X_pre_train[:20],
            subprocess=True,
            custom_modules=("spectrolite_no_such_module",),
        )


def test_a_conversion_childs_warning_is_marked_for_the_parent_to_log_as_one() -> None:
    """The child prints its log lines for the parent to read: a warning (int16x8 left out) carries its own prefix,
    so the parent logs it as a warning (and the fit's metrics.json ``warnings`` collects it), not as progress."""
    from trainer.quantize import _PROGRESS_PREFIX, _WARNING_PREFIX, _ChildFormatter

    def line(level: int) -> str:
        return _ChildFormatter().format(logging.LogRecord("trainer.quantize", level, __file__, 1, "x %s", ("y",),
                                                          None))

    assert line(logging.WARNING) == _WARNING_PREFIX + "child: x y"
    assert line(logging.INFO) == _PROGRESS_PREFIX + "child: x y"
    assert not _WARNING_PREFIX.startswith(_PROGRESS_PREFIX) and not _PROGRESS_PREFIX.startswith(_WARNING_PREFIX)
