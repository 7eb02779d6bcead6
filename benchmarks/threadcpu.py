"""``python -m benchmarks.threadcpu``: the daemon's CPU per thread, idle or at a fixed rate (issue #17).

``spectro-bench throughput`` gives the daemon's CPU as a whole; this splits it by thread, to tell periodic
housekeeping (what the daemon spends with no frames flowing) from the per-frame work of each thread.  Real
processes, as in ``spectro-bench throughput``: mosquitto on a free port, the simulator on a pty
(:mod:`benchmarks.simproc`), the daemon with the same generated config
(:func:`benchmarks.throughput.write_daemon_config`: metrics every second, serial read timeout 0.05 s, no bundle
watch, QoS 1), no subscriber.

``--rate 0`` (idle): the simulator is connected and sends one spectrum, then nothing; otherwise it streams at
``--rate``.  After ``--settle`` seconds the CPU time (utime + stime) of every thread is read from
``/proc/<pid>/task/<tid>/stat``, again ``--seconds`` later, and the differences are printed as % of one core and,
with frames flowing, as microseconds per offered frame (with the load average).  Thread names come from the daemon
itself: it runs under a small wrapper (``python -c``) whose own thread writes ``{native id: name}`` of the daemon's
threads once, a few seconds after the start, and then ends; otherwise it is ``spectro-edge run``.

The kernel counts CPU time in ticks (``SC_CLK_TCK``, 100 a second here): over 20 s one tick is 0.05 % of a core,
so idle figures below that are noise.  Measure CPU seconds, not wall speed, on a shared machine, and compare two
versions back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "thread_cpu"]

#: The wrapper's pause before it writes the thread names (the daemon's threads are up by then).
NAMES_AFTER_S = 4.0


def _cpu_seconds(stat_path: str) -> tuple[float, float]:
    with open(stat_path, encoding="ascii") as fh:
        text = fh.read()
    fields = text[text.rindex(")") + 2:].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """utime and stime, seconds, of every thread of ``pid`` (threads that ended meanwhile are left out)."""
    out: dict[int, tuple[float, float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = _cpu_seconds(f"/proc/{pid}/task/{tid}/stat")
        except (OSError, ValueError):
            pass
    return out


def _wrapper(config: Path, names: Path) -> str:
    """``python -c`` source: ``spectro-edge run --config CONFIG`` with a thread that writes the thread names."""
    return (
        "import json, sys, threading, time\n"
        "def _names():\n"
        f"    time.sleep({NAMES_AFTER_S!r})\n"
        "    threads = {t.native_id: t.name for t in threading.enumerate() if t is not threading.current_thread()}\n"
        f"    open({str(names)!r}, 'w').write(json.dumps(threads))\n"
        "threading.Thread(target=_names, name='threadcpu-names', daemon=True).start()\n"
        "from edge.cli import main\n"
        f"sys.exit(main(['run', '--config', {str(config)!r}]))\n")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import producer
    from benchmarks.harness import Mosquitto, end_process, read_first_line
    from benchmarks.results import system_load
    from benchmarks.throughput import resolve_setup, write_daemon_config

    setup = resolve_setup(argparse.Namespace(bundle=args.bundle, synthetic=args.bundle is None, dataset=args.dataset,
                                             cache=None, epochs=None))
    work = Path(tempfile.mkdtemp(prefix="spectro-threadcpu-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    idle = args.rate <= 0
    count = 1 if idle else int(args.rate * (args.settle + args.seconds + 10))
    sim_rate = 0.001 if idle else args.rate  # idle: one spectrum, the next one 1,000 s later
    with Mosquitto(work / "broker") as broker:
        broker.start()
        with open(work / "simulator.log", "wb") as sim_log, open(work / "daemon.log", "wb") as daemon_log:
            sim = subprocess.Popen([sys.executable, "-m", "benchmarks.simproc", "--link", str(work / "tty"),
                                    "--rate", str(sim_rate), "--count", str(count), "--linger", "1.0",
                                    *producer.sim_args(args),
                                    *(["--dataset", str(setup.dataset)] if setup.dataset is not None else [])],
                                   stdout=subprocess.PIPE, stderr=sim_log, env=env)
            daemon = None
            try:
                port = read_first_line(sim, "the simulator")
                cfg = write_daemon_config(work / "edge.toml", port_url=port, bundle=setup.bundle,
                                          mqtt_port=broker.port, qos=1, threads=1, workdir=work)
                names_path = work / "threads.json"
                daemon = subprocess.Popen([sys.executable, "-c", _wrapper(cfg, names_path)], stdout=daemon_log,
                                          stderr=subprocess.STDOUT, env=env)
                time.sleep(max(args.settle, NAMES_AFTER_S + 0.5))
                load_before = system_load()
                first, t0 = thread_cpu(daemon.pid), time.monotonic()
                time.sleep(args.seconds)
                last, t1 = thread_cpu(daemon.pid), time.monotonic()
                load_after = system_load()
                if daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {daemon.returncode} (see {work / 'daemon.log'})")
                names = {int(k): str(v) for k, v in json.loads(names_path.read_text()).items()}
            finally:
                end_process(daemon, 10.0)
                end_process(sim, 10.0)
    wall = t1 - t0
    frames = 0.0 if idle else args.rate * wall
    threads = []
    for tid, (user, system) in last.items():
        u0, s0 = first.get(tid, (0.0, 0.0))
        cpu = (user - u0) + (system - s0)
        name = names.get(tid, "MainThread" if tid == daemon.pid else f"tid {tid}")
        threads.append({"thread": name, "cpu_pct": 100.0 * cpu / wall, "user_pct": 100.0 * (user - u0) / wall,
                        "sys_pct": 100.0 * (system - s0) / wall,
                        "us_per_frame": 1e6 * cpu / frames if frames else None})
    threads.sort(key=lambda t: -float(t["cpu_pct"]))
    total = sum(float(t["cpu_pct"]) for t in threads)
    return {"benchmark": "threadcpu", "rate_hz": max(0.0, args.rate), "window_s": wall, "daemon_cpu_pct": total,
            "daemon_us_per_frame": total * 1e4 / args.rate if frames else None, "threads": threads,
            "producer": producer.describe(args),
            "load_before": load_before, "load_after": load_after, "workdir": str(work) if args.keep else None}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.threadcpu", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=100.0, help="frames/s the simulator sends (0: idle)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the measured window")
    p.add_argument("--settle", type=float, default=6.0, help="seconds after the daemon's start before it")
    p.add_argument("--bundle", type=Path, help="bundle the daemon serves (default: the demo model on the "
                   "simulator's synthetic spectra, as spectro-bench throughput --synthetic)")
    p.add_argument("--dataset", type=Path, help="npz the simulator streams (with --bundle)")
    p.add_argument("--keep", type=Path, help="keep the config and logs here")
    p.add_argument("--json", type=Path, help="write the figures here")
    from benchmarks import producer

    producer.add_arguments(p)
    args = p.parse_args(argv)
    result = measure(args)
    lb, la = result["load_before"]["loadavg_1m"], result["load_after"]["loadavg_1m"]
    per_frame = result["daemon_us_per_frame"]
    print(f"daemon at {result['rate_hz']:g} frames/s over {result['window_s']:.1f} s: {result['daemon_cpu_pct']:.2f} % "
          f"of one core" + (f", {per_frame:.0f} us per frame" if per_frame else "")
          + f" (load average {lb:.2f} -> {la:.2f} on {os.cpu_count()} CPUs)")
    for t in result["threads"]:
        if t["cpu_pct"] > 0:
            extra = f"  {t['us_per_frame']:6.0f} us/frame" if t["us_per_frame"] is not None else ""
            print(f"  {t['thread'][:32]:32s} {t['cpu_pct']:6.2f} % (user {t['user_pct']:5.2f}, sys "
                  f"{t['sys_pct']:5.2f}){extra}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
