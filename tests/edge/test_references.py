"""Tests of edge.references: dark/white reference values, staleness rules and reference files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.references import (
    ReferenceKind,
    ReferencePolicy,
    ReferenceQuality,
    ReferenceSet,
    ReferenceSource,
    ReferenceSpectrum,
    ReferenceSpectrumError,
    load_reference_file,
    save_reference_file,
)
from firmware_bridge.frames import Dark, Reference

N_PIX = 16
T0 = 1_000_000.0  # host time of the captures, s


def _pair(dark_level: float = 100.0, white_level: float = 40_000.0, it_us: int = 5000) -> ReferenceSet:
    dark = Dark(seq=1, timestamp_us=10, integration_time_us=it_us, counts=np.full(N_PIX, dark_level, np.uint16))
    white = Reference(seq=2, timestamp_us=20, integration_time_us=it_us, counts=np.full(N_PIX, white_level, np.uint16))
    return (
        ReferenceSet()
        .with_spectrum(ReferenceSpectrum.from_frame(dark, captured_at_s=T0))
        .with_spectrum(ReferenceSpectrum.from_frame(white, captured_at_s=T0))
    )


def test_from_frame_keeps_metadata_and_is_read_only() -> None:
    refs = _pair()
    assert refs.dark is not None and refs.reference is not None
    assert refs.dark.kind is ReferenceKind.DARK and refs.reference.kind is ReferenceKind.WHITE
    assert (refs.dark.seq, refs.dark.integration_time_us, refs.dark.source) == (1, 5000, ReferenceSource.FRAME)
    assert refs.dark.counts.dtype == np.float64 and not refs.dark.counts.flags.writeable
    ctx = refs.context()
    np.testing.assert_array_equal(ctx["reference"], np.full(N_PIX, 40_000.0))


def test_ok_missing_and_stale() -> None:
    policy = ReferencePolicy(max_age_s=60.0)
    refs = _pair()
    ok = refs.check(pixel_count=N_PIX, integration_time_us=5000, now_s=T0 + 1, policy=policy)
    assert ok.quality is ReferenceQuality.OK and ok.usable and ok.reasons == ()

    only_dark = ReferenceSet(dark=refs.dark)
    miss = only_dark.check(pixel_count=N_PIX, integration_time_us=5000, now_s=T0, policy=policy)
    assert miss.quality is ReferenceQuality.MISSING and not miss.usable
    assert miss.reasons == ("no reference spectrum yet",)

    wrong_pixels = refs.check(pixel_count=N_PIX + 1, integration_time_us=5000, now_s=T0, policy=policy)
    assert wrong_pixels.quality is ReferenceQuality.MISSING
    assert f"expected a dark of {N_PIX + 1} pixels, got {N_PIX}" in wrong_pixels.reasons

    old = refs.check(pixel_count=N_PIX, integration_time_us=5000, now_s=T0 + 61, policy=policy)
    assert old.quality is ReferenceQuality.STALE and old.usable and len(old.reasons) == 2

    other_it = refs.check(pixel_count=N_PIX, integration_time_us=8000, now_s=T0, policy=policy)
    assert other_it.quality is ReferenceQuality.STALE
    assert "dark taken at 5000 us, spectrum at 8000 us" in other_it.reasons

    never_ages = ReferencePolicy(max_age_s=None, match_integration_time=False)
    assert refs.check(pixel_count=N_PIX, integration_time_us=8000, now_s=T0 + 1e9, policy=never_ages).quality is (
        ReferenceQuality.OK
    )


def test_not_required_references_are_ok_when_absent() -> None:
    policy = ReferencePolicy(require_dark=False, require_reference=False)
    assert ReferenceSet().check(pixel_count=N_PIX, integration_time_us=1, now_s=0.0, policy=policy).quality is (
        ReferenceQuality.OK
    )


def test_dark_above_reference_is_stale() -> None:
    refs = _pair(dark_level=50_000.0, white_level=40_000.0)
    assert refs.white_above_dark_fraction == 0.0
    verdict = refs.check(pixel_count=N_PIX, integration_time_us=5000, now_s=T0, policy=ReferencePolicy())
    assert verdict.quality is ReferenceQuality.STALE
    assert "white reference above the dark on only 0.0 % of pixels" in verdict.reasons


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(ReferenceSpectrumError, match="expected finite dark counts"):
        ReferenceSpectrum.from_counts(ReferenceKind.DARK, [1.0, float("nan")], captured_at_s=0.0)
    with pytest.raises(ReferenceSpectrumError, match="one-dimensional"):
        ReferenceSpectrum.from_counts(ReferenceKind.WHITE, np.ones((2, 3)), captured_at_s=0.0)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    refs = _pair()
    assert refs.reference is not None
    path = save_reference_file(tmp_path / "state" / "reference.npz", refs.reference)
    back = load_reference_file(path, ReferenceKind.WHITE)
    np.testing.assert_array_equal(back.counts, refs.reference.counts)
    assert (back.integration_time_us, back.captured_at_s, back.source) == (5000, T0, ReferenceSource.STATE)
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["reference.npz"]  # no temporary left behind


def test_load_npy_and_csv(tmp_path: Path) -> None:
    counts = np.linspace(100.0, 200.0, N_PIX)
    np.save(tmp_path / "dark.npy", counts)
    got = load_reference_file(tmp_path / "dark.npy", ReferenceKind.DARK, captured_at_s=5.0)
    np.testing.assert_array_equal(got.counts, counts)
    assert got.captured_at_s == 5.0 and got.integration_time_us is None and got.source is ReferenceSource.FILE
    wl = np.linspace(900.0, 1700.0, N_PIX)
    (tmp_path / "white.csv").write_text(
        "# wavelength_nm,counts\n" + "\n".join(f"{w},{c}" for w, c in zip(wl, counts)), encoding="utf-8"
    )
    got = load_reference_file(tmp_path / "white.csv", ReferenceKind.WHITE)
    np.testing.assert_allclose(got.counts, counts)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("dark.json", b"[]", "expected a .npy, .npz, .csv or .txt"),
        ("dark.npy", b"not numpy", "cannot read dark file"),
        ("dark.csv", b"1,2,3\n4,5,6\n", "expected 1 or 2 columns"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ReferenceSpectrumError, match=message):
        load_reference_file(tmp_path / name, ReferenceKind.DARK)
    with pytest.raises(ReferenceSpectrumError, match="cannot read"):
        load_reference_file(tmp_path / "absent.npy", ReferenceKind.DARK)


def test_the_error_does_not_shadow_the_builtin_and_the_old_name_still_imports() -> None:
    import builtins

    import edge.references
    from edge.errors import EdgeError
    from edge.references import ReferenceError as OldName  # the deprecated name, for code outside the repository

    assert OldName is ReferenceSpectrumError and issubclass(OldName, (EdgeError, ValueError))
    assert "ReferenceError" not in vars(edge.references)  # the module's own code sees the builtin
    assert edge.references.ReferenceError is not builtins.ReferenceError
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = edge.references.Nope
