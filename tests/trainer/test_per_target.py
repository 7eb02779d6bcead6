"""The champion rule per target, end to end: a fit where the CNN wins one target and PLS the other writes a two-model
bundle (format 4) whose edge predictions are each target's winner, loaded by the edge's own code."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import MODEL_2, SERVING_FORMAT_VERSION, check_command, load_bundle
from tests.support.per_target import CONFIG, write_mixtures
from trainer.config import load_config
from trainer.pipeline import fit_full

#: The deployed PLS (float32 coefficients in LiteRT, behind the counts conversion) against the trainer's float64
#: deployable PLS on the same rows.
PLS_RTOL = 1e-3
#: The deployed CNN target (counts in, through the bundle's leading steps) against the trainer's int8 CNN run by
#: the edge runtime on absorbance: float rounding before quantisation may move an output by one int8 step.
CNN_INT8_STEPS = 1.0


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("per_target")
    write_mixtures(base / "mix.npz")
    (base / "train.toml").write_text(CONFIG.format(data="mix.npz", model_version="0.0.1"))
    res = fit_full(load_config(base / "train.toml"), base / "out")
    return {"res": res, "base": base}


@pytest.mark.slow
def test_each_target_is_served_by_its_winner(fitted: dict[str, Any]) -> None:
    m = fitted["res"].metrics
    sel = m["selection"]
    assert sel["per_target"] == {"linear_pct": "pls", "curved_pct": "cnn"}, sel
    assert m["deployed_model"] == "per_target" and sel["winner"] == "per_target"
    assert m["deployed_per_target"] == {"linear_pct": "pls", "curved_pct": "cnn"}
    assert sel["ratio_cnn_to_pls"]["curved_pct"] < 0.98 <= sel["ratio_cnn_to_pls"]["linear_pct"]
    assert "per target: linear_pct PLS" in sel["reason"]
    assert [d["name"] for d in m["deployed_members"]] == ["pls", "cnn"]  # a tie on count: the first target's model
    assert m["interval_coverage"]["out_of_fold"] == "per_target (linear_pct: nested; curved_pct: fixed_recipe)"
    assert json.loads((fitted["base"] / "out" / "metrics.json").read_text()) == m


@pytest.mark.slow
def test_the_two_model_bundle_serves_each_target_from_its_own_model(fitted: dict[str, Any]) -> None:
    res = fitted["res"]
    path: Path = res.bundle_path
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert MODEL_2 in zf.namelist()
    assert manifest["format_version"] == SERVING_FORMAT_VERSION
    assert manifest["serving"]["targets"] == ["pls", "cnn"]
    assert check_command(path) == 0
    bundle = load_bundle(path)
    assert bundle.serving is not None and bundle.serving.second.name == "cnn"
    assert not bundle.runtime.is_quantized and bundle.serving.second.runtime.is_quantized

    data = np.load(fitted["base"] / "mix.npz")
    rows = np.flatnonzero(data["split"] == "test")
    X = data["X"][rows].astype(np.float64)
    deployed = np.asarray(bundle.predict_signal(X, data["wavelengths"]), dtype=np.float64)
    # Target 0 from the PLS: the trainer's own deployable PLS (float64) on the same rows.
    dep = res.extras["deployable_pls"]
    np.testing.assert_allclose(deployed[:, 0], dep.predict(X)[:, 0], rtol=PLS_RTOL)
    # Target 1 from the int8 CNN: the trainer's int8 predictions through the edge runtime.
    cnn = res.extras["preds"][("test", "cnn_int8")]
    step = bundle.serving.second.runtime.output_step
    assert step is not None
    assert np.max(np.abs(deployed[:, 1] - cnn[:, 1])) <= CNN_INT8_STEPS * float(step[1]) * (1 + 1e-6)
    # Neither member alone gives the deployed values.
    pls_alone = np.asarray(bundle.predict_features(bundle.preprocess_signal(X, data["wavelengths"])))
    assert not np.allclose(pls_alone[:, 1], deployed[:, 1])
    np.testing.assert_array_equal(pls_alone[:, 0].astype(np.float32), deployed[:, 0].astype(np.float32))

    ev = {(e["split"], e["target"], e["model"]): e["rmsep"] for e in res.metrics["evaluations"]}
    truth = data["y"][rows].astype(np.float64)
    for j, t in enumerate(("linear_pct", "curved_pct")):
        rmsep = float(np.sqrt(np.mean((deployed[:, j] - truth[:, j]) ** 2)))
        assert ev[("test", t, "deployed")] == pytest.approx(rmsep, rel=1e-5)
    assert ev[("test", "curved_pct", "deployed")] < ev[("test", "curved_pct", "pls")]
