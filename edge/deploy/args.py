"""The arguments of the four ``deploy_*`` commands, validated (pure: no I/O).

===================  ========================================================================================
``deploy_begin``     ``{"transfer_id", "size", "sha256", "chunk_size", "chunks", "name"?}``: a transfer of
                     ``size`` bytes whose SHA-256 is ``sha256``, cut in ``chunks`` chunks of ``chunk_size``
                     bytes (the last one shorter); the same ``transfer_id`` again resumes it
``deploy_chunk``     ``{"transfer_id", "index", "sha256", "data_b64"}``: chunk ``index`` (from 0), its SHA-256
                     and its bytes in base64
``deploy_commit``    ``{"transfer_id", "probation"?}``: every chunk is there: check the whole, its signature,
                     and install it; ``probation`` (:mod:`edge.deploy.probation`) judges the new bundle over its
                     first spectra and returns to the bundle that served before when it fails
``deploy_rollback``  ``{"transfer_id"?}``: return to the bundle that served before the last transfer installed
                     (that one when given; it must still be the one in service)
===================  ========================================================================================

>>> parse_deploy_args("deploy_commit", {"transfer_id": "t-0123456789"})
DeployCommitArgs(transfer_id='t-0123456789', probation=None)
>>> parse_deploy_args("deploy_begin", {"transfer_id": "t-0123456789", "size": 1000, "sha256": "0" * 64,
...                                    "chunk_size": 256, "chunks": 3})
Traceback (most recent call last):
...
edge.errors.CommandError: deploy_begin.args.chunks: expected 4 (size 1000 in chunks of 256 bytes), got 3
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Union

from edge.deploy.probation import ProbationRule, parse_probation
from edge.errors import CommandError
from edge.validation import require_fields, require_int, require_str

__all__ = ["DEPLOY_COMMANDS", "DeployArgs", "DeployBeginArgs", "DeployChunkArgs", "DeployCommitArgs",
           "DeployRollbackArgs", "chunk_count",
           "parse_deploy_args", "chunk_payload_limit", "MAX_TRANSFER_BYTES", "MAX_CHUNK_BYTES", "MIN_CHUNK_BYTES"]

#: The commands of a transfer, in the order a sender uses them, and the return from an installed one.
DEPLOY_COMMANDS = ("deploy_begin", "deploy_chunk", "deploy_commit", "deploy_rollback")
#: Bounds the parser applies whatever the configuration says (``[deploy]`` narrows them).
MAX_TRANSFER_BYTES = 1_073_741_824
MAX_CHUNK_BYTES = 262_144
MIN_CHUNK_BYTES = 256
#: Bytes of a signed ``deploy_chunk`` payload beyond its base64 data (the body's other fields, the envelope).
CHUNK_PAYLOAD_OVERHEAD = 2048

_TRANSFER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass(frozen=True)
class DeployBeginArgs:
    """Start (or resume) transfer ``transfer_id``: ``size`` bytes, SHA-256 ``sha256``, ``chunks`` of ``chunk_size``."""

    transfer_id: str
    size: int
    sha256: str
    chunk_size: int
    chunks: int
    name: str | None


@dataclass(frozen=True)
class DeployChunkArgs:
    """Chunk ``index`` of transfer ``transfer_id``: its bytes and their SHA-256 as the sender computed it."""

    transfer_id: str
    index: int
    sha256: str
    data: bytes

    def __repr__(self) -> str:  # the bytes are not worth printing
        return f"DeployChunkArgs(transfer_id={self.transfer_id!r}, index={self.index}, bytes={len(self.data)})"


@dataclass(frozen=True)
class DeployCommitArgs:
    """Every chunk of ``transfer_id`` has arrived: verify the whole and install it (on ``probation`` when given)."""

    transfer_id: str
    probation: ProbationRule | None = None


@dataclass(frozen=True)
class DeployRollbackArgs:
    """Return to the bundle that served before the last transfer installed (``transfer_id`` when given)."""

    transfer_id: str | None = None


DeployArgs = Union[DeployBeginArgs, DeployChunkArgs, DeployCommitArgs, DeployRollbackArgs]


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of ``chunk_size`` bytes needed for ``size`` bytes.

    >>> chunk_count(1000, 256), chunk_count(1024, 256)
    (4, 4)
    """
    return -(-size // chunk_size)


def chunk_payload_limit(max_chunk_bytes: int) -> int:
    """Largest signed ``deploy_chunk`` payload for chunks of at most ``max_chunk_bytes`` bytes (base64 plus
    :data:`CHUNK_PAYLOAD_OVERHEAD`).

    >>> chunk_payload_limit(32_768)
    45740
    """
    return 4 * chunk_count(max_chunk_bytes, 3) + CHUNK_PAYLOAD_OVERHEAD


def _int(where: str, value: Any, lo: int, hi: int) -> int:
    return require_int(value, where, CommandError, minimum=lo, maximum=hi)


def _match(where: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    return require_str(value, where, CommandError, pattern=pattern, pattern_doc=what)


def parse_deploy_args(name: str, args: dict[str, Any]) -> DeployArgs:
    """Validate the ``args`` of deploy command ``name``.

    Raises
    ------
    CommandError
        An unknown or missing argument, or a value out of its bounds, named.
    """
    where = f"{name}.args"
    tid_doc = "8-64 characters from A-Z a-z 0-9 _ -"
    hex_doc = "64 lower-case hexadecimal characters (SHA-256)"
    if name == "deploy_begin":
        require_fields(args, where, CommandError, ("transfer_id", "size", "sha256", "chunk_size", "chunks"), ("name",))
        size = _int(f"{where}.size", args["size"], 1, MAX_TRANSFER_BYTES)
        chunk_size = _int(f"{where}.chunk_size", args["chunk_size"], MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
        chunks = _int(f"{where}.chunks", args["chunks"], 1, MAX_TRANSFER_BYTES)
        if chunks != chunk_count(size, chunk_size):
            raise CommandError(f"{where}.chunks: expected {chunk_count(size, chunk_size)} (size {size} in chunks of "
                               f"{chunk_size} bytes), got {chunks}")
        raw_name = args.get("name")
        return DeployBeginArgs(
            transfer_id=_match(f"{where}.transfer_id", args["transfer_id"], _TRANSFER_ID_RE, tid_doc),
            size=size, sha256=_match(f"{where}.sha256", args["sha256"], _HEX64_RE, hex_doc),
            chunk_size=chunk_size, chunks=chunks,
            name=None if raw_name is None else _match(f"{where}.name", raw_name, _NAME_RE,
                                                      "1-128 characters from A-Z a-z 0-9 . _ -"))
    if name == "deploy_chunk":
        require_fields(args, where, CommandError, ("transfer_id", "index", "sha256", "data_b64"))
        text = args["data_b64"]
        if not isinstance(text, str) or not text or len(text) > 4 * chunk_count(MAX_CHUNK_BYTES, 3):
            raise CommandError(f"{where}.data_b64: expected 1-{MAX_CHUNK_BYTES} bytes in base64, got "
                               f"{type(text).__name__} of length {len(text) if isinstance(text, str) else '?'}")
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise CommandError(f"{where}.data_b64: expected base64 (RFC 4648, with padding), got invalid text "
                               f"({exc})") from None
        return DeployChunkArgs(
            transfer_id=_match(f"{where}.transfer_id", args["transfer_id"], _TRANSFER_ID_RE, tid_doc),
            index=_int(f"{where}.index", args["index"], 0, MAX_TRANSFER_BYTES),
            sha256=_match(f"{where}.sha256", args["sha256"], _HEX64_RE, hex_doc), data=data)
    if name == "deploy_commit":
        require_fields(args, where, CommandError, ("transfer_id",), ("probation",))
        rule = None if args.get("probation") is None else parse_probation(f"{where}.probation", args["probation"])
        return DeployCommitArgs(transfer_id=_match(f"{where}.transfer_id", args["transfer_id"], _TRANSFER_ID_RE,
                                                   tid_doc), probation=rule)
    if name == "deploy_rollback":
        require_fields(args, where, CommandError, (), ("transfer_id",))
        tid = args.get("transfer_id")
        return DeployRollbackArgs(None if tid is None else _match(f"{where}.transfer_id", tid, _TRANSFER_ID_RE,
                                                                  tid_doc))
    raise CommandError(f"command: expected one of {', '.join(DEPLOY_COMMANDS)}, got {name!r}")
