"""Every console script answers ``--help`` and routes its subcommands (the README's commands stay true)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.cli import main as edge_main


@pytest.mark.parametrize(
    "module", ["firmware_bridge.cli", "edge.cli", "trainer.cli", "benchmarks.cli"], ids=lambda m: m.split(".")[0]
)
def test_help_exits_zero(module: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_bench_demo_options_reach_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.cli import main as bench_main

    with pytest.raises(SystemExit) as exc:
        bench_main(["demo", "--help"])
    assert exc.value.code == 0
    assert "--frames" in capsys.readouterr().out


def test_edge_rejects_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        edge_main(["check", "x.spectrolite", "--frames", "3"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --frames 3" in capsys.readouterr().err


def test_edge_check_of_a_missing_bundle_is_one_clear_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert edge_main(["check", str(tmp_path / "missing.spectrolite")]) != 0
    captured = capsys.readouterr()
    assert "missing.spectrolite" in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_bench_lists_the_loop_benchmark() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "loop", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout and "--bundle" in proc.stdout and "--select" in proc.stdout
