"""The MQTT broker of a harness run: ``mosquitto`` on a free local port (configured by
:func:`benchmarks.harness.mosquitto.mosquitto_conf`, run as one of the run's :class:`Processes`), or the embedded
``amqtt`` broker."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness.errors import HarnessError
from benchmarks.harness.mosquitto import find_mosquitto, mosquitto_conf
from benchmarks.harness.processes import Processes, free_port, wait_port

__all__ = ["Broker", "run_embedded_broker", "start_broker"]


@dataclass(frozen=True)
class Broker:
    """A broker started by :func:`start_broker`."""

    kind: str  #: ``mosquitto`` or ``amqtt``
    host: str
    port: int
    pid: int
    description: str


def start_broker(procs: Processes, workdir: Path, choice: str = "auto", *, tcp_nodelay: bool = True,
                 port: int | None = None) -> Broker:
    """Start a broker on a free local port (or ``port``: the same one again after a stop): mosquitto (``auto`` when
    installed, or ``mosquitto``), else ``embedded``.

    mosquitto runs without persistence and with ``set_tcp_nodelay`` (see docs/mqtt.md); the embedded broker is
    :mod:`amqtt` in a child process (``python -m benchmarks.harness --embedded-broker PORT``).
    """
    if choice not in ("auto", "mosquitto", "embedded"):
        raise HarnessError(f"expected broker auto, mosquitto or embedded, got {choice!r}")
    host, port = "127.0.0.1", port or free_port()
    exe = find_mosquitto() if choice in ("auto", "mosquitto") else None
    if choice == "mosquitto" and exe is None:
        raise HarnessError("expected a mosquitto executable on PATH (apt install mosquitto), found none")
    if exe is not None:
        conf = workdir / "mosquitto.conf"
        lines = mosquitto_conf(port, host=host, log_dest="stderr", tcp_nodelay=tcp_nodelay) + ["allow_anonymous true"]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log_path = workdir / "mosquitto.log"
        proc = procs.start("mosquitto", [exe, "-c", str(conf)], log_path)
        wait_port(host, port, proc, "mosquitto", log_path)
        return Broker("mosquitto", host, port, proc.pid, f"mosquitto ({exe}) on {host}:{port}")
    import importlib.util

    if importlib.util.find_spec("amqtt") is None:
        raise HarnessError("expected mosquitto on PATH or the embedded broker (pip install amqtt), found neither")
    log_path = workdir / "amqtt.log"
    proc = procs.start("amqtt", [sys.executable, "-m", "benchmarks.harness", "--embedded-broker", str(port)],
                       log_path)
    wait_port(host, port, proc, "the embedded amqtt broker", log_path)
    return Broker("amqtt", host, port, proc.pid, f"embedded amqtt broker on {host}:{port}")


def run_embedded_broker(port: int) -> int:
    """Serve MQTT on 127.0.0.1:``port`` with amqtt until SIGTERM."""
    import asyncio

    from amqtt.broker import Broker as AmqttBroker

    async def serve() -> None:
        broker = AmqttBroker({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        })
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await broker.shutdown()

    asyncio.run(serve())
    return 0
