"""The int8 CNN emits standardised targets whatever ``[model] standardize_y`` says (issue 12, the int8 output
floor): a network trained in target units is converted with the training rows' mean and standard deviation, so the
bundle ``fit`` writes carries that ``output_transform`` and the edge's own loader predicts in units with an output
step far below the target's range."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from edge.bundle import load_bundle
from tests.support.tiny_fit import CONFIG, write_synthetic
from trainer.config import load_config
from trainer.pipeline import fit

pytestmark = pytest.mark.slow


def test_a_cnn_trained_in_units_still_gets_a_standardised_int8_head(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("units")
    write_synthetic(base / "synthetic.npz")
    assert "[model]\n" in CONFIG
    assert "[pruning]\n" in CONFIG
    (base / "train.toml").write_text(CONFIG.replace("[model]\n", "[model]\nstandardize_y = false\n")
                                     .replace("[pruning]\n", "[pruning]\nenabled = false\n")
                                     + '[selection]\nmodel = "cnn"\n')
    m = fit(load_config(base / "train.toml"), base / "out")
    path = base / "out" / "synthetic-conc.spectrolite"
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    transform = manifest["output_transform"]
    data = np.load(base / "synthetic.npz")
    y = np.asarray(data["y"], dtype=np.float64).reshape(len(data["y"]), -1)[:, 0]
    # The training rows' statistics, not the identity of a network trained in units: a scale of 1 with offset 0
    # would put 0 and every reference value inside one int8 range again.
    assert transform["scale"][0] != pytest.approx(1.0) and transform["offset"][0] != pytest.approx(0.0)
    assert 0.2 * y.std() < transform["scale"][0] < 5 * y.std()
    assert y.min() <= transform["offset"][0] <= y.max()
    step = m["cnn_int8_output_step"]["conc_pct"]
    assert 0 < step < (y.max() - y.min()) / 100
    # The int8 gap is judged in target units: the standardised head's RMS difference times its scale.
    cal = m["cnn_int8_calibration"]
    error = cal["error"][0]
    assert error > 0 and transform["scale"][0] > 1.5  # a scale of 1 would hide the bug this guards against
    assert cal["gap_to_error"][0] == pytest.approx(
        cal["rms_std_per_target"][cal["int8_chosen"]][0] * transform["scale"][0] / error, rel=1e-6)
    bundle = load_bundle(path)
    assert bundle.self_test is not None and bundle.self_test.summary().startswith("PASSED")
    rows = {(e["split"], e["model"]): e["rmsep"] for e in m["evaluations"] if e["target"] == "conc_pct"}
    assert rows[("test", "deployed")] == pytest.approx(rows[("test", "cnn_int8")], rel=1e-5)
    assert rows[("test", "cnn_int8")] / rows[("test", "cnn_float")] < 1.05
    # Pruning turned off is said with its reason in metrics.json and in the report, not only in the log.
    assert m["pruning"]["enabled"] is False and m["pruning"]["reason"] == "enabled = false"
    assert "<td>pruning</td><td>off: enabled = false</td>" in (base / "out" / "report" / "index.html").read_text()


def test_the_intervals_calibrate_on_what_the_int8_cnn_serves(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without selection rows the CNN's intervals calibrate on the training rows' out-of-fold residuals; those come
    from float networks, so each row's int8 change (final int8 minus final float prediction) is added first: the
    half-width is the conformal quantile of the deployed model's residuals, not of the float network's."""
    import importlib

    from tests.trainer.test_no_select import NO_SELECT
    from trainer.conformal import fit_intervals

    fit_stage = importlib.import_module("trainer.pipeline.fit")  # the package's name `fit` is the function
    base = tmp_path_factory.mktemp("int8oof")
    write_synthetic(base / "synthetic.npz")
    (base / "train.toml").write_text(NO_SELECT + '[selection]\nmodel = "cnn"\n')
    seen: dict[str, object] = {}
    real = fit_stage.calibrate

    def spy(cfg, data, deployed, cv, cnn_float_train=None):  # type: ignore[no-untyped-def]
        seen.update(data=data, cv=cv, cnn_float_train=cnn_float_train, deployed=deployed)
        seen["calibration"] = out = real(cfg, data, deployed, cv, cnn_float_train)
        return out

    mp = pytest.MonkeyPatch()
    mp.setattr(fit_stage, "calibrate", spy)
    try:
        result = fit_stage.fit_full(load_config(base / "train.toml"), base / "out")
    finally:
        mp.undo()
    data, cv = seen["data"], seen["cv"]
    tr = data.plan.train_rows  # type: ignore[attr-defined]
    y = np.asarray(data.ds.y[tr], dtype=np.float64).reshape(tr.size, -1)  # type: ignore[attr-defined]
    preds = result.extras["preds"]
    int8_tr, pruned_tr = preds[("train", "cnn_int8")], preds[("train", "cnn_float")]
    # The out-of-fold networks are dense, so the change is measured from the dense network: pruning and int8.
    dense_tr = np.asarray(seen["cnn_float_train"])
    assert result.metrics["pruning"]["enabled"] and not np.array_equal(dense_tr, pruned_tr)
    dense_rmse = float(np.sqrt(np.mean((dense_tr[:, 0] - y[:, 0]) ** 2)))
    assert dense_rmse == pytest.approx(result.metrics["pruning"]["accuracy_cost"]["train"]["conc_pct"]["rmsep_dense"])
    change = int8_tr - dense_tr
    assert np.max(np.abs(change)) > 0  # the deployed model moves some prediction: the test could tell them apart
    expected = y - (cv.oof + change)  # type: ignore[attr-defined]
    np.testing.assert_allclose(seen["calibration"].residuals, expected, rtol=0, atol=1e-9)  # type: ignore[attr-defined]
    q = fit_intervals(expected, 0.8).q_hat
    assert load_bundle(result.bundle_path).intervals.q_hat == pytest.approx(q, rel=1e-6)
    assert result.metrics["deployed_model"] == "cnn"
