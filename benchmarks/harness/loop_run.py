"""One pass through the whole loop: simulator -> ``spectro-edge run`` -> broker -> subscriber."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.broker import Broker
from benchmarks.harness.commands import daemon_command, frames_sent, read_first_line, write_edge_config
from benchmarks.harness.processes import Processes, end_process
from benchmarks.harness.settings import IDLE_END_S, START_TIMEOUT_S
from benchmarks.harness.subscriber import Subscriber

__all__ = ["LoopRun", "run_loop"]

log = logging.getLogger(__name__)


@dataclass
class LoopRun:
    """What one pass through the loop delivered."""

    sent: int | None  #: spectra the simulator reports having streamed (None: its log did not say)
    requested: int
    predictions: dict[int, dict[str, Any]]
    duplicates: int
    drift: list[dict[str, Any]]
    status: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    daemon_exit_code: int | None
    wall_s: float
    workdir: Path

    @property
    def lost(self) -> int:
        """Spectra sent without a prediction reaching the subscriber."""
        sent = self.requested if self.sent is None else self.sent
        return max(0, sent - len(self.predictions))


def run_loop(procs: Processes, broker: Broker, subscriber: Subscriber, *, bundle: Path, sim_cmd: Sequence[str],
             workdir: Path, frames: int, rate_hz: float, edge_sections: Mapping[str, Mapping[str, Any]] | None = None,
             forward_annotations: bool = True, on_started: Callable[[str, int, Path], None] | None = None) -> LoopRun:
    """Stream once: ``sim_cmd`` (which publishes its pty at ``workdir/spectrometer``) -> ``spectro-edge run`` ->
    ``broker`` -> ``subscriber``; returns when every frame's prediction arrived, or the simulator is done and
    nothing arrived for :data:`IDLE_END_S`, or the daemon exited.

    ``on_started(device_path, daemon_pid, config_path)`` is called once both processes run.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    sim = procs.start("spectro-sim", sim_cmd, workdir / "sim.log", stdout=subprocess.PIPE)
    device_path = read_first_line(sim, "spectro-sim", log_path=workdir / "sim.log")
    config = write_edge_config(workdir / "edge.toml", port_url=device_path, bundle=bundle, mqtt_port=broker.port,
                               forward_annotations=forward_annotations, **dict(edge_sections or {}))
    daemon = procs.start("spectro-edge run", daemon_command(config), workdir / "daemon.log")
    if on_started is not None:
        on_started(device_path, daemon.pid, config)
    expected_s = frames / rate_hz if rate_hz > 0 else frames / 500.0
    deadline = time.monotonic() + START_TIMEOUT_S + 3.0 * expected_s + IDLE_END_S
    seen, last_change, sim_done_at = 0, time.monotonic(), None
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = subscriber.inbox.count()
        now = time.monotonic()
        if n != seen:
            seen, last_change = n, now
        if daemon.poll() is not None:
            log.warning("the daemon exited with code %s during the run (see %s)", daemon.returncode,
                        workdir / "daemon.log")
            break
        if seen >= frames:
            break
        if sim.poll() is not None:
            sim_done_at = sim_done_at or now
            if now - max(last_change, sim_done_at) > IDLE_END_S:
                break
    time.sleep(0.3)  # a drift alert published right after the last prediction
    daemon_rc = end_process(daemon)
    end_process(sim)
    inbox = subscriber.inbox
    with inbox.lock:
        run = LoopRun(frames_sent(workdir / "sim.log"), frames, dict(inbox.predictions), inbox.duplicates,
                      list(inbox.drift), list(inbox.status), inbox.metrics, daemon_rc, time.monotonic() - t0, workdir)
    return run
