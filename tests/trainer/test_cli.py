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
