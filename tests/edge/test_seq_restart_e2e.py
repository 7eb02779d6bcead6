"""Frames lost while no daemon holds the port are counted by the next daemon (issues #13/#17: nothing lost that the
counters do not show), with real processes: ``spectro-sim`` on a real pty, ``spectro-edge run``, a real mosquitto
and the committed trainer-built bundles.

The daemon is stopped (SIGTERM, or SIGKILL), then this test holds the port itself and reads (so throws away) what
the simulator sends: spectra sent while no daemon held the port, as a device does while its daemon restarts.  The
next daemon must count exactly those in ``frames_lost_seq_gap`` (its tracker starts from the last seq the previous
daemon committed, kept in the outbox database), for SPECTRUM and LINE frames alike; after a device reboot (a new
boot id) its seq restarts legitimately and nothing is counted.
"""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.codec import FrameDecoder
from firmware_bridge.frames import Line, Spectrum, Status
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import Proc, Subscriber, holds_open, start_daemon, start_sim, write_config

#: Spectra the simulator sends while no daemon holds the port.
SENT_WITHOUT_DAEMON = 40
#: Simulator rate, spectra per second.
RATE_HZ = 50.0


def _covered(sub: Subscriber) -> set[int]:
    """The device seqs of every spectrum with a published prediction: ``.../prediction`` messages and the spectra
    of ``.../line_prediction`` messages (``seq`` + index, predicted or not)."""
    seqs = set(sub.predictions)
    for line in sub.kind("/line_prediction"):
        seqs.update(range(line["seq"], line["seq"] + line["spectra"]))
    return seqs


def _metrics_after(sub: Subscriber, since_unix_s: float) -> list[dict[str, Any]]:
    return [m for m in sub.kind("/metrics") if m["time_unix_s"] > since_unix_s]


def _idle(sub: Subscriber, since_unix_s: float) -> bool:
    """Two metrics messages produced after ``since_unix_s`` + 1 s show an empty frames queue and the same
    ``spectra_in``: every frame the daemon read was handled and its messages committed before them."""
    later = _metrics_after(sub, since_unix_s + 1.0)
    if len(later) < 2:
        return False
    a, b = later[-2], later[-1]
    idle = all(m["gauges"]["frames_queue"] == 0 for m in (a, b))
    return idle and a["counters"].get("spectra_in") == b["counters"].get("spectra_in")


def _boot_id(sub: Subscriber, seq: int) -> int:
    """The device boot id the message that covers ``seq`` carries."""
    if seq in sub.predictions:
        return int(sub.predictions[seq]["device_boot_id"])
    return int(next(m for m in sub.kind("/line_prediction") if m["seq"] <= seq < m["seq"] + m["spectra"])
               ["device_boot_id"])


def _stop_first_daemon(sim: Proc, daemon: Proc, sub: Subscriber, stop_signal: int) -> int:
    """Freeze the device once the daemon predicts, let the daemon commit all it read, stop it with ``stop_signal``;
    the last seq it published."""
    wait_for(lambda: len(_covered(sub)) >= 20, "predictions from the first daemon")
    os.kill(sim.popen.pid, signal.SIGSTOP)
    stopped_at = time.time()
    wait_for(lambda: _idle(sub, stopped_at), "the first daemon to commit everything it read")
    rc = daemon.end(stop_signal)
    assert rc == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL), daemon.text()
    return max(_covered(sub))


def _read_without_daemon(sim: Proc, path: str, until: Any) -> list[Any]:
    """Hold the port as a host that is not the daemon, let the device send until ``until(frames)`` says enough,
    freeze it again, and hang up: every frame it sent is gone for the daemon."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    decoder = FrameDecoder()
    frames: list[Any] = []
    try:
        os.kill(sim.popen.pid, signal.SIGCONT)
        deadline = time.monotonic() + 60.0
        while not until(frames):
            assert time.monotonic() < deadline, f"the device sent only {len(frames)} frames"
            if select.select([fd], [], [], 0.5)[0]:
                frames.extend(decoder.feed(os.read(fd, 65536)))
        os.kill(sim.popen.pid, signal.SIGSTOP)
        while select.select([fd], [], [], 0.2)[0]:
            frames.extend(decoder.feed(os.read(fd, 65536)))
    finally:
        os.close(fd)
    hangups = sim.log.read_text(errors="replace").count("host closed the port")
    os.kill(sim.popen.pid, signal.SIGCONT)  # it sees the hang-up and waits for a host; nothing is sent meanwhile
    wait_for(lambda: sim.log.read_text(errors="replace").count("host closed the port") > hangups,
             "the device to see the port closed")
    return frames


def _spectrum_seqs(frames: list[Any]) -> list[int]:
    out: list[int] = []
    for f in frames:
        if isinstance(f, Line):
            out.extend(f.seq_of(i) for i in range(f.spectrum_count))
        elif isinstance(f, Spectrum):  # DARK and REFERENCE frames are spectra too
            out.append(f.seq)
    return out


def _second_daemon(tmp_path: Path, cfg: Path, sim: Proc, path: str, sub: Subscriber, after_seq: int,
                   procs: list[Proc]) -> tuple[dict[str, int], int]:
    """Start the next daemon; once it published predictions, freeze the device (no later reboot can count) and
    return the daemon's counters of its next metrics and the first seq it published."""
    started = time.time()
    daemon2 = start_daemon(tmp_path, cfg, 1)
    procs.append(daemon2)
    wait_for(lambda: holds_open(daemon2.popen.pid, path) or not daemon2.alive(), "the new daemon to open the port")

    def first_new() -> int | None:
        new = [s for s in _covered(sub) if s > after_seq]
        return min(new) if new else None

    wait_for(lambda: first_new() is not None or not daemon2.alive(), "predictions from the new daemon")
    os.kill(sim.popen.pid, signal.SIGSTOP)
    assert daemon2.alive(), daemon2.text()
    seen = time.time()
    wait_for(lambda: bool(_metrics_after(sub, seen)), "metrics from the new daemon")
    metrics = _metrics_after(sub, max(seen, started))[-1]
    first = first_new()
    assert first is not None
    return metrics["counters"], first


@pytest.mark.parametrize("line_spectra", [0, 5], ids=["spectrum", "line"])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_spectra_sent_while_no_daemon_holds_the_port_are_counted_by_the_next(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc], stop_signal: int, line_spectra: int,
) -> None:
    extra = ("--line-spectra", str(line_spectra)) if line_spectra else ()
    sim, path = start_sim(tmp_path, count=0, rate_hz=RATE_HZ, extra=extra)
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg, 0)
    procs.append(daemon)
    last = _stop_first_daemon(sim, daemon, subscriber, stop_signal)

    frames = _read_without_daemon(sim, path, lambda fs: len(_spectrum_seqs(fs)) >= SENT_WITHOUT_DAEMON)
    thrown = _spectrum_seqs(frames)
    assert {f.boot_id for f in frames if isinstance(f, Status)} <= {_boot_id(subscriber, last)}, "a reboot"
    counters, first = _second_daemon(tmp_path, cfg, sim, path, subscriber, last, procs)
    os.kill(sim.popen.pid, signal.SIGCONT)

    # The new daemon's session starts with the device's STATUS, DARK and REFERENCE (two seqs) before spectra: every
    # seq between the last the first daemon published and that DARK was sent while no daemon held the port.
    lost = first - 2 - last - 1
    assert set(thrown) <= set(range(last + 1, first - 2)), (thrown, last, first)
    assert lost >= len(thrown) >= SENT_WITHOUT_DAEMON
    assert counters.get("frames_lost_seq_gap", 0) == lost, (counters, last, first)
    assert counters.get("seq_restarts", 0) == 0 and counters.get("seq_jumps", 0) == 0, counters


def test_a_device_reboot_while_no_daemon_holds_the_port_counts_no_gap(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    reboot_every = 150
    sim, path = start_sim(tmp_path, count=0, rate_hz=RATE_HZ, extra=("--reboot-every", str(reboot_every)))
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg, 0)
    procs.append(daemon)
    last = _stop_first_daemon(sim, daemon, subscriber, signal.SIGKILL)
    assert last < reboot_every, "the device rebooted while the first daemon held the port"
    boot = _boot_id(subscriber, last)

    def rebooted_and_past(fs: list[Any]) -> bool:  # a new boot id, and its seqs already past the last published
        reboots = [i for i, f in enumerate(fs) if isinstance(f, Status) and f.boot_id != boot]
        return bool(reboots) and any(s > last + 10 for s in _spectrum_seqs(fs[reboots[0] + 1:]))

    _read_without_daemon(sim, path, rebooted_and_past)
    counters, _first = _second_daemon(tmp_path, cfg, sim, path, subscriber, last + 10, procs)
    os.kill(sim.popen.pid, signal.SIGCONT)
    # Its seqs restarted with the new boot id: nothing was lost that a seq could show, nothing is counted (the first
    # seq of the new boot, well past the last one the previous daemon committed, is not compared with it).
    assert counters.get("frames_lost_seq_gap", 0) == 0, counters
    assert counters.get("seq_restarts", 0) == 0 and counters.get("seq_jumps", 0) == 0, counters
