"""Anti-rollback of signed bundles: the order of bundle versions and the per-model high-water mark kept on disk.

A signed bundle proves who built it, not that it is the newest: anyone who kept an older signed bundle (or can
replace the bundle file) could put a model with a known flaw back into service.  :class:`RollbackGuard` refuses a
signed bundle older than the newest one of the same ``model_id`` served on this device, unless the configuration
says ``bundle.allow_rollback = true``.

Order of two versions of one model (:func:`compare_versions`): ``model_version`` is free text in the manifest
(``[A-Za-z0-9._-]``, e.g. ``1.0.0``, ``2026.02``, ``v3``, or ``1.0.0-transfer.20260131120000`` written by
``spectro-train transfer``), so only its leading release number is ordered: the dotted integers at its start,
after an optional ``v`` (``1.10.0`` > ``1.9.2``; a missing part counts as 0).  When both versions have one and they
differ, it decides; otherwise (equal release numbers, as a transfer's ``1.0.0-transfer...`` against ``1.0.0``, or a
version with no leading number) the manifest's ``created_utc`` decides, the time the trainer wrote the bundle.  Both
fields are inside the signed manifest.  Only signed bundles whose signature was verified are ordered: in an
unsigned bundle the version is whatever whoever wrote the file chose, so a rule on it would stop no one.

>>> a = BundleVersion("m", "1.9.2", "2026-01-01T00:00:00Z")
>>> compare_versions(BundleVersion("m", "1.10.0", "2025-01-01T00:00:00Z"), a)
1
>>> compare_versions(BundleVersion("m", "1.9.2-transfer.1", "2026-02-01T00:00:00Z"), a)
1
>>> compare_versions(BundleVersion("m", "nightly", "2025-12-31T23:59:59.5Z"), a)
-1
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from edge.errors import BundleError
from edge.jsonstrict import loads_strict

if TYPE_CHECKING:
    from edge.bundle import Bundle
    from edge.config import EdgeConfig

__all__ = ["BundleVersion", "Return", "RollbackGuard", "compare_versions", "release_number"]

log = logging.getLogger(__name__)

_RELEASE_RE: Final[re.Pattern[str]] = re.compile(r"^[vV]?(\d+(?:\.\d+)*)")
#: Format of the state file (``<device_id>.bundle-versions.json`` beside the outbox).
STATE_FORMAT: Final[int] = 1


@dataclass(frozen=True)
class BundleVersion:
    """What orders the bundles of one model: its id, its version text and when the trainer wrote it (UTC)."""

    model_id: str
    model_version: str
    created_utc: str

    @classmethod
    def of(cls, bundle: Bundle) -> BundleVersion:
        m = bundle.manifest
        return cls(str(m["model_id"]), str(m["model_version"]), str(m["created_utc"]))

    def describe(self) -> str:
        return f"{self.model_id} {self.model_version} (created {self.created_utc})"


@dataclass(frozen=True)
class Return:
    """The one rollback the guard lets through whatever the marks say: back to the bundle that served before a
    deployed bundle failed its probation (:mod:`edge.daemon.probation`), those exact bytes and nothing else.

    ``to`` and ``sha256`` name the bundle returned to; ``from_model_id`` is the model of the failed bundle, whose
    mark goes back to ``restore_mark`` (what it was before the failed bundle was installed; None: no mark).
    """

    to: BundleVersion
    sha256: str
    from_model_id: str
    restore_mark: BundleVersion | None

    def admits(self, bundle: Bundle) -> bool:
        return BundleVersion.of(bundle) == self.to and bundle.file_sha256 == self.sha256


def release_number(version: str) -> tuple[int, ...] | None:
    """The dotted integers at the start of ``version`` (after an optional ``v``), or None.

    >>> release_number("v1.10.0-rc1"), release_number("nightly")
    ((1, 10, 0), None)
    """
    m = _RELEASE_RE.match(version)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def _created(text: str) -> _dt.datetime:
    return _dt.datetime.strptime(text.replace("Z", "+0000"),
                                 "%Y-%m-%dT%H:%M:%S.%f%z" if "." in text else "%Y-%m-%dT%H:%M:%S%z")


def compare_versions(a: BundleVersion, b: BundleVersion) -> int:
    """-1, 0 or 1 as ``a`` is older than, as new as or newer than ``b`` (two versions of one model; see the
    module docstring for the order)."""
    ra, rb = release_number(a.model_version), release_number(b.model_version)
    if ra is not None and rb is not None:
        width = max(len(ra), len(rb))
        pa, pb = ra + (0,) * (width - len(ra)), rb + (0,) * (width - len(rb))
        if pa != pb:
            return -1 if pa < pb else 1
    ta, tb = _created(a.created_utc), _created(b.created_utc)
    return (ta > tb) - (ta < tb)


class RollbackGuard:
    """The newest signed version served per ``model_id``, kept in a small JSON file, and the check against it.

    Parameters
    ----------
    path : Path
        The state file; created on the first record, written atomically (temporary file, then rename).
    allow_rollback : bool
        ``bundle.allow_rollback``: when true, :meth:`check` lets an older bundle through and :meth:`record` then
        lowers the mark to it (the mark is the version in service after every change).
    """

    def __init__(self, path: Path, *, allow_rollback: bool = False) -> None:
        self.path = path
        self.allow_rollback = allow_rollback
        self._marks = self._read()
        self._return: Return | None = None

    @classmethod
    def from_config(cls, config: EdgeConfig) -> RollbackGuard:
        """The guard of a daemon: ``<device_id>.bundle-versions.json`` in the outbox's directory."""
        path = Path(config.outbox.path).parent / f"{config.device.device_id}.bundle-versions.json"
        return cls(path, allow_rollback=bool(config.bundle.allow_rollback))

    def _read(self) -> dict[str, BundleVersion]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("cannot read the bundle version marks %s: %s; rollbacks are not refused until a signed "
                      "bundle is served again", self.path, exc)
            return {}
        try:
            doc: Any = loads_strict(raw)
            if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or not isinstance(doc.get("marks"), dict):
                raise ValueError(f"expected {{'format': {STATE_FORMAT}, 'marks': {{...}}}}")
            marks = {}
            for model_id, v in doc["marks"].items():
                version = BundleVersion(str(model_id), str(v["model_version"]), str(v["created_utc"]))
                _created(version.created_utc)
                marks[version.model_id] = version
            return marks
        except (ValueError, TypeError, KeyError) as exc:
            log.error("ignoring the unreadable bundle version marks %s (%s); rollbacks are not refused until a "
                      "signed bundle is served again", self.path, exc)
            return {}

    def mark(self, model_id: str) -> BundleVersion | None:
        """The newest signed version of ``model_id`` served here, or None."""
        return self._marks.get(model_id)

    def permit_return(self, permit: Return | None) -> None:
        """Let exactly one return through (:class:`Return`), until :meth:`record` sees it served or None revokes it;
        a new permit replaces the old."""
        if permit is not None and permit != self._return:
            log.info("anti-rollback: the return to %s (sha256 %s) is allowed once (leaving a deployed %s)",
                     permit.to.describe(), permit.sha256[:16], permit.from_model_id)
        self._return = permit

    @property
    def pending_return(self) -> Return | None:
        """The permitted return not yet seen served (None: none)."""
        return self._return

    def problem(self, bundle: Bundle) -> str | None:
        """Why ``bundle`` is a refused rollback, or None (unsigned or unverified, another model, not older,
        rollbacks allowed, or the permitted :class:`Return`)."""
        if not bundle.signature_verified or self.allow_rollback:
            return None
        permit = self._return
        if permit is not None and permit.admits(bundle):
            return None
        new = BundleVersion.of(bundle)
        mark = self._marks.get(new.model_id)
        if mark is None or compare_versions(new, mark) >= 0:
            return None
        return (f"rollback refused: {new.describe()} is older than {mark.describe()}, the newest signed version of "
                f"{new.model_id} served on this device (set bundle.allow_rollback = true to allow it)")

    def check(self, bundle: Bundle) -> None:
        """Raise :class:`~edge.errors.BundleError` when :meth:`problem` names one."""
        problem = self.problem(bundle)
        if problem is not None:
            raise BundleError(problem)

    def record(self, bundle: Bundle) -> None:
        """Note that ``bundle`` is in service: its version becomes the mark of its model when it is newer (or, with
        rollbacks allowed, whenever it differs).  Only signed, verified bundles are recorded.

        Raises
        ------
        OSError
            The state file cannot be written (the caller logs and counts it; the mark in memory holds).
        """
        permit = self._return
        if permit is not None and permit.admits(bundle):  # the permitted return: the failed model's mark goes back
            self._return = None
            if permit.restore_mark is None:
                self._marks.pop(permit.from_model_id, None)
            else:
                self._marks[permit.from_model_id] = permit.restore_mark
            if permit.from_model_id != permit.to.model_id and bundle.signature_verified:
                mark = self._marks.get(permit.to.model_id)
                if mark is None or compare_versions(permit.to, mark) > 0:
                    self._marks[permit.to.model_id] = permit.to
            self._write()
            return
        if not bundle.signature_verified:
            return
        new = BundleVersion.of(bundle)
        mark = self._marks.get(new.model_id)
        if mark == new or (mark is not None and not self.allow_rollback and compare_versions(new, mark) <= 0):
            return
        self._marks[new.model_id] = new
        self._write()

    def _write(self) -> None:
        doc = {"format": STATE_FORMAT, "marks": {k: {"model_version": v.model_version, "created_utc": v.created_utc}
                                                 for k, v in sorted(self._marks.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
