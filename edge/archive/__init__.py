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

Layout: :mod:`edge.archive.policy` (what is kept, sample tags), :mod:`edge.archive.records` (one record and how
its parts are encoded), :mod:`edge.archive.store` (the SQLite schema and file), :mod:`edge.archive.writer`
(:class:`Archive`: the caller side and the writer thread) and :mod:`edge.archive.export` (:func:`export_npz`,
:func:`parse_time`). Every public name is importable from :mod:`edge.archive` itself.
"""

from __future__ import annotations

from edge.archive.export import ArchiveError, export_npz, parse_time
from edge.archive.policy import POLICIES, ArchivePolicy
from edge.archive.records import ArchiveRecord
from edge.archive.writer import EVICT_TO_FRACTION, LOG_INTERVAL_S, Archive

__all__ = ["Archive", "ArchiveError", "ArchivePolicy", "ArchiveRecord", "POLICIES", "export_npz", "parse_time",
           "EVICT_TO_FRACTION", "LOG_INTERVAL_S"]
