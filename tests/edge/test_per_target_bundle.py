"""Per-target bundles (format 4) on the edge, with the committed trainer-built one (tests/support/trained.py
``PER_TARGET_BUNDLE``: PLS serves ``linear_pct``, the int8 CNN ``curved_pct``): loading, each target from its own
model in the bundle and in the inference engine, the self-test of both models, and the refusal of a malformed
serving map, a second model without one, and missing golden values of the second model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edge.bundle import (
    BLEND_FORMAT_VERSION,
    SERVING_FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    GoldenVectors,
    load_bundle,
)
from edge.errors import BundleError
from edge.inference import InferenceEngine, Prediction
from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
from firmware_bridge.frames import Spectrum
from tests.support import trained
from tests.support.bundles import read_zip, rehash_manifest, write_zip

BUNDLE = trained.committed(trained.PER_TARGET_BUNDLE)
#: An int8 output of this machine's runtime against the trainer's golden value: one output step.
INT8_LSB = 1.0


def test_the_committed_per_target_bundle_loads_and_self_tests_both_models() -> None:
    bundle = load_bundle(BUNDLE)
    assert bundle.manifest["format_version"] == SERVING_FORMAT_VERSION
    assert bundle.serving is not None
    assert bundle.serving.member_names == ("pls", "cnn") and bundle.serving.by_target == ("pls", "cnn")
    assert not bundle.runtime.is_quantized and bundle.serving.second.runtime.is_quantized
    assert bundle.self_test is not None and bundle.self_test.summary().startswith("PASSED")
    assert "serving per target: linear_pct <- pls, curved_pct <- cnn" in bundle.describe()
    assert bundle.metrics["deployed_model"] == "per_target"


def test_each_target_comes_from_the_model_that_serves_it() -> None:
    """The bundle's predictions: linear_pct is the PLS's own output, curved_pct the CNN's, each as the trainer
    computed it for the golden vectors (``outputs`` of the primary, ``outputs_2`` of the second model)."""
    bundle = load_bundle(BUNDLE)
    g = bundle.golden
    assert g.outputs_2 is not None and g.preprocessed_2 is not None and bundle.serving is not None
    got = np.stack([bundle.predict_spectra(g.raw[i], **g.context(i)) for i in range(g.count)])
    np.testing.assert_allclose(got[:, 0], g.outputs[:, 0], rtol=1e-4, atol=1e-5)
    step = bundle.serving.second.runtime.output_step
    assert step is not None
    assert np.all(np.abs(got[:, 1] - g.outputs_2[:, 1]) <= INT8_LSB * step[1] * (1 + 1e-6))
    # Neither model alone: the two models disagree on each target, so the assembly is what decides.
    assert not np.allclose(g.outputs[:, 1], g.outputs_2[:, 1], rtol=1e-3)
    assert not np.allclose(g.outputs[:, 0], g.outputs_2[:, 0], rtol=1e-3)


def _spectrum(seq: int, counts: np.ndarray) -> Spectrum:
    return Spectrum(seq=seq, timestamp_us=1000 * seq, integration_time_us=10_000, detector_temp_c=25.0,
                    saturated_count=0, counts=np.asarray(counts, dtype=np.float32))


def _engine_predictions(bundle: Any) -> tuple[list[Spectrum], ReferenceSet, list[Any], list[Any]]:
    """The golden vectors as device frames (counts with the golden dark and white), and the inference engine's
    predictions of them one frame at a time and as one batch."""
    g = bundle.golden
    assert g.dark is not None and g.reference is not None and g.wavelengths is not None
    dark = g.dark if g.dark.ndim == 1 else g.dark[0]
    white = g.reference if g.reference.ndim == 1 else g.reference[0]
    now = 1_700_000_000.0
    refs = (ReferenceSet()
            .with_spectrum(ReferenceSpectrum(ReferenceKind.DARK, dark.astype(np.float32), now, 10_000))
            .with_spectrum(ReferenceSpectrum(ReferenceKind.WHITE, white.astype(np.float32), now, 10_000)))
    engine = InferenceEngine(bundle, clock=lambda: now)
    spectra = [_spectrum(i, g.raw[i]) for i in range(g.count)]
    one = [engine.process(s, refs, wavelengths_nm=g.wavelengths, now_s=now) for s in spectra]
    many = engine.process_many(spectra, refs, wavelengths_nm=g.wavelengths, now_s=now)
    return spectra, refs, list(one), list(many)


def test_the_inference_engine_publishes_each_target_from_its_model_one_at_a_time_and_in_batches() -> None:
    bundle = load_bundle(BUNDLE)
    g = bundle.golden
    spectra, refs, one, many = _engine_predictions(bundle)
    ctx = {"dark": refs.context()["dark"], "reference": refs.context()["reference"], "wavelengths": g.wavelengths}
    want = np.asarray(bundle.predict_spectra(np.stack([s.counts for s in spectra]), **ctx), dtype=np.float64)
    assert bundle.serving is not None
    second = np.asarray(bundle.serving.second.predict(np.stack([s.counts for s in spectra]), **ctx))
    for i, (a, b) in enumerate(zip(one, many)):
        assert isinstance(a, Prediction) and isinstance(b, Prediction), (a, b)
        assert a.names == ("linear_pct", "curved_pct")
        assert dataclasses.replace(a, compute_us=0.0) == dataclasses.replace(b, compute_us=0.0)
        assert a.values == pytest.approx(tuple(want[i]), rel=1e-6, abs=1e-6)
        assert a.values[1] == pytest.approx(float(second[i, 1]), rel=1e-6, abs=1e-6)  # the CNN's own output
        assert a.lower is not None and a.upper is not None and a.lower[1] < a.values[1] < a.upper[1]


def _blend(weights: list[float], targets: list[str]) -> Callable[[dict[str, Any]], None]:
    """The committed bundle made a format-5 bundle with these ``serving.weights`` and ``serving.targets``."""
    def edit(manifest: dict[str, Any]) -> None:
        manifest["format_version"] = BLEND_FORMAT_VERSION
        manifest["serving"]["weights"] = weights
        manifest["serving"]["targets"] = targets
    return edit


def test_a_blended_target_is_the_weighted_average_of_both_models_in_the_bundle_and_the_engine(
        tmp_path: Path) -> None:
    """Format 5: curved_pct served by 0.75 PLS + 0.25 CNN (member 1's weight 0.25), linear_pct by PLS alone; the
    bundle, the inference engine one frame at a time and in batches all give the weighted average of the two
    models' own outputs, and the self-test of both models still passes."""
    bundle = load_bundle(_edited(tmp_path, _blend([0.0, 0.25], ["pls", "pls"])))
    assert bundle.manifest["format_version"] == BLEND_FORMAT_VERSION and bundle.serving is not None
    assert bundle.serving.weights == (0.0, 0.25)
    assert bundle.self_test is not None and bundle.self_test.summary().startswith("PASSED")
    assert "serving per target: linear_pct <- pls, curved_pct <- 0.75 pls + 0.25 cnn" in bundle.describe()
    g = bundle.golden
    assert g.dark is not None and g.reference is not None and g.wavelengths is not None
    dark = g.dark if g.dark.ndim == 1 else g.dark[0]
    white = g.reference if g.reference.ndim == 1 else g.reference[0]
    ctx = {"dark": dark, "reference": white, "wavelengths": g.wavelengths}
    X = np.asarray(g.raw, dtype=np.float64)
    pls = np.asarray(bundle.predict_features(bundle.preprocess(X, **ctx)), dtype=np.float64)
    cnn = np.asarray(bundle.serving.second.predict(X, **ctx), dtype=np.float64)
    want = np.stack([pls[:, 0], 0.75 * pls[:, 1] + 0.25 * cnn[:, 1]], axis=1)
    got = np.asarray(bundle.predict_spectra(X, **ctx), dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the blend is neither model alone: the two disagree on curved_pct
    assert np.all(np.abs(got[:, 1] - pls[:, 1]) > 1e-4) and np.all(np.abs(got[:, 1] - cnn[:, 1]) > 1e-4)
    _, _, one, many = _engine_predictions(bundle)
    for i, (a, b) in enumerate(zip(one, many)):
        assert isinstance(a, Prediction) and isinstance(b, Prediction), (a, b)
        assert dataclasses.replace(a, compute_us=0.0) == dataclasses.replace(b, compute_us=0.0)
        assert a.values == pytest.approx(tuple(want[i]), rel=1e-5, abs=1e-5)


def _edited(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None,
            members: Callable[[dict[str, bytes]], None] | None = None) -> Path:
    m = read_zip(BUNDLE)
    if members is not None:
        members(m)
    rehash_manifest(m, edit)
    return write_zip(tmp_path / "edited.spectrolite", m)


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        d: Any = manifest
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (_set(("serving", "targets"), ["pls", "svm"]),
     "manifest: serving.targets[1]: expected one of the members ['pls', 'cnn'], got 'svm'"),
    (_set(("serving", "targets"), ["pls", "pls"]),
     "manifest: serving.targets: expected every member serving at least one target, got 'cnn serving none'"),
    (_set(("serving", "targets"), ["pls"]),
     "manifest: serving.targets: expected 2 member names (one per target), got ['pls']"),
    (_set(("serving", "members", 1, "name"), "pls"),
     "manifest: serving.members: expected distinct member names, got ['pls', 'pls']"),
    (_set(("serving", "members", 1, "model"), "model.tflite"),
     "manifest: serving.members[1].model: expected 'model_2.tflite', got 'model.tflite'"),
    (_set(("serving", "members", 0, "output_transform"), {"scale": [1, 1], "offset": [0, 0]}),
     "manifest: serving.members[0]: unknown key"),
    (_set(("serving", "members", 1, "output_transform", "scale"), [1.0]),
     "manifest: serving.members[1].output_transform.scale: expected 2 finite numbers (one per target)"),
    (_set(("serving", "members"), [{"name": "pls", "model": "model.tflite", "preprocessing": "preprocessing.json"}]),
     "manifest: serving.members: expected a list of 2 members"),
    (_set(("format_version",), 3), "manifest: unknown key"),
    (_set(("format_version",), max(SUPPORTED_FORMAT_VERSIONS) + 1),
     f"manifest: format_version {max(SUPPORTED_FORMAT_VERSIONS) + 1} is newer than this code supports"),
    # weights (a blend) exist from format 5 on
    (_set(("serving", "weights"), [0.0, 1.0]), "manifest: serving: unknown key"),
    (_blend([0.0, 1.5], ["pls", "cnn"]), "manifest: serving.weights[1]: expected a number in [0, 1], got 1.5"),
    (_blend([0.0], ["pls", "cnn"]),
     "manifest: serving.weights: expected a list of 2 numbers (member 1's weight per target), got 1"),
    (_blend([0.0, 0.4], ["pls", "cnn"]),
     "manifest: serving.targets[1]: expected 'pls', the member of the larger weight (weights[1] = 0.4), got 'cnn'"),
    (_blend([0.0, 0.0], ["pls", "pls"]),
     "manifest: serving.targets: expected every member serving at least one target, got 'cnn serving none'"),
])
def test_a_malformed_serving_map_is_refused_naming_the_field(tmp_path: Path, edit: Callable[[dict[str, Any]], None],
                                                             message: str) -> None:
    with pytest.raises(BundleError) as err:
        load_bundle(_edited(tmp_path, edit))
    assert message in str(err.value)


def test_a_second_model_without_a_serving_map_is_refused(tmp_path: Path) -> None:
    def drop(manifest: dict[str, Any]) -> None:
        del manifest["serving"]

    with pytest.raises(BundleError, match=r"manifest: members: expected model_2.tflite and preprocessing_2.json only "
                                          r"with a serving section, got no serving section"):
        load_bundle(_edited(tmp_path, drop))


def test_a_serving_map_without_the_second_model_is_refused(tmp_path: Path) -> None:
    def drop(m: dict[str, bytes]) -> None:
        del m["model_2.tflite"]

    with pytest.raises(BundleError, match=r"manifest: members: expected the member model_2.tflite of serving member "
                                          r"'cnn', got none"):
        load_bundle(_edited(tmp_path, members=drop))


def test_the_second_model_is_self_tested_on_its_own_golden_values(tmp_path: Path) -> None:
    golden = load_bundle(BUNDLE, self_test=False).golden
    assert golden.outputs_2 is not None

    def wrong_outputs(m: dict[str, bytes]) -> None:
        assert golden.outputs_2 is not None
        m["golden.npz"] = dataclasses.replace(golden, outputs_2=golden.outputs_2 + 1.0).to_npz_bytes()

    with pytest.raises(BundleError, match=r"^serving member cnn: golden vector 0: output 0 is .* expected .*int8 LSB"):
        load_bundle(_edited(tmp_path, members=wrong_outputs))

    def no_outputs(m: dict[str, bytes]) -> None:
        m["golden.npz"] = dataclasses.replace(golden, preprocessed_2=None, outputs_2=None).to_npz_bytes()

    with pytest.raises(BundleError, match="the bundle has a second serving member but no preprocessed_2 and outputs_2"):
        load_bundle(_edited(tmp_path, members=no_outputs))


def test_the_second_models_pipeline_must_take_the_same_frames(tmp_path: Path) -> None:
    """A second model behind a pipeline that does not resample the device axis (the primary's does) is refused."""
    def no_resample(m: dict[str, bytes]) -> None:
        spec = json.loads(m["preprocessing_2.json"])
        spec["steps"] = [s for s in spec["steps"] if s["op"] != "resample"]
        m["preprocessing_2.json"] = json.dumps(spec).encode()

    with pytest.raises(BundleError, match=r"serving member cnn: |preprocessing_2.json: expected a pipeline that "
                                          r"resamples"):
        load_bundle(_edited(tmp_path, members=no_resample))


def test_one_model_bundles_are_what_they_were() -> None:
    for path in (trained.DEMO_V1, trained.DEMO_CNN, trained.DEMO_AE):
        bundle = load_bundle(trained.committed(path))
        assert bundle.serving is None and bundle.manifest["format_version"] in (2, 3)
        assert bundle.golden.outputs_2 is None
        assert "serving per target" not in bundle.describe()


def test_golden_vectors_of_a_second_model_come_in_pairs() -> None:
    golden = load_bundle(BUNDLE, self_test=False).golden
    half = dataclasses.replace(golden, outputs_2=None)
    with pytest.raises(BundleError, match="expected preprocessed_2 and outputs_2 together, got one alone"):
        GoldenVectors.from_npz_bytes(half.to_npz_bytes())
