"""``spectro-fleet push``: one bundle to one device or a deployment group, in signed chunks, resumable.

The transfer id is derived from the bundle's SHA-256, so pushing the same file again (after the sender or a device
restarted, or ``--max-chunks`` stopped a run) resumes: ``deploy_begin`` answers which chunks each device still
misses, and only those are sent.  Chunks go out with at most ``window`` unanswered; a chunk a device did not
acknowledge is found missing by the next ``deploy_begin`` and sent again.  Every device's outcome is reported:
``installed`` (the response to ``deploy_commit`` names the model now served), ``refused`` (why) or ``no answer``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge.deploy.args import chunk_count
from edge.fleet.client import Device, FleetClient, FleetError, Response

__all__ = ["Bundle", "Outcome", "Pusher", "DEFAULT_CHUNK_BYTES", "DEFAULT_WINDOW"]

log = logging.getLogger("spectro-fleet")

#: Chunk size unless ``--chunk-size`` says otherwise (the device's ``deploy.max_chunk_bytes`` is 32 KiB by default).
DEFAULT_CHUNK_BYTES = 16_384
#: Chunks sent and not yet acknowledged by every target, at most (the device queues 64 signed commands).
DEFAULT_WINDOW = 8
#: Rounds of "ask what is missing, send it" without progress before a device is given up.
MAX_IDLE_ROUNDS = 3


@dataclass(frozen=True)
class Bundle:
    """The file pushed: its bytes, SHA-256 and chunking."""

    path: Path
    data: bytes
    sha256: str
    chunk_size: int

    @classmethod
    def read(cls, path: Path, chunk_size: int) -> Bundle:
        data = path.read_bytes()
        if not data:
            raise FleetError(f"{path}: expected a bundle, got an empty file")
        return cls(path, data, hashlib.sha256(data).hexdigest(), chunk_size)

    @property
    def chunks(self) -> int:
        return chunk_count(len(self.data), self.chunk_size)

    @property
    def transfer_id(self) -> str:
        """The same file, the same id: a new push resumes the old one."""
        return f"b{self.chunk_size}-{self.sha256[:32]}"

    def chunk(self, index: int) -> bytes:
        return self.data[index * self.chunk_size:(index + 1) * self.chunk_size]


@dataclass
class Outcome:
    """What became of the push on one device."""

    device_id: str
    state: str = "pending"  #: pending, installed, refused, no answer, incomplete
    detail: str = ""
    missing: set[int] = field(default_factory=set)
    resumed_with: int = 0  #: chunks the device already had when this run began

    def as_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "state": self.state, "detail": self.detail,
                "missing_chunks": len(self.missing), "already_there": self.resumed_with}


def _expand(ranges: Any, chunks: int) -> set[int]:
    out: set[int] = set()
    for pair in ranges if isinstance(ranges, list) else []:
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, int) for x in pair):
            out.update(range(max(0, pair[0]), min(chunks, pair[1])))
    return out


class Pusher:
    """Push one :class:`Bundle` to ``devices``, through their own topics or a group topic.

    Parameters
    ----------
    client : FleetClient
        Connected, with the HMAC key.
    bundle : Bundle
        The file.
    devices : list of Device
        The targets: the members of ``group``, or devices each sent to on its own topic.
    group : str or None
        Send to ``<prefix>/group/<group>/cmd/...`` (once for every member) instead of each device's own topic.
    window : int
        Chunks in flight at most.
    ack_timeout_s : float
        How long to wait for a step's answers.
    commit_timeout_s : float
        How long to wait for ``deploy_commit`` (verification and self-test on the device).
    progress : callable(sent, total)
        Told after every chunk acknowledged.
    commit_args : mapping, optional
        More arguments of ``deploy_commit`` (``probation``: :mod:`edge.deploy.probation`).
    """

    def __init__(self, client: FleetClient, bundle: Bundle, devices: list[Device], *, group: str | None = None,
                 window: int = DEFAULT_WINDOW, ack_timeout_s: float = 10.0, commit_timeout_s: float = 120.0,
                 progress: Callable[[int, int], None] | None = None,
                 commit_args: dict[str, Any] | None = None) -> None:
        if not devices:
            raise FleetError("expected at least one device to push to, got none")
        self.client = client
        self.bundle = bundle
        self.devices = {d.device_id: d for d in devices}
        self.group = group
        self.window = max(1, window)
        self.ack_timeout_s = ack_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self.progress = progress
        self.commit_args = dict(commit_args or {})
        self.outcomes = {d: Outcome(d) for d in self.devices}
        self.chunks_sent = 0
        self.chunks_acknowledged = 0  #: chunk answers from a device that lacked the chunk
        self._seq = 0

    # ------------------------------------------------------------------------------------------ steps

    def run(self, *, max_chunks: int | None = None) -> dict[str, Outcome]:
        """Begin (or resume), send what is missing, commit; ``max_chunks`` stops after that many chunks sent
        (the devices keep what they got: the next push resumes)."""
        b = self.bundle
        log.info("pushing %s (%d bytes, sha256 %s, %d chunk(s) of %d bytes) to %s", b.path.name, len(b.data),
                 b.sha256[:16], b.chunks, b.chunk_size,
                 f"group {self.group} ({len(self.devices)} device(s))" if self.group else ", ".join(self.devices))
        first = True
        idle = 0
        while True:
            self._begin(first)
            first = False
            active = self._active()
            if not active:
                break
            need = sorted(set().union(*(self.outcomes[d].missing for d in active)))
            if not need:
                break
            if max_chunks is not None and self.chunks_sent >= max_chunks:
                for d in active:
                    self.outcomes[d].state = "incomplete"
                    self.outcomes[d].detail = (f"stopped after {self.chunks_sent} chunk(s) (--max-chunks); "
                                               f"{len(self.outcomes[d].missing)} still missing: push again to resume")
                return self.outcomes
            budget = None if max_chunks is None else max_chunks - self.chunks_sent
            acknowledged = self.chunks_acknowledged
            self._send_chunks(need[:budget] if budget is not None else need, active)
            idle = 0 if self.chunks_acknowledged > acknowledged else idle + 1
            if idle >= MAX_IDLE_ROUNDS:
                for d in active:
                    self.outcomes[d].state = "no answer"
                    self.outcomes[d].detail = (f"no chunk acknowledged in {MAX_IDLE_ROUNDS} rounds; "
                                               f"{len(self.outcomes[d].missing)} chunk(s) missing")
                break
        self._commit()
        return self.outcomes

    def _rid(self, what: str) -> str:
        self._seq += 1
        return f"{self.bundle.transfer_id[-12:]}-{what}-{self._seq}"[:64]

    def _active(self) -> list[str]:
        return [d for d, o in self.outcomes.items() if o.state == "pending"]

    def _send(self, name: str, args: dict[str, Any], rid: str, targets: list[str] | None = None) -> None:
        if self.group is not None:
            self.client.send(name, args, request_id=rid, group=self.group)
        else:  # each device on its own topic (the active ones: a device done or given up gets no more)
            for d in targets if targets is not None else self._active():
                self.client.send(name, args, request_id=rid, device=self.devices[d])

    def _begin(self, first: bool) -> None:
        b = self.bundle
        active = self._active()
        if not active:
            return
        rid = self._rid("begin")
        self._send("deploy_begin", {"transfer_id": b.transfer_id, "size": len(b.data), "sha256": b.sha256,
                                    "chunk_size": b.chunk_size, "chunks": b.chunks, "name": _name(b.path)}, rid)
        got = self.client.wait_responses(rid, set(active), self.ack_timeout_s)
        self.client.forget(rid)
        for d in active:
            o = self.outcomes[d]
            r = got.get(d)
            if r is None:
                if first:
                    o.state, o.detail = "no answer", f"no answer to deploy_begin within {self.ack_timeout_s:g} s"
                continue
            if not r.ok:
                o.state, o.detail = "refused", f"deploy_begin: {r.error}"
                continue
            o.missing = _expand(r.result.get("missing"), b.chunks)
            received = int(r.result.get("received", 0))
            if first:
                o.resumed_with = received
                if received:
                    log.info("%s: resuming: %d of %d chunk(s) already there", d, received, b.chunks)

    def _send_chunks(self, indices: list[int], active: list[str]) -> None:
        """Send ``indices`` with at most ``window`` unanswered; acknowledged chunks leave each device's missing set."""
        b = self.bundle
        pending: dict[str, tuple[int, float]] = {}  # request id -> (index, sent at)
        targets = set(active)

        def collect(block: bool) -> None:
            for rid, (index, sent) in list(pending.items()):
                left = max(0.0, sent + self.ack_timeout_s - time.monotonic()) if block else 0.0
                got = self.client.wait_responses(rid, targets, left)
                self._take_chunk_answers(index, got)
                if set(got) >= targets or time.monotonic() - sent >= self.ack_timeout_s:
                    pending.pop(rid)
                    self.client.forget(rid)
                if block:
                    return  # one waited for: make room for the next

        for index in indices:
            while len(pending) >= self.window:
                collect(block=True)
            data = b.chunk(index)
            rid = self._rid(f"c{index}")
            self._send("deploy_chunk", {"transfer_id": b.transfer_id, "index": index,
                                        "sha256": hashlib.sha256(data).hexdigest(),
                                        "data_b64": base64.b64encode(data).decode("ascii")}, rid)
            pending[rid] = (index, time.monotonic())
            self.chunks_sent += 1
            collect(block=False)
        while pending:
            collect(block=True)

    def _take_chunk_answers(self, index: int, got: dict[str, Response]) -> None:
        for d, r in got.items():
            o = self.outcomes[d]
            if r.ok:
                if index in o.missing:
                    o.missing.discard(index)
                    self.chunks_acknowledged += 1
                    if self.progress is not None:
                        self.progress(self.bundle.chunks - len(o.missing), self.bundle.chunks)
            elif o.state == "pending":
                log.warning("%s: chunk %d refused: %s", d, index, r.error)

    def _commit(self) -> None:
        ready = [d for d in self._active() if not self.outcomes[d].missing]
        if not ready:
            return
        rid = self._rid("commit")
        self._send("deploy_commit", {"transfer_id": self.bundle.transfer_id, **self.commit_args}, rid, ready)
        got = self.client.wait_responses(rid, set(ready), self.commit_timeout_s)
        self.client.forget(rid)
        for d in ready:
            o = self.outcomes[d]
            r = got.get(d)
            if r is None:
                o.state, o.detail = "no answer", f"no answer to deploy_commit within {self.commit_timeout_s:g} s"
            elif not r.ok:
                o.state, o.detail = "refused", str(r.error)
            else:
                model = r.result.get("model") or {}
                was = r.result.get("previous_model") or {}
                o.state = "installed"
                o.detail = (f"serving {model.get('id')} {model.get('version')}"
                            + (f" (was {was.get('id')} {was.get('version')})" if was else "")
                            + (" (already in service)" if r.result.get("unchanged") else ""))


def _name(path: Path) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in path.name)
    return keep[:128] or "bundle"
