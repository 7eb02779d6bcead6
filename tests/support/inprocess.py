"""A daemon that is built but not started, whose frames the test hands to its inference stage on its own thread,
as the inference thread does: in micro-batches of INFERENCE_BATCH_MAX (one outbox commit each) or one at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from edge.bundle import load_bundle
from edge.daemon import INFERENCE_BATCH_MAX, Daemon, _Received
from tests.support.daemon import RecordingLink, edge_config

__all__ = ["NoDevice", "count_batches", "feed", "inprocess_daemon"]


class NoDevice:
    """A transport for a daemon whose frames are handed to it directly: commands to the device are recorded."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, frame: Any) -> None:
        self.sent.append(frame)


def inprocess_daemon(tmp: Path, bundle: Path, **config: Any) -> tuple[Daemon, RecordingLink]:
    """A daemon (not started) in the new folder ``tmp`` serving ``bundle`` (``config``: more edge_config settings),
    whose inference stage this thread drives; its recording link."""
    tmp.mkdir()
    link = RecordingLink()
    cfg = edge_config(tmp, port_url="loop://", bundle_path=bundle, **config)
    daemon = Daemon(cfg, load_bundle(bundle), NoDevice(), link, clock=lambda: 1_700_000_000.0)
    daemon.outbound.inference_ident = threading.get_ident()
    return daemon, link


def count_batches(daemon: Daemon) -> list[int]:
    """The sizes of the engine's batches from now on (the list fills as the daemon runs)."""
    sizes: list[int] = []
    process_many = daemon.engine.process_many

    def spy(spectra: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(spectra))
        return process_many(spectra, *args, **kwargs)

    daemon.engine.process_many = spy  # type: ignore[method-assign]  # counts the batches
    return sizes


def feed(daemon: Daemon, frames: list[Any], *, batched: bool = True) -> None:
    """Hand ``frames`` to the daemon's inference stage as its inference thread does: micro-batches of
    INFERENCE_BATCH_MAX frames, one outbox commit each, or (``batched=False``) one frame at a time."""
    items = [_Received(f, 0) for f in frames]
    if batched:
        for start in range(0, len(items), INFERENCE_BATCH_MAX):
            daemon.outbound.begin_batch()
            daemon.inference.handle_batch(items[start:start + INFERENCE_BATCH_MAX])
            daemon.outbound.flush_batch()
    else:
        for item in items:
            daemon.inference.handle(item)
