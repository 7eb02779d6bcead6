"""A regression whose ``[split]`` names no ``select`` (issue 12, cause 2): every calibration row trains, everything
is chosen by grouped cross-validation on them, and the intervals calibrate on their out-of-fold residuals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import check_command, load_bundle
from tests.support.tiny_fit import CONFIG, write_synthetic
from trainer.config import load_config
from trainer.errors import TrainConfigError
from trainer.pipeline import MODELS
from trainer.pipeline.fit import fit_full

#: The tiny config with no selection rows: the 40 calibration samples (split cal + val, 120 spectra) all train.
NO_SELECT = CONFIG.replace('train = {split = "cal"}\nselect = {split = "val"}\n', 'train = {split = ["cal", "val"]}\n')


def _write(base: Path, text: str = NO_SELECT) -> Path:
    write_synthetic(base / "synthetic.npz")
    (base / "train.toml").write_text(text)
    return base / "train.toml"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("nosel")
    assert "select" not in NO_SELECT.split("[split.test]")[0].split("[split]")[1]
    result = fit_full(load_config(_write(base)), base / "out")
    return {"result": result, "base": base}


@pytest.mark.slow
def test_a_config_without_select_writes_a_bundle_the_edge_loads_and_self_tests(fitted: dict[str, Any]) -> None:
    result = fitted["result"]
    assert check_command(result.bundle_path) == 0  # the edge's loader and its golden-vector self-test
    bundle = load_bundle(result.bundle_path)
    assert bundle.intervals is not None and np.all(np.isfinite(bundle.intervals.q_hat))
    m = result.metrics
    assert m["splits"] == {"train": 120, "test": 30}
    rows = {(e["split"], e["target"], e["model"]) for e in m["evaluations"]}
    assert rows == {(s, "conc_pct", mod) for s in ("train", "test") for mod in MODELS}
    assert all(np.isfinite(e["rmsep"]) for e in m["evaluations"])
    cov = m["interval_coverage"]
    assert cov["calibration"] == {"select": 0, "train_out_of_fold": 120} and cov["calibration_rows"] == 120
    assert 0 < cov["test"]["conc_pct"] <= 1
    # The champion's int8 cost and the int8 calibration variant are measured on the training rows alone.
    assert m["selection"]["int8_cost_rows"] == "train"
    assert m["selection"]["int8_cost_basis"] == (
        "out_of_fold" if m["selection"]["cv_rmse"].get("cnn_float") else "in_sample")
    assert np.isfinite(m["selection"]["int8_cost"]["conc_pct"])
    assert m["cnn_int8_calibration"]["rows"] == 120 and m["cnn_int8_calibration"]["roles"] == ["train"]
    assert "training rows" in m["cnn_int8_calibration"]["criterion"]
    assert "selection" not in m["cnn_int8_calibration"]["criterion"]
    # The CNN ran its configured epochs, the last one kept (no selection loss to pick another).
    assert m["cnn_best_epochs"] == [3]
    html = (result.report_path).read_text()
    assert "pred_vs_ref_select.png" not in html and "pred_vs_ref_test.png" in html
    assert "measured on the training rows, out of fold" in html and "([split] names no selection rows)" in html
    assert "No selection rows: every calibration row" in html


@pytest.mark.slow
def test_the_pls_is_fitted_on_every_calibration_row(fitted: dict[str, Any]) -> None:
    """The run's PLS predicts exactly as a PLS fitted (same CV) on all 120 calibration rows, found here from the
    data file, not from the plan."""
    from trainer.pipeline.baseline import fit_pls_on
    from trainer.pipeline.prepare import prepare_data

    result, base = fitted["result"], fitted["base"]
    with np.load(base / "synthetic.npz") as z:
        cal = np.flatnonzero(np.isin(z["split"], ["cal", "val"]))
        test = np.flatnonzero(z["split"] == "test")
    np.testing.assert_array_equal(result.extras["plan"].train_rows, cal)
    cfg = load_config(base / "train.toml")
    data = prepare_data(cfg, lambda _: None)
    X, Y = data.ds.X, data.ds.y.astype(np.float64)
    ref = fit_pls_on(cfg, data, X[cal], Y[cal], data.groups[cal])
    run_pls = result.extras["pls"]
    assert run_pls.components == ref.components
    np.testing.assert_array_equal(run_pls.predict(X[test]), ref.predict(X[test]))
    fewer = fit_pls_on(cfg, data, X[cal[:90]], Y[cal[:90]], data.groups[cal[:90]])
    assert not np.array_equal(run_pls.predict(X[test]), fewer.predict(X[test]))


def test_too_few_calibration_rows_are_refused_with_the_numbers(tmp_path: Path) -> None:
    cfg_path = _write(tmp_path, NO_SELECT.replace("coverage = 0.8", "coverage = 0.995"))
    with pytest.raises(TrainConfigError, match=r"intervals at coverage 0.995 need at least 199 calibration rows "
                                                r"\(training rows out of fold; \[split\] names no select rows\), "
                                                r"got 120 \(nothing was trained\)"):
        fit_full(load_config(cfg_path), tmp_path / "out")
    assert not (tmp_path / "out" / "synthetic-conc.spectrolite").exists()


def test_too_few_rows_for_line_copy_ood_limits_are_refused_before_training(tmp_path: Path) -> None:
    """A newcomer's 21-row calibration with the example's ``[instrument.noise]`` trained 8 minutes, then failed in
    the OOD step: the split check now refuses it first, with the numbers and the two ways out."""
    nine = ", ".join(f'"s{i:03d}"' for i in range(9))  # 9 samples x 3 replicates = 27 training rows
    text = (CONFIG.replace('train = {split = "cal"}', f"train = {{sample_id = [{nine}]}}")
            .replace("[cv]\nfolds = 5", "[instrument]\nsignal = \"counts\"\n[instrument.noise]\naverages = 64\n"
                     "[cv]\nfolds = 5"))
    cfg = load_config(_write(tmp_path, text))
    assert cfg.instrument.noise is not None
    with pytest.raises(TrainConfigError, match=r"the OOD limits on the line detector's copies \(\[instrument.noise\]\) "
                                                r"need at least 30 training rows, got 27: \[ood\] include_select = "
                                                r"true \(the OOD model then fits the selection rows too\), add "
                                                r"calibration rows, or remove \[instrument.noise\].* \(nothing was "
                                                r"trained\)"):
        fit_full(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    alone = load_config(_write(tmp_path, text.replace('select = {split = "val"}\n', "")))  # no rows to include
    with pytest.raises(TrainConfigError, match=r"need at least 30 training rows, got 27: add calibration rows"):
        fit_full(alone, tmp_path / "out")
    from dataclasses import replace

    from trainer.pipeline.prepare import prepare_data

    # The selection rows count when [ood] include_select fits the OOD model on them too (27 + 30 rows).
    prepare_data(replace(cfg, ood=replace(cfg.ood, include_select=True)), lambda _: None)
    # So do they for a fixed component count, which the OOD model caps at its rows - 2.
    plain = replace(cfg, instrument=replace(cfg.instrument, noise=None))
    many = replace(plain.ood, n_components=30, max_components=40)
    with pytest.raises(TrainConfigError, match=r"\[ood\] n_components = 30 needs at least 32 training rows for the "
                                                r"OOD model, got 27: lower it"):
        prepare_data(replace(plain, ood=many), lambda _: None)
    prepare_data(replace(plain, ood=replace(many, n_components=25)), lambda _: None)
    prepare_data(replace(plain, ood=replace(many, include_select=True)), lambda _: None)


def test_without_select_the_plan_has_no_selection_rows_and_model_cnn_cross_validates(tmp_path: Path) -> None:
    """No selection rows, and ``--model cnn`` still passes the split check: its CNN is cross-validated for the
    intervals (the folds are checked against the training groups, with the numbers)."""
    from dataclasses import replace

    from trainer.pipeline.prepare import prepare_data

    cfg = load_config(_write(tmp_path))
    data = prepare_data(cfg, lambda _: None)
    assert data.plan.select_rows.size == 0 and "select" not in data.plan.roles()
    cnn_only = replace(cfg, selection=replace(cfg.selection, model="cnn", cnn_cv_folds=50))
    with pytest.raises(TrainConfigError, match=r"cross-validation with 50 folds needs at least 50 groups of "
                                                r"training rows, got 40"):
        prepare_data(cnn_only, lambda _: None)
    with_select = load_config(_write(tmp_path, CONFIG))
    prepare_data(replace(with_select, selection=replace(with_select.selection, model="cnn", cnn_cv_folds=50)),
                 lambda _: None)  # with selection rows, --model cnn skips the CNN cross-validation


def test_a_classification_without_select_holds_nothing_out(tmp_path: Path) -> None:
    from dataclasses import replace

    from trainer.config import SplitConfig
    from trainer.data import load_configured
    from trainer.splits import make_split_plan

    cfg = load_config(_write(tmp_path))
    ds = load_configured(cfg.data)
    split = SplitConfig.from_dict({"group": "sample_id", "train": {"split": ["cal", "val"]},
                                   "test": {"test": {"split": "test"}}})
    assert split.select is None
    for data in (ds, replace(ds, y=(ds.y > 5).astype(np.int64), class_names=("low", "high"))):
        plan = make_split_plan(data, split, seed=0)
        assert plan.select_rows.size == 0 and plan.train_rows.size == 120


@pytest.mark.slow
def test_a_classification_fit_without_select_is_chosen_out_of_fold_and_serves(tmp_path: Path) -> None:
    """Issue 12, cause 2, for a classification: no rows are held out; the champion rule weighs the training rows'
    out-of-fold error rates alone, and the bundle the fit writes passes the edge's own checks."""
    from tests.support.tiny_fit import CLASS_CONFIG, write_classes

    write_classes(tmp_path / "classes.npz")
    text = CLASS_CONFIG.replace('train = {split = "cal"}\nselect = {split = "val"}\n',
                                'train = {split = ["cal", "val"]}\n')
    assert text != CLASS_CONFIG
    (tmp_path / "train.toml").write_text(text)
    result = fit_full(load_config(tmp_path / "train.toml"), tmp_path / "out")
    m = result.metrics
    assert m["splits"] == {"train": 120, "test": 30}
    assert {e["split"] for e in m["evaluations"]} == {"train", "test"}
    cv = m["selection"]["cv_rmse"]
    # Without selection rows the pooled error rates are the out-of-fold ones, the CNN's with its int8 class changes.
    assert cv["pooled_error_pls_da"] == pytest.approx(cv["pls"])
    assert cv["pooled_error_cnn"] == pytest.approx(cv["cnn_int8_oof"])
    assert "120 training rows out of fold (the CNN with its int8 class changes)" in m["selection"]["reason"]
    assert "without them, a training row whose class the int8 CNN changes" in m["selection"]["rule"]
    assert m["cnn_int8_calibration"]["roles"] == ["train"]
    assert check_command(result.bundle_path) == 0


def test_the_int8_class_changes_count_in_a_classification_without_selection_rows() -> None:
    from trainer.pipeline.choose import class_int8_oof_error

    y = np.array([0, 1, 2, 1])
    oof = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])  # row 2 wrong out of fold
    final_float = np.array([0, 1, 2, 1])
    assert class_int8_oof_error(y, oof, final_float, final_float) == pytest.approx(0.25)  # int8 changes nothing
    int8 = np.array([0, 2, 2, 1])  # int8 moves row 1 to class 2 (wrong) and leaves row 2 as the float network
    assert class_int8_oof_error(y, oof, final_float, int8) == pytest.approx(0.5)
    fixed = np.array([0, 1, 2, 1])
    assert class_int8_oof_error(y, oof, np.array([0, 1, 1, 1]), fixed) == pytest.approx(0.0)  # int8 mends row 2


def test_wheat_and_tecator_examples_name_no_select_and_tablets_keeps_its_protocol_split(repo_root: Path) -> None:
    wheat = load_config(repo_root / "examples" / "wheat_protein.toml")
    assert wheat.split.select is None
    for name in ("tecator_fat.toml", "tecator_fat_moisture.toml"):
        tecator = load_config(repo_root / "examples" / name)
        assert tecator.split.select is None
        assert tecator.split.train is not None
        assert dict(tecator.split.train.where) == {"statlib_subset": ["C_train", "M_monitor"]}
    tablets = load_config(repo_root / "examples" / "tablets_assay.toml")
    assert tablets.split.select is not None and dict(tablets.split.select.where)["split"] == "validate"
    for name in ("coffee.toml", "fruit_puree.toml", "meat_species.toml", "olive_oil.toml"):  # no protocol split
        classes = load_config(repo_root / "examples" / name)
        assert classes.split.method == "grouped_kfold" and classes.split.select_fold is None, name


@pytest.mark.slow
def test_model_cnn_without_select_calibrates_its_intervals_on_the_cnn_cross_validation(tmp_path: Path) -> None:
    """--model cnn has no selection rows to calibrate on: its CNN is cross-validated and the intervals come from
    those out-of-fold residuals of every training row (never from the in-sample fit)."""
    from dataclasses import replace

    cfg = load_config(_write(tmp_path))
    result = fit_full(replace(cfg, selection=replace(cfg.selection, model="cnn", cnn_cv_folds=3)), tmp_path / "out")
    m = result.metrics
    assert m["deployed_model"] == "cnn" and m["selection"]["folds"] == 3
    cov = m["interval_coverage"]
    assert cov["out_of_fold"] == "fixed_recipe"
    assert cov["calibration"] == {"select": 0, "train_out_of_fold": 120}
    assert 0 < cov["test"]["conc_pct"] <= 1
    assert check_command(result.bundle_path) == 0
