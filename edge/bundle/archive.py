"""Zip layer of a bundle: member names, size caps, the structural read of the archive and the member hashes.

:func:`read_members` reads a ``.spectrolite`` file with every structural check (size caps against zip bombs, plain
member names, CRCs, no encryption, required members present) and nothing else; :func:`check_member_hashes` then
checks each member against the SHA-256 and size that the manifest records.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from edge.errors import BundleError

__all__ = [
    "BUNDLE_SUFFIX",
    "MANIFEST",
    "SIGNATURE",
    "MODEL",
    "PREPROCESSING",
    "OOD",
    "INTERVALS",
    "METRICS",
    "GOLDEN",
    "AUTOENCODER",
    "MODEL_2",
    "PREPROCESSING_2",
    "MEMBER_LIMITS_BYTES",
    "REQUIRED_MEMBERS",
    "OPTIONAL_MEMBERS",
    "MAX_BUNDLE_BYTES",
    "sha256_hex",
    "read_members",
    "check_member_hashes",
]

#: Suffix of a bundle file.
BUNDLE_SUFFIX: Final[str] = ".spectrolite"

MANIFEST: Final[str] = "manifest.json"
SIGNATURE: Final[str] = "manifest.sig"
MODEL: Final[str] = "model.tflite"
PREPROCESSING: Final[str] = "preprocessing.json"
OOD: Final[str] = "ood.json"
INTERVALS: Final[str] = "intervals.json"
METRICS: Final[str] = "metrics.json"
GOLDEN: Final[str] = "golden.npz"
#: The optional int8 autoencoder of the preprocessed features (format 3; :mod:`edge.autoencoder`).
AUTOENCODER: Final[str] = "autoencoder.tflite"
#: The second serving member of a per-target bundle (format 4; manifest ``serving``): its model and its own
#: preprocessing (:mod:`edge.bundle.serving`).
MODEL_2: Final[str] = "model_2.tflite"
PREPROCESSING_2: Final[str] = "preprocessing_2.json"

_MiB: Final[int] = 1024 * 1024
#: Largest uncompressed size accepted for each member (a zip bomb or a hostile file stops at its cap).
MEMBER_LIMITS_BYTES: Final[Mapping[str, int]] = {
    MANIFEST: 1 * _MiB,
    SIGNATURE: 1024,
    MODEL: 64 * _MiB,
    PREPROCESSING: 16 * _MiB,
    OOD: 16 * _MiB,
    INTERVALS: 1 * _MiB,
    METRICS: 4 * _MiB,
    GOLDEN: 16 * _MiB,
    AUTOENCODER: 16 * _MiB,
    MODEL_2: 64 * _MiB,
    PREPROCESSING_2: 16 * _MiB,
}
REQUIRED_MEMBERS: Final[tuple[str, ...]] = (MANIFEST, MODEL, PREPROCESSING, METRICS, GOLDEN)
OPTIONAL_MEMBERS: Final[tuple[str, ...]] = (OOD, INTERVALS, AUTOENCODER, MODEL_2, PREPROCESSING_2, SIGNATURE)
#: Largest bundle file accepted (sum of the member caps plus zip overhead).
MAX_BUNDLE_BYTES: Final[int] = sum(MEMBER_LIMITS_BYTES.values()) + _MiB


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _check_member_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or "\x00" in name or name in (".", "..") or ":" in name:
        raise BundleError(f"member name {name!r} is not allowed (no paths, only plain file names)")
    if name not in MEMBER_LIMITS_BYTES:
        raise BundleError(f"unknown member {name!r}; expected only {sorted(MEMBER_LIMITS_BYTES)}")


def read_members(path: str | Path) -> tuple[dict[str, bytes], str]:
    """Read every member of a bundle file with the structural checks, nothing else.

    Parameters
    ----------
    path : str or Path
        The ``.spectrolite`` file.

    Returns
    -------
    members : dict of str to bytes
        Uncompressed bytes of each member, CRC-checked and within its size cap.
    file_sha256 : str
        SHA-256 of the whole bundle file as read.

    Raises
    ------
    BundleError
        Missing or oversized file, not a zip (e.g. truncated), unknown or path-like member names, duplicates,
        encrypted or oversized members, CRC or decompression failures, missing required members.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise BundleError(f"bundle {p.name}: {size} bytes exceeds the limit of {MAX_BUNDLE_BYTES} bytes")
        chunks: list[bytes] = []
        total = 0
        with p.open("rb") as fh:  # in chunks: a file growing while read is still cut at the limit
            while total <= MAX_BUNDLE_BYTES and (chunk := fh.read(_MiB)):
                chunks.append(chunk)
                total += len(chunk)
        raw = b"".join(chunks)
    except OSError as exc:
        raise BundleError(f"bundle {p}: cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle {p.name}: more than {MAX_BUNDLE_BYTES} bytes")
    file_sha = sha256_hex(raw)
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise BundleError(f"bundle {p.name}: not a valid zip archive (truncated or corrupt): {exc}") from exc
    members: dict[str, bytes] = {}
    with zf:
        infos = zf.infolist()
        seen: set[str] = set()
        for info in infos:
            _check_member_name(info.filename)
            if info.filename in seen:
                raise BundleError(f"member {info.filename}: appears twice in the archive")
            seen.add(info.filename)
        for info in infos:
            name = info.filename
            limit = MEMBER_LIMITS_BYTES[name]
            if info.flag_bits & 0x1:
                raise BundleError(f"member {name}: is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise BundleError(
                    f"member {name}: expected stored or deflated, got compression method {info.compress_type}"
                )
            if info.file_size > limit:
                raise BundleError(f"member {name}: {info.file_size} bytes exceeds the limit of {limit} bytes")
            try:
                with zf.open(info) as fh:
                    data = fh.read(limit + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
                raise BundleError(f"member {name}: corrupted ({exc})") from exc
            if len(data) > limit:
                raise BundleError(f"member {name}: more than {limit} bytes once uncompressed")
            if len(data) != info.file_size:
                raise BundleError(f"member {name}: expected {info.file_size} bytes, got {len(data)}")
            members[name] = data
    missing = [m for m in REQUIRED_MEMBERS if m not in members]
    if missing:
        raise BundleError(f"bundle {p.name}: missing member(s) {', '.join(missing)}")
    return members, file_sha


def check_member_hashes(manifest: Mapping[str, Any], members: Mapping[str, bytes]) -> None:
    """Each member other than the manifest and its signature against ``manifest["members"]`` (size, SHA-256)."""
    listed: Mapping[str, Any] = manifest["members"]
    present = {n for n in members if n not in (MANIFEST, SIGNATURE)}
    for name in sorted(present - set(listed)):
        raise BundleError(f"member {name}: present in the archive but not listed in the manifest")
    for name in sorted(set(listed) - present):
        raise BundleError(f"member {name}: listed in the manifest but missing from the archive")
    for name in sorted(present):
        data = members[name]
        entry = listed[name]
        if len(data) != entry["size"]:
            raise BundleError(f"member {name}: size mismatch (manifest says {entry['size']} bytes, got {len(data)})")
        if sha256_hex(data) != entry["sha256"]:
            raise BundleError(f"member {name}: sha256 mismatch")
