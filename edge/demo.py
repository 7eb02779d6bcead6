"""``spectro-edge demo``: the whole loop on one machine, then a summary; exit 0 only if the loop worked.

What runs (every process is started here and stopped here, whatever happens):

1. an example bundle: built once by ``examples/demo/build_bundle.py`` with the trainer's own code (PLS on the
   simulator's synthetic spectra, int8 ``.tflite``, OOD limits, conformal intervals) in a child process and cached
   in ``~/.cache/spectrolite`` (``--bundle`` uses an existing one instead);
2. a broker: ``mosquitto`` when it is on PATH (or in /usr/sbin), otherwise an embedded ``amqtt`` broker when that
   package is installed (``pip install amqtt``), on a free local port;
3. ``spectro-sim`` on a pty, streaming synthetic spectra (``--frames`` of them) with a provoked drift halfway;
4. the daemon (``python -m edge.daemon``, the production code path) with the simulator's reference values
   forwarded into its prediction messages;
5. a console subscriber (here) printing predictions against the reference values, their intervals and quality,
   and every drift alert.

The summary gives frames sent, predictions received (unique, duplicates), RMSEP per target against the reference
values before the drift, and the drift alerts.  Success means: every frame's prediction arrived, the RMSEP is
finite, and (when a drift was provoked) an alert was raised after it started.

TensorFlow is only ever loaded by the bundle builder's child process; this module imports numpy and paho-mqtt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

__all__ = ["main", "find_mosquitto", "DemoResult"]

log = logging.getLogger("edge.demo")

_REPO = Path(__file__).resolve().parents[1]
_BUILDER = _REPO / "examples" / "demo" / "build_bundle.py"
#: Synthetic data shared by the simulator and the example bundle.
SEED = 0
SAMPLES = 500
CHANNELS = 256
#: Liveness deadlines (a stuck part makes the demo fail with a message instead of hanging), seconds.
START_TIMEOUT_S = 60.0
BUILD_TIMEOUT_S = 900.0
#: After the last frame is due, how long the subscriber may still wait for predictions, seconds.
TAIL_TIMEOUT_S = 30.0


def find_mosquitto() -> str | None:
    """Path of a ``mosquitto`` executable on PATH or in the usual sbin folders, or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {START_TIMEOUT_S:g} s")


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env


# ---------------------------------------------------------------------------------------------------- parts
class _Processes:
    """Child processes of the demo, ended in reverse order (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: list[IO[bytes]] = []

    def start(self, name: str, cmd: list[str], log_path: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        fh = open(log_path, "wb")  # noqa: SIM115 - closed in stop_all
        self.logs.append(fh)
        proc = subprocess.Popen(cmd, stderr=fh, env=_env(), **kwargs)
        self.items.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return int(proc.returncode)

    def stop_all(self) -> None:
        for _, proc in reversed(self.items):
            self.stop(proc)
        for fh in self.logs:
            fh.close()


def _bundle(args: argparse.Namespace, workdir: Path) -> Path:
    if args.bundle:
        return Path(args.bundle)
    if not _BUILDER.is_file():
        raise RuntimeError(f"the bundle builder {_BUILDER} is missing (not a source checkout?); pass --bundle PATH")
    digest = hashlib.sha256(_BUILDER.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spectrolite"
    cached = cache / f"demo-{digest}-s{SEED}.spectrolite"
    if cached.is_file() and not args.rebuild:
        print(f"bundle: {cached} (cached)")
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    print("bundle: building the example bundle with the trainer (PLS, int8 .tflite, OOD, intervals) ...", flush=True)
    build_log = workdir / "build.log"
    with open(build_log, "wb") as fh:
        proc = subprocess.run(
            [sys.executable, str(_BUILDER), "--out", str(cached), "--seed", str(SEED), "--samples", str(SAMPLES),
             "--channels", str(CHANNELS)],
            stdout=subprocess.DEVNULL, stderr=fh, env=dict(_env(), TF_CPP_MIN_LOG_LEVEL="3"), timeout=BUILD_TIMEOUT_S,
        )
    if proc.returncode != 0:
        tail = build_log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"building the example bundle failed (exit {proc.returncode}):\n{tail}")
    print(f"bundle: {cached}")
    return cached


def _start_broker(procs: _Processes, workdir: Path, port: int, choice: str = "auto") -> str:
    exe = find_mosquitto() if choice in ("auto", "mosquitto") else None
    if choice == "mosquitto" and exe is None:
        raise RuntimeError("--broker mosquitto: no mosquitto executable on PATH (apt install mosquitto)")
    if exe is not None:
        conf = workdir / "mosquitto.conf"
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "log_dest stderr"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        proc = procs.start("mosquitto", [exe, "-c", str(conf)], workdir / "mosquitto.log", stdout=subprocess.DEVNULL)
        _wait_port(port, proc, "mosquitto")
        return f"mosquitto ({exe}) on 127.0.0.1:{port}"
    import importlib.util

    if importlib.util.find_spec("amqtt") is None:
        raise RuntimeError(
            "no MQTT broker: install mosquitto (apt install mosquitto) or the embedded fallback (pip install amqtt)"
        )
    code = (
        "import asyncio, sys\n"
        "from amqtt.broker import Broker\n"
        "async def main():\n"
        "    b = Broker({'listeners': {'default': {'type': 'tcp', 'bind': '127.0.0.1:' + sys.argv[1]}},\n"
        "                'plugins': {'amqtt.plugins.authentication.AnonymousAuthPlugin': {'allow_anonymous': True}}})\n"
        "    await b.start()\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = procs.start("amqtt", [sys.executable, "-c", code, str(port)], workdir / "amqtt.log",
                       stdout=subprocess.DEVNULL)
    _wait_port(port, proc, "the embedded amqtt broker")
    return f"embedded amqtt broker on 127.0.0.1:{port}"


def _write_config(workdir: Path, *, port_url: str, bundle: Path, port: int) -> Path:
    path = workdir / "edge.toml"
    path.write_text(
        "\n".join(
            [
                'log_level = "INFO"',
                "[device]",
                'site = "demo-plant"',
                'line = "line-1"',
                'device_id = "sim-01"',
                "[serial]",
                f"port_url = {json.dumps(port_url)}",
                "read_timeout_s = 0.05",
                "[bundle]",
                f"path = {json.dumps(str(bundle))}",
                "watch = false",
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {port}",
                "reconnect_min_delay_s = 1",
                "reconnect_max_delay_s = 2",
                "clean_session = true",
                "[outbox]",
                f"path = {json.dumps(str(workdir / 'outbox.sqlite'))}",
                "[drift]",
                "min_frames = 20",
                "window_frames = 100",
                "ewma_alpha = 0.2",
                "[metrics]",
                "period_s = 5.0",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------------------------------------------- subscriber
@dataclass
class DemoResult:
    """What the console subscriber saw."""

    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    status: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Console:
    """paho subscriber printing predictions and drift alerts as they arrive."""

    def __init__(self, port: int, topic_base: str, *, print_every: int, out: IO[str] | None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.result = DemoResult()
        self.print_every = max(1, print_every)
        self.out = out
        self.topic_base = topic_base
        self.connected = threading.Event()
        self._last_quality: str | None = "ok"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spectrolite-demo-console-{os.getpid()}")
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.connect_async("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.client = c

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        client.subscribe(f"{self.topic_base}/#", qos=1)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return
        topic: str = msg.topic
        r = self.result
        if topic.endswith("/prediction"):
            with r.lock:
                if body["seq"] in r.predictions:
                    r.duplicates += 1
                    return
                r.predictions[body["seq"]] = body
                n = len(r.predictions)
            quality = body.get("quality")
            if n == 1 or n % self.print_every == 0 or quality != self._last_quality:
                self._last_quality = quality
                self._print(_format_prediction(body))
        elif topic.endswith("/drift"):
            with r.lock:
                r.drift.append(body)
            arrow = "RAISED " if body["event"] == "raised" else "cleared"
            self._print(f"*** drift {arrow} {body['detector']} at seq {body.get('seq')}: {body.get('detail', '')}")
        elif topic.endswith("/status"):
            with r.lock:
                r.status.append(body)

    def _print(self, line: str) -> None:
        """Print from paho's thread; a closed stdout (``| head``) silences the console, never the subscriber."""
        if self.out is None:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            self.out = None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _format_prediction(body: dict[str, Any]) -> str:
    ref = body.get("reference") or []
    parts = []
    for i, v in enumerate(body["values"]):
        name = v["name"].replace("_pct", "")
        r = f" (ref {ref[i]:.2f})" if i < len(ref) and ref[i] is not None else ""
        lo, hi = v.get("lower"), v.get("upper")
        iv = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        parts.append(f"{name}={v['value']:.2f}{v['unit']}{iv}{r}")
    ood = body.get("ood") or {}
    q = f" Q/lim={ood['q'] / ood['q_limit']:.2f}" if ood else ""
    return f"seq {body['seq']:>5}  {'  '.join(parts)}  quality={body['quality']}{q}  {body['latency_ms']:.2f} ms"


def _rmsep(predictions: dict[int, dict[str, Any]], seqs: Sequence[int]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for s in seqs:
        body = predictions[s]
        ref = body.get("reference")
        if not ref:
            continue
        for i, v in enumerate(body["values"]):
            if i < len(ref) and ref[i] is not None:
                sums.setdefault(v["name"], []).append((v["value"] - ref[i]) ** 2)
    return {k: math.sqrt(sum(v) / len(v)) for k, v in sums.items() if v}


# ---------------------------------------------------------------------------------------------------- main
def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="spectro-edge demo", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300, help="spectra the simulator streams (default %(default)s)")
    p.add_argument("--rate", type=float, default=50.0, help="spectra per second (default %(default)s)")
    p.add_argument("--drift-at", type=int, help="spectrum index of the provoked drift (default: halfway; -1: none)")
    p.add_argument("--drift-kind", default="band", help="band, baseline, shift or lamp (default %(default)s)")
    p.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto",
                   help="auto: mosquitto when installed, else the embedded amqtt broker (default %(default)s)")
    p.add_argument("--bundle", help="use this bundle instead of building the example one")
    p.add_argument("--rebuild", action="store_true", help="rebuild the example bundle even if cached")
    p.add_argument("--workdir", help="keep the run's files (config, logs, outbox) here instead of a temporary folder")
    p.add_argument("--print-every", type=int, default=0, help="print every Nth prediction (default: about 25 lines)")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error(f"expected --frames >= 1, got {args.frames}")
    if args.rate <= 0:
        p.error(f"expected --rate > 0, got {args.rate}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (see the module docstring); returns 0 when the loop worked, 1 when it did not, 2 on setup errors."""
    args = _parse(argv)
    drift_at = args.frames // 2 if args.drift_at is None else (None if args.drift_at < 0 else args.drift_at)
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="spectrolite-demo-")) if own_dir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = _Processes()
    console: _Console | None = None
    out = sys.stdout
    try:
        bundle = _bundle(args, workdir)
        port = _free_port()
        print(f"broker: {_start_broker(procs, workdir, port, args.broker)}")
        console = _Console(port, "spectrolite/demo-plant/line-1/sim-01", out=out,
                           print_every=args.print_every or max(1, args.frames // 25))
        if not console.connected.wait(START_TIMEOUT_S):
            raise RuntimeError("the console subscriber could not connect to the broker")
        sim_cmd = [sys.executable, "-m", "firmware_bridge.cli", "--pty", "--link", str(workdir / "spectrometer"),
                   "--seed", str(SEED), "--synthetic-samples", str(SAMPLES), "--synthetic-channels", str(CHANNELS),
                   "--rate", str(args.rate), "--count", str(args.frames), "-v"]
        if drift_at is not None:
            sim_cmd += ["--drift-at", str(drift_at), "--drift-kind", args.drift_kind]
        sim = procs.start("spectro-sim", sim_cmd, workdir / "sim.log", stdout=subprocess.PIPE)
        assert sim.stdout is not None
        device_path = sim.stdout.readline().decode().strip()
        if not device_path:
            raise RuntimeError(f"spectro-sim printed no device path; see {workdir / 'sim.log'}")
        print(f"simulator: {device_path} ({args.frames} spectra at {args.rate:g}/s"
              + (f", {args.drift_kind} drift from spectrum {drift_at})" if drift_at is not None else ")"))
        config = _write_config(workdir, port_url=device_path, bundle=bundle, port=port)
        daemon = procs.start("daemon", [sys.executable, "-m", "edge.daemon", "--config", str(config),
                                        "--forward-annotations"], workdir / "daemon.log", stdout=subprocess.DEVNULL)
        print(f"daemon: pid {daemon.pid}, config {config}, log {workdir / 'daemon.log'}")
        print("-" * 100, flush=True)
        deadline = time.monotonic() + START_TIMEOUT_S + args.frames / args.rate + TAIL_TIMEOUT_S
        while time.monotonic() < deadline:
            with console.result.lock:
                n = len(console.result.predictions)
            if n >= args.frames or daemon.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # a drift message published right after the last prediction
        daemon_code = procs.stop(daemon)
        sim_code = procs.stop(sim)
        return _summary(console.result, args, drift_at, daemon_code, sim_code, workdir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"spectro-edge demo: {exc}", file=sys.stderr)
        return 2
    finally:
        if console is not None:
            console.close()
        procs.stop_all()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _frames_sent(sim_log: Path) -> int | None:
    """Spectra the simulator reports having streamed ("simulator stopped: N spectra, ..." in its log)."""
    import re

    try:
        text = sim_log.read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"simulator stopped: (\d+) spectra", text)
    return int(found[-1]) if found else None


def _summary(result: DemoResult, args: argparse.Namespace, drift_at: int | None, daemon_code: int, sim_code: int,
             workdir: Path) -> int:
    with result.lock:
        preds = dict(result.predictions)
        drift = list(result.drift)
        dups = result.duplicates
    seqs = sorted(preds)
    # Spectra in stream order; the drift starts at the drift_at-th spectrum.
    before = seqs[: drift_at] if drift_at is not None else seqs
    first_drift_seq = seqs[drift_at] if drift_at is not None and drift_at < len(seqs) else None
    rmsep = _rmsep(preds, before)
    raised = [d for d in drift if d["event"] == "raised"]
    cleared = [d for d in drift if d["event"] == "cleared"]
    flagged = sum(1 for s in seqs if preds[s]["quality"] != "ok")
    print("-" * 100)
    print("summary")
    sent = _frames_sent(workdir / "sim.log")
    print(f"  frames sent:           {sent if sent is not None else args.frames}"
          + ("" if sent is not None else " (requested; the simulator's log did not say)"))
    print(f"  predictions received:  {len(preds)} unique ({dups} duplicates dropped)")
    print(f"  flagged predictions:   {flagged} (quality other than ok)")
    for name, value in rmsep.items():
        print(f"  RMSEP {name:<17} {value:.3f} (vs the simulator's reference values, before the drift)")
    for d in raised + cleared:
        print(f"  drift {d['event']:<8} {d['detector']:<24} at seq {d.get('seq')}: {d.get('detail', '')}")
    if not drift:
        print("  drift alerts:          none")
    problems = []
    if len(preds) < args.frames:
        problems.append(f"expected {args.frames} predictions, got {len(preds)}")
    if sent is not None and sent != args.frames:
        problems.append(f"expected the simulator to send {args.frames} spectra, it reports {sent}")
    if not rmsep or not all(math.isfinite(v) for v in rmsep.values()):
        problems.append("no RMSEP could be computed (reference values missing)")
    if drift_at is not None and first_drift_seq is not None:
        if not any(d.get("seq") is not None and d["seq"] >= first_drift_seq for d in raised):
            problems.append(f"expected a drift alert after seq {first_drift_seq}, got none")
    if daemon_code != 0:
        problems.append(f"the daemon exited with code {daemon_code} (see its log)")
    if problems:
        print("RESULT: FAILED: " + "; ".join(problems))
        if workdir.exists():
            daemon_log = workdir / "daemon.log"
            if daemon_log.is_file():
                print("--- daemon log tail ---\n" + daemon_log.read_text(errors="replace")[-3000:], file=sys.stderr)
        return 1
    print("RESULT: OK: every frame predicted, reference values tracked, drift detected" if drift_at is not None
          else "RESULT: OK: every frame predicted, reference values tracked")
    del sim_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
