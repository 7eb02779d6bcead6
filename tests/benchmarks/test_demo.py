"""``spectro-bench demo`` (what ``make demo`` runs) end to end in a child process: the trainer-built demo model, a
real broker (mosquitto, or the embedded amqtt one), the real pty simulator and the daemon started as
``spectro-edge run``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import TrainedModel, cache_key, config_digest
from tests.conftest import DEMO_CONFIG, REPO_ROOT

#: Spectra of the short demo runs.
FRAMES = 120


def _demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run_env = dict(env or os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "benchmarks.demo", *args], cwd=REPO_ROOT, env=run_env,
                          capture_output=True, text=True, timeout=600)


def _assert_loop_worked(proc: subprocess.CompletedProcess[str], frames: int) -> str:
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert f"frames sent:           {frames}" in out
    assert f"predictions received:  {frames} unique" in out
    assert "RMSEP analyte_a_pct" in out
    assert "drift raised   ood_q" in out
    assert "(ref " in out and "quality=ok" in out
    assert "spectro-edge run --config" in out  # the daemon is started as production starts it
    assert "RESULT: OK" in out
    return out


def test_demo_runs_the_whole_loop_and_exits_zero(tmp_path: Path, demo_bundle: Path) -> None:
    proc = _demo("--frames", str(FRAMES), "--rate", "100", "--bundle", str(demo_bundle), "--broker", "mosquitto",
                 "--workdir", str(tmp_path / "run"))
    out = _assert_loop_worked(proc, FRAMES)
    assert "broker: mosquitto" in out
    assert (tmp_path / "run" / "daemon.log").is_file()  # --workdir keeps the run's files


def test_demo_trains_its_config_and_reuses_the_model_cached_by_the_config_hash(
        tmp_path: Path, demo_model: TrainedModel) -> None:
    # The session's `spectro-train fit examples/demo.toml` output, placed where the demo's cache key points: the
    # demo must find it there (no second training) and serve it.
    cache = tmp_path / "cache"
    key = cache_key(DEMO_CONFIG)
    assert key.startswith(f"demo-{config_digest(DEMO_CONFIG)}-t")
    shutil.copytree(demo_model.directory, cache / "trained" / key)
    proc = _demo("--frames", str(FRAMES), "--rate", "100", env=dict(os.environ, SPECTROLITE_CACHE=str(cache)))
    out = _assert_loop_worked(proc, FRAMES)
    assert f"spectro-train fit {DEMO_CONFIG} (cache key {key})" in out
    assert f"{cache / 'trained' / key / demo_model.bundle.name} (cached)" in out


def test_demo_without_mosquitto_uses_the_embedded_broker(tmp_path: Path, demo_bundle: Path) -> None:
    proc = _demo("--frames", str(FRAMES), "--rate", "100", "--bundle", str(demo_bundle), "--broker", "embedded")
    out = _assert_loop_worked(proc, FRAMES)
    assert "broker: embedded amqtt broker" in out


def test_config_digest_follows_every_byte_of_the_config(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text(DEMO_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    before = config_digest(a)
    assert before == config_digest(DEMO_CONFIG)
    a.write_text(a.read_text(encoding="utf-8") + "# one more byte\n", encoding="utf-8")
    assert config_digest(a) != before


def test_demo_refuses_bad_arguments() -> None:
    proc = _demo("--frames", "0")
    assert proc.returncode == 2 and "expected --frames >= 1, got 0" in proc.stderr


def test_the_private_demo_builder_is_gone() -> None:
    assert not (REPO_ROOT / "examples" / "demo" / "build_bundle.py").exists()
