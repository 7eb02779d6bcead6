"""The edge runtime against the trainer in the same process: the float ``.tflite`` that trainer.quantize converts
reproduces the Keras model it came from (moved here from tests/edge/test_runtime.py: it needs Keras)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.runtime import ModelRuntime
from tests.support.bundles import TinyModels, tiny_models

#: The float .tflite reproduces Keras to float32 rounding (relative to the target's magnitude).
FLOAT_TFLITE_VS_KERAS_RTOL = 1e-5


@pytest.fixture(scope="module")
def models(datasets_dir: Path) -> TinyModels:
    return tiny_models(datasets_dir)


def test_float_model_matches_keras(models: TinyModels) -> None:
    float_rt = ModelRuntime(models.float_bytes)
    assert not float_rt.is_quantized
    assert float_rt.input_quantization == (0.0, 0) and float_rt.output_quantization == (0.0, 0)
    got = float_rt.predict(models.X_pre_test)
    want = models.keras_model.predict(models.X_pre_test[..., None], verbose=0)
    np.testing.assert_allclose(got, want, rtol=FLOAT_TFLITE_VS_KERAS_RTOL)
    # the split stages pass floats through unchanged
    q = float_rt.quantize(models.X_pre_test[0])
    assert q.dtype == np.float32
    np.testing.assert_array_equal(float_rt.dequantize(float_rt.invoke_quantized(q)), got[0])
