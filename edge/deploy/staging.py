"""One transfer staged on disk: the received chunks in a sparse file, what has arrived in a small JSON state file
beside it, so that a transfer survives a restart of the daemon or of the sender and resumes where it stopped.

Files, in the staging directory (``<state dir>/deploy/``)::

    transfer.json         {"format": 1, "transfer_id", "size", "sha256", "chunk_size", "chunks", "name",
                          "received": [indices], "state", "error", "updated_unix_s"}
    transfer.part         the bundle being received (sparse; written at index * chunk_size)
    <transfer_id>.spectrolite   the whole, once its SHA-256 matched (what is installed)

Each chunk is written and flushed to disk before the state file names it (written to a temporary file, then
renamed), so the state never claims a chunk the part file does not hold.

>>> import tempfile, hashlib
>>> from edge.deploy.args import DeployBeginArgs, DeployChunkArgs
>>> store = StagingArea(Path(tempfile.mkdtemp()))
>>> data = bytes(range(256)) * 3
>>> begin = DeployBeginArgs("t-00000001", len(data), hashlib.sha256(data).hexdigest(), 512, 2, None)
>>> store.begin(begin, max_bytes=10_000, max_chunk_bytes=1024, now=0.0).missing_ranges()
[[0, 2]]
>>> t = store.write_chunk(DeployChunkArgs("t-00000001", 1, hashlib.sha256(data[512:]).hexdigest(), data[512:]), 0.0)
>>> t.missing_ranges(), StagingArea(store.directory).load().missing_ranges()  # survives a restart
([[0, 1]], [[0, 1]])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.deploy.args import DeployBeginArgs, DeployChunkArgs
from edge.errors import EdgeError
from edge.jsonstrict import loads_strict

__all__ = ["DeployError", "Transfer", "StagingArea", "TransferState", "MAX_MISSING_RANGES"]

log = logging.getLogger("edge.deploy")

#: Ranges of missing chunks listed in one answer (the sender sends those, then asks again).
MAX_MISSING_RANGES = 64
_STATE = "transfer.json"
_PART = "transfer.part"
_FORMAT = 1


class DeployError(EdgeError, ValueError):
    """A deploy step refused: the message says what was expected and what came."""


class TransferState:
    """The states of a transfer (the status's ``deploy.state``)."""

    RECEIVING = "receiving"  #: chunks are arriving
    COMPLETE = "complete"  #: every chunk is there and the whole matches its SHA-256; not yet installed
    INSTALLED = "installed"  #: verified, signed by a trusted key, through the reload guards, in service
    REFUSED = "refused"  #: the whole, its signature or a reload guard refused it (``error`` says why)


@dataclass
class Transfer:
    """What is known of the transfer in progress (or the last one)."""

    transfer_id: str
    size: int
    sha256: str
    chunk_size: int
    chunks: int
    name: str | None
    received: set[int] = field(default_factory=set)
    state: str = TransferState.RECEIVING
    error: str | None = None
    updated_unix_s: float = 0.0

    def same_as(self, args: DeployBeginArgs) -> bool:
        return (self.transfer_id, self.size, self.sha256, self.chunk_size, self.chunks) == (
            args.transfer_id, args.size, args.sha256, args.chunk_size, args.chunks)

    def chunk_length(self, index: int) -> int:
        """Bytes chunk ``index`` must hold (the last one is shorter)."""
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def missing_ranges(self, limit: int = MAX_MISSING_RANGES) -> list[list[int]]:
        """The chunks not yet received as ``[start, end)`` ranges, the first ``limit`` of them."""
        ranges: list[list[int]] = []
        start = None
        for i in range(self.chunks + 1):
            absent = i < self.chunks and i not in self.received
            if absent and start is None:
                start = i
            elif not absent and start is not None:
                ranges.append([start, i])
                start = None
                if len(ranges) >= limit:
                    break
        return ranges

    def to_json(self) -> dict[str, Any]:
        return {"format": _FORMAT, "transfer_id": self.transfer_id, "size": self.size, "sha256": self.sha256,
                "chunk_size": self.chunk_size, "chunks": self.chunks, "name": self.name,
                "received": sorted(self.received), "state": self.state, "error": self.error,
                "updated_unix_s": self.updated_unix_s}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Transfer:
        if d.get("format") != _FORMAT:
            raise ValueError(f"expected format {_FORMAT}, got {d.get('format')!r}")
        t = cls(transfer_id=str(d["transfer_id"]), size=int(d["size"]), sha256=str(d["sha256"]),
                chunk_size=int(d["chunk_size"]), chunks=int(d["chunks"]),
                name=None if d.get("name") is None else str(d["name"]),
                received={int(i) for i in d["received"]}, state=str(d["state"]),
                error=None if d.get("error") is None else str(d["error"]), updated_unix_s=float(d["updated_unix_s"]))
        if any(not 0 <= i < t.chunks for i in t.received):
            raise ValueError("a received chunk index out of range")
        return t

    def summary(self) -> dict[str, Any]:
        """The status's ``deploy.transfer``."""
        return {"transfer_id": self.transfer_id, "name": self.name, "size": self.size, "sha256": self.sha256,
                "chunks": self.chunks, "received": len(self.received), "state": self.state, "error": self.error,
                "updated_unix_s": self.updated_unix_s}


class StagingArea:
    """The staging directory of one device: at most one transfer at a time (a new one replaces the old).

    Not thread-safe: the daemon's housekeeping thread is its only user.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.current: Transfer | None = None

    @property
    def part_path(self) -> Path:
        return self.directory / _PART

    def bundle_path(self, transfer: Transfer) -> Path:
        """Where the verified whole of ``transfer`` lies once complete."""
        return self.directory / f"{transfer.transfer_id}.spectrolite"

    def load(self) -> Transfer | None:
        """The transfer left by a previous run (None when there is none or its state cannot be read: then the
        staging directory is cleared and the sender starts over)."""
        path = self.directory / _STATE
        if not path.is_file():
            return None
        try:
            t = Transfer.from_json(loads_strict(path.read_text(encoding="utf-8")))
            if t.state == TransferState.RECEIVING and self.part_path.stat().st_size != t.size:
                raise ValueError(f"{_PART} holds {self.part_path.stat().st_size} bytes, expected {t.size}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("discarding the staged transfer in %s: %s", self.directory, exc)
            self._clear()
            return None
        self.current = t
        return t

    def begin(self, args: DeployBeginArgs, *, max_bytes: int, max_chunk_bytes: int, now: float) -> Transfer:
        """Start transfer ``args`` (replacing any other) or, when it is the one in progress, resume it.

        Raises
        ------
        DeployError
            Too big, chunks too big, or the id of the transfer in progress with other parameters.
        OSError
            The staging file cannot be made (disk full, ...).
        """
        if args.size > max_bytes:
            raise DeployError(f"deploy_begin.args.size: expected at most {max_bytes} bytes (deploy.max_bundle_bytes), "
                              f"got {args.size}")
        if args.chunk_size > max_chunk_bytes:
            raise DeployError(f"deploy_begin.args.chunk_size: expected at most {max_chunk_bytes} bytes "
                              f"(deploy.max_chunk_bytes), got {args.chunk_size}")
        t = self.current
        if t is not None and t.transfer_id == args.transfer_id:
            if not t.same_as(args):
                raise DeployError(f"deploy_begin.args: transfer {args.transfer_id} is in progress with size {t.size}, "
                                  f"sha256 {t.sha256[:16]}..., chunk_size {t.chunk_size}; expected the same again "
                                  "to resume it, or a new transfer_id")
            if t.state in (TransferState.RECEIVING, TransferState.COMPLETE) or (
                    t.state == TransferState.INSTALLED and self.bundle_path(t).is_file()):
                return t
        self._clear()
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.part_path, "wb") as f:
            f.truncate(args.size)  # sparse: the disk is used as chunks arrive
        t = Transfer(args.transfer_id, args.size, args.sha256, args.chunk_size, args.chunks, args.name,
                     updated_unix_s=now)
        self.current = t
        self._save()
        return t

    def write_chunk(self, args: DeployChunkArgs, now: float) -> Transfer:
        """Check one chunk (transfer, index, length, SHA-256) and write it; a chunk already there is not rewritten.

        Raises
        ------
        DeployError
            No such transfer in progress, index out of range, wrong length or SHA-256 mismatch (nothing written).
        """
        t = self._receiving(args.transfer_id, "deploy_chunk")
        if args.index >= t.chunks:
            raise DeployError(f"deploy_chunk.args.index: expected 0..{t.chunks - 1}, got {args.index}")
        want = t.chunk_length(args.index)
        if len(args.data) != want:
            raise DeployError(f"deploy_chunk {args.index}: expected {want} bytes, got {len(args.data)}")
        digest = hashlib.sha256(args.data).hexdigest()
        if digest != args.sha256:
            raise DeployError(f"deploy_chunk {args.index}: SHA-256 mismatch: the message says {args.sha256[:16]}..., "
                              f"the data hashes to {digest[:16]}... (corrupted); send it again")
        if args.index in t.received:
            return t
        with open(self.part_path, "r+b") as f:
            f.seek(args.index * t.chunk_size)
            f.write(args.data)
            f.flush()
            os.fsync(f.fileno())
        t.received.add(args.index)
        t.updated_unix_s = now
        self._save()
        return t

    def complete(self, transfer_id: str, now: float) -> tuple[Transfer, Path]:
        """Check that every chunk is there and the whole matches the transfer's SHA-256; return the bundle file.

        Raises
        ------
        DeployError
            Chunks missing (the transfer goes on), or the whole does not match (the transfer is refused: start
            over).
        """
        t = self.current
        if t is not None and t.transfer_id == transfer_id and t.state in (TransferState.COMPLETE,
                                                                          TransferState.INSTALLED):
            path = self.bundle_path(t)
            if path.is_file():
                return t, path
        t = self._receiving(transfer_id, "deploy_commit")
        if len(t.received) != t.chunks:
            ranges = t.missing_ranges(8)
            raise DeployError(f"deploy_commit: expected all {t.chunks} chunks, got {len(t.received)}; missing "
                              f"{', '.join(f'{a}..{b - 1}' for a, b in ranges)}{' ...' if len(ranges) == 8 else ''}")
        h = hashlib.sha256()
        with open(self.part_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != t.sha256:
            self.finish(TransferState.REFUSED, f"the whole hashes to {h.hexdigest()[:16]}..., expected "
                        f"{t.sha256[:16]}... (deploy_begin.sha256)", now)
            t.received.clear()
            self._save()
            raise DeployError(f"deploy_commit: SHA-256 of the whole mismatch: expected {t.sha256}, got "
                              f"{h.hexdigest()}; every chunk is discarded, send the transfer again")
        path = self.bundle_path(t)
        os.replace(self.part_path, path)
        t.state = TransferState.COMPLETE
        t.updated_unix_s = now
        self._save()
        return t, path

    def finish(self, state: str, error: str | None, now: float) -> None:
        """Record the outcome of the transfer in progress."""
        if self.current is None:
            return
        self.current.state = state
        self.current.error = error
        self.current.updated_unix_s = now
        self._save()

    # ------------------------------------------------------------------------------------------ internals

    def _receiving(self, transfer_id: str, where: str) -> Transfer:
        t = self.current
        if t is None or t.transfer_id != transfer_id:
            now = f"transfer {t.transfer_id} ({t.state})" if t is not None else "no transfer"
            raise DeployError(f"{where}.args.transfer_id: expected the transfer in progress, got {transfer_id!r} "
                              f"({now}); send deploy_begin first")
        if t.state != TransferState.RECEIVING:
            raise DeployError(f"{where}: transfer {transfer_id} is {t.state}"
                              f"{': ' + t.error if t.error else ''}; send deploy_begin to start it again")
        return t

    def _save(self) -> None:
        assert self.current is not None
        tmp = self.directory / (_STATE + ".tmp")
        tmp.write_text(json.dumps(self.current.to_json()), encoding="utf-8")
        os.replace(tmp, self.directory / _STATE)

    def _clear(self) -> None:
        self.current = None
        if not self.directory.is_dir():
            return
        for p in self.directory.iterdir():
            if p.is_file() and (p.name.startswith("transfer.") or p.suffix == ".spectrolite"):
                try:
                    p.unlink()
                except OSError as exc:  # pragma: no cover - a read-only state dir
                    log.warning("cannot remove %s: %s", p, exc)
