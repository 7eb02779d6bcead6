"""The throughput benchmark's replaying producer (benchmarks/producer.py): the simulator's device whose spectra are
acquired ahead and sent again in turn, each with the next seq and a fresh timestamp, decoded by the real codec."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.producer import ReplaySpectrometer, describe, sim_args
from firmware_bridge.codec import FrameDecoder, encode
from firmware_bridge.frames import Annotation, Spectrum, SpectrumFlags
from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer, load_spectra
from tests.support.bench_data import COUNTS_BUNDLE, counts_dataset

REPLAY = 3


def _devices(clock: list[int]) -> tuple[VirtualSpectrometer, ReplaySpectrometer]:
    cfg = SimulatorConfig(rate_hz=0, count=0, seed=7, boot_id=11)
    x, wl, y = load_spectra(cfg)
    fresh = VirtualSpectrometer(x, wl, y, cfg, clock_us=lambda: clock[0])
    replay = ReplaySpectrometer(x, wl, y, cfg, clock_us=lambda: clock[0], replay=REPLAY)
    return fresh, replay


def test_replay_sends_its_first_acquisitions_again_with_new_seqs_and_timestamps() -> None:
    clock = [1_000]
    fresh, replay = _devices(clock)
    first = [fresh.spectrum() for _ in range(REPLAY)]  # what the same device acquires first, afresh
    decoder = FrameDecoder()
    for i in range(2 * REPLAY + 1):
        clock[0] = 1_000 + 500 * i
        spectrum, note = replay.spectrum(triggered=i == 4)
        frames = decoder.feed(encode(spectrum) + encode(note))  # the real wire format, both ways
        assert [type(f) for f in frames] == [Spectrum, Annotation]
        got, got_note = frames
        want, want_note = first[i % REPLAY]
        assert got.seq == got_note.seq == i  # seqs go on, whatever is replayed
        assert got.timestamp_us == 1_000 + 500 * i  # stamped when sent, not when acquired
        assert np.array_equal(got.counts, want.counts)
        assert got_note.values == want_note.values
        assert bool(got.flags & SpectrumFlags.TRIGGERED) == (i == 4)
    assert replay.spectra_sent == 2 * REPLAY + 1


def test_replay_starts_its_session_at_seq_zero_like_the_simulator() -> None:
    clock = [0]
    fresh, replay = _devices(clock)
    assert [f.seq for f in replay.session_start() if hasattr(f, "seq")] == \
        [f.seq for f in fresh.session_start() if hasattr(f, "seq")]


def test_replay_refuses_nothing_to_replay() -> None:
    cfg = SimulatorConfig(rate_hz=0, count=0)
    x, wl, y = load_spectra(cfg)
    with pytest.raises(ValueError, match="expected replay >= 1"):
        ReplaySpectrometer(x, wl, y, cfg, replay=0)


def test_producer_options_name_what_was_used() -> None:
    assert sim_args(argparse.Namespace(producer="simulator")) == ()
    assert sim_args(argparse.Namespace(producer="replay"))[0] == "--replay"
    assert "replaying" in describe(argparse.Namespace(producer="replay"))
    assert "afresh" in describe(argparse.Namespace(producer="simulator"))


@pytest.mark.slow
def test_a_throughput_step_with_the_replaying_producer_delivers_every_frame(tmp_path: Path) -> None:
    """The replayed spectra go through the real pty, daemon, mosquitto and subscriber like the simulator's own."""
    out = tmp_path / "tp.json"
    rc = main(["throughput", "--bundle", str(COUNTS_BUNDLE), "--dataset", str(counts_dataset(tmp_path / "d.npz")),
               "--rate", "100", "--frames", "40", "--rates", "", "--no-max", "--producer", "replay",
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert "replaying" in data["setup"]["producer"]
    assert data["frames_sent"] == data["predictions_received"] == 40 and data["lost"] == 0
    assert data["duplicates"] == 0
