"""Where an Optuna study of the CNN recipe search lives: a SQLite file in the output folder, or an RDB URL that
several ``spectro-train search`` workers share (:mod:`trainer.search`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["open_storage", "resolve_storage"]

#: Seconds a SQLite writer waits for another worker's lock.
_SQLITE_TIMEOUT_S = 60
#: Heartbeat of running trials in an RDB storage: a worker that dies leaves a trial marked failed after 2 beats.
_HEARTBEAT_S = 60


def resolve_storage(storage: str, out_dir: str | Path) -> tuple[str, str]:
    """``(url, kind)``: a URL as given (kind = its scheme, e.g. ``postgresql``), or a SQLite file relative to
    ``out_dir`` (kind ``sqlite``)."""
    if "://" in storage:
        scheme = storage.split("://", 1)[0].split("+", 1)[0].lower()
        return storage, scheme
    path = Path(storage)
    if not path.is_absolute():
        path = Path(out_dir) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}", "sqlite"


def open_storage(url: str) -> Any:
    """The Optuna RDB storage at ``url`` (SQLite: writers wait for another worker's lock; a heartbeat fails a dead
    worker's running trial)."""
    import warnings

    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
    with warnings.catch_warnings():  # heartbeat_interval is marked experimental; it is what fails a dead worker's trial
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=_HEARTBEAT_S, **kwargs)
