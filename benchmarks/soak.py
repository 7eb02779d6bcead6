"""``spectro-bench soak``: a long run of the whole daemon with a real broker and faults sprinkled in, watching the
daemon process for resident-memory, file-descriptor and thread growth, and the outbox for what is left.

Usage::

    spectro-bench soak --frames 1000000 [--warmup-frames N] [--bit-flip-rate P] [--broker-restarts K]
                       [--bundle B] [--json PATH]

Real processes, started by :mod:`benchmarks.harness` as every benchmark starts them: ``spectro-sim`` on a pty
(:func:`~benchmarks.harness.simulator_command`) streaming as fast as it can (``--rate 0``) with bit flips on the
wire, ``spectro-edge run`` (:func:`~benchmarks.harness.daemon_command`, its TOML by
:func:`~benchmarks.harness.write_edge_config`), both as :class:`~benchmarks.harness.Processes`; a real
``mosquitto`` (:class:`~benchmarks.harness.Mosquitto`) that is stopped and started again ``--broker-restarts``
times at evenly spaced moments on the same port; and the harness's :class:`~benchmarks.harness.Subscriber` with
``keep_bodies=False``, so that its memory stays bounded over a million predictions (the set of sequence numbers
it saw and the last message of each other topic, the metrics among them).  The subscriber keeps a persistent
session on a broker with persistence: what the broker queued for it when it stopped, and what the daemon published
after a restart before the subscriber was back, reach it (a clean session on a broker without persistence lost
them by chance: whenever the daemon reconnected first, its outbox backlog went to nobody).

Every ``--sample-every-s`` the daemon's ``VmRSS`` and ``Threads`` (``/proc/<pid>/status``) and its open file
descriptors (``/proc/<pid>/fd``) are sampled. Growth is measured from the first sample after ``--warmup-frames``
predictions (imports, the interpreter, SQLite's page cache and the queues are warm by then) to the last sample
before shutdown; ``rss_growth_mb`` uses the median of the last three samples against the median of the first
three after warm-up, so a single allocation burst does not count as a leak.

JSON keys: ``frames`` (spectra sent), ``predictions`` (unique, deduplicated by ``seq``), ``duplicates``, ``lost``
(``frames - predictions``), ``lost_on_wire`` (frames the daemon counted as lost to sequence gaps or rejected, from
its last metrics message: bit flips destroy frames by design), ``lost_unexplained`` (``lost - lost_on_wire``),
``daemon_predictions`` and ``lost_after_daemon`` (predictions the daemon made that the subscriber did not see,
expected 0 with the subscriber's persistent session),
``rss_growth_mb``, ``fd_growth``, ``thread_growth``, ``outbox_left`` (rows in the outbox after the daemon's clean
stop, must be 0), ``fps``, ``seconds``, ``broker_restarts``, ``samples``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: Issue 7 goal: resident memory growth after warm-up, MB.
GOAL_RSS_GROWTH_MB = 10.0
#: Liveness deadlines (a failure to get there, not figures).
START_TIMEOUT_S = 120.0
IDLE_END_S = 20.0
#: No prediction for this long while the simulator still streams ends the run as ``stalled``.
STALL_S = 60.0
SITE, LINE, DEVICE = "soak", "line-1", "soak-01"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench soak``."""
    parser.add_argument("--frames", type=int, default=100_000, help="spectra to stream (default 100,000)")
    parser.add_argument("--warmup-frames", type=int, default=None,
                        help="predictions before the memory baseline (default min(20,000, frames/10))")
    parser.add_argument("--bit-flip-rate", type=float, default=2e-6,
                        help="probability of a bit flip per byte on the wire (default 2e-6: ~0.1%% of frames)")
    parser.add_argument("--broker-restarts", type=int, default=1, help="broker stop/start cycles during the run")
    parser.add_argument("--broker-down-s", type=float, default=3.0, help="seconds the broker stays down each time")
    parser.add_argument("--sample-every-s", type=float, default=2.0, help="seconds between process samples")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle (default: the synthetic demo bundle)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and the outbox here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")


# --------------------------------------------------------------------------------------------------- probes
def proc_sample(pid: int) -> dict[str, float]:
    """``rss_mb``, ``threads`` and ``fds`` of a live process from ``/proc``."""
    rss_kb, threads = 0.0, 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss_kb = float(line.split()[1])
            elif line.startswith("Threads:"):
                threads = float(line.split()[1])
    fds = float(len(os.listdir(f"/proc/{pid}/fd")))
    return {"t": time.monotonic(), "rss_mb": rss_kb / 1024.0, "threads": threads, "fds": fds}


def _config(path: Path, *, port_url: str, bundle: Path, mqtt_port: int, workdir: Path) -> Path:
    """The daemon's TOML (:func:`benchmarks.harness.write_edge_config`) with a blocking frame queue and a long flush."""
    from benchmarks.harness import write_edge_config

    return write_edge_config(path, port_url=port_url, bundle=bundle, mqtt_port=mqtt_port, forward_annotations=False,
                             log_level="WARNING", device={"site": SITE, "line": LINE, "device_id": DEVICE},
                             mqtt={"client_id": f"spectrolite-soak-{workdir.name}"},
                             outbox={"path": str(workdir / "outbox.sqlite"), "flush_timeout_s": 60.0},
                             queues={"policy": "block"})


def _bundle(args: argparse.Namespace) -> Path:
    if args.bundle is not None:
        return Path(args.bundle)
    from benchmarks.throughput import resolve_setup

    ns = argparse.Namespace(bundle=None, dataset=None, synthetic=True, cache=None, epochs=None)
    return resolve_setup(ns).bundle


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak and return the figures (see the module docstring)."""
    from benchmarks.harness import (
        TOPIC_PREFIX,
        Mosquitto,
        Processes,
        Subscriber,
        daemon_command,
        end_process,
        read_first_line,
        simulator_command,
    )

    bundle = _bundle(args)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="spectro-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    n = int(args.frames)
    warmup = args.warmup_frames if args.warmup_frames is not None else min(20_000, max(1, n // 10))

    (workdir / "broker" / "mosquitto.db").unlink(missing_ok=True)  # no session of an earlier run in --workdir
    broker = Mosquitto(workdir / "broker", persistence=True).start()
    sub = Subscriber(broker, base=f"{TOPIC_PREFIX}/{SITE}/{LINE}/{DEVICE}", client_id="spectro-soak-sub",
                     clean_session=False, keep_bodies=False)
    procs = Processes()
    samples: list[dict[str, float]] = []
    restarts = 0
    rc: int | None = None
    try:
        sim = procs.start("spectro-sim", simulator_command(
            workdir / "tty", count=n, rate_hz=0.0, linger_s=5.0, extra=("--bit-flip-rate", str(args.bit_flip_rate))),
            workdir / "sim.log", stdout=subprocess.PIPE)
        port_url = read_first_line(sim, "spectro-sim", START_TIMEOUT_S)
        cfg = _config(workdir / "edge.toml", port_url=port_url, bundle=bundle, mqtt_port=broker.port, workdir=workdir)
        daemon = procs.start("spectro-edge run", daemon_command(cfg), workdir / "daemon.log")
        t0 = time.monotonic()
        stalled = False
        baseline_at: int | None = None
        restart_marks = [int(n * (k + 1) / (args.broker_restarts + 1)) for k in range(args.broker_restarts)]
        next_sample = time.monotonic()
        last_print = 0.0
        while True:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited with {daemon.returncode}; see {workdir / 'daemon.log'}")
            got = sub.count()
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + args.sample_every_s
                s = proc_sample(daemon.pid)
                s["predictions"] = float(got)
                s["streaming"] = float(sim.poll() is None)
                samples.append(s)
                if baseline_at is None and got >= warmup:
                    baseline_at = len(samples) - 1
            if restart_marks and got >= restart_marks[0]:
                restart_marks.pop(0)
                broker.stop()
                time.sleep(args.broker_down_s)
                broker.start()
                restarts += 1
            if now - last_print > 10.0:
                last_print = now
                print(f"  {got:>9} predictions  {got / max(now - t0, 1e-9):7.0f}/s  rss "
                      f"{samples[-1]['rss_mb']:.1f} MB  fds {samples[-1]['fds']:.0f}  "
                      f"threads {samples[-1]['threads']:.0f}", flush=True)
            idle = now - (sub.last_prediction_s() or t0)  # predictions only: metrics arrive every period
            if got >= n or (sim.poll() is not None and idle > IDLE_END_S):
                break
            if idle > STALL_S:  # nothing arrives although the simulator still runs: report it, do not hang
                stalled = True
                print(f"  no prediction for {STALL_S:.0f} s with the simulator running: stalled", flush=True)
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        samples.append({**proc_sample(daemon.pid), "predictions": float(sub.count()),
                        "streaming": float(sim.poll() is None)})
        time.sleep(2.0)  # one more metrics period, so the last metrics message carries the final counters
        with sub.lock:
            metrics = sub.inbox.metrics or {}
        rc = end_process(daemon, grace_s=90.0)  # the daemon's clean stop flushes its outbox (flush_timeout_s 60)
    finally:
        procs.stop_all()
        sub.close()
        broker.stop()
    outbox_left = -1
    db = workdir / "outbox.sqlite"
    if db.is_file():
        with sqlite3.connect(db) as con:
            outbox_left = int(con.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    counters = metrics.get("counters", {})
    lost_on_wire = int(counters.get("frames_lost_seq_gap", 0)) + sum(
        int(v) for k, v in counters.items() if k.startswith("frames_rejected_"))
    predictions = sub.count()
    base = samples[baseline_at:baseline_at + 3] if baseline_at is not None else samples[:3]
    # the end of the run is judged while the simulator still streams: once it exits, the daemon closes its pty
    # and waits for the device, which would read as an fd *drop*
    streaming = [s for s in samples if s.get("streaming")]
    tail = streaming[-3:] if len(streaming) >= 3 else samples[-3:]

    def growth(key: str) -> float:
        return _median([s[key] for s in tail]) - _median([s[key] for s in base])

    return {
        "benchmark": "soak",
        "frames": n,
        "predictions": predictions,
        "duplicates": sub.duplicates,
        "lost": n - predictions,
        "lost_on_wire": lost_on_wire,
        "lost_unexplained": n - predictions - lost_on_wire,
        # predictions the daemon made (and its outbox handed to the broker) that this subscriber never saw: with
        # its persistent session on a broker with persistence, none
        "daemon_predictions": int(counters.get("predictions", 0)),
        "lost_after_daemon": int(counters.get("predictions", 0)) - predictions,
        "rss_growth_mb": round(growth("rss_mb"), 3),
        "fd_growth": int(growth("fds")),
        "thread_growth": int(growth("threads")),
        "rss_mb_at_warmup": round(_median([s["rss_mb"] for s in base]), 3),
        "rss_mb_at_end": round(_median([s["rss_mb"] for s in tail]), 3),
        "warmup_predictions": warmup,
        "outbox_left": outbox_left,
        "daemon_exit_code": rc,
        "seconds": round(elapsed, 1),
        "fps": round(predictions / elapsed, 1) if elapsed else 0.0,
        "bit_flip_rate_per_byte": args.bit_flip_rate,
        "broker_restarts": restarts,
        "stalled": stalled,
        "daemon_counters": counters,
        "decoder_crc_errors": int(counters.get("decoder_crc_errors", 0)),
        "samples": [{k: round(v, 3) for k, v in s.items() if k != "t"} for s in samples],
        "workdir": str(workdir),
    }


def run(args: argparse.Namespace) -> int:
    """Run the soak, print a summary, write JSON; exit 1 when something was lost unexplained or leaked."""
    r = measure(args)
    rows = [("frames", r["frames"]), ("predictions (unique)", r["predictions"]), ("duplicates", r["duplicates"]),
            ("lost (on the wire, counted)", r["lost_on_wire"]), ("lost unexplained", r["lost_unexplained"]),
            ("  of which after the daemon", r["lost_after_daemon"]),
            ("rss growth after warm-up (MB)", r["rss_growth_mb"]), ("fd growth", r["fd_growth"]),
            ("thread growth", r["thread_growth"]), ("outbox left", r["outbox_left"]),
            ("broker restarts", r["broker_restarts"]), ("stalled", r["stalled"]), ("frames/s", r["fps"]),
            ("seconds", r["seconds"])]
    for name, value in rows:
        print(f"{name:<32} {value}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {k: v for k, v in r.items() if k != "workdir"}
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    ok = (not r["stalled"] and r["lost_unexplained"] <= 0 and r["rss_growth_mb"] <= GOAL_RSS_GROWTH_MB
          and r["fd_growth"] <= 0 and r["thread_growth"] <= 0 and r["outbox_left"] == 0)
    return 0 if ok else 1
