"""``spectro-train update``'s join and the deployed model's figures (issue 16), on an archive written by the edge's
own archive writer (:class:`edge.archive.Archive`, fed by the daemon's :class:`edge.inference.InferenceEngine` with
counts from the simulator's detector model) and exported by ``spectro-edge export``: replicates joined on the sample
id, rows joined on the sampling time, check standards never joined, every unmatched row and tag reported, and bad lab
files refused naming the file, line and column. The whole loop with a real daemon and a retraining is
tests/integration/test_update_from_line.py."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge.archive import Archive, ArchivePolicy
from edge.bundle import load_bundle
from edge.inference import InferenceEngine, Prediction
from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
from firmware_bridge.frames import Spectrum
from firmware_bridge.physics import DetectorModel
from firmware_bridge.synthetic import make_synthetic_dataset
from tests.support.trained import DEMO_V1, REPO, committed
from trainer.cli import main
from trainer.errors import DataError
from trainer.pipeline.scores import regression_metrics
from trainer.update.join import join_references
from trainer.update.line import load_line_archive
from trainer.update.run import next_version

#: Lab samples measured twice each (tagged, frames=2), then spectra known only by the time they were drawn.
TAGGED, REPLICATES, UNTAGGED = 5, 2, 4
#: Seconds between archived spectra (the archive's clock).
STEP_S = 30.0
T0 = 1_780_000_000.0
FIGURE_RTOL = 1e-9


@dataclass
class Line:
    export: Path
    targets: list[str]
    y: dict[int, np.ndarray]  # seq -> the sample's known values
    published: dict[int, np.ndarray]  # seq -> the engine's prediction
    direct: dict[int, np.ndarray]  # seq -> Bundle.predict_spectra on the raw counts and references
    received: dict[int, float]
    sample: dict[int, str]


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Line:
    tmp = tmp_path_factory.mktemp("line")
    bundle = load_bundle(committed(DEMO_V1))
    engine = InferenceEngine(bundle)
    data = make_synthetic_dataset(TAGGED + UNTAGGED, seed=0)  # the simulator's stream: what the bundle learnt
    wl = np.asarray(data["wavelengths"], dtype=np.float64)
    detector = DetectorModel(wl)
    rng = np.random.default_rng(5)
    t_us = detector.integration_time_for(data["X"])
    now = [T0]
    dark = ReferenceSpectrum(ReferenceKind.DARK, detector.dark(t_us, rng).counts, captured_at_s=T0,
                             integration_time_us=t_us)
    white = ReferenceSpectrum(ReferenceKind.WHITE, detector.reference(t_us, rng).counts, captured_at_s=T0,
                              integration_time_us=t_us)
    refs = ReferenceSet(dark=dark, reference=white)
    archive = Archive(tmp / "archive.sqlite", ArchivePolicy("all"), max_bytes=1 << 26, max_age_days=36500.0,
                      clock=lambda: now[0])
    archive.start()
    out = Line(export=tmp / "line.npz", targets=[str(t) for t in data["target_names"]], y={}, published={},
               direct={}, received={}, sample={})
    seq = 0

    def measure(row: int, sample: str) -> None:
        nonlocal seq
        frame = Spectrum(seq=seq, timestamp_us=seq * 1000, integration_time_us=t_us,
                         counts=detector.measure(data["X"][row], t_us, rng).counts)
        outcome = engine.process(frame, refs, wavelengths_nm=wl, now_s=now[0], frame_signal="counts")
        assert isinstance(outcome, Prediction)
        archive.offer(frame, outcome, refs, signal="counts", boot_id=1, wavelengths_nm=wl, bundle=bundle)
        out.y[seq] = np.asarray(data["y"][row], dtype=np.float64)
        out.published[seq] = np.asarray(outcome.values)
        out.direct[seq] = np.asarray(bundle.predict_spectra(frame.counts, dark=dark.counts, reference=white.counts,
                                                            wavelengths=wl), dtype=np.float64)
        out.received[seq] = now[0]
        out.sample[seq] = sample
        seq += 1
        now[0] += STEP_S

    for k in range(TAGGED):
        archive.tag(f"LAB-{k}", frames=REPLICATES)
        for _ in range(REPLICATES):
            measure(k, f"LAB-{k}")
    archive.tag("control:check-A", frames=1)  # a check standard: never joined
    measure(0, "control:check-A")
    for k in range(TAGGED, TAGGED + UNTAGGED):
        measure(k, "")
    archive.close()
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "export", str(archive.path), "--out", str(out.export)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def _iso(unix_s: float) -> str:
    return f"{np.datetime_as_string(np.datetime64(int(round(unix_s * 1e6)), 'us'))}Z"


def _write(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def _lab_file(line: Line, path: Path) -> Path:
    """LAB-0..3 by id (LAB-4 unreported), LAB-99 (never tagged), two untagged spectra by time (10 s after), one
    time with nothing near, and LAB-2 without a value for the last target."""
    by_sample = {s: q for q, s in sorted(line.sample.items(), reverse=True)}
    untagged = [q for q, s in line.sample.items() if not s]
    rows: list[list[object]] = []
    for k in range(TAGGED - 1):
        values: list[object] = [f"{v:.6f}" for v in line.y[by_sample[f"LAB-{k}"]]]
        if k == 2:
            values[-1] = "NA"
        rows.append([f"LAB-{k}", "", *values])
    rows.append(["LAB-99", "", *[1.0] * len(line.targets)])
    for q in untagged[:2]:
        rows.append(["", _iso(line.received[q] + 10.0), *[f"{v:.6f}" for v in line.y[q]]])
    rows.append(["", _iso(T0 - 3600.0), *[1.0] * len(line.targets)])
    return _write(path, ["sample_id", "sampled_at", *line.targets, "analyst"], [r + ["JD"] for r in rows])


def test_join_on_sample_ids_and_times_reports_what_did_not_join(line: Line, tmp_path: Path) -> None:
    archive = load_line_archive(line.export)
    join = join_references(archive, _lab_file(line, tmp_path / "lims.csv"), line.targets, window_s=15.0)
    got = {int(archive.seq[i]): (str(s), how) for i, s, how in zip(join.rows, join.sample, join.how)}
    want_ids = {q: s for q, s in line.sample.items() if s in {f"LAB-{k}" for k in range(TAGGED - 1)}}
    untagged = [q for q, s in line.sample.items() if not s]
    assert {q for q, (_, how) in got.items() if how == "sample_id"} == set(want_ids)  # both replicates each
    assert all(got[q][0] == s for q, s in want_ids.items())
    assert {q for q, (_, how) in got.items() if how == "time"} == set(untagged[:2])
    for k, i in enumerate(join.rows):
        q = int(archive.seq[i])
        expect = line.y[q].copy()
        if line.sample[q] == "LAB-2":
            expect[-1] = np.nan
        np.testing.assert_allclose(join.y[k], expect, rtol=1e-6)
    s = join.summary()
    assert s["lims_rows"] == TAGGED - 1 + 1 + 2 + 1 and s["lims_rows_unmatched"] == 2
    assert s["spectra_joined"] == (TAGGED - 1) * REPLICATES + 2 and s["lab_samples"] == TAGGED - 1 + 2
    assert s["tagged_sample_ids_without_lab_row"] == ["LAB-4"] and s["tagged_spectra_without_lab_row"] == REPLICATES
    assert s["untagged_spectra_not_joined"] == UNTAGGED - 2
    assert any("'LAB-99': no archived spectrum is tagged" in m for m in s["unmatched_rows"])
    assert any("no spectrum within 15 s" in m for m in s["unmatched_rows"])
    assert list(join.rows) == sorted(join.rows, key=lambda i: archive.received_unix_s[i])  # time order


def test_a_narrow_window_leaves_time_rows_unmatched(line: Line, tmp_path: Path) -> None:
    join = join_references(load_line_archive(line.export), _lab_file(line, tmp_path / "lims.csv"), line.targets,
                           window_s=5.0)
    assert join.summary()["spectra_joined_on_time"] == 0 and join.summary()["lims_rows_unmatched"] == 4


def test_no_retrain_gives_the_deployed_models_figures_as_a_direct_computation(
    line: Line, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lims = _lab_file(line, tmp_path / "lims.csv")
    out = tmp_path / "out"
    assert main(["update", str(DEMO_V1), "--archive", str(line.export), "--references", str(lims), "--out", str(out),
                 "--window-s", "15", "--rolling", "3", "--no-retrain"]) == 0
    assert "joined: 10 spectra of 6 lab samples" in capsys.readouterr().out
    summary = json.loads((out / "update.json").read_text())
    dep = summary["deployed_on_line"]
    archive = load_line_archive(line.export)
    join = join_references(archive, lims, line.targets, window_s=15.0)
    seqs = [int(archive.seq[i]) for i in join.rows]
    assert dep["reproduced"] == {"spectra": len(seqs), "max_abs_difference": 0.0}
    for j, target in enumerate(line.targets):
        ok = [k for k in range(len(seqs)) if np.isfinite(join.y[k, j])]
        ref = join.y[ok, j]
        pred = np.array([line.direct[seqs[k]][j] for k in ok])
        np.testing.assert_array_equal(pred, [line.published[seqs[k]][j] for k in ok])
        want = regression_metrics(ref, pred)
        fig = dep["figures"][target]
        for key in ("n", "bias", "rmsep", "sep", "r2"):
            np.testing.assert_allclose(fig[key], want[key], rtol=FIGURE_RTOL, err_msg=f"{target} {key}")
        np.testing.assert_allclose(fig["slope"], np.polyfit(ref, pred, 1)[0], rtol=FIGURE_RTOL)
        t = np.array([line.received[seqs[k]] for k in ok])
        np.testing.assert_allclose(fig["bias_trend_per_day"], np.polyfit((t - t[0]) / 86400.0, pred - ref, 1)[0],
                                   rtol=FIGURE_RTOL)
        # rolling over the last 3 lab samples: the last point pools the last three samples' spectra
        samples = list(dict.fromkeys(join.sample[ok]))
        last = np.isin(join.sample[ok], samples[-3:])
        np.testing.assert_allclose(fig["rolling"][-1]["bias"], np.mean(pred[last] - ref[last]), rtol=FIGURE_RTOL)
        assert len(fig["rolling"]) == len(samples)
    assert "new_bundle" not in summary and not list(out.glob("*.spectrolite"))
    assert (out / "update" / "index.html").is_file()


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("spectro-train: error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_bad_lab_files_are_refused_naming_file_line_and_column(
    line: Line, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = line.targets

    def run(path: Path) -> str:
        assert main(["update", str(DEMO_V1), "--archive", str(line.export), "--references", str(path), "--out",
                     str(tmp_path / "o"), "--no-retrain"]) == 1
        return _error(capsys)

    bad = _write(tmp_path / "bad.csv", ["sample_id", *t], [["LAB-0", "1.0", "2.0", "3.0"],
                                                           ["LAB-1", "1.0", "abc", "3.0"]])
    assert f"bad.csv line 3, column 3 ({t[1]}): expected a number, got 'abc'" in run(bad)
    twice = _write(tmp_path / "twice.csv", ["sample_id", *t], [["LAB-0", 1, 2, 3], ["LAB-0", 1, 2, 3]])
    assert "twice.csv lines 2 and 3: expected one row per sample_id, got 'LAB-0' twice" in run(twice)
    no_key = _write(tmp_path / "nokey.csv", ["lab_no", *t], [["LAB-0", 1, 2, 3]])
    assert "expected a sample id column 'sample_id' and/or a sampling time column 'sampled_at'" in run(no_key)
    no_target = _write(tmp_path / "notarget.csv", ["sample_id", "fat"], [["LAB-0", 1]])
    assert "expected a column named like a target of the bundle" in run(no_target)
    when = _write(tmp_path / "when.csv", ["sampled_at", *t], [["yesterday", 1, 2, 3]])
    assert "when.csv line 2, column 1 (sampled_at): expected an ISO 8601 time" in run(when)
    nothing = _write(tmp_path / "nothing.csv", ["sample_id", *t], [["LAB-77", 1, 2, 3]])
    assert "expected at least one row to join an archived spectrum" in run(nothing)
    # a semicolon file with decimal commas, as a European spreadsheet writes it, joins
    semi = _write(tmp_path / "semi.csv", ["sample_id", *t], [["LAB-0", "1,5", "2,5", "3,5"]], delimiter=";")
    join = join_references(load_line_archive(line.export), semi, t)
    np.testing.assert_allclose(join.y, [[1.5, 2.5, 3.5]] * REPLICATES)


def test_retraining_needs_the_config_that_trained_the_bundle(
    line: Line, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lims = _lab_file(line, tmp_path / "lims.csv")
    args = ["update", str(DEMO_V1), "--archive", str(line.export), "--references", str(lims), "--out",
            str(tmp_path / "o")]
    assert main(args) == 1
    assert "--config: the bundle does not carry its training config" in _error(capsys)
    other = tmp_path / "other.toml"
    other.write_text((REPO / "examples" / "demo.toml").read_text(encoding="utf-8").replace(
        'model_id = "synthetic-demo"', 'model_id = "another-model"'), encoding="utf-8")
    assert main([*args, "--config", str(other)]) == 1
    assert "expected the config that trained synthetic-demo" in _error(capsys)
    assert not (tmp_path / "o").exists()


def test_an_export_that_is_not_one_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", X=np.ones((3, 4)), wavelengths=np.arange(4.0))
    with pytest.raises(DataError, match="expected the arrays of a spectro-edge export, got none named target_names"):
        load_line_archive(tmp_path / "plain.npz")


def test_next_version() -> None:
    assert [next_version(v) for v in ("1.0.0", "1.9", "2.0.0-absorbance", "beta")] == [
        "1.0.1", "1.10", "2.0.1-absorbance", "beta-update1"]


def test_a_sampling_time_never_joins_a_tagged_spectrum(line: Line, tmp_path: Path) -> None:
    """A time that falls on a lab sample's tagged spectrum joins no spectrum (that one belongs to its id; the
    nearest untagged one is beyond the window), and the id row still joins both replicates."""
    first = min(q for q, s in line.sample.items() if s == "LAB-1")
    lims = _write(tmp_path / "lims.csv", ["sample_id", "sampled_at", *line.targets],
                  [["LAB-1", "", *line.y[first]], ["", _iso(line.received[first]), *line.y[first]]])
    join = join_references(load_line_archive(line.export), lims, line.targets, window_s=15.0)
    assert list(join.how) == ["sample_id"] * REPLICATES and set(join.sample) == {"LAB-1"}
    assert join.summary()["lims_rows_unmatched"] == 1 and "no spectrum within 15 s" in join.unmatched_rows[0]
