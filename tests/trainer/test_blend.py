"""A blend of the CNN and PLS, end to end: a fit where the CNN wins a target in cross-validation and the out-of-fold
predictions say that a weighted average of the two beats both writes a format-5 bundle whose edge predictions are
that average, with intervals calibrated on the blend's own held-out residuals; a target PLS wins stays PLS alone;
``[selection] blend = false`` keeps single models."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import BLEND_FORMAT_VERSION, check_command, load_bundle
from tests.support.per_target import CONFIG, N_CHANNELS, TARGETS
from trainer.champion import BLEND_GRID
from trainer.config import load_config
from trainer.pipeline import fit_full

#: The deployed PLS share (float32 coefficients in LiteRT, behind the counts conversion) against the trainer's float64
#: deployable PLS, and the CNN share against the trainer's int8 CNN through the edge runtime (one output step).
PLS_RTOL = 1e-3
CNN_INT8_STEPS = 1.0


def _write_overlapping(path: Path, n: int = 240, seed: int = 0) -> None:
    """Both targets mix a linear term (what PLS models exactly) with a steep one (what only the CNN follows), so the
    two models err differently: on ``linear_pct`` the steep term is small and PLS wins, on ``curved_pct`` it is
    larger and the CNN wins by about 12 %, with errors comparable to PLS's. Rows 0-159 ``cal``, 160-199 ``val``, the
    rest ``test``."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(900.0, 1100.0, N_CHANNELS)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 300.0) for c in (960.0, 1040.0)])
    conc = rng.uniform(0.1, 1.0, size=(n, 2))
    X = conc @ bands + 0.2 + rng.normal(0, 0.001, size=(n, N_CHANNELS))
    steep = 10.0 / (1.0 + np.exp(-12.0 * (conc[:, 1] - 0.55)))
    y = np.stack([10.0 * conc[:, 0] + 0.15 * steep, 10.0 * conc[:, 0] + 0.38 * steep], axis=1)
    split = np.where(np.arange(n) < 160, "cal", np.where(np.arange(n) < 200, "val", "test"))
    np.savez(path, X=X.astype(np.float32), wavelengths=wl, y=y.astype(np.float32),
             target_names=np.array(list(TARGETS)), split=split)


def _fit(base: Path, extra: str = "") -> Any:
    _write_overlapping(base / "mix.npz")
    text = CONFIG.format(data="mix.npz", model_version="0.0.1").replace("[selection]\n", "[selection]\n" + extra)
    (base / "train.toml").write_text(text)
    return fit_full(load_config(base / "train.toml"), base / "out")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("blend")
    return {"res": _fit(base), "base": base}


@pytest.mark.slow
def test_a_blend_serves_where_it_beats_both_models_out_of_fold(fitted: dict[str, Any]) -> None:
    m = fitted["res"].metrics
    sel = m["selection"]
    cv = sel["cv_rmse"]
    # On the development host: curved_pct CNN / PLS 0.88 out of fold, the blend 8 % better than the CNN;
    # linear_pct CNN / PLS 1.5, so PLS serves it alone whatever a blend would score.
    assert sel["per_target"] == {"linear_pct": "pls", "curved_pct": "blend"}, sel
    assert m["deployed_model"] == "per_target" and m["deployed_per_target"] == sel["per_target"]
    for t, served in sel["per_target"].items():
        best_single = min(cv["cnn_int8_oof"][t], cv["pls_nested"][t])
        if served == "blend":
            assert sel["blend_weights"][t] in BLEND_GRID and sel["ratio_cnn_to_pls"][t] < 0.98
            assert cv["blend"][t] < 0.98 * best_single
            assert "beats both out of fold" in sel["per_target_reason"][t]
        else:
            assert t not in sel["blend_weights"]
            assert served == "pls" or cv["blend"][t] >= 0.98 * best_single
    assert "blend (1 - w) CNN + w PLS serves a target the CNN won" in sel["rule"]
    assert sorted(d["name"] for d in m["deployed_members"]) == ["cnn", "pls"]
    assert m["interval_coverage"]["out_of_fold"] == "per_target (linear_pct: nested; curved_pct: blend of both)"
    assert json.loads((fitted["base"] / "out" / "metrics.json").read_text()) == m


@pytest.mark.slow
def test_the_bundle_serves_the_blend_as_the_edge_runs_it(fitted: dict[str, Any]) -> None:
    res = fitted["res"]
    sel = res.metrics["selection"]
    path: Path = res.bundle_path
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format_version"] == BLEND_FORMAT_VERSION
    assert check_command(path) == 0
    bundle = load_bundle(path)
    assert bundle.serving is not None and bundle.serving.weights is not None
    names = [t.name for t in bundle.targets]
    # member 1's weight per target: PLS's blend weight when member 1 is the PLS, the CNN's when it is the CNN
    second = bundle.serving.second.name
    for j, t in enumerate(names):
        w_pls = sel["blend_weights"].get(t, 1.0 if sel["per_target"][t] == "pls" else 0.0)
        assert bundle.serving.weights[j] == pytest.approx(w_pls if second == "pls" else 1.0 - w_pls)

    data = np.load(fitted["base"] / "mix.npz")
    rows = np.flatnonzero(data["split"] == "test")
    X = data["X"][rows].astype(np.float64)
    deployed = np.asarray(bundle.predict_signal(X, data["wavelengths"]), dtype=np.float64)
    pls = res.extras["deployable_pls"].predict(X)
    cnn = res.extras["preds"][("test", "cnn_int8")]
    cnn_member = bundle.runtime if second == "pls" else bundle.serving.second.runtime
    step = cnn_member.output_step
    assert step is not None
    ev = {(e["split"], e["target"], e["model"]): e["rmsep"] for e in res.metrics["evaluations"]}
    truth = data["y"][rows].astype(np.float64)
    for j, t in enumerate(names):
        w = sel["blend_weights"].get(t)
        if w is None:
            continue
        want = (1.0 - w) * cnn[:, j] + w * pls[:, j]
        tol = (1.0 - w) * CNN_INT8_STEPS * float(step[j]) + w * PLS_RTOL * np.abs(pls[:, j]) + 1e-6
        assert np.all(np.abs(deployed[:, j] - want) <= tol), t
        # neither model alone
        assert np.max(np.abs(deployed[:, j] - cnn[:, j])) > 3 * float(step[j])
        assert np.max(np.abs(deployed[:, j] - pls[:, j])) > 1e-2
        rmsep = float(np.sqrt(np.mean((deployed[:, j] - truth[:, j]) ** 2)))
        assert ev[("test", t, "deployed")] == pytest.approx(rmsep, rel=1e-5)


@pytest.mark.slow
def test_blend_false_keeps_single_models(tmp_path: Path) -> None:
    res = _fit(tmp_path, "blend = false\n")
    sel = res.metrics["selection"]
    assert "blend" not in sel["per_target"].values() and sel["blend_weights"] == {}
    assert "blend" not in sel["cv_rmse"]
    with zipfile.ZipFile(res.bundle_path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format_version"] < BLEND_FORMAT_VERSION and "weights" not in manifest.get("serving", {})
