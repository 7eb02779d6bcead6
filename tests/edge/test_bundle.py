"""Tests of edge.bundle: a real bundle (real int8 .tflite, real pipeline, real LiteRT) is verified, and every way
of breaking it (tampering, truncation, signatures, versions, names, sizes, golden vectors) is a specific
BundleError."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bundle import (
    MEMBER_LIMITS_BYTES,
    SUPPORTED_FORMAT_VERSIONS,
    Bundle,
    GoldenVectors,
    InputContract,
    SelfTestReport,
    check_command,
    load_bundle,
    read_members,
)
from edge.errors import AxisContractError, BundleError, EdgeError, InputContractError
from tests.support.bundles import flip_byte, member_data_offsets, read_zip, rehash_manifest, write_zip
from tests.support.trained import TABLETS_BUNDLE, TABLETS_PUBLIC_KEY, TabletModels, committed, tablet_models

ALL_MEMBERS = ("manifest.json", "model.tflite", "preprocessing.json", "ood.json", "intervals.json", "metrics.json",
               "golden.npz", "manifest.sig")
HASHED_MEMBERS = tuple(m for m in ALL_MEMBERS if m not in ("manifest.json", "manifest.sig"))
#: Examples of each byte-mutation fuzz test in the regular run; a dedicated fuzz run sets
#: SPECTROLITE_FUZZ_EXAMPLES=100000.
FUZZ_EXAMPLES = int(os.environ.get("SPECTROLITE_FUZZ_EXAMPLES", "40"))
#: Members mutated *and re-hashed* by the deep fuzz, so that the mutation reaches the parsers behind the hash
#: check. model.tflite is left out: the native interpreter is not hardened against crafted models (that is what
#: signatures are for, see docs/bundle.md) and a crash would take the test process down.
DEEP_FUZZ_MEMBERS = ("manifest.json", "preprocessing.json", "ood.json", "intervals.json", "metrics.json", "golden.npz")


@pytest.fixture(scope="module")
def models(datasets_dir: Path) -> TabletModels:
    return tablet_models(datasets_dir)


@pytest.fixture(scope="module")
def public_key() -> Path:
    """The public half of the key that signed the committed bundle (its private half was thrown away)."""
    return committed(TABLETS_PUBLIC_KEY)


@pytest.fixture(scope="module")
def good() -> Path:
    """A signed, valid bundle written by the trainer's ``write_bundle`` (committed, tests/data/trained; copy it
    before changing anything)."""
    return committed(TABLETS_BUNDLE)


def _copy(good: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "b.spectrolite"
    shutil.copyfile(good, dst)
    return dst


def _rewrite(good: Path, tmp_path: Path, members: dict[str, bytes]) -> Path:
    return write_zip(tmp_path / "b.spectrolite", members)


# ------------------------------------------------------------------------------------------------ good bundle
def _cross_machine_self_test(report: SelfTestReport | None) -> None:
    """The committed bundle was written on another machine: its golden vectors match at float64 rounding level
    (docs/bundle.md: about 1e-13 after a few reductions; numpy's BLAS kernels differ between CPUs) and the int8
    outputs within the bundle's one LSB, not necessarily bitwise (bitwise holds where the bundle was written:
    tests/trainer/test_bundle_writer.py)."""
    assert report is not None and report.n_vectors == 6
    assert report.bitwise_identical or (report.max_preprocessed_abs_diff <= 1e-12
                                        and report.max_output_lsb is not None and report.max_output_lsb <= 1.0)
    assert report.summary().startswith("PASSED, 6 golden vectors, ")


def test_good_bundle_loads_and_serves(good: Path, models: TabletModels, public_key: Path) -> None:
    b = load_bundle(good, public_key=public_key)
    assert isinstance(b, Bundle)
    assert b.signed and b.signature_verified
    _cross_machine_self_test(b.self_test)
    assert b.file_sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    X = models.X_test[:5]
    np.testing.assert_array_equal(b.predict_spectra(X), b.runtime.predict(models.pipeline.transform(X)))
    pre = b.preprocess(X[0])
    t2, q = b.ood.score(pre)  # type: ignore[union-attr]  # not None here
    assert np.isfinite(t2) and np.isfinite(q)
    lo, hi = b.intervals.interval(b.predict_features(pre))  # type: ignore[union-attr]  # not None here
    assert np.all(lo < hi)


def test_unsigned_load_without_key_reports_signature_not_verified(good: Path) -> None:
    b = load_bundle(good, self_test=False)
    assert b.signed and not b.signature_verified and b.self_test is None


def test_input_contract_checks_frames(good: Path) -> None:
    c = load_bundle(good, self_test=False).input_contract
    assert isinstance(c, InputContract) and not c.needs_references
    wl = np.linspace(600.0, 1898.0, 650)
    c.check(650, wavelengths=wl, pixel_format="UINT16")
    with pytest.raises(InputContractError, match="expected 650 pixels, got 512"):
        c.check(512)
    with pytest.raises(InputContractError, match="expected a wavelength axis covering 600-1898 nm, got 700-1898 nm"):
        c.check(650, wavelengths=np.linspace(700.0, 1898.0, 650))
    with pytest.raises(InputContractError, match="pixel format"):
        load_bundle(good, self_test=False).input_contract.__class__(
            650, 600.0, 1898.0, "nm", pixel_count_min=650, pixel_count_max=650, pixel_formats=("uint16",),
            frame_signal="absorbance",
        ).check(650, pixel_format="float32")


def test_the_bundle_contract_is_the_pipelines_contract_with_the_manifests_frames(good: Path) -> None:
    """One input contract (#14): a bundle whose pipeline does not resample judges a device axis by the manifest's
    range (covered) and the pipeline's end points (within its tolerance) in one check, the one the daemon's reload
    runs too, and says which axis rule failed by its type."""
    b = load_bundle(good, self_test=False)
    c = b.input_contract
    assert (c.n_channels, c.wavelength_tolerance, c.resamples) == (650, 1.0, False)
    assert c == b.pipeline.input_contract.with_frames(
        pixel_count_min=650, pixel_count_max=650, pixel_formats=c.pixel_formats, frame_signal="absorbance")
    wide = np.linspace(598.0, 1898.0, 650)  # covers 600-1898 nm, but starts 2 nm early
    with pytest.raises(AxisContractError, match=r"^expected wavelengths 600.0-1898.0 nm \(within 1.0\), got 598.0-"):
        c.check(650, wavelengths=wide)
    with pytest.raises(AxisContractError, match=r"^expected wavelengths of shape \(650,\), got \(649,\)$"):
        c.check(650, wavelengths=wide[:649])


def test_predict_spectra_refuses_wrong_channel_count(good: Path, models: TabletModels) -> None:
    b = load_bundle(good, self_test=False)
    with pytest.raises(InputContractError, match="expected 650 channels, got 649"):
        b.predict_spectra(models.X_test[0][:649])


def test_committed_format_v1_bundle_keeps_loading(repo_root: Path) -> None:
    """A signed v1 bundle made once and committed (tests/data/bundles): old bundles must keep verifying."""
    folder = repo_root / "tests" / "data" / "bundles"
    b = load_bundle(folder / "v1_counts_two_targets.spectrolite", public_key=folder / "v1_signing.pub.pem")
    assert b.manifest["format_version"] == 1 and b.signature_verified
    assert [(t.name, t.unit) for t in b.targets] == [("band1", "AU"), ("band2", "AU")]
    assert b.input_contract.needs_references and b.input_contract.pixel_formats == ("uint16",)
    assert b.self_test is not None and b.self_test.n_vectors == 4
    g = b.golden
    got = b.predict_spectra(g.raw, dark=g.dark, reference=g.reference)
    assert got.shape == (4, 2)
    assert b.ood is not None and b.intervals is not None and b.intervals.n_targets == 2


# ------------------------------------------------------------------------------------------------ tampering
@pytest.mark.parametrize("member", HASHED_MEMBERS)
def test_one_byte_changed_in_a_member_is_a_sha256_mismatch(good: Path, tmp_path: Path, member: str) -> None:
    members = read_zip(good)
    members[member] = flip_byte(members[member])
    path = _rewrite(good, tmp_path, members)
    with pytest.raises(BundleError, match=f"^member {member}: sha256 mismatch$"):
        load_bundle(path)


@pytest.mark.parametrize("member", ALL_MEMBERS)
def test_one_byte_changed_in_the_file_names_the_member(good: Path, tmp_path: Path, member: str) -> None:
    path = _copy(good, tmp_path)
    offset, size = member_data_offsets(path)[member]
    raw = bytearray(path.read_bytes())
    raw[offset + size // 2] ^= 0x5A
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=f"member {member.replace('.', r'[.]')}"):
        load_bundle(path)


def test_tampered_manifest_with_key_is_a_bad_signature(good: Path, tmp_path: Path, public_key: Path) -> None:
    members = read_zip(good)
    members["manifest.json"] = members["manifest.json"].replace(b'"1.0.0"', b'"1.0.1"')
    path = _rewrite(good, tmp_path, members)
    with pytest.raises(BundleError, match="^member manifest.sig: bad signature"):
        load_bundle(path, public_key=public_key)
    # without a key the edited manifest is self-consistent and loads: that is what signatures are for
    assert load_bundle(path).model_version == "1.0.1"


def test_rehashed_tampered_model_with_key_is_a_bad_signature(
    good: Path, tmp_path: Path, public_key: Path
) -> None:
    members = read_zip(good)
    members["model.tflite"] = flip_byte(members["model.tflite"], 200)
    rehash_manifest(members)
    path = _rewrite(good, tmp_path, members)
    with pytest.raises(BundleError, match="bad signature"):
        load_bundle(path, public_key=public_key)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(good: Path, tmp_path: Path, fraction: float) -> None:
    path = tmp_path / "t.spectrolite"
    data = good.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(BundleError, match="not a valid zip archive"):
        load_bundle(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot be read"):
        load_bundle(tmp_path / "nope.spectrolite")


# ------------------------------------------------------------------------------------------------ signatures
def test_missing_signature_when_key_configured(good: Path, tmp_path: Path, public_key: Path) -> None:
    members = read_zip(good)
    del members["manifest.sig"]
    path = _rewrite(good, tmp_path, members)
    with pytest.raises(BundleError, match="^member manifest.sig: missing, but a public key is configured"):
        load_bundle(path, public_key=public_key)
    assert not load_bundle(path).signed


def test_signature_by_another_key(good: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other_pub = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(BundleError, match="bad signature"):
        load_bundle(good, public_key=other_pub)


def test_malformed_signature(good: Path, tmp_path: Path, public_key: Path) -> None:
    members = read_zip(good)
    members["manifest.sig"] = members["manifest.sig"][:10]
    path = _rewrite(good, tmp_path, members)
    with pytest.raises(BundleError, match="expected a 64-byte Ed25519 signature, got 10 bytes"):
        load_bundle(path, public_key=public_key)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        ("/nonexistent/key.pem", "cannot be read"),
        (b"short", "not a PEM public key"),
        (12345, "expected the public key as PEM"),
    ],
)
def test_bad_public_keys(good: Path, key: Any, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        load_bundle(good, public_key=key)


def test_rsa_public_key_is_refused(good: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(BundleError, match="expected an Ed25519 public key"):
        load_bundle(good, public_key=pem)


# ------------------------------------------------------------------------------------------------ manifest
def _edited(good: Path, tmp_path: Path, edit: Any) -> Path:
    members = read_zip(good)
    del members["manifest.sig"]
    rehash_manifest(members, edit)
    return _rewrite(good, tmp_path, members)


def test_newer_format_version_names_the_supported_ones(good: Path, tmp_path: Path) -> None:
    path = _edited(good, tmp_path, lambda m: m.update(format_version=max(SUPPORTED_FORMAT_VERSIONS) + 1))
    newer = max(SUPPORTED_FORMAT_VERSIONS) + 1
    supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
    with pytest.raises(BundleError,
                       match=rf"format_version {newer} is newer than this code supports \(supported: {supported}\)"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(task="clustering"), "task: expected one of"),
        (lambda m: m.pop("seed"), "missing key"),
        (lambda m: m.update(extra=1), "unknown key"),
        (lambda m: m.update(model_id=""), "model_id: expected"),
        (lambda m: m.update(created_utc="yesterday"), "created_utc"),
        (lambda m: m.update(targets=[]), "non-empty list of targets"),
        (lambda m: m["wavelength_grid"].update(values=[3.0, 2.0, 2.5]), "strictly monotonic"),
        (lambda m: m["input_contract"].update(frame_signal="volts"), "frame_signal"),
        (lambda m: m["input_contract"].update(pixel_count_min=700), "pixel_count_min <= pixel_count_max"),
        (lambda m: m["input_contract"].update(pixel_count_min=600), "does not match the pipeline's 650 channels"),
        (lambda m: m["input_contract"].update(wavelength_min=601.0),
         r"wavelength range 601-1898 nm does not match the pipeline's 600-1898 nm"),
        (lambda m: m["golden"].update(output_int8_lsb=-1), "golden.output_int8_lsb"),
        (lambda m: m["golden"].update(count=5), "manifest says 5 vectors, got 6"),
        (lambda m: m["members"].pop("ood.json"), "member ood.json: present in the archive but not listed"),
        (lambda m: m["members"].update({"ood.json": {"sha256": "0" * 64, "size": 1}}), "member ood.json: size"),
        (lambda m: m.update(targets=[{"name": "a", "unit": "mg"}, {"name": "b", "unit": "mg"}]), "expected 2 outputs"),
    ],
)
def test_manifest_schema_errors(good: Path, tmp_path: Path, edit: Any, message: str) -> None:
    path = _edited(good, tmp_path, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_manifest_that_is_not_json(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    members["manifest.json"] = b"{not json"
    with pytest.raises(BundleError, match="member manifest.json: not valid JSON"):
        load_bundle(_rewrite(good, tmp_path, members))


def test_manifest_with_nan_is_refused(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    members["manifest.json"] = members["manifest.json"].replace(b'"seed": 7', b'"seed": NaN')
    with pytest.raises(BundleError, match="member manifest.json: not valid JSON"):
        load_bundle(_rewrite(good, tmp_path, members))


def test_manifest_with_a_repeated_key_is_refused(good: Path, tmp_path: Path) -> None:
    # Python's json keeps the last of two equal keys; another reader may keep the first: refuse the ambiguity.
    members = read_zip(good)
    assert b'"seed": 7' in members["manifest.json"]
    members["manifest.json"] = members["manifest.json"].replace(b'"seed": 7', b'"seed": 8, "seed": 7')
    with pytest.raises(BundleError, match="member manifest.json: not valid JSON: expected unique keys .*'seed' twice"):
        load_bundle(_rewrite(good, tmp_path, members))


# ------------------------------------------------------------------------------------------------ zip members
def test_unknown_member(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    members["notes.txt"] = b"hello"
    with pytest.raises(BundleError, match="unknown member 'notes.txt'"):
        load_bundle(_rewrite(good, tmp_path, members))


@pytest.mark.parametrize("name", ["../model.tflite", "/etc/passwd", "sub/model.tflite", "..\\x", "C:model.tflite"])
def test_path_traversal_names(good: Path, tmp_path: Path, name: str) -> None:
    members = read_zip(good)
    members[name] = b"x"
    with pytest.raises(BundleError, match="is not allowed"):
        load_bundle(_rewrite(good, tmp_path, members))


def test_missing_required_member(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    del members["golden.npz"]
    with pytest.raises(BundleError, match=r"missing member\(s\) golden.npz"):
        load_bundle(_rewrite(good, tmp_path, members))


def test_duplicate_member(good: Path, tmp_path: Path) -> None:
    path = _copy(good, tmp_path)
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("model.tflite", b"another model")
    with pytest.raises(BundleError, match="member model.tflite: appears twice"):
        load_bundle(path)


def test_zip_bomb_member_is_refused_before_reading(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    members["intervals.json"] = b" " * (MEMBER_LIMITS_BYTES["intervals.json"] + 1)  # deflates to ~1 KB
    path = _rewrite(good, tmp_path, members)
    assert path.stat().st_size < 200_000
    with pytest.raises(BundleError, match=r"member intervals.json: \d+ bytes exceeds the limit of 1048576 bytes"):
        load_bundle(path)


def test_lying_size_header_is_caught(good: Path, tmp_path: Path) -> None:
    """A member whose header claims a small size but inflates to more is stopped at its cap."""
    members = read_zip(good)
    members["intervals.json"] = b" " * (MEMBER_LIMITS_BYTES["intervals.json"] + 10)
    path = _rewrite(good, tmp_path, members)
    raw = bytearray(path.read_bytes())
    # patch the central-directory and local uncompressed sizes of intervals.json down to 100 bytes
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("intervals.json")
    h = info.header_offset
    raw[h + 22 : h + 26] = (100).to_bytes(4, "little")
    pos = 0
    while True:
        pos = raw.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        name_len = int.from_bytes(raw[pos + 28 : pos + 30], "little")
        if raw[pos + 46 : pos + 46 + name_len] == b"intervals.json":
            raw[pos + 24 : pos + 28] = (100).to_bytes(4, "little")
        pos += 4
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="member intervals.json"):
        load_bundle(path)


# ------------------------------------------------------------------------------------------------ members' content
def _with_golden(good: Path, tmp_path: Path, change: Any) -> Path:
    members = read_zip(good)
    del members["manifest.sig"]
    g = GoldenVectors.from_npz_bytes(members["golden.npz"])
    members["golden.npz"] = change(g).to_npz_bytes()
    rehash_manifest(members)
    return _rewrite(good, tmp_path, members)


def test_golden_output_mismatch(good: Path, tmp_path: Path) -> None:
    def shift(g: GoldenVectors) -> GoldenVectors:
        out = g.outputs.copy()
        out[3, 0] += 10.0
        return GoldenVectors(g.raw, g.preprocessed, out, g.dark, g.reference, g.wavelengths)

    path = _with_golden(good, tmp_path, shift)
    with pytest.raises(BundleError, match=r"^golden vector 3: output 0 is .*, expected .* more than 1 int8 LSB"):
        load_bundle(path)
    # without the self-test the same bundle loads (for inspection), which is why the daemon never skips it
    assert load_bundle(path, self_test=False).self_test is None


def test_golden_preprocessed_mismatch(good: Path, tmp_path: Path) -> None:
    def nudge(g: GoldenVectors) -> GoldenVectors:
        pre = g.preprocessed.copy()
        pre[1, 17] += 1e-6
        return GoldenVectors(g.raw, pre, g.outputs, g.dark, g.reference, g.wavelengths)

    with pytest.raises(BundleError, match=r"^golden vector 1: preprocessed value 17 is"):
        load_bundle(_with_golden(good, tmp_path, nudge))


def test_golden_within_tolerance_passes_and_is_reported(good: Path, tmp_path: Path) -> None:
    def tiny(g: GoldenVectors) -> GoldenVectors:
        pre = g.preprocessed.copy()
        pre[0, 5] += 1e-12
        return GoldenVectors(g.raw, pre, g.outputs, g.dark, g.reference, g.wavelengths)

    b = load_bundle(_with_golden(good, tmp_path, tiny))
    assert b.self_test is not None and not b.self_test.bitwise_identical
    assert 0 < b.self_test.max_preprocessed_abs_diff <= 1e-11


def test_broken_pipeline_spec(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    del members["manifest.sig"]
    spec = json.loads(members["preprocessing.json"])
    spec["steps"].append({"op": "fourier"})
    members["preprocessing.json"] = json.dumps(spec).encode()
    rehash_manifest(members)
    with pytest.raises(BundleError, match="member preprocessing.json: .*fourier"):
        load_bundle(_rewrite(good, tmp_path, members))


def test_broken_model_member(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    del members["manifest.sig"]
    members["model.tflite"] = b"\x00" * 100
    rehash_manifest(members)
    with pytest.raises(BundleError, match="member model.tflite: cannot be loaded"):
        load_bundle(_rewrite(good, tmp_path, members))


@pytest.mark.parametrize(
    ("member", "payload", "message"),
    [
        ("ood.json", b'{"format_version": 9}', "member ood.json: ood: format_version: expected"),
        ("intervals.json", b"[]", "member intervals.json"),
        ("metrics.json", b"[1, 2]", "member metrics.json: expected a JSON object"),
        ("golden.npz", b"not a zip", "member golden.npz: unreadable"),
    ],
)
def test_broken_side_members(good: Path, tmp_path: Path, member: str, payload: bytes, message: str) -> None:
    members = read_zip(good)
    del members["manifest.sig"]
    members[member] = payload
    rehash_manifest(members)
    with pytest.raises(BundleError, match=message):
        load_bundle(_rewrite(good, tmp_path, members))


def test_read_members_structural_only(good: Path) -> None:
    members, sha = read_members(good)
    assert set(members) == set(ALL_MEMBERS)
    assert sha == hashlib.sha256(good.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_mutations_only_raise_bundle_errors(good: Path, tmp_path: Path, data: st.DataObject) -> None:
    raw = bytearray(good.read_bytes())
    n = data.draw(st.integers(min_value=1, max_value=8))
    for _ in range(n):
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    path = tmp_path / "fuzz.spectrolite"
    path.write_bytes(bytes(raw))
    try:
        load_bundle(path)
    except BundleError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_rehashed_member_mutations_only_raise_bundle_errors(good: Path, tmp_path: Path, data: st.DataObject) -> None:
    members = read_zip(good)
    del members["manifest.sig"]
    member = data.draw(st.sampled_from(DEEP_FUZZ_MEMBERS))
    blob = bytearray(members[member])
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        i = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
        blob[i] = data.draw(st.integers(min_value=0, max_value=255))
    members[member] = bytes(blob)
    if member != "manifest.json":
        rehash_manifest(members)
    path = write_zip(tmp_path / "deep.spectrolite", members)
    try:
        load_bundle(path)
    except BundleError:
        pass


def test_golden_npz_bomb_is_refused(good: Path, tmp_path: Path) -> None:
    members = read_zip(good)
    del members["manifest.sig"]
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("raw.npy", b"\0" * (65 * 1024 * 1024))  # 65 MiB of zeros deflate to ~65 KB
    members["golden.npz"] = inner.getvalue()
    rehash_manifest(members)
    with pytest.raises(BundleError, match="member golden.npz: arrays of 68157440 bytes exceed the limit"):
        load_bundle(write_zip(tmp_path / "b.spectrolite", members))


# ------------------------------------------------------------------------------------------------ check command
def test_check_command_ok(good: Path, public_key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_command(good, str(public_key)) == 0
    out = capsys.readouterr().out
    assert "model: tablets-assay 1.0.0 (regression)" in out
    assert "target: assay_mg [mg]" in out
    assert "signature: verified with the configured public key" in out
    assert "self-test: PASSED, 6 golden vectors, " in out  # bitwise only where written: _cross_machine_self_test
    assert out.rstrip().endswith("result: OK")


def test_check_command_failure(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    members = read_zip(good)
    members["golden.npz"] = flip_byte(members["golden.npz"])
    path = _rewrite(good, tmp_path, members)
    assert check_command(path, None) == 1
    out = capsys.readouterr().out
    assert "result: FAILED: member golden.npz: sha256 mismatch" in out


def test_check_command_through_the_cli(good: Path, repo_root: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", str(good)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "signature: present, NOT verified" in out.stdout


# ------------------------------------------------------------------------------------------------ imports
def test_loading_a_bundle_loads_no_tensorflow(good: Path, repo_root: Path, public_key: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import edge.bundle
        before = sorted(m for m in ("tensorflow", "keras", "sklearn", "scipy", "cryptography") if m in sys.modules)
        b = edge.bundle.load_bundle({str(good)!r}, public_key={str(public_key)!r})
        after = sorted(m for m in ("tensorflow", "keras", "sklearn", "scipy") if m in sys.modules)
        print(before, after, b.self_test.summary().startswith("PASSED, 6 golden vectors"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[] [] True"


def test_bundle_errors_are_edge_errors_and_value_errors() -> None:
    assert issubclass(BundleError, EdgeError) and issubclass(BundleError, ValueError)
