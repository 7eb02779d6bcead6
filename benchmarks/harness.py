"""The whole loop on one machine, started as production starts it: broker, simulator, ``spectro-edge run``, subscriber.

One harness for the demo (``spectro-bench demo``), the benchmarks (``spectro-bench loop``) and the end-to-end tests:

- :func:`ensure_trained` trains a training config with ``spectro-train fit`` in a child process (TensorFlow never
  enters the caller) and caches the result under a key made of the config's SHA-256 (and the trainer's sources');
- :func:`stream_rows` picks the rows a loop streams (a test split of a config, or column selectors on a dataset)
  and writes them as the ``.npz`` that ``spectro-sim --dataset`` reads, with the bundle's targets as ``y`` in the
  bundle's order, so the simulator's ANNOTATION frames carry the reference value of every prediction;
- :func:`start_broker` starts ``mosquitto`` on a free local port, or the embedded ``amqtt`` broker (an install
  requirement) when no mosquitto is installed;
- :func:`simulator_command` is ``spectro-sim --pty`` (the production simulator's command line);
- :func:`write_edge_config` writes the daemon's TOML in the form ``spectro-edge config --example`` prints, and
  :func:`daemon_command` is ``spectro-edge run --config`` (``python -m edge.cli run``);
- :class:`Subscriber` is a paho-mqtt client collecting predictions (deduplicated by ``seq``), drift alerts and the
  retained status;
- :func:`run_loop` streams once through all of them and returns what arrived (:class:`LoopRun`).

Every process is started through :class:`Processes` and ended by its own handle (SIGTERM, then SIGKILL after a
grace period); nothing here ends a process it did not start.

``python -m benchmarks.harness --embedded-broker PORT`` runs the embedded broker (what :func:`start_broker` starts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "Broker",
    "HarnessError",
    "LoopRun",
    "Processes",
    "Stream",
    "Subscriber",
    "TrainedModel",
    "cache_key",
    "config_digest",
    "daemon_command",
    "default_cache_dir",
    "end_process",
    "ensure_trained",
    "find_mosquitto",
    "load_training_config",
    "run_loop",
    "simulator_command",
    "start_broker",
    "stream_rows",
    "write_edge_config",
]

#: Identity of the daemon in every harness run (the MQTT topic levels).
SITE, LINE, DEVICE = "bench", "line-1", "sim-01"
TOPIC_PREFIX = "spectrolite"
#: Liveness deadlines (a part that never gets there is a failure with a message, not a figure), seconds.
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
TRAIN_TIMEOUT_S = 3600.0
#: After the simulator exits, a loop ends when no prediction arrived for this long (or all arrived), seconds.
IDLE_END_S = 4.0
#: Dark and white levels (counts) of noise-free raw frames made from absorbance (a 16-bit detector).
DARK_COUNTS = 1000.0
WHITE_COUNTS = 60000.0


class HarnessError(RuntimeError):
    """A part of the loop could not be set up or did not do its job (the message says which and why)."""


def repo_root() -> Path:
    """Folder holding ``benchmarks/`` (the checkout, or site-packages when installed)."""
    return Path(__file__).resolve().parents[1]


def default_cache_dir() -> Path:
    """``$SPECTROLITE_CACHE``, else ``$XDG_CACHE_HOME/spectrolite`` (``~/.cache/spectrolite`` by default)."""
    env = os.environ.get("SPECTROLITE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "spectrolite"


def child_env(**extra: str) -> dict[str, str]:
    """Environment of the child processes: unbuffered output, one BLAS thread, the checkout on PYTHONPATH."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------------- processes
def end_process(proc: subprocess.Popen[Any] | None, grace_s: float = STOP_GRACE_S) -> int | None:
    """SIGTERM ``proc`` (one this harness started), wait ``grace_s``, then SIGKILL; returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
    return int(proc.returncode)


class Processes:
    """Child processes of one run, each with its log file; :meth:`stop_all` ends them in reverse order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._logs: list[IO[bytes]] = []

    def start(self, name: str, cmd: Sequence[str], log_path: Path, *, stdout: Any = subprocess.DEVNULL,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``cmd`` with stderr into ``log_path`` (stdout: DEVNULL unless given, e.g. ``subprocess.PIPE``)."""
        fh = open(log_path, "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(fh)
        proc = subprocess.Popen(list(cmd), stdout=stdout, stderr=fh, env=dict(env) if env else child_env())
        self.items.append((name, proc))
        log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))
        return proc

    def stop_all(self) -> None:
        """End every process started here (reverse order) and close the logs; idempotent."""
        for _, proc in reversed(self.items):
            end_process(proc)
        for _, proc in self.items:
            if proc.stdout is not None:
                proc.stdout.close()
        for fh in self._logs:
            fh.close()
        self.items, self._logs = [], []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _wait_port(host: str, port: int, proc: subprocess.Popen[Any], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-1500:] if log_path.is_file() else ""
            raise HarnessError(f"{what} exited with code {proc.returncode} at start: {tail.strip()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError(f"{what} did not listen on {host}:{port} within {START_TIMEOUT_S:g} s")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (chosen by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------------- broker
def find_mosquitto() -> str | None:
    """Path of a ``mosquitto`` executable on PATH or in the usual sbin folders, or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin")


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
        lines = [f"listener {port} {host}", "allow_anonymous true", "persistence false", "log_dest stderr",
                 "log_type error", "log_type warning", "max_queued_messages 1000000",
                 f"set_tcp_nodelay {'true' if tcp_nodelay else 'false'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to the 'mosquitto' user
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log_path = workdir / "mosquitto.log"
        proc = procs.start("mosquitto", [exe, "-c", str(conf)], log_path)
        _wait_port(host, port, proc, "mosquitto", log_path)
        return Broker("mosquitto", host, port, proc.pid, f"mosquitto ({exe}) on {host}:{port}")
    import importlib.util

    if importlib.util.find_spec("amqtt") is None:
        raise HarnessError("expected mosquitto on PATH or the embedded broker (pip install amqtt), found neither")
    log_path = workdir / "amqtt.log"
    proc = procs.start("amqtt", [sys.executable, "-m", "benchmarks.harness", "--embedded-broker", str(port)],
                       log_path)
    _wait_port(host, port, proc, "the embedded amqtt broker", log_path)
    return Broker("amqtt", host, port, proc.pid, f"embedded amqtt broker on {host}:{port}")


def _run_embedded_broker(port: int) -> int:
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


# ---------------------------------------------------------------------------------------------------- training
def load_training_config(path: Path) -> dict[str, Any]:
    """The training config as a dict (TOML)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"expected a training config (TOML) at {path}, could not read it: {exc}") from exc


def config_digest(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of the config file's bytes (the cache key of its trained model)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise HarnessError(f"expected a training config at {path}, could not read it: {exc}") from exc


def trainer_digest() -> str:
    """First 8 hex digits of the SHA-256 over the trainer's sources (``trainer/**/*.py``), so that a cached model
    is retrained when the code that trained it changed (a ``git pull``), not only when its config did."""
    import importlib.util

    spec = importlib.util.find_spec("trainer")
    if spec is None or not spec.submodule_search_locations:
        return "none"
    h = hashlib.sha256()
    root = Path(next(iter(spec.submodule_search_locations)))
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:8]


def cache_key(config: Path) -> str:
    """``<config stem>-<config digest>-t<trainer digest>``: the folder name of a config's cached model."""
    config = Path(config)
    return f"{config.stem}-{config_digest(config)}-t{trainer_digest()}"


@dataclass(frozen=True)
class TrainedModel:
    """What ``spectro-train fit`` wrote for one config."""

    bundle: Path
    metrics: Path
    directory: Path
    cached: bool
    train_seconds: float | None


def _trained_in(directory: Path) -> tuple[Path, Path] | None:
    metrics = directory / "metrics.json"
    bundles = sorted(directory.glob("*.spectrolite"))
    if metrics.is_file() and len(bundles) == 1:
        return bundles[0], metrics
    return None


def train(config: Path, out_dir: Path, *, threads: int | None = None, echo: Callable[[str], None] | None = None,
          timeout_s: float = TRAIN_TIMEOUT_S) -> TrainedModel:
    """``spectro-train fit CONFIG --out OUT_DIR`` in a child process; its log goes to ``OUT_DIR/train.log``.

    ``echo`` receives the trainer's progress lines (epochs, conversion steps) as they come.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "trainer.cli", "fit", str(config), "--out", str(out_dir)]
    if threads:
        cmd += ["--threads", str(threads)]
    log_path = out_dir / "train.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=child_env(TF_CPP_MIN_LOG_LEVEL="3"))
        assert proc.stdout is not None
        try:
            deadline = time.monotonic() + timeout_s
            for raw in iter(proc.stdout.readline, b""):
                fh.write(raw)
                if echo is not None:
                    echo(raw.decode(errors="replace").rstrip())
                if time.monotonic() > deadline:
                    raise HarnessError(f"spectro-train fit {config} ran past {timeout_s:g} s (log: {log_path})")
            proc.wait()
        finally:
            end_process(proc)
            proc.stdout.close()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise HarnessError(f"spectro-train fit {config} failed with exit code {proc.returncode}:\n{tail}")
    found = _trained_in(out_dir)
    if found is None:
        raise HarnessError(f"expected spectro-train fit to write one .spectrolite and metrics.json in {out_dir}, "
                           f"found {sorted(p.name for p in out_dir.iterdir())}")
    return TrainedModel(found[0], found[1], out_dir, False, time.monotonic() - t0)


def ensure_trained(config: Path, cache_dir: Path | None = None, *, rebuild: bool = False, threads: int | None = None,
                   echo: Callable[[str], None] | None = None) -> TrainedModel:
    """The trained model of ``config``, from ``<cache>/trained/<cache_key(config)>/`` or trained there.

    A changed config (any byte) or a changed trainer gets a new key, so a cached model always belongs to the config
    and the trainer as they are now.
    """
    config = Path(config)
    directory = (cache_dir or default_cache_dir()) / "trained" / cache_key(config)
    found = None if rebuild else _trained_in(directory)
    if found is not None:
        return TrainedModel(found[0], found[1], directory, True, None)
    if directory.exists():
        shutil.rmtree(directory)
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = train(config, tmp, threads=threads, echo=echo)
    tmp.rename(directory)
    found = _trained_in(directory)
    assert found is not None
    return TrainedModel(found[0], found[1], directory, False, model.train_seconds)


# ---------------------------------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class Stream:
    """Rows a loop streams, as written for ``spectro-sim --dataset``."""

    path: Path  #: the ``.npz`` the simulator reads
    absorbance: np.ndarray  #: (n, p) the rows' spectra, decadic absorbance
    wavelengths: np.ndarray  #: (p,)
    y: np.ndarray  #: (n, k) reference values, the bundle's targets in its order
    target_names: tuple[str, ...]
    description: str  #: where the rows come from and how they were selected


def _dataset_of_config(cfg: Mapping[str, Any], base_dir: Path) -> tuple[dict[str, np.ndarray], str]:
    from firmware_bridge.synthetic import load_npz, make_synthetic_dataset

    data = cfg.get("data", {})
    synthetic = data.get("synthetic")
    if synthetic is not None:
        samples = int(synthetic.get("samples", 500))
        seed = int(synthetic.get("seed", 0))
        channels = int(synthetic.get("channels", 256))
        return (make_synthetic_dataset(samples, seed=seed, n_channels=channels),
                f"synthetic spectra (seed {seed}, {samples} samples, {channels} channels)")
    if "path" not in data:
        raise HarnessError("expected [data] path or [data] synthetic in the training config, found neither")
    path = Path(data["path"])
    path = path if path.is_absolute() else (base_dir / path).resolve()
    if not path.is_file() and os.environ.get("SPECTROLITE_DATASETS"):
        path = Path(os.environ["SPECTROLITE_DATASETS"]) / path.name
    if path.suffix != ".npz":
        raise HarnessError(f"expected an .npz dataset to stream, got {path}")
    return load_npz(path), str(path)


def selectors_of_test_set(cfg: Mapping[str, Any], name: str | None = None) -> tuple[str, dict[str, Any]]:
    """(name, column -> value) of a test set of ``[split.test]`` (the first one unless ``name`` is given)."""
    tests = cfg.get("split", {}).get("test", {})
    if not isinstance(tests, Mapping) or not tests:
        raise HarnessError("expected [split.test] in the training config to name the rows to stream, found none")
    if name is None:
        name = next(iter(tests))
    if name not in tests:
        raise HarnessError(f"expected a test set in {sorted(tests)}, got {name!r}")
    sel = tests[name]
    if not isinstance(sel, Mapping):
        raise HarnessError(f"expected [split.test] {name} to be column = value selectors, got {sel!r}")
    return str(name), dict(sel)


def select_rows(data: Mapping[str, np.ndarray], selectors: Mapping[str, Any]) -> np.ndarray:
    """Indices of the rows where every column equals its selector's value (a list of values: any of them)."""
    n = len(data["X"])
    keep = np.ones(n, dtype=bool)
    for col, value in selectors.items():
        if col not in data:
            raise HarnessError(f"expected a column {col!r} in the dataset to select rows, found {sorted(data)}")
        column = np.asarray(data[col])
        values = value if isinstance(value, (list, tuple)) else [value]
        hit = np.zeros(n, dtype=bool)
        for v in values:
            hit |= column.astype(str) == str(v) if column.dtype.kind in "USO" else column == v
        keep &= hit
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise HarnessError(f"expected rows matching {dict(selectors)}, found none")
    return rows


def parse_selectors(items: Sequence[str]) -> dict[str, Any]:
    """``["split=calibrate", "instrument=1"]`` -> ``{"split": "calibrate", "instrument": 1}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"expected a selector COLUMN=VALUE, got {item!r}")
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = value
    return out


def stream_rows(out: Path, data: Mapping[str, np.ndarray], rows: np.ndarray, target_names: Sequence[str],
                description: str, *, axis_unit: str = "nm") -> Stream:
    """Write ``rows`` of ``data`` as a dataset ``.npz`` whose ``y`` holds ``target_names`` in that order.

    ``axis_unit`` (``"nm"`` or ``"cm-1"``, the unit of ``data["wavelengths"]``; pass the bundle's
    ``input_contract.wavelength_unit``) is written into the file, so ``spectro-sim`` announces the axis in it."""
    names = [str(n) for n in np.asarray(data.get("target_names", [])).reshape(-1)]
    y_all = np.asarray(data["y"], dtype=np.float64).reshape(len(data["X"]), -1)
    cols = []
    for t in target_names:
        if t not in names:
            raise HarnessError(f"expected the bundle's target {t!r} among the dataset's targets {names}")
        cols.append(names.index(t))
    X = np.asarray(data["X"], dtype=np.float64)[rows]
    y = y_all[rows][:, cols]
    wl = np.asarray(data["wavelengths"], dtype=np.float64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, X=X, y=y, wavelengths=wl, target_names=np.array(list(target_names)), axis_unit=np.array(axis_unit))
    return Stream(out, X, wl, y, tuple(target_names), description)


def check_contract(bundle: Any, stream: Stream, *, sends: str = "counts") -> None:
    """Raise :class:`HarnessError` unless the bundle accepts what the simulator will send for ``stream``.

    Pixel count and wavelength range against the bundle's input contract, and the signal the simulator sends
    (``counts`` unless told otherwise) against the contract's ``frame_signal``.
    """
    from edge.errors import InputContractError

    contract = bundle.input_contract
    try:
        contract.check(int(stream.wavelengths.size), wavelengths=stream.wavelengths)
    except InputContractError as exc:
        raise HarnessError(f"the bundle {bundle.model_id} cannot serve these spectra: {exc} "
                           f"(the simulator streams {stream.description})") from exc
    if contract.frame_signal != sends:
        raise HarnessError(f"the bundle {bundle.model_id} expects {contract.frame_signal} frames, "
                           f"got a simulator sending {sends}")


def offline_inputs(bundle: Any, absorbance: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``absorbance`` rows as the bundle's raw input (noise-free counts with flat dark/white, or the signal itself)."""
    A = np.asarray(absorbance, dtype=np.float64)
    signal_kind = bundle.input_contract.frame_signal
    if signal_kind == "counts":
        dark = np.full(A.shape[1], DARK_COUNTS)
        white = np.full(A.shape[1], WHITE_COUNTS)
        return dark + (white - dark) * np.power(10.0, -A), {"dark": dark, "reference": white}
    if signal_kind == "reflectance":
        return np.power(10.0, -A), {}
    return A, {}


# ---------------------------------------------------------------------------------------------------- commands
def simulator_command(link: Path, *, count: int, rate_hz: float, dataset: Path | None = None, seed: int = 0,
                      synthetic: tuple[int, int] | None = None, linger_s: float = 1.0,
                      extra: Sequence[str] = ()) -> list[str]:
    """``spectro-sim --pty`` streaming ``count`` spectra at ``rate_hz`` from ``dataset`` (or synthetic spectra)."""
    cmd = [sys.executable, "-m", "firmware_bridge.cli", "--pty", "--link", str(link), "--count", str(count),
           "--rate", f"{rate_hz:g}", "--seed", str(seed), "--exit-when-done", "--linger", f"{linger_s:g}", "-v"]
    if dataset is not None:
        cmd += ["--dataset", str(dataset)]
    elif synthetic is not None:
        cmd += ["--synthetic-samples", str(synthetic[0]), "--synthetic-channels", str(synthetic[1])]
    return cmd + list(extra)


def daemon_command(config: Path) -> list[str]:
    """``spectro-edge run --config CONFIG``, the production entry point."""
    return [sys.executable, "-m", "edge.cli", "run", "--config", str(config)]


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))


def write_edge_config(path: Path, *, port_url: str, bundle: Path, mqtt_port: int, forward_annotations: bool = True,
                      log_level: str = "INFO", **sections: Mapping[str, Any]) -> Path:
    """The daemon's TOML, as ``spectro-edge config --example`` lays it out, for a harness run.

    Defaults: the harness identity, the given serial port and bundle (no watch), the local broker at QoS 1, an
    outbox beside ``path``, commands off, metrics every second; ``sections`` override keys per section.
    """
    workdir = path.parent
    data: dict[str, dict[str, Any]] = {
        "device": {"site": SITE, "line": LINE, "device_id": DEVICE, "forward_annotations": forward_annotations},
        "serial": {"port_url": port_url, "read_timeout_s": 0.05, "reconnect_min_delay_s": 0.05,
                   "reconnect_max_delay_s": 0.5},
        "bundle": {"path": str(bundle), "watch": False},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "qos": 1, "client_id": f"spectrolite-{workdir.name}",
                 "clean_session": True, "topic_prefix": TOPIC_PREFIX, "reconnect_min_delay_s": 1,
                 "reconnect_max_delay_s": 2},
        "outbox": {"path": str(workdir / "outbox.sqlite"), "drain_rate_msgs_per_s": 0.0, "flush_timeout_s": 10.0},
        "commands": {"enabled": False},
        "metrics": {"period_s": 1.0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    lines = ["# spectrolite edge daemon configuration (spectro-edge run --config FILE), written by benchmarks.harness",
             f"log_level = {_toml(log_level)}", ""]
    for name, values in data.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def read_first_line(proc: subprocess.Popen[bytes], what: str, timeout_s: float = START_TIMEOUT_S) -> str:
    """The first stdout line of ``proc`` (e.g. the simulator's pty path), within ``timeout_s``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0].decode().strip()
        elif proc.poll() is not None:
            break
    raise HarnessError(f"{what} printed no first line within {timeout_s:g} s (exit code {proc.poll()})")


def frames_sent(sim_log: Path) -> int | None:
    """Spectra the simulator reports having streamed (``simulator stopped: N spectra`` in its ``-v`` log)."""
    try:
        found = re.findall(r"simulator stopped: (\d+) spectra", sim_log.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


# ---------------------------------------------------------------------------------------------------- subscriber
@dataclass
class Inbox:
    """What the subscriber received (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    receipt_us: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    status: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)  #: command responses (``.../cmd/<name>/response``)

    def count(self) -> int:
        with self.lock:
            return len(self.predictions)


class Subscriber:
    """paho-mqtt 2.x client on ``<prefix>/<site>/<line>/<device>/#`` at QoS 1, keeping what arrives in :attr:`inbox`.

    ``on_prediction(body)`` and ``on_drift(body)`` are called from paho's thread for each new message.
    """

    def __init__(self, broker: Broker, *, qos: int = 1, on_prediction: Callable[[dict[str, Any]], None] | None = None,
                 on_drift: Callable[[dict[str, Any]], None] | None = None, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.inbox = Inbox()
        self.base = f"{TOPIC_PREFIX}/{SITE}/{LINE}/{DEVICE}"
        self._on_prediction = on_prediction
        self._on_drift = on_drift
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"spectrolite-harness-{os.getpid()}", clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{self.base}/#", qos=qos)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise HarnessError(f"the subscriber could not subscribe on {broker.description}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now_us = time.monotonic_ns() // 1000
        try:
            body = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return
        kind = msg.topic.rsplit("/", 1)[-1]
        inbox = self.inbox
        if kind == "prediction":
            seq = int(body["seq"])
            with inbox.lock:
                if seq in inbox.predictions:
                    inbox.duplicates += 1
                    return
                inbox.predictions[seq] = body
                inbox.receipt_us[seq] = now_us
            if self._on_prediction is not None:
                self._on_prediction(body)
        elif kind == "drift":
            with inbox.lock:
                inbox.drift.append(body)
            if self._on_drift is not None:
                self._on_drift(body)
        elif kind == "status":
            with inbox.lock:
                inbox.status.append(body)
        elif kind == "metrics":
            with inbox.lock:
                inbox.metrics = body
        elif kind == "response":
            with inbox.lock:
                inbox.responses.append(body)

    def reset(self) -> None:
        """Forget what arrived (between runs on one broker)."""
        with self.inbox.lock:
            lock = self.inbox.lock
            self.inbox = Inbox(lock=lock)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------------------------------------------- one loop
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
    device_path = read_first_line(sim, "spectro-sim")
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.harness --embedded-broker PORT``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__.splitlines()[0])
    p.add_argument("--embedded-broker", type=int, metavar="PORT", required=True,
                   help="serve MQTT with amqtt on 127.0.0.1:PORT until SIGTERM")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return _run_embedded_broker(args.embedded_broker)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
