"""``spectro-bench accuracy`` tabulation from the trainer's ``metrics.json`` (``--metrics``: no training here)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.accuracy import TRANSFER_FILE, rows_from_metrics
from benchmarks.cli import main

REGRESSION = {
    "task": "regression", "dataset": "idrc2002_tablets", "model_bytes": 93336, "train_seconds": 40.0,
    "pls_components": {"assay_mg": 8},
    "interval_coverage": {
        "nominal": 0.9, "half_widths": {"assay_mg": 3.3}, "test_inst1": {"assay_mg": 0.70},
        "test_inst2": {"assay_mg": 0.63},
        "residual_shift": {"test_inst1": {"assay_mg": {"median_abs_test": 2.1, "median_abs_calibration": 1.4,
                                                       "ratio": 1.5, "p_value": 3e-5, "shifted": True}}}},
    "ood": {"alarm_rate_line": {"test_inst1": {"t2": 0.009, "q": 0.01, "either": 0.013},
                                "test_inst2": {"t2": 0.97, "q": 0.97, "either": 0.99}}},
    "comparison": [
        {"split": "test_inst1", "target": "assay_mg", "pls_rmsep": 4.5, "cnn_int8_rmsep": 6.4, "cnn_float_rmsep": 6.3,
         "ratio_int8_to_pls": 6.4 / 4.5, "ratio_int8_to_float": 6.4 / 6.3},
        {"split": "test_inst2", "target": "assay_mg", "pls_rmsep": 5.3, "cnn_int8_rmsep": 8.0, "cnn_float_rmsep": 7.9,
         "ratio_int8_to_pls": 8.0 / 5.3, "ratio_int8_to_float": 8.0 / 7.9},
    ],
}
CLASSIFICATION = {
    "task": "classification", "dataset": "coffee_mir", "model_bytes": 5000, "pls_components": {"Varietal": 3},
    "comparison": [{"split": "test", "target": "Varietal", "pls_accuracy": 1.0, "cnn_int8_accuracy": 0.9,
                    "cnn_float_accuracy": 0.9, "ratio_int8_to_pls": 0.9, "ratio_int8_to_float": 1.0}],
}

TRANSFER_ROWS = [
    {"target": "assay_mg", "method": "none", "n_transfer": 0, "model": "pls", "rmsep_inst1": 4.4, "rmsep_inst2": 4.6},
    {"target": "assay_mg", "method": "pds", "n_transfer": 10, "model": "cnn_int8", "rmsep_inst1": 4.0,
     "rmsep_inst2": 5.0, "window": 3},
    {"target": "assay_mg", "method": "finetune", "n_transfer": 10, "model": "cnn_int8", "rmsep_inst1": 4.2,
     "rmsep_inst2": 4.3},
]


def test_rows_pick_the_task_metric_for_each_model() -> None:
    reg = rows_from_metrics(REGRESSION, "tablets")
    assert [(r["split"], r["metric"], r["pls"], r["cnn_float"], r["cnn_int8"]) for r in reg] == [
        ("test_inst1", "rmsep", 4.5, 6.3, 6.4), ("test_inst2", "rmsep", 5.3, 7.9, 8.0)]
    assert reg[0]["pls_components"] == 8
    # The interval goal's figures beside the accuracy: coverage, the OOD monitor's verdict, the residual shift.
    assert [(r["coverage"], r["ood_flagged"], r["residual_shifted"]) for r in reg] == [
        (0.70, 0.013, True), (0.63, 0.99, None)]
    assert reg[0]["residual_ratio"] == 1.5 and reg[0]["interval_nominal"] == 0.9
    (cls,) = rows_from_metrics(CLASSIFICATION, "coffee")
    assert (cls["metric"], cls["pls"], cls["cnn_int8"]) == ("accuracy", 1.0, 0.9)


def test_a_per_target_bundle_names_the_model_serving_each_target() -> None:
    split = {**REGRESSION, "deployed_model": "per_target",
             "deployed_per_target": {"assay_mg": "pls", "weight_mg": "cnn"},
             "comparison": [{**REGRESSION["comparison"][0], "target": t, "deployed_rmsep": 1.0}
                            for t in ("assay_mg", "weight_mg")]}
    assert [(r["target"], r["deployed_model"]) for r in rows_from_metrics(split, "tablets")] == [
        ("assay_mg", "pls"), ("weight_mg", "cnn")]
    assert {r["deployed_model"] for r in rows_from_metrics({**REGRESSION, "deployed_model": "pls"}, "t")} == {"pls"}


def test_command_tabulates_given_metrics_files(tmp_path: Path, capsys) -> None:
    paths = []
    for name, m in (("tablets", REGRESSION), ("coffee", CLASSIFICATION)):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "metrics.json")
        paths[-1].write_text(json.dumps(m))
    out = tmp_path / "acc.json"
    assert main(["accuracy", "--metrics", ",".join(map(str, paths)), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["protocol"] for r in data["rows"]] == ["tablets", "tablets", "coffee"]
    assert data["failures"] == {}
    printed = capsys.readouterr().out
    assert "| tablets | test_inst1 | assay_mg | rmsep | 4.5 | 6.3 | 6.4 |" in printed
    assert "| 0.7 | 0.013 | 1.50x (shifted, p 3e-05) | 40 |" in printed


def test_unreadable_metrics_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "x" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    assert main(["accuracy", "--metrics", str(bad), "--json", str(tmp_path / "a.json")]) == 1
    assert "x" in json.loads((tmp_path / "a.json").read_text())["failures"]


def _write_protocols(tmp_path: Path) -> list[Path]:
    """tablets (with the child's transfer.json beside its metrics.json) and coffee (one instrument: none)."""
    paths = []
    for name, m in (("tablets", REGRESSION), ("coffee", CLASSIFICATION)):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "metrics.json")
        paths[-1].write_text(json.dumps(m))
    (tmp_path / "tablets" / TRANSFER_FILE).write_text(json.dumps({"rows": TRANSFER_ROWS}))
    return paths


def test_transfer_rows_are_tabulated_under_their_own_key(tmp_path: Path, capsys) -> None:
    paths = _write_protocols(tmp_path)
    out = tmp_path / "acc.json"
    assert main(["accuracy", "--metrics", ",".join(map(str, paths)), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["transfer"] == [{"protocol": "tablets", **r} for r in TRANSFER_ROWS]
    for row in data["transfer"]:
        assert {"method", "n_transfer", "model", "rmsep_inst1", "rmsep_inst2"} <= set(row)
    assert [r["protocol"] for r in data["rows"]] == ["tablets", "tablets", "coffee"]
    printed = capsys.readouterr().out
    assert "| tablets | assay_mg | cnn_int8 | pds | 10 | 4 | 5 | 1.25 | 3 |" in printed
    assert "| tablets | assay_mg | cnn_int8 | pds | 10 |" in out.with_suffix(".md").read_text()


def test_no_transfer_flag_leaves_the_transfer_rows_out(tmp_path: Path, capsys) -> None:
    paths = _write_protocols(tmp_path)
    out = tmp_path / "acc.json"
    assert main(["accuracy", "--metrics", ",".join(map(str, paths)), "--json", str(out), "--no-transfer"]) == 0
    assert json.loads(out.read_text())["transfer"] == []
    assert "finetune" not in capsys.readouterr().out


def test_unreadable_transfer_file_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    paths = _write_protocols(tmp_path)
    (tmp_path / "tablets" / TRANSFER_FILE).write_text("{not json")
    out = tmp_path / "acc.json"
    assert main(["accuracy", "--metrics", ",".join(map(str, paths)), "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert "tablets" in data["failures"] and data["transfer"] == []
    assert len(data["rows"]) == 3


def test_the_shift_cell_names_larger_and_smaller_errors() -> None:
    from benchmarks.accuracy import _shift_cell

    assert _shift_cell({"residual_ratio": None}) is None
    assert _shift_cell({"residual_ratio": 1.5, "residual_shift_p": 3e-5, "residual_shifted": True}) == \
        "1.50x (shifted, p 3e-05)"
    assert _shift_cell({"residual_ratio": 0.6, "residual_shift_p": 1e-3, "residual_shifted": False}) == \
        "0.60x (smaller, p 0.001)"
    assert _shift_cell({"residual_ratio": 1.1, "residual_shift_p": 0.2, "residual_shifted": False}) == "1.10x"
    assert _shift_cell({"residual_ratio": None, "residual_shift_p": 1e-6, "residual_shifted": True}) == \
        "shifted (calibration median 0, p 1e-06)"


def test_the_shift_level_is_the_trainers() -> None:
    from benchmarks.accuracy import SHIFT_P_VALUE
    from trainer.conformal import SHIFT_P_VALUE as TRAINER_LEVEL

    assert SHIFT_P_VALUE == TRAINER_LEVEL


def test_ood_flagged_counts_the_autoencoder_where_the_bundle_has_one() -> None:
    with_ae = {**REGRESSION, "ood": {**REGRESSION["ood"], "autoencoder": {
        "alarm_rate_line": {"test_inst1": {"autoencoder": 0.02, "any": 0.03}}}}}
    assert [r["ood_flagged"] for r in rows_from_metrics(with_ae, "tablets")] == [0.03, 0.99]


def test_the_line_figure_sits_beside_the_offline_one_where_a_line_detector_is_declared() -> None:
    line = {"model": "deployed", "averages": 64, "copies": 5,
            "splits": {"test_inst1": {"assay_mg": {"rmsep": 6.0, "offline_rmsep": 4.8, "ratio": 1.25}}}}
    first, second = rows_from_metrics({**REGRESSION, "line_accuracy": line}, "tablets")
    assert (first["deployed_line"], first["ratio_line_to_offline"]) == (6.0, 1.25)
    assert (second["deployed_line"], second["ratio_line_to_offline"]) == (None, None)  # no line copies there
    assert all(r["deployed_line"] is None for r in rows_from_metrics(REGRESSION, "tablets"))
