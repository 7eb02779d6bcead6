"""``spectro-bench throughput --line-spectra``: LINE frames through the real processes (simulator on a pty, daemon,
mosquitto, subscriber) on the tiny committed bundle: the JSON keys and the loss accounting, not figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from tests.support.bench_data import COUNTS_BUNDLE, counts_dataset

#: Keys of the line-frame steps (benchmarks/throughput_line.py).
LINE_KEYS = {"line_spectra", "line_spectra_per_s", "line_kept_up", "line_lost", "line_spectra_sent",
             "line_predictions_received", "line_duplicates", "line_limited_by", "line_daemon_cpu_us_per_spectrum",
             "line_steps", "line_goals"}
PER_LINE = 32


@pytest.mark.slow
def test_line_steps_deliver_every_spectrum_and_write_their_keys(tmp_path: Path) -> None:
    out = tmp_path / "tp.json"
    rc = main(["throughput", "--bundle", str(COUNTS_BUNDLE), "--dataset", str(counts_dataset(tmp_path / "d.npz")),
               "--line-spectra", str(PER_LINE), "--line-only", "--line-rates", "2000", "--line-seconds", "0.5",
               "--line-max-spectra", "200", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert LINE_KEYS <= set(data)
    assert data["line_spectra"] == PER_LINE
    assert [s["rate_hz"] for s in data["line_steps"]] == [2000.0, 0.0]
    assert data["line_spectra_sent"] == 1000 + 200  # 2000 spectra/s for 0.5 s, then the max step
    assert data["line_predictions_received"] + data["line_lost"] == data["line_spectra_sent"]
    assert data["line_lost"] == 0 and data["line_duplicates"] == 0  # QoS 1 on a local broker
    assert data["line_spectra_per_s"] > 0  # the best zero-loss step (whether or not it kept up: a figure)
    assert all(s["predictions_received"] == s["frames_sent"] for s in data["line_steps"])
    assert data["line_goals"]["met"] is None  # lines of 32: the goal names 256+
    assert "| offered spectra/s |" in out.with_suffix(".md").read_text()
