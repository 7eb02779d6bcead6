"""``spectro-bench throughput``: sustained frames/s through simulator -> pty -> daemon -> mosquitto -> subscriber.

Usage::

    spectro-bench throughput [--rate HZ] [--frames N] [--rates 250,500,1000,1250,1500,2000] [--max-frames N]
                             [--qos 1] [--broker-nagle]
                             [--bundle B --dataset NPZ | --synthetic] [--json PATH]

Real processes only: the simulator (:mod:`benchmarks.simproc`, the simulator's own code on a pty, stamping frames
with ``CLOCK_MONOTONIC`` so the frame's device timestamp and the subscriber's receipt share one clock), the daemon
(``spectro-edge run --config <generated TOML>`` as systemd starts it), a real ``mosquitto`` on a free port
(:mod:`benchmarks.harness.mosquitto`), and a paho-mqtt subscriber in this process at the same QoS.

Each *step* streams a fixed number of spectra at one offered rate through a freshly started simulator and daemon
(the broker and subscriber stay), and reports what reached the subscriber: unique predictions (deduplicated by
sequence number), ``lost`` (= frames sent - unique predictions), duplicates, the delivered rate (unique predictions
/ time from the first frame's device timestamp to the last receipt), latency from the frame's device timestamp to
receipt (p50/p99), and CPU time of the daemon, simulator and broker over the streaming window, from
``/proc/<pid>/stat`` (utime + stime), as % of one core.

Steps: first ``--rate`` (default 100 frames/s, ``--frames`` spectra: the figure the goals name for latency and
CPU), then every rate of ``--rates`` upwards until a step loses frames, delivers under 90 % of the rate the simulator
produced, or the simulator itself falls under 90 % of the offered rate; then one step "as fast as possible"
(``--max-frames`` spectra, simulator rate 0) unless ``--no-max``. ``sustained_fps`` is the highest delivered rate
among steps with zero loss that kept up with the simulator; ``limited_by`` says what set it (judged by the CPU
use of the simulator and the daemon: on a busy machine neither may get a full core).

JSON keys: ``sustained_fps``, ``frames_sent``, ``predictions_received``, ``lost`` (totals over all steps),
``p99_latency_ms`` and ``p50_latency_ms`` and ``daemon_cpu_pct_per_100fps`` (from the ``--rate`` step), ``steps``;
``compute_us_back_to_back`` (the daemon's compute per frame, back to back, thread CPU p50, measured in this
process as ``spectro-bench latency`` does), ``daemon_cpu_us_per_frame_at_sustained`` (the daemon's CPU per frame in
the step that set ``sustained_fps``) and ``overhead_ratio``, the second over the first.

``--profile-daemon DIR`` adds one uncounted step at ``--rate`` with the daemon run by :mod:`benchmarks.daemonprof`
(cProfile per thread) and leaves the profiles in ``DIR``: where the daemon's CPU per frame goes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import producer, throughput_line  # the producer, the line-frame steps: each its own module
from benchmarks.daemonprof import calls_per_frame
from benchmarks.harness import DEVICE, LINE, SITE, daemon_command
from benchmarks.results import (
    host_facts,
    jsonable,
    publish,
    system_load,
)
from benchmarks.throughput_report import goals, per_call, render

log = logging.getLogger(__name__)

#: A step "keeps up" when it delivers at least this share of the offered rate.
KEEP_UP_FRACTION = 0.9
#: After the simulator exits, a step ends when no prediction arrived for this long (or all arrived).
IDLE_END_S = 4.0
#: Liveness deadlines (failures to get there, not figures).
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench throughput``."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--bundle", type=Path, help="bundle the daemon serves (with --dataset the simulator streams)")
    src.add_argument("--synthetic", action="store_true", help="demo bundle on the simulator's synthetic spectra")
    parser.add_argument("--dataset", type=Path, help="npz the simulator streams (must match --bundle)")
    parser.add_argument("--rate", type=float, default=100.0, help="reference rate for latency/CPU (default 100)")
    parser.add_argument("--frames", type=int, default=1000, help="spectra in the reference-rate step (default 1000)")
    parser.add_argument("--rates", default="250,500,1000,1250,1500,2000",
                        help="rates to search upwards, frames/s")
    parser.add_argument("--broker-nagle", action="store_true",
                        help="run mosquitto with its default set_tcp_nodelay false (see docs/mqtt.md)")
    parser.add_argument("--step-seconds", type=float, default=4.0, help="length of each search step (default 4)")
    parser.add_argument("--max-frames", type=int, default=4000, help="spectra of the as-fast-as-possible step")
    parser.add_argument("--no-max", action="store_true", help="skip the as-fast-as-possible step")
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="MQTT QoS of daemon and subscriber")
    parser.add_argument("--threads", type=int, default=1, help="daemon interpreter threads (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the built tablets model")
    parser.add_argument("--cache", type=Path, help="folder for built models (default: the user cache)")
    parser.add_argument("--keep", type=Path, help="keep the step folders (configs, logs, outboxes) here")
    parser.add_argument("--profile-daemon", type=Path, metavar="DIR",
                        help="run one extra, uncounted step at --rate with the daemon under cProfile (per thread)")
    parser.add_argument("--plot", type=Path, help="PNG of delivered rate and latency (default: beside --json)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON (and .md beside)")
    producer.add_arguments(parser)  # --producer simulator|replay (benchmarks/producer.py)
    throughput_line.add_arguments(parser)  # --line-spectra N: the line-frame steps (benchmarks/throughput_line.py)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of ``pid`` in seconds from ``/proc/<pid>/stat`` (None when unreadable)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


#: The spectra predicted in a line_prediction payload, read without parsing it (the field comes early).
_PREDICTED_RE = re.compile(rb'"predicted":(\d+)')


@dataclass
class _Inbox:
    """What the subscriber received: (receipt monotonic us, payload) per prediction or line_prediction message,
    the predictions they carry (a line message of N predicted spectra counts N), the last metrics payload."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    predictions: list[tuple[int, bytes]] = field(default_factory=list)
    spectra: int = 0
    metrics: bytes | None = None

    def reset(self) -> None:
        with self.lock:
            self.predictions = []
            self.spectra = 0
            self.metrics = None

    def count(self) -> int:
        """Predictions received (spectra, not messages)."""
        with self.lock:
            return self.spectra


class Subscriber:
    """paho-mqtt 2.x subscriber on the daemon's prediction and metrics topics, stamping receipts with monotonic us."""

    def __init__(self, host: str, port: int, prefix: str, qos: int) -> None:
        import paho.mqtt.client as mqtt

        from edge.publish.schema import MessageKind
        from edge.publish.topics import topic

        self.inbox = _Inbox()
        self.pred_topic = topic(prefix, SITE, LINE, DEVICE, MessageKind.PREDICTION)
        self.metrics_topic = topic(prefix, SITE, LINE, DEVICE, MessageKind.METRICS)
        self.line_topic = topic(prefix, SITE, LINE, DEVICE, MessageKind.LINE_PREDICTION)
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spectro-bench-sub", clean_session=True)
        self.client.max_inflight_messages_set(100)
        inbox, pred_topic, line_topic = self.inbox, self.pred_topic, self.line_topic

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            client.subscribe([(self.pred_topic, qos), (self.line_topic, qos), (self.metrics_topic, 0)])

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any = None) -> None:
            self._subscribed.set()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            now = time.monotonic_ns() // 1000
            if msg.topic == pred_topic:
                with inbox.lock:
                    inbox.predictions.append((now, msg.payload))
                    inbox.spectra += 1
            elif msg.topic == line_topic:
                found = _PREDICTED_RE.search(msg.payload, 0, 512)
                with inbox.lock:
                    inbox.predictions.append((now, msg.payload))
                    inbox.spectra += int(found.group(1)) if found else 0
            else:
                inbox.metrics = msg.payload

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise RuntimeError("the benchmark subscriber could not subscribe to the broker")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class Setup:
    """What the daemon serves and what the simulator streams."""

    bundle: Path
    dataset: Path | None  # None: the simulator's synthetic spectra (default seed/size)
    description: str


def resolve_setup(args: argparse.Namespace) -> Setup:
    """The bundle and dataset of the run (built and cached like ``spectro-bench latency``)."""
    from benchmarks import artifacts

    if args.bundle is not None:
        return Setup(args.bundle, args.dataset, "given")
    cache = args.cache or artifacts.default_cache_dir()
    if args.synthetic:
        demo = artifacts.ensure_demo()
        return Setup(demo.bundle, None, "the demo model (spectro-train fit examples/demo.toml), synthetic spectra")
    epochs = args.epochs or artifacts.DEFAULT_EPOCHS
    root = artifacts.ensure_tablets(cache, epochs=epochs)
    dataset = args.dataset or artifacts.datasets_dir() / "idrc2002_tablets.npz"
    return Setup(artifacts.deployed_bundle(root), dataset,
                 f"tablets protocol CNN int8 ({epochs} epochs, counts pipeline), IDRC 2002 tablet spectra")


def check_setup(setup: Setup) -> None:
    """Refuse (:class:`benchmarks.harness.HarnessError`) a run whose bundle rejects what the simulator will send.

    The simulator's spectra (``setup.dataset``, or its synthetic ones) are checked against the bundle's input
    contract (pixel count, wavelength range, signal) before anything streams: a mismatch would stream thousands
    of frames the daemon rejects and measure nothing.
    """
    from benchmarks.harness import HarnessError, Stream, check_contract
    from edge.bundle import load_bundle
    from edge.errors import EdgeError
    from firmware_bridge.simulator import SimulatorConfig, load_spectra

    try:
        bundle = load_bundle(setup.bundle)
    except (EdgeError, OSError) as exc:
        raise HarnessError(f"expected a valid bundle at {setup.bundle}: {exc}") from exc
    try:
        x, wl, y = load_spectra(SimulatorConfig(dataset_path=None if setup.dataset is None else str(setup.dataset)))
    except (ValueError, OSError) as exc:
        raise HarnessError(f"the simulator cannot stream {setup.dataset}: {exc}") from exc
    what = f"{setup.dataset}" if setup.dataset is not None else "its synthetic spectra (no --dataset given)"
    check_contract(bundle, Stream(setup.dataset or Path("synthetic"), x, wl, y, (), what))


def write_daemon_config(path: Path, *, port_url: str, bundle: Path, mqtt_port: int, qos: int, threads: int,
                        workdir: Path, **sections: dict[str, Any]) -> Path:
    """The daemon's TOML for one step (:func:`benchmarks.harness.write_edge_config`: no bundle watching, no
    commands, unlimited outbox drain), with this step's QoS, interpreter threads and client id (``sections``: more
    tables, e.g. ``lines={"publish": "spectrum"}``)."""
    from benchmarks.harness import write_edge_config

    return write_edge_config(path, port_url=port_url, bundle=bundle, mqtt_port=mqtt_port, forward_annotations=False,
                             log_level="WARNING", runtime={"num_threads": threads},
                             mqtt={"qos": qos, "client_id": f"spectro-bench-{workdir.name}"},
                             outbox={"path": str(workdir / "outbox.sqlite")}, **sections)


def _readline(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The simulator's first stdout line (its pty path)."""
    from benchmarks.harness import read_first_line

    return read_first_line(proc, "the simulator", timeout_s)


def _end(proc: subprocess.Popen[bytes] | None, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM, wait, SIGKILL when it does not stop: for processes this benchmark started."""
    from benchmarks.harness import end_process

    return end_process(proc, timeout_s)


def run_step(setup: Setup, broker: Any, sub: Subscriber, *, rate: float, frames: int, qos: int, threads: int,
             workdir: Path, daemon_argv: Callable[[Path], list[str]] | None = None,
             sim_args: tuple[str, ...] = (), sections: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One step: fresh simulator and daemon, ``frames`` spectra at ``rate`` (0: as fast as possible); ``sim_args``
    are more options of the simulator (``--line-spectra N``), ``sections`` more tables of the daemon's config.

    ``daemon_argv(config_path)`` gives the daemon's command line (default the harness's ``spectro-edge run --config``),
    e.g. to run it under a profiler.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    sub.inbox.reset()
    sim_cmd = [sys.executable, "-m", "benchmarks.simproc", "--link", str(workdir / "tty"), "--rate", str(rate),
               "--count", str(frames), "--linger", "1.0", *sim_args]
    if setup.dataset is not None:
        sim_cmd += ["--dataset", str(setup.dataset)]
    sim_err = open(workdir / "simulator.log", "wb")  # closed in finally
    daemon_log = open(workdir / "daemon.log", "wb")  # closed in finally
    sim = daemon = None
    try:
        sim = subprocess.Popen(sim_cmd, stdout=subprocess.PIPE, stderr=sim_err, env=env)
        port_url = _readline(sim, START_TIMEOUT_S)
        cfg = write_daemon_config(workdir / "edge.toml", port_url=port_url, bundle=setup.bundle, mqtt_port=broker.port,
                                  qos=qos, threads=threads, workdir=workdir, **(sections or {}))
        argv = daemon_argv(cfg) if daemon_argv is not None else daemon_command(cfg)
        daemon = subprocess.Popen(argv, stdout=daemon_log, stderr=subprocess.STDOUT, env=env)
        expected_s = frames / rate if rate > 0 else frames / 500.0
        deadline = time.monotonic() + START_TIMEOUT_S + 3.0 * expected_s
        first: tuple[float, float | None, float | None, float | None] | None = None
        last = first
        seen = 0
        sim_done_at: float | None = None
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            n = sub.inbox.count()
            now = time.monotonic()
            if n != seen:
                sample = (now, cpu_seconds(daemon.pid), cpu_seconds(sim.pid), cpu_seconds(broker.pid))
                if first is None:
                    first = sample
                last = sample
                seen = n
                last_change = now
            if daemon.poll() is not None:
                log.warning("the daemon exited with %s during the step (see %s)", daemon.returncode,
                            workdir / "daemon.log")
                break
            if seen >= frames:
                break
            if sim.poll() is not None:
                sim_done_at = sim_done_at or now
                if now - max(last_change, sim_done_at) > IDLE_END_S:
                    break
        daemon_rc = None if daemon.poll() is None else daemon.returncode
        _end(daemon)
        _end(sim)
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        sim_err.close()
        daemon_log.close()
    sent = frames
    try:
        for line in (workdir / "simulator.log").read_text(errors="replace").splitlines():
            if line.startswith("sent "):
                sent = int(line.split()[1])
    except (OSError, ValueError):
        pass
    with sub.inbox.lock:
        received = list(sub.inbox.predictions)
        metrics = sub.inbox.metrics
    return _step_figures(rate, frames, sent, received, metrics, first, last, daemon_rc, workdir)


def _spectra_of(received: list[tuple[int, bytes]]) -> Iterator[tuple[int, int, int]]:
    """(receipt us, seq, device timestamp us) of every prediction received: one per ``.../prediction`` message, one
    per predicted spectrum of a ``.../line_prediction`` (spectrum ``i``: seq ``(seq + i) % 2**32``; a rejected one,
    null in its arrays, is none)."""
    for recv_us, payload in received:
        msg = json.loads(payload)
        seq, device_us = int(msg["seq"]), int(msg["device_timestamp_us"])
        if msg.get("kind") != "line_prediction":
            yield recv_us, seq, device_us
            continue
        rejected = {int(r["index"]) for r in msg["rejected"]}
        for i in range(int(msg["spectra"])):
            if i not in rejected:
                yield recv_us, (seq + i) % 2**32, device_us


def _step_figures(rate: float, frames: int, sent: int, received: list[tuple[int, bytes]], metrics: bytes | None,
                  first: Any, last: Any, daemon_rc: int | None, workdir: Path) -> dict[str, Any]:
    by_seq: dict[int, tuple[int, int]] = {}
    dups = 0
    for recv_us, seq, device_us in _spectra_of(received):
        if seq in by_seq:
            dups += 1
            continue
        by_seq[seq] = (recv_us, device_us)
    unique = len(by_seq)
    step: dict[str, Any] = {"rate_hz": rate, "frames_requested": frames, "frames_sent": sent,
                            "predictions_received": unique, "duplicates": dups, "lost": max(0, sent - unique),
                            "workdir": str(workdir)}
    if daemon_rc is not None:
        step["daemon_exit_code"] = daemon_rc
    if unique >= 2:
        recv = np.array([v[0] for v in by_seq.values()], dtype=np.float64)
        dev = np.array([v[1] for v in by_seq.values()], dtype=np.float64)
        lat_ms = (recv - dev) / 1000.0
        span_s = (recv.max() - dev.min()) / 1e6
        dev_span_s = (dev.max() - dev.min()) / 1e6
        p50, p95, p99 = np.percentile(lat_ms, [50, 95, 99])
        step.update({
            "delivered_fps": unique / span_s if span_s > 0 else None,
            "simulator_fps": (unique - 1) / dev_span_s if dev_span_s > 0 else None,
            "p50_latency_ms": float(p50), "p95_latency_ms": float(p95), "p99_latency_ms": float(p99),
            "max_latency_ms": float(lat_ms.max()), "min_latency_ms": float(lat_ms.min()),
        })
    if first is not None and last is not None and last[0] > first[0]:
        wall = last[0] - first[0]
        for k, label in ((1, "daemon"), (2, "simulator"), (3, "broker")):
            if first[k] is not None and last[k] is not None:
                step[f"{label}_cpu_pct"] = 100.0 * (last[k] - first[k]) / wall
        step["cpu_window_s"] = wall
        fps = step.get("delivered_fps")
        if fps and "daemon_cpu_pct" in step:
            step["daemon_cpu_pct_per_100fps"] = step["daemon_cpu_pct"] / (fps / 100.0)
            step["daemon_cpu_us_per_frame"] = step["daemon_cpu_pct"] * 1e4 / fps
    if metrics is not None:
        try:
            counters = json.loads(metrics).get("counters", {})
            step["daemon_counters"] = {k: v for k, v in counters.items()
                                       if v and any(w in k for w in ("drop", "lost", "reject", "error", "crc"))}
        except ValueError:
            pass
    return step


def _keeps_up(step: dict[str, Any]) -> bool:
    """Zero loss, and the subscriber got predictions as fast as the simulator produced frames."""
    fps = step.get("delivered_fps") or 0.0
    sim = step.get("simulator_fps") or 0.0
    return step["lost"] == 0 and fps > 0 and fps >= KEEP_UP_FRACTION * sim


def _simulator_reached(step: dict[str, Any]) -> bool:
    """Whether the simulator produced frames at (nearly) the offered rate."""
    return step["rate_hz"] == 0 or (step.get("simulator_fps") or 0.0) >= KEEP_UP_FRACTION * step["rate_hz"]


def _best_limited_by(best: dict[str, Any]) -> str:
    """What held the best step back: the daemon or pty (as fast as possible), the simulator, or the rates tried."""
    if best["rate_hz"] == 0:
        return _limited_by(best)
    if not _simulator_reached(best):
        return "the simulator did not reach the offered rate"
    return "largest rate tried"


def _limited_by(step: dict[str, Any]) -> str:
    """Which process set the rate of an as-fast-as-possible step, judged by CPU use (percent of one core)."""
    if step["lost"] > 0 or not _keeps_up(step):
        return "daemon (fell behind the simulator)"
    sim = step.get("simulator_cpu_pct") or 0.0
    daemon = step.get("daemon_cpu_pct") or 0.0
    if sim >= 80.0 and sim >= daemon:
        return "simulator (a full core producing frames)"
    if daemon >= 80.0:
        return "daemon (a full core)"
    return "machine load or the pty (neither process had a full core)"


def _rates(text: str) -> list[float]:
    try:
        return sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise SystemExit(f"spectro-bench throughput: expected --rates like 250,500,1000, got {text!r}") from None


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every step and return the result dict (the JSON)."""
    from benchmarks.harness.mosquitto import Mosquitto

    setup = resolve_setup(args)
    check_setup(setup)
    load_before = system_load()
    from benchmarks.latency import compute_back_to_back_us

    compute_us = compute_back_to_back_us(setup.bundle, setup.dataset)
    log.info("daemon compute per frame, back to back: %.1f us (thread CPU, p50)", compute_us)
    work = Path(tempfile.mkdtemp(prefix="spectro-bench-tp-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    profile_step: dict[str, Any] | None = None
    try:
        with Mosquitto(work / "broker", tcp_nodelay=not args.broker_nagle) as broker:
            sub = Subscriber(broker.host, broker.port, "spectrolite", args.qos)
            try:
                plan: list[tuple[float, int]] = [(float(args.rate), int(args.frames))]
                plan += [(r, max(200, int(r * args.step_seconds))) for r in _rates(args.rates) if r > args.rate]
                for i, (rate, frames) in enumerate(plan):
                    log.info("step %d: %d spectra at %g frames/s", i, frames, rate)
                    step = run_step(setup, broker, sub, rate=rate, frames=frames, qos=args.qos, threads=args.threads,
                                    workdir=work / f"step{i}-{rate:g}hz", sim_args=producer.sim_args(args))
                    steps.append(step)
                    log.info("step %d: %s", i, _one_line(step))
                    if i > 0 and not (_keeps_up(step) and _simulator_reached(step)):
                        break
                if not args.no_max:
                    log.info("step %d: %d spectra as fast as possible", len(steps), args.max_frames)
                    step = run_step(setup, broker, sub, rate=0.0, frames=int(args.max_frames), qos=args.qos,
                                    threads=args.threads, workdir=work / f"step{len(steps)}-max",
                                    sim_args=producer.sim_args(args))
                    steps.append(step)
                    log.info("max step: %s", _one_line(step))
                if args.profile_daemon is not None:
                    prof_dir = args.profile_daemon

                    def profiled(cfg: Path) -> list[str]:
                        return [sys.executable, "-m", "benchmarks.daemonprof", "--out", str(prof_dir), "--", "run",
                                "--config", str(cfg)]

                    log.info("profiled step: %d spectra at %g frames/s, profiles in %s", args.frames, args.rate,
                             prof_dir)
                    profile_step = run_step(setup, broker, sub, rate=float(args.rate), frames=int(args.frames),
                                            qos=args.qos, threads=args.threads, workdir=work / "profiled",
                                            daemon_argv=profiled)
                    log.info("profiled step (figures include the profiler): %s", _one_line(profile_step))
                    profile_step["python_calls_per_frame"] = calls_per_frame(prof_dir, profile_step["frames_sent"])
                line_keys = throughput_line.line_steps(args, setup, broker, sub, work) if args.line_spectra else {}
            finally:
                sub.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    ref = steps[0]
    good = [s for s in steps if _keeps_up(s) and s.get("delivered_fps")]
    best = max(good, key=lambda s: s["delivered_fps"]) if good else None
    limited_by = None if best is None else _best_limited_by(best)
    result: dict[str, Any] = {
        "benchmark": "throughput",
        "setup": {"bundle": str(setup.bundle), "dataset": None if setup.dataset is None else str(setup.dataset),
                  "description": setup.description, "producer": producer.describe(args), "qos": args.qos,
                  "daemon_threads": args.threads, "broker_tcp_nodelay": not args.broker_nagle},
        "sustained_fps": None if best is None else best["delivered_fps"],
        "sustained_step_rate_hz": None if best is None else best["rate_hz"],
        "limited_by": limited_by,
        "frames_sent": int(sum(s["frames_sent"] for s in steps)),
        "predictions_received": int(sum(s["predictions_received"] for s in steps)),
        "lost": int(sum(s["lost"] for s in steps)),
        "duplicates": int(sum(s["duplicates"] for s in steps)),
        "reference_rate_hz": ref["rate_hz"],
        "p50_latency_ms": ref.get("p50_latency_ms"),
        "p99_latency_ms": ref.get("p99_latency_ms"),
        "daemon_cpu_pct": ref.get("daemon_cpu_pct"),
        "daemon_cpu_pct_per_100fps": ref.get("daemon_cpu_pct_per_100fps"),
        "compute_us_back_to_back": compute_us,
        "daemon_cpu_us_per_frame_at_sustained": None if best is None else best.get("daemon_cpu_us_per_frame"),
        "overhead_ratio": None if best is None or not best.get("daemon_cpu_us_per_frame") or not compute_us
        else best["daemon_cpu_us_per_frame"] / compute_us,
        "steps": steps,
        "profiled_step": profile_step,
        **per_call(profile_step, ref),
        "profile_dir": None if args.profile_daemon is None else str(args.profile_daemon),
        "load": {"before": load_before, "after": system_load()},
        **goals(best, ref, compute_us),
        "host": host_facts(),
        **line_keys,
    }
    return jsonable(result)


def _one_line(step: dict[str, Any]) -> str:
    def f(key: str, fmt: str = "{:.1f}") -> str:
        v = step.get(key)
        return "-" if v is None else fmt.format(v)

    return (f"sent {step['frames_sent']}, received {step['predictions_received']}, lost {step['lost']}, "
            f"delivered {f('delivered_fps')} fps, p50/p99 {f('p50_latency_ms', '{:.2f}')}/"
            f"{f('p99_latency_ms', '{:.2f}')} ms, daemon CPU {f('daemon_cpu_pct')} %")


def run(args: argparse.Namespace) -> int:
    """``spectro-bench throughput``: run the steps, print the tables, write JSON, markdown and the PNG plot."""
    from benchmarks.harness import HarnessError

    try:
        result = throughput_line.measure_lines(args) if args.line_only else measure(args)
    except HarnessError as exc:  # refused before streaming: nothing could be measured
        print(f"spectro-bench throughput: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"spectro-bench throughput: {exc}", file=sys.stderr)
        return 1
    from benchmarks.plots import plot_throughput

    if args.line_only:
        publish(args, result, throughput_line.render_lines(result))
        return 0 if result["line_predictions_received"] > 0 else 1
    publish(args, result, render(result), plot_throughput)
    return 0 if result["predictions_received"] > 0 else 1


if __name__ == "__main__":  # pragma: no cover
    from benchmarks.cli import main

    sys.exit(main(["throughput", *sys.argv[1:]]))
