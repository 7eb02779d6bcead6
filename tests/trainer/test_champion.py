"""Tests of trainer.champion: the champion rule, and PLS as a deployable linear map."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.champion import blend_weight, choose_model, deployable_pls, pls_cv_predictions, pls_cv_rmse
from trainer.errors import TrainConfigError
from trainer.pls import fit_pls_baseline
from trainer.preprocessing import make_pipeline_from_config

NAMES = ("a", "b")


def _choose(cnn: list[float], pls: list[float], *, cost: list[float] | None = None, mode: str = "auto") -> str:
    sel = choose_model(NAMES, mode=mode, tie_margin=0.02, pls_rmse=np.array(pls), cnn_rmse=np.array(cnn),
                       int8_cost=None if cost is None else np.array(cost), folds=5)
    return sel.winner


def test_each_target_is_served_by_the_model_that_wins_it_by_more_than_the_margin() -> None:
    assert _choose([0.8, 0.9], [1.0, 1.0]) == "cnn"  # the CNN wins both
    assert _choose([1.2, 1.01], [1.0, 1.0]) == "pls"  # PLS wins both
    assert _choose([0.99, 0.99], [1.0, 1.0]) == "pls"  # a tie on both: the simpler model
    assert _choose([0.8, 1.01], [1.0, 1.0]) == "per_target"  # each wins one
    assert _choose([0.8, 0.99], [1.0, 1.0]) == "per_target"  # a tie on b: PLS serves it
    assert _choose([0.8, 0.9], [1.0, 1.0], cost=[1.0, 1.2]) == "per_target"  # int8 costs it the second target
    sel = choose_model(NAMES, mode="auto", tie_margin=0.02, pls_rmse=np.array([1.0, 1.0]),
                       cnn_rmse=np.array([0.8, 0.99]), int8_cost=None, folds=5)
    assert sel.per_target == {"a": "cnn", "b": "pls"} and sel.split
    assert "CNN better" in sel.per_target_reason["a"] and "the simpler model wins" in sel.per_target_reason["b"]
    assert sel.reason.startswith("per target: a CNN") and sel.to_dict()["per_target"] == {"a": "cnn", "b": "pls"}


def test_a_single_target_follows_the_bundle_wide_rule_of_before() -> None:
    """With one target the per-target rule is the old one: the CNN only when better by more than the margin."""
    for cnn, want in ((0.97, "cnn"), (0.99, "pls"), (1.01, "pls")):
        sel = choose_model(("a",), mode="auto", tie_margin=0.02, pls_rmse=np.array([1.0]),
                           cnn_rmse=np.array([cnn]), int8_cost=None, folds=5)
        assert sel.winner == want and sel.per_target == {"a": want}


def test_forced_modes_and_classification() -> None:
    assert _choose([2.0, 2.0], [1.0, 1.0], mode="cnn") == "cnn"
    assert _choose([0.1, 0.1], [1.0, 1.0], mode="pls") == "pls"
    assert _choose([0.5, 2.0], [1.0, 1.0], mode="pls") == "pls"  # forced: one model for every target
    sel = choose_model(("c",), mode="auto", tie_margin=0.02, pls_rmse=None, cnn_rmse=None, int8_cost=None, folds=0,
                       classification=True)
    assert sel.winner == "cnn" and "no deployable PLS-DA" in sel.reason
    with pytest.raises(TrainConfigError, match="expected one of auto, cnn, pls, got 'best'"):
        _choose([1, 1], [1, 1], mode="best")
    with pytest.raises(TrainConfigError, match="needs cross-validation scores"):
        choose_model(NAMES, mode="auto", tie_margin=0.02, pls_rmse=np.ones(2), cnn_rmse=None, int8_cost=None, folds=0)


def _classify(pls_error: float, cnn_error: float, mode: str = "auto", *, cv: tuple[float, float] | None = None,
              rows: tuple[int, int] = (0, 24)) -> tuple[str, str]:
    sel = choose_model(("c",), mode=mode, tie_margin=0.02, pls_rmse=np.array([0.2 if cv is None else cv[0]]),
                       cnn_rmse=None if cv is None else np.array([cv[1]]), int8_cost=None, folds=0,
                       classification=True, select_error=(pls_error, cnn_error), class_rows=rows)
    assert sel.to_dict()["cv_rmse"]["select_error_pls_da"] == {"c": pls_error}
    assert sel.per_target == {"c": sel.winner}
    return sel.winner, sel.reason


def test_a_classification_deploys_pls_da_unless_the_cnn_wins_on_the_selection_rows() -> None:
    """The loser is never shipped: PLS-DA serves where it classifies the selection rows better, or as well (the
    simpler model on a tie, both perfect included); the CNN only where it is better by more than the margin."""
    assert _classify(0.10, 0.05) == ("cnn", "CNN better: error rate over 24 selection rows: CNN 0.0500, "
                                            "PLS-DA 0.1000")
    assert _classify(0.083, 0.125)[0] == "pls" and _classify(0.083, 0.125)[1].startswith("PLS-DA better")
    assert _classify(0.0, 0.0)[0] == "pls" and "the simpler model wins" in _classify(0.0, 0.0)[1]
    assert _classify(0.100, 0.099)[0] == "pls"  # within the 2 % margin
    assert _classify(0.0, 0.5, mode="cnn")[0] == "cnn" and _classify(0.5, 0.0, mode="pls")[0] == "pls"
    sel = choose_model(("c",), mode="auto", tie_margin=0.02, pls_rmse=np.array([0.2]), cnn_rmse=None,
                       int8_cost=None, folds=0, classification=True, select_error=None)
    assert sel.winner == "cnn" and "without error rates" in sel.reason


def test_a_classification_weighs_the_out_of_fold_errors_beside_the_selection_rows() -> None:
    """24 selection rows alone call the CNN better (1 error against 2); over 72 training rows out of fold it made 9
    errors and PLS-DA 3, so over all 96 rows PLS-DA is better and serves."""
    winner, why = _classify(2 / 24, 1 / 24, cv=(3 / 72, 9 / 72), rows=(72, 24))
    assert winner == "pls"
    assert why == ("PLS-DA better: error rate over 72 training rows out of fold and 24 selection rows: "
                   "CNN 0.1042, PLS-DA 0.0521")
    sel = choose_model(("c",), mode="auto", tie_margin=0.02, pls_rmse=np.array([3 / 72]),
                       cnn_rmse=np.array([9 / 72]), int8_cost=None, folds=5, classification=True,
                       select_error=(2 / 24, 1 / 24), class_rows=(72, 24)).to_dict()["cv_rmse"]
    assert sel["pooled_error_pls_da"]["c"] == pytest.approx(5 / 96) and sel["pooled_error_cnn"]["c"] == 10 / 96
    assert sel["cnn_float"]["c"] == 9 / 72 and "cnn_int8_estimate" not in sel
    # Out of fold alone (no selection rows), and the CNN better there by more than the margin.
    assert _classify(0.0, 0.0, cv=(0.10, 0.05), rows=(72, 0)) == (
        "cnn", "CNN better: error rate over 72 training rows out of fold: CNN 0.0500, PLS-DA 0.1000")


def test_pooled_error_weighs_each_part_by_its_rows() -> None:
    from trainer.champion import pooled_error

    assert pooled_error(0.1, 0.5, (90, 10)) == pytest.approx(0.14)
    assert pooled_error(None, 0.5, (90, 10)) == 0.5 and pooled_error(0.1, None, (90, 10)) == 0.1
    assert pooled_error(0.1, 0.5, (90, 0)) == 0.1
    with pytest.raises(TrainConfigError, match="error rates of both"):
        pooled_error(None, None, (90, 10))


def test_pls_da_becomes_class_probabilities_by_a_temperature_fitted_out_of_fold() -> None:
    from trainer.champion import deployable_plsda, fit_temperature, softmax

    # Responses that separate the classes well want a low temperature (sharp probabilities), noisy ones a high one.
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    clean = np.eye(3)[y] + rng.normal(0, 0.05, (300, 3))
    noisy = np.eye(3)[y] + rng.normal(0, 0.6, (300, 3))
    assert fit_temperature(clean, y) < 0.1 < fit_temperature(noisy, y)
    # The deployable model is the baseline's PLS-DA: same classes, probabilities that sum to 1.
    wl = np.linspace(900.0, 1100.0, 40)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 200.0) for c in (950.0, 1000.0, 1050.0)])
    conc = rng.uniform(0.1, 1.0, (90, 3))
    X = conc @ bands + rng.normal(0, 0.01, (90, 40))
    labels = np.argmax(conc, axis=1)
    cands = {"none": [{"op": "center"}]}

    def make_pre(steps: list) -> object:
        return make_pipeline_from_config(steps, wl)

    pls = fit_pls_baseline(X, labels[:, None], candidates=cands, groups=np.arange(90), target_names=("c",),
                           task="classification", class_names=("a", "b", "c"), folds=5, max_components=6,
                           make_preprocess=make_pre)
    dep = deployable_plsda(pls, X, labels, np.arange(90), candidates=cands, make_pre=make_pre, folds=5, seed=0)
    prob = dep.predict(X)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.argmax(prob, axis=1), pls.predict(X)[:, 0])
    assert dep.temperature is not None and 0.0 <= float(dep.cv_rmse[0]) < 0.5
    keras_prob = np.asarray(dep.keras_model()(make_pre(cands["none"]).fit(X).transform(X)))
    np.testing.assert_allclose(keras_prob, prob, atol=1e-5)
    np.testing.assert_allclose(softmax(np.zeros((2, 4))), 0.25)


def test_selection_reports_scores_and_reason() -> None:
    sel = choose_model(NAMES, mode="auto", tie_margin=0.02, pls_rmse=np.array([1.0, 2.0]),
                       cnn_rmse=np.array([0.5, 1.0]), int8_cost=np.array([1.1, 1.0]), folds=5)
    d = sel.to_dict()
    assert d["winner"] == "cnn" and d["folds"] == 5
    assert d["cv_rmse"]["pls"] == {"a": 1.0, "b": 2.0}
    assert d["ratio_cnn_to_pls"] == pytest.approx({"a": 0.55, "b": 0.5})
    assert "CNN serves every target; a: CNN better" in d["reason"] and "simpler model wins a tie" in d["rule"]
    assert d["per_target"] == {"a": "cnn", "b": "cnn"} and "0.550" in d["per_target_reason"]["a"]


def test_deployable_pls_is_the_same_linear_model() -> None:
    rng = np.random.default_rng(0)
    wl = np.linspace(900.0, 1100.0, 40)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 200.0) for c in (950.0, 1000.0, 1050.0)])
    conc = rng.uniform(0, 1, (80, 3))
    X = conc @ bands + rng.normal(0, 0.01, (80, 1)) + rng.normal(0, 1e-3, (80, 40))
    Y = conc[:, :2] * 10

    def make(steps):
        return make_pipeline_from_config([dict(s) for s in steps], wl)

    cands = {"center": [{"op": "center"}], "sg1": [{"op": "savgol", "window": 7, "polyorder": 2, "deriv": 1}]}
    pls = fit_pls_baseline(X, Y, candidates=cands, groups=np.arange(80), target_names=NAMES, folds=5,
                           max_components=6, make_preprocess=make)
    dep = deployable_pls(pls, X, Y, candidates=cands, make_pre=make)
    if len({m.candidate for m in pls.models}) == 1:
        np.testing.assert_allclose(dep.predict(X), pls.predict(X), rtol=1e-9, atol=1e-9)
    keras_out = np.asarray(dep.keras_model()(dep.preprocess.transform(X).astype(np.float32)))
    np.testing.assert_allclose(keras_out, dep.predict(X), rtol=1e-4, atol=1e-4)

    # Its out-of-fold predictions (the intervals' residuals) reproduce the CV score the rule compared.
    oof = pls_cv_predictions(dep, X, Y, np.arange(80), make_pre=make, folds=5, seed=0)
    np.testing.assert_allclose(np.sqrt(np.mean((oof - Y) ** 2, axis=0)), dep.cv_rmse, rtol=1e-6)


def _scatter_mixtures() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixtures under a multiplicative scatter: target a (a relative concentration) wants SNV, which removes the
    scatter; target b (the scatter itself) wants the centred spectra, since SNV removes what it measures."""
    rng = np.random.default_rng(0)
    wl = np.linspace(900.0, 1100.0, 40)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 200.0) for c in (950.0, 1000.0, 1050.0)])
    conc = rng.uniform(0.1, 1.0, (90, 3))
    scale = rng.uniform(0.5, 1.5, (90, 1))
    X = scale * (0.5 + conc @ bands) + rng.normal(0, 1e-3, (90, 40))
    return wl, X, np.column_stack([conc[:, 0] / conc.sum(axis=1) * 10, scale[:, 0] * 10])


def test_targets_that_chose_different_preprocessings_are_each_served_by_their_own_pls(
        caplog: pytest.LogCaptureFixture) -> None:
    """Two candidates become the branches of one stack, each target's coefficients on its own branch: the deployable
    model predicts what the per-target tuned baseline predicts, and its cross-validation is the baseline's."""
    wl, X, Y = _scatter_mixtures()

    def make(steps):
        return make_pipeline_from_config([dict(s) for s in steps], wl)

    cands = {"center": [{"op": "center"}], "snv": [{"op": "snv"}]}
    pls = fit_pls_baseline(X, Y, candidates=cands, groups=np.arange(90), target_names=NAMES, folds=5,
                           max_components=6, make_preprocess=make)
    assert [m.candidate for m in pls.models] == ["snv", "center"], "the data no longer split the candidates"
    with caplog.at_level("INFO", logger="trainer.champion"):
        dep = deployable_pls(pls, X, Y, candidates=cands, make_pre=make)
    assert dep.candidate == "snv+center" and dep.branch_of == (0, 1) and dep.feature_shape == (40, 2)
    assert dep.branches == ("snv", "center")
    assert dep.steps == [{"op": "stack", "branches": [[{"op": "snv"}], [{"op": "center"}]]}]
    assert "stacked as branches: a <- snv (2 LV), b <- center" in caplog.text
    np.testing.assert_allclose(dep.predict(X), pls.predict(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dep.cv_rmse, pls_cv_rmse(pls), rtol=1e-12)
    keras_out = np.asarray(dep.keras_model()(dep.preprocess.transform(X).astype(np.float32)))
    np.testing.assert_allclose(keras_out, dep.predict(X), rtol=1e-4, atol=1e-4)
    oof = pls_cv_predictions(dep, X, Y, np.arange(90), make_pre=make, folds=5, seed=0)
    np.testing.assert_allclose(np.sqrt(np.mean((oof - Y) ** 2, axis=0)), dep.cv_rmse, rtol=1e-6)
    # The edge's own pipeline, from the spec the bundle carries, gives the stacked input the model was fitted on.
    edge_pipe = dep.preprocess.to_edge()
    np.testing.assert_allclose(edge_pipe.transform(X), dep.preprocess.transform(X), rtol=1e-12, atol=1e-12)


def test_steps_every_candidate_starts_with_go_before_the_stack() -> None:
    """A crop both candidates start with runs once, before the stack, where the bundle's wavelength grid and noise
    level read it; the model is still each target's tuned PLS."""
    wl, X, Y = _scatter_mixtures()

    def make(steps):
        return make_pipeline_from_config([dict(s) for s in steps], wl)

    crop = {"op": "crop", "wavelength_min": 920.0, "wavelength_max": 1080.0}
    cands = {"crop_center": [crop, {"op": "center"}], "crop_snv": [crop, {"op": "snv"}]}
    pls = fit_pls_baseline(X, Y, candidates=cands, groups=np.arange(90), target_names=NAMES, folds=5,
                           max_components=6, make_preprocess=make)
    assert [m.candidate for m in pls.models] == ["crop_snv", "crop_center"], "the data no longer split the candidates"
    dep = deployable_pls(pls, X, Y, candidates=cands, make_pre=make)
    assert dep.steps == [crop, {"op": "stack", "branches": [[{"op": "snv"}], [{"op": "center"}]]}]
    assert dep.branches == ("crop_snv", "crop_center") and dep.feature_shape[1] == 2 < dep.feature_shape[0] < 40
    np.testing.assert_allclose(dep.predict(X), pls.predict(X), rtol=1e-9, atol=1e-9)
    oof = pls_cv_predictions(dep, X, Y, np.arange(90), make_pre=make, folds=5, seed=0)
    np.testing.assert_allclose(np.sqrt(np.mean((oof - Y) ** 2, axis=0)), dep.cv_rmse, rtol=1e-6)


def test_candidates_that_cannot_share_a_stack_fall_back_to_one_for_every_target(
        caplog: pytest.LogCaptureFixture) -> None:
    """A crop in one candidate only gives branches of different lengths: one candidate then serves both targets,
    and the log says why."""
    wl, X, Y = _scatter_mixtures()

    def make(steps):
        return make_pipeline_from_config([dict(s) for s in steps], wl)

    cands = {"center": [{"op": "center"}],
             "crop_snv": [{"op": "crop", "wavelength_min": 920.0, "wavelength_max": 1080.0}, {"op": "snv"}]}
    pls = fit_pls_baseline(X, Y, candidates=cands, groups=np.arange(90), target_names=NAMES, folds=5,
                           max_components=6, make_preprocess=make)
    assert {m.candidate for m in pls.models} == {"center", "crop_snv"}, "the data no longer split the candidates"
    with caplog.at_level("INFO", logger="trainer.champion"):
        dep = deployable_pls(pls, X, Y, candidates=cands, make_pre=make)
    assert dep.branch_of is None and not dep.branches and dep.candidate in cands and dep.steps == cands[dep.candidate]
    assert "cannot share a stack (their outputs differ in shape" in caplog.text


def test_a_blend_serves_a_target_only_where_it_beats_both_models_out_of_fold_by_the_margin() -> None:
    """Target a: two models with independent errors of the same size average to about 1/sqrt(2) of either, so the
    blend serves it near w = 0.5; target b: the CNN's errors are the PLS's own, so no average helps and the rule of
    before stands. A target PLS won stays PLS alone; non-finite out-of-fold predictions keep single models."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(400, 2))
    e_cnn, e_pls = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    e_cnn[:, 1] = e_pls[:, 1]
    cnn, pls = y + e_cnn, y + e_pls
    kw = dict(mode="auto", tie_margin=0.02, pls_rmse=np.array([1.0, 1.0]), cnn_rmse=np.array([0.8, 0.8]),
              int8_cost=None, folds=5)
    sel = choose_model(NAMES, oof=(y, cnn, pls), **kw)
    assert sel.per_target == {"a": "blend", "b": "cnn"} and sel.winner == "per_target"
    assert 0.3 <= sel.blend_weights["a"] <= 0.7 and "b" not in sel.blend_weights
    cv = sel.to_dict()["cv_rmse"]
    assert cv["blend"]["a"] < 0.8 * min(cv["cnn_int8_oof"]["a"], cv["pls_nested"]["a"])
    assert "beats both out of fold" in sel.per_target_reason["a"] and sel.to_dict()["blend_weights"] == {
        "a": sel.blend_weights["a"]}
    w, rmse = blend_weight(y[:, 0], cnn[:, 0], pls[:, 0])
    assert w == sel.blend_weights["a"] and rmse == pytest.approx(cv["blend"]["a"])
    # the CNN's int8 cost weighs on its share of the blend
    w_costly, _ = blend_weight(y[:, 0], cnn[:, 0], pls[:, 0], cnn_cost=1.5)
    assert w_costly > w
    cnn_nan = cnn.copy()
    cnn_nan[0, 0] = np.nan
    assert choose_model(NAMES, oof=(y, cnn_nan, pls), **kw).blend_weights == {}
    # where PLS wins a target in cross-validation it serves it alone, however well a blend would score
    lost = choose_model(NAMES, oof=(y, cnn, pls), **{**kw, "cnn_rmse": np.array([1.2, 0.8])})
    assert lost.per_target == {"a": "pls", "b": "cnn"} and lost.blend_weights == {}
    assert lost.to_dict()["cv_rmse"]["blend"]["a"] == pytest.approx(cv["blend"]["a"])
    # forced modes never blend
    assert choose_model(NAMES, oof=(y, cnn, pls), **{**kw, "mode": "pls"}).per_target == {"a": "pls", "b": "pls"}


def test_int8_cost_on_training_rows_adds_each_rows_int8_change_to_its_out_of_fold_residual() -> None:
    from trainer.pipeline.choose import int8_cost_on

    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 2))
    fit = y + 0.01 * rng.normal(size=y.shape)  # the final CNN on its own training rows: a tight in-sample fit
    change = 0.02 * rng.normal(size=y.shape)  # what int8 changes of each prediction
    oof = y + 0.1 * rng.normal(size=y.shape)  # the same rows out of fold: the error new spectra meet
    in_sample, basis = int8_cost_on(y, fit, fit + change)
    assert basis == "in_sample" and np.all(in_sample > 1.8)  # sqrt(1 + (0.02 / 0.01)^2): rounding dwarfs the fit
    cost, basis = int8_cost_on(y, fit, fit + change, oof=oof)
    assert basis == "out_of_fold"
    expected = np.sqrt(np.mean((oof - y + change) ** 2, axis=0) / np.mean((oof - y) ** 2, axis=0))
    np.testing.assert_allclose(cost, expected)
    assert np.all((cost > 1.0) & (cost < 1.05))  # about sqrt(1 + (0.02 / 0.1)^2) = 1.02
    # Without every row's out-of-fold prediction, the plain ratio; on held-out rows always the plain ratio.
    gaps = oof.copy()
    gaps[3, 0] = np.nan
    got, basis = int8_cost_on(y, fit, fit + change, oof=gaps)
    assert basis == "in_sample"
    np.testing.assert_allclose(got, in_sample)
    got, basis = int8_cost_on(y, fit, fit + change, oof=oof, held_out=True)
    assert basis == "held_out"
    np.testing.assert_allclose(got, in_sample)
    # A target with no float error costs 1.
    np.testing.assert_allclose(int8_cost_on(y[:, :1], y[:, :1], y[:, :1] + 0.1)[0], [1.0])


def test_pls_is_scored_on_the_cnns_folds_without_the_copies_of_its_held_out_rows() -> None:
    """The champion rule's PLS figure: the CNN's folds (same groups and seed), each fitted on every calibration row
    outside its held-out groups, line copies included, and scored on the measured rows only."""
    from types import SimpleNamespace

    from trainer.pipeline.choose import pls_on_cnn_folds
    from trainer.splits import grouped_folds

    rng = np.random.default_rng(3)
    n, wl = 60, np.linspace(900.0, 1100.0, 40)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 200.0) for c in (950.0, 1000.0, 1050.0)])
    conc = rng.uniform(0, 1, (n, 3))
    X = conc @ bands + rng.normal(0, 0.01, (n, 1)) + rng.normal(0, 0.01, (n, 40))
    Y = conc[:, :2] * 10
    copies = X + 0.002 * rng.normal(size=X.shape)  # one line copy of each row, under its row's group
    X_cal, Y_cal, g_cal = np.vstack([X, copies]), np.vstack([Y, Y]), np.tile(np.arange(n), 2)

    def make(steps):
        return make_pipeline_from_config([dict(s) for s in steps], wl)

    cands = {"center": [{"op": "center"}]}
    pls = fit_pls_baseline(X_cal, Y_cal, candidates=cands, groups=g_cal, target_names=NAMES, folds=10,
                           max_components=6, make_preprocess=make)
    dep = deployable_pls(pls, X_cal, Y_cal, candidates=cands, make_pre=make)
    cfg = SimpleNamespace(selection=SimpleNamespace(cnn_cv_folds=5), seed=4)
    data = SimpleNamespace(plan=SimpleNamespace(train_rows=np.arange(n)), groups=np.arange(n), make_pre=make,
                           ds=SimpleNamespace(target_names=NAMES))
    got = pls_on_cnn_folds(cfg, data, dep, X_cal, Y_cal, g_cal)

    def oof(leak: bool) -> np.ndarray:
        pred = np.full(Y.shape, np.nan)
        for fit, held in grouped_folds(np.arange(n), 5, seed=4):  # the CNN's folds
            rows = np.concatenate([fit, n + fit, n + held]) if leak else np.concatenate([fit, n + fit])
            pred[held] = pls_cv_predictions(dep, X_cal, Y_cal, g_cal, make_pre=make, folds=5, seed=0,
                                            fold_pairs=[(rows, held)])[held]
        return np.sqrt(np.mean((pred - Y) ** 2, axis=0))

    np.testing.assert_allclose(got, oof(leak=False), rtol=1e-9)
    assert np.all(oof(leak=True) < got)  # a held-out row's own copy in the fit flatters PLS: none may be there
    own = pls_cv_predictions(dep, X_cal, Y_cal, g_cal, make_pre=make, folds=10, seed=0)[:n]
    assert not np.allclose(np.sqrt(np.mean((own - Y) ** 2, axis=0)), got)  # not PLS's own 10 folds

