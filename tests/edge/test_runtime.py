"""Tests of edge.runtime: runtime discovery, int8 quantise/invoke/dequantise on a real model run by real LiteRT.

The models are the trainer's conversions committed in tests/data/trained (no TensorFlow here); that the float
conversion reproduces Keras is tests/integration/test_trainer_edge_parity.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from edge.errors import InputContractError, RuntimeLoadError
from edge.runtime import RUNTIME_CANDIDATES, ModelRuntime, load_interpreter_class
from tests.support.trained import TabletModels, committed, tablet_models

#: int8 and float models of the same network may differ by this many output LSBs on real test spectra
#: (rounding of 650 quantised inputs and of every activation; measured: under 1 LSB).
INT8_FLOAT_MAX_LSB = 3.0
#: ... and their RMSEP against the reference values by at most this fraction.
INT8_FLOAT_RMSEP_REL = 0.03


@pytest.fixture(scope="module")
def models(datasets_dir: Path) -> TabletModels:
    return tablet_models(datasets_dir)


@pytest.fixture(scope="module")
def int8_rt(models: TabletModels) -> ModelRuntime:
    return ModelRuntime(models.int8_bytes)


@pytest.fixture(scope="module")
def float_rt(models: TabletModels) -> ModelRuntime:
    return ModelRuntime(models.float_bytes)


def test_prefers_litert_and_reports_name_and_version() -> None:
    info = load_interpreter_class()
    assert info.name == "ai_edge_litert"
    assert info.version == metadata.version("ai-edge-litert")
    assert info.description == f"ai_edge_litert {info.version}"
    assert RUNTIME_CANDIDATES[0][0] == "ai_edge_litert.interpreter"
    assert [c[0] for c in RUNTIME_CANDIDATES] == [
        "ai_edge_litert.interpreter",
        "tflite_runtime.interpreter",
        "tensorflow.lite",
    ]


def test_falls_back_to_the_next_candidate() -> None:
    info = load_interpreter_class(
        (("spectrolite_no_such_module.interpreter", "Interpreter", "nope"), RUNTIME_CANDIDATES[0])
    )
    assert info.name == "ai_edge_litert"


def test_no_runtime_is_a_clear_runtime_load_error() -> None:
    with pytest.raises(RuntimeLoadError, match="no TFLite runtime found.*spectrolite_no_such_module"):
        load_interpreter_class((("spectrolite_no_such_module.interpreter", "Interpreter", "nope"),))


@pytest.mark.parametrize("bad", [b"", b"not a flatbuffer at all", b"\x00" * 64])
def test_invalid_model_bytes_raise_runtime_load_error(bad: bytes) -> None:
    with pytest.raises(RuntimeLoadError):
        ModelRuntime(bad)


def test_truncated_model_raises_runtime_load_error(models: TabletModels) -> None:
    with pytest.raises(RuntimeLoadError):
        ModelRuntime(models.int8_bytes[: len(models.int8_bytes) // 3])


def test_non_bytes_and_bad_threads_are_refused(models: TabletModels) -> None:
    with pytest.raises(RuntimeLoadError, match="expected the model as bytes"):
        ModelRuntime("model.tflite")  # type: ignore[arg-type]  # deliberately the wrong type
    with pytest.raises(RuntimeLoadError, match="num_threads"):
        ModelRuntime(models.int8_bytes, num_threads=0)


def test_int8_model_reports_shapes_dtypes_and_tensor_quantization(models: TabletModels, int8_rt: ModelRuntime) -> None:
    assert int8_rt.runtime_name == "ai_edge_litert"
    assert int8_rt.is_quantized
    assert int8_rt.input_shape == (models.X_pre_test.shape[1], 1)
    assert int8_rt.output_shape == (1,)
    assert int8_rt.input_dtype == np.int8 and int8_rt.output_dtype == np.int8
    # Scale and zero point are exactly those of the model's own tensors.
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=models.int8_bytes)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    (out,) = interp.get_output_details()
    assert int8_rt.input_quantization == (
        float(inp["quantization_parameters"]["scales"][0]),
        int(inp["quantization_parameters"]["zero_points"][0]),
    )
    assert int8_rt.output_quantization == (
        float(out["quantization_parameters"]["scales"][0]),
        int(out["quantization_parameters"]["zero_points"][0]),
    )
    assert "int8" in repr(int8_rt)


def test_split_stages_compose_to_predict_and_match_the_formulas(models: TabletModels, int8_rt: ModelRuntime) -> None:
    x = models.X_pre_test[0]
    scale, zp = int8_rt.input_quantization
    q = int8_rt.quantize(x).copy()
    expected_q = np.clip(np.rint(x * (1.0 / scale)) + zp, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(q.reshape(-1), expected_q)
    raw = int8_rt.invoke_quantized(q).copy()
    oscale, ozp = int8_rt.output_quantization
    y = int8_rt.dequantize(raw)
    np.testing.assert_array_equal(y, (raw.astype(np.float32) - np.float32(ozp)) * np.float32(oscale))
    np.testing.assert_array_equal(int8_rt.predict(x), y)


def test_quantize_saturates_out_of_range_values(int8_rt: ModelRuntime) -> None:
    x = np.zeros(int8_rt.input_shape)
    x[0] = 1e9
    x[1] = -1e9
    q = int8_rt.quantize(x)
    assert q.reshape(-1)[0] == 127 and q.reshape(-1)[1] == -128


def test_single_and_batch_agree_bitwise(models: TabletModels, int8_rt: ModelRuntime) -> None:
    X = models.X_pre_test[:7]
    batch = int8_rt.predict(X)
    assert batch.shape == (7, 1) and batch.dtype == np.float32
    singles = np.stack([int8_rt.predict(x) for x in X])
    np.testing.assert_array_equal(batch, singles)
    # with the explicit trailing channel axis too
    np.testing.assert_array_equal(int8_rt.predict(X[..., None]), batch)
    np.testing.assert_array_equal(int8_rt.predict(X[0][:, None]), batch[0])


def test_thread_count_does_not_change_int8_results(models: TabletModels, int8_rt: ModelRuntime) -> None:
    rt2 = ModelRuntime(models.int8_bytes, num_threads=2)
    assert rt2.num_threads == 2
    np.testing.assert_array_equal(rt2.predict(models.X_pre_test[:20]), int8_rt.predict(models.X_pre_test[:20]))


def test_predict_returns_fresh_arrays(models: TabletModels, int8_rt: ModelRuntime) -> None:
    first = int8_rt.predict(models.X_pre_test[0])
    kept = first.copy()
    int8_rt.predict(models.X_pre_test[1])
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("shape", [(649,), (650, 2), (3, 649), (2, 3, 650)])
def test_wrong_shapes_are_input_contract_errors(int8_rt: ModelRuntime, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputContractError, match=r"expected model input of shape \(650, 1\)"):
        int8_rt.predict(np.zeros(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused(int8_rt: ModelRuntime, bad: float) -> None:
    x = np.zeros(int8_rt.input_shape)
    x[3] = bad
    with pytest.raises(InputContractError, match="finite"):
        int8_rt.predict(x)


def test_invoke_quantized_refuses_float_input(int8_rt: ModelRuntime) -> None:
    with pytest.raises(InputContractError, match="expected int8 input"):
        int8_rt.invoke_quantized(np.zeros(int8_rt.input_shape, dtype=np.float32))


def test_float_model_passes_floats_through(models: TabletModels, float_rt: ModelRuntime) -> None:
    assert not float_rt.is_quantized
    assert float_rt.input_quantization == (0.0, 0) and float_rt.output_quantization == (0.0, 0)
    got = float_rt.predict(models.X_pre_test)
    # the split stages pass floats through unchanged
    q = float_rt.quantize(models.X_pre_test[0])
    assert q.dtype == np.float32
    np.testing.assert_array_equal(float_rt.dequantize(float_rt.invoke_quantized(q)), got[0])


def test_int8_vs_float_parity_on_real_spectra(
    models: TabletModels, int8_rt: ModelRuntime, float_rt: ModelRuntime
) -> None:
    p8 = int8_rt.predict(models.X_pre_test)[:, 0].astype(np.float64)
    pf = float_rt.predict(models.X_pre_test)[:, 0].astype(np.float64)
    scale, _ = int8_rt.output_quantization
    assert np.max(np.abs(p8 - pf)) <= INT8_FLOAT_MAX_LSB * scale
    rmsep8 = float(np.sqrt(np.mean((p8 - models.y_test) ** 2)))
    rmsepf = float(np.sqrt(np.mean((pf - models.y_test) ** 2)))
    assert rmsep8 <= rmsepf * (1 + INT8_FLOAT_RMSEP_REL)
    # and the model learned something: better than predicting the training mean
    assert rmsepf < float(np.std(models.y_test))


def test_classification_int8_outputs_probabilities(models: TabletModels) -> None:
    rt = ModelRuntime(models.class_int8_bytes)
    p = rt.predict(models.X_pre_test[:20])
    assert p.shape == (20, 2)
    assert np.all(p >= 0) and np.all(p <= 1.0 + 1e-6)
    scale, _ = rt.output_quantization
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=2 * 2 * scale)


def test_runtime_with_a_model_loads_no_tensorflow(models: TabletModels, tmp_path: Path, repo_root: Path) -> None:
    model_path = tmp_path / "m.tflite"
    model_path.write_bytes(models.int8_bytes)
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import edge.runtime as r
        rt = r.ModelRuntime(open({str(model_path)!r}, "rb").read())
        rt.predict(np.zeros(rt.input_shape))
        heavy = sorted(m for m in ("tensorflow", "keras", "sklearn", "scipy") if m in sys.modules)
        print(rt.runtime_name, heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "ai_edge_litert []"


def test_arithmetic_names_what_each_committed_model_computes_in(int8_rt: ModelRuntime, float_rt: ModelRuntime) -> None:
    """``check`` and the latency JSON name the arithmetic: the trainer's int16x8 CNN has float32 input and output
    tensors like a float model, yet computes in 16-bit activations; it must not be reported as a float model."""
    from edge.bundle.loader import load_bundle
    from tests.support.trained import DEMO_CNN, DEMO_V1

    assert int8_rt.arithmetic == "int8"
    assert float_rt.arithmetic == "float32"
    cnn = load_bundle(committed(DEMO_CNN), self_test=False)  # the demo --model cnn bundle: an int16x8 conversion
    assert not cnn.runtime.is_quantized
    assert cnn.runtime.arithmetic == "int16x8"
    assert "int16x8 model" in cnn.describe()
    pls = load_bundle(committed(DEMO_V1), self_test=False)  # PLS, a float32 dense layer
    assert pls.runtime.arithmetic == "float32"
