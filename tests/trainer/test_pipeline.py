"""End-to-end test of trainer.pipeline.fit on a tiny synthetic dataset: bundle, metrics.json, report, edge check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import check_command, load_bundle
from tests.support.tiny_fit import CONFIG, write_synthetic
from trainer.config import load_config
from trainer.errors import TrainConfigError
from trainer.pipeline import MODELS, classification_metrics, fit, regression_metrics

#: The int8 model run by the edge must track the float Keras model closely on the same rows.
INT8_VS_FLOAT_RTOL = 0.10
#: A deployed PLS model (float32 coefficients in LiteRT, counts in) against scikit-learn's float64 PLS.
PLS_DEPLOYED_RTOL = 1e-3
#: Magnitude pruning hits its target per kernel up to rounding of the count of weights.
PRUNE_SPARSITY_ATOL = 0.02
#: The selection rows' residuals recomputed here go through the bundle's counts path, the trainer's through the
#: absorbance path: float32 rounding apart.
HALF_WIDTH_RTOL = 1e-4


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("fit")
    write_synthetic(base / "synthetic.npz")
    (base / "train.toml").write_text(CONFIG)
    out = base / "out"
    metrics = fit(load_config(base / "train.toml"), out)
    return {"metrics": metrics, "out": out, "base": base}


@pytest.mark.slow
def test_fit_writes_bundle_metrics_and_report(fitted: dict[str, Any]) -> None:
    out: Path = fitted["out"]
    bundles = list(out.glob("*.spectrolite"))
    assert [b.name for b in bundles] == ["synthetic-conc.spectrolite"]
    assert check_command(bundles[0]) == 0
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == fitted["metrics"]
    html = (out / "report" / "index.html").read_text()
    assert "PLS vs CNN" in html and "pred_vs_ref_test.png" in html
    chosen = fitted["metrics"]["cnn_int8_calibration"]["chosen"]
    assert f"CNN conversion (docs/training.md, [quantize])</td><td>{chosen}" in html
    assert f"ranges with {fitted['metrics']['cnn_int8_calibration']['headroom']:g} headroom" in html
    assert "training rows out of fold: nested" in html
    half = fitted["metrics"]["interval_coverage"]["half_widths"]["conc_pct"]
    assert f"half-widths conc_pct: {half:.4g}" in html and "{&#x27;" not in html  # mappings as text, not a repr
    assert f"CNN model bytes (as converted)</td><td>{fitted['metrics']['cnn_model_bytes']}" in html
    shift = fitted["metrics"]["interval_coverage"]["residual_shift"]["test"]["conc_pct"]
    assert f"<tr><td>test</td><td>conc_pct</td><td>{shift['median_abs_test']:.4g}</td>" in html
    for png in ("pred_vs_ref_test.png", "residuals.png", "learning_curves.png", "pls_cv.png", "ood_t2_q.png"):
        assert (out / "report" / png).stat().st_size > 1000
    assert '<section id="interpretability">' in html
    imgs = [p for p in (out / "report").glob("*.png") if p.name.startswith(("explain", "ig", "occlusion", "pls_",
                                                                              "kernels", "vip"))]
    assert imgs, "the interpretability plots are missing"


@pytest.mark.slow
def test_the_fits_warnings_reach_metrics_json_and_the_reports_first_section(tmp_path: Path) -> None:
    """A warning logged mid-fit (here the PLS choice at a [cv] max_components of 1, which the two-band mixtures
    outgrow) is in metrics.json ``warnings`` with its stage, in the bundle's copy of the metrics, and heads the
    report, where a user looks after the log has scrolled away."""
    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "train.toml").write_text(CONFIG.replace("max_components = 8", "max_components = 1")
                                         .replace("[pruning]\ntarget_sparsity = 0.5", "[pruning]\ntarget_sparsity = 0"))
    metrics = fit(load_config(tmp_path / "train.toml"), tmp_path / "out")
    capped = [w for w in metrics["warnings"] if "the most [cv] max_components allows" in w["message"]]
    assert capped == [{"stage": "PLS baseline", "logger": "trainer.pls", "level": "WARNING",
                       "message": capped[0]["message"]}]
    assert capped[0]["message"].startswith("PLS conc_pct: cross-validation chose 1 latent variables")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["warnings"] == metrics["warnings"]
    assert capped[0] in load_bundle(tmp_path / "out" / "synthetic-conc.spectrolite").metrics["warnings"]
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    head = html.split("<h2>")[1]
    assert head.startswith(f"Warnings ({len(metrics['warnings'])})</h2>")
    assert "<b>PLS baseline</b>: PLS conc_pct: cross-validation chose 1 latent variables" in head


@pytest.mark.slow
def test_metrics_schema(fitted: dict[str, Any]) -> None:
    m = fitted["metrics"]
    for key in ("evaluations", "pls_components", "preprocessing", "sparsity", "model_bytes", "bundle_bytes",
                "train_seconds", "interval_coverage"):
        assert key in m, key
    rows = {(e["split"], e["target"], e["model"]) for e in m["evaluations"]}
    assert rows == {(s, "conc_pct", mod) for s in ("train", "select", "test") for mod in MODELS}
    for e in m["evaluations"]:
        assert {"n", "rmsep", "bias", "r2"} <= set(e)
    assert m["splits"] == {"train": 90, "select": 30, "test": 30}
    assert m["preprocessing"]["cnn"] in ("snv", "sg1")
    assert m["bundle_bytes"] == (fitted["out"] / "synthetic-conc.spectrolite").stat().st_size
    assert 0 < m["interval_coverage"]["test"]["conc_pct"] <= 1
    assert m["pruning"]["enabled"] and m["sparsity"] == pytest.approx(0.5, abs=PRUNE_SPARSITY_ATOL)
    assert set(m["pruning"]["accuracy_cost"]["test"]["conc_pct"]) == {"rmsep_dense", "rmsep_pruned"}


@pytest.mark.slow
def test_int8_rows_come_from_the_bundle_on_the_edge(fitted: dict[str, Any]) -> None:
    """Re-run the bundle here with the edge runtime and recompute the test row: it must equal metrics.json."""
    base: Path = fitted["base"]
    bundle = load_bundle(fitted["out"] / "synthetic-conc.spectrolite")
    with np.load(base / "synthetic.npz") as z:
        rows = z["split"] == "test"
        X, y = z["X"][rows].astype(np.float64), z["y"][rows, 0].astype(np.float64)
        wl = z["wavelengths"].astype(np.float64)
    # The config names no [instrument]: the bundle takes counts, as the protocol's firmware sends them.
    assert bundle.input_contract.frame_signal == "counts"
    counts, ctx = bundle.frames_from_signal(X, wl)
    pred = np.asarray(bundle.predict_spectra(counts, **ctx), dtype=np.float64)[:, 0]
    want = regression_metrics(y, pred)
    rows = {e["model"]: e for e in fitted["metrics"]["evaluations"] if e["split"] == "test"}
    assert rows["deployed"]["rmsep"] == pytest.approx(want["rmsep"], rel=1e-9)
    assert rows["cnn_int8"]["rmsep"] == pytest.approx(rows["cnn_float"]["rmsep"], rel=INT8_VS_FLOAT_RTOL)
    # Three epochs make a poor CNN: the champion rule deploys PLS, and the bundle predicts what PLS predicts.
    m = fitted["metrics"]
    assert m["deployed_model"] == "pls" and m["selection"]["winner"] == "pls"
    assert m["selection"]["ratio_cnn_to_pls"]["conc_pct"] > 1.0
    assert rows["deployed"]["rmsep"] == pytest.approx(rows["pls"]["rmsep"], rel=PLS_DEPLOYED_RTOL)
    assert bundle.ood is not None and bundle.ood.n_components == 3
    assert bundle.intervals is not None and bundle.intervals.coverage == pytest.approx(0.8)


@pytest.mark.slow
def test_intervals_are_calibrated_on_selection_and_nested_out_of_fold_residuals(fitted: dict[str, Any]) -> None:
    """The deployed PLS's half-width is the conformal order statistic of the selection rows' residuals and of the
    training rows' residuals out of fold, the PLS chosen again (preprocessing, latent variables) in every fold."""
    from functools import partial

    from trainer.conformal import fit_intervals, nested_oof_predictions
    from trainer.pipeline.baseline import deployable_pls_on
    from trainer.pipeline.prepare import prepare_data

    cov = fitted["metrics"]["interval_coverage"]
    assert cov["out_of_fold"] == "nested" and cov["nested_folds"] == 5  # [cv] folds: 90 rows, far below the cap
    assert cov["calibration"] == {"select": 30, "train_out_of_fold": 90} and cov["calibration_rows"] == 120
    cfg = load_config(fitted["base"] / "train.toml")
    data = prepare_data(cfg, lambda stage: None)
    X, Y, tr, sel = data.ds.X, data.ds.y.astype(np.float64), data.plan.train_rows, data.plan.select_rows
    oof = nested_oof_predictions(X[tr], Y[tr], data.groups[tr], fit_fn=partial(deployable_pls_on, cfg, data),
                                 folds=cfg.cv.folds, seed=cfg.seed)
    bundle = load_bundle(fitted["out"] / "synthetic-conc.spectrolite")
    counts, ctx = bundle.frames_from_signal(X[sel], data.ds.wavelengths)
    sel_pred = np.asarray(bundle.predict_spectra(counts, **ctx), dtype=np.float64).reshape(sel.size, -1)
    want = fit_intervals(np.concatenate([Y[sel] - sel_pred, Y[tr] - oof]), 0.8)
    assert bundle.intervals is not None
    np.testing.assert_allclose(bundle.intervals.q_hat, want.q_hat, rtol=HALF_WIDTH_RTOL)
    assert cov["half_widths"]["conc_pct"] == pytest.approx(float(want.q_hat[0]), rel=HALF_WIDTH_RTOL)
    # Each test split's errors against these calibration residuals (the same rows as the half-width's).
    shift = cov["residual_shift"]["test"]["conc_pct"]
    resid = np.concatenate([Y[sel] - sel_pred, Y[tr] - oof])[:, 0]
    assert shift["median_abs_calibration"] == pytest.approx(float(np.median(np.abs(resid))), rel=HALF_WIDTH_RTOL)


@pytest.mark.slow
def test_int8_calibration_is_chosen_on_training_and_selection_rows(fitted: dict[str, Any]) -> None:
    """Every calibration variant is scored against the float network on the 90 + 30 non-test rows, one is kept;
    the 16-bit-activation conversion only where the int8 one's gap exceeds MAX_GAP of the CNN's own error."""
    from trainer.pipeline.int8 import MAX_GAP
    from trainer.quant_ranges import CANDIDATES, WIDE

    m = fitted["metrics"]
    cal = m["cnn_int8_calibration"]
    assert cal["rows"] == 90 + 30 and cal["headroom"] == 0.25  # [quantize] headroom's default, recorded
    assert set(cal["rms_std"]) == {*CANDIDATES, WIDE} and cal["chosen"] in {*CANDIDATES, WIDE}
    assert all(np.isfinite(v) and v >= 0 for v in cal["rms_std"].values())
    # the int8 model kept is the closest int8 variant, or the plain one on a near tie ...
    best = min(cal["rms_std"][name] for name in CANDIDATES)
    assert cal["int8_chosen"] in CANDIDATES and cal["max_gap"] == MAX_GAP
    assert cal["rms_std"][cal["int8_chosen"]] == best or cal["int8_chosen"] == "minmax"
    assert cal["chosen"] in (cal["int8_chosen"], WIDE)
    # ... and the wide conversion replaces it exactly where the rule says
    assert cal["error_source"] == "cnn_cv_rmse" and cal["error"] == pytest.approx(
        [m["selection"]["cv_rmse"]["cnn_float"][t] for t in m["targets"]])
    assert (cal["chosen"] == WIDE) == (max(cal["gap_to_error"]) > MAX_GAP
                                       and cal["rms_std"][WIDE] < (1 - 0.02) * cal["rms_std"][cal["int8_chosen"]])
    # every target has an output step, the wide conversion's being its 16-bit one
    assert all(v > 0 for v in m["cnn_int8_output_step"].values())


def test_metric_helpers() -> None:
    r = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    assert (r["n"], r["rmsep"], r["bias"], r["sep"]) == (3, 1.0, 1.0, 0.0)
    assert r["r2"] == pytest.approx(1 - 3 / 2)
    assert classification_metrics(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))["accuracy"] == 0.75


@pytest.mark.slow
def test_cli_keygen_and_sign_make_a_bundle_the_edge_verifies(fitted: dict[str, Any], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from trainer.cli import main

    bundle = tmp_path / "signed.spectrolite"
    shutil.copy(fitted["out"] / "synthetic-conc.spectrolite", bundle)
    assert main(["keygen", str(tmp_path / "keys")]) == 0
    assert main(["sign", str(bundle), "--key", str(tmp_path / "keys" / "spectrolite.key.pem")]) == 0
    capsys.readouterr()
    assert check_command(bundle, tmp_path / "keys" / "spectrolite.pub.pem") == 0
    assert "result: OK" in capsys.readouterr().out


def test_a_split_too_small_for_the_intervals_is_refused_before_training(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "train.toml").write_text(CONFIG.replace("coverage = 0.8", "coverage = 0.995"))
    with pytest.raises(TrainConfigError, match=r"intervals at coverage 0.995 need at least 199 calibration rows "
                                                r"\(selection rows \+ training rows out of fold\), got 30 \+ 90 "
                                                r"\(nothing was trained\)"):
        fit(load_config(tmp_path / "train.toml"), tmp_path / "out")
    assert not (tmp_path / "out" / "synthetic-conc.spectrolite").exists()


def test_few_selection_rows_suffice_when_the_training_rows_give_out_of_fold_residuals(tmp_path: Path) -> None:
    """A small calibration set (60 gasoline spectra, 21 yarn spectra) leaves a 20 % hold-out under the 9 rows a 90 %
    interval needs; the intervals also calibrate on every training row's out-of-fold residual, so the split is
    accepted unless --model cnn leaves those out."""
    from dataclasses import replace

    from trainer.pipeline.prepare import prepare_data

    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "train.toml").write_text(CONFIG.replace("coverage = 0.8", "coverage = 0.9").replace(
        'select = {split = "val"}', 'select = {split = "val", sample_id = ["s030", "s031"]}'))
    cfg = load_config(tmp_path / "train.toml")
    data = prepare_data(cfg, lambda _: None)
    assert (data.plan.train_rows.size, data.plan.select_rows.size) == (90, 6)
    cnn_only = replace(cfg, selection=replace(cfg.selection, model="cnn"))
    with pytest.raises(TrainConfigError, match=r"intervals at coverage 0.9 need at least 9 selection rows with "
                                                r"model = 'cnn' \(no out-of-fold residuals of the training rows\), "
                                                r"got 6 \(nothing was trained\)"):
        prepare_data(cnn_only, lambda _: None)


def test_spectra_a_counts_conversion_cannot_produce_are_refused(tmp_path: Path) -> None:
    """Values up to ~50 are not absorbance: a counts bundle would floor them all; the config must say the device
    sends its processed signal."""
    write_synthetic(tmp_path / "base.npz")
    with np.load(tmp_path / "base.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["X"] = arrays["X"] * 50.0
    np.savez(tmp_path / "synthetic.npz", **arrays)
    (tmp_path / "train.toml").write_text(CONFIG)
    with pytest.raises(TrainConfigError, match=r"expected absorbance spectra \(at most 10\) for a counts instrument, "
                                                r"got values up to .* set \[instrument\] signal = \"absorbance\""):
        fit(load_config(tmp_path / "train.toml"), tmp_path / "out")
    # The same spectra, declared as a processed signal the device sends, train.
    (tmp_path / "train.toml").write_text(CONFIG.replace("[split]", '[instrument]\nsignal = "absorbance"\n[split]', 1))
    from trainer.config import load_config as load

    assert load(tmp_path / "train.toml").instrument.signal == "absorbance"
