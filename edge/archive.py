"""On-disk archive of raw spectra as received, with their references, predictions and lab sample tags.

API (the daemon calls :meth:`Archive.offer` for every spectrum it judged, predicted or rejected, and
:meth:`Archive.tag` for the ``tag_sample`` command; ``spectro-edge export`` calls :func:`export_npz`)::

    archive = Archive.from_config(cfg.archive)          # opens (or creates) the file; never raises
    archive.start()                                      # the writer thread
    archive.offer(frame, outcome, refs, signal=..., boot_id=..., wavelengths_nm=..., bundle=...)  # never blocks
    archive.tag(sample_id, frames=1) -> float            # the next ``frames`` spectra carry sample_id
    archive.counters() -> dict[str, int]; archive.gauges() -> dict[str, float]
    archive.close()                                      # drains the queue, then closes the file
    export_npz(archive_path, out, since_unix_s=None, until_unix_s=None, sample_id=None) -> int   # rows written

Why SQLite (WAL) rather than append-only segment files and an index: the export selects by time window and by
sample id (two indexes), eviction by size and age removes the oldest rows in one transaction, references are stored
once and shared by many rows (a table keyed by content hash, garbage-collected when their last row goes), and a
crash at any moment leaves a consistent file, all of which segment files would have to re-implement; the standard
library's ``sqlite3`` is already what :mod:`edge.publish.outbox` relies on.  Unlike the outbox, the file is not
opened in exclusive mode, so ``spectro-edge export`` can read it while the daemon runs.

What is stored, per spectrum (table ``frames``): the values exactly as received (``dtype`` ``<u2``, ``<u4`` or
``<f4``, little-endian, and the pixel count), the device's ``signal`` (counts, absorbance, ...), ``seq``, the device
timestamp, the device boot id, the host receive time (UTC Unix seconds), the integration time, the dark and white
references in use and the wavelength axis (each by SHA-256 of its float64 little-endian bytes; table ``blobs``, each
stored once), the outcome (``prediction`` or ``rejected:<reason>``), the prediction's targets, values, interval,
quality flags and OOD statistics (JSON), the model id, version and bundle SHA-256, and the sample id when tagged.
Table ``tags`` records every ``tag_sample`` with its time, so a lab that knows only when it drew a sample can join on
a time window.

Policy (``archive.policy``): ``all``; ``every_nth`` (one spectrum in ``every_n``); ``flagged`` (quality not ok, OOD,
or rejected); ``tagged`` (only around tags: ``window_frames`` spectra before and after the tagged ones).  A tagged
spectrum is kept whatever the policy.

Never blocks inference: :meth:`Archive.offer` decides under a short lock and hands immutable objects (the frame,
the outcome, the reference set) to a bounded queue; serialisation, hashing and SQLite run on the writer thread.  A
full queue drops the archive record, counted as ``archive_dropped`` (and logged at most once a minute), never the
frame or its prediction.  A write that fails (disk full, I/O error) is counted as ``archive_write_errors`` and
logged the same way; the daemon goes on.

Bounds: ``archive.max_bytes`` (bytes of spectra, references and prediction text, not the file size: SQLite reuses
freed pages, so the file stays at its high-water mark) and ``archive.max_age_days``; beyond either, the oldest
spectra are evicted (``archive_evicted``), down to 90 % of ``max_bytes``, and references no row uses any more go
with them.
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from edge.errors import EdgeError
from edge.inference import Prediction, Rejection
from edge.publish.schema import Quality

if TYPE_CHECKING:
    from edge.config import ArchiveConfig
    from edge.references import ReferenceSet, ReferenceSpectrum

__all__ = ["Archive", "ArchiveError", "ArchivePolicy", "ArchiveRecord", "POLICIES", "export_npz", "parse_time",
           "EVICT_TO_FRACTION", "LOG_INTERVAL_S"]

log = logging.getLogger(__name__)

#: The kinds of ``archive.policy``.
POLICIES = ("all", "every_nth", "flagged", "tagged")
#: An eviction by size goes down to this fraction of ``max_bytes`` (so it does not run for every new spectrum).
EVICT_TO_FRACTION = 0.9
#: At most one log line per kind (dropped records, write errors) and interval, with a count.
LOG_INTERVAL_S = 60.0
#: How often the writer evicts spectra older than ``max_age_days``.
AGE_CHECK_INTERVAL_S = 60.0
#: Records the writer commits in one transaction at most.
WRITE_BATCH = 64
#: Fixed per-row overhead counted against ``max_bytes`` besides the spectrum and prediction text.
ROW_OVERHEAD_BYTES = 96
#: Dtypes a spectrum is stored in (little-endian, as the frame decoder hands them over).
_DTYPES = {"uint16": "<u2", "uint32": "<u4", "float32": "<f4", "float64": "<f8"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    size_bytes INTEGER NOT NULL,
    captured_unix_s REAL,
    integration_time_us INTEGER
);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_unix_s REAL NOT NULL,
    seq INTEGER NOT NULL,
    device_timestamp_us INTEGER NOT NULL,
    device_boot_id INTEGER,
    integration_time_us INTEGER,
    signal TEXT NOT NULL,
    dtype TEXT NOT NULL,
    pixel_count INTEGER NOT NULL,
    spectrum BLOB NOT NULL,
    dark_sha256 TEXT,
    white_sha256 TEXT,
    axis_sha256 TEXT,
    outcome TEXT NOT NULL,
    prediction TEXT,
    model_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    sample_id TEXT,
    size_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS frames_by_time ON frames (received_unix_s);
CREATE INDEX IF NOT EXISTS frames_by_sample ON frames (sample_id) WHERE sample_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id TEXT NOT NULL,
    tagged_unix_s REAL NOT NULL,
    frames INTEGER NOT NULL,
    request_id TEXT
);
"""


class ArchiveError(EdgeError, ValueError):
    """The archive file cannot be read or exported (expected X, got Y)."""


@dataclass(frozen=True)
class ArchiveRecord:
    """One spectrum to archive: immutable references to what the daemon already holds (no copies on its thread).

    ``frame`` is the decoded :class:`firmware_bridge.frames.Spectrum` (``seq``, ``timestamp_us``,
    ``integration_time_us``, ``counts``, all read-only); ``outcome`` the engine's :class:`Prediction` or
    :class:`Rejection`; ``received_unix_s`` the host time it was offered (UTC Unix seconds).
    """

    frame: Any
    outcome: Union[Prediction, Rejection]
    dark: "ReferenceSpectrum | None"
    white: "ReferenceSpectrum | None"
    wavelengths_nm: npt.NDArray[np.float64] | None
    signal: str
    boot_id: int | None
    model_id: str
    model_version: str
    bundle_sha256: str
    received_unix_s: float
    sample_id: str | None = None

    @property
    def flagged(self) -> bool:
        """Rejected, or a prediction with any quality flag (out of distribution included)."""
        return isinstance(self.outcome, Rejection) or bool(self.outcome.flags)


class ArchivePolicy:
    """Which offered spectra are kept, and which carry a sample tag (pure; the caller serialises the calls).

    >>> p = ArchivePolicy("every_nth", every_n=3)
    >>> [p.keep(flagged=False) for _ in range(6)]
    [True, False, False, True, False, False]
    >>> p = ArchivePolicy("tagged", window_frames=1)
    >>> p.tag("S-1", frames=2)
    >>> [p.route(flagged=False) for _ in range(6)]  # (sample id, keep); window of 1 after (before: see route)
    [('S-1', True), ('S-1', True), (None, True), (None, False), (None, False), (None, False)]
    """

    def __init__(self, policy: str = "all", *, every_n: int = 1, window_frames: int = 0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"archive.policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
        if every_n < 1 or window_frames < 0:
            raise ValueError(f"expected every_n >= 1 and window_frames >= 0, got {every_n} and {window_frames}")
        self.policy = policy
        self.every_n = every_n
        self.window_frames = window_frames
        self._n = 0
        self._tags: collections.deque[list[Any]] = collections.deque()  # [sample_id, frames left]
        self._after = 0

    def tag(self, sample_id: str, frames: int) -> None:
        """The next ``frames`` spectra (after any earlier tag's) carry ``sample_id`` and are kept."""
        self._tags.append([sample_id, frames])

    @property
    def tags_pending(self) -> int:
        """Spectra still to be tagged."""
        return sum(int(t[1]) for t in self._tags)

    def keep(self, *, flagged: bool) -> bool:
        """The policy's verdict for one untagged spectrum."""
        self._n += 1
        if self.policy == "every_nth":
            return (self._n - 1) % self.every_n == 0
        if self.policy == "flagged":
            return flagged
        return self.policy == "all"

    def route(self, *, flagged: bool) -> tuple[str | None, bool]:
        """``(sample id or None, keep)`` for the next spectrum; with policy ``tagged`` a spectrum is kept in the
        ``window_frames`` after a tag's last spectrum (the ones before are the caller's ring buffer)."""
        if self._tags:
            head = self._tags[0]
            head[1] -= 1
            if head[1] <= 0:
                self._tags.popleft()
                self._after = self.window_frames
            return str(head[0]), True
        if self.policy == "tagged":
            self._n += 1
            if self._after > 0:
                self._after -= 1
                return None, True
            return None, False
        return None, self.keep(flagged=flagged)


class _RateLog:
    """At most one log line per kind and LOG_INTERVAL_S, carrying how many events it stands for."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def event(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        self._count[kind] = self._count.get(kind, 0) + 1
        if now - self._last.get(kind, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            log.warning(message + " (%d in the last minute)", *args, self._count[kind])
            self._last[kind] = now
            self._count[kind] = 0


def _le_bytes(values: npt.NDArray[Any]) -> tuple[str, bytes]:
    """The values as little-endian bytes and their dtype code (``<u2``, ``<u4``, ``<f4``, ``<f8``)."""
    code = _DTYPES.get(values.dtype.name, "<f8")
    return code, np.ascontiguousarray(values, dtype=np.dtype(code)).tobytes()


def _f8(values: npt.ArrayLike) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def _prediction_json(outcome: Union[Prediction, Rejection]) -> str | None:
    if not isinstance(outcome, Prediction):
        return json.dumps({"reason": outcome.reason.value, "detail": outcome.detail}, allow_nan=False)
    ood = None if outcome.ood is None else {"t2": outcome.ood.t2, "q": outcome.ood.q,
                                            "t2_limit": outcome.ood.t2_limit, "q_limit": outcome.ood.q_limit}

    def finite(v: Sequence[float] | None) -> list[float | None] | None:
        return None if v is None else [float(x) if np.isfinite(x) else None for x in v]

    return json.dumps({
        "names": list(outcome.names), "units": list(outcome.units), "values": finite(outcome.values),
        "lower": finite(outcome.lower), "upper": finite(outcome.upper),
        "flags": [f.value for f in outcome.flags], "reasons": list(outcome.reasons), "ood": ood,
    }, allow_nan=False)


class _Store:
    """The SQLite file (used by one thread at a time: the writer, or :func:`export_npz`)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.known: set[str] = {r[0] for r in self.db.execute("SELECT sha256 FROM blobs")}
        frames_bytes = self.db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM frames").fetchone()[0]
        blob_bytes = self.db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM blobs").fetchone()[0]
        self.bytes = int(frames_bytes) + int(blob_bytes)
        self.rows = int(self.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0])

    def close(self) -> None:
        self.db.close()


class Archive:
    """The archive: policy and tags on the caller's thread, storage on a writer thread.

    Parameters
    ----------
    path : Path
        SQLite file (created with its directory).
    policy : ArchivePolicy
        What is kept.
    max_bytes : int
        Bound on stored bytes (spectra, references, prediction text).
    max_age_days : float
        Spectra older than this are evicted.
    queue_max : int
        Records waiting for the writer; beyond it :meth:`offer` drops them (``archive_dropped``).
    clock : callable
        Host time, UTC Unix seconds.
    """

    def __init__(self, path: Path, policy: ArchivePolicy, *, max_bytes: int, max_age_days: float,
                 queue_max: int = 1024, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.policy = policy
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_days) * 86_400.0
        self.clock = clock
        self._queue: queue.Queue[ArchiveRecord] = queue.Queue(maxsize=queue_max)
        self._closing = threading.Event()
        self._axis: tuple[Any, npt.NDArray[np.float64] | None] = (None, None)  # (bundle, its grid) of the last offer
        self._lock = threading.Lock()
        self._before: collections.deque[ArchiveRecord] = collections.deque(maxlen=max(policy.window_frames, 1))
        self._tag_events: list[tuple[str, float, int, str | None]] = []
        self._counts = collections.Counter({"archive_records": 0, "archive_dropped": 0, "archive_evicted": 0})
        self._bytes = 0
        self._rows = 0
        self._ratelog = _RateLog()
        self._thread: threading.Thread | None = None
        self._store: _Store | None = None
        self._blob_cache: dict[int, tuple[Any, str]] = {}
        try:
            self._store = _Store(self.path)
            self._bytes, self._rows = self._store.bytes, self._store.rows
        except (sqlite3.Error, OSError) as exc:
            log.error("archive %s cannot be opened (%s): no spectrum is archived; every offered one is counted in "
                      "archive_write_errors", self.path, exc)

    @classmethod
    def from_config(cls, config: "ArchiveConfig", *, clock: Callable[[], float] = time.time) -> "Archive":
        """The archive ``[archive]`` describes (``path`` must be set: :func:`edge.config.parse_config` sets it)."""
        if config.path is None:
            raise ValueError("archive.path: expected a path (parse_config sets one beside outbox.path), got None")
        policy = ArchivePolicy(config.policy, every_n=config.every_n, window_frames=config.window_frames)
        return cls(Path(config.path), policy, max_bytes=config.max_bytes, max_age_days=config.max_age_days,
                   queue_max=config.queue_max, clock=clock)

    # ------------------------------------------------------------------------------------------ caller side

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="spectro-archive", daemon=True)
            self._thread.start()

    def offer(self, frame: Any, outcome: Union[Prediction, Rejection], refs: "ReferenceSet", *, signal: str,
              boot_id: int | None, wavelengths_nm: npt.NDArray[np.float64] | None, bundle: Any) -> None:
        """Archive one judged spectrum if the policy or a tag says so; never blocks (a full queue drops it)."""
        axis = wavelengths_nm
        if axis is None:  # the device sent no axis: the bundle's grid when it has one point per pixel
            if self._axis[0] is not bundle:  # Bundle.wavelengths builds a new array at every call
                self._axis = (bundle, getattr(bundle, "wavelengths", None))
            grid = self._axis[1]
            axis = grid if grid is not None and len(grid) == len(frame.counts) else None
        record = ArchiveRecord(
            frame=frame, outcome=outcome, dark=refs.dark, white=refs.reference, wavelengths_nm=axis, signal=signal,
            boot_id=boot_id, model_id=str(bundle.model_id), model_version=str(bundle.model_version),
            bundle_sha256=str(getattr(bundle, "file_sha256", "")), received_unix_s=self.clock())
        out: list[ArchiveRecord] = []
        with self._lock:
            sample_id, keep = self.policy.route(flagged=record.flagged)
            if sample_id is not None:
                record = _with_sample(record, sample_id)
                self._counts["archive_tagged"] += 1
            if self.policy.policy == "tagged" and self.policy.window_frames > 0:
                if sample_id is not None:
                    out.extend(self._before)
                    self._before.clear()
                elif not keep:
                    self._before.append(record)
            if keep:
                out.append(record)
            for r in out:
                try:
                    self._queue.put_nowait(r)
                except queue.Full:
                    self._counts["archive_dropped"] += 1
                    self._ratelog.event("dropped", "archive queue full: spectrum %d not archived (archive_dropped)",
                                        r.frame.seq)

    def tag(self, sample_id: str, frames: int = 1, request_id: str | None = None) -> float:
        """Tag the next ``frames`` spectra with ``sample_id`` (kept whatever the policy); returns the tag's time."""
        now = self.clock()
        with self._lock:
            self.policy.tag(sample_id, frames)
            self._tag_events.append((sample_id, now, frames, request_id))
        return now

    def counters(self) -> dict[str, int]:
        """``archive_records``, ``archive_dropped``, ``archive_evicted`` (and, once they happen,
        ``archive_tagged``, ``archive_write_errors``)."""
        with self._lock:
            return dict(self._counts)

    def gauges(self) -> dict[str, float]:
        """``archive_bytes`` (stored, see the module docstring), ``archive_rows``, ``archive_queue``,
        ``archive_tags_pending``."""
        with self._lock:
            return {"archive_bytes": float(self._bytes), "archive_rows": float(self._rows),
                    "archive_queue": float(self._queue.qsize()),
                    "archive_tags_pending": float(self.policy.tags_pending)}

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued and every tag, then stop the writer and close the file (at most ``timeout_s``
        waiting for a stuck disk: what is still queued then is reported, not waited for)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():  # pragma: no cover - a stuck disk is reported, not waited for forever
                log.error("archive writer did not stop within %.0f s; %d record(s) not written", timeout_s,
                          self._queue.qsize())
                return
            self._thread = None
        self._write_tags()  # those given while the writer drained, or without a writer
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------------------------------------ writer side

    def _writer(self) -> None:
        """Write batches until :meth:`close` is called and the queue is empty."""
        last_age_check = -AGE_CHECK_INTERVAL_S
        stop = False
        while not stop:
            batch: list[ArchiveRecord] = []
            try:
                batch.append(self._queue.get(timeout=0.2))
                while len(batch) < WRITE_BATCH:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                stop = not batch and self._closing.is_set()
            self._write_tags()
            if batch:
                self._write(batch)
            if time.monotonic() - last_age_check >= AGE_CHECK_INTERVAL_S or stop:
                last_age_check = time.monotonic()
                self._evict(by_age=True)

    def _write_tags(self) -> None:
        with self._lock:
            events, self._tag_events = self._tag_events, []
        if not events or self._store is None:
            return
        try:
            with self._store.db:
                self._store.db.executemany(
                    "INSERT INTO tags (sample_id, tagged_unix_s, frames, request_id) VALUES (?, ?, ?, ?)", events)
        except sqlite3.Error as exc:
            self._error(len(events), exc)

    def _blob(self, rows: list[tuple[Any, ...]], kind: str, obj: Any, values: Any, **meta: Any) -> str | None:
        """The SHA-256 of a reference or axis, adding it to ``rows`` (to insert) the first time it is seen."""
        if obj is None:
            return None
        cached = self._blob_cache.get(id(obj))
        if cached is not None and cached[0] is obj:
            sha = cached[1]
        else:
            data = _f8(values)
            sha = hashlib.sha256(kind.encode() + b"\0" + data).hexdigest()
            if len(self._blob_cache) >= 16:
                self._blob_cache.clear()
            self._blob_cache[id(obj)] = (obj, sha)
        assert self._store is not None
        if sha not in self._store.known and not any(r[0] == sha for r in rows):
            data = _f8(values)
            rows.append((sha, kind, data, len(data), meta.get("captured"), meta.get("integration")))
        return sha

    def _write(self, batch: Sequence[ArchiveRecord]) -> None:
        if self._store is None:
            self._error(len(batch), "the archive file is not open")
            return
        blobs: list[tuple[Any, ...]] = []
        frames: list[tuple[Any, ...]] = []
        added = 0
        for r in batch:
            dtype, data = _le_bytes(np.asarray(r.frame.counts))
            dark = self._blob(blobs, "dark", r.dark, None if r.dark is None else r.dark.counts,
                              captured=None if r.dark is None else r.dark.captured_at_s,
                              integration=None if r.dark is None else r.dark.integration_time_us)
            white = self._blob(blobs, "white", r.white, None if r.white is None else r.white.counts,
                               captured=None if r.white is None else r.white.captured_at_s,
                               integration=None if r.white is None else r.white.integration_time_us)
            axis = self._blob(blobs, "wavelengths", r.wavelengths_nm, r.wavelengths_nm)
            pred = _prediction_json(r.outcome)
            outcome = "prediction" if isinstance(r.outcome, Prediction) else f"rejected:{r.outcome.reason.value}"
            size = len(data) + len(pred or "") + ROW_OVERHEAD_BYTES
            added += size
            frames.append((r.received_unix_s, int(r.frame.seq), int(r.frame.timestamp_us), r.boot_id,
                           getattr(r.frame, "integration_time_us", None), r.signal, dtype, len(r.frame.counts), data,
                           dark, white, axis, outcome, pred, r.model_id, r.model_version, r.bundle_sha256,
                           r.sample_id, size))
        try:
            with self._store.db:
                self._store.db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?)", blobs)
                self._store.db.executemany(
                    "INSERT INTO frames (received_unix_s, seq, device_timestamp_us, device_boot_id, "
                    "integration_time_us, signal, dtype, pixel_count, spectrum, dark_sha256, white_sha256, "
                    "axis_sha256, outcome, prediction, model_id, model_version, bundle_sha256, sample_id, size_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", frames)
        except sqlite3.Error as exc:
            self._error(len(batch), exc)
            return
        self._store.known.update(b[0] for b in blobs)
        with self._lock:
            self._counts["archive_records"] += len(frames)
            self._bytes += added + sum(int(b[3]) for b in blobs)
            self._rows += len(frames)
        if self._bytes > self.max_bytes:
            self._evict(by_age=False)

    def _evict(self, *, by_age: bool) -> None:
        """Delete the oldest spectra beyond the age bound, or down to EVICT_TO_FRACTION of ``max_bytes``."""
        store = self._store
        if store is None:
            return
        try:
            with store.db:
                if by_age:
                    cutoff = self.clock() - self.max_age_s
                    gone = store.db.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM frames "
                                            "WHERE received_unix_s < ?", (cutoff,)).fetchone()
                    store.db.execute("DELETE FROM frames WHERE received_unix_s < ?", (cutoff,))
                    n, freed = int(gone[0]), int(gone[1])
                else:
                    target = self._bytes - int(self.max_bytes * EVICT_TO_FRACTION)
                    n = freed = 0
                    last_id = None
                    for row_id, size in store.db.execute("SELECT id, size_bytes FROM frames ORDER BY id"):
                        if freed >= target:
                            break
                        n, freed, last_id = n + 1, freed + int(size), row_id
                    if last_id is not None:
                        store.db.execute("DELETE FROM frames WHERE id <= ?", (last_id,))
                if n:
                    orphan = ("FROM blobs WHERE sha256 NOT IN (SELECT dark_sha256 FROM frames WHERE dark_sha256 IS "
                              "NOT NULL UNION SELECT white_sha256 FROM frames WHERE white_sha256 IS NOT NULL UNION "
                              "SELECT axis_sha256 FROM frames WHERE axis_sha256 IS NOT NULL)")
                    freed += int(store.db.execute("SELECT COALESCE(SUM(size_bytes), 0) " + orphan).fetchone()[0])
                    store.db.execute("DELETE " + orphan)
        except sqlite3.Error as exc:
            self._error(0, exc)
            return
        if n:
            store.known = {r[0] for r in store.db.execute("SELECT sha256 FROM blobs")}
            self._blob_cache.clear()
            with self._lock:
                self._counts["archive_evicted"] += n
                self._bytes -= freed
                self._rows -= n
            self._ratelog.event("evicted", "archive: evicted the %d oldest spectra (%s)", n,
                                "archive.max_age_days" if by_age else "archive.max_bytes")

    def _error(self, records: int, exc: object) -> None:
        with self._lock:
            self._counts["archive_write_errors"] += max(records, 1)
        self._ratelog.event("error", "archive write failed (%s): %d record(s) lost (archive_write_errors)",
                            exc, records)


def _with_sample(record: ArchiveRecord, sample_id: str) -> ArchiveRecord:
    import dataclasses

    return dataclasses.replace(record, sample_id=sample_id)


# ---------------------------------------------------------------------------------------------------- export

def parse_time(text: str, what: str = "time") -> float:
    """An ISO 8601 time (``2026-12-04T21:00:00Z``; no zone means UTC) as UTC Unix seconds.

    >>> parse_time("1970-01-01T00:01:00Z")
    60.0
    """
    try:
        t = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ArchiveError(f"{what}: expected an ISO 8601 time such as 2026-12-04T21:00:00Z, got {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def export_npz(archive_path: str | Path, out: str | Path, *, since_unix_s: float | None = None,
               until_unix_s: float | None = None, sample_id: str | None = None) -> int:
    """Write the archived spectra received in ``[since, until]`` (and tagged ``sample_id``) as a dataset ``.npz``.

    The layout is that of ``../shared/datasets`` (``X``, ``wavelengths``, ``y``, ``target_names`` and per-row 1-D
    arrays), so ``trainer.data.load_npz`` reads it once the lab has filled ``y``.  ``X`` holds the values **as
    received** (float32; counts for a counts device); the dark and white references in use are in
    ``dark_spectra`` / ``white_spectra`` (one row per distinct reference) indexed per row by ``dark_index`` /
    ``white_index`` (-1: none), so the lab converts with the bundle's own pipeline.  ``y`` is NaN (the lab's
    reference values, joined on ``sample_id`` or on ``received_unix_s``), ``prediction`` the device's values.
    Returns the number of rows; raises :class:`ArchiveError` naming what is wrong (no file, no rows, mixed
    pixel counts or axes).
    """
    path = Path(archive_path)
    if not path.is_file():
        raise ArchiveError(f"{path}: expected an archive file, got no such file")
    try:
        db = sqlite3.connect(str(path))
        try:
            where: list[str] = ["1"]
            args: list[float | str] = []
            if since_unix_s is not None:
                where.append("received_unix_s >= ?")
                args.append(since_unix_s)
            if until_unix_s is not None:
                where.append("received_unix_s <= ?")
                args.append(until_unix_s)
            if sample_id is not None:
                where.append("sample_id = ?")
                args.append(sample_id)
            rows = db.execute(
                "SELECT received_unix_s, seq, device_timestamp_us, device_boot_id, integration_time_us, signal, dtype, "
                "pixel_count, spectrum, dark_sha256, white_sha256, axis_sha256, outcome, prediction, model_id, "
                "model_version, bundle_sha256, sample_id FROM frames WHERE " + " AND ".join(where) + " ORDER BY id",
                args).fetchall()
            blobs = {r[0]: np.frombuffer(r[1], dtype="<f8") for r in db.execute("SELECT sha256, data FROM blobs")}
            tags = db.execute("SELECT sample_id, tagged_unix_s, frames FROM tags ORDER BY id").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ArchiveError(f"{path}: expected a spectrolite archive (SQLite), got {exc}") from exc
    if not rows:
        raise ArchiveError(f"{path}: no archived spectrum matches (since={since_unix_s}, until={until_unix_s}, "
                           f"sample_id={sample_id!r})")
    pixels = sorted({int(r[7]) for r in rows})
    if len(pixels) != 1:
        raise ArchiveError(f"{path}: expected one pixel count in the selection, got {pixels}; narrow --since/--until")
    axes = sorted({r[11] for r in rows if r[11] is not None})
    if len(axes) > 1:
        raise ArchiveError(f"{path}: expected one wavelength axis in the selection, got {len(axes)}; narrow "
                           "--since/--until")
    n, p = len(rows), pixels[0]
    X = np.stack([np.frombuffer(r[8], dtype=np.dtype(r[6])).astype(np.float32) for r in rows])
    wavelengths = blobs[axes[0]].copy() if axes else np.arange(p, dtype=np.float64)
    preds = [json.loads(r[13]) if r[12] == "prediction" and r[13] else None for r in rows]
    names: list[str] = []
    units: dict[str, str] = {}
    for pr in preds:
        for name, unit in zip(pr["names"], pr["units"]) if pr else ():
            if name not in units:
                names.append(name)
                units[name] = unit
    prediction = np.full((n, len(names)), np.nan)
    lower, upper = prediction.copy(), prediction.copy()
    ood = np.full((n, 4), np.nan)
    flags, quality = [], []
    for i, (r, pr) in enumerate(zip(rows, preds)):
        if pr is None:
            flags.append("")
            quality.append(r[12])
            continue
        for j, name in enumerate(pr["names"]):
            k = names.index(name)
            for arr, key in ((prediction, "values"), (lower, "lower"), (upper, "upper")):
                vals = pr.get(key)
                arr[i, k] = np.nan if vals is None or vals[j] is None else vals[j]
        if pr.get("ood"):
            ood[i] = [pr["ood"][k] for k in ("t2", "q", "t2_limit", "q_limit")]
        flags.append(",".join(pr["flags"]))
        quality.append(pr["flags"][0] if pr["flags"] else Quality.OK.value)

    def indexed(column: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        order = list(dict.fromkeys(r[column] for r in rows if r[column] is not None))
        spectra = np.stack([blobs[s] for s in order]) if order else np.zeros((0, p))
        return spectra, np.array([order.index(r[column]) if r[column] is not None else -1 for r in rows])

    dark_spectra, dark_index = indexed(9)
    white_spectra, white_index = indexed(10)
    arrays: dict[str, Any] = {
        "X": X, "wavelengths": wavelengths, "y": np.full((n, len(names)), np.nan, dtype=np.float32),
        "target_names": np.array(names, dtype=str), "target_units": np.array([units[k] for k in names], dtype=str),
        "sample_id": np.array([r[17] or "" for r in rows], dtype=str),
        "seq": np.array([r[1] for r in rows], dtype=np.int64),
        "device_timestamp_us": np.array([r[2] for r in rows], dtype=np.int64),
        "device_boot_id": np.array([-1 if r[3] is None else r[3] for r in rows], dtype=np.int64),
        "received_unix_s": np.array([r[0] for r in rows], dtype=np.float64),
        "received_utc": np.array([_dt.datetime.fromtimestamp(r[0], _dt.timezone.utc).isoformat() for r in rows],
                                 dtype=str),
        "integration_time_us": np.array([-1 if r[4] is None else r[4] for r in rows], dtype=np.int64),
        "signal": np.array([r[5] for r in rows], dtype=str),
        "outcome": np.array([r[12] for r in rows], dtype=str),
        "quality": np.array(quality, dtype=str), "quality_flags": np.array(flags, dtype=str),
        "prediction": prediction, "prediction_lower": lower, "prediction_upper": upper,
        "ood_stats": ood, "ood_stats_names": np.array(["t2", "q", "t2_limit", "q_limit"]),
        "model_id": np.array([r[14] for r in rows], dtype=str),
        "model_version": np.array([r[15] for r in rows], dtype=str),
        "bundle_sha256": np.array([r[16] for r in rows], dtype=str),
        "dark_spectra": dark_spectra, "dark_index": dark_index,
        "white_spectra": white_spectra, "white_index": white_index,
        "axis_is_pixel_index": np.array(not axes),
        "tags_sample_id": np.array([t[0] for t in tags], dtype=str),
        "tags_unix_s": np.array([t[1] for t in tags], dtype=np.float64),
        "tags_frames": np.array([t[2] for t in tags], dtype=np.int64),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return n
