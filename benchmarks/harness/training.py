"""Trained models for a harness run: ``spectro-train fit`` in a child process, cached by config and trainer digest.

TensorFlow never enters the caller; the cache key is made of the config's SHA-256 and the trainer's sources'.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.errors import HarnessError
from benchmarks.harness.processes import child_env, end_process
from benchmarks.harness.settings import TRAIN_TIMEOUT_S

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the tomli backport, an install requirement there
    import tomli as tomllib

__all__ = ["TrainedModel", "cache_key", "config_digest", "default_cache_dir", "ensure_trained", "load_training_config",
           "train", "trainer_digest"]


def default_cache_dir() -> Path:
    """``$SPECTROLITE_CACHE``, else ``$XDG_CACHE_HOME/spectrolite`` (``~/.cache/spectrolite`` by default)."""
    env = os.environ.get("SPECTROLITE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "spectrolite"


def load_training_config(path: Path) -> dict[str, Any]:
    """The training config as a dict (TOML)."""
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


def cache_key(config: Path, budget_min: float | None = None) -> str:
    """``<config stem>-<config digest>-t<trainer digest>``, with ``-b<budget>`` when a search budget overrides the
    config's (``spectro-train fit --budget-min``): the folder name of a config's cached model."""
    config = Path(config)
    budget = "" if budget_min is None else f"-b{budget_min:g}"
    return f"{config.stem}-{config_digest(config)}-t{trainer_digest()}{budget}"


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
          timeout_s: float = TRAIN_TIMEOUT_S, budget_min: float | None = None) -> TrainedModel:
    """``spectro-train fit CONFIG --out OUT_DIR [--budget-min M]`` in a child process; its log goes to
    ``OUT_DIR/train.log``.

    ``echo`` receives the trainer's progress lines (epochs, conversion steps) as they come.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "trainer.cli", "fit", str(config), "--out", str(out_dir)]
    if threads:
        cmd += ["--threads", str(threads)]
    if budget_min is not None:
        cmd += ["--budget-min", f"{budget_min:g}"]
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
                   echo: Callable[[str], None] | None = None, budget_min: float | None = None) -> TrainedModel:
    """The trained model of ``config``, from ``<cache>/trained/<cache_key(config)>/`` or trained there.

    A changed config (any byte) or a changed trainer gets a new key, so a cached model always belongs to the config
    and the trainer as they are now.
    """
    config = Path(config)
    directory = (cache_dir or default_cache_dir()) / "trained" / cache_key(config, budget_min)
    found = None if rebuild else _trained_in(directory)
    if found is not None:
        return TrainedModel(found[0], found[1], directory, True, None)
    if directory.exists():
        shutil.rmtree(directory)
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = train(config, tmp, threads=threads, echo=echo, budget_min=budget_min)
    tmp.rename(directory)
    found = _trained_in(directory)
    assert found is not None
    return TrainedModel(found[0], found[1], directory, False, model.train_seconds)
