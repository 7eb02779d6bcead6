"""LINE frames in the daemon (#17) with ``[lines] publish = "spectrum"``: a push-broom line is predicted as one batch,
each spectrum its own message with its own seq and its place in the line (tests/edge/test_line_publish.py: the
default, one message per line); a line that fails the contract is counted and skipped whole, nothing else
lost; end to end through ``spectro-sim --line-spectra`` on a real pty, ``spectro-edge run`` and a real mosquitto."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np

from edge.daemon import Daemon
from firmware_bridge.frames import Line, Spectrum
from tests.support.broker import MosquittoBroker
from tests.support.daemon import (
    CHANNELS,
    DemoBundles,
    RecordingLink,
    offline_line_stream,
    offline_predictions,
    offline_stream,
    wait_for,
)
from tests.support.inprocess import count_batches, feed, inprocess_daemon
from tests.support.processes import Proc, Subscriber, start_daemon, start_sim, write_config

#: Fields of a message that are times of the run, not values of the prediction.
VOLATILE = ("time_unix_s", "latency_ms", "compute_us")
#: Spectra per line, and lines, of the in-process tests.
PER_LINE = 40
N_LINES = 4
#: The end-to-end run: spectra per line and in all (the last line is shorter).
E2E_PER_LINE = 64
E2E_SPECTRA = 300


def _daemon(tmp: Path, bundle: Path, publish: str = "spectrum") -> tuple[Daemon, RecordingLink, list[int]]:
    """A daemon (not started) whose frames this thread hands to its inference stage; the engine's batch sizes."""
    daemon, link = inprocess_daemon(tmp, bundle, lines={"publish": publish})
    return daemon, link, count_batches(daemon)


def _line_of(spectra: list[Spectrum], *, pixels: int | None = None) -> Line:
    first = spectra[0]
    counts = np.stack([s.counts for s in spectra])
    return Line(seq=first.seq, timestamp_us=first.timestamp_us, integration_time_us=first.integration_time_us,
                counts=counts if pixels is None else counts[:, :pixels], averages=first.averages,
                detector_temp_c=first.detector_temp_c)


def _predictions(link: RecordingLink) -> list[dict[str, Any]]:
    return [{f: v for f, v in m.items() if f not in VOLATILE} for m in link.of_kind("prediction")]


def _as_spectra(line: Line) -> list[Spectrum]:
    """What the same exposure would have been as SPECTRUM frames: the line's own rows, seqs and header."""
    return list(line.spectra())


def test_a_line_predicts_what_its_spectra_predict_one_by_one(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream = offline_stream(PER_LINE * N_LINES)
    spectra = stream["spectra"]
    lines = [_line_of(spectra[i:i + PER_LINE]) for i in range(0, len(spectra), PER_LINE)]
    head = [stream["status"], stream["dark"], stream["white"]]
    single, single_link, _ = _daemon(tmp_path / "spectra", demo_bundles.v1)
    feed(single, head + [s for line in lines for s in _as_spectra(line)])
    batched, line_link, sizes = _daemon(tmp_path / "lines", demo_bundles.v1)
    feed(batched, head + lines)

    assert sizes == [PER_LINE] * N_LINES  # each line: one batch of the engine
    got, want = _predictions(line_link), _predictions(single_link)
    assert len(got) == PER_LINE * N_LINES
    assert [m["seq"] for m in got] == [s.seq for s in spectra]  # seq: the line's plus the index, in order
    for i, m in enumerate(got):
        line = lines[i // PER_LINE]
        assert m.pop("line") == {"seq": line.seq, "index": i % PER_LINE, "spectra": PER_LINE}
    assert got == want  # values, flags, OOD, intervals: exactly those of the spectra one by one
    counters, counters_single = batched.counters.snapshot(), single.counters.snapshot()
    assert counters["lines_in"] == N_LINES and counters.get("lines_rejected", 0) == 0
    assert counters["spectra_in"] == counters_single["spectra_in"] == PER_LINE * N_LINES
    assert counters["predictions"] == counters_single["predictions"] == PER_LINE * N_LINES
    assert counters.get("frames_lost_seq_gap", 0) == 0


def test_a_bad_line_is_counted_and_skipped_and_nothing_else_is_lost(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream = offline_stream(PER_LINE * 3)
    spectra = stream["spectra"]
    good0, bad, good2 = (spectra[i:i + PER_LINE] for i in range(0, len(spectra), PER_LINE))
    lines = [_line_of(good0), _line_of(bad, pixels=CHANNELS - 6), _line_of(good2)]  # the middle one: 250 pixels
    daemon, link, sizes = _daemon(tmp_path / "d", demo_bundles.v1)
    feed(daemon, [stream["status"], stream["dark"], stream["white"], *lines])

    seqs = [m["seq"] for m in link.of_kind("prediction")]
    assert seqs == [s.seq for s in good0 + good2]
    assert sizes == [PER_LINE, PER_LINE]  # the bad line never reached the model
    counters = daemon.counters.snapshot()
    assert counters["lines_in"] == 3 and counters["lines_rejected"] == 1
    assert counters["frames_rejected_input_contract"] == PER_LINE  # counted per spectrum, as if sent alone
    assert counters["spectra_in"] == 3 * PER_LINE
    assert counters.get("frames_lost_seq_gap", 0) == 0 and counters.get("frames_errors", 0) == 0
    assert f"expected {CHANNELS} pixels as the device reported, got {CHANNELS - 6}" in (
        daemon.inference._last_error.text or "")


def test_line_frames_end_to_end_every_spectrum_once_with_offline_values(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    stream = offline_line_stream(E2E_PER_LINE, E2E_SPECTRA)
    assert [line.spectrum_count for line in stream["lines"]] == [64, 64, 64, 64, 44]
    sim, path = start_sim(tmp_path, count=E2E_SPECTRA, rate_hz=2_000.0,
                          extra=("--line-spectra", str(E2E_PER_LINE)))
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port,
                       drain_rate=0.0)
    cfg.write_text(cfg.read_text(encoding="utf-8") + '\n[lines]\npublish = "spectrum"\n', encoding="utf-8")
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= E2E_SPECTRA or not daemon.alive(), f"{E2E_SPECTRA} predictions")
    assert daemon.alive(), daemon.text()
    wait_for(lambda: any(m["counters"].get("lines_in") == 5 for m in subscriber.kind("/metrics")),
             "the metrics counting the lines")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()

    assert subscriber.kind("/line_prediction") == []  # publish = "spectrum": per spectrum only
    expected = offline_predictions(demo_bundles.v1, stream)
    assert sorted(subscriber.predictions) == sorted(expected) == list(range(2, 2 + E2E_SPECTRA))  # after DARK, WHITE
    assert subscriber.duplicates == 0
    for seq, body in subscriber.predictions.items():
        np.testing.assert_allclose([v["value"] for v in body["values"]], expected[seq], rtol=0, atol=0)
        index = (seq - 2) % E2E_PER_LINE
        first = seq - index
        assert body["line"] == {"seq": first, "index": index,
                                "spectra": E2E_PER_LINE if first < 2 + 4 * E2E_PER_LINE else 44}
    counters = next(m for m in reversed(subscriber.kind("/metrics")) if m["counters"].get("lines_in"))["counters"]
    assert counters["spectra_in"] == E2E_SPECTRA and counters.get("lines_rejected", 0) == 0
    assert counters.get("frames_lost_seq_gap", 0) == 0


def test_lines_before_the_device_status_wait_for_it_and_are_predicted_then(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream = offline_stream(PER_LINE * 2)
    spectra = stream["spectra"]
    lines = [_line_of(spectra[:PER_LINE]), _line_of(spectra[PER_LINE:])]
    daemon, link, sizes = _daemon(tmp_path / "d", demo_bundles.v1)
    assert daemon.engine.needs_device_axis  # the demo bundle resamples the device's axis onto its grid
    feed(daemon, [stream["dark"], stream["white"], *lines])  # no STATUS yet: the lines wait for it
    assert link.of_kind("prediction") == []
    assert daemon.counters.snapshot()["spectra_waited_for_status"] == 2 * PER_LINE
    feed(daemon, [stream["status"]])
    assert [m["seq"] for m in link.of_kind("prediction")] == [s.seq for s in spectra]
    assert sizes == [PER_LINE, PER_LINE]
