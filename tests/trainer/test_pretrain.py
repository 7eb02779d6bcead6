"""Tests of trainer.pretrain (self-supervised pretraining of the CNN trunk, ``[pretrain]``): the config, the
corruptions, the trunk weights it changes and hands to the CNN, what it is given (spectra through the preprocessing
fitted on the labeled training rows, never a reference value), the unlabeled sources, the search parameter, and a
tiny fit whose int8 bundle the edge loads and self-tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import check_command, load_bundle
from tests.support.tiny_fit import TINY_DATA
from trainer.config import PretrainConfig, load_config, parse_config
from trainer.errors import DataError, TrainConfigError

#: A fit small enough for seconds: 60 synthetic spectra of 32 channels, a two-member CNN of two blocks.
TINY = """
seed = 0
report = true
""" + TINY_DATA + """[preprocessing.candidates]
snv = [{ op = "snv" }, { op = "autoscale" }]
[model]
filters = [4, 4]
kernel_sizes = [5, 3]
strides = [2, 2]
dense_units = []
epochs = 3
ensemble_size = 2
log_every = 100
[quantize]
subprocess = false
[intervals]
coverage = 0.8
[bundle]
model_id = "pretrained"
"""

PRETRAIN = """
[pretrain]
enabled = true
task = ["masked_bands", "denoise"]
epochs = 2
mask_width = 4
"""


def _cnn(**kw: Any) -> Any:
    from trainer.models import CNNConfig

    base = dict(filters=(4, 4), kernel_sizes=(5, 3), strides=(2, 2), dense_units=(), epochs=2, log_every=100)
    base.update(kw)
    return CNNConfig(**base)


# ------------------------------------------------------------------------------------------------------- config
def test_pretraining_is_off_by_default_with_or_without_a_table() -> None:
    assert not parse_config(TINY).pretrain.enabled
    pc = parse_config(TINY + "[pretrain]\n").pretrain
    assert not pc.enabled and pc.source == "dataset" and pc.path is None and pc.tasks == ("masked_bands",)


def test_config_reads_every_key_and_resolves_a_path_against_the_config(tmp_path: Path) -> None:
    pc = parse_config(TINY + """
[pretrain]
enabled = true
source = "line/export.npz"
task = ["denoise", "masked_bands"]
epochs = 7
mask_width = 5
masks = 3
noise_sd = 0.2
learning_rate = 0.002
batch_size = 16
seed = 4
""", base_dir=tmp_path).pretrain
    assert pc.enabled and pc.path == tmp_path / "line" / "export.npz"
    assert pc.tasks == ("masked_bands", "denoise")
    assert (pc.epochs, pc.mask_width, pc.masks, pc.noise_sd, pc.learning_rate, pc.batch_size, pc.seed) == \
        (7, 5, 3, 0.2, 0.002, 16, 4)


@pytest.mark.parametrize(("table", "message"), [
    ("colour = 1", "pretrain.colour: unknown key"),
    ("enabled = 1", "pretrain.enabled: expected true/false"),
    ('task = "inpaint"', "pretrain.task: expected one or both of ['masked_bands', 'denoise'], got 'inpaint'"),
    ("task = []", "pretrain.task: expected one or both"),
    ('task = ["denoise", "denoise"]', "pretrain.task: expected one or both"),
    ("epochs = 0", "pretrain.epochs: expected an integer >= 1, got 0"),
    ("mask_width = 0", "pretrain.mask_width: expected an integer >= 1, got 0"),
    ("noise_sd = -1", "pretrain.noise_sd: expected a positive number, got -1.0"),
    ("learning_rate = 0", "pretrain.learning_rate: expected a positive number"),
    ('source = "spectra.csv"', "pretrain.source: expected \"dataset\" or a path to an .npz file, got 'spectra.csv'"),
    ('source = ""', "pretrain.source: expected"),
    ("seed = -2", "pretrain.seed: expected an integer >= 0, got -2"),
])
def test_config_errors_name_the_key_and_what_was_expected(table: str, message: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        parse_config(TINY + "[pretrain]\n" + table + "\n")
    assert message in str(err.value)


def test_a_mask_as_wide_as_the_cnn_input_is_refused_clearly() -> None:
    from trainer.pretrain import pretrain_trunks

    X = np.random.default_rng(0).normal(size=(8, 12)).astype(np.float32)
    with pytest.raises(TrainConfigError, match="pretrain.mask_width: expected fewer channels than the CNN input's "
                                                "12, got 12"):
        pretrain_trunks(X, _cnn(), PretrainConfig(enabled=True, mask_width=12), seed=0, n_members=1)


# --------------------------------------------------------------------------------------------------- corruptions
def test_masked_bands_zero_contiguous_bands_in_every_input_channel_and_only_they_count() -> None:
    from trainer.pretrain import corrupt

    X = np.random.default_rng(1).normal(size=(20, 40, 2)).astype(np.float32) + 5.0
    cfg = PretrainConfig(enabled=True, tasks=("masked_bands",), mask_width=6, masks=1)
    Xc, w = corrupt(X, cfg, np.random.default_rng(0), np.ones(2, dtype=np.float32))
    masked = w.astype(bool)
    assert np.all(masked.sum(axis=1) == 6)
    for row in masked:  # one contiguous band per spectrum
        idx = np.flatnonzero(row)
        assert idx[-1] - idx[0] == 5
    assert np.all(Xc[masked] == 0.0) and np.array_equal(Xc[~masked], X[~masked])


def test_denoise_adds_noise_everywhere_and_every_channel_counts() -> None:
    from trainer.pretrain import corrupt

    X = np.zeros((200, 30, 1), dtype=np.float32)
    cfg = PretrainConfig(enabled=True, tasks=("denoise",), noise_sd=0.5)
    Xc, w = corrupt(X, cfg, np.random.default_rng(0), np.full(1, 2.0, dtype=np.float32))
    assert np.all(w == 1.0)
    assert float(np.std(Xc)) == pytest.approx(1.0, rel=0.05)  # noise_sd x the channel's sd


# ---------------------------------------------------------------------------------------- trunks and fine-tuning
def test_pretraining_changes_the_trunk_weights_and_the_cnn_starts_from_them() -> None:
    from trainer.models import build_cnn, load_trunk, train_cnn, trunk_layer_names
    from trainer.pretrain import pretrain_trunks

    rng = np.random.default_rng(0)
    X = np.cumsum(rng.normal(size=(40, 32)), axis=1).astype(np.float32)
    cnn = _cnn(ensemble_size=2)
    res = pretrain_trunks(X, cnn, PretrainConfig(enabled=True, epochs=3, mask_width=4), seed=3, n_members=2)
    assert res.rows == 40 and res.epochs == 3 and len(res.loss) == 3 and len(res.trunks) == 2
    assert set(res.trunks[1]) == set(trunk_layer_names(cnn, "cnn1")) == {"cnn1_conv0", "cnn1_conv1", "cnn1_bn0",
                                                                          "cnn1_bn1"}
    assert np.isfinite(res.final_loss) and res.identity_loss > 0
    fresh = build_cnn((32,), cnn, n_outputs=1, seed=3, name="cnn0")  # the initial weights of member 0
    for name in ("cnn0_conv0", "cnn0_conv1", "cnn0_bn0"):  # kernels, and the batch norm's scale and statistics
        assert not all(np.allclose(a, b) for a, b in zip(fresh.get_layer(name).get_weights(), res.trunks[0][name]))
    load_trunk(fresh, res.trunks[0])
    for name, weights in res.trunks[0].items():
        assert all(np.array_equal(a, b) for a, b in zip(fresh.get_layer(name).get_weights(), weights))
    # Fine-tuning starts from them (one epoch at a tiny rate moves the trunk only a little) and trains them.
    y = X[:, :4].mean(axis=1)
    tuned = train_cnn(X, y, None, None, config=_cnn(ensemble_size=2, epochs=1, learning_rate=1e-6), seed=3,
                      trunks=res.trunks)
    member = tuned.model.get_layer("cnn0")
    got = member.get_layer("cnn0_conv0").get_weights()[0]
    assert np.allclose(got, res.trunks[0]["cnn0_conv0"][0], atol=1e-3)
    assert not np.array_equal(got, res.trunks[0]["cnn0_conv0"][0])  # trainable, not frozen
    with pytest.raises(ValueError, match="expected 2 pretrained trunks"):
        train_cnn(X, y, None, None, config=_cnn(ensemble_size=2, epochs=1), seed=3, trunks=res.trunks[:1])


def test_a_trunk_of_another_architecture_is_refused_by_name_and_shape() -> None:
    from trainer.models import build_cnn, load_trunk

    model = build_cnn((32,), _cnn(), n_outputs=1, seed=0, name="cnn0")
    with pytest.raises(ValueError, match="expected weights of shapes"):
        load_trunk(model, {"cnn0_conv0": [np.zeros((3, 1, 4), dtype=np.float32), np.zeros(4, dtype=np.float32)]})
    with pytest.raises(ValueError, match="expected a trunk layer 'cnn0_conv7'"):
        load_trunk(model, {"cnn0_conv7": []})


# ------------------------------------------------------------------------------------------- the unlabeled sources
def test_an_npz_source_on_another_axis_is_resampled_onto_the_training_axis(tmp_path: Path) -> None:
    from trainer.pretrain import load_unlabeled

    grid = np.linspace(1000.0, 1100.0, 11)
    wide = np.linspace(980.0, 1120.0, 15)
    X = np.vstack([wide * 0.01, wide * 0.02])
    np.savez(tmp_path / "u.npz", X=X, wavelengths=wide)  # no y at all: an unlabeled file
    cfg = PretrainConfig(enabled=True, source="u.npz", path=tmp_path / "u.npz")
    got = load_unlabeled(cfg, np.zeros((3, 11)), grid, unit="nm", quantity="absorbance", min_ratio=1e-6)
    np.testing.assert_allclose(got.X, np.vstack([grid * 0.01, grid * 0.02]))
    assert got.rows == 2 and got.source == "u.npz" and got.skipped == 0


def test_an_export_of_counts_is_converted_with_its_own_references(tmp_path: Path) -> None:
    from trainer.pretrain import load_unlabeled

    grid = np.linspace(900.0, 1000.0, 6)
    dark, white = np.full(6, 100.0), np.full(6, 10100.0)
    absorbance = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], [0.3] * 6])
    counts = dark + (white - dark) * 10.0 ** (-absorbance)
    # y is an object array: reading it without pickle raises, so a loader that touched y would fail here.
    poisoned_y = np.array([{"reference": 1.0}] * 3, dtype=object)
    np.savez(tmp_path / "export.npz", X=counts.astype(np.float32), wavelengths=grid,
             y=poisoned_y, signal=np.array(["counts"] * 3), axis_is_pixel_index=np.array(False),
             dark_spectra=dark[None], dark_index=np.array([0, 0, -1]), white_spectra=white[None],
             white_index=np.array([0, 0, 0]))
    cfg = PretrainConfig(enabled=True, source="export.npz", path=tmp_path / "export.npz")
    got = load_unlabeled(cfg, np.zeros((3, 6)), grid, unit="nm", quantity="absorbance", min_ratio=1e-6)
    np.testing.assert_allclose(got.X, absorbance[:2], atol=1e-4)  # float32 counts
    assert got.skipped == 1  # the row without a dark reference
    with np.load(tmp_path / "export.npz", allow_pickle=False) as z, pytest.raises(ValueError):
        z["y"]  # what reading the reference values would have done


def test_unusable_sources_are_refused_with_the_file_named(tmp_path: Path) -> None:
    from trainer.pretrain import load_unlabeled

    grid = np.linspace(900.0, 1000.0, 6)

    def load(name: str) -> Any:
        cfg = PretrainConfig(enabled=True, source=name, path=tmp_path / name)
        return load_unlabeled(cfg, np.zeros((3, 6)), grid, unit="nm", quantity="absorbance", min_ratio=1e-6)

    with pytest.raises(DataError, match="pretrain.source: no such file"):
        load("missing.npz")
    np.savez(tmp_path / "nox.npz", spectra=np.zeros((2, 6)))
    with pytest.raises(DataError, match="nox.npz: expected arrays X and wavelengths"):
        load("nox.npz")
    np.savez(tmp_path / "narrow.npz", X=np.ones((2, 4)), wavelengths=np.linspace(920.0, 980.0, 4))
    with pytest.raises(DataError, match="narrow.npz: its axis does not cover the training axis"):
        load("narrow.npz")


# ----------------------------------------------------------------------------------------------------- the search
def test_pretrain_is_a_categorical_parameter_of_the_search_when_enabled() -> None:
    optuna = pytest.importorskip("optuna")
    from trainer.pretrain import PretrainPlan, UnlabeledSpectra
    from trainer.search import SearchInputs, configured_recipe, suggest_recipe

    def inputs(plan: Any) -> SearchInputs:
        return SearchInputs(X=np.zeros((4, 8)), Y=np.zeros((4, 1)), groups=np.arange(4), target_names=("a",),
                            make_pre=lambda steps: None, candidates={"c": ()}, base_candidate="c",
                            base_model={"epochs": 8}, base_augment={}, pretrain=plan)

    plan = PretrainPlan(config=PretrainConfig(enabled=True), unlabeled=UnlabeledSpectra(X=np.zeros((5, 8)),
                                                                                        source="dataset"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        seen.add(suggest_recipe(trial, inputs(plan))["pretrain"])
        assert trial.params["pretrain"] in (False, True)
        study.tell(trial, 1.0)
    assert seen == {False, True}
    assert configured_recipe(inputs(plan))["pretrain"] is True
    off = study.ask()
    assert "pretrain" not in suggest_recipe(off, inputs(None)) and "pretrain" not in off.params
    assert "pretrain" not in configured_recipe(inputs(None))


def test_each_cv_fold_pretrains_through_its_own_fitted_preprocessing() -> None:
    from trainer.champion import cnn_cv_predictions

    rng = np.random.default_rng(0)
    X, Y, groups = rng.normal(size=(30, 4)), rng.normal(size=(30, 1)), np.arange(30)

    class Center:
        def fit(self, X: np.ndarray) -> Center:
            self.mean_ = X.mean(axis=0)
            return self

        def transform(self, X: np.ndarray) -> np.ndarray:
            return X - self.mean_

    seen: list[tuple[Any, int]] = []
    handed: list[Any] = []
    cnn_cv_predictions(X, Y, groups, make_pre=Center, augment_fn=lambda a, b, s: (a, b),
                       train_fn=lambda a, b, s, trunks: handed.append(trunks),
                       predict_fn=lambda m, a: np.zeros((a.shape[0], 1)), folds=3, seed=7,
                       pretrain_fn=lambda pre, sd: seen.append((pre, sd)) or f"trunks{sd}")
    assert [sd for _, sd in seen] == [7, 8, 9] and handed == ["trunks7", "trunks8", "trunks9"]
    assert len({id(pre) for pre, _ in seen}) == 3  # a fitted preprocessing per fold


# ----------------------------------------------------------------------------------------- a fit that pretrains
@pytest.fixture(scope="module")
def pretrained_fit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny fit with [pretrain], recording what the pretraining is handed."""
    import trainer.pretrain as pretrain_pkg
    from trainer.pipeline import fit

    base = tmp_path_factory.mktemp("pretrain")
    # The CNN deployed (the champion rule would pick PLS on so tiny a CNN): its int8 model is what the edge runs.
    (base / "train.toml").write_text(TINY.replace("cnn_cv_folds = 2", "cnn_cv_folds = 2\nmodel = \"cnn\"") + PRETRAIN)
    given: dict[str, Any] = {}
    real_load, real_trunks = pretrain_pkg.load_unlabeled, pretrain_pkg.pretrain_trunks

    def spy_load(*args: Any, **kwargs: Any) -> Any:
        given["load"] = (args, kwargs)
        return real_load(*args, **kwargs)

    def spy_trunks(X: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        given.setdefault("trunks", []).append(np.array(X, copy=True))
        return real_trunks(X, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(pretrain_pkg, "load_unlabeled", spy_load)
    mp.setattr(pretrain_pkg, "pretrain_trunks", spy_trunks)
    try:
        metrics = fit(load_config(base / "train.toml"), base / "out")
    finally:
        mp.undo()
    return {"metrics": metrics, "out": base / "out", "given": given, "config": load_config(base / "train.toml")}


def test_the_fine_tuned_model_converts_to_int8_and_the_bundle_loads_on_the_edge(pretrained_fit: dict[str, Any]
                                                                                 ) -> None:
    m, out = pretrained_fit["metrics"], pretrained_fit["out"]
    bundle_path = out / "pretrained.spectrolite"
    assert check_command(bundle_path) == 0  # the edge's self-test on the golden vectors
    bundle = load_bundle(bundle_path)
    assert m["deployed_model"] == "cnn" and bundle.runtime.is_quantized
    assert m["cnn_model_bytes"] > 0 and any(e["model"] == "cnn_int8" for e in m["evaluations"])
    p = m["pretrain"]
    assert p["ran"] and p["source"] == "dataset" and p["task"] == ["masked_bands", "denoise"] and p["epochs"] == 2
    assert p["rows"] == 60 and len(p["loss_per_epoch"]) == 2 and p["reconstruction_loss"] > 0
    assert "pretrain CNN trunk" in m["timings_s"]
    html = (out / "report" / "index.html").read_text()
    assert "CNN trunk pretrained (masked_bands+denoise) on 60 unlabeled spectra from dataset for 2 epochs" in html


def test_the_pretraining_is_given_spectra_only_through_the_preprocessing_fitted_on_the_training_rows(
        pretrained_fit: dict[str, Any]) -> None:
    from trainer.data import load_configured
    from trainer.preprocessing import make_pipeline_from_config
    from trainer.splits import make_split_plan

    cfg = pretrained_fit["config"]
    ds = load_configured(cfg.data)
    args, kwargs = pretrained_fit["given"]["load"]
    handed = list(args) + list(kwargs.values())
    arrays = [a for a in handed if isinstance(a, np.ndarray)]
    # Every spectrum of every split, the axis, and nothing else: no array holds a reference value.
    assert any(a.shape == ds.X.shape and np.array_equal(a, ds.X) for a in arrays)
    for a in arrays:
        assert a.shape != ds.y.shape and not np.isin(ds.y.ravel(), a.ravel()).any()
    # The CNN input of the pretraining: all 60 spectra through the preprocessing fitted on the training rows only.
    tr = make_split_plan(ds, cfg.split, seed=cfg.seed).train_rows
    pre = make_pipeline_from_config([dict(s) for s in cfg.preprocessing.candidates["snv"]], ds.wavelengths,
                                    unit=ds.axis_unit).fit(ds.X[tr])
    (X_given,) = pretrained_fit["given"]["trunks"]
    np.testing.assert_allclose(X_given, pre.transform(ds.X), rtol=0, atol=1e-12)
    refit_on_all = make_pipeline_from_config([dict(s) for s in cfg.preprocessing.candidates["snv"]], ds.wavelengths,
                                             unit=ds.axis_unit).fit(ds.X)
    assert not np.allclose(X_given, refit_on_all.transform(ds.X))  # not statistics fitted on every row
