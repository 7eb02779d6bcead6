"""The audit log's hash chain (edge/audit.py, issue 18): appended records verify; one changed byte, a deleted or
reordered record or file, a torn last line or a cut-off end make ``verify`` fail at the exact record; rotation and
restarts keep the chain; a torn line is cut at the next open and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.audit import GENESIS, AuditError, AuditLog, audit_files, canonical_hash, verify
from edge.cli import main as edge_main

T0 = 1767225600.0


def _clock() -> float:
    return T0


def _write(directory: Path, n: int, **kw: int) -> AuditLog:
    log = AuditLog.open(directory, clock=_clock, **kw)
    for i in range(n):
        log.append("command_result", {"command": "capture_dark", "request_id": f"r-{i}", "verdict": "ok"})
    return log


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_appended_records_verify_from_genesis(tmp_path: Path) -> None:
    log = _write(tmp_path, 5)
    head = log.head
    log.close()
    report = verify(tmp_path)
    assert report.ok, report.error
    assert (report.records, report.first_seq, report.last_seq, report.anchored) == (5, 1, 5, True)
    assert report.head == head and report.first_time_utc == "2026-01-01T00:00:00.000000Z"
    assert "from the first record (genesis)" in report.summary() and head in report.summary()
    records = [json.loads(line) for line in _lines(tmp_path / "audit-000001.jsonl")]
    assert records[0]["prev"] == GENESIS
    assert all(r["hash"] == canonical_hash(r) for r in records)
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:]))


def test_one_changed_byte_fails_at_that_record(tmp_path: Path) -> None:
    _write(tmp_path, 5).close()
    f = tmp_path / "audit-000001.jsonl"
    lines = _lines(f)
    lines[2] = lines[2].replace(b'"r-2"', b'"r-9"')
    f.write_bytes(b"".join(lines))
    report = verify(tmp_path)
    assert not report.ok
    assert report.error is not None and report.error.startswith("audit-000001.jsonl line 3 (seq 3, command_result)")
    assert "altered" in report.error


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    _write(tmp_path, 5).close()
    f = tmp_path / "audit-000001.jsonl"
    lines = _lines(f)
    rec = json.loads(lines[1])
    rec["details"]["verdict"] = "refused"
    rec["hash"] = canonical_hash(rec)
    lines[1] = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
    f.write_bytes(b"".join(lines))
    report = verify(tmp_path)
    assert not report.ok and report.error is not None
    assert report.error.startswith("audit-000001.jsonl line 3 (seq 3): prev does not match")


def test_a_deleted_record_fails_at_the_next(tmp_path: Path) -> None:
    _write(tmp_path, 5).close()
    f = tmp_path / "audit-000001.jsonl"
    lines = _lines(f)
    del lines[3]
    f.write_bytes(b"".join(lines))
    report = verify(tmp_path)
    assert not report.ok and report.error is not None
    assert report.error.startswith("audit-000001.jsonl line 4 (seq 5): prev does not match the hash of the record "
                                   "before it (seq 3, audit-000001.jsonl line 3)")


def test_records_cut_off_the_end_are_found_with_the_exported_head(tmp_path: Path) -> None:
    log = _write(tmp_path, 5)
    exported = log.head
    log.close()
    f = tmp_path / "audit-000001.jsonl"
    f.write_bytes(b"".join(_lines(f)[:-1]))  # a whole record removed at the end: the chain alone cannot tell
    assert verify(tmp_path).ok
    report = verify(tmp_path, expect_head=exported)
    assert not report.ok and report.error is not None and f"expected head {exported} is not in the log" in report.error


def test_rotation_keeps_the_chain_and_the_oldest_kept_file_anchors_it(tmp_path: Path) -> None:
    log = _write(tmp_path, 40, max_bytes=1024, keep_files=3)
    head, seq = log.head, log.seq
    log.close()
    files = audit_files(tmp_path)
    assert len(files) == 3 and files[0][0] > 1, files
    report = verify(tmp_path)
    assert report.ok, report.error
    assert not report.anchored and report.last_seq == seq and report.head == head
    assert f"anchored at seq {report.first_seq}" in report.summary()
    rotated = [json.loads(line) for _, p in files for line in _lines(p) if b'"log_rotated"' in line]
    assert rotated and all(json.loads(_lines(p)[0])["event"] == "log_rotated" for _, p in files[1:])
    deleted = {name for r in rotated for name in r["details"]["deleted_files"]}
    assert deleted and not deleted & {p.name for _, p in files}
    for _, p in files:
        assert p.stat().st_size <= 1024


def test_reordered_files_fail(tmp_path: Path) -> None:
    _write(tmp_path, 30, max_bytes=1024, keep_files=100).close()
    files = audit_files(tmp_path)
    assert len(files) >= 3
    a, b = files[0][1], files[1][1]
    tmp = tmp_path / "swap"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    report = verify(tmp_path)
    assert not report.ok and report.error is not None
    assert "expected seq 1 for the first record" in report.error or "prev does not match" in report.error


def test_a_torn_last_line_fails_and_the_next_open_cuts_and_records_it(tmp_path: Path) -> None:
    _write(tmp_path, 3).close()
    f = tmp_path / "audit-000001.jsonl"
    torn = b'{"seq":4,"time_utc":"2026-01-01T00:00:00.000000Z","run":"ab'
    with open(f, "ab") as out:
        out.write(torn)
    report = verify(tmp_path)
    assert not report.ok and report.error is not None
    assert report.error.startswith(f"audit-000001.jsonl line 4: torn last line ({len(torn)} bytes")

    log = AuditLog.open(tmp_path, clock=_clock)
    log.append("daemon_started", {})
    log.close()
    report = verify(tmp_path)
    assert report.ok, report.error
    records = report.records_list
    assert [r["event"] for r in records[3:]] == ["log_recovered", "daemon_started"]
    recovered = records[3]["details"]
    assert recovered["file"] == "audit-000001.jsonl" and recovered["dropped_bytes"] == len(torn)
    assert recovered["offset"] == len(b"".join(_lines(f)[:3]))
    import hashlib

    assert recovered["dropped_sha256"] == hashlib.sha256(torn).hexdigest()


def test_reopening_resumes_the_chain(tmp_path: Path) -> None:
    first = _write(tmp_path, 2)
    run1 = first.run
    first.close()
    second = _write(tmp_path, 2)
    assert second.seq == 4 and second.run != run1
    second.close()
    report = verify(tmp_path)
    assert report.ok and report.records == 4 and report.anchored


def test_a_complete_bad_last_record_is_not_cut(tmp_path: Path) -> None:
    """Only a torn line is cut; a complete record that does not verify stays as evidence."""
    _write(tmp_path, 3).close()
    f = tmp_path / "audit-000001.jsonl"
    lines = _lines(f)
    lines[-1] = lines[-1].replace(b'"r-2"', b'"r-7"')
    f.write_bytes(b"".join(lines))
    AuditLog.open(tmp_path, clock=_clock).close()
    assert f.read_bytes() == b"".join(lines)
    report = verify(tmp_path)
    assert not report.ok and report.error is not None and "line 3 (seq 3, command_result)" in report.error


def test_caller_mistakes_raise(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path)
    with pytest.raises(AuditError, match="expected a lower-case identifier"):
        log.append("Bad Event", {})
    with pytest.raises(AuditError, match="expected JSON values"):
        log.append("alert", {"x": float("nan")})
    log.close()
    with pytest.raises(AuditError, match="no such file or directory"):
        verify(tmp_path / "missing")


def test_cli_verify_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "audit"
    _write(d, 4).close()
    assert edge_main(["audit", "verify", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 4 records in 1 file(s)")
    assert edge_main(["audit", "export", str(d), "--out", str(tmp_path / "x.jsonl")]) == 0
    exported = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in exported] == [1, 2, 3, 4]
    f = d / "audit-000001.jsonl"
    f.write_bytes(f.read_bytes().replace(b'"r-1"', b'"r-x"'))
    assert edge_main(["audit", "verify", str(d)]) == 1
    assert capsys.readouterr().out.startswith("FAIL: audit-000001.jsonl line 2 (seq 2, command_result)")
    assert edge_main(["audit", "export", str(d), "--out", str(tmp_path / "y.jsonl")]) == 1
    assert not (tmp_path / "y.jsonl").exists()


def test_a_verified_bundle_names_its_signing_key(repo_root: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    from edge.audit import key_id
    from edge.bundle import load_bundle
    from edge.daemon import bundle_audit, signer_key_id

    data = repo_root / "tests" / "data" / "bundles"
    pem = data / "v1_signing.pub.pem"
    raw = load_pem_public_key(pem.read_bytes()).public_bytes(Encoding.Raw, PublicFormat.Raw)
    expected = key_id("ed25519", raw)
    assert signer_key_id(pem) == expected and signer_key_id(None) is None
    signed = load_bundle(data / "v1_counts_two_targets.spectrolite", public_key=pem, self_test=False)
    details = bundle_audit(signed, signer_key_id(pem))
    assert details["signer"] == expected and details["sha256"] == signed.file_sha256
    unverified = load_bundle(data / "v1_counts_two_targets.spectrolite", self_test=False)
    assert bundle_audit(unverified, None)["signer"] == "signed, not verified (no bundle.public_key_path)"
