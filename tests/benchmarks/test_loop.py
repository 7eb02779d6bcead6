"""``spectro-bench loop`` with real processes (spectro-sim on a pty, spectro-edge run, mosquitto, subscriber) on the
trainer-built demo bundle: zero loss, the loop predicts exactly what the bundle predicts offline on the frames the
simulator sent, and runs that cannot measure anything are refused before streaming.  Behaviour, not figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.loop import EXIT_REFUSED
from tests.conftest import DEMO_CONFIG
from tests.support.tiny_fit import CLASS_CONFIG, write_classes

#: Spectra of the short loop run.
FRAMES = 80
#: Keys of the loop JSON named by issue 13.
KEYS = {"predictions", "lost", "loop_rmsep", "offline_rmsep", "ood_alarm_rate", "sent", "duplicates", "ratio",
        "replay_rmsep", "loop_vs_replay_max_abs_diff", "goals", "setup", "host", "load"}
TARGETS = {"analyte_a_pct", "analyte_b_pct", "analyte_c_pct"}
#: How far the loop's RMSEP on the simulator's noisy frames may sit from the same bundle offline on noise-free
#: spectra of the same rows: the simulator's detector noise alone (80 spectra; measured ratios 0.92-1.16).
RMSEP_RATIO_TOLERANCE = 0.35


def _synthetic_npz(path: Path) -> Path:
    """The demo config's synthetic spectra as a dataset file (with its split column)."""
    from firmware_bridge.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(500, seed=0, n_channels=256)
    np.savez(path, **{k: np.asarray(v) for k, v in d.items()})
    return path


@pytest.mark.slow
def test_loop_loses_nothing_and_predicts_what_the_bundle_predicts_offline(tmp_path: Path, demo_bundle: Path) -> None:
    out = tmp_path / "loop.json"
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(_synthetic_npz(tmp_path / "syn.npz")),
               "--select", "split=test", "--frames", str(FRAMES), "--rate", "100", "--broker", "mosquitto",
               "--json", str(out)])
    assert rc in (0, 1)  # 1: a goal missed (a figure), never a refusal
    data = json.loads(out.read_text())
    assert KEYS <= set(data)
    assert (data["sent"], data["predictions"], data["lost"]) == (FRAMES, FRAMES, 0)
    assert data["setup"]["broker"].startswith("mosquitto")
    assert set(data["loop_rmsep"]) == TARGETS == set(data["offline_rmsep"])
    # Every received prediction equals the bundle's offline prediction of the very frame the simulator sent.
    assert data["replayed"] == FRAMES and data["loop_vs_replay_max_abs_diff"] == 0.0
    assert data["replay_rmsep"] == data["loop_rmsep"]
    for name in TARGETS:
        assert data["loop_rmsep"][name] == pytest.approx(data["offline_rmsep"][name], rel=RMSEP_RATIO_TOLERANCE)
    assert 0.0 <= data["ood_alarm_rate"] <= 1.0
    # The loop's alarms are those of the very frames sent, and a flag means T2 or Q over its limit.
    assert data["replay_ood_alarm_rate"] == data["ood_alarm_rate"]
    by_stat = data["ood_alarm_rate_by_statistic"]
    assert set(by_stat) == {"t2", "q"}
    assert max(by_stat.values()) <= data["ood_alarm_rate"] <= by_stat["t2"] + by_stat["q"]
    assert "| loop RMSEP |" in out.with_suffix(".md").read_text().replace("| target | unit ", "|")
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_channels": 128}, "pixels, got 128"),
    ({"n_channels": 256, "wavelength_range_nm": (1000.0, 1600.0)},
     "expected a wavelength axis covering 900-1700 nm, got 1000-1600 nm"),
    ({"n_channels": 6000}, "the simulator cannot send these spectra: expected at most 5614 pixels (one SPECTRUM "
                           "frame of counts in uint16), got 6000"),
], ids=["pixel-count", "wavelength-range", "wider-than-a-frame"])
def test_loop_refuses_spectra_the_bundle_cannot_serve(tmp_path: Path, demo_bundle: Path, kwargs: dict,
                                                      message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from firmware_bridge.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(40, seed=0, **kwargs)
    np.savez(tmp_path / "d.npz", **{k: np.asarray(v) for k, v in d.items()})
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(tmp_path / "d.npz"),
               "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == EXIT_REFUSED
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()  # nothing streamed, nothing written


def test_loop_refuses_a_dataset_without_the_bundles_targets(tmp_path: Path, demo_bundle: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from firmware_bridge.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(40, seed=0, n_channels=256)
    np.savez(tmp_path / "d.npz", X=d["X"], wavelengths=d["wavelengths"], y=np.asarray(d["y"])[:, 0])
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(tmp_path / "d.npz")])
    err = capsys.readouterr().err
    assert rc == EXIT_REFUSED
    assert "expected the bundle's target 'analyte_a_pct' among the dataset's targets ['target_0']" in err


def _synthetic_csv(path: Path, targets: list[str]) -> Path:
    """The demo config's synthetic spectra as a lab's CSV: sample ids, the split, ``targets`` (in that order, not the
    bundle's), then one column per wavelength with its unit."""
    from firmware_bridge.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(500, seed=0, n_channels=256)
    names = [str(n) for n in d["target_names"]]
    head = ["sample_id", "split", *targets, *(f"{w:.4f} nm" for w in d["wavelengths"])]
    lines = [",".join(head)]
    for i in range(len(d["X"])):
        refs = [repr(float(d["y"][i, names.index(t)])) for t in targets]
        lines.append(",".join([f"s{i}", str(d["split"][i]), *refs, *(repr(float(v)) for v in d["X"][i])]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_loop_streams_the_rows_of_a_csv_dataset_through_a_bundle(tmp_path: Path, demo_bundle: Path) -> None:
    csv = _synthetic_csv(tmp_path / "lab.csv", sorted(TARGETS, reverse=True))
    out = tmp_path / "loop.json"
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(csv), "--select", "split=test",
               "--frames", "30", "--rate", "100", "--broker", "mosquitto", "--json", str(out)])
    assert rc in (0, 1)
    data = json.loads(out.read_text())
    assert (data["sent"], data["predictions"], data["lost"]) == (30, 30, 0)
    assert data["loop_vs_replay_max_abs_diff"] == 0.0
    for name in TARGETS:  # each reference column reached its own target, whatever the file's column order
        assert data["loop_rmsep"][name] == pytest.approx(data["offline_rmsep"][name], rel=RMSEP_RATIO_TOLERANCE)


def test_loop_refuses_a_csv_dataset_without_the_bundles_targets(tmp_path: Path, demo_bundle: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    csv = _synthetic_csv(tmp_path / "lab.csv", ["analyte_a_pct"])
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(csv)])
    err = capsys.readouterr().err
    assert rc == EXIT_REFUSED and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "cannot read" in err and "analyte_b_pct" in err and "--config CONFIG" in err


def test_loop_budget_min_reaches_the_fit_and_its_cache_key(tmp_path: Path, demo_bundle: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import benchmarks.harness.training as training

    assert training.cache_key(DEMO_CONFIG, 0.0).endswith("-b0") and training.cache_key(DEMO_CONFIG) != \
        training.cache_key(DEMO_CONFIG, 0.0)  # a budget override is another model
    commands: list[list[str]] = []

    class Stop(Exception):
        pass

    def popen(cmd: list[str], **kwargs: object) -> None:
        commands.append(cmd)
        raise Stop

    monkeypatch.setattr(training.subprocess, "Popen", popen)
    with pytest.raises(Stop):
        training.train(DEMO_CONFIG, tmp_path / "out", budget_min=0.0)
    assert commands[0][-2:] == ["--budget-min", "0"]
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(tmp_path / "d.npz"), "--budget-min", "0"])
    assert rc == EXIT_REFUSED and "expected --budget-min with --config" in capsys.readouterr().err


def test_loop_refuses_selectors_that_match_no_row(tmp_path: Path, demo_bundle: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(_synthetic_npz(tmp_path / "syn.npz")),
               "--select", "split=nowhere"])
    assert rc == EXIT_REFUSED
    assert "expected rows matching {'split': 'nowhere'}, found none" in capsys.readouterr().err


def test_loop_takes_the_rows_of_a_configs_test_set() -> None:
    from benchmarks.harness import load_training_config, selectors_of_test_set

    cfg = load_training_config(DEMO_CONFIG)
    assert selectors_of_test_set(cfg) == ("test", {"split": "test"})
    tablets = load_training_config(DEMO_CONFIG.parent / "tablets_assay.toml")
    assert selectors_of_test_set(tablets) == ("test_inst1", {"split": "calibrate", "instrument": 1})
    assert selectors_of_test_set(tablets, "test_inst2")[1] == {"split": "calibrate", "instrument": 2}


def test_loop_refuses_a_signal_the_bundle_does_not_take(tmp_path: Path, demo_bundle: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["loop", "--bundle", str(demo_bundle), "--dataset", str(_synthetic_npz(tmp_path / "syn.npz")),
               "--select", "split=test", "--signal", "absorbance"])
    assert rc == EXIT_REFUSED
    assert "expects counts frames, got a simulator sending absorbance" in capsys.readouterr().err


def test_loop_streams_the_rows_of_a_csv_config_as_the_trainer_reads_them(tmp_path: Path) -> None:
    """A newcomer's config names a semicolon CSV of spectra with units in its header, reference values in a
    second CSV and an excluded sample: the loop's rows are the trainer's (same spectra, references and test rows)."""
    from benchmarks.harness import (
        dataset_of_config,
        load_training_config,
        select_rows,
        selectors_of_test_set,
        stream_rows,
    )
    from trainer.config import load_config
    from trainer.data import load_configured

    rng = np.random.default_rng(3)
    wl = np.arange(1100.0, 1300.0, 4.0)
    A = 0.5 + 0.1 * rng.random((14, wl.size))
    (tmp_path / "spectra.csv").write_text(
        "sample;set;" + ";".join(f"{w:.0f}nm" for w in wl) + "\n"
        + "".join(f"d{i};{'train' if i < 10 else 'test'};" + ";".join(f"{v:.5f}" for v in A[i]) + "\n"
                  for i in range(14)))
    (tmp_path / "refs.csv").write_text("sample,fat\n" + "".join(f"d{i},{10 + i}\n" for i in range(14)))
    config = tmp_path / "dough.toml"
    text = DEMO_CONFIG.read_text()
    start, end = text.index("[data]"), text.index("\n[", text.index("[data]") + 1)
    data = ('[data]\npath = "spectra.csv"\ntargets_path = "refs.csv"\njoin_on = "sample"\ntargets = ["fat"]\n'
            'exclude = { sample = ["d12"] }\nmin_samples = 5\n')
    config.write_text(text[:start] + data + text[end:])
    cfg = load_training_config(config)
    cfg["split"] = {"group": "row", "train": {"set": "train"}, "test": {"test": {"set": "test"}}}
    got, source = dataset_of_config(cfg, tmp_path)
    assert source.endswith("spectra.csv")
    rows = select_rows(got, selectors_of_test_set(cfg)[1])
    stream = stream_rows(tmp_path / "rows.npz", got, rows, ["fat"], source)
    np.testing.assert_allclose(stream.absorbance, A[[10, 11, 13]], atol=6e-6)  # d12 excluded (5 decimals)
    np.testing.assert_array_equal(stream.y[:, 0], [20, 21, 23])
    np.testing.assert_array_equal(stream.wavelengths, wl)
    ds = load_configured(load_config(config).data)
    np.testing.assert_array_equal(got["X"], ds.X)


def test_a_simulator_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    """The harness says the process exited (not that 60 s passed) and quotes the end of its log."""
    import subprocess
    import sys

    from benchmarks.harness import HarnessError, read_first_line

    log = tmp_path / "sim.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stderr.write('spectro-sim: error: boom\\n'); "
                                 "sys.exit(2)"], stdout=subprocess.PIPE, stderr=err)
        with pytest.raises(HarnessError, match=r"spectro-sim exited with code 2 before printing its first line; "
                                               r"its log .*sim.log ends: spectro-sim: error: boom"):
            read_first_line(proc, "spectro-sim", 30.0, log_path=log)
    proc.wait()


def test_loop_streams_the_test_fold_of_a_grouped_kfold_config(tmp_path: Path) -> None:
    """A config without [split.test] (``method = "grouped_kfold"``, as for a data set published without a split):
    the loop streams the test fold the trainer's split plan draws, rows and references alike."""
    from benchmarks.harness import HarnessError, load_training_config, test_rows_of_config
    from trainer.config import load_config
    from trainer.data import load_configured
    from trainer.splits import make_split_plan

    text = DEMO_CONFIG.read_text()
    start, end = text.index("[split]"), text.index("\n[", text.index("[split.test]") + 1)
    config = tmp_path / "kfold.toml"
    config.write_text(text[:start] + '[split]\nmethod = "grouped_kfold"\nfolds = 5\ntest_fold = 2\nselect_fold = 0\n'
                      + text[end:])
    cfg = load_training_config(config)
    name, data, rows, where, selectors = test_rows_of_config(cfg, config.parent)
    tc = load_config(config)
    ds = load_configured(tc.data)
    expected = make_split_plan(ds, tc.split, seed=tc.seed).tests["test"]
    assert name == "test" and selectors == {} and "test fold 2" in where
    assert 0 < rows.size < len(data["X"]) and np.array_equal(rows, expected)
    np.testing.assert_array_equal(data["X"][rows], ds.X[expected])
    np.testing.assert_array_equal(data["y"][rows], ds.y[expected])
    with pytest.raises(HarnessError, match=r"expected a test set in \['test'\], got 'other'"):
        test_rows_of_config(cfg, config.parent, "other")
    # an explicit config's rows are still its selectors'
    name, data, rows, where, selectors = test_rows_of_config(load_training_config(DEMO_CONFIG), DEMO_CONFIG.parent)
    assert (name, selectors) == ("test", {"split": "test"}) and np.all(data["split"][rows] == "test")


@pytest.fixture(scope="module", params=["cnn", "pls", "auto"])
def class_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle, data set) of a classification trained by ``spectro-train fit --model cnn|pls`` (the CNN, or PLS-DA
    with its softmax) and by ``--model auto`` (the champion rule: the CNN cross-validated beside PLS-DA)."""
    from trainer.cli import main as train_main

    base = tmp_path_factory.mktemp("classes")
    data = write_classes(base / "classes.npz")
    # --model auto searches the CNN recipe too (two trials, scored by the cross-entropy of its class probabilities).
    search = "[search]\ntrials = 2\nbudget_min = 5\nspread_seeds = 2\n" if request.param == "auto" else ""
    (base / "train.toml").write_text(CLASS_CONFIG + search)
    assert train_main(["fit", str(base / "train.toml"), "--out", str(base / "out"), "--model", request.param]) == 0
    metrics = json.loads((base / "out" / "metrics.json").read_text())
    report = (base / "out" / "report" / "index.html").read_text()
    # The classifier's conversion changes the float network's class on as few training/selection rows as any
    # candidate does (trainer.pipeline.int8.choose_class_calibration); the loop below runs it through the edge.
    cal = metrics["cnn_int8_calibration"]
    assert cal["rows"] > 0 and {cal["chosen"], cal["int8_chosen"]} <= set(cal["flips"])
    assert cal["flips"][cal["chosen"]] == min(cal["flips"].values())
    if request.param == "cnn":  # the bundle carries the conversion the entry names
        from edge.bundle import load_bundle

        arithmetic = load_bundle(base / "out" / "synthetic-grade.spectrolite").runtime.arithmetic
        assert arithmetic == ("int16x8" if cal["chosen"] == "int16x8" else "int8")
    # The report draws the test rows' confusion matrices: the bundle through the edge runtime and both candidates.
    assert "<img src='confusion_test.png'" in report
    assert (base / "out" / "report" / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"
    if request.param != "auto":
        assert metrics["deployed_model"] == request.param
        assert f"<b>{'PLS-DA' if request.param == 'pls' else 'CNN'}</b> is deployed: forced by --model" in report
    else:
        _check_the_classification_champion(metrics, report)
    return base / "out" / "synthetic-grade.spectrolite", data


def _check_the_classification_champion(metrics: dict, report: str) -> None:
    """``--model auto`` with a ``[search]``: the CNN recipe was searched and cross-validated on the training rows
    (class-stratified grouped folds), the champion reused the best trial's out-of-fold predictions, and the deployed
    model is the one the recorded error rates make the winner, the selection rows and the out-of-fold training rows
    weighed together."""
    search = metrics["search"]
    assert search["ran"] and search["trials_run"] == 2 and "cross-entropy" in search["score"]
    assert search["best_recipe"]["model"]["n_classes"] == 3 and search["seed_spread"]["seeds"] == [0, 1]
    assert 0.0 <= search["seed_spread"]["mean"]["grade"] <= 1.0  # error rates
    assert metrics["selection"]["cv_rmse"]["cnn_float"] == search["best_cv_rmse"]
    sel = metrics["selection"]
    scores = {k: v["grade"] for k, v in sel["cv_rmse"].items()}
    n_train, n_select = metrics["splits"]["train"], metrics["splits"]["select"]
    assert set(scores) == {"pls", "cnn_float", "select_error_pls_da", "select_error_cnn_int8", "pooled_error_pls_da",
                           "pooled_error_cnn"}
    for model, cv, select in (("pls_da", "pls", "select_error_pls_da"), ("cnn", "cnn_float", "select_error_cnn_int8")):
        assert scores[f"pooled_error_{model}"] == pytest.approx(
            (scores[cv] * n_train + scores[select] * n_select) / (n_train + n_select))
    # Counted errors: each rate is a whole number of the rows it was counted on.
    assert scores["cnn_float"] * n_train == pytest.approx(round(scores["cnn_float"] * n_train))
    want = "cnn" if scores["pooled_error_cnn"] < 0.98 * scores["pooled_error_pls_da"] else "pls"
    assert metrics["deployed_model"] == want
    assert f"training rows out of fold and {n_select} selection rows" in sel["reason"]
    assert "(out-of-fold cross-entropy of the class probabilities)" in report and "CV error rate over 2 seeds" in report
    assert "error rate CNN, both (the rule&#x27;s)" in report or "error rate CNN, both (the rule's)" in report


@pytest.mark.slow
def test_loop_scores_a_classification_bundle_by_its_published_probabilities(
        tmp_path: Path, class_bundle: tuple[Path, Path]) -> None:
    """A classification bundle from ``spectro-train fit`` (its CNN, or PLS-DA) through the loop: every spectrum
    predicted, each published probability the bundle's offline one of the very frame sent, the class the most
    probable label, scored against the class the ANNOTATION frame carried."""
    bundle, data = class_bundle
    metrics = json.loads((bundle.parent / "metrics.json").read_text())
    deployed = next(e for e in metrics["evaluations"] if e["model"] == "deployed" and e["split"] == "test")
    out = tmp_path / "loop.json"
    rc = main(["loop", "--bundle", str(bundle), "--dataset", str(data), "--select", "split=test", "--rate", "100",
               "--averages", "16", "--broker", "mosquitto", "--json", str(out)])
    assert rc in (0, 1)
    got = json.loads(out.read_text())
    n_test = int((np.load(data)["split"] == "test").sum())
    assert (got["task"], got["sent"], got["predictions"], got["lost"]) == ("classification", n_test, n_test, 0)
    assert got["classes"] == ["low", "mid", "high"] and got["units"] == {"grade": "class"}
    assert got["with_reference"] == n_test == got["replayed"]
    assert got["loop_vs_replay_max_abs_diff"] == 0.0 and got["loop_vs_replay_class_agreement"] == 1.0
    assert got["loop_accuracy"] == got["replay_accuracy"]
    confusion = np.array(got["loop_confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == n_test
    assert got["loop_accuracy"]["grade"] == pytest.approx(np.trace(confusion) / n_test)
    # The references the loop carried are the data set's classes: the row sums are the test rows per class.
    y = np.load(data)["y"][np.load(data)["split"] == "test"]
    assert confusion.sum(axis=1).tolist() == np.bincount(y.ravel(), minlength=3).tolist()
    assert np.array(got["offline_confusion"]).sum(axis=1).tolist() == confusion.sum(axis=1).tolist()
    assert got["accuracy_difference"]["grade"] == pytest.approx(
        got["loop_accuracy"]["grade"] - got["offline_accuracy"]["grade"])
    assert got["goals"]["accuracy_met"] == (got["accuracy_difference"]["grade"] >= -0.05)
    # Offline, on noise-free spectra of the test rows, the loop's bundle classifies as the fit said it would.
    assert got["offline_accuracy"]["grade"] == pytest.approx(deployed["accuracy"])
    assert "| loop accuracy |" in out.with_suffix(".md").read_text().replace("| target | classes ", "|")
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_loop_streams_a_classification_csv_through_a_bundle_from_fit(
        tmp_path: Path, class_bundle: tuple[Path, Path]) -> None:
    """A newcomer's classification data as a CSV (class labels in the bundle's target column, headers with units)
    streams as its ``.npz`` does: the bundle's target names the column to read."""
    bundle, data = class_bundle
    d = np.load(data)
    names, y = [str(n) for n in d["class_names"]], np.asarray(d["y"]).reshape(len(d["X"]), -1)[:, 0]
    head = ["sample_id", "split", "grade", *(f"{w:.4f} nm" for w in d["wavelengths"])]
    lines = [",".join(head)] + [",".join([f"s{i}", str(d["split"][i]), names[int(y[i])],
                                          *(repr(float(v)) for v in d["X"][i])]) for i in range(len(d["X"]))]
    csv = tmp_path / "classes.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "loop.json"
    rc = main(["loop", "--bundle", str(bundle), "--dataset", str(csv), "--select", "split=test", "--rate", "100",
               "--broker", "mosquitto", "--json", str(out)])
    assert rc in (0, 1)
    got = json.loads(out.read_text())
    test = np.asarray(d["split"]) == "test"
    n_test = int(test.sum())
    assert (got["task"], got["sent"], got["predictions"], got["lost"]) == ("classification", n_test, n_test, 0)
    assert got["with_reference"] == n_test and got["loop_vs_replay_class_agreement"] == 1.0
    # the CSV's labels (read in text order: high, low, mid) reached the bundle's classes (low, mid, high)
    assert got["classes"] == ["low", "mid", "high"]
    assert np.array(got["loop_confusion"]).sum(axis=1).tolist() == np.bincount(y[test], minlength=3).tolist()


def test_class_references_follow_the_bundles_label_order() -> None:
    from benchmarks.harness import HarnessError, classes_in_bundle_order

    data = {"X": np.zeros((4, 3)), "y": np.array([[0], [1], [2], [1]]), "class_names": np.array(["a", "b", "c"])}
    got = classes_in_bundle_order(data, ["c", "a", "b"])
    assert got["y"][:, 0].tolist() == [1.0, 2.0, 0.0, 2.0] and got["class_names"].tolist() == ["c", "a", "b"]
    with pytest.raises(HarnessError, match=r"expected the data set's classes among the bundle's \['a', 'b'\], "
                                           r"got \['c'\] too"):
        classes_in_bundle_order(data, ["a", "b"])


def test_a_configs_line_detector_sets_the_simulators_scans_unless_the_command_line_does() -> None:
    """``--config`` streams as the config's ``[instrument.noise]`` declares the line (the model was trained for it);
    an explicit ``--averages`` / ``--reference-averages`` wins, and a config without the table gets one scan."""
    import argparse

    from benchmarks.loop import _line_of_config

    noise = {"instrument": {"noise": {"averages": 64, "reference_averages": 16}}}
    args = argparse.Namespace(averages=None, reference_averages=None)
    _line_of_config(args, noise)
    assert (args.averages, args.reference_averages) == (64, 16)
    args = argparse.Namespace(averages=4, reference_averages=1)
    _line_of_config(args, noise)
    assert (args.averages, args.reference_averages) == (4, 1)
    args = argparse.Namespace(averages=None, reference_averages=None)
    _line_of_config(args, {"instrument": {"signal": "counts"}})
    assert (args.averages, args.reference_averages) == (1, None)
