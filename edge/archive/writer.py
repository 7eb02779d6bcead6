"""The archive: policy and tags on the daemon's thread, a writer thread storing records in the SQLite file."""

from __future__ import annotations

import collections
import hashlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from edge.archive.policy import ArchivePolicy
from edge.archive.records import ArchiveRecord, f8_bytes, le_bytes, prediction_json, with_sample
from edge.archive.store import Store
from edge.inference import Prediction, Rejection

if TYPE_CHECKING:
    from edge.config import ArchiveConfig
    from edge.references import ReferenceSet

__all__ = ["Archive", "AGE_CHECK_INTERVAL_S", "EVICT_TO_FRACTION", "LOG_INTERVAL_S", "ROW_OVERHEAD_BYTES",
           "WRITE_BATCH"]

log = logging.getLogger("edge.archive")

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
        self._store: Store | None = None
        self._blob_cache: dict[int, tuple[Any, str]] = {}
        try:
            self._store = Store(self.path)
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
                record = with_sample(record, sample_id)
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
        """``archive_bytes`` (stored, see :mod:`edge.archive`), ``archive_rows``, ``archive_queue``,
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
            data = f8_bytes(values)
            sha = hashlib.sha256(kind.encode() + b"\0" + data).hexdigest()
            if len(self._blob_cache) >= 16:
                self._blob_cache.clear()
            self._blob_cache[id(obj)] = (obj, sha)
        assert self._store is not None
        if sha not in self._store.known and not any(r[0] == sha for r in rows):
            data = f8_bytes(values)
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
            dtype, data = le_bytes(np.asarray(r.frame.counts))
            dark = self._blob(blobs, "dark", r.dark, None if r.dark is None else r.dark.counts,
                              captured=None if r.dark is None else r.dark.captured_at_s,
                              integration=None if r.dark is None else r.dark.integration_time_us)
            white = self._blob(blobs, "white", r.white, None if r.white is None else r.white.counts,
                               captured=None if r.white is None else r.white.captured_at_s,
                               integration=None if r.white is None else r.white.integration_time_us)
            axis = self._blob(blobs, "wavelengths", r.wavelengths_nm, r.wavelengths_nm)
            pred = prediction_json(r.outcome)
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

