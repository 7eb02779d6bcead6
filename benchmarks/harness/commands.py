"""Command lines and configs of the loop's processes: ``spectro-sim --pty``, ``spectro-edge run`` and its TOML."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness.errors import HarnessError
from benchmarks.harness.settings import DEVICE, LINE, SITE, START_TIMEOUT_S, TOPIC_PREFIX
from edge.config_example import render_config

__all__ = ["daemon_command", "frames_sent", "read_first_line", "simulator_command", "write_edge_config"]


def simulator_command(link: Path, *, count: int, rate_hz: float, dataset: Path | None = None, seed: int = 0,
                      synthetic: tuple[int, int] | None = None, linger_s: float = 1.0, exit_when_done: bool = True,
                      extra: Sequence[str] = ()) -> list[str]:
    """``spectro-sim --pty`` streaming ``count`` spectra at ``rate_hz`` from ``dataset`` (or synthetic spectra);
    it exits ``linger_s`` after the last one unless ``exit_when_done`` is false (then it keeps the port open)."""
    done = ["--exit-when-done", "--linger", f"{linger_s:g}"] if exit_when_done else []
    cmd = [sys.executable, "-m", "firmware_bridge.cli", "--pty", "--link", str(link), "--count", str(count),
           "--rate", f"{rate_hz:g}", "--seed", str(seed), *done, "-v"]
    if dataset is not None:
        cmd += ["--dataset", str(dataset)]
    elif synthetic is not None:
        cmd += ["--synthetic-samples", str(synthetic[0]), "--synthetic-channels", str(synthetic[1])]
    return cmd + list(extra)


def daemon_command(config: Path) -> list[str]:
    """``spectro-edge run --config CONFIG``, the command line of ``deploy/spectrolite-edge.service``'s ``ExecStart``:
    the ``spectro-edge`` console script installed beside this interpreter, or ``python -m edge.cli run`` (the
    same ``main``) where the package is not installed."""
    script = Path(sys.executable).parent / "spectro-edge"
    program = [str(script)] if script.is_file() else [sys.executable, "-m", "edge.cli"]
    return [*program, "run", "--config", str(config)]


def write_edge_config(path: Path, *, port_url: str, bundle: Path, mqtt_port: int,
                      forward_annotations: bool | None = True, log_level: str = "INFO",
                      bundle_options: Mapping[str, Any] | None = None, **sections: Mapping[str, Any]) -> Path:
    """The daemon's TOML (:func:`edge.config_example.render_config`) for a harness run or an end-to-end test.

    Defaults: the harness identity, the given serial port and bundle (no watch), the local broker at QoS 1, an
    outbox beside ``path``, commands off, metrics every second; ``sections`` override keys per section
    (``bundle_options`` those of ``[bundle]``, whose name the bundle's path takes).  ``forward_annotations`` None
    leaves the key out (the daemon's default); an ``mqtt`` section with ``brokers`` replaces ``host`` and ``port``.
    """
    workdir = path.parent
    device: dict[str, Any] = {"site": SITE, "line": LINE, "device_id": DEVICE}
    if forward_annotations is not None:
        device["forward_annotations"] = forward_annotations
    data: dict[str, dict[str, Any]] = {
        "device": device,
        "serial": {"port_url": port_url, "read_timeout_s": 0.05, "reconnect_min_delay_s": 0.05,
                   "reconnect_max_delay_s": 0.5},
        "bundle": {"path": str(bundle), "watch": False, **(bundle_options or {})},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "qos": 1, "client_id": f"spectrolite-{workdir.name}",
                 "clean_session": True, "topic_prefix": TOPIC_PREFIX, "reconnect_min_delay_s": 1,
                 "reconnect_max_delay_s": 2},
        "outbox": {"path": str(workdir / "outbox.sqlite"), "drain_rate_msgs_per_s": 0.0, "flush_timeout_s": 10.0},
        "commands": {"enabled": False},
        "metrics": {"period_s": 1.0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    if "brokers" in data["mqtt"]:
        del data["mqtt"]["host"], data["mqtt"]["port"]
    text = render_config({"log_level": log_level, **data}, comment="spectrolite edge daemon configuration "
                         "(spectro-edge run --config FILE), written by benchmarks.harness")
    path.write_text(text, encoding="utf-8")
    return path


def read_first_line(proc: subprocess.Popen[bytes], what: str, timeout_s: float = START_TIMEOUT_S, *,
                    log_path: Path | None = None) -> str:
    """The first stdout line of ``proc`` (e.g. the simulator's pty path), within ``timeout_s``; the error quotes
    the last lines of ``log_path`` (where the process writes its stderr), if given."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:  # stdout closed: the process is ending
                try:
                    proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    pass
                break
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0].decode().strip()
        elif proc.poll() is not None:
            break
    code = proc.poll()
    said = ""
    if log_path is not None and log_path.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        said = f"; its log {log_path} ends: " + " | ".join(tail) if tail else ""
    if code is None:
        raise HarnessError(f"{what} printed no first line within {timeout_s:g} s or closed its output{said}")
    raise HarnessError(f"{what} exited with code {code} before printing its first line{said}")


def frames_sent(sim_log: Path) -> int | None:
    """Spectra the simulator reports having streamed (``simulator stopped: N spectra`` in its ``-v`` log)."""
    try:
        found = re.findall(r"simulator stopped: (\d+) spectra", sim_log.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None
