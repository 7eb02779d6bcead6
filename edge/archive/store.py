"""The archive's SQLite file: its schema (tables ``blobs``, ``frames``, ``tags``) and the open connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["SCHEMA", "Store"]

SCHEMA = """
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



class Store:
    """The SQLite file (used by one thread at a time: the writer, or :func:`export_npz`)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.known: set[str] = {r[0] for r in self.db.execute("SELECT sha256 FROM blobs")}
        frames_bytes = self.db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM frames").fetchone()[0]
        blob_bytes = self.db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM blobs").fetchone()[0]
        self.bytes = int(frames_bytes) + int(blob_bytes)
        self.rows = int(self.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0])

    def close(self) -> None:
        self.db.close()

