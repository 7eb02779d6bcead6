"""OOD statistics under each spectrum's own detector noise (trainer.drift ``noise=``, ood.json format 3): limits
that hold alpha on the noisy (dark) in-distribution spectra too, where one average noise alarms on them; still
flag a new absorber; and, on the tablets through a real bundle, the level the device computes from a counts frame is
the one the trainer fitted with."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.ood import OodModel
from tests.support.bundles import tiny_models, write_regression_bundle
from trainer.config import LineNoiseConfig
from trainer.drift import NoiseInputs, fit_ood
from trainer.line_noise import line_spectra, pixel_variance

N_CHANNELS = 50
LINE_SD = 0.05
#: In-distribution false alarms at alpha = 1 %: sampling noise on ~750 new spectra plus model error.
MAX_FALSE_ALARM = 0.04


def _latent(n: int, seed: int, *, band: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    axis = np.linspace(0, 1, N_CHANNELS)
    basis = np.stack([np.exp(-((axis - c) ** 2) / 0.01) for c in (0.2, 0.5, 0.8)])
    X = rng.normal(size=(n, 3)) * np.array([3.0, 2.0, 1.0]) @ basis + rng.normal(0, 0.01, size=(n, N_CHANNELS))
    return X + band * np.exp(-((axis - 0.35) ** 2) / 0.002)


def _levels(n: int, seed: int) -> np.ndarray:
    """Each spectrum's noise variance relative to the others: a factor of ~100 between the darkest and brightest."""
    return np.exp(np.random.default_rng(seed).normal(0.0, 1.2, size=n))


def _line(X: np.ndarray, levels: np.ndarray, seed: int, copies: int = 1) -> np.ndarray:
    sd = LINE_SD * np.sqrt(levels)[None, :, None]
    return X[None] + np.random.default_rng(seed).normal(0.0, 1.0, size=(copies, *X.shape)) * sd


def _inputs(levels: np.ndarray) -> NoiseInputs:
    """Identity preprocessing: the Jacobian is the identity, each pixel's variance its spectrum's line noise."""
    return NoiseInputs(pixel_variance=np.repeat(levels[:, None] * LINE_SD**2, N_CHANNELS, axis=1),
                       jacobian=np.eye(N_CHANNELS), electrons_per_count=2.0, read_noise_counts=4.0)


def _fitted(seed: int) -> tuple[OodModel, OodModel]:
    X, lv = _latent(400, seed), _levels(400, seed + 1)
    line = _line(X, lv, seed + 2, copies=5)
    own = fit_ood(X, n_components=3, alpha=0.01, X_pre_line=line, noise=_inputs(lv))
    plain = fit_ood(X, n_components=3, alpha=0.01, X_pre_line=line)
    return own, plain


def test_own_noise_limits_hold_alpha_on_a_darker_batch_where_one_average_noise_does_not() -> None:
    """New in-distribution spectra read with a quarter of the light (4 x the noise variance of the training mix:
    thicker tablets, an older lamp): at their own levels the limits hold alpha, on the noisiest quarter too; with
    one average noise for all, the batch alarms above alpha and its noisiest quarter far above (the #13 loop)."""
    own, plain = _fitted(40)
    assert own.noise is not None and plain.noise is None
    lv = 4.0 * _levels(3000, 43)
    new = _line(_latent(3000, 42), lv, 44)[0]
    rho = _inputs(lv).pixel_variance @ own.noise.pixel_gain
    noisy = lv > np.quantile(lv, 0.75)
    assert np.mean(own.is_outlier(new, rho)) <= MAX_FALSE_ALARM
    assert np.mean(own.is_outlier(new[noisy], rho[noisy])) <= MAX_FALSE_ALARM
    assert np.mean(plain.is_outlier(new)) > MAX_FALSE_ALARM
    assert np.mean(plain.is_outlier(new[noisy])) > 0.15


def test_own_noise_statistics_see_a_small_new_absorber_that_one_average_noise_misses() -> None:
    """A band 10 x the line noise: each spectrum judged against its own noise, most are flagged (a quiet spectrum
    shows it clearly), where one average noise drowns it; at 20 x the noisiest quarter is flagged too."""
    own, plain = _fitted(50)
    lv = _levels(600, 51)
    rho = _inputs(lv).pixel_variance @ own.noise.pixel_gain
    small = _line(_latent(600, 52, band=10 * LINE_SD), lv, 53)[0]
    assert np.mean(own.is_outlier(small, rho)) > 0.9
    assert np.mean(plain.is_outlier(small)) < 0.1
    larger = _line(_latent(600, 54, band=20 * LINE_SD), lv, 55)[0]
    noisy = lv > np.quantile(lv, 0.75)
    assert np.mean(own.is_outlier(larger[noisy], rho[noisy])) > 0.9


def test_the_levels_average_one_over_the_training_spectra_and_the_model_is_format_3() -> None:
    X, lv = _latent(200, 60), _levels(200, 61)
    m = fit_ood(X, n_components=3, alpha=0.01, X_pre_line=_line(X, lv, 62, copies=3), noise=_inputs(lv))
    assert m.noise is not None and m.to_dict()["format_version"] == 3
    assert float(np.mean(_inputs(lv).pixel_variance @ m.noise.pixel_gain)) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(Exception, match="needs the line copies"):
        fit_ood(X, n_components=3, noise=_inputs(lv))
    with pytest.raises(Exception, match=r"expected pixel variances \(200, p\) and a Jacobian"):
        fit_ood(X, n_components=3, X_pre_line=_line(X, lv, 63, copies=2), noise=_inputs(lv[:100]))


def test_tablets_bundle_scores_counts_frames_at_the_level_the_trainer_fitted_with(datasets_dir: Path,
                                                                                 tmp_path: Path) -> None:
    """Real tablets spectra, the simulator's detector: fitted by trainer.drift with the line copies and the device's
    per-pixel variances, written as format 3, read by the edge; the level the edge computes from noisy counts frames
    (their own dark and white) matches the trainer's from the expected counts, and the test tablets' line copies
    alarm at most MAX_FALSE_ALARM at those levels."""
    from firmware_bridge.physics import DetectorModel

    m = tiny_models(datasets_dir)
    noise = LineNoiseConfig(copies=2)
    line_pre = np.stack([m.pipeline.transform(c) for c in line_spectra(m.X_train, m.wavelengths, noise, seed=0)])
    var, detector = pixel_variance(m.X_train, m.wavelengths, noise)
    a0 = m.X_train.mean(axis=0)
    eps = 1e-4
    base = m.pipeline.transform(a0[None]).reshape(1, -1)
    jac = (m.pipeline.transform(a0[None] + eps * np.eye(a0.size)).reshape(a0.size, -1) - base) / eps
    ood = fit_ood(m.X_pre_train, 10, alpha=0.01, X_pre_line=line_pre,
                  noise=NoiseInputs(pixel_variance=var, jacobian=jac, **detector))
    path = write_regression_bundle(m, tmp_path / "own-noise.spectrolite", ood=ood)
    with zipfile.ZipFile(path) as z:
        assert json.loads(z.read("ood.json"))["format_version"] == 3
    b = load_bundle(path)
    assert b.ood is not None and b.ood.noise is not None
    assert b.ood.to_dict() == ood.to_dict()

    det = DetectorModel(m.wavelengths)
    t_us = det.integration_time_for(m.X_test)
    rng = np.random.default_rng(7)
    dark = det.dark(t_us, rng, averages=64).counts.astype(np.float64)
    white = det.reference(t_us, rng, averages=64).counts.astype(np.float64)
    counts = np.stack([det.measure(a, t_us, rng).counts for a in m.X_test]).astype(np.float64)
    device = b.ood.noise.level(counts, dark, white)
    trainer_var, _ = pixel_variance(m.X_test, m.wavelengths, noise)
    fitted = trainer_var @ b.ood.noise.pixel_gain
    assert np.median(np.abs(device / fitted - 1.0)) < 0.1
    assert np.corrcoef(np.log(device), np.log(fitted))[0, 1] > 0.9  # from one noisy read per tablet
    test_line = line_spectra(m.X_test, m.wavelengths, noise, seed=1).reshape(-1, m.X_test.shape[1])
    assert np.mean(b.ood.is_outlier(b.preprocess(test_line), np.tile(fitted, 2))) <= MAX_FALSE_ALARM


@pytest.mark.slow
def test_the_pipeline_writes_a_format_3_model_with_instrument_noise(tmp_path: Path) -> None:
    """``spectro-train fit`` with ``[instrument.noise]`` writes the per-spectrum noise model (ood.json format 3) with
    a gain per input channel, and metrics.json says what the statistics are scored under, with line-copy alarm rates
    for every split."""
    from tests.support.tiny_fit import CONFIG, write_synthetic
    from trainer.config import load_config
    from trainer.pipeline import fit

    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "train.toml").write_text(CONFIG + '[selection]\nmodel = "pls"\n[instrument]\nsignal = "counts"\n'
                                         "[instrument.noise]\ncopies = 2\n")
    cfg = load_config(tmp_path / "train.toml")
    fit(cfg, tmp_path / "out")
    bundle = load_bundle(next((tmp_path / "out").glob("*.spectrolite")))
    assert bundle.ood is not None and bundle.ood.noise is not None
    assert bundle.ood.to_dict()["format_version"] == 3
    assert bundle.ood.noise.n_channels == int(bundle.input_contract.pixel_count_min)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["ood"]["line_noise"]["scored_under"] == "each spectrum's own detector noise"
    assert set(metrics["ood"]["alarm_rate_line"]) == set(metrics["ood"]["alarm_rate"])
    # The deployed bundle's RMSEP through the same line copies, beside offline, for every split and target.
    line = metrics["line_accuracy"]
    assert (line["model"], line["copies"]) == ("deployed", 2)
    assert set(line["splits"]) == set(metrics["ood"]["alarm_rate"])
    offline = {(e["split"], e["target"]): e["rmsep"] for e in metrics["evaluations"] if e["model"] == "deployed"}
    for split, per in line["splits"].items():
        for target, v in per.items():
            assert v["offline_rmsep"] == pytest.approx(offline[(split, target)])
            assert v["ratio"] == pytest.approx(v["rmsep"] / v["offline_rmsep"])
            assert v["rmsep"] > v["offline_rmsep"]  # one scan's detector noise on top of the model's error
    assert "Through the line detector" in (tmp_path / "out" / "report" / "index.html").read_text()


@pytest.mark.slow
def test_include_select_puts_the_selection_rows_into_the_ood_reference(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``[ood] include_select = true``: the OOD model is fitted on the training and the selection rows (their
    spectra, line copies, noise inputs and groups), the default on the training rows alone; a bad value is refused."""
    import trainer.drift
    from tests.support.tiny_fit import CONFIG, write_synthetic
    from trainer.config import load_config
    from trainer.errors import TrainConfigError
    from trainer.pipeline import fit
    from trainer.pipeline.prepare import prepare_data

    write_synthetic(tmp_path / "synthetic.npz")
    base = CONFIG + '[selection]\nmodel = "pls"\n[instrument]\nsignal = "counts"\n[instrument.noise]\ncopies = 2\n'
    seen: list[tuple[int, int, int, int]] = []
    real = trainer.drift.fit_ood

    def spy(X_pre_train: np.ndarray, *args: Any, **kwargs: Any) -> OodModel:
        line, noise = kwargs["X_pre_line"], kwargs["noise"]
        seen.append((len(X_pre_train), np.shape(line)[1], np.shape(noise.pixel_variance)[0],
                     len(np.unique(kwargs["groups"]))))
        return real(X_pre_train, *args, **kwargs)

    monkeypatch.setattr(trainer.drift, "fit_ood", spy)
    assert "[ood]\n" in base
    for name, extra in (("plain", ""), ("with_select", "include_select = true\n")):
        (tmp_path / f"{name}.toml").write_text(base.replace("[ood]\n", "[ood]\n" + extra))
        cfg = load_config(tmp_path / f"{name}.toml")
        assert cfg.ood.include_select is (name == "with_select")
        fit(cfg, tmp_path / name)
    plan = prepare_data(cfg, lambda stage: None).plan
    n_tr, n_sel = plan.train_rows.size, plan.select_rows.size
    assert n_sel > 0
    assert [s[:3] for s in seen] == [(n_tr,) * 3, (n_tr + n_sel,) * 3]
    assert seen[1][3] > seen[0][3]  # the selection rows' groups join (and stay apart from the training rows')
    (tmp_path / "bad.toml").write_text(base.replace("[ood]\n", "[ood]\ninclude_select = 1\n"))
    with pytest.raises(TrainConfigError, match="include_select"):
        load_config(tmp_path / "bad.toml")
