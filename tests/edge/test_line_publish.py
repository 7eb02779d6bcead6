"""``[lines] publish = "line"`` (the default, #17): one ``.../line_prediction`` message per LINE frame, its spectra's
predictions as arrays, every spectrum accounted for (predicted, or rejected and counted); the same values as the
per-spectrum messages of ``publish = "spectrum"``; end to end through ``spectro-sim --line-spectra 256`` on a real
pty, ``spectro-edge run`` and a real mosquitto, each payload checked strictly against its schema."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np

from edge.daemon.lines import CollectedLine, line_message
from edge.inference import Prediction
from edge.publish.line_messages import flag_mask
from edge.publish.schema import LINE_FLAG_BITS, Quality, encode, validate
from firmware_bridge.frames import Line
from tests.support.broker import MosquittoBroker
from tests.support.daemon import (
    DemoBundles,
    offline_line_stream,
    offline_predictions,
    offline_stream,
    wait_for,
)
from tests.support.inprocess import feed, inprocess_daemon
from tests.support.processes import Proc, Subscriber, start_daemon, start_sim, write_config

#: Spectra per line and lines of the in-process tests.
PER_LINE = 48
N_LINES = 3
#: The end-to-end run: lines of 256 spectra (the goal's push-broom line), four of them.
E2E_PER_LINE = 256
E2E_LINES = 4
SEQ_MODULUS = 2**32


def _line_of(spectra: list[Any]) -> Line:
    first = spectra[0]
    return Line(seq=first.seq, timestamp_us=first.timestamp_us, integration_time_us=first.integration_time_us,
                counts=np.stack([s.counts for s in spectra]), averages=first.averages,
                detector_temp_c=first.detector_temp_c)


def _lines(n_lines: int, per_line: int) -> tuple[dict[str, Any], list[Line]]:
    stream = offline_stream(n_lines * per_line)
    spectra = stream["spectra"]
    return stream, [_line_of(spectra[i:i + per_line]) for i in range(0, len(spectra), per_line)]


def _per_spectrum(line_msg: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """seq -> what a line message says of that spectrum (None-free entries only: the predicted spectra)."""
    out: dict[int, dict[str, Any]] = {}
    rejected = {r["index"] for r in line_msg["rejected"]}
    ood = line_msg["ood"]
    for i in range(line_msg["spectra"]):
        if i in rejected:
            assert all(t["values"][i] is None for t in line_msg["targets"])
            assert line_msg["quality_flags"][i] is None
            continue
        out[(line_msg["seq"] + i) % SEQ_MODULUS] = {
            "values": [t["values"][i] for t in line_msg["targets"]],
            "lower": [None if t["lower"] is None else t["lower"][i] for t in line_msg["targets"]],
            "upper": [None if t["upper"] is None else t["upper"][i] for t in line_msg["targets"]],
            "t2": None if ood is None else ood["t2"][i], "q": None if ood is None else ood["q"][i],
            "flags": line_msg["quality_flags"][i],
            "device_timestamp_us": line_msg["device_timestamp_us"],
        }
    return out


def _as_line_entry(msg: dict[str, Any]) -> dict[str, Any]:
    """What a per-spectrum prediction message says, in the terms of a line message's entry."""
    ood = msg["ood"]
    return {"values": [v["value"] for v in msg["values"]], "lower": [v["lower"] for v in msg["values"]],
            "upper": [v["upper"] for v in msg["values"]], "t2": None if ood is None else ood["t2"],
            "q": None if ood is None else ood["q"], "flags": flag_mask([Quality(f) for f in msg["quality_flags"]]),
            "device_timestamp_us": msg["device_timestamp_us"]}


def test_one_message_per_line_with_the_values_of_the_per_spectrum_messages(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream, lines = _lines(N_LINES, PER_LINE)
    head = [stream["status"], stream["dark"], stream["white"]]
    by_line, line_link = inprocess_daemon(tmp_path / "line", demo_bundles.v1)  # the default: publish = "line"
    feed(by_line, head + lines)
    by_spectrum, spectrum_link = inprocess_daemon(tmp_path / "spectrum", demo_bundles.v1, lines={"publish": "spectrum"})
    feed(by_spectrum, head + lines)

    assert by_line.config.lines.publish == "line"
    msgs = line_link.of_kind("line_prediction")
    assert line_link.of_kind("prediction") == []
    assert [(m["seq"], m["spectra"], m["predicted"], m["rejected"]) for m in msgs] == [
        (line.seq, PER_LINE, PER_LINE, []) for line in lines]
    for m in msgs:
        validate(m, strict=True)
        assert m["model"] == {"id": by_line.engine.model_id, "version": by_line.engine.model_version}
        assert m["device_boot_id"] == stream["status"].boot_id and m["quality_flag_bits"] == list(LINE_FLAG_BITS)
    got = {seq: entry for m in msgs for seq, entry in _per_spectrum(m).items()}
    want = {m["seq"]: _as_line_entry(m) for m in spectrum_link.of_kind("prediction")}
    assert sorted(got) == [s.seq for s in stream["spectra"]]
    assert got == want  # every value, bound, OOD statistic and flag: exactly those of the per-spectrum messages

    line_counters, spectrum_counters = by_line.counters.snapshot(), by_spectrum.counters.snapshot()
    for name in ("spectra_in", "predictions", "lines_in"):
        assert line_counters[name] == spectrum_counters[name], name
    assert line_counters["predictions"] == N_LINES * PER_LINE
    assert line_counters["line_predictions"] == N_LINES
    assert line_counters["messages_line_prediction"] == N_LINES
    assert by_line.latency.summary()["count"] == N_LINES  # one latency sample per line message


def test_a_line_whose_spectra_are_all_rejected_publishes_nothing_and_counts_each(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    """No DARK/WHITE yet: every spectrum is rejected (missing_reference), counted one by one; no empty message."""
    stream, lines = _lines(2, PER_LINE)
    daemon, link = inprocess_daemon(tmp_path / "d", demo_bundles.v1)
    assert daemon.engine.needs_references
    feed(daemon, [stream["status"], lines[0]])
    assert link.of_kind("line_prediction") == [] and link.of_kind("prediction") == []
    counters = daemon.counters.snapshot()
    assert counters["frames_rejected_missing_reference"] == PER_LINE and counters["spectra_in"] == PER_LINE
    assert counters.get("line_predictions", 0) == 0 and counters.get("predictions", 0) == 0
    feed(daemon, [stream["dark"], stream["white"], lines[1]])  # with references the next line is published
    assert [(m["seq"], m["predicted"]) for m in link.of_kind("line_prediction")] == [(lines[1].seq, PER_LINE)]


def _prediction(seq: int, value: float, *, flags: tuple[Quality, ...] = ()) -> Prediction:
    from edge.publish.messages import OodStats

    return Prediction(seq=seq, timestamp_us=77, names=("api", "fat"), units=("%", "%"), values=(value, value + 1),
                      lower=(value - 0.5, value + 0.5), upper=(value + 0.5, value + 1.5), interval_coverage=0.9,
                      ood=OodStats(1.0, 0.01, 11.3, 0.031), flags=flags, reasons=(), compute_us=10.0,
                      model_id="m", model_version="1")


def test_a_line_message_puts_each_prediction_at_its_index_and_lists_the_rejected() -> None:
    """A line across the seq wrap with a rejected spectrum in the middle and one the daemon failed on: each
    prediction lands at its own index, the others are null and listed in ``rejected`` with their reason."""
    first = SEQ_MODULUS - 2
    preds = [_prediction(first, 1.0), _prediction(0, 3.0, flags=(Quality.OUT_OF_DISTRIBUTION, Quality.SATURATED))]
    line = CollectedLine(seq=first, spectra=4, timestamp_us=77, predictions=preds,
                         rejected=[(1, "bad_input"), (3, "error")])
    msg = line_message(line, device_id="hsi-01", device_boot_id=7, latency_ms=-1.0)
    assert msg is not None
    encode(msg)  # strictly valid
    assert msg["predicted"] == 2 and msg["rejected"] == [{"index": 1, "reason": "bad_input"},
                                                         {"index": 3, "reason": "error"}]
    assert msg["targets"][0]["values"] == [1.0, None, 3.0, None]
    assert msg["targets"][1]["upper"] == [2.5, None, 4.5, None]
    assert msg["ood"]["t2"] == [1.0, None, 1.0, None] and msg["ood"]["ae_score"] is None
    assert msg["quality_flags"] == [0, None, 0b101, None]
    assert msg["latency_ms"] == 0.0 and msg["compute_us"] == 20.0
    assert line_message(CollectedLine(first, 4, 77, [], [(i, "bad_input") for i in range(4)]), device_id="hsi-01",
                        device_boot_id=None, latency_ms=1.0) is None


def test_line_predictions_end_to_end_every_spectrum_once_in_lines_of_256(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    spectra = E2E_LINES * E2E_PER_LINE
    sim, path = start_sim(tmp_path, count=spectra, rate_hz=5_000.0, extra=("--line-spectra", str(E2E_PER_LINE)))
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port,
                       drain_rate=0.0)  # no [lines] table: the default, one message per line
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: len(subscriber.kind("/line_prediction")) >= E2E_LINES or not daemon.alive(),
             f"{E2E_LINES} line messages")
    assert daemon.alive(), daemon.text()
    wait_for(lambda: any(m["counters"].get("line_predictions") == E2E_LINES for m in subscriber.kind("/metrics")),
             "the metrics counting the line messages")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()

    msgs = subscriber.kind("/line_prediction")
    assert len(msgs) == E2E_LINES and subscriber.count() == 0  # nothing on .../prediction
    for m in msgs:
        validate(m, strict=True)  # the producer's schema: no field it does not list
        assert (m["spectra"], m["predicted"], m["rejected"]) == (E2E_PER_LINE, E2E_PER_LINE, [])
    seqs = sorted((m["seq"] + i) % SEQ_MODULUS for m in msgs for i in range(m["spectra"]))
    assert seqs == list(range(2, 2 + spectra))  # after DARK and WHITE: contiguous, every spectrum once
    assert sorted(m["seq"] for m in msgs) == [2 + k * E2E_PER_LINE for k in range(E2E_LINES)]

    stream = offline_line_stream(E2E_PER_LINE, spectra)  # what the simulator sent
    expected = offline_predictions(demo_bundles.v1, stream)
    for m in msgs:
        for i in range(m["spectra"]):
            np.testing.assert_allclose([t["values"][i] for t in m["targets"]], expected[m["seq"] + i], rtol=0, atol=0)
    counters = next(m for m in reversed(subscriber.kind("/metrics"))
                    if m["counters"].get("line_predictions") == E2E_LINES)["counters"]
    assert counters["spectra_in"] == spectra and counters["predictions"] == spectra
    assert counters["lines_in"] == E2E_LINES and counters["messages_line_prediction"] == E2E_LINES
    assert counters.get("lines_rejected", 0) == 0 and counters.get("frames_lost_seq_gap", 0) == 0
