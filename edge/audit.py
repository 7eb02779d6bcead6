"""The device's audit trail: an append-only, hash-chained log of what the daemon did, and its verification.

API (stable; the daemon writes with :class:`AuditLog`, ``spectro-edge audit verify`` reads with :func:`verify`)::

    log = AuditLog.open(directory, max_bytes=1_048_576, keep_files=10)   # resumes the chain (recovers a torn line)
    log.append("bundle_load", {"verdict": "accepted", ...}) -> dict      # the record as written (fsynced)
    log.head -> str                                                       # hash of the last record (the anchor)
    verify(path, expect_head=None) -> VerifyReport                        # a file or the directory of rotated files

Record format: one JSON object per line (UTF-8, ``\\n``-terminated)::

    {"seq": 7, "time_utc": "2026-01-01T08:00:00.123456Z", "run": "3f9c2a1b7e6d5c40", "event": "command_result",
     "details": {...}, "prev": "<hash of record 6>", "hash": "<sha256 of this record without 'hash'>"}

``hash`` is the SHA-256 (hex) of the record's canonical JSON without ``hash`` (keys sorted, no spaces, ASCII), so
changing one byte of a record breaks its own hash, and deleting, inserting or reordering records breaks the
``prev`` of the next one.  ``seq`` counts from 1 across files and restarts; ``run`` is random per daemon start;
``time_utc`` is the device clock (only as trustworthy as that clock).  The first record ever has ``prev`` =
:data:`GENESIS`.

Files: ``audit-000001.jsonl``, ``audit-000002.jsonl``, ... in one directory; the highest number is written.  A file
that would grow past ``max_bytes`` is closed and the next one begins with a ``log_rotated`` record whose ``prev`` is
the last hash of the file before, so the chain runs unbroken across files; beyond ``keep_files`` files the oldest
are deleted (named in that ``log_rotated`` record), and a verification then starts at the oldest file kept
("anchored at seq N": what came before can no longer be checked).

Durability: every record is written with one ``write`` on an ``O_APPEND`` descriptor and ``fsync``ed before
:meth:`AuditLog.append` returns (audit events are rare: starts, reloads, commands, alerts).  A crash can leave at
most one torn last line; :meth:`AuditLog.open` cuts it off and records a ``log_recovered`` event naming the
file, offset, size and SHA-256 of what was cut, so nothing disappears without a trace.  A complete line is never
cut: one that does not verify stays for :func:`verify` to report.

What the chain proves: that the retained records are unchanged and complete between the anchor and the head, as
long as the head hash is known from elsewhere (the retained status's ``audit_head``, an export).  It does not
stop someone with write access to the files from rewriting the whole chain consistently, nor from cutting records
off the end; comparing the head with one exported earlier (``expect_head``) detects both.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> log = AuditLog.open(d, clock=lambda: 1767225600.0)
>>> log.append("daemon_started", {"software_version": "0.1.0"})["seq"]
1
>>> log.close()
>>> verify(d).ok
True
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.jsonstrict import loads_strict
from edge.validation import require_int, require_str

__all__ = [
    "AUDIT_FILE_RE",
    "GENESIS",
    "RECORD_KEYS",
    "AuditError",
    "AuditLog",
    "RefusalGate",
    "VerifyReport",
    "audit_files",
    "canonical_hash",
    "key_id",
    "verify",
]

#: ``prev`` of the very first record.
GENESIS = "0" * 64
#: Names of the log files; the number orders them.
AUDIT_FILE_RE = re.compile(r"^audit-(\d{6,})\.jsonl$")
#: The keys of every record, no more, no less.
RECORD_KEYS = frozenset({"seq", "time_utc", "run", "event", "details", "prev", "hash"})
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_EVENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class AuditError(EdgeError, ValueError):
    """The audit log cannot be opened or a record cannot be written as asked (a caller mistake or a broken log)."""


def canonical_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``record`` without its ``hash`` key.

    >>> canonical_hash({"b": 1, "a": "x", "hash": "ignored"}) == hashlib.sha256(b'{"a":"x","b":1}').hexdigest()
    True
    """
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def key_id(kind: str, public_bytes: bytes) -> str:
    """A short, stable name of a key for the audit trail: ``<kind>:<first 16 hex of SHA-256(public bytes)>``.

    Only for public keys (a hash of a shared secret would hand out a target for guessing it).

    >>> key_id("ed25519", bytes(32))
    'ed25519:66687aadf862bd77'
    """
    return f"{kind}:{hashlib.sha256(public_bytes).hexdigest()[:16]}"


def _utc(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _line(record: dict[str, Any]) -> bytes:
    """Set ``record["hash"]`` and return the record as one ASCII JSON line (raises TypeError/ValueError)."""
    record.pop("hash", None)
    record["hash"] = canonical_hash(record)
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def audit_files(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The log files of ``directory`` as ``(number, path)``, oldest first (other files are ignored)."""
    out = []
    for p in Path(directory).iterdir():
        m = AUDIT_FILE_RE.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def _file_name(number: int) -> str:
    return f"audit-{number:06d}.jsonl"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - a platform without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


class AuditLog:
    """Append-only, hash-chained JSON-lines log in a directory of rotated files (thread-safe).

    Use :meth:`open`; see the module docstring for the format, rotation and recovery.

    Parameters
    ----------
    directory : Path
        Where the ``audit-NNNNNN.jsonl`` files live (created when missing).
    max_bytes : int
        A file is rotated before it would grow past this many bytes (a single bigger record gets a file of its own).
    keep_files : int
        Files kept, the one being written included; older ones are deleted at rotation.
    clock : callable returning float
        Wall clock, seconds since the epoch (``time_utc`` of each record).
    """

    def __init__(self, directory: Path, *, max_bytes: int, keep_files: int,
                 clock: Callable[[], float] = time.time) -> None:
        require_int(max_bytes, "max_bytes", AuditError, minimum=256)
        require_int(keep_files, "keep_files", AuditError, minimum=1)
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self.run = secrets.token_hex(8)
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._number = 0
        self._size = 0
        self._seq = 0
        self._head = GENESIS
        self._needs_recovery = False

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, max_bytes: int = 1_048_576, keep_files: int = 10,
             clock: Callable[[], float] = time.time) -> AuditLog:
        """Open (or start) the log in ``directory`` and resume its chain after the last complete record.

        A torn last line (a crash mid-write) is cut off and a ``log_recovered`` record says what was cut.

        Raises
        ------
        AuditError
            The directory cannot be created or a file cannot be read or opened for appending.
        """
        log = cls(Path(directory), max_bytes=max_bytes, keep_files=keep_files, clock=clock)
        try:
            log.directory.mkdir(parents=True, exist_ok=True)
            with log._lock:
                recovered = log._resume()
                if recovered is not None:
                    log._append_locked("log_recovered", recovered)
        except OSError as exc:
            log.close()
            raise AuditError(f"audit log {log.directory}: {exc.strerror or exc}") from exc
        return log

    # ------------------------------------------------------------------------------------------------ state
    @property
    def head(self) -> str:
        """Hash of the last record written (:data:`GENESIS` for an empty log)."""
        with self._lock:
            return self._head

    @property
    def seq(self) -> int:
        """``seq`` of the last record written (0 for an empty log)."""
        with self._lock:
            return self._seq

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # ------------------------------------------------------------------------------------------------ write
    def append(self, event: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write one record and fsync it; return it.

        Raises
        ------
        AuditError
            ``event`` is not a lower-case identifier or ``details`` is not JSON (NaN included): a caller mistake.
        OSError
            The record could not be written (disk full, I/O error); the next append first repairs a torn tail.
        """
        require_str(event, "event", AuditError, pattern=_EVENT_RE, pattern_doc="a lower-case identifier")
        with self._lock:
            if self._needs_recovery:
                self._close_fd()
                recovered = self._resume()
                if recovered is not None:
                    self._append_locked("log_recovered", recovered)
            return self._append_locked(event, dict(details or {}))

    def _append_locked(self, event: str, details: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"seq": self._seq + 1, "time_utc": _utc(self._clock()), "run": self.run,
                                  "event": event, "details": details, "prev": self._head}
        try:
            line = _line(record)
        except (TypeError, ValueError) as exc:
            raise AuditError(f"{event}.details: expected JSON values, got {exc}") from None
        if self._fd is None:
            self._open_file(self._number or 1)
        elif self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()  # writes the log_rotated record: this one follows it
            record["seq"], record["prev"] = self._seq + 1, self._head
            record["time_utc"] = _utc(self._clock())  # after the log_rotated record's time
            line = _line(record)
        self._write(line)
        self._seq, self._head = record["seq"], record["hash"]
        return record

    def _write(self, line: bytes) -> None:
        assert self._fd is not None
        try:
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError:
            self._needs_recovery = True
            raise
        self._size += len(line)

    def _open_file(self, number: int) -> None:
        path = self.directory / _file_name(number)
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._number = number
        self._size = os.fstat(self._fd).st_size
        if created:
            _fsync_dir(self.directory)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _rotate(self) -> None:
        previous = _file_name(self._number)
        self._close_fd()
        self._open_file(self._number + 1)
        deleted = []
        files = audit_files(self.directory)
        for number, path in files[: max(0, len(files) - self.keep_files)]:
            if number >= self._number:  # pragma: no cover - never the file being written
                break
            try:
                path.unlink()
                deleted.append(path.name)
            except OSError:  # pragma: no cover - kept, and named as not deleted
                pass
        if deleted:
            _fsync_dir(self.directory)
        record: dict[str, Any] = {"seq": self._seq + 1, "time_utc": _utc(self._clock()), "run": self.run,
                                  "event": "log_rotated",
                                  "details": {"previous_file": previous, "deleted_files": deleted,
                                              "keep_files": self.keep_files},
                                  "prev": self._head}
        self._write(_line(record))
        self._seq, self._head = record["seq"], record["hash"]

    # ------------------------------------------------------------------------------------------------ resume
    def _resume(self) -> dict[str, Any] | None:
        """Find the head (last complete record), cut a torn tail; return the ``log_recovered`` details or None."""
        self._needs_recovery = False
        files = audit_files(self.directory)
        recovered: dict[str, Any] | None = None
        if not files:
            self._open_file(1)
            return None
        number, path = files[-1]
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            torn = data[cut:]
            os.truncate(path, cut)
            recovered = {"file": path.name, "offset": cut, "dropped_bytes": len(torn),
                         "dropped_sha256": hashlib.sha256(torn).hexdigest(),
                         "reason": "torn last line (the daemon stopped while writing it)"}
            data = data[:cut]
        last = None
        for _, p in reversed(files):
            text = data if p == path else p.read_bytes()
            lines = text.rstrip(b"\n").split(b"\n") if text.strip() else []
            if lines:
                last = lines[-1]
                break
        if last is not None:
            try:
                rec = loads_strict(last)
                seq, head = rec["seq"], rec["hash"]
                if type(seq) is not int or not isinstance(head, str) or not _HEX64_RE.match(head):
                    raise ValueError("seq or hash malformed")
                self._seq, self._head = seq, head
            except (ValueError, KeyError, TypeError) as exc:
                recovered = {**(recovered or {}), "file": path.name,
                             "reason": f"the last complete record cannot be read ({exc}); the chain starts again "
                                       "here and verification reports the break"}
        self._open_file(number)  # the cut is made durable by the fsync of the log_recovered record that follows
        return recovered


class RefusalGate:
    """At most ``per_window`` refusals recorded one by one per ``window_s``; the rest are counted.

    A flood of refused commands (anyone who may publish on the broker can send them) must not rotate the history
    out of the log: past the limit, refusals are counted and the count is recorded once, when the next window
    starts (or at stop, :meth:`drain`).  Thread-safe.

    >>> g = RefusalGate(per_window=2, window_s=60.0)
    >>> [g.admit(t) for t in (0.0, 1.0, 2.0, 3.0)], g.admit(61.0), g.drain()
    ([(True, 0), (True, 0), (False, 0), (False, 0)], (True, 2), 0)
    """

    def __init__(self, per_window: int = 30, window_s: float = 60.0) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._lock = threading.Lock()
        self._start = -float("inf")
        self._admitted = 0
        self._held_back = 0

    def admit(self, now_s: float) -> tuple[bool, int]:
        """Whether to record this refusal, and how many the window that just ended left unrecorded (to record
        first as one count; 0 when none)."""
        with self._lock:
            report = 0
            if now_s - self._start >= self.window_s:
                report, self._held_back = self._held_back, 0
                self._start, self._admitted = now_s, 0
            if self._admitted < self.per_window:
                self._admitted += 1
                return True, report
            self._held_back += 1
            return False, report

    def drain(self) -> int:
        """Refusals not recorded and not yet reported (reported now: the count is reset)."""
        with self._lock:
            held, self._held_back = self._held_back, 0
            return held


# ---------------------------------------------------------------------------------------------------- verify
@dataclass
class VerifyReport:
    """What :func:`verify` found: ``ok`` and a one-line ``summary``; ``error`` names the first break."""

    ok: bool
    records: int = 0
    files: list[str] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    first_time_utc: str | None = None
    last_time_utc: str | None = None
    head: str | None = None
    anchored: bool = False  #: the oldest record kept is the first ever (``prev`` = GENESIS)
    clock_steps_back: int = 0  #: records whose time is earlier than the record before (a clock set back)
    error: str | None = None
    records_list: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        if not self.ok:
            return f"FAIL: {self.error}"
        if not self.records:
            return f"OK: no records in {len(self.files)} file(s)"
        start = ("from the first record (genesis)" if self.anchored else
                 f"anchored at seq {self.first_seq} (older records were rotated away and cannot be checked)")
        steps = f"; the clock went back {self.clock_steps_back} time(s)" if self.clock_steps_back else ""
        return (f"OK: {self.records} records in {len(self.files)} file(s), seq {self.first_seq}..{self.last_seq} "
                f"{start}, {self.first_time_utc} to {self.last_time_utc}{steps}; head {self.head}")


def verify(path: str | os.PathLike[str], *, expect_head: str | None = None) -> VerifyReport:
    """Check the chain of an audit file or of a directory of rotated files (oldest first, by number).

    Every line must be a complete JSON record with exactly :data:`RECORD_KEYS`, whose ``hash`` matches its
    content, whose ``prev`` is the hash of the record before and whose ``seq`` follows on.  ``expect_head``, a hash
    exported earlier (e.g. a retained status's ``audit_head``), must be one of the records: otherwise records
    were cut off the end or the chain was rewritten.

    Raises
    ------
    AuditError
        ``path`` does not exist or holds no audit files.
    """
    p = Path(path)
    if p.is_dir():
        files = [f for _, f in audit_files(p)]
        if not files:
            raise AuditError(f"{p}: expected audit-NNNNNN.jsonl files, found none")
    elif p.is_file():
        files = [p]
    else:
        raise AuditError(f"{p}: no such file or directory")
    report = VerifyReport(ok=False, files=[f.name for f in files])
    prev: dict[str, Any] | None = None
    where_prev = ""
    seen_expected = expect_head is None
    for f in files:
        data = f.read_bytes()
        lines = data.split(b"\n")
        for i, raw in enumerate(lines, start=1):
            last_piece = i == len(lines)
            if last_piece and not raw:
                break  # the file ends with a newline, as it should
            where = f"{f.name} line {i}"
            if last_piece:
                report.error = (f"{where}: torn last line ({len(raw)} bytes without a newline; the daemon stopped "
                                "while writing it, or the file was cut)")
                return report
            try:
                rec = loads_strict(raw)
            except ValueError as exc:
                report.error = f"{where}: expected a JSON record, got unparsable text ({exc})"
                return report
            if not isinstance(rec, dict) or set(rec) != RECORD_KEYS:
                got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
                report.error = f"{where}: expected the keys {sorted(RECORD_KEYS)}, got {got}"
                return report
            seq = rec["seq"]
            if rec["hash"] != canonical_hash(rec):
                report.error = (f"{where} (seq {seq}, {rec.get('event')}): the record was altered: its hash does "
                                "not match its content")
                return report
            if prev is None:
                report.anchored = rec["prev"] == GENESIS
                if report.anchored and seq != 1:
                    report.error = f"{where}: expected seq 1 for the first record, got {seq}"
                    return report
            else:
                if rec["prev"] != prev["hash"]:
                    report.error = (f"{where} (seq {seq}): prev does not match the hash of the record before it "
                                    f"(seq {prev['seq']}, {where_prev}): a record was deleted, inserted or "
                                    "edited with its hash, or files were reordered")
                    return report
                if seq != prev["seq"] + 1:
                    report.error = f"{where}: expected seq {prev['seq'] + 1}, got {seq}"
                    return report
                if str(rec["time_utc"]) < str(prev["time_utc"]):
                    report.clock_steps_back += 1
            if rec["hash"] == expect_head:
                seen_expected = True
            report.records_list.append(rec)
            prev, where_prev = rec, where
    report.records = len(report.records_list)
    if report.records_list:
        first, last = report.records_list[0], report.records_list[-1]
        report.first_seq, report.last_seq = first["seq"], last["seq"]
        report.first_time_utc, report.last_time_utc = first["time_utc"], last["time_utc"]
        report.head = last["hash"]
    if not seen_expected:
        report.error = (f"the expected head {expect_head} is not in the log (head now {report.head}): records were "
                        "cut off the end or the chain was rewritten")
        return report
    report.ok = True
    return report
