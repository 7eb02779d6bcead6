"""The rig of one attack: broker, subscriber, device and a supervised ``spectro-edge run`` (restarted after 2 s, as
``deploy/spectrolite-edge.service`` does), what it saw (:class:`Rig`), and one attack's outcome (:class:`Result`)."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    DEVICE,
    Broker,
    Processes,
    Subscriber,
    daemon_command,
    read_first_line,
    simulator_command,
    start_broker,
    write_edge_config,
)
from benchmarks.harness.processes import wait_for

__all__ = ["RATE_HZ", "REDELIVER_LIMIT_S", "RESTART_S", "STEP_S", "Result", "Rig", "wait_for"]

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
        return wait_for(lambda: self.sub.inbox.count() >= have + n, STEP_S)

    def gaps(self) -> int:
        """Sequence numbers missing between the first and the last prediction received."""
        seqs = sorted(self.predictions())
        return (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0

    def unexplained(self) -> int:
        """Sequence gaps the daemon's counters do not explain: reference frames (a capture takes sequence numbers
        too), rejected, dropped or evicted frames and messages, each counted in its metrics."""
        wait_for(lambda: bool(self.counters()), 5.0)
        c = self.counters()
        explained = sum(v for k, v in c.items() if k.startswith(("frames_rejected", "frames_dropped", "outbox_evict",
                                                                     "outbox_refus", "lost_outbox", "messages_")))
        explained += c.get("dark_frames", 0) + c.get("white_frames", 0) + self.outbox_losses()
        return max(0, self.gaps() - explained)
