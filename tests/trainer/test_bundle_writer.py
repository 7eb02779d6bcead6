"""Tests of trainer.bundle: atomic bundle writing with re-load by the edge reader, signing, key generation."""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import FORMAT_VERSION, load_bundle
from edge.errors import BundleError
from tests.support.bundles import (
    DARK_COUNTS,
    FIXED_LIBS,
    FIXED_UTC,
    N_GOLDEN,
    WHITE_COUNTS,
    TinyModels,
    absorbance_to_counts,
    golden_rows,
    read_zip,
    tiny_models,
    write_regression_bundle,
)
from trainer.bundle import (
    BundleWriteError,
    collect_library_versions,
    generate_keypair,
    hash_training_data,
    make_input_contract,
    sign_bundle,
)


@pytest.fixture(scope="module")
def models(datasets_dir: Path) -> TinyModels:
    return tiny_models(datasets_dir)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


def test_round_trip(models: TinyModels, tmp_path: Path) -> None:
    path = write_regression_bundle(models, tmp_path / "tablets.spectrolite")
    assert path == tmp_path / "tablets.spectrolite"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tablets.spectrolite"]  # no temporary left behind
    assert zipfile.ZipFile(path).namelist()[0] == "manifest.json"
    b = load_bundle(path)
    m = b.manifest
    assert m["format_version"] == FORMAT_VERSION
    assert (b.model_id, b.model_version, b.task) == ("tablets-assay", "1.0.0", "regression")
    assert [(t.name, t.unit) for t in b.targets] == [("assay_mg", "mg")]
    assert m["created_utc"] == FIXED_UTC and m["library_versions"] == FIXED_LIBS and m["seed"] == 7
    assert m["training_data_sha256"] == hash_training_data(models.X_train, models.y_train)
    np.testing.assert_array_equal(b.wavelengths, models.wavelengths)
    assert m["input_contract"] == make_input_contract(
        pixel_count_min=650, wavelength_min=600.0, wavelength_max=1898.0, frame_signal="absorbance"
    )
    assert sorted(m["members"]) == [
        "golden.npz",
        "intervals.json",
        "metrics.json",
        "model.tflite",
        "ood.json",
        "preprocessing.json",
    ]
    assert b.metrics["evaluations"][0]["model"] == "cnn_int8"
    assert b.ood is not None and b.intervals is not None
    assert b.pipeline.to_spec() == models.pipeline.to_spec()
    # golden vectors are the edge code's own results on this machine: reproduced bitwise
    assert b.self_test is not None and b.self_test.bitwise_identical and b.self_test.n_vectors == N_GOLDEN
    X = models.X_test[golden_rows(models)]
    np.testing.assert_array_equal(b.golden.raw, X)
    np.testing.assert_array_equal(b.golden.preprocessed, models.pipeline.transform(X))
    np.testing.assert_array_equal(b.predict_spectra(X), b.golden.outputs)
    assert not b.signed and not b.signature_verified


def test_same_inputs_give_the_same_bytes(models: TinyModels, tmp_path: Path) -> None:
    a = write_regression_bundle(models, tmp_path / "a.spectrolite").read_bytes()
    b = write_regression_bundle(models, tmp_path / "b.spectrolite").read_bytes()
    assert a == b


def test_counts_mode_bundle_carries_dark_and_reference(models: TinyModels, tmp_path: Path) -> None:
    X = absorbance_to_counts(models.X_test[golden_rows(models)])
    dark = np.full(650, DARK_COUNTS)
    white = np.full(650, WHITE_COUNTS)
    path = write_regression_bundle(
        models,
        tmp_path / "counts.spectrolite",
        pipeline=models.counts_pipeline,
        golden_inputs=X,
        golden_dark=dark,
        golden_reference=white,
        input_contract=make_input_contract(
            pixel_count_min=650, wavelength_min=600.0, wavelength_max=1898.0, pixel_formats=["uint16"],
            frame_signal="counts",
        ),
    )
    b = load_bundle(path)
    assert b.input_contract.needs_references and b.input_contract.pixel_formats == ("uint16",)
    np.testing.assert_array_equal(b.golden.dark, dark)
    np.testing.assert_array_equal(b.golden.reference, white)
    got = b.predict_spectra(X, dark=dark, reference=white)
    np.testing.assert_array_equal(got, b.golden.outputs)


def test_counts_pipeline_with_absorbance_contract_is_refused(models: TinyModels, tmp_path: Path) -> None:
    with pytest.raises(BundleWriteError, match="frame_signal is 'absorbance' but the pipeline starts with a counts"):
        write_regression_bundle(
            models,
            tmp_path / "x.spectrolite",
            pipeline=models.counts_pipeline,
            golden_inputs=absorbance_to_counts(models.X_test[:2]),
            golden_dark=np.full(650, DARK_COUNTS),
            golden_reference=np.full(650, WHITE_COUNTS),
            input_contract=make_input_contract(pixel_count_min=650, wavelength_min=600.0, wavelength_max=1898.0),
        )
    assert list(tmp_path.iterdir()) == []


def test_classification_bundle(models: TinyModels, tmp_path: Path) -> None:
    path = write_regression_bundle(
        models,
        tmp_path / "cls.spectrolite",
        model_id="tablets-class",
        task="classification",
        targets=[("assay_class", "")],
        class_labels=models.class_labels,
        tflite_bytes=models.class_int8_bytes,
        intervals=None,
    )
    b = load_bundle(path)
    assert b.class_labels == ("low", "high")
    p = b.predict_spectra(models.X_test[:3])
    assert p.shape == (3, 2)


def test_failed_check_leaves_the_old_file_untouched(models: TinyModels, tmp_path: Path) -> None:
    path = write_regression_bundle(models, tmp_path / "keep.spectrolite")
    before = path.read_bytes()
    # a classification manifest whose labels do not match the single-output model fails the reader's check
    with pytest.raises(BundleWriteError, match="expected 3 outputs"):
        write_regression_bundle(
            models, path, task="classification", targets=[("c", "")], class_labels=["a", "b", "c"], intervals=None
        )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.spectrolite"]


def test_bad_arguments(models: TinyModels, tmp_path: Path) -> None:
    with pytest.raises(BundleWriteError, match=r"ending in \.spectrolite"):
        write_regression_bundle(models, tmp_path / "model.zip")
    with pytest.raises(BundleWriteError, match="does not exist"):
        write_regression_bundle(models, tmp_path / "nope" / "m.spectrolite")
    with pytest.raises(BundleWriteError, match="model_id"):
        write_regression_bundle(models, tmp_path / "m.spectrolite", model_id="../evil")
    with pytest.raises(BundleWriteError, match="training_data_sha256"):
        write_regression_bundle(models, tmp_path / "m.spectrolite", training_data_sha256="abc")
    with pytest.raises(BundleWriteError, match="model"):
        write_regression_bundle(models, tmp_path / "m.spectrolite", tflite_bytes=b"junk")
    with pytest.raises(BundleWriteError, match="golden vector 0: expected 650 channels, got 649"):
        write_regression_bundle(models, tmp_path / "m.spectrolite", golden_inputs=models.X_test[:2, :649])
    with pytest.raises(BundleWriteError, match="golden vector 0: counts conversion needs reference"):
        write_regression_bundle(models, tmp_path / "m.spectrolite", pipeline=models.counts_pipeline)
    with pytest.raises(BundleWriteError, match="unknown golden tolerance"):
        write_regression_bundle(models, tmp_path / "m.spectrolite", golden_tolerance={"lsb": 1})
    assert issubclass(BundleWriteError, ValueError)


def test_non_finite_metrics_are_written_as_null(models: TinyModels, tmp_path: Path) -> None:
    path = write_regression_bundle(
        models, tmp_path / "m.spectrolite", metrics={"r2": float("nan"), "n": np.int64(3), "x": [np.float32(1.5)]}
    )
    metrics = json.loads(read_zip(path)["metrics.json"])
    assert metrics == {"r2": None, "n": 3, "x": [1.5]}


def test_collect_library_versions_lists_installed_distributions() -> None:
    v = collect_library_versions()
    assert "python" in v and "numpy" in v and "tensorflow" in v


def test_hash_training_data_depends_on_values_shape_and_dtype() -> None:
    a = np.arange(6, dtype=np.float64)
    h = hash_training_data(a)
    assert len(h) == 64 and h == hash_training_data(a.copy())
    assert h != hash_training_data(a.reshape(2, 3))
    assert h != hash_training_data(a.astype(np.float32))
    assert h != hash_training_data(a + 1e-12)
    assert h != hash_training_data(a, np.array(["x"], dtype=object))


def test_generate_keypair_files(tmp_path: Path) -> None:
    priv, pub = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BundleWriteError, match="already exists"):
        generate_keypair(tmp_path / "k")
    generate_keypair(tmp_path / "k", overwrite=True)


def test_sign_bundle_then_verify(models: TinyModels, tmp_path: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    path = write_regression_bundle(models, tmp_path / "m.spectrolite")
    unsigned_manifest = read_zip(path)["manifest.json"]
    sign_bundle(path, priv)
    members = read_zip(path)
    assert members["manifest.json"] == unsigned_manifest and len(members["manifest.sig"]) == 64
    b = load_bundle(path, public_key=pub)
    assert b.signed and b.signature_verified
    # public key as a path string, PEM bytes, PEM text and raw bytes
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    raw = load_pem_public_key(pub.read_bytes()).public_bytes(Encoding.Raw, PublicFormat.Raw)
    for key in (str(pub), pub.read_bytes(), pub.read_text(), raw):
        assert load_bundle(path, public_key=key, self_test=False).signature_verified
    # re-signing replaces the signature rather than adding a second one
    sign_bundle(path, priv)
    assert zipfile.ZipFile(path).namelist().count("manifest.sig") == 1


def test_write_and_sign_in_one_step(models: TinyModels, tmp_path: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    path = write_regression_bundle(models, tmp_path / "m.spectrolite", private_key_path=priv)
    assert load_bundle(path, public_key=pub).signature_verified


def test_signing_with_a_non_ed25519_or_missing_key_fails(models: TinyModels, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = write_regression_bundle(models, tmp_path / "m.spectrolite")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(BundleWriteError, match="expected an Ed25519 key"):
        sign_bundle(path, ec_path)
    with pytest.raises(BundleWriteError, match="cannot be read"):
        sign_bundle(path, tmp_path / "missing.pem")
    with pytest.raises(BundleWriteError, match="cannot sign"):
        sign_bundle(tmp_path / "missing.spectrolite", generate_keypair(tmp_path / "k")[0])


def test_golden_tolerance_is_recorded(models: TinyModels, tmp_path: Path) -> None:
    path = write_regression_bundle(models, tmp_path / "m.spectrolite", golden_tolerance={"output_int8_lsb": 2})
    b = load_bundle(path)
    assert b.golden_tolerance.output_int8_lsb == 2.0
    assert math.isclose(b.golden_tolerance.preprocessed_atol, 1e-9)
    assert b.manifest["golden"]["count"] == N_GOLDEN


def test_bundle_error_from_reader_is_chained(models: TinyModels, tmp_path: Path) -> None:
    with pytest.raises(BundleWriteError) as info:
        write_regression_bundle(
            models, tmp_path / "m.spectrolite", task="classification", targets=[("c", "")], class_labels=["a", "b"],
            intervals=None,
        )
    assert isinstance(info.value.__cause__, BundleError)
