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
             "line_steps", "line_goals", "line_publish"}
PER_LINE = 32


@pytest.mark.slow
def test_line_steps_deliver_every_spectrum_and_write_their_keys(tmp_path: Path) -> None:
    out = tmp_path / "tp.json"
    rc = main(["throughput", "--bundle", str(COUNTS_BUNDLE), "--dataset", str(counts_dataset(tmp_path / "d.npz")),
               "--line-spectra", str(PER_LINE), "--line-only", "--line-rates", "2000", "--line-seconds", "0.5",
               "--line-max-spectra", "200", "--json", str(out), "--profile-daemon", str(tmp_path / "prof")])
    assert rc == 0
    data = json.loads(out.read_text())
    assert LINE_KEYS <= set(data)
    assert data["line_spectra"] == PER_LINE and data["line_publish"] == "line"  # the daemon's default
    assert [s["rate_hz"] for s in data["line_steps"]] == [2000.0, 0.0]
    assert data["line_spectra_sent"] == 1000 + 200  # 2000 spectra/s for 0.5 s, then the max step
    assert data["line_predictions_received"] + data["line_lost"] == data["line_spectra_sent"]
    assert data["line_lost"] == 0 and data["line_duplicates"] == 0  # QoS 1 on a local broker
    assert data["line_spectra_per_s"] > 0  # the best zero-loss step (whether or not it kept up: a figure)
    assert all(s["predictions_received"] == s["frames_sent"] for s in data["line_steps"])
    assert data["line_goals"]["met"] is None  # lines of 32: the goal names 256+
    assert "| offered spectra/s |" in out.with_suffix(".md").read_text()
    # the profiled line step, uncounted: its calls per spectrum, where the batch path's per-line work is shared
    prof = data["line_profiled_step"]
    assert prof["predictions_received"] == prof["frames_sent"] == 200
    calls = prof["python_calls_per_frame"]
    assert calls["all"] == pytest.approx(sum(v for k, v in calls.items() if k not in ("all", "main", "signal-watcher")))
    assert 0 < calls["spectro-inference"] < calls["all"]
    assert (tmp_path / "prof" / "lines" / "calls.json").is_file()
    assert "| Python calls per spectrum (profiled step) |" in out.with_suffix(".md").read_text()


def test_a_line_message_counts_each_of_its_predicted_spectra_by_its_own_seq(tmp_path: Path) -> None:
    """The subscriber's accounting: a ``.../line_prediction`` of N spectra is N predictions (seq + i, across the
    wrap), a rejected spectrum none (it is lost to the count, as a rejected SPECTRUM frame is), the same line twice
    is N duplicates, and per-spectrum messages of the same seqs are duplicates of them."""
    from benchmarks.throughput import _step_figures
    from edge.publish.line_messages import LineTarget, line_prediction_message
    from edge.publish.schema import encode

    def line(seq: int, rejected: list[tuple[int, str]]) -> bytes:
        values = [None if any(i == r for r, _ in rejected) else 1.0 for i in range(4)]
        return encode(line_prediction_message(
            device_id="bench", seq=seq, spectra=4, device_timestamp_us=1_000, model_id="m", model_version="1",
            targets=[LineTarget("a", "%", values)], quality_flags=[None if v is None else 0 for v in values],
            rejected=rejected, latency_ms=1.0, time_unix_s=1.0))

    received = [(2_000, line(2**32 - 2, [])), (3_000, line(2, [(1, "bad_input")])), (4_000, line(2**32 - 2, []))]
    step = _step_figures(0.0, 8, 8, received, None, None, None, None, tmp_path)
    assert step["predictions_received"] == 7  # seqs 2**32-2, 2**32-1, 0, 1, then 2, 4, 5 (3 was rejected)
    assert step["duplicates"] == 4 and step["lost"] == 1
