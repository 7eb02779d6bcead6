"""``spectro-edge demo`` end to end in a child process: real mosquitto, real pty simulator, real daemon process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.edge.daemon_harness import REPO, demo_bundles, example_bundle  # noqa: F401 (fixtures)

#: Spectra of the short demo run.
FRAMES = 120


def test_demo_runs_the_whole_loop_and_exits_zero(tmp_path: Path, example_bundle: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.demo", "--frames", str(FRAMES), "--rate", "100", "--bundle", str(example_bundle),
         "--workdir", str(tmp_path / "run")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert f"frames sent:           {FRAMES}" in out
    assert f"predictions received:  {FRAMES} unique" in out
    assert "RMSEP analyte_a_pct" in out
    assert "drift raised   ood_q" in out
    assert "(ref " in out and "quality=ok" in out
    assert "RESULT: OK" in out
    assert (tmp_path / "run" / "daemon.log").is_file()  # --workdir keeps the run's files


def test_demo_refuses_bad_arguments() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "edge.demo", "--frames", "0"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "expected --frames >= 1, got 0" in proc.stderr
