"""Tests of trainer.splits: selectors, grouped folds and hold-outs never put one sample's replicates on two sides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.config import parse_config
from trainer.data import SpectralDataset, load_dataset
from trainer.errors import SplitError, TrainConfigError
from trainer.splits import check_no_leak, grouped_folds, holdout_rows, make_split_plan, select_rows

N_SAMPLES = 60
REPLICATES = 3


def _replicated() -> SpectralDataset:
    """60 samples x 3 replicate spectra, with split/instrument/batch columns."""
    n = N_SAMPLES * REPLICATES
    sample = np.repeat(np.array([f"s{i:03d}" for i in range(N_SAMPLES)]), REPLICATES)
    rng = np.random.default_rng(1)
    return SpectralDataset(
        X=rng.normal(size=(n, 6)),
        wavelengths=np.arange(6.0),
        y=rng.normal(size=(n, 1)),
        target_names=("y",),
        columns={
            "sample_id": sample,
            "split": np.repeat(np.array(["cal", "val", "test"]), n // 3),
            "instrument": np.tile(np.array([1, 2]), n // 2),
        },
    )


def _split_cfg(body: str):  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
    return parse_config('[data]\npath = "x.npz"\ntargets = ["y"]\n' + body
                        + '\n[preprocessing.candidates]\nsnv = [{op = "snv"}]\n').split


def test_selector_picks_rows_meeting_all_conditions() -> None:
    ds = _replicated()
    rows = select_rows(ds, {"split": "cal", "instrument": 2})
    assert rows.size == 30
    assert set(ds.columns["split"][rows]) == {"cal"} and set(ds.columns["instrument"][rows]) == {2}
    assert select_rows(ds, {"instrument": [1, 2]}).size == N_SAMPLES * REPLICATES
    assert select_rows(ds, {"instrument": "1"}).size == 90  # TOML strings match numeric columns by text


def test_selector_errors_name_the_column_and_values() -> None:
    ds = _replicated()
    with pytest.raises(SplitError, match="split.train.batch: .* has no per-row column 'batch'; available: instrument"):
        select_rows(ds, {"batch": 1}, where="split.train")
    with pytest.raises(SplitError, match="no row has split = 'calibrate'; values present: cal, test, val"):
        select_rows(ds, {"split": "calibrate"})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouped_folds_keep_replicates_together(seed: int) -> None:
    groups = _replicated().columns["sample_id"]
    folds = grouped_folds(groups, 5, seed=seed)
    assert len(folds) == 5
    held = np.concatenate([h for _, h in folds])
    assert np.array_equal(np.sort(held), np.arange(groups.size))  # every row held out exactly once
    for fit, out in folds:
        assert not set(groups[fit]) & set(groups[out])


def test_stratified_grouped_folds_for_classes() -> None:
    groups = np.arange(100)
    y = np.repeat([0, 1], 50)
    for fit, out in grouped_folds(groups, 5, seed=0, y_class=y):
        assert abs(y[out].mean() - 0.5) < 0.15
        assert not set(fit) & set(out)


def test_holdout_takes_whole_groups() -> None:
    ds = _replicated()
    rows = select_rows(ds, {"split": ["cal", "val"]})
    keep, held = holdout_rows(rows, ds.columns["sample_id"], 0.25, seed=0)
    g = ds.columns["sample_id"]
    assert keep.size + held.size == rows.size
    assert not set(g[keep]) & set(g[held])
    assert 0.15 < held.size / rows.size < 0.35


def test_combined_group_columns() -> None:
    from trainer.splits import group_labels

    ds = _replicated()
    g = group_labels(ds, "sample_id+instrument")
    assert g[0] == "s000|1" and np.unique(g).size == 120
    with pytest.raises(SplitError, match="split.group: .*no per-row column 'batch'"):
        group_labels(ds, "sample_id+batch")


def test_leak_between_train_and_test_is_refused() -> None:
    groups = np.array(["a", "a", "b", "c"])
    with pytest.raises(SplitError, match="1 groups have rows in both train and test .*'a'"):
        check_no_leak(groups, {"train": np.array([0, 2]), "test": np.array([1, 3])}, test_names=["test"])
    with pytest.raises(SplitError, match=r"1 rows are in both train and select \(first: row 2\); the conditions"):
        check_no_leak(groups, {"train": np.array([0, 2]), "select": np.array([2])})
    with pytest.raises(SplitError, match=r"\(first: row 2, sample_id 'lab-7'\)"):
        check_no_leak(groups, {"train": np.array([0, 2]), "select": np.array([2])},
                      row_ids=("sample_id", np.array(["lab-5", "lab-6", "lab-7", "lab-8"])))
    # two test sets may share a sample (one tablet on two instruments)
    check_no_leak(groups, {"train": np.array([2]), "t1": np.array([0]), "t2": np.array([1])}, test_names=["t1", "t2"])


def test_explicit_plan_that_leaks_replicates_is_refused() -> None:
    ds = _replicated()
    cfg = _split_cfg('[split]\ngroup = "sample_id"\ntrain = {instrument = 1}\nselect = {holdout_fraction = 0.2}\n'
                     '[split.test]\ntest = {instrument = 2}\n')
    with pytest.raises(SplitError, match="groups have rows in both train and test"):
        make_split_plan(ds, cfg, seed=0)


@pytest.mark.parametrize("seed", [0, 7])
def test_grouped_kfold_plan_is_disjoint_and_complete(seed: int) -> None:
    ds = _replicated()
    cfg = _split_cfg('[split]\nmethod = "grouped_kfold"\ngroup = "sample_id"\nfolds = 5\n')
    plan = make_split_plan(ds, cfg, seed=seed)
    g = plan.groups
    roles = plan.roles()
    assert sum(r.size for r in roles.values()) == ds.n_samples
    assert not set(g[plan.train_rows]) & set(g[plan.tests["test"]])
    assert not set(g[plan.select_rows]) & set(g[plan.tests["test"]])
    assert not set(g[plan.train_rows]) & set(g[plan.select_rows])


def test_grouped_kfold_without_a_selection_fold_trains_every_other_fold() -> None:
    ds = _replicated()
    body = '[split]\nmethod = "grouped_kfold"\ngroup = "sample_id"\nfolds = 5\n'
    with_select = make_split_plan(ds, _split_cfg(body), seed=0)
    plan = make_split_plan(ds, _split_cfg(body + "select_fold = false\n"), seed=0)
    assert plan.select_rows.size == 0 and "select" not in plan.roles()
    assert np.array_equal(plan.tests["test"], with_select.tests["test"])  # the same test fold
    assert np.array_equal(plan.train_rows, np.sort(np.union1d(with_select.train_rows, with_select.select_rows)))
    with pytest.raises(TrainConfigError, match=r"split.select_fold: expected an integer in \[0, 4\] or false, got 7"):
        _split_cfg(body + "select_fold = 7\n")
    with pytest.raises(TrainConfigError, match=r"split.test_fold: expected an integer in \[0, 4\], got 7"):
        _split_cfg(body + "test_fold = 7\n")
    with pytest.raises(TrainConfigError, match="split.select_fold: expected a fold number or false"):
        _split_cfg(body + "select_fold = true\n")


def test_tablets_protocol_plan(datasets_dir: Path, repo_root: Path) -> None:
    from trainer.config import load_config

    cfg = load_config(repo_root / "examples" / "tablets_assay.toml")
    ds = load_dataset(datasets_dir / "idrc2002_tablets.npz", targets=["assay_mg"])
    plan = make_split_plan(ds, cfg.split, seed=0)
    assert plan.train_rows.size == 460 and plan.select_rows.size == 40
    assert {k: v.size for k, v in plan.tests.items()} == {"test_inst1": 155, "test_inst2": 155}
    sid = ds.columns["sample_id"]
    assert np.array_equal(sid[plan.tests["test_inst1"]], sid[plan.tests["test_inst2"]])  # same tablets, 2 instruments
    assert not set(sid[plan.train_rows]) & set(sid[plan.tests["test_inst2"]])
