"""``spectro-bench attack``: the high and medium findings of issue #18 replayed against a running daemon.

Each attack starts its own broker, device (``spectro-sim`` on a pty, or a hostile device played here on a pty pair)
and ``spectro-edge run`` (:mod:`benchmarks.harness`, as production starts it), attacks, and reports whether the
daemon ``held``, how many predictions were lost that the daemon's policy does not allow (a loss that is counted in
its metrics, or one while no daemon ran after a crash, is allowed; a silent one is not), and what it saw.

Command settings are the project's defaults (``[commands]`` as ``spectro-edge config --example`` has them), plus an
HMAC key file (and ``enabled = true``: off, every attack on commands holds trivially), so the figures follow the
defaults as they change; ``command_flood_unsigned`` states ``require_auth = false`` (the flood the command lanes
protect against).
A daemon that exits is restarted after 2 s, as ``deploy/spectrolite-edge.service`` (``Restart=always``) does.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    DEVICE,
    Broker,
    HarnessError,
    Processes,
    Subscriber,
    daemon_command,
    end_process,
    ensure_trained,
    read_first_line,
    repo_root,
    simulator_command,
    start_broker,
    write_edge_config,
)

#: The attacks, in the order they run.
ATTACKS = ("oversized", "oversized_mqtt311", "unauthenticated", "disk_full", "reload_flood", "command_flood",
           "command_flood_unsigned", "hostile_status", "forged_frames", "stale_retained")
#: A daemon must deliver predictions again within this long after an oversized message, seconds.
REDELIVER_LIMIT_S = 30.0
#: ``RestartSec`` of deploy/spectrolite-edge.service.
RESTART_S = 2.0
#: Liveness deadline of one step (a daemon that never gets there is a result, not a hang), seconds.
STEP_S = 60.0
RATE_HZ = 50.0


@dataclass
class Result:
    """One attack's outcome (``held`` None: skipped, ``detail`` says why)."""

    name: str
    held: bool | None
    lost: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "held": self.held, "lost": self.lost, "detail": self.detail}


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


class Rig:
    """Broker, subscriber, device and a supervised daemon for one attack, in ``workdir``."""

    def __init__(self, workdir: Path, bundle: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.bundle = Path(shutil.copy(bundle, workdir / "model.spectrolite"))
        self.procs = Processes()
        self.broker: Broker = start_broker(self.procs, workdir, "mosquitto")
        self.sub = Subscriber(self.broker, client_id=f"attack-{workdir.name}")
        self.base = self.sub.base
        self.key = workdir / "hmac.key"
        self.key.write_text(secrets.token_hex(32), encoding="ascii")  # text: the daemon strips whitespace
        self.daemon: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.exit_codes: list[int] = []  #: of each daemon that exited (and was restarted)
        self._config: Path | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ processes
    def start_sim(self, extra: tuple[str, ...] = (), rate_hz: float = RATE_HZ) -> str:
        cmd = simulator_command(self.workdir / "spectrometer", count=0, rate_hz=rate_hz, synthetic=(500, 256),
                                extra=extra)
        cmd.remove("--exit-when-done")
        sim = self.procs.start("spectro-sim", cmd, self.workdir / "sim.log", stdout=subprocess.PIPE)
        return read_first_line(sim, "spectro-sim")

    def start_daemon(self, port_url: str, **sections: Mapping[str, Any]) -> None:
        sections = {"commands": {"enabled": True, "hmac_key_path": str(self.key)}, **sections}
        self._config = write_edge_config(self.workdir / "edge.toml", port_url=port_url, bundle=self.bundle,
                                         mqtt_port=self.broker.port, **sections)
        self._spawn()
        self._watch = threading.Thread(target=self._supervise, daemon=True)
        self._watch.start()

    def _spawn(self) -> None:
        assert self._config is not None
        self.daemon = self.procs.start("spectro-edge run", daemon_command(self._config),
                                       self.workdir / f"daemon-{self.restarts}.log")

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            if self.daemon is not None and self.daemon.poll() is not None:
                self.exit_codes.append(int(self.daemon.returncode))
                if self._stop.wait(RESTART_S):
                    return
                self.restarts += 1
                self._spawn()

    def daemon_log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("daemon-*.log")))

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=5)
        self.sub.close()
        self.procs.stop_all()

    # ------------------------------------------------------------------------------------------ messages
    def publish(self, command: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        with self.attacker() as c:
            c.publish(f"{self.base}/cmd/{command}", payload, qos=qos, retain=retain).wait_for_publish(timeout=60)

    @contextlib.contextmanager
    def attacker(self) -> Iterator[Any]:
        """A connected paho client (its network loop running) for floods published back to back."""
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"attacker-{secrets.token_hex(4)}")
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        try:
            yield c
        finally:
            c.loop_stop()
            c.disconnect()

    def command(self, name: str, args: Mapping[str, Any], request_id: str, *, signed: bool = False,
                issued_at_unix_s: float | None = None) -> bytes:
        from edge.commands import make_command, sign_command

        body = make_command(name, dict(args), device_id=DEVICE, request_id=request_id,
                            issued_at_unix_s=issued_at_unix_s)
        return sign_command(body, self.key.read_bytes()) if signed else json.dumps(body).encode()

    def response(self, request_id: str) -> dict[str, Any] | None:
        with self.sub.inbox.lock:
            return next((r for r in self.sub.inbox.responses if r.get("request_id") == request_id), None)

    def predictions(self) -> dict[int, dict[str, Any]]:
        with self.sub.inbox.lock:
            return dict(self.sub.inbox.predictions)

    def counters(self) -> dict[str, int]:
        with self.sub.inbox.lock:
            m = self.sub.inbox.metrics
        return dict(m.get("counters", {})) if m else {}

    def gauges(self) -> dict[str, float]:
        """The last metrics message's gauges: the outbox's and the publisher's own counts are there
        (``outbox_evicted``, ``mqtt_lost_outbox_unavailable``, ...), since this process opened the outbox."""
        with self.sub.inbox.lock:
            m = self.sub.inbox.metrics
        return dict(m.get("gauges", {})) if m else {}

    def outbox_losses(self) -> int:
        """Messages the outbox evicted or refused and messages neither stored nor sent, as the daemon counts them
        (predictions and lower-priority metrics together: an upper bound on the predictions among them)."""
        g = self.gauges()
        return int(sum(g.get(k, 0.0) for k in ("outbox_evicted", "outbox_refused", "mqtt_lost_outbox_unavailable")))

    def status(self) -> dict[str, Any]:
        with self.sub.inbox.lock:
            return dict(self.sub.inbox.status[-1]) if self.sub.inbox.status else {}

    def flowing(self, n: int = 20) -> bool:
        have = self.sub.inbox.count()
        return _wait(lambda: self.sub.inbox.count() >= have + n, STEP_S)

    def gaps(self) -> int:
        """Sequence numbers missing between the first and the last prediction received."""
        seqs = sorted(self.predictions())
        return (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0

    def unexplained(self) -> int:
        """Sequence gaps the daemon's counters do not explain: reference frames (a capture takes sequence numbers
        too), rejected, dropped or evicted frames and messages, each counted in its metrics."""
        _wait(lambda: bool(self.counters()), 5.0)
        c = self.counters()
        explained = sum(v for k, v in c.items() if k.startswith(("frames_rejected", "frames_dropped", "outbox_evict",
                                                                     "outbox_refus", "lost_outbox", "messages_")))
        explained += c.get("dark_frames", 0) + c.get("white_frames", 0) + self.outbox_losses()
        return max(0, self.gaps() - explained)


# ---------------------------------------------------------------------------------------------------- attacks
#: The daemon's address space is capped at what it maps plus this much before the oversized message (RLIMIT_AS,
#: as systemd's MemoryMax would cap it), so a message larger than this cannot simply be buffered, bytes.
MEMORY_HEADROOM_BYTES = 32 << 20


def _limit_memory(pid: int) -> int | None:
    """Cap ``pid``'s address space at what it maps now plus MEMORY_HEADROOM_BYTES; returns the cap, or None where
    it cannot be set (no ``/proc`` or ``prlimit``)."""
    import resource

    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        vm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:")))
        _soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
        cap = vm_kb * 1024 + MEMORY_HEADROOM_BYTES
        resource.prlimit(pid, resource.RLIMIT_AS, (cap, hard))
    except (OSError, AttributeError, StopIteration, ValueError):
        return None
    return cap


def oversized(rig: Rig, size_mb: int, protocol: str) -> Result:
    """A ``size_mb`` message on ``.../cmd/reload_bundle`` while the daemon (MQTT ``protocol``, no broker packet
    bound) runs under a memory limit.  MQTT 5: the daemon's Maximum Packet Size makes the broker drop it, so the
    daemon must keep delivering without a restart.  MQTT 3.1.1 (the default protocol) has no such bound: the
    message may kill paho's network thread, and the watchdog must then end the daemon (exit code 2) so that it is
    restarted; either way predictions must flow again within REDELIVER_LIMIT_S."""
    name = "oversized" if protocol == "5" else "oversized_mqtt311"
    rig.start_daemon(rig.start_sim(), mqtt={"protocol": protocol})
    if not rig.flowing() or rig.daemon is None:
        return Result(name, False, detail={"error": "no predictions before the attack"})
    cap = _limit_memory(rig.daemon.pid)
    t0 = time.monotonic()
    rig.publish("reload_bundle", b"x" * (size_mb << 20), qos=1)
    sent_s = time.monotonic() - t0
    before = set(rig.predictions())
    t1 = time.monotonic()
    came = _wait(lambda: bool(set(rig.predictions()) - before), REDELIVER_LIMIT_S)
    redeliver_s = time.monotonic() - t1 if came else None
    rig.flowing(10)
    lost = 0 if rig.restarts else rig.unexplained()
    # MQTT 5: the bound holds, no restart.  3.1.1: a restart is allowed, only after the watchdog's exit code 2.
    held = bool(came) and (rig.restarts == 0 if protocol == "5" else all(c == 2 for c in rig.exit_codes))
    return Result(name, held, lost, {
        "size_mb": size_mb, "mqtt_protocol": protocol, "publish_s": round(sent_s, 2),
        "memory_limit_mb": None if cap is None else round(cap / (1 << 20)),
        "redeliver_after_oversized_s": None if redeliver_s is None else round(redeliver_s, 2),
        "daemon_restarts": rig.restarts, "daemon_exit_codes": list(rig.exit_codes), "seq_gaps": rig.gaps(),
        "note": "seq gaps while a crashed daemon restarts are allowed (the device's frames have no reader)"})


def unauthenticated(rig: Rig) -> Result:
    rig.start_daemon(rig.start_sim())
    rig.flowing()
    sent = {"set_integration_time": {"integration_time_us": 1000}, "reload_bundle": {"path": str(rig.bundle)},
            "capture_dark": {"average_frames": 1}}
    for name, args in sent.items():
        rig.publish(name, rig.command(name, args, f"unauth-{name}"))
    _wait(lambda: all(rig.response(f"unauth-{n}") is not None for n in sent), 20.0)
    answers = {n: rig.response(f"unauth-{n}") for n in sent}
    executed = sorted(n for n, r in answers.items() if r is not None and r.get("ok"))
    return Result("unauthenticated", not executed, rig.unexplained(), {
        "executed": executed,
        "answers": {n: (None if r is None else {"ok": r.get("ok"), "error": r.get("error")}) for n, r in
                    answers.items()},
        "commands_refused": rig.counters().get("commands_refused", 0)})


@contextlib.contextmanager
def _tmpfs(where: Path, size_bytes: int) -> Iterator[str | None]:
    """Mount a tmpfs at ``where``; yields None when mounted, else the reason it could not be."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield "mounting a tmpfs needs root and mount(8)"
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        yield f"cannot mount a tmpfs: {done.stderr.strip()}"
        return
    try:
        yield None
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _fill(path: Path) -> None:
    """Another writer: append to ``path`` until its filesystem is full (ENOSPC), in halving chunks down to 512 B."""
    chunk = 1 << 20
    with open(path, "ab", buffering=0) as fh:
        while chunk >= 512:
            try:
                if fh.write(b"\0" * chunk) == 0:
                    chunk //= 2
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2


def disk_full(rig: Rig, size_mb: int) -> Result:
    """The outbox's filesystem (a tmpfs of ``size_mb``) really full while the broker is down, policy drop_oldest.

    The broker is down from the start, so every prediction waits in the outbox, whose bounds (the defaults, far
    above the tmpfs) leave the disk as the bound.  After 5 s another writer fills the filesystem to ENOSPC, and the
    daemon runs 8 s more on the full disk.  Then the broker comes back and the device stops; the attack holds if
    the daemon stayed up, delivered again, kept the newest predictions (what it lost is the oldest: the delivered
    ones have no gap up to the last) and counted every prediction lost (outbox evictions and refusals, messages
    neither stored nor sent).
    """
    fs = rig.workdir / "outbox-fs"
    with _tmpfs(fs, size_mb << 20) as why:
        if why is not None:
            return Result("disk_full", None, detail={"skipped": why})
        port = rig.broker.port
        end_process(next(p for n, p in rig.procs.items if n == "mosquitto"))  # the broker is down: nothing drains
        sim_url = rig.start_sim(rate_hz=2 * RATE_HZ)
        # A fixed reconnect delay of 5 s: the fresh subscriber below is subscribed before the daemon reconnects.
        rig.start_daemon(sim_url, outbox={"path": str(fs / "outbox.sqlite"), "full_policy": "drop_oldest"},
                         mqtt={"reconnect_min_delay_s": 5, "reconnect_max_delay_s": 5})
        time.sleep(5.0)
        _fill(fs / "ballast")
        free_after_fill = shutil.disk_usage(fs).free
        free_min = free_after_fill
        deadline = time.monotonic() + 8.0  # predictions keep coming on the full disk
        while time.monotonic() < deadline:
            free_min = min(free_min, shutil.disk_usage(fs).free)
            time.sleep(0.05)
        rig.broker = start_broker(rig.procs, rig.workdir, "mosquitto", port=port)
        rig.sub.close()  # its reconnect delay has grown during the outage: a fresh one, subscribed at once
        rig.sub = Subscriber(rig.broker, client_id=f"attack-{rig.workdir.name}-2")
        came = _wait(lambda: rig.sub.inbox.count() >= 20, REDELIVER_LIMIT_S)
        end_process(next(p for n, p in rig.procs.items if n == "spectro-sim"))  # no new predictions: settle

        def produced() -> int:
            return int(rig.counters().get("predictions", 0))

        def settled() -> bool:
            n, c = rig.sub.inbox.count(), produced()
            time.sleep(2.5)  # metrics come every second
            return c > 0 and produced() == c and rig.sub.inbox.count() == n
        _wait(settled, STEP_S)
        alive = rig.daemon is not None and rig.daemon.poll() is None
        made, got = produced(), rig.sub.inbox.count()
        counted = rig.outbox_losses()
        c = rig.counters()
        other = sum(v for k, v in c.items() if k.startswith(("frames_rejected", "frames_dropped", "messages_")))
        other += c.get("dark_frames", 0) + c.get("white_frames", 0)
        newest_kept = rig.gaps() <= other  # the delivered predictions run without a gap up to the last
        g = rig.gauges()
        lost = max(0, made - got)
        unexplained = max(0, lost - counted)
        held = bool(came and alive and rig.restarts == 0 and newest_kept and unexplained == 0)
        return Result("disk_full", held, unexplained, {
            "tmpfs_mb": size_mb, "disk_free_after_fill_b": free_after_fill, "disk_free_min_b": free_min,
            "full_policy": "drop_oldest", "daemon_alive": alive, "daemon_restarts": rig.restarts,
            "delivered_after_broker_back": came, "predictions_made": made, "predictions_delivered": got,
            "newest_kept": newest_kept, "seq_gaps": rig.gaps(), "losses_counted": counted,
            "outbox_evicted": int(g.get("outbox_evicted", 0)),
            "outbox_store_errors": int(g.get("outbox_store_errors", 0)),
            "lost_outbox_unavailable": int(g.get("mqtt_lost_outbox_unavailable", 0)),
            "outbox_full_alert_seen": any("outbox_full" in s.get("alerts", []) for s in rig.sub.inbox.status)})


def reload_flood(rig: Rig, reloads: int) -> Result:
    rig.start_daemon(rig.start_sim(("--drift-at", "60")))  # bundle.min_reload_interval_s: the default

    def raised() -> set[str]:
        return {a for a in rig.status().get("alerts", []) if a.startswith("drift:")}

    if not _wait(lambda: bool(raised()), 120.0):
        return Result("reload_flood", None, detail={"skipped": "no drift alert was raised to silence"})
    before = raised()
    answers = []
    for i in range(reloads):
        rid = f"flood-{i}"
        rig.publish("reload_bundle", rig.command("reload_bundle", {"path": str(rig.bundle)}, rid, signed=True))
        _wait(lambda r=rid: rig.response(r) is not None, 5.0)  # type: ignore[misc]
        answers.append(rig.response(rid))
        time.sleep(3.0)
    with rig.sub.inbox.lock:
        cleared = {f"drift:{e['detector']}" for e in rig.sub.inbox.drift if e.get("event") == "cleared"}
    still = raised()
    silenced = sorted(before - still - cleared)
    return Result("reload_flood", not silenced, rig.unexplained(), {
        "reloads": reloads, "alerts_before": sorted(before), "alerts_after": sorted(still),
        "cleared_with_event": sorted(before & cleared), "silenced": silenced,
        "reloads_executed": sum(1 for a in answers if a is not None and a.get("ok"))})


def command_flood(rig: Rig, flood: int) -> Result:
    """A flood of unsigned reloads, then a signed command, with the default command settings (unsigned commands
    are refused by authentication before they queue)."""
    rig.start_daemon(rig.start_sim())
    rig.flowing()
    with rig.attacker() as c:
        infos = [c.publish(f"{rig.base}/cmd/reload_bundle",
                           rig.command("reload_bundle", {"path": str(rig.bundle)}, f"f{i}"), qos=1)
                 for i in range(flood)]
        for info in infos:
            info.wait_for_publish(timeout=60)
    rig.publish("set_integration_time", rig.command("set_integration_time", {"integration_time_us": 5000},
                                                    "authenticated", signed=True))
    _wait(lambda: rig.response("authenticated") is not None, 30.0)
    answer = rig.response("authenticated")
    ran = bool(answer and answer.get("ok"))
    _wait(lambda: bool(rig.counters()), 5.0)
    counters = rig.counters()
    return Result("command_flood", ran, rig.unexplained(), {
        "flood": flood, "authenticated_answer": answer and {"ok": answer.get("ok"), "error": answer.get("error")},
        "commands_refused": counters.get("commands_refused", 0),
        "commands_dropped": counters.get("commands_dropped", 0)})


#: Size of the sparse file the first command of the unsigned flood asks to reload: hashing it keeps the daemon's
#: command thread busy while the rest of the flood arrives, so the queue is full when the signed command comes
#: (deterministically, not by a race with that thread; as tests/edge/test_command_flood.py does).
SLOW_FILE_BYTES = 1 << 30


def command_flood_unsigned(rig: Rig, flood: int) -> Result:
    """The flood the command lanes protect against: ``commands.require_auth = false`` stated explicitly, so the
    unsigned reloads queue.  The first asks for a large sparse file (slow to hash), the rest arrive while it is
    read, then a signed reload.  Holds if the signed command ran before every queued unsigned one and each
    command of the flood was answered or counted (ran, dropped, or its refusal response suppressed)."""
    with open(rig.workdir / "slow.bin", "wb") as fh:  # sparse: costs no disk, but hashing reads every byte
        fh.truncate(SLOW_FILE_BYTES)
    rig.start_daemon(rig.start_sim(), commands={"enabled": True, "hmac_key_path": str(rig.key), "require_auth": False})
    rig.flowing()
    topic = f"{rig.base}/cmd/reload_bundle"
    with rig.attacker() as c:
        c.publish(topic, rig.command("reload_bundle", {"path": "slow.bin"}, "u-0"), qos=1).wait_for_publish(60)
        if not _wait(lambda: "command reload_bundle (request u-0)" in rig.daemon_log(), STEP_S):
            return Result("command_flood_unsigned", False, detail={"error": "the slow reload never started"})
        infos = [c.publish(topic, rig.command("reload_bundle", {"path": str(rig.bundle)}, f"u-{i}"), qos=1)
                 for i in range(1, flood)]
        infos.append(c.publish(topic, rig.command("reload_bundle", {"path": str(rig.bundle)}, "signed", signed=True),
                               qos=1))
        for info in infos:
            info.wait_for_publish(timeout=60)
    _wait(lambda: rig.response("signed") is not None, STEP_S)
    answer = rig.response("signed")

    def answered() -> int:
        with rig.sub.inbox.lock:
            return len({r.get("request_id") for r in rig.sub.inbox.responses
                        if str(r.get("request_id", "")).startswith("u-")})

    def accounted() -> int:
        return answered() + rig.counters().get("command_responses_suppressed", 0)

    def settled() -> bool:
        k = rig.counters()
        return k.get("commands_reload_bundle", 0) + k.get("commands_dropped", 0) >= flood + 1

    _wait(lambda: accounted() >= flood and settled(), 2 * STEP_S)
    with rig.sub.inbox.lock:
        order = [r.get("request_id") for r in rig.sub.inbox.responses if r.get("ok")]
    counters = rig.counters()
    first = next((rid for rid in order if rid != "u-0"), None)  # u-0 may finish (refused or run) first
    ran = bool(answer and answer.get("ok"))
    held = ran and first == "signed" and accounted() == flood and settled()
    return Result("command_flood_unsigned", held, rig.unexplained(), {
        "flood": flood, "require_auth": False,
        "signed_answer": answer and {"ok": answer.get("ok"), "error": answer.get("error")},
        "signed_ran_first": first == "signed", "flood_accounted": accounted(),
        "commands_run": counters.get("commands_reload_bundle", 0),
        "commands_dropped": counters.get("commands_dropped", 0),
        "command_responses_suppressed": counters.get("command_responses_suppressed", 0)})


class _HostileDevice:
    """The device end of a pty pair, written frame by frame (the simulator's first session, then altered)."""

    def __init__(self) -> None:
        from firmware_bridge.frames import Dark, Reference, Status
        from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer

        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        dev = VirtualSpectrometer.from_config(SimulatorConfig(seed=0, synthetic_samples=500, synthetic_channels=256))
        start = dev.session_start()
        self.status = next(f for f in start if isinstance(f, Status))
        self.refs = [f for f in start if isinstance(f, (Dark, Reference))]
        self.spectra = [dev.stream_next()[0] for _ in range(20)]
        self.seq = 0
        self._stop = threading.Event()
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        import select

        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    os.read(self.master, 4096)
                except OSError:
                    return

    def send(self, *frames: Any) -> None:
        from firmware_bridge.codec import encode

        for f in frames:
            os.write(self.master, encode(f))

    def session(self, **status: Any) -> list[int]:
        """A STATUS (with ``status`` changed), the references and 20 spectra; returns the spectra's seqs."""
        import dataclasses

        self.send(dataclasses.replace(self.status, **status))
        for f in self.refs:
            self.send(dataclasses.replace(f, seq=self.seq))
            self.seq += 1
        seqs = []
        for s in self.spectra:
            self.send(dataclasses.replace(s, seq=self.seq))
            seqs.append(self.seq)
            self.seq += 1
        return seqs

    def close(self) -> None:
        self._stop.set()
        self._drain.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


def _sane_start(rig: Rig, dev: _HostileDevice) -> list[int]:
    """Start the daemon on ``dev``, wait until it is online, play one sane session; returns its spectra's seqs."""
    rig.start_daemon(dev.path)
    _wait(lambda: rig.status().get("state") == "online", STEP_S)
    time.sleep(1.0)
    sane = dev.session()
    _wait(lambda: set(sane) <= set(rig.predictions()), STEP_S)
    return sane


def hostile_status(rig: Rig) -> Result:
    dev = _HostileDevice()
    try:
        sane = _sane_start(rig, dev)
        hostile = dev.session(wavelength_coeffs_nm=(900.0, 1e308, 1e308)) + dev.session(pixel_count=1)
        _wait(lambda: rig.counters().get("spectra_in", 0) >= 60, STEP_S)
        preds = rig.predictions()
        ok_on_hostile = sorted(s for s in hostile if s in preds and preds[s].get("quality") == "ok")
        counters = rig.counters()
        refused = counters.get("device_status_refused", 0)
        return Result("hostile_status", refused >= 2 and not ok_on_hostile, 0, {
            "status_refused": refused, "spectra_after_hostile_status": len(hostile),
            "predicted_ok_on_hostile": len(ok_on_hostile),
            "rejected_device_status_invalid": counters.get("frames_rejected_device_status_invalid", 0),
            "sane_predicted": len(set(sane) & set(preds))})
    finally:
        dev.close()


#: Device text that would forge a log line and clear an operator's terminal if logged as sent (finding 7).
FORGED_DEVICE_ID = "X\nCRITICAL forged\x1b[2J"
#: A forged sequence number (finding 7): counted as lost frames it would add 4.29e9 to ``frames_lost_seq_gap``.
FORGED_SEQ = 0xFFFFFFF0
#: Age of the stale command, seconds: above ``commands.max_age_s`` (60) and within the clock skew (300).
STALE_AGE_S = 120.0


def forged_frames(rig: Rig) -> Result:
    """A device id with a newline and an ANSI escape in STATUS, then a spectrum with seq 0xFFFFFFF0.  Holds if the
    log has neither the raw escape nor a line the device wrote, the jump is counted as a resynchronisation
    (``seq_jumps``) and not as billions of lost frames, and the daemon stays up."""
    dev = _HostileDevice()
    try:
        _sane_start(rig, dev)
        dev.session(device_id=FORGED_DEVICE_ID)
        import dataclasses

        dev.send(dataclasses.replace(dev.spectra[0], seq=FORGED_SEQ))
        _wait(lambda: rig.counters().get("spectra_in", 0) >= 41, STEP_S)
        time.sleep(2.0)  # the next metrics message
        counters = rig.counters()
        log_text = rig.daemon_log()
        forged_line = any(line.startswith("CRITICAL forged") for line in log_text.splitlines())
        lost_gap = counters.get("frames_lost_seq_gap", 0)
        alive = rig.daemon is not None and rig.daemon.poll() is None
        held = alive and rig.restarts == 0 and "\x1b" not in log_text and not forged_line \
            and lost_gap < FORGED_SEQ // 2 and counters.get("seq_jumps", 0) >= 1
        return Result("forged_frames", held, 0, {
            "raw_escape_in_log": "\x1b" in log_text, "forged_log_line": forged_line,
            "frames_lost_seq_gap": lost_gap, "seq_jumps": counters.get("seq_jumps", 0), "daemon_alive": alive,
            "daemon_restarts": rig.restarts})
    finally:
        dev.close()


def stale_retained(rig: Rig) -> Result:
    """A signed command left retained on the broker (delivered at every subscribe), then a signed command issued
    2 minutes ago (one that waited in a persistent session), then a fresh signed one as the control.  Holds if
    neither of the first two ran, each was refused and counted, and the fresh one ran."""
    args = {"integration_time_us": 5000}
    rig.publish("set_integration_time", rig.command("set_integration_time", args, "retained", signed=True),
                retain=True)
    rig.start_daemon(rig.start_sim())
    rig.flowing()
    rig.publish("set_integration_time", rig.command("set_integration_time", args, "stale", signed=True,
                                                    issued_at_unix_s=time.time() - STALE_AGE_S))
    rig.publish("set_integration_time", rig.command("set_integration_time", args, "fresh", signed=True))
    _wait(lambda: all(rig.response(r) is not None for r in ("retained", "stale", "fresh")), STEP_S)
    answers = {r: rig.response(r) for r in ("retained", "stale", "fresh")}
    _wait(lambda: rig.counters().get("commands_refused_stale", 0) >= 1, 5.0)
    counters = rig.counters()
    ok = {r: bool(a and a.get("ok")) for r, a in answers.items()}
    held = not ok["retained"] and not ok["stale"] and ok["fresh"] \
        and counters.get("commands_refused_retained", 0) >= 1 and counters.get("commands_refused_stale", 0) >= 1
    return Result("stale_retained", held, rig.unexplained(), {
        "answers": {r: (None if a is None else {"ok": a.get("ok"), "error": a.get("error")})
                    for r, a in answers.items()},
        "retained_ran": ok["retained"], "stale_ran": ok["stale"], "fresh_ran": ok["fresh"],
        "commands_refused_retained": counters.get("commands_refused_retained", 0),
        "commands_refused_stale": counters.get("commands_refused_stale", 0)})


# ---------------------------------------------------------------------------------------------------- run
def run_attacks(names: tuple[str, ...], bundle: Path, workdir: Path, *, size_mb: int = 64, flood: int = 200,
                reloads: int = 5, tmpfs_mb: int = 2, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``names`` (each on its own rig under ``workdir``) and return the report (the JSON's content)."""
    steps: dict[str, Callable[[Rig], Result]] = {
        "oversized": lambda r: oversized(r, size_mb, "5"),
        "oversized_mqtt311": lambda r: oversized(r, size_mb, "3.1.1"), "unauthenticated": unauthenticated,
        "disk_full": lambda r: disk_full(r, tmpfs_mb), "reload_flood": lambda r: reload_flood(r, reloads),
        "command_flood": lambda r: command_flood(r, flood),
        "command_flood_unsigned": lambda r: command_flood_unsigned(r, flood), "hostile_status": hostile_status,
        "forged_frames": forged_frames, "stale_retained": stale_retained}
    results: list[Result] = []
    for name in names:
        if name not in steps:
            raise HarnessError(f"expected attacks among {list(ATTACKS)}, got {name!r}")
        echo(f"attack {name} ...")
        t0 = time.monotonic()
        rig = Rig(workdir / name, bundle)
        try:
            result = steps[name](rig)
        except HarnessError as exc:
            result = Result(name, False, detail={"error": str(exc)})
        finally:
            rig.close()
        result.detail["wall_s"] = round(time.monotonic() - t0, 1)
        results.append(result)
    ran = [r for r in results if r.held is not None]
    # The slowest redelivery of the oversized attacks run (None: none ran, or one never delivered again).
    over = [r.detail.get("redeliver_after_oversized_s") for r in results if r.name.startswith("oversized")]
    return {
        "attacks": [r.to_dict() for r in results],
        "all_held": bool(ran) and all(r.held for r in ran),
        "predictions_lost_unallowed": sum(r.lost for r in results),
        "redeliver_after_oversized_s": max(over) if over and None not in over else None,
    }


def table(report: Mapping[str, Any]) -> str:
    lines = ["| attack | held | lost | detail |", "|---|---|---|---|"]
    for a in report["attacks"]:
        held = "skipped" if a["held"] is None else ("yes" if a["held"] else "**no**")
        detail = ", ".join(f"{k}={v}" for k, v in a["detail"].items() if k not in ("answers", "note"))
        lines.append(f"| {a['name']} | {held} | {a['lost']} | {detail} |")
    lines.append(f"\nall held: {report['all_held']}; predictions lost (not allowed): "
                 f"{report['predictions_lost_unallowed']}; redelivery after the oversized message: "
                 f"{report['redeliver_after_oversized_s']} s")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated subset of: " + ", ".join(ATTACKS))
    p.add_argument("--size-mb", type=int, default=64, help="size of the oversized command message")
    p.add_argument("--flood", type=int, default=200, help="unauthenticated reloads before the authenticated command")
    p.add_argument("--reloads", type=int, default=5, help="reloads of the bundle in service, one every 3 s")
    p.add_argument("--tmpfs-mb", type=int, default=2, help="size of the outbox's filesystem in the disk-full attack")
    p.add_argument("--bundle", type=Path, help="bundle to serve (default: the demo model, trained once and cached)")
    p.add_argument("--json", type=Path, help="write the report here (and the table as PATH.md)")


def run(args: argparse.Namespace) -> int:
    bundle = args.bundle or ensure_trained(repo_root() / "examples" / "demo.toml", echo=lambda s: None).bundle
    names = tuple(n.strip() for n in args.attacks.split(",") if n.strip())
    with tempfile.TemporaryDirectory(prefix="spectro-attack-") as tmp:
        report = run_attacks(names, Path(bundle), Path(tmp), size_mb=args.size_mb, flood=args.flood,
                             reloads=args.reloads, tmpfs_mb=args.tmpfs_mb)
    text = table(report)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        Path(f"{args.json}.md").write_text(text + "\n", encoding="utf-8")
    return 0
