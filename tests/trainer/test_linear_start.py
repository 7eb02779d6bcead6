"""Tests of trainer.linear_start: a CNN whose linear path starts at PLS starts as that PLS model, its latent variables
are chosen without letting a spectrum's augmented copies leak across folds, and the config refuses the option where
it cannot apply."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.errors import TrainConfigError
from trainer.linear_start import fit_linear_start
from trainer.models import CNNConfig

pytest.importorskip("sklearn")


def _linear_data(n: int = 90, p: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    y = np.column_stack([X @ rng.normal(size=p) + 0.05 * rng.normal(size=n), X[:, 2] ** 2])
    return X, y


def test_fit_linear_start_is_the_pls_model_of_its_latent_variables() -> None:
    from sklearn.cross_decomposition import PLSRegression

    X, y = _linear_data()
    start = fit_linear_start(X, y, seed=0)
    assert len(start.n_components) == 2 and all(k >= 1 for k in start.n_components)
    for j, k in enumerate(start.n_components):
        ref = PLSRegression(n_components=k, scale=False).fit(X.astype(np.float64), y[:, j])
        np.testing.assert_allclose(start.predict(X)[:, j], ref.predict(X.astype(np.float64)).ravel(),
                                   rtol=1e-4, atol=1e-4)
    # The linear target is nearly noise-free: PLS explains it; the squared one is not linear.
    resid = y - start.predict(X)
    assert np.std(resid[:, 0]) < 0.1 * np.std(y[:, 0])
    assert np.std(resid[:, 1]) > 0.5 * np.std(y[:, 1])


def test_augmented_copies_never_straddle_a_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.linear_start as ls

    X, y = _linear_data(n=40)
    rng = np.random.default_rng(1)
    X_aug = np.concatenate([X, X + 0.01 * rng.normal(size=X.shape), X - 0.01 * rng.normal(size=X.shape)])
    y_aug = np.concatenate([y, y, y])
    seen: list[list[tuple[np.ndarray, np.ndarray]]] = []
    real = ls.grouped_folds

    def spy(groups: np.ndarray, n_folds: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        folds = real(groups, n_folds, seed=seed)
        seen.append(folds)
        return folds

    monkeypatch.setattr(ls, "grouped_folds", spy)
    fit_linear_start(X_aug, y_aug, seed=0)
    assert seen and len(seen[0]) == ls.FOLDS
    for fit, held in seen[0]:
        for i in held:  # row i, i + 40, i + 80 are one spectrum and its copies: all held out together
            assert {i % 40 + 40 * c for c in range(3)} <= set(held.tolist())
        assert not set(fit.tolist()) & set(held.tolist())


def test_a_cnn_started_at_pls_predicts_pls_before_it_learns() -> None:
    """With a learning rate of ~0 the trained network is its start: exactly the PLS model, in reference units, every
    ensemble member; without the option the same network predicts something else."""
    pytest.importorskip("keras")
    from trainer.models import train_cnn

    X, y = _linear_data()
    y = y * np.array([3.0, 0.5]) + np.array([100.0, 2.0])  # units: the scaling is folded back into the head
    base = dict(filters=(4,), kernel_sizes=(5,), strides=(2,), dense_units=(8,), linear_path=True, epochs=1,
                learning_rate=1e-9, lr_schedule="constant", batch_norm=False, ensemble_size=2, dropout=0.0)
    started = train_cnn(X, y, None, None, config=CNNConfig(**base, linear_start="pls"), seed=0)
    y_mean, y_scale = y.mean(axis=0), y.std(axis=0)
    start = fit_linear_start(X, (y - y_mean) / y_scale, seed=0)
    expected = start.predict(X) * y_scale + y_mean
    np.testing.assert_allclose(np.asarray(started.model(X)), expected, rtol=1e-4, atol=1e-3)
    plain = train_cnn(X, y, None, None, config=CNNConfig(**base), seed=0)
    assert np.max(np.abs(np.asarray(plain.model(X)) - expected)) > 0.1 * y_scale.min()


def test_the_network_trains_on_the_pls_residual_of_training_and_selection_rows() -> None:
    """Before it learns, the network's loss is the PLS residual's mean square (per member, summed), on the training
    rows and on the selection rows: it trains on what PLS leaves, and picks its kept epoch on the same."""
    pytest.importorskip("keras")
    from trainer.models import train_cnn

    X, y = _linear_data(n=120)
    y = y[:, :1]  # the linear target: PLS leaves little of it
    X_tr, y_tr, X_sel, y_sel = X[:90], y[:90], X[90:], y[90:]
    cfg = CNNConfig(filters=(4,), kernel_sizes=(5,), strides=(2,), dense_units=(8,), linear_path=True,
                    linear_start="pls", epochs=1, learning_rate=1e-9, lr_schedule="constant", batch_norm=False,
                    ensemble_size=2, dropout=0.0, l2=0.0, restore_best=False)
    trained = train_cnn(X_tr, y_tr, X_sel, y_sel, config=cfg, seed=0)
    mean, scale = y_tr.mean(axis=0), y_tr.std(axis=0)
    start = fit_linear_start(X_tr, (y_tr - mean) / scale, seed=0)
    for rows, ys, key in ((X_tr, y_tr, "loss"), (X_sel, y_sel, "val_loss")):
        residual = (ys - mean) / scale - start.predict(rows)
        assert trained.history[key][0] == pytest.approx(2 * np.mean(residual ** 2), rel=1e-3), key
        # Far below the loss on the targets themselves, which a network that ignored the start would see.
        assert trained.history[key][0] < 0.5 * 2 * np.mean(((ys - mean) / scale) ** 2)


def test_too_few_rows_to_cross_validate_take_one_latent_variable() -> None:
    X, y = _linear_data(n=2)
    assert fit_linear_start(X, y[:, :1], seed=0).n_components == (1,)
    X, y = _linear_data(n=12)
    y[:, 1] = 5.0  # a constant target: no coefficients, its value as the intercept
    start = fit_linear_start(X, y, seed=0)
    np.testing.assert_allclose(start.predict(X)[:, 1], 5.0, atol=1e-5)


def test_linear_start_needs_a_regression_with_a_linear_path() -> None:
    with pytest.raises(TrainConfigError, match="linear_path = true"):
        CNNConfig(linear_start="pls")
    with pytest.raises(TrainConfigError, match="regression"):
        CNNConfig(task="classification", linear_path=True, linear_start="pls")
    with pytest.raises(TrainConfigError, match=r"expected one of \['none', 'pls'\], got 'ridge'"):
        CNNConfig(linear_path=True, linear_start="ridge")
    assert CNNConfig(linear_path=True, linear_start="pls").linear_start == "pls"


def test_the_search_samples_linear_start_for_a_regression_with_a_linear_path_only() -> None:
    optuna = pytest.importorskip("optuna")
    from trainer.search import SearchInputs, suggest_recipe

    rng = np.random.default_rng(0)

    def inputs(n_classes: int) -> SearchInputs:
        return SearchInputs(X=rng.normal(size=(20, 50)), Y=rng.normal(size=(20, 1)), groups=np.arange(20),
                            target_names=("y",), make_pre=lambda steps: None, candidates={"snv": [{"op": "snv"}]},
                            base_candidate="snv", base_model={"epochs": 200, "batch_norm": False,
                                                              "linear_path": True, "linear_start": "pls"},
                            base_augment={"n_copies": 0}, n_classes=n_classes)

    params = {"depth": 1, "filters": 4, "filter_growth": 1, "kernel0": 9, "stride0": 2, "dense_units": 0,
              "dropout": 0.0, "l2": 1e-3, "learning_rate": 1e-3, "epochs": 200, "ensemble_size": 1, "aug_copies": 0}
    for linear, start in ((True, "pls"), (True, "none"), (False, "none")):
        trial = optuna.trial.FixedTrial({**params, "linear_path": linear, "linear_start": start})
        model = suggest_recipe(trial, inputs(0))["model"]
        assert (model["linear_path"], model["linear_start"]) == (linear, start)
        CNNConfig.from_dict(model)  # every sampled recipe is a valid config (a configured "pls" is overridden)
    # A classification never starts at PLS, whatever the configured recipe says.
    trial = optuna.trial.FixedTrial({**params, "linear_path": True})
    model = suggest_recipe(trial, inputs(3))["model"]
    assert model["linear_start"] == "none"
    # The sampler sees the parameter only where it applies.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        t = study.ask()
        m = suggest_recipe(t, inputs(0))["model"]
        assert ("linear_start" in t.params) == m["linear_path"]
        study.tell(t, 1.0)
