"""Atomic bundle files of the lab side: write a bundle's members into a zip and commit it after the edge check.

A bundle is written into a temporary file next to its target, re-loaded with :func:`edge.bundle.load_bundle`
(hashes, schema, self-test, and signature when one is given) and only then moved over the target, so a bundle that
exists at its path has passed the device's own check at least once. Used by :mod:`trainer.bundle` (write) and
:mod:`trainer.signing` (sign).
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.bundle import (
    AUTOENCODER,
    GOLDEN,
    INTERVALS,
    MANIFEST,
    METRICS,
    MODEL,
    MODEL_2,
    OOD,
    PREPROCESSING,
    PREPROCESSING_2,
    SIGNATURE,
    load_bundle,
)
from edge.errors import BundleError
from trainer.errors import BundleWriteError

__all__ = ["write_zip", "commit_bundle", "temp_path_for"]

log = logging.getLogger(__name__)

#: Member order inside the zip (manifest first so a reader can show it early; signature last).
_MEMBER_ORDER: tuple[str, ...] = (MANIFEST, MODEL, PREPROCESSING, MODEL_2, PREPROCESSING_2, OOD, INTERVALS,
                                  AUTOENCODER, METRICS, GOLDEN, SIGNATURE)
#: Fixed zip timestamp: the bundle's bytes depend on its contents only (creation time is in the manifest).
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def write_zip(path: Path, members: Mapping[str, bytes]) -> None:
    """Write ``members`` into a new zip at ``path`` (fixed order and timestamps), flushed to disk."""
    unknown = sorted(set(members) - set(_MEMBER_ORDER))
    if unknown:
        raise BundleWriteError(f"expected bundle members among {list(_MEMBER_ORDER)}, got {unknown}")
    with open(path, "wb") as fh:
        with zipfile.ZipFile(fh, "w") as zf:
            for name in _MEMBER_ORDER:
                if name not in members:
                    continue
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, members[name], compresslevel=9)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def commit_bundle(tmp: Path, final: Path, public_key: Any = None) -> None:
    """Re-load ``tmp`` with the edge reader (self-test on), then atomically move it to ``final``."""
    try:
        bundle = load_bundle(tmp, public_key=public_key, self_test=True)
    except BundleError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleWriteError(f"the written bundle fails the edge reader's check: {exc}") from exc
    assert bundle.self_test is not None
    log.info("bundle re-loaded by the edge reader: self-test %s", bundle.self_test.summary())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def temp_path_for(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")
