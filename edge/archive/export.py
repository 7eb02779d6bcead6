"""``spectro-edge export``: archived spectra selected by time window or sample id, written as a dataset ``.npz``."""

from __future__ import annotations

import datetime as _dt
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import EdgeError
from edge.jsonstrict import loads_strict
from edge.publish.schema import Quality

__all__ = ["ArchiveError", "export_npz", "parse_time"]


class ArchiveError(EdgeError, ValueError):
    """The archive file cannot be read or exported (expected X, got Y)."""



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
    preds = [loads_strict(r[13]) if r[12] == "prediction" and r[13] else None for r in rows]
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
