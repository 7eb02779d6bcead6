"""trainer.fitting: Keras fit on in-memory arrays, one input pipeline for the whole fit."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.fitting import capped_epochs, compile_steps, epoch_steps, fit_arrays, forward_macs

keras = pytest.importorskip("keras")


def _data(rows: int = 37, channels: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, channels)).astype(np.float32)
    y = (X @ rng.normal(size=(channels, 2))).astype(np.float32)
    return X, y


def _model(channels: int = 12, outputs: int = 2) -> object:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Input((channels,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(outputs)])


class _Batches(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped: its Callback is Any
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        self.calls += 1


def test_capped_epochs_keeps_the_steps_within_the_cap() -> None:
    assert capped_epochs(300, 640, 16, None) == 300  # no cap
    assert capped_epochs(300, 640, 16, 20_000) == 300  # 40 steps an epoch: 12,000 steps, under the cap
    assert capped_epochs(300, 30_000, 16, 20_000) == 10  # 1,875 steps an epoch: 10 epochs are 18,750 steps
    assert capped_epochs(300, 1_000_000, 16, 20_000) == 1  # one epoch passes the cap: one epoch still runs


def test_capped_epochs_keeps_the_work_within_max_gmac() -> None:
    # 1,000 rows in batches of 16: 63 steps an epoch. 50 M multiply-accumulates a step: 200 G are 4,000 steps.
    assert capped_epochs(300, 1_000, 16, 20_000, step_macs=50e6, max_gmac=200) == 63
    assert capped_epochs(300, 1_000, 16, 2_000, step_macs=50e6, max_gmac=200) == 31  # the smaller cap binds
    assert capped_epochs(300, 1_000, 16, None, step_macs=50e6, max_gmac=200) == 63  # alone
    assert capped_epochs(300, 1_000, 16, 20_000, step_macs=50e6, max_gmac=None) == 300  # off: 18,900 steps
    assert capped_epochs(300, 1_000, 16, None, step_macs=0.0, max_gmac=200) == 300  # cost unknown: no cap
    assert capped_epochs(300, 1_000, 16, None, step_macs=1e12, max_gmac=200) == 1  # at least one epoch


def test_forward_macs_counts_convolutions_and_dense_layers_nested_models_too() -> None:
    import keras

    inputs = keras.Input(shape=(100, 2))  # two stacked inputs
    h = keras.layers.Conv1D(4, 5, strides=2, padding="valid")(inputs)  # 48 positions x 5 taps x 2 channels x 4
    h = keras.layers.Conv1D(3, 3, padding="same")(h)  # 48 positions x 3 taps x 4 channels x 3
    per_position = keras.layers.Dense(2)(h)  # 48 positions x 3 x 2
    h = keras.layers.Dropout(0.1)(keras.layers.Flatten()(per_position))
    h = keras.layers.Dense(8, activation="relu")(h)  # 96 x 8
    model = keras.Model(inputs, keras.layers.Dense(1)(h))  # 8 x 1
    assert forward_macs(model) == 48 * 5 * 2 * 4 + 48 * 3 * 4 * 3 + 48 * 3 * 2 + 96 * 8 + 8
    outer_in = keras.Input(shape=(100, 1))
    outer = keras.Model(outer_in, keras.layers.Dense(3)(model(outer_in)))  # a member inside a larger model
    assert forward_macs(outer) == forward_macs(model) + 1 * 3


def test_epoch_steps_counts_the_partial_last_batch_and_refuses_nonsense() -> None:
    assert epoch_steps(37, 8) == 5
    assert epoch_steps(32, 8) == 4
    assert compile_steps(37, 8) == {"steps_per_execution": 5}
    with pytest.raises(ValueError, match="at least one row"):
        epoch_steps(0, 8)


def test_every_epoch_runs_its_batches_and_the_validation_loss_is_keras_own() -> None:
    X, y = _data()
    Xv, yv = _data(rows=11, seed=1)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", **compile_steps(len(X), 8))
    hist = fit_arrays(model, X, y, epochs=7, batch_size=8, seed=0, validation=(Xv, yv))
    assert len(hist.history["loss"]) == 7
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    # The last epoch's val_loss is the loss of the final weights on the validation rows.
    assert hist.history["val_loss"][-1] == pytest.approx(float(model.evaluate(Xv, yv, verbose=0)), rel=1e-5)
    # One optimizer step per batch: 5 batches of 37 rows a pass, 7 passes.
    assert int(model.optimizer.iterations.numpy()) == 35


def test_a_per_batch_callback_sees_every_batch_unless_the_epoch_is_one_execution() -> None:
    """What keeps magnitude pruning (a mask update after every batch) off compile_steps."""
    X, y = _data()
    per_batch = _model()
    per_batch.compile(optimizer="adam", loss="mse")
    seen = _Batches()
    fit_arrays(per_batch, X, y, epochs=3, batch_size=8, seed=0, callbacks=[seen])
    assert seen.calls == 15
    whole_epoch = _model()
    whole_epoch.compile(optimizer="adam", loss="mse", **compile_steps(len(X), 8))
    seen = _Batches()
    fit_arrays(whole_epoch, X, y, epochs=3, batch_size=8, seed=0, callbacks=[seen])
    assert seen.calls == 3


def test_the_seed_fixes_the_order_and_several_outputs_take_a_list_of_targets() -> None:
    X, y = _data()

    def weights(seed: int) -> list[np.ndarray]:
        inputs = keras.Input((X.shape[1],))
        keras.utils.set_random_seed(0)
        heads = [keras.layers.Dense(2, name=f"head{i}")(inputs) for i in range(2)]
        joint = keras.Model(inputs, heads)
        joint.compile(optimizer=keras.optimizers.SGD(0.01), loss=["mse", "mse"], **compile_steps(len(X), 8))
        fit_arrays(joint, X, [y, y], epochs=2, batch_size=8, seed=seed)
        return [np.asarray(w) for w in joint.get_weights()]

    a, b, c = weights(0), weights(0), weights(1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.allclose(u, v) for u, v in zip(a, c))
