"""Tests of the weights fine-tuned onto the int8 grid (trainer.weight_rounding) and of the 16-bit-activation
conversion built on them (trainer.quant_ranges.int16x8_model): real Keras model -> real .tflite -> real LiteRT."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.runtime import ModelRuntime
from trainer.models import CNNConfig, build_cnn
from trainer.quant_ranges import int16x8_model, output_scale
from trainer.weight_rounding import MAX_ROWS, _weighted_layers, fine_tune_rounded, round_per_channel


@pytest.fixture(scope="module")
def network() -> tuple[Any, np.ndarray]:
    """A trunk with batch normalisation (folded into the kernels by the converter), a hidden Dense layer and two
    outputs, trained a few epochs on smooth synthetic spectra."""
    import keras

    rng = np.random.default_rng(3)
    n, channels = 160, 64
    grid = np.linspace(0, 1, channels)
    conc = rng.uniform(0, 1, (n, 2))
    X = conc[:, :1] * np.exp(-((grid - 0.3) / 0.08) ** 2) + conc[:, 1:] * np.exp(-((grid - 0.7) / 0.1) ** 2)
    X = (X + rng.normal(0, 0.01, X.shape) - X.mean(0)) / X.std(0)
    keras.utils.set_random_seed(0)
    cfg = CNNConfig(filters=(4, 8), kernel_sizes=(7, 5), strides=(2, 2), dense_units=(8,), dropout=0.0, l2=0.0,
                    batch_norm=True)
    model = build_cnn((channels, 1), cfg, n_outputs=2, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    Xf = X[..., None].astype(np.float32)
    model.fit(Xf, (conc - 0.5) / 0.3, epochs=15, batch_size=32, verbose=0)
    return model, Xf


def _folded(layer: Any, factor: np.ndarray) -> np.ndarray:
    return np.asarray(layer.kernel.numpy(), dtype=np.float64) * factor


def test_round_per_channel_puts_each_output_channel_on_its_own_grid() -> None:
    w = np.array([[0.5, -0.02], [-1.27, 0.01], [0.3, 0.0]])
    r = round_per_channel(w)
    s = np.array([1.27, 0.02]) / 127
    np.testing.assert_allclose(r / s, np.rint(r / s), atol=1e-6)
    assert np.max(np.abs(r), axis=0) == pytest.approx([1.27, 0.02])
    assert np.array_equal(round_per_channel(np.zeros((3, 2))), np.zeros((3, 2)))


def test_fine_tuned_kernels_lie_on_the_int8_grid_and_stay_closer_than_plain_rounding(
    network: tuple[Any, np.ndarray],
) -> None:
    model, X = network
    before = [np.asarray(w).copy() for w in model.get_weights()]
    tuned, info = fine_tune_rounded(model, X[:120], epochs=8)
    # the network itself is untouched
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.get_weights()))
    layers = _weighted_layers(tuned)
    assert len(layers) == 4  # two convolutions, the hidden Dense layer and the output
    assert any(not np.allclose(f, 1.0) for _, f in layers)  # the batch norms' factors are folded in
    for layer, factor in layers:
        w = _folded(layer, factor)
        s = np.max(np.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True) / 127
        np.testing.assert_allclose(w / s, np.rint(w / s), atol=1e-3, err_msg=layer.name)
    assert info["rms_tuned"] <= info["rms_rounded"]
    assert 0 <= info["best_epoch"] <= info["epochs"] == 8
    got = np.sqrt(np.mean((tuned.predict(X[:120], verbose=0) - model.predict(X[:120], verbose=0)) ** 2))
    assert got == pytest.approx(info["rms_tuned"], rel=1e-4)


def test_fine_tuning_uses_at_most_max_rows_spectra(network: tuple[Any, np.ndarray]) -> None:
    model, X = network
    many = np.concatenate([X, X[: MAX_ROWS + 10 - X.shape[0]]])
    _, info = fine_tune_rounded(model, many, epochs=1)
    assert many.shape[0] > MAX_ROWS and info["rows"] == MAX_ROWS
    _, info = fine_tune_rounded(model, X[:50], epochs=1)
    assert info["rows"] == 50


def test_the_converter_keeps_the_fine_tuned_weights_exactly(network: tuple[Any, np.ndarray]) -> None:
    """The int16x8 model's int8 weights, dequantised, are the fine-tuned (folded) kernels: the converter's own
    rounding finds them on its grid and changes nothing."""
    from ai_edge_litert.interpreter import Interpreter

    model, X = network
    tuned, _ = fine_tune_rounded(model, X[:120], epochs=2)
    tflite = int16x8_model(tuned, X)
    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    stored = []
    for t in interp.get_tensor_details():
        q = t["quantization_parameters"]
        if t["dtype"] == np.int8 and len(q["scales"]) > 1:
            w = interp.get_tensor(t["index"]).astype(np.float64)
            scales = q["scales"].reshape((-1,) + (1,) * (w.ndim - 1))  # output channel first in TFLite
            stored.append(np.sort((w * scales).ravel()))
    want = [np.sort(_folded(layer, f).ravel()) for layer, f in _weighted_layers(tuned)]
    assert len(stored) == len(want)
    for w in want:
        match = [s for s in stored if s.shape == w.shape]
        assert any(np.allclose(s, w, rtol=1e-5, atol=1e-7) for s in match)


def test_int16x8_model_runs_in_the_edge_runtime_with_float_tensors(network: tuple[Any, np.ndarray]) -> None:
    model, X = network
    tuned, _ = fine_tune_rounded(model, X[:120], epochs=4)
    tflite = int16x8_model(tuned, X)
    rt = ModelRuntime(tflite)
    assert rt.input_dtype == np.float32 and rt.output_dtype == np.float32 and rt.output_step is None
    scale = output_scale(tflite)
    assert scale is not None and 0 < scale < 1e-3  # 16-bit output step of a few standard deviations' range
    out = np.asarray(rt.predict(X[120:, :, 0]), dtype=np.float64)
    ref = tuned.predict(X[120:], verbose=0)
    assert np.sqrt(np.mean((out - ref) ** 2)) < 0.01
