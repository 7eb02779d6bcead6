"""Tests of trainer.line_noise: training spectra through the line detector (firmware_bridge.physics.DetectorModel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.config import LineNoiseConfig
from trainer.config.sources import InstrumentConfig
from trainer.errors import TrainConfigError
from trainer.line_noise import line_spectra

WL = np.linspace(900.0, 1700.0, 128)


def _spectra(n: int, level: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return level + 0.2 * np.sin(WL / 80.0)[None] + rng.normal(0, 0.05, size=(n, 1))


def test_copies_are_the_spectra_plus_zero_mean_detector_noise() -> None:
    A = _spectra(40, 0.5)
    out = line_spectra(A, WL, LineNoiseConfig(copies=3), seed=1)
    assert out.shape == (3, 40, 128)
    err = out - A[None]
    assert 0.0 < float(np.std(err)) < 0.01  # bright samples: shot and read noise of a few milli-absorbance
    assert abs(float(np.mean(err))) < 0.2 * float(np.std(err))


def test_noise_falls_with_averaging_and_grows_with_absorbance() -> None:
    A = _spectra(40, 0.5)
    one = np.std(line_spectra(A, WL, LineNoiseConfig(copies=2), seed=2) - A)
    sixteen = np.std(line_spectra(A, WL, LineNoiseConfig(copies=2, averages=16), seed=2) - A)
    assert sixteen == pytest.approx(one / 4, rel=0.25)
    # The exposure suits the brightest spectra, so darker pixels (fewer counts) are noisier in absorbance.
    mixed = np.vstack([A, A + 2.0])
    err = line_spectra(mixed, WL, LineNoiseConfig(copies=2), seed=3) - mixed
    assert np.std(err[:, 40:]) > 3 * np.std(err[:, :40])


def test_instrument_noise_table_is_parsed_and_needs_a_counts_device() -> None:
    cfg = InstrumentConfig.from_dict({"signal": "counts", "noise": {"averages": 4, "read_noise_counts": 2.0}})
    assert cfg.noise == LineNoiseConfig(averages=4, read_noise_counts=2.0)
    assert cfg.noise.detector_parameters() == {"read_noise_counts": 2.0}
    assert InstrumentConfig.from_dict({}).noise is None
    with pytest.raises(TrainConfigError, match="instrument.noise: expected signal = \"counts\""):
        InstrumentConfig.from_dict({"signal": "absorbance", "noise": {}})
    with pytest.raises(TrainConfigError, match="instrument.noise.averages: expected an integer >= 1, got 0"):
        InstrumentConfig.from_dict({"noise": {"averages": 0}})
    with pytest.raises(TrainConfigError, match="instrument.noise.gain: unknown key"):
        InstrumentConfig.from_dict({"noise": {"gain": 1.0}})


def test_every_spectrum_is_read_in_a_session_of_its_own() -> None:
    """Dark and white are drawn anew per spectrum: two rows' detector errors are uncorrelated, so the OOD limits
    fitted on the copies hold over sessions, not for the few dark/white draws one session per copy would give."""
    A = np.repeat(_spectra(1, 2.5), 60, axis=0)  # one dark spectrum 60 times: dark and white noise matter
    err = line_spectra(A, WL, LineNoiseConfig(copies=1), seed=4)[0] - A
    err -= err.mean(axis=1, keepdims=True)
    corr = np.corrcoef(err)[np.triu_indices(A.shape[0], 1)]
    assert abs(float(np.mean(corr))) < 0.05


class _Identity:
    def fit(self, X: np.ndarray, y: object = None) -> _Identity:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)


def test_pls_calibrated_with_line_copies_predicts_the_line_better() -> None:
    """``[instrument.noise] calibration_copies``: a PLS calibrated on the training spectra plus their line copies
    predicts spectra as the line measures them better than one calibrated on the lab spectra alone, when the
    analyte also shows where the line detector is starved (high absorbance: a few counts above dark)."""
    from trainer.line_noise import with_line_copies
    from trainer.pls import PlsBaseline, fit_pls_baseline

    rng = np.random.default_rng(5)
    n = 160
    y = rng.uniform(0.0, 1.0, n)
    band = np.exp(-0.5 * ((WL - 1100.0) / 40.0) ** 2)
    tail = np.exp(-0.5 * ((WL - 1650.0) / 30.0) ** 2)
    base = 1.0 + 3.5 * (WL > 1550.0)  # the last pixels sit 4.5 decades down: a few counts above dark
    X = (base[None] + 0.02 * y[:, None] * band[None] + 0.2 * y[:, None] * tail[None]
         + rng.normal(0.0, 0.002, (n, WL.size)) + rng.normal(0.0, 0.05, (n, 1)))
    tr, te = np.arange(120), np.arange(120, n)
    groups = np.arange(n)
    noise = LineNoiseConfig(copies=3, calibration_copies=2)
    kw = dict(candidates={"raw": []}, target_names=["y"], folds=5, max_components=10,
              make_preprocess=lambda steps: _Identity())
    lab = fit_pls_baseline(X[tr], y[tr], groups=groups[tr], **kw)
    Xc, yc, gc = with_line_copies(X[tr], y[tr], groups[tr], WL, noise, seed=1)
    assert Xc.shape == (3 * tr.size, WL.size) and np.array_equal(gc, np.tile(groups[tr], 3))
    line = fit_pls_baseline(Xc, yc, groups=gc, measured_rows=tr.size, **kw)
    seen = line_spectra(X[te], WL, noise, seed=2).reshape(-1, WL.size)  # the test rows as the line measures them
    truth = np.tile(y[te], noise.copies)

    def rmse(model: PlsBaseline) -> float:
        return float(np.sqrt(np.mean((model.predict(seen).reshape(-1) - truth) ** 2)))

    assert rmse(line) < 0.7 * rmse(lab)
    # The curves kept (what the champion rule compares with the CNN's) are the measured rows', not the copies':
    # the same fit scored on every row has the larger error of the line copies in them.
    mixed = fit_pls_baseline(Xc, yc, groups=gc, **kw)
    assert line.models[0].n_components == mixed.models[0].n_components
    assert np.all(line.models[0].cv_curves["raw"] < mixed.models[0].cv_curves["raw"])
    # No calibration copies (the default): the rows as given.
    same = with_line_copies(X[tr], y[tr], groups[tr], WL, LineNoiseConfig())
    assert same[0] is X[tr] or np.array_equal(same[0], X[tr])


def test_the_pipeline_calibrates_the_deployed_pls_on_line_copies_when_asked(tmp_path: Path) -> None:
    """``[instrument.noise] calibration_copies`` reaches the PLS stages of the pipeline: the calibration rows are
    the training rows and their copies (groups kept), the deployed PLS differs from the lab-calibrated one, and its
    ``cv_rmse`` (what the champion rule compares) is that of the measured rows at the latent variables chosen."""
    from tests.support.tiny_fit import CONFIG, write_synthetic
    from trainer.champion import pls_cv_rmse
    from trainer.config import load_config
    from trainer.pipeline.baseline import deployable_pls_on, fit_pls_on, pls_calibration_rows
    from trainer.pipeline.prepare import prepare_data

    write_synthetic(tmp_path / "synthetic.npz")
    lab = CONFIG + "\n[instrument]\nsignal = \"counts\"\n[instrument.noise]\ncopies = 2\n"
    (tmp_path / "lab.toml").write_text(lab)
    (tmp_path / "line.toml").write_text(lab + "calibration_copies = 2\nreference_averages = 1\n")
    fits = {}
    for name in ("lab", "line"):
        cfg = load_config(tmp_path / f"{name}.toml")
        data = prepare_data(cfg, lambda stage: None)
        X, Y, tr = data.ds.X, data.ds.y.astype(np.float64), data.plan.train_rows
        Xc, Yc, gc = pls_calibration_rows(cfg, data, X[tr], Y[tr], data.groups[tr])
        n = 3 if name == "line" else 1
        assert Xc.shape == (n * tr.size, X.shape[1]) and np.array_equal(gc, np.tile(data.groups[tr], n))
        assert np.array_equal(Xc[: tr.size], X[tr]) and np.array_equal(Yc, np.tile(Y[tr], (n, 1)))
        fits[name] = (fit_pls_on(cfg, data, X[tr], Y[tr], data.groups[tr]),
                      deployable_pls_on(cfg, data, X[tr], Y[tr], data.groups[tr]))
    assert cfg.instrument.noise is not None and cfg.instrument.noise.reference_averages == 1
    assert not np.allclose(fits["lab"][1].coef, fits["line"][1].coef)
    for base, dep in fits.values():
        np.testing.assert_allclose(dep.cv_rmse, pls_cv_rmse(base))


def test_cnn_training_set_is_the_augmented_rows_then_their_line_copies() -> None:
    """``[instrument.noise] cnn_copies``: the CNN trains on the ``[augment]`` rows followed by ``cnn_copies`` line
    copies of the rows (reference values copied); the copies follow the fold's seed; 0 copies is ``augment``."""
    from trainer.augment import AugmentConfig, augment
    from trainer.line_noise import cnn_augment_fn

    A, y = _spectra(20, 1.5), np.arange(20.0)
    aug = AugmentConfig(n_copies=1, offset_sd_abs=0.01)
    fn = cnn_augment_fn(aug, LineNoiseConfig(averages=4, cnn_copies=2), WL)
    X_tr, y_tr = fn(A, y, 3)
    X_aug, y_aug = augment(A, y, aug, seed=3)
    assert X_tr.shape == (40 + 40, WL.size) and y_tr.shape == (80,)
    np.testing.assert_array_equal(X_tr[:40], X_aug)
    np.testing.assert_array_equal(y_tr, np.concatenate([y_aug, y, y]))
    copies = X_tr[40:].reshape(2, 20, WL.size)
    noise = copies - A[None]
    assert 0.0 < float(np.std(noise)) < 0.05 and not np.allclose(copies[0], copies[1])
    np.testing.assert_array_equal(fn(A, y, 3)[0], X_tr)  # seeded: a fold trains on the same rows every time
    assert not np.allclose(fn(A, y, 4)[0][40:], X_tr[40:])
    for off in (LineNoiseConfig(averages=4), None):
        np.testing.assert_array_equal(cnn_augment_fn(aug, off, WL)(A, y, 3)[0], X_aug)


def test_cnn_copies_is_parsed_and_refused_when_negative() -> None:
    assert InstrumentConfig.from_dict({"noise": {"cnn_copies": 3}}).noise == LineNoiseConfig(cnn_copies=3)
    with pytest.raises(TrainConfigError, match="instrument.noise.cnn_copies: expected an integer >= 0, got -1"):
        InstrumentConfig.from_dict({"noise": {"cnn_copies": -1}})


def test_fit_and_search_worker_train_the_cnn_on_the_same_line_copies(tmp_path: Path) -> None:
    """The final fit (:meth:`Recipe.training_set`), the champion's and the search's cross-validations build the
    CNN's rows with the same function: a search worker (``spectro-train search``) scores the network a fit
    deploys."""
    from tests.support.tiny_fit import CONFIG, write_synthetic
    from trainer.config import load_config
    from trainer.pipeline.prepare import prepare_data
    from trainer.pipeline.recipe import build_model_configs, choose_recipe
    from trainer.search import prepare_inputs

    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "line.toml").write_text(CONFIG + "\n[instrument]\nsignal = \"counts\"\n[instrument.noise]\n"
                                        "averages = 4\ncnn_copies = 2\n")
    cfg = load_config(tmp_path / "line.toml")
    data = prepare_data(cfg, lambda stage: None)
    recipe = choose_recipe(cfg, build_model_configs(cfg), data, "snv", tmp_path, lambda stage: None, None)
    tr = data.plan.train_rows
    X, Y = data.ds.X[tr], data.ds.y[tr].astype(np.float64)
    X_fit, Y_fit = recipe.training_set(X, Y, 5)
    assert X_fit.shape[0] == (2 + 2) * tr.size  # original + 1 augmented copy + 2 line copies
    np.testing.assert_array_equal(Y_fit[2 * tr.size:], np.tile(Y, (2, 1)))
    inputs = prepare_inputs(cfg)
    assert inputs.rows_for is not None
    X_search, _ = inputs.rows_for(recipe.augment)(inputs.X, inputs.Y, 5)
    np.testing.assert_allclose(X_search, X_fit)
