"""The order of bundle versions and the anti-rollback mark on disk (:mod:`edge.rollback`); the daemon's use of it,
with real signed bundles and processes, is in test_daemon_reload_trust.py."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import edge.rollback
from edge.errors import BundleError
from edge.rollback import BundleVersion, RollbackGuard, compare_versions

T0 = "2026-01-31T12:00:00Z"
T1 = "2026-02-01T08:00:00Z"


def _v(version: str, created: str = T0, model_id: str = "m") -> BundleVersion:
    return BundleVersion(model_id, version, created)


def _bundle(version: str, created: str = T0, *, verified: bool = True, model_id: str = "m") -> Any:
    """The two things the guard reads of a :class:`edge.bundle.Bundle`: its manifest and whether it was verified."""
    return SimpleNamespace(manifest={"model_id": model_id, "model_version": version, "created_utc": created},
                           signature_verified=verified, model_id=model_id)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(edge.rollback).failed == 0


@pytest.mark.parametrize(("older", "newer"), [
    (_v("1.9.2"), _v("1.10.0")),                      # numerically, not as text
    (_v("1.0"), _v("1.0.1")),                         # a missing part counts as 0
    (_v("v2", T1), _v("v3", T0)),                     # the release number decides over the date
    (_v("1.0.0", T0), _v("1.0.0-transfer.20260201080000", T1)),  # equal release numbers: the date decides
    (_v("nightly", T0), _v("nightly", T1)),           # no release number: the date decides
    (_v("2026.01", "2026-01-31T12:00:00.5Z"), _v("2026.01", "2026-01-31T12:00:01Z")),  # fractions parsed, not text
])
def test_versions_are_ordered_by_release_number_then_creation_time(older: BundleVersion,
                                                                    newer: BundleVersion) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1
    assert compare_versions(newer, newer) == 0


def test_the_mark_survives_a_new_guard_and_refuses_an_older_signed_bundle(tmp_path: Path) -> None:
    path = tmp_path / "dev.bundle-versions.json"
    guard = RollbackGuard(path)
    guard.record(_bundle("1.1.0"))
    guard.record(_bundle("1.0.0"))  # older: the mark stays
    again = RollbackGuard(path)
    assert again.mark("m") == _v("1.1.0")
    with pytest.raises(BundleError, match=r"rollback refused: m 1.0.0 .* older than m 1.1.0"):
        again.check(_bundle("1.0.0"))
    assert again.problem(_bundle("1.0.0", verified=False)) is None  # unsigned: the version is anyone's choice
    assert again.problem(_bundle("0.1.0", model_id="other")) is None  # another model has its own mark
    assert again.problem(_bundle("1.1.0")) is None


def test_allowing_rollback_lets_it_through_and_lowers_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "dev.bundle-versions.json"
    RollbackGuard(path).record(_bundle("1.1.0"))
    allowed = RollbackGuard(path, allow_rollback=True)
    assert allowed.problem(_bundle("1.0.0")) is None
    allowed.record(_bundle("1.0.0"))
    assert RollbackGuard(path).mark("m") == _v("1.0.0")


def test_an_unreadable_mark_file_is_reported_and_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dev.bundle-versions.json"
    path.write_text(json.dumps({"format": 1, "marks": {"m": {"model_version": "1.0.0"}}}), encoding="utf-8")
    assert RollbackGuard(path).mark("m") is None
    assert "ignoring the unreadable bundle version marks" in caplog.text
