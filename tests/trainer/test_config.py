"""Tests of trainer.config: the shipped example configs parse, and bad configs fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import LineNoiseConfig, load_config, parse_config
from trainer.errors import TrainConfigError

GOOD = """
seed = 3
[data]
path = "spectra.npz"
targets = ["fat_pct", "protein_pct"]
[split]
group = "sample_id"
train = {split = "cal"}
select = {split = "val", instrument = [1, 2]}
[split.test]
test_a = {split = "test"}
[preprocessing.candidates]
snv = [{op = "snv"}]
sg = [{op = "savgol", window = 11, polyorder = 2, deriv = 1}]
[model]
epochs = 5
"""


def test_good_config_parses_into_dataclasses(tmp_path: Path) -> None:
    cfg = parse_config(GOOD, base_dir=tmp_path)
    assert cfg.seed == 3
    assert cfg.data.path == tmp_path / "spectra.npz"
    assert cfg.data.targets == ("fat_pct", "protein_pct")
    assert cfg.split.group == "sample_id"
    assert cfg.split.train is not None and dict(cfg.split.train.where) == {"split": "cal"}
    assert cfg.split.select is not None and dict(cfg.split.select.where) == {"split": "val", "instrument": [1, 2]}
    assert [t.name for t in cfg.split.tests] == ["test_a"]
    assert list(cfg.preprocessing.candidates) == ["snv", "sg"]
    assert cfg.preprocessing.cnn == "pls_best"
    assert dict(cfg.model) == {"epochs": 5}
    assert cfg.intervals.coverage == pytest.approx(0.9)


@pytest.mark.parametrize("name", ["tablets_assay.toml", "tablets_multi.toml", "fruit_puree.toml", "wheat_protein.toml",
                                  "tecator_fat.toml", "olive_oil.toml", "meat_species.toml", "coffee.toml"])
def test_shipped_examples_parse_and_point_at_data(name: str, repo_root: Path) -> None:
    cfg = load_config(repo_root / "examples" / name)
    assert cfg.data.path.name.endswith(".npz")
    assert cfg.bundle.model_id


@pytest.mark.parametrize("name", ["tablets_assay.toml", "tablets_multi.toml", "fruit_puree.toml", "wheat_protein.toml",
                                  "tecator_fat.toml", "olive_oil.toml", "meat_species.toml", "coffee.toml"])
def test_shipped_examples_satisfy_the_model_sections(name: str, repo_root: Path) -> None:
    """The [model], [augment] and [pruning] tables are validated by the model code's own config classes."""
    from trainer.pipeline.recipe import build_augment_config, build_cnn_config, build_prune_config

    cfg = load_config(repo_root / "examples" / name)
    assert build_cnn_config(cfg).task == cfg.task
    build_augment_config(cfg)
    build_prune_config(cfg)


@pytest.mark.parametrize(("table", "on"), [
    ("", False), ("[pruning]\n", False), ("[pruning]\nenabled = false\ntarget_sparsity = 0.5\n", False),
    ("[pruning]\ntarget_sparsity = 0\n", False), ("[pruning]\nepochs = 5\n", True),
    ("[pruning]\nenabled = true\nepochs = 5\n", True), ("[pruning]\ntarget_sparsity = 0.3\n", True),
])
def test_what_a_pruning_table_means(table: str, on: bool) -> None:
    from trainer.pipeline.recipe import build_prune_config

    assert (build_prune_config(parse_config(GOOD + table, base_dir=".")) is not None) is on


@pytest.mark.parametrize(("table", "got"), [("[pruning]\nenabled = true\n", "got none"),
                                            ("[pruning]\nenabled = true\ntarget_sparsity = 0\n", "got 0")])
def test_pruning_enabled_with_nothing_to_prune_to_is_refused(table: str, got: str) -> None:
    from trainer.pipeline.recipe import build_prune_config

    with pytest.raises(TrainConfigError, match=f"pruning.enabled = true: expected a target_sparsity above 0.*{got}"):
        build_prune_config(parse_config(GOOD + table, base_dir="."))


def test_tablets_example_follows_the_protocol(repo_root: Path) -> None:
    cfg = load_config(repo_root / "examples" / "tablets_assay.toml")
    assert cfg.data.targets == ("assay_mg",)
    assert cfg.split.train is not None and dict(cfg.split.train.where) == {"split": "test", "instrument": 1}
    assert cfg.split.select is not None and dict(cfg.split.select.where) == {"split": "validate", "instrument": 1}
    tests = {t.name: dict(t.selector.where) for t in cfg.split.tests}
    assert tests == {
        "test_inst1": {"split": "calibrate", "instrument": 1},
        "test_inst2": {"split": "calibrate", "instrument": 2},
    }


def test_tablets_example_declares_the_simulators_line_detector(repo_root: Path) -> None:
    """The OOD model of the tablets example is fitted for the line spectro-bench loop measures: spectro-sim's
    detector with its default parameters and scans (docs/training.md, [instrument.noise])."""
    from firmware_bridge.simulator import SimulatorConfig

    noise = load_config(repo_root / "examples" / "tablets_assay.toml").instrument.noise
    assert noise is not None and noise.detector_parameters() == {}
    assert noise.averages == SimulatorConfig().averages
    assert noise.reference_averages == SimulatorConfig().reference_averages  # its dark and white, too
    assert LineNoiseConfig().reference_averages == SimulatorConfig().reference_averages


def test_tablets_multi_example_has_three_targets_and_the_assay_protocol(repo_root: Path) -> None:
    """One network for weight, hardness and assay, under the very protocol of the one-target assay config."""
    multi = load_config(repo_root / "examples" / "tablets_multi.toml")
    single = load_config(repo_root / "examples" / "tablets_assay.toml")
    assert multi.data.targets == ("weight_mg", "hardness", "assay_mg")
    assert multi.data.path == single.data.path
    assert multi.split == single.split
    assert dict(multi.model) == dict(single.model)
    assert multi.bundle.model_id != single.bundle.model_id


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('seed = 3', 'seed = "x"', "seed: expected an integer"),
        ('seed = 3', 'colour = 3', r"colour: unknown key \(expected one of augment, "),
        ('seed = 3', 'sed = 3', r"sed: unknown key; did you mean 'seed'\?"),
        ('[model]', '[interval]\ncoverage = 0.9\n[model]', r"interval: unknown key; did you mean 'intervals'\?"),
        ('path = "spectra.npz"', 'path = "s.npz"\ntarget_path = "r.csv"',
         r"data.target_path: unknown key; did you mean 'targets_path'\?"),
        ('targets = ["fat_pct", "protein_pct"]', 'targets = []', "data.targets: expected a non-empty array"),
        ('targets = ["fat_pct", "protein_pct"]', 'targets = ["a", "a"]', "data.targets: expected distinct"),
        ('path = "spectra.npz"', 'path = 3', "data.path: expected a string"),
        ('path = "spectra.npz"', 'path = "s.npz"\ntask = "ranking"', "data.task: expected one of"),
        ('train = {split = "cal"}', 'train = {}', "split.train: expected at least one column"),
        ('train = {split = "cal"}', '', "split.train: missing required table"),
        ('test_a = {split = "test"}', 'test_a = {split = {a = 1}}', "split.test.test_a.split: expected a string"),
        ('group = "sample_id"', 'method = "random"', "split.method: expected one of"),
        ('sg = [{op = "savgol", window = 11, polyorder = 2, deriv = 1}]', 'sg = [{window = 11}]',
         r"preprocessing.candidates.sg\[0\]: expected a table with an 'op'"),
        ('[model]', '[preprocessing]\ncnn = "nope"\n[model]', "preprocessing.cnn: expected 'pls_best' or a candidate"),
        ('[model]', '[intervals]\ncoverage = 1.5\n[model]', "intervals.coverage: expected a number strictly between"),
        ('[model]', '[ood]\nalpha = 0\n[model]', "ood.alpha: expected a number strictly between"),
        ('[model]', '[ood]\nn_components = 12\nmax_components = 10\n[model]',
         "ood.n_components: expected at most ood.max_components = 10, got 12"),
        ('[model]', '[cv]\nfolds = 1\n[model]', "cv.folds: expected an integer >= 2"),
        ('[model]', '[bundle]\nmodel_id = "a b"\n[model]', "bundle.model_id: expected 1-64 letters"),
        ('[model]', '[bundle]\nmodel_version = "1.0 beta"\n[model]', "bundle.model_version: expected 1-64 letters"),
        ('[model]', '[quantize]\nrepresentative = 3\n[model]', "quantize.representative: unknown key"),
        ('[model]', '[quantize]\nint16x8 = "always"\n[model]', "quantize.int16x8: expected one of auto, never"),
        ('[model]', '[quantize]\nheadroom = -0.1\n[model]',
         r"quantize.headroom: expected a number from 0 to 3 .* got -0.1"),
        ('[model]', '[quantize]\nheadroom = "25 %"\n[model]', "quantize.headroom: expected a number, got str"),
        # Keys that would be ignored are refused, saying where they belong.
        ('path = "spectra.npz"', 'synthetic = { samples = 60 }\ntargets_path = "refs.csv"',
         r"data.targets_path: describes a data file \(path\), .* got targets_path"),
        ('path = "spectra.npz"', 'synthetic = { samples = 60 }\naxis_unit = "cm-1"\ndelimiter = ";"',
         "data.axis_unit: describes a data file .* got axis_unit, delimiter"),
        ('path = "spectra.npz"', 'synthetic = { samples = 60 }\ntask = "classification"',
         "data.task: the synthetic spectra are a regression, got 'classification'"),
        ('group = "sample_id"', 'group = "sample_id"\nfolds = 4',
         "split.folds: used only with method = 'grouped_kfold', got it with method = 'explicit'"),
        ('group = "sample_id"', 'group = "sample_id"\ntest_fold = 1', "split.test_fold: used only with method"),
        ('test_a = {split = "test"}', 'train = {split = "test"}',
         "split.test.train: expected a test-set name other than 'train' and 'select'"),
        ('select = {split = "val", instrument = [1, 2]}', 'select = {holdout_fraction = 0.2, split = "val"}',
         r"split.select: expected holdout_fraction alone or column = value conditions, got holdout_fraction with "
         r"\['split'\]"),
        ('select = {split = "val", instrument = [1, 2]}', 'select = {split = []}',
         r"split.select.split: expected a string, number, true/false or a non-empty array of them, got \[\]"),
        ('[model]', '[search]\nstorage = "  "\n[model]',
         "search.storage: expected a storage URL or a file name, got '  '"),
        ('[model]', '[instrument.noise]\nread_noise_counts = -1\n[model]',
         "instrument.noise.read_noise_counts: expected a finite number >= 0, got -1"),
    ],
)
def test_bad_configs_name_the_key(old: str, new: str, message: str) -> None:
    assert old in GOOD
    with pytest.raises(TrainConfigError, match=message):
        parse_config(GOOD.replace(old, new, 1))


def test_quantize_int16x8_defaults_to_auto_and_reads_never() -> None:
    assert parse_config(GOOD).quantize.int16x8 == "auto"
    never = parse_config(GOOD.replace("[model]", '[quantize]\nint16x8 = "never"\n[model]', 1))
    assert never.quantize.int16x8 == "never"


def test_quantize_headroom_defaults_to_a_quarter_and_reads_zero() -> None:
    assert parse_config(GOOD).quantize.headroom == 0.25
    assert parse_config(GOOD.replace("[model]", "[quantize]\nheadroom = 0\n[model]", 1)).quantize.headroom == 0.0


def test_toml_syntax_error_is_a_config_error() -> None:
    with pytest.raises(TrainConfigError, match="invalid TOML"):
        parse_config("[data\npath=1")


def test_grouped_kfold_split_config() -> None:
    text = GOOD.split("[split]")[0] + """
[split]
method = "grouped_kfold"
group = "batch"
folds = 5
test_fold = 2
select_fold = 4
[preprocessing.candidates]
snv = [{op = "snv"}]
"""
    cfg = parse_config(text)
    assert (cfg.split.method, cfg.split.folds, cfg.split.test_fold, cfg.split.select_fold) == ("grouped_kfold", 5, 2, 4)
    with pytest.raises(TrainConfigError, match="split.select_fold: must differ"):
        parse_config(text.replace("select_fold = 4", "select_fold = 2"))
    with pytest.raises(TrainConfigError, match="split.train: not used with method = 'grouped_kfold'"):
        parse_config(text.replace('folds = 5', 'folds = 5\ntrain = {split = "a"}'))


def test_group_may_combine_columns() -> None:
    cfg = parse_config(GOOD.replace('group = "sample_id"', 'group = ["sample_id", "batch"]'))
    assert cfg.split.group == "sample_id+batch"
    with pytest.raises(TrainConfigError, match="split.group: expected a column name"):
        parse_config(GOOD.replace('group = "sample_id"', 'group = ["a", 3]'))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")
