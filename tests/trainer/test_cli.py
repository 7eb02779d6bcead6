"""Tests of trainer.cli: expected failures end as one clear line and a non-zero exit code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.cli import main


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error line on stderr"
    last = err[-1]
    assert last.startswith("spectro-train: error: ")
    assert "Traceback" not in "\n".join(err)
    return last


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 1
    assert "cannot read config" in _one_error_line(capsys)


def test_bad_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\npath = "d.npz"\ntargets = ["a"]\n[split]\ntrain = {split = "x"}\n'
                   '[split.test]\nt = {split = "y"}\n[preprocessing.candidates]\nsnv = [{op = "snv"}]\n'
                   '[model]\nepochs = 0\n')
    assert main(["fit", str(cfg), "--out", str(tmp_path / "o")]) == 1
    assert "model.epochs" in _one_error_line(capsys)


def test_bad_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X = np.ones((20, 5))
    X[4, 2] = np.nan
    np.savez(tmp_path / "d.npz", X=X, wavelengths=np.arange(5.0), y=np.ones(20), target_names=np.array(["a"]),
             split=np.array(["x"] * 10 + ["y"] * 10))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\npath = "d.npz"\ntargets = ["a"]\n[split]\ntrain = {split = "x"}\n'
                   '[split.test]\nt = {split = "y"}\n[preprocessing.candidates]\nsnv = [{op = "snv"}]\n')
    assert main(["fit", str(cfg), "--out", str(tmp_path / "o")]) == 1
    assert "NaN/infinite values in 1 spectra (first at row 4)" in _one_error_line(capsys)


def test_sign_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", str(tmp_path / "x.spectrolite"), "--key", str(tmp_path / "k.pem")]) == 1
    assert "no such bundle" in _one_error_line(capsys)


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit"])
    assert exc.value.code == 2


def test_fit_check_runs_the_pre_training_checks_and_writes_nothing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``fit --check``: the config, data and split pass or fail in seconds, as the fit itself would before
    training; nothing is trained or written, and a plain fit without ``--out`` is refused."""
    from tests.support.tiny_fit import CONFIG, write_synthetic

    write_synthetic(tmp_path / "synthetic.npz")
    (tmp_path / "train.toml").write_text(CONFIG)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["fit", str(tmp_path / "train.toml"), "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == ("data: synthetic.npz, 150 spectra x 64 channels (900-1100 nm), regression of conc_pct")
    assert out[2] == "rows: train 90 (30 groups), select 30 (10 groups), test 30 (10 groups)"
    assert out[-1].startswith("checks passed; nothing was trained")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # The split check fails as the fit would: 5 CV folds need 5 training groups.
    (tmp_path / "small.toml").write_text(CONFIG.replace('train = {split = "cal"}',
                                                        'train = {sample_id = ["s000", "s001", "s002"]}'))
    assert main(["fit", str(tmp_path / "small.toml"), "--check"]) == 1
    assert "cross-validation with 5 folds needs at least 5 groups of training rows, got 3" in _one_error_line(capsys)
    with pytest.raises(SystemExit) as usage:  # a bad command line: exit 2, before the config is read
        main(["fit", str(tmp_path / "nope.toml")])
    assert usage.value.code == 2
    assert "fit: expected --out DIR (or --check" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "train.toml"), "--check", "--out", str(tmp_path / "o")]) == 0
    assert "not used: --check writes nothing" in capsys.readouterr().out and not (tmp_path / "o").exists()
    # What the fit would skip is said, not promised: --model pls neither searches nor cross-validates the CNN.
    assert main(["fit", str(tmp_path / "train.toml"), "--check", "--model", "pls", "--budget-min", "2"]) == 0
    out = capsys.readouterr().out
    assert "search: off (--model pls: the CNN is not deployed)" in out and "CNN not cross-validated" in out
    assert main(["fit", str(tmp_path / "train.toml"), "--check", "--budget-min", "2"]) == 0
    out = capsys.readouterr().out
    assert "search: 2 min, at most 40 trials" in out and "model auto, CNN 5 folds" in out


@pytest.mark.parametrize(("step", "said"), [
    ('{ op = "savgol", windw = 5, polyorder = 2 }', "savgol got unknown parameter(s) windw"),
    ('{ op = "savgol", window = 4, polyorder = 2 }', "expected an odd window, got 4"),
    ('{ op = "crop", wavelength_min = 2000, wavelength_max = 2100 }', "holds no channel of the axis"),
])
def test_fit_check_refuses_a_bad_preprocessing_step_with_its_key_path(tmp_path: Path, step: str, said: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A candidate's step is built and fitted on the training spectra by the checks, so ``fit --check`` (and the
    fit, before its PLS baseline) names the candidate and what is wrong with the step."""
    from tests.support.tiny_fit import CONFIG, write_synthetic

    write_synthetic(tmp_path / "synthetic.npz")
    head, sep, tail = CONFIG.partition("[preprocessing.candidates]\n")
    assert sep, "the tiny config has a [preprocessing.candidates] table"
    (tmp_path / "train.toml").write_text(head + sep + f"bad = [{{ op = \"snv\" }}, {step}]\n" + tail)
    assert main(["fit", str(tmp_path / "train.toml"), "--check"]) == 1
    line = _one_error_line(capsys)
    assert "preprocessing.candidates.bad: " in line and said in line, line


def test_fit_check_refuses_a_unit_for_a_target_that_does_not_exist(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.tiny_fit import CONFIG, write_synthetic

    write_synthetic(tmp_path / "synthetic.npz")
    assert 'units = {conc_pct = "%"}' in CONFIG
    (tmp_path / "train.toml").write_text(CONFIG.replace('units = {conc_pct = "%"}', 'units = {conc_pc = "%"}'))
    assert main(["fit", str(tmp_path / "train.toml"), "--check"]) == 1
    assert "bundle.units.conc_pc: expected a target's name (conc_pct), got 'conc_pc'" in _one_error_line(capsys)

