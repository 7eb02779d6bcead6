"""A fit whose targets chose different PLS preprocessings, through the real seam: ``fit_full`` writes the bundle,
the edge's own loader reads it, and counts as a spectrometer sends them come out as each target's tuned PLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import check_command, load_bundle
from tests.support.tiny_fit import SMALL_CNN
from trainer.config import load_config
from trainer.pipeline import fit_full, regression_metrics

#: The deployed PLS (float32 coefficients in LiteRT, behind the counts conversion) against scikit-learn's float64
#: PLS baseline on the same rows.
PLS_RTOL = 1e-3

CONFIG = """
seed = 0
report = false
[data]
path = "scatter.npz"
targets = ["relative_pct", "scatter_pct"]
[instrument]
signal = "counts"
quantity = "absorbance"
[split]
train = {split = "cal"}
select = {split = "val"}
[split.test]
test = {split = "test"}
[selection]
model = "pls"
cnn_cv_folds = 2
[cv]
folds = 5
max_components = 6
[preprocessing]
cnn = "snv"
[preprocessing.candidates]
center = [{op = "center"}]
snv = [{op = "snv"}]
[augment]
n_copies = 0
[model]
""" + SMALL_CNN + """epochs = 3
batch_size = 16
[quantize]
representative_samples = 40
subprocess = false
[ood]
n_components = 3
[bundle]
model_id = "scatter-pls"
model_version = "0.0.1"
"""


def write_scatter(path: Path, n: int = 160, seed: int = 0) -> None:
    """Mixtures under a multiplicative scatter: ``relative_pct`` (a relative concentration) wants SNV, which removes
    the scatter, ``scatter_pct`` (the scatter itself) the centred spectra. Rows 0-99 ``cal``, 100-119 ``val``, the
    rest ``test``."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(900.0, 1100.0, 40)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 200.0) for c in (950.0, 1000.0, 1050.0)])
    conc = rng.uniform(0.1, 1.0, (n, 3))
    scale = rng.uniform(0.5, 1.5, (n, 1))
    X = scale * (0.5 + conc @ bands) + rng.normal(0, 1e-3, (n, 40))
    y = np.column_stack([conc[:, 0] / conc.sum(axis=1) * 10, scale[:, 0] * 10])
    split = np.where(np.arange(n) < 100, "cal", np.where(np.arange(n) < 120, "val", "test"))
    np.savez(path, X=X.astype(np.float32), wavelengths=wl, y=y.astype(np.float32),
             target_names=np.array(["relative_pct", "scatter_pct"]), split=split)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("stacked_pls")
    write_scatter(base / "scatter.npz")
    (base / "train.toml").write_text(CONFIG)
    return {"res": fit_full(load_config(base / "train.toml"), base / "out"), "base": base}


@pytest.mark.slow
def test_each_target_is_served_by_the_pls_tuned_for_it(fitted: dict[str, Any]) -> None:
    m = fitted["res"].metrics
    assert m["preprocessing"]["pls"] == {"relative_pct": "snv", "scatter_pct": "center"}, \
        "the data no longer split the candidates"
    assert m["deployed_model"] == "pls" and m["deployed_pls"]["candidate"] == "snv+center"
    assert m["deployed_pls"]["branches"] == ["snv", "center"]
    path: Path = fitted["res"].bundle_path
    assert check_command(path) == 0
    bundle = load_bundle(path)
    assert bundle.input_contract.frame_signal == "counts"
    with np.load(fitted["base"] / "scatter.npz") as z:
        rows = z["split"] == "test"
        X, Y, wl = z["X"][rows].astype(np.float64), z["y"][rows].astype(np.float64), z["wavelengths"]
    counts, ctx = bundle.frames_from_signal(X, wl)
    pred = np.asarray(bundle.predict_spectra(counts, **ctx), dtype=np.float64)
    want = {(e["target"], e["model"]): e["rmsep"] for e in m["evaluations"] if e["split"] == "test"}
    for j, target in enumerate(("relative_pct", "scatter_pct")):
        rmsep = regression_metrics(Y[:, j], pred[:, j])["rmsep"]
        assert rmsep == pytest.approx(want[(target, "deployed")], rel=1e-9)
        assert rmsep == pytest.approx(want[(target, "pls")], rel=PLS_RTOL), target
