"""``python -m benchmarks.threadcpu`` with real processes (simulator on a pty, daemon, mosquitto) on the tiny
committed bundle: the daemon's threads are named and measured idle and with frames flowing; the shape, not
figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.threadcpu import main, thread_cpu
from tests.support.bench_data import COUNTS_BUNDLE, counts_dataset


def test_thread_cpu_reads_every_thread_of_this_process() -> None:
    threads = thread_cpu(os.getpid())
    assert os.getpid() in threads
    assert all(user >= 0.0 and system >= 0.0 for user, system in threads.values())


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.0, 50.0])
def test_threadcpu_names_the_daemon_threads_idle_and_at_a_rate(tmp_path: Path, rate: float) -> None:
    out = tmp_path / "threads.json"
    rc = main(["--rate", str(rate), "--seconds", "2", "--settle", "5", "--bundle", str(COUNTS_BUNDLE),
               "--dataset", str(counts_dataset(tmp_path / "d.npz")), "--keep", str(tmp_path / "run"),
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    names = {t["thread"] for t in data["threads"]}
    assert {"spectro-reader", "spectro-inference", "spectro-housekeeping", "mqtt-drain"} <= names, names
    assert data["daemon_cpu_pct"] == pytest.approx(sum(t["cpu_pct"] for t in data["threads"]))
    if rate:
        assert data["daemon_us_per_frame"] is not None
        assert all(t["us_per_frame"] is not None for t in data["threads"])
    else:
        assert data["daemon_us_per_frame"] is None
    assert "Traceback" not in (tmp_path / "run" / "daemon.log").read_text()
