"""Tests of edge.ood_noise and ood.json format 3: each spectrum's detector noise level from its frame, T2 and Q
under that level, the dict round trip and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.errors import BundleError, InputContractError
from edge.ood import OodModel, frame_noise_level
from edge.ood_noise import LineNoise, signal_variance
from firmware_bridge.physics import DetectorModel

SCORE_RTOL = 1e-12


def _noise(channels: int = 12, k: int = 3) -> LineNoise:
    return LineNoise(pixel_gain=np.linspace(0.1, 1.2, channels), electrons_per_count=2.5, read_noise_counts=4.0,
                     component_noise=np.linspace(0.5, 1.5, k), signal_variance=np.array([5.0, 2.0, 0.2])[:k],
                     q_signal=0.8, q_noise=3.0)


def _model() -> OodModel:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(12, 3)))
    return OodModel(mean=rng.normal(size=12), components=q.T, explained_variance=np.array([6.0, 3.0, 1.0]),
                    t2_limit=11.0, q_limit=2.0, alpha=0.01, scale=np.linspace(0.5, 2.0, 12), noise=_noise())


@pytest.mark.parametrize("quantity", ["absorbance", "reflectance"])
def test_signal_variance_matches_the_detectors_noise(quantity: str) -> None:
    """The first-order variance of the processed signal matches the spread of many noisy reads of the simulator's
    detector (shot, read and rounding noise) within 5 %, at bright and at dark pixels."""
    wl = np.linspace(900.0, 1700.0, 40)
    det = DetectorModel(wl)
    A = np.linspace(0.5, 3.0, 40)
    t = det.integration_time_for(A[None])
    dark, white = det.dark_mean_counts(t), det.expected_counts(None, t)
    rng = np.random.default_rng(1)
    reads = np.stack([det.measure(A, t, rng).counts for _ in range(4000)]).astype(np.float64)
    ratio = (reads - dark) / (white - dark)
    measured = np.var(ratio if quantity == "reflectance" else -np.log10(ratio), axis=0)
    predicted = signal_variance(det.expected_counts(A, t), dark, white, electrons_per_count=det.electrons_per_count,
                                read_noise_counts=det.read_noise_counts, quantity=quantity)
    np.testing.assert_allclose(predicted, measured, rtol=0.1)
    assert np.median(np.abs(predicted / measured - 1.0)) < 0.05
    # Averaging scans divides the counts' noise (not the rounding's) by their number.
    four = signal_variance(det.expected_counts(A, t), dark, white, averages=4, quantity=quantity,
                           electrons_per_count=det.electrons_per_count, read_noise_counts=det.read_noise_counts)
    assert np.all(four < predicted / 3.0)


def test_level_weighs_the_pixel_variances_by_the_gains_and_a_darker_frame_is_noisier() -> None:
    n = _noise()
    dark, white = np.full(12, 800.0), np.full(12, 40000.0)
    bright = dark + (white - dark) * 0.5
    dim = dark + (white - dark) * 0.005
    expected = signal_variance(bright, dark, white, electrons_per_count=2.5, read_noise_counts=4.0) @ n.pixel_gain
    assert float(n.level(bright, dark, white)) == pytest.approx(expected, rel=1e-12)
    assert float(n.level(dim, dark, white)) > 50 * float(n.level(bright, dark, white))
    both = n.level(np.stack([bright, dim]), dark, white)
    assert both.shape == (2,) and both[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(BundleError, match="expected frames of 12 channels, got 11"):
        n.level(bright[:11], dark[:11], white[:11])


def test_scores_follow_the_per_spectrum_formulas() -> None:
    """T2 divides each axis by signal + rho * noise variance, Q by q_signal + rho * q_noise; no level is rho = 1."""
    m = _model()
    assert m.scale is not None and m.noise is not None
    X = np.random.default_rng(2).normal(size=(4, 12))
    rho = np.array([0.1, 1.0, 3.0, 10.0])
    z = (X - m.mean) / m.scale
    T = z @ m.components.T
    resid = z - T @ m.components
    t2, q = m.score(X, rho)
    want_t2 = np.sum(T**2 / (m.noise.signal_variance + rho[:, None] * m.noise.component_noise), axis=1)
    want_q = np.sum(resid**2, axis=1) / (m.noise.q_signal + rho * m.noise.q_noise)
    np.testing.assert_allclose(t2, want_t2, rtol=SCORE_RTOL)
    np.testing.assert_allclose(q, want_q, rtol=SCORE_RTOL)
    # A noisier spectrum scores lower at the same position: its noise explains more of its distance.
    assert np.all(np.diff(m.score(np.repeat(X[:1], 4, axis=0), rho)[0]) < 0)
    t2_1, q_1 = m.score(X[0])
    t2_r1, q_r1 = m.score(X[0], 1.0)
    assert t2_1.shape == () and float(t2_1) == float(t2_r1) and float(q_1) == float(q_r1)
    assert m.is_outlier(X, rho).shape == (4,)


@pytest.mark.parametrize("with_noise", [True, False])
def test_score_rows_is_each_rows_score_bit_for_bit(with_noise: bool) -> None:
    """A batch's scores (the daemon's LINE path) are each row's own :meth:`score`, float for float, with a level
    per row (None: 1, a negative level: 0), with and without a noise model; a batch of the wrong shape is refused."""
    m = _model()
    if not with_noise:
        m = OodModel(mean=m.mean, components=m.components, explained_variance=m.explained_variance,
                     t2_limit=m.t2_limit, q_limit=m.q_limit, scale=m.scale)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(257, 12)) * np.logspace(-3, 3, 257)[:, None]
    levels: list[float | None] = [None if i % 7 == 0 else -1.0 if i % 11 == 0 else float(v)
                                  for i, v in enumerate(rng.uniform(0.01, 20.0, 257))]
    t2s, qs = m.score_rows(X, levels)
    assert all(type(v) is float for v in t2s + qs)
    assert [(float(a), float(b)) for a, b in (m.score(x, lv) for x, lv in zip(X, levels))] == list(zip(t2s, qs))
    with pytest.raises(InputContractError, match=r"expected 2 preprocessed spectra of shape \(12,\), got \(3, 12\)"):
        m.score_rows(X[:3], [None, None])


def test_format_3_round_trips_through_json_and_older_formats_stay() -> None:
    m = _model()
    d = json.loads(json.dumps(m.to_dict()))
    assert d["format_version"] == 3 and len(d["noise"]["pixel_gain"]) == 12
    back = OodModel.from_dict(d)
    assert back.noise is not None and back.to_dict() == m.to_dict()
    X = np.random.default_rng(3).normal(size=(5, 12))
    np.testing.assert_array_equal(back.score(X, 2.0)[0], m.score(X, 2.0)[0])
    scaled = OodModel(mean=m.mean, components=m.components, explained_variance=m.explained_variance, t2_limit=1.0,
                      q_limit=1.0, scale=m.scale)
    assert scaled.to_dict()["format_version"] == 2 and "noise" not in scaled.to_dict()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 2}, "expected no noise in format 2"),
        ({"noise": None}, "ood.noise: expected an object, got NoneType"),
        ({"noise": {"pixel_gain": [1.0]}}, r"ood.noise: missing key\(s\)"),
        ({"noise": {**_noise().to_dict(), "signal_variance": [1.0, 0.0, 1.0]}}, "signal_variance finite and > 0"),
        ({"noise": {**_noise().to_dict(), "pixel_gain": [-1.0] * 12}}, "pixel_gain finite and >= 0"),
        ({"noise": {**_noise().to_dict(), "component_noise": [1.0, 1.0]}}, "as many component_noise"),
        ({"noise": {**_noise(k=2).to_dict()}}, "expected 3 signal variances"),
        ({"noise": {**_noise().to_dict(), "quantity": "transmittance"}}, "expected quantity one of"),
        ({"noise": {**_noise().to_dict(), "q_signal": 0.0}}, "q_signal"),
    ],
)
def test_bad_noise_dicts_raise_bundle_errors(change: dict[str, object], message: str) -> None:
    d = {**_model().to_dict(), **change}
    with pytest.raises(BundleError, match=message):
        OodModel.from_dict(d)


def test_format_3_needs_its_noise_and_a_noise_needs_a_scale() -> None:
    d = _model().to_dict()
    del d["noise"]
    with pytest.raises(BundleError, match=r"missing key\(s\) noise"):
        OodModel.from_dict(d)
    m = _model()
    with pytest.raises(BundleError, match="expected a scale with a noise model"):
        OodModel(mean=m.mean, components=m.components, explained_variance=m.explained_variance, t2_limit=1.0,
                 q_limit=1.0, noise=m.noise)


def test_the_inference_stage_scores_each_frame_under_its_own_noise() -> None:
    """The same spectrum read with a tenth of the light (dark, white and sample: the same absorbance, the same
    preprocessed features) is noisier: the stage computes each frame's level from its counts and references, so
    the dim read's T2 and Q are smaller, exactly as the model scores those features at that level, and one
    spectrum the bright read flags is not flagged when read dim; a frame of another pixel count gets level 1."""
    from edge.bundle import load_bundle
    from edge.inference import InferenceEngine, Prediction
    from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
    from firmware_bridge.frames import Spectrum
    from tests.support.trained import DEMO_V1, committed

    bundle = load_bundle(committed(DEMO_V1))
    assert bundle.ood is not None and bundle.input_contract.frame_signal == "counts"
    n_ch = int(bundle.input_contract.pixel_count_min)
    wl = np.linspace(float(bundle.input_contract.wavelength_min), float(bundle.input_contract.wavelength_max), n_ch)
    base = bundle.ood
    # Gains that make the level, not the dim read's coarser count rounding, move T2: at 1 / n_ch the dim read's
    # level lowers its T2 by about 0.01 while the rounding of its counts raises it by about 0.015 (the demo PLS's
    # stacked raw branch feels the rounding).
    noise = LineNoise(pixel_gain=np.full(n_ch, 100.0 / n_ch), electrons_per_count=2.0, read_noise_counts=4.0,
                      component_noise=base.explained_variance * 0.5, signal_variance=base.explained_variance * 0.5,
                      q_signal=1.0, q_noise=1.0)
    model = OodModel(mean=base.mean, components=base.components, explained_variance=base.explained_variance,
                     t2_limit=1.0, q_limit=1e9, scale=np.ones(base.feature_shape), noise=noise)
    engine = InferenceEngine(bundle, clock=lambda: 0.0)
    engine.ood = model
    now = 1_700_000_000.0
    rng = np.random.default_rng(5)
    absorbance = 0.3 + 0.2 * rng.random(n_ch)

    def read(light: float) -> tuple[Spectrum, ReferenceSet]:
        dark = np.full(n_ch, 1000.0)
        white = dark + 50_000.0 * light
        counts = dark + (white - dark) * 10.0 ** (-absorbance)
        refs = (ReferenceSet().with_spectrum(ReferenceSpectrum(ReferenceKind.DARK, dark, now, 10_000))
                .with_spectrum(ReferenceSpectrum(ReferenceKind.WHITE, white, now, 10_000)))
        return Spectrum(seq=0, timestamp_us=0, integration_time_us=10_000, detector_temp_c=25.0,
                        counts=np.asarray(np.rint(counts), dtype=np.uint16)), refs

    outs = {}
    for light in (1.0, 0.1):
        spectrum, refs = read(light)
        out = engine.process(spectrum, refs, now_s=now, wavelengths_nm=wl)
        assert isinstance(out, Prediction) and out.ood is not None
        ctx = refs.context()
        x_pre = bundle.pipeline.transform(np.asarray(spectrum.counts, dtype=np.float64), wavelengths=wl, **ctx)
        rho = float(noise.level(spectrum.counts, ctx["dark"], ctx["reference"]))
        t2, q = model.score(x_pre, rho)
        assert (out.ood.t2, out.ood.q) == (float(t2), float(q))
        many = engine.process_many([spectrum, spectrum], refs, now_s=now, wavelengths_nm=wl)
        assert all(isinstance(o, Prediction) and o.ood == out.ood for o in many)
        outs[light] = (rho, out)
    (rho_bright, bright), (rho_dim, dim) = outs[1.0], outs[0.1]
    assert rho_dim > 5 * rho_bright
    assert bright.ood is not None and dim.ood is not None and dim.ood.t2 < bright.ood.t2 and dim.ood.q < bright.ood.q
    model_t2 = float(model.score(bundle.pipeline.transform(np.asarray(read(1.0)[0].counts, dtype=np.float64),
                                                           wavelengths=wl, **read(1.0)[1].context()))[0])
    limit = (dim.ood.t2 + bright.ood.t2) / 2
    engine.ood = OodModel(mean=base.mean, components=base.components, explained_variance=base.explained_variance,
                          t2_limit=limit, q_limit=1e9, scale=np.ones(base.feature_shape), noise=noise)
    flagged = {light: "out_of_distribution" in [str(f.value) for f in
                                                engine.process(*read(light), now_s=now, wavelengths_nm=wl).flags]
               for light in (1.0, 0.1)}
    assert flagged == {1.0: True, 0.1: False}
    assert model_t2 != bright.ood.t2  # level 1 is not what the bright frame got
    assert frame_noise_level(model, read(1.0)[0], {"dark": None, "reference": None}) is None
    assert frame_noise_level(base, read(1.0)[0], read(1.0)[1].context()) is None  # a model without a noise
