"""Tests of trainer.models: a tiny CNN learns synthetic spectra, is deterministic for a seed, ensembles average in
one graph, the target scaling is folded into the output, and the model survives full-integer int8 conversion."""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pytest

from trainer.errors import TrainConfigError
from trainer.models import CNNConfig, build_cnn, train_cnn

N_CHANNELS = 64
# A trained tiny CNN must explain most of the target variance: RMSE below this fraction of the target's SD.
MAX_RMSE_FRACTION = 0.35
# int8 output vs float output of the same model, as a fraction of the target's SD.
INT8_PARITY_FRACTION = 0.05
MIN_ACCURACY = 0.9

TINY = CNNConfig(filters=(4,), kernel_sizes=(7,), strides=(4,), dense_units=(), dropout=0.0, l2=1e-4,
                 batch_norm=False, learning_rate=1e-2, lr_schedule="cosine", epochs=40, batch_size=32,
                 restore_best=False, log_every=20)
# restore_best=False above; the classification test checks that selection rows pick the kept epoch.


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Beer-Lambert-like spectra: two bands whose heights are the two targets, a random baseline, noise."""
    rng = np.random.default_rng(seed)
    ch = np.linspace(0.0, 1.0, N_CHANNELS)
    bands = np.stack([np.exp(-((ch - 0.3) ** 2) / 0.005), np.exp(-((ch - 0.7) ** 2) / 0.008)])
    c = rng.uniform(0.0, 1.0, size=(n, 2))
    X = c @ bands + rng.normal(0.0, 0.05, size=(n, 1)) + rng.normal(0.0, 0.01, size=(n, N_CHANNELS))
    y = np.column_stack([150.0 + 80.0 * c[:, 0], 5.0 + 2.0 * c[:, 1]])
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, ...]:
    X, y = _synthetic(300, seed=0)
    Xs, ys = _synthetic(60, seed=1)
    return X, y, Xs, ys


@pytest.fixture(scope="module")
def trained(data: tuple[np.ndarray, ...]):  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    X, y, Xs, ys = data
    return train_cnn(X, y[:, 0], Xs, ys[:, 0], config=TINY, seed=3)


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_tiny_cnn_learns_a_band_in_reference_units(trained, data) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    _, y, Xs, ys = data
    pred = np.asarray(trained.model.predict(Xs, verbose=0)).ravel()
    rmse = float(np.sqrt(np.mean((pred - ys[:, 0]) ** 2)))
    assert rmse < MAX_RMSE_FRACTION * ys[:, 0].std()
    # The standardisation is folded into the output layer: predictions come out in reference units.
    assert abs(pred.mean() - ys[:, 0].mean()) < 0.5 * ys[:, 0].std()
    assert trained.y_mean.shape == (1,) and trained.y_scale[0] == pytest.approx(y[:, 0].std())
    assert trained.epochs_run == TINY.epochs and 1 <= trained.best_epoch <= TINY.epochs
    assert len(trained.history["loss"]) == TINY.epochs and "val_loss" in trained.history
    assert trained.train_seconds > 0 and trained.n_params == trained.model.count_params()
    # The fine-tuning loss is the training loss on standardised units times y_scale ** 2 (MSE here).
    y_pred = pred[:8].reshape(-1, 1).astype(np.float32)
    y_true = ys[:8, :1].astype(np.float32)
    expected = np.mean((y_true - y_pred) ** 2)
    assert float(trained.fine_tune_loss()(y_true, y_pred)) == pytest.approx(expected, rel=1e-4)
    huber = dataclasses.replace(trained, config=dataclasses.replace(TINY, loss="huber", huber_delta=0.01))
    r = (y_true - y_pred) / trained.y_scale[0]
    standard = np.where(np.abs(r) <= 0.01, 0.5 * r ** 2, 0.01 * (np.abs(r) - 0.005))
    assert float(huber.fine_tune_loss()(y_true, y_pred)) == pytest.approx(
        np.mean(standard) * trained.y_scale[0] ** 2, rel=1e-4)


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_same_seed_gives_identical_weights(data) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    X, y, Xs, ys = data
    cfg = dataclasses.replace(TINY, epochs=3, dropout=0.2, dense_units=(8,), ensemble_size=2)
    first = train_cnn(X, y[:, 0], Xs, ys[:, 0], config=cfg, seed=3)
    again = train_cnn(X, y[:, 0], Xs, ys[:, 0], config=cfg, seed=3)
    for a, b in zip(first.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = train_cnn(X, y[:, 0], Xs, ys[:, 0], config=cfg, seed=4)
    assert any(not np.array_equal(a, b) for a, b in zip(first.model.get_weights(), other.model.get_weights()))


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_max_steps_caps_the_epochs_of_a_large_training_set(data, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    import keras

    X, y, _, _ = data  # 300 rows in batches of 32: 10 steps an epoch
    capped = dataclasses.replace(TINY, epochs=40, max_steps=35)
    decay: list[int] = []
    cosine = keras.optimizers.schedules.CosineDecay

    class Recorded(cosine):  # type: ignore[misc,valid-type]  # keras is untyped
        def __init__(self, *args: object, **kwargs: object) -> None:
            decay.append(int(kwargs["decay_steps"]))  # type: ignore[call-overload]  # an int, as train_cnn passes
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(keras.optimizers.schedules, "CosineDecay", Recorded)
    with caplog.at_level(logging.INFO, logger="trainer.models"):
        fit = train_cnn(X, y[:, 0], None, None, config=capped, seed=3)
    assert fit.epochs_run == 3 and len(fit.history["loss"]) == 3
    assert "cnn: 40 epochs capped to 3 by max_steps 35" in caplog.text
    # The cosine schedule decays over the epochs that run, not the configured ones; the progress says 3, not 40.
    assert decay == [30] and "cnn epoch 3/3 (1 member)" in caplog.text
    # Without the cap every epoch runs; a cap the epochs never reach changes nothing.
    for cfg in (dataclasses.replace(TINY, epochs=4, max_steps=None), dataclasses.replace(TINY, epochs=4, max_steps=40)):
        assert train_cnn(X, y[:, 0], None, None, config=cfg, seed=3).epochs_run == 4


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_max_gmac_caps_the_epochs_of_a_dear_network(data, caplog) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    from trainer.fitting import forward_macs
    from trainer.models import build_cnn

    X, y, _, _ = data  # 300 rows in batches of 32: 10 steps an epoch
    cfg = dataclasses.replace(TINY, epochs=40, ensemble_size=2)
    step_macs = 32 * 2 * forward_macs(build_cnn((X.shape[1],), cfg, n_outputs=1, seed=0, name="m"))
    capped = dataclasses.replace(cfg, max_gmac=35.5 * step_macs / 1e9)  # the work of 35 steps
    with caplog.at_level(logging.INFO, logger="trainer.models"):
        fit = train_cnn(X, y[:, 0], None, None, config=capped, seed=3)
    assert fit.epochs_run == 3
    assert f"cnn: 40 epochs capped to 3 by max_gmac {capped.max_gmac:g} ({step_macs / 1e6:.1f} M multiply-" \
           "accumulates a step)" in caplog.text
    # Where max_steps is the tighter cap, the log names it.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trainer.models"):
        train_cnn(X, y[:, 0], None, None, config=dataclasses.replace(capped, epochs=4, max_steps=15), seed=3)
    assert "cnn: 4 epochs capped to 1 by max_steps 15" in caplog.text


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_ensemble_is_one_model_averaging_its_members(data) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    X, y, Xs, _ = data
    cfg = dataclasses.replace(TINY, ensemble_size=3, epochs=10)
    res = train_cnn(X, y, None, None, config=cfg, seed=0)  # two targets, fixed epochs
    model = res.model
    members = [layer for layer in model.layers if layer.name.startswith("cnn")]
    assert len(members) == 3
    out = np.asarray(model.predict(Xs, verbose=0))
    assert out.shape == (len(Xs), 2)
    mean = np.mean([np.asarray(m.predict(Xs, verbose=0)) for m in members], axis=0)
    np.testing.assert_allclose(out, mean, rtol=1e-5, atol=1e-4)
    assert res.best_epoch == cfg.epochs and "val_loss" not in res.history


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_classification_softmax(data) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    X, y, Xs, ys = data
    labels = (y[:, 0] > np.median(y[:, 0])).astype(int)
    labels_s = (ys[:, 0] > np.median(y[:, 0])).astype(int)
    cfg = dataclasses.replace(TINY, task="classification", ensemble_size=2, epochs=20, restore_best=True)
    res = train_cnn(X, labels, Xs, labels_s, config=cfg, seed=0)
    proba = np.asarray(res.model.predict(Xs, verbose=0))
    assert proba.shape == (len(Xs), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba.argmax(axis=1) == labels_s).mean() >= MIN_ACCURACY
    best = int(np.argmin(res.history["val_loss"])) + 1
    assert res.best_epoch == best


def test_stacked_channels_input_shape() -> None:
    model = build_cnn((50, 3), TINY, n_outputs=1, seed=0)
    assert model.input_shape == (None, 50, 3) and model.output_shape == (None, 1)
    flat = build_cnn((50,), dataclasses.replace(TINY, batch_norm=True, dense_units=(8,), dropout=0.2),
                     n_outputs=2, seed=0)
    assert flat.input_shape == (None, 50) and flat.output_shape == (None, 2)


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_int8_model_keeps_the_target_range(trained, data) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    tf = pytest.importorskip("tensorflow")
    from ai_edge_litert.interpreter import Interpreter

    X, _, Xs, ys = data
    conv = tf.lite.TFLiteConverter.from_keras_model(trained.model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([X[i:i + 1]] for i in range(100))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    interp = Interpreter(model_content=conv.convert())
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    preds = []
    for row in Xs:
        interp.set_tensor(inp["index"], np.clip(np.round(row / s_in + z_in), -128, 127).astype(np.int8)[None])
        interp.invoke()
        preds.append((interp.get_tensor(out["index"]).astype(np.float64) - z_out) * s_out)
    pred_q = np.concatenate(preds).ravel()
    pred_f = np.asarray(trained.model.predict(Xs, verbose=0)).ravel()
    assert np.sqrt(np.mean((pred_q - pred_f) ** 2)) < INT8_PARITY_FRACTION * ys[:, 0].std()


def test_config_errors() -> None:
    with pytest.raises(TrainConfigError, match="equal lengths"):
        CNNConfig(filters=(4, 8), kernel_sizes=(3,), strides=(1, 1))
    with pytest.raises(TrainConfigError, match="task"):
        CNNConfig(task="ranking")
    with pytest.raises(TrainConfigError, match="dropout"):
        CNNConfig(dropout=1.0)
    with pytest.raises(TrainConfigError, match=r"model.filter: unknown key; did you mean 'filters'\? \(expected one "):
        CNNConfig.from_dict({"filter": [4]})
    with pytest.raises(TrainConfigError, match=r"model.ensemble_sise: unknown key; did you mean 'ensemble_size'\?"):
        CNNConfig.from_dict({"ensemble_sise": 3})
    cfg = CNNConfig.from_dict({"filters": [4, 8], "kernel_sizes": [5, 3], "strides": [2, 2]})
    assert cfg.filters == (4, 8) and cfg.to_dict()["filters"] == [4, 8]
    # a value of the wrong TOML type is named by its key, before anything reads it
    for table, msg in (({"dense_units": {"fat": "%"}}, "model.dense_units: expected an array of integers, got {'fat'"),
                       ({"filters": [8, 16.5]}, "model.filters: expected an array of integers, got [8, 16.5]"),
                       ({"dropout": "0.1"}, "model.dropout: expected a number, got str '0.1'"),
                       ({"epochs": 2.5}, "model.epochs: expected an integer, got float 2.5"),
                       ({"batch_norm": 1}, "model.batch_norm: expected true/false, got int 1"),
                       ({"early_stopping_patience": "5"}, "model.early_stopping_patience: expected an integer")):
        with pytest.raises(TrainConfigError, match=re.escape(msg)):
            CNNConfig.from_dict(table)
    assert CNNConfig.from_dict({"l2": 0, "early_stopping_patience": 5}).early_stopping_patience == 5
    assert CNNConfig().max_steps == 20_000 and CNNConfig.from_dict({"max_steps": 500}).max_steps == 500
    assert CNNConfig().max_gmac == 200 and CNNConfig.from_dict({"max_gmac": 50}).max_gmac == 50
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(TrainConfigError, match=re.escape(f"model.max_gmac: expected a positive number or none, "
                                                             f"got {bad}")):
            CNNConfig(max_gmac=bad)
    with pytest.raises(TrainConfigError, match=re.escape("model.max_steps: expected an integer >= 1 or none, got 0")):
        CNNConfig(max_steps=0)


def test_input_errors(data) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    X, y, Xs, ys = data
    with pytest.raises(ValueError, match="expected 300 rows of y_train"):
        train_cnn(X, y[:5, 0], None, None, config=TINY, seed=0)
    with pytest.raises(ValueError, match="both X_sel and y_sel"):
        train_cnn(X, y[:, 0], Xs, None, config=TINY, seed=0)
    with pytest.raises(ValueError, match="X_sel rows of shape"):
        train_cnn(X, y[:, 0], Xs[:, :10], ys[:, 0], config=TINY, seed=0)


@pytest.mark.parametrize("members", [1, 3])
def test_standardised_output_copy_emits_standardised_targets(members: int) -> None:
    """The int8 conversion's input: the same network, last Dense layer(s) emitting (y - mean) / scale; also for a
    model compiled with a closure loss (as after pruning), which clone_model could not re-compile."""
    import keras

    from trainer.models import CNNConfig, standardised_output_copy, train_cnn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 32))
    y = np.stack([X[:, :4].sum(1) * 3 + 200, X[:, 4:8].sum(1) + 10], 1)
    cfg = CNNConfig.from_dict({"filters": [4], "kernel_sizes": [5], "strides": [2], "dense_units": [], "epochs": 2,
                               "ensemble_size": members})
    t = train_cnn(X, y, None, None, config=cfg, seed=0)
    t.model.compile(optimizer="adam", loss=lambda a, b: keras.ops.mean((a - b) ** 2))
    copy = standardised_output_copy(t.model, t.y_mean, t.y_scale)
    units = np.asarray(t.model(X.astype(np.float32)), dtype=np.float64)
    std = np.asarray(copy(X.astype(np.float32)), dtype=np.float64)
    np.testing.assert_allclose(std * t.y_scale + t.y_mean, units, rtol=0, atol=1e-3)
    assert np.abs(std.mean(axis=0)).max() < 1.0  # standardised, not units
