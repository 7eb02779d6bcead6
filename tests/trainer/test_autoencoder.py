"""The autoencoder OOD statistic through ``spectro-train fit`` (``[ood] autoencoder = true``) on a tiny dataset: the
member is written and declared, its limit is a quantile of held-out training rows, the edge loads the bundle and
its self-test covers the autoencoder; and the pieces of trainer.autoencoder alone."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import AUTOENCODER, AUTOENCODER_FORMAT_VERSION, FORMAT_VERSION, load_bundle
from edge.errors import BundleError
from tests.support.tiny_fit import CONFIG, write_synthetic
from trainer.autoencoder import HOLDOUT_FRACTION, held_out_split
from trainer.config import load_config
from trainer.drift import empirical_limit
from trainer.errors import TrainConfigError
from trainer.pipeline import fit

pytestmark = pytest.mark.slow

AE_CONFIG = CONFIG.replace("[ood]\nn_components = 3", "[ood]\nn_components = 3\nautoencoder = true\n"
                           "autoencoder_epochs = 40") + '[selection]\nmodel = "pls"\n'


@pytest.fixture(scope="module")
def ae_fit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("aefit")
    write_synthetic(base / "synthetic.npz")
    assert "autoencoder = true" in AE_CONFIG
    (base / "train.toml").write_text(AE_CONFIG)
    out = base / "out"
    metrics = fit(load_config(base / "train.toml"), out)
    return {"metrics": metrics, "bundle": out / "synthetic-conc.spectrolite", "base": base}


def test_the_bundle_carries_the_autoencoder_and_the_edge_self_tests_it(ae_fit: dict[str, Any]) -> None:
    path: Path = ae_fit["bundle"]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert AUTOENCODER in names and AUTOENCODER in manifest["members"]
    assert manifest["format_version"] == AUTOENCODER_FORMAT_VERSION
    section = manifest["autoencoder"]
    assert section["score"] == "mean_squared_error" and section["limit"] > 0
    assert section["alpha"] == pytest.approx(0.01 / 2)  # [ood] alpha, half per statistic as for T2 and Q
    bundle = load_bundle(path)
    assert bundle.self_test is not None and bundle.self_test.summary().startswith("PASSED")
    ae = bundle.autoencoder
    assert ae is not None and ae.limit == section["limit"] and ae.runtime.is_quantized
    assert bundle.golden.ae_outputs is not None and bundle.golden.ae_outputs.shape == (bundle.golden.count,
                                                                                       ae.n_features)
    assert "autoencoder: " in bundle.describe() and "limit" in bundle.describe()


def test_the_limit_is_the_held_out_training_rows_quantile(ae_fit: dict[str, Any]) -> None:
    """Recompute the limit from the bundle's own autoencoder: the 1 - alpha/2 quantile of the held-out part of the
    training rows (whole groups, seeded), and not of the fit part or of the test rows."""
    cfg = load_config(ae_fit["base"] / "train.toml")
    data = np.load(ae_fit["base"] / "synthetic.npz")
    bundle = load_bundle(ae_fit["bundle"])
    ae = bundle.autoencoder
    assert ae is not None
    train = np.flatnonzero(data["split"] == "cal")
    fit_rows, held = held_out_split(train.size, data["sample_id"][train], HOLDOUT_FRACTION, cfg.seed)
    assert held.size == ae.held_out_rows and fit_rows.size + held.size == train.size
    assert len(set(data["sample_id"][train][held]) & set(data["sample_id"][train][fit_rows])) == 0  # whole groups

    def limit_of(rows: np.ndarray) -> float:
        pre = bundle.preprocess_signal(data["X"][rows], data["wavelengths"])
        return empirical_limit(np.asarray(ae.score(pre)), ae.alpha)

    assert ae.limit == pytest.approx(limit_of(train[held]), rel=1e-6)
    assert ae.limit != pytest.approx(limit_of(train[fit_rows]), rel=1e-6)
    assert ae.limit != pytest.approx(limit_of(np.flatnonzero(data["split"] == "test")), rel=1e-6)


def test_metrics_report_the_autoencoder_alarm_rates_per_split(ae_fit: dict[str, Any]) -> None:
    m = ae_fit["metrics"]["ood"]["autoencoder"]
    assert m["held_out_rows"] > 0 and m["fit_rows"] > m["held_out_rows"] and m["model_bytes"] > 0
    assert set(m["alarm_rate"]) == {"train", "select", "test"}
    for rates in m["alarm_rate"].values():
        assert 0.0 <= rates["autoencoder"] <= rates["any"] <= 1.0
    assert m["alarm_rate_line"] == {}


def test_a_far_spectrum_scores_above_the_limit_a_training_one_below(ae_fit: dict[str, Any]) -> None:
    data = np.load(ae_fit["base"] / "synthetic.npz")
    bundle = load_bundle(ae_fit["bundle"])
    ae = bundle.autoencoder
    assert ae is not None
    x = data["X"][:1].astype(np.float64)
    wl = data["wavelengths"]
    far = x + 0.5 * np.exp(-((wl - 1080.0) ** 2) / 20.0)  # a narrow new band the training spectra never had
    assert ae.score(bundle.preprocess_signal(far, wl)[0]) > ae.limit
    assert ae.score(bundle.preprocess_signal(x, wl)[0]) < ae.limit


def test_a_bundle_whose_autoencoder_golden_outputs_differ_is_refused(ae_fit: dict[str, Any], tmp_path: Path) -> None:
    """The self-test covers the autoencoder: another autoencoder in the member (hashes rewritten) fails it."""
    from edge.bundle import GoldenVectors, sha256_hex
    from trainer.bundle_zip import write_zip

    with zipfile.ZipFile(ae_fit["bundle"]) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    golden = GoldenVectors.from_npz_bytes(members["golden.npz"])
    assert golden.ae_outputs is not None
    shifted = GoldenVectors(raw=golden.raw, preprocessed=golden.preprocessed, outputs=golden.outputs,
                            dark=golden.dark, reference=golden.reference, wavelengths=golden.wavelengths,
                            ae_outputs=golden.ae_outputs + np.float32(1.0))
    members["golden.npz"] = shifted.to_npz_bytes()
    manifest = json.loads(members["manifest.json"])
    new = members["golden.npz"]
    manifest["members"]["golden.npz"] = {"sha256": sha256_hex(new), "size": len(new)}
    members["manifest.json"] = json.dumps(manifest).encode()
    bad = tmp_path / "bad.spectrolite"
    write_zip(bad, members)
    with pytest.raises(BundleError, match="golden vector 0: autoencoder output 0"):
        load_bundle(bad)
    load_bundle(bad, self_test=False)  # the member itself is fine


def test_without_the_option_no_autoencoder_is_written_and_the_format_stays(tmp_path: Path) -> None:
    """The default (``autoencoder = false``) writes no member, a format-2 manifest and a null metrics entry."""
    assert FORMAT_VERSION == 2
    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "train.toml").write_text(CONFIG + '[selection]\nmodel = "pls"\n')
    cfg = load_config(tmp_path / "train.toml")
    assert cfg.ood.autoencoder is False
    metrics = fit(cfg, tmp_path / "out")
    assert metrics["ood"]["autoencoder"] is None
    bundle = load_bundle(tmp_path / "out" / "synthetic-conc.spectrolite")
    assert bundle.autoencoder is None and bundle.manifest["format_version"] == FORMAT_VERSION


def test_held_out_split_keeps_groups_whole_and_holds_out_the_fraction() -> None:
    groups = np.repeat(np.arange(40), 3)
    fit_rows, held = held_out_split(groups.size, groups, 0.25, seed=3)
    assert held.size >= 0.25 * groups.size and held.size % 3 == 0
    assert not set(groups[held]) & set(groups[fit_rows])
    assert sorted(np.concatenate([fit_rows, held]).tolist()) == list(range(groups.size))


@pytest.mark.parametrize(("line", "message"), [
    ("autoencoder = 1", "ood.autoencoder: expected true/false"),
    ("autoencoder_epochs = 0", "ood.autoencoder_epochs: expected an integer >= 1, got 0"),
])
def test_bad_autoencoder_options_are_refused(line: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "train.toml").write_text(CONFIG.replace("[ood]\n", f"[ood]\n{line}\n"))
    with pytest.raises(TrainConfigError, match=message):
        load_config(tmp_path / "train.toml")


def test_the_report_shows_the_autoencoder(ae_fit: dict[str, Any]) -> None:
    html = (ae_fit["bundle"].parent / "report" / "index.html").read_text()
    assert "Autoencoder (reconstruction error" in html and "autoencoder alarm rate" in html


def test_with_line_copies_and_include_select_the_autoencoder_fits_the_training_rows_copies(tmp_path: Path) -> None:
    """With ``[instrument.noise]`` and ``[ood] include_select`` the PCA model's line copies hold the selection rows'
    after the training rows'; the autoencoder, fitted on the training rows alone, takes only theirs (it failed
    after training before: 90 spectra against 120 rows of copies)."""
    text = AE_CONFIG.replace("autoencoder = true\n", "autoencoder = true\ninclude_select = true\n").replace(
        "[cv]\nfolds = 5", '[instrument]\nsignal = "counts"\n[instrument.noise]\naverages = 64\n[cv]\nfolds = 5')
    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "train.toml").write_text(text)
    cfg = load_config(tmp_path / "train.toml")
    assert cfg.ood.include_select and cfg.ood.autoencoder and cfg.instrument.noise is not None
    metrics = fit(cfg, tmp_path / "out")
    bundle = load_bundle(tmp_path / "out" / "synthetic-conc.spectrolite")
    assert bundle.autoencoder is not None and bundle.ood.scale is not None  # the line model, and the autoencoder
    assert metrics["ood"]["autoencoder"] is not None


def test_too_few_rows_for_the_autoencoder_are_refused_before_training(tmp_path: Path) -> None:
    from trainer.pipeline.prepare import prepare_data

    five = ", ".join(f'"s{i:03d}"' for i in range(5))  # 15 rows in 5 groups: 2 groups (6 rows) held out, 9 to fit
    write_synthetic(tmp_path / "synthetic.npz")
    text = AE_CONFIG.replace('train = {split = "cal"}', f"train = {{sample_id = [{five}]}}")
    (tmp_path / "train.toml").write_text(text)
    with pytest.raises(TrainConfigError, match=r"\[ood\] autoencoder needs at least 10 training rows to fit and 5 held "
                                                r"out for its limit, got 9 and 6 .*\(nothing was trained\)"):
        prepare_data(load_config(tmp_path / "train.toml"), lambda _: None)
