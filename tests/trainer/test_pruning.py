"""Tests of trainer.pruning: the polynomial schedule, exact magnitude masks, and pruning a trained CNN ensemble to a
target sparsity whose zeros stay zero while it is fine-tuned."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from trainer.errors import TrainConfigError
from trainer.models import CNNConfig, train_cnn
from trainer.pruning import (
    PruneConfig,
    _magnitude_mask,
    measure_sparsity,
    prunable_kernels,
    prune_model,
    sparsity_at,
)

N_CHANNELS = 64
TARGET = 0.6
# Per-kernel sparsity is round(s * size) / size, so it is within half a weight of the target; overall within 1 %.
SPARSITY_ATOL = 0.01
# The pruned, fine-tuned model must still explain most of the target variance (RMSE / SD of the target).
MAX_RMSE_FRACTION = 0.5

TINY = CNNConfig(filters=(8, 8), kernel_sizes=(7, 5), strides=(2, 2), dense_units=(), dropout=0.0, l2=0.0,
                 batch_norm=False, learning_rate=1e-2, epochs=15, batch_size=32, restore_best=False, ensemble_size=2,
                 log_every=100)
PRUNE = PruneConfig(target_sparsity=TARGET, epochs=6, frequency_steps=5, learning_rate=1e-3, min_weights=64)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ch = np.linspace(0.0, 1.0, N_CHANNELS)
    c = rng.uniform(0.0, 1.0, size=n)
    X = c[:, None] * np.exp(-((ch - 0.4) ** 2) / 0.01) + rng.normal(0.0, 0.02, size=(n, N_CHANNELS))
    return X.astype(np.float32), 100.0 + 50.0 * c


def test_schedule_is_polynomial_and_monotone() -> None:
    kw = {"initial": 0.1, "final": 0.8, "begin_step": 10, "end_step": 110, "power": 3.0}
    values = [sparsity_at(t, **kw) for t in range(200)]
    assert values[0] == pytest.approx(0.1) and values[10] == pytest.approx(0.1)
    assert values[110] == pytest.approx(0.8) and values[199] == pytest.approx(0.8)
    assert all(b >= a for a, b in itertools.pairwise(values))
    # Halfway through the ramp, (1 - 0.5) ** 3 of the gap remains.
    assert sparsity_at(60, **kw) == pytest.approx(0.8 - 0.7 * 0.125)


def test_magnitude_mask_removes_exactly_the_smallest() -> None:
    w = np.array([[0.5, -0.1], [0.05, -2.0], [0.3, 0.0]])
    mask = _magnitude_mask(w, 0.5)
    np.testing.assert_array_equal(mask, [[1, 0], [0, 1], [1, 0]])
    assert _magnitude_mask(w, 0.0).all()


@pytest.fixture(scope="module")
def pruned():  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    X, y = _synthetic(256, seed=0)
    trained = train_cnn(X, y, None, None, config=TINY, seed=1)
    result = prune_model(trained.model, X, y, config=PRUNE, seed=2)
    return X, y, trained, result


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_reaches_target_sparsity_in_every_prunable_kernel(pruned) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    result = pruned[3]
    # Two members are nested inside the averaged model, each with a second conv kernel (5 x 8 x 8 = 320 weights)
    # and an output kernel (16 x 8 = 128); the first conv kernels (7 x 1 x 8 = 56) are below min_weights.
    kernels = prunable_kernels(result.model, min_weights=PRUNE.min_weights)
    assert sorted(int(np.prod(k.shape)) for k in kernels) == [128, 128, 320, 320]
    assert abs(result.sparsity - TARGET) < SPARSITY_ATOL
    assert len(result.layer_sparsity) == len(kernels)
    for path, s in result.layer_sparsity.items():
        assert abs(s - TARGET) < SPARSITY_ATOL, path
    overall, _ = measure_sparsity(result.model, min_weights=PRUNE.min_weights)
    assert overall == pytest.approx(result.sparsity)
    small = [k for k in prunable_kernels(result.model) if int(np.prod(k.shape)) < PRUNE.min_weights]
    assert small and all(np.count_nonzero(np.asarray(k.numpy()) == 0) == 0 for k in small)
    assert len(result.history["loss"]) == PRUNE.epochs and result.prune_seconds > 0


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_pruned_model_still_predicts(pruned) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    result = pruned[3]
    Xt, yt = _synthetic(100, seed=9)
    pred = np.asarray(result.model.predict(Xt, verbose=0)).ravel()
    assert np.sqrt(np.mean((pred - yt) ** 2)) < MAX_RMSE_FRACTION * yt.std()


@pytest.mark.slow  # trains Keras models: seconds on an idle 2-core machine, longer under load
def test_zeros_stay_zero_during_further_fine_tuning(pruned) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    X, y, _, result = pruned
    kernels = prunable_kernels(result.model, min_weights=PRUNE.min_weights)
    values_before = [np.asarray(k.numpy()).copy() for k in kernels]
    zero_before = [v == 0 for v in values_before]
    again = prune_model(result.model, X, y, seed=3,
                        config=dataclasses.replace(PRUNE, initial_sparsity=TARGET, learning_rate=1e-2, epochs=3))
    moved = False
    for value, before, k in zip(values_before, zero_before,
                                prunable_kernels(again.model, min_weights=PRUNE.min_weights)):
        after = np.asarray(k.numpy())
        assert (after[before] == 0).all()
        moved = moved or not np.array_equal(after[~before], value[~before])
    assert moved  # the surviving weights were fine-tuned
    assert abs(again.sparsity - TARGET) < SPARSITY_ATOL


def test_config_errors() -> None:
    with pytest.raises(TrainConfigError, match="target_sparsity"):
        PruneConfig(target_sparsity=1.0)
    with pytest.raises(TrainConfigError, match="initial_sparsity"):
        PruneConfig(target_sparsity=0.3, initial_sparsity=0.5)
    with pytest.raises(TrainConfigError, match=r"pruning.enable: unknown key; did you mean 'enabled'\?") as err:
        PruneConfig.from_dict({"enable": False})
    assert "'enabled'" in str(err.value)  # the key the caller takes out is listed as known
    with pytest.raises(TrainConfigError, match="pruning.target_sparsity: expected a number, got str '50%'"):
        PruneConfig.from_dict({"target_sparsity": "50%"})
    assert PruneConfig.from_dict({"target_sparsity": 0.7}).to_dict()["target_sparsity"] == 0.7
