"""Tests of edge.archive: what each policy keeps, sample tags, size and age bounds, a writer that never blocks the
caller, and the export's dataset layout."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.archive import Archive, ArchiveError, ArchivePolicy, export_npz, parse_time
from edge.inference import Prediction, Rejection, RejectReason
from edge.publish.messages import OodStats
from edge.publish.schema import Quality
from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
from firmware_bridge.frames import Spectrum

PIXELS = 32
#: Seconds a thread calling offer() is given to return while the writer is blocked (a liveness bound, not speed).
OFFER_LIVENESS_S = 30.0


class _Bundle:
    model_id = "demo"
    model_version = "1.0.0"
    file_sha256 = "ab" * 32
    wavelengths = np.linspace(1000.0, 1600.0, PIXELS)


def _frame(seq: int) -> Spectrum:
    counts = (np.arange(PIXELS, dtype=np.uint16) * 10 + seq).astype(np.uint16)
    return Spectrum(seq=seq, timestamp_us=1_000_000 + seq, integration_time_us=5000, counts=counts)


def _pred(seq: int, *, flags: tuple[Quality, ...] = ()) -> Prediction:
    return Prediction(seq=seq, timestamp_us=1_000_000 + seq, names=("api",), units=("%",), values=(float(seq),),
                      lower=(seq - 1.0,), upper=(seq + 1.0,), interval_coverage=0.9,
                      ood=OodStats(t2=1.0, q=2.0, t2_limit=10.0, q_limit=20.0), flags=flags, reasons=(),
                      compute_us=1.0, model_id="demo", model_version="1.0.0")


def _refs() -> ReferenceSet:
    return ReferenceSet(
        dark=ReferenceSpectrum(ReferenceKind.DARK, np.full(PIXELS, 100.0), captured_at_s=1.0, integration_time_us=5000),
        reference=ReferenceSpectrum(ReferenceKind.WHITE, np.full(PIXELS, 4000.0), captured_at_s=2.0,
                                    integration_time_us=5000))


class _Clock:
    def __init__(self, t: float = 1_767_225_600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _archive(tmp_path: Path, policy: str = "all", clock: Any = None, **kw: Any) -> Archive:
    pol = ArchivePolicy(policy, every_n=kw.pop("every_n", 1), window_frames=kw.pop("window_frames", 0))
    return Archive(tmp_path / "archive.sqlite", pol, max_bytes=kw.pop("max_bytes", 1 << 30),
                   max_age_days=kw.pop("max_age_days", 90.0), clock=clock or _Clock(), **kw)


def _offer(ar: Archive, seq: int, outcome: Any = None, refs: ReferenceSet | None = None) -> None:
    ar.offer(_frame(seq), outcome if outcome is not None else _pred(seq), refs if refs is not None else _refs(),
             signal="counts", boot_id=7, wavelengths_nm=None, bundle=_Bundle())


def _rows(ar: Archive) -> list[tuple[int, str | None]]:
    db = sqlite3.connect(str(ar.path))
    try:
        return [(int(r[0]), r[1]) for r in db.execute("SELECT seq, sample_id FROM frames ORDER BY id")]
    finally:
        db.close()


@pytest.mark.parametrize(("policy", "expected"), [
    ("all", list(range(10))),
    ("every_nth", [0, 3, 6, 9]),
    ("flagged", [2, 5, 7]),  # 2 and 5 flagged, 7 rejected
    ("tagged", []),
])
def test_policy_decides_which_spectra_are_kept(tmp_path: Path, policy: str, expected: list[int]) -> None:
    ar = _archive(tmp_path, policy, every_n=3)
    ar.start()
    for seq in range(10):
        if seq in (2, 5):
            outcome: Any = _pred(seq, flags=(Quality.OUT_OF_DISTRIBUTION,) if seq == 2 else (Quality.STALE_REFERENCE,))
        elif seq == 7:
            outcome = Rejection(seq, 1_000_007, RejectReason.MISSING_REFERENCE, "no dark")
        else:
            outcome = _pred(seq)
        _offer(ar, seq, outcome)
    ar.close()
    assert [s for s, _ in _rows(ar)] == expected
    assert ar.counters()["archive_records"] == len(expected)


def test_a_tag_marks_the_next_spectra_and_keeps_the_window_around_them(tmp_path: Path) -> None:
    ar = _archive(tmp_path, "tagged", window_frames=2)
    ar.start()
    for seq in range(5):
        _offer(ar, seq)
    t = ar.tag("LAB-42", frames=3, request_id="r1")
    for seq in range(5, 15):
        _offer(ar, seq)
    ar.close()
    rows = _rows(ar)
    assert rows == [(3, None), (4, None), (5, "LAB-42"), (6, "LAB-42"), (7, "LAB-42"), (8, None), (9, None)]
    db = sqlite3.connect(str(ar.path))
    assert db.execute("SELECT sample_id, tagged_unix_s, frames, request_id FROM tags").fetchall() == [
        ("LAB-42", t, 3, "r1")]
    db.close()
    assert ar.counters()["archive_tagged"] == 3


def test_a_tagged_spectrum_is_kept_whatever_the_policy(tmp_path: Path) -> None:
    ar = _archive(tmp_path, "every_nth", every_n=100)
    ar.start()
    _offer(ar, 0)
    _offer(ar, 1)
    ar.tag("S1", frames=1)
    _offer(ar, 2)
    _offer(ar, 3)
    ar.close()
    assert _rows(ar) == [(0, None), (2, "S1")]


def test_references_are_stored_once_and_rows_point_at_them(tmp_path: Path) -> None:
    ar = _archive(tmp_path)
    ar.start()
    refs = _refs()
    for seq in range(20):
        _offer(ar, seq, refs=refs)
    ar.close()
    db = sqlite3.connect(str(ar.path))
    kinds = sorted(r[0] for r in db.execute("SELECT kind FROM blobs"))
    assert kinds == ["dark", "wavelengths", "white"]
    assert db.execute("SELECT COUNT(DISTINCT dark_sha256), COUNT(*) FROM frames").fetchone() == (1, 20)
    blob, dtype = db.execute("SELECT spectrum, dtype FROM frames WHERE seq = 4").fetchone()
    db.close()
    assert dtype == "<u2"
    np.testing.assert_array_equal(np.frombuffer(blob, dtype="<u2"), _frame(4).counts)


def test_size_bound_evicts_the_oldest_and_counts_them(tmp_path: Path) -> None:
    ar = _archive(tmp_path, max_bytes=65_536)
    ar.start()
    for seq in range(400):  # each row ~64 B of counts + prediction text + overhead: well over 64 KiB in all
        _offer(ar, seq)
    ar.close()
    rows = [s for s, _ in _rows(ar)]
    evicted = ar.counters()["archive_evicted"]
    assert evicted > 0 and len(rows) == 400 - evicted
    assert rows == list(range(evicted, 400))  # oldest first
    assert ar.gauges()["archive_bytes"] <= 65_536
    db = sqlite3.connect(str(ar.path))
    stored = db.execute("SELECT SUM(size_bytes) FROM frames").fetchone()[0] + db.execute(
        "SELECT SUM(size_bytes) FROM blobs").fetchone()[0]
    db.close()
    assert stored == ar.gauges()["archive_bytes"]


def test_age_bound_evicts_old_spectra_and_their_references(tmp_path: Path) -> None:
    clock = _Clock()
    ar = _archive(tmp_path, clock=clock, max_age_days=1.0)
    ar.start()
    old_refs = _refs()
    for seq in range(5):
        _offer(ar, seq, refs=old_refs)
    ar.close()
    clock.t += 2 * 86_400.0
    ar = _archive(tmp_path, clock=clock, max_age_days=1.0)  # reopened two days later
    ar.start()
    new_refs = ReferenceSet(dark=ReferenceSpectrum(ReferenceKind.DARK, np.full(PIXELS, 90.0), captured_at_s=3.0))
    _offer(ar, 5, refs=new_refs)
    ar.close()
    assert [s for s, _ in _rows(ar)] == [5]
    assert ar.counters()["archive_evicted"] == 5
    db = sqlite3.connect(str(ar.path))
    assert sorted(r[0] for r in db.execute("SELECT kind FROM blobs")) == ["dark", "wavelengths"]  # old white gone
    db.close()


def test_offer_never_waits_for_a_blocked_writer_and_counts_what_it_drops(tmp_path: Path) -> None:
    ar = _archive(tmp_path, queue_max=8)
    release = threading.Event()
    entered = threading.Event()
    real_write = ar._write

    def slow_write(batch: Any) -> None:  # a disk that does not answer until released
        entered.set()
        release.wait()
        real_write(batch)

    ar._write = slow_write  # type: ignore[method-assign]  # inject the slow disk
    ar.start()
    _offer(ar, 0)
    assert entered.wait(OFFER_LIVENESS_S)  # the writer holds record 0 and is stuck
    done = threading.Event()

    def producer() -> None:
        for seq in range(1, 101):
            _offer(ar, seq)
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    returned = done.wait(OFFER_LIVENESS_S)
    release.set()
    assert returned, "offer() waited for the blocked writer"
    ar.close()
    counters = ar.counters()
    assert counters["archive_dropped"] == 100 - 8
    assert counters["archive_records"] == 1 + 8
    assert [s for s, _ in _rows(ar)] == list(range(0, 9))


def test_a_file_that_cannot_be_opened_counts_write_errors_and_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    ar = Archive(blocker / "archive.sqlite", ArchivePolicy("all"), max_bytes=1 << 20, max_age_days=1.0)
    ar.start()
    _offer(ar, 0)
    ar.close()
    assert ar.counters()["archive_write_errors"] == 1 and ar.counters()["archive_records"] == 0


def test_export_writes_the_dataset_layout_with_raw_values_references_and_predictions(tmp_path: Path) -> None:
    clock = _Clock()
    ar = _archive(tmp_path, clock=clock)
    ar.start()
    for seq in range(6):
        if seq == 2:
            ar.tag("LAB-1", frames=2)
        outcome: Any = Rejection(seq, 1, RejectReason.BAD_INPUT, "nan") if seq == 5 else _pred(seq)
        _offer(ar, seq, outcome)
        clock.t += 1.0
    ar.close()
    out = tmp_path / "out" / "export.npz"
    start = clock.t - 6.0
    assert export_npz(ar.path, out, since_unix_s=start + 1.0, until_unix_s=start + 5.0) == 5
    with np.load(out, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    assert d["X"].shape == (5, PIXELS) and d["X"].dtype == np.float32
    np.testing.assert_array_equal(d["X"][0], _frame(1).counts.astype(np.float32))
    np.testing.assert_allclose(d["wavelengths"], _Bundle.wavelengths)
    assert list(d["seq"]) == [1, 2, 3, 4, 5]
    assert list(d["sample_id"]) == ["", "LAB-1", "LAB-1", "", ""]
    assert list(d["target_names"]) == ["api"] and np.isnan(d["y"]).all() and d["y"].shape == (5, 1)
    np.testing.assert_array_equal(d["prediction"][:4, 0], [1.0, 2.0, 3.0, 4.0])
    assert np.isnan(d["prediction"][4, 0]) and d["outcome"][4] == "rejected:bad_input"
    assert list(d["quality"][:4]) == ["ok"] * 4
    assert list(d["device_boot_id"]) == [7] * 5 and set(d["model_id"]) == {"demo"}
    np.testing.assert_array_equal(d["dark_spectra"][d["dark_index"][0]], np.full(PIXELS, 100.0))
    np.testing.assert_array_equal(d["white_spectra"][d["white_index"][0]], np.full(PIXELS, 4000.0))
    assert list(d["tags_sample_id"]) == ["LAB-1"]
    assert export_npz(ar.path, tmp_path / "one.npz", sample_id="LAB-1") == 2
    with pytest.raises(ArchiveError, match="no archived spectrum matches"):
        export_npz(ar.path, tmp_path / "none.npz", sample_id="nope")


def test_parse_time_reads_iso_with_and_without_zone() -> None:
    assert parse_time("2026-01-01T00:00:00Z") == parse_time("2026-01-01T00:00:00") == 1_767_225_600.0
    assert parse_time("2026-01-01T01:00:00+01:00") == 1_767_225_600.0
    with pytest.raises(ArchiveError, match="expected an ISO 8601 time"):
        parse_time("yesterday")
