"""Tests of trainer.explain: importance peaks on a known absorbing band, and a training-only artifact lights up."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression

from trainer import explain

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

N_CHANNELS = 120
WAVELENGTHS = 1000.0 + 2.0 * np.arange(N_CHANNELS)
BAND = (50, 60)  # channels of the analyte's absorption band (centre 55)
ARTIFACT = (100, 104)  # channels of a spurious spike correlated with y in training only
#: The peak may sit at the band's flank (a derivative-like filter): allowed distance from the band, in channels.
PEAK_MARGIN = 4
#: PLS: an artifact "lights up" when its mean importance exceeds this multiple of the median importance.
LIGHT_UP_FACTOR = 3.0
#: CNN (integrated gradients): the artifact's peak reaches at least this fraction of the strongest peak elsewhere
#: (measured 1.05-1.4 over four training seeds, 0.2-0.6 without the artifact).
LIGHT_UP_PEAK_FRACTION = 0.8
#: Without the artifact, its region's score stays below this fraction of the score with it.
DARK_FRACTION = 0.6
#: Integrated-gradients completeness: |sum(attr) - (f(x) - f(b))| relative to the spread of f.
IG_COMPLETENESS_RTOL = 0.05
SEED = 0


def _gauss(centre: float, width: float) -> np.ndarray:
    i = np.arange(N_CHANNELS)
    return np.exp(-0.5 * ((i - centre) / width) ** 2)


def make_spectra(n: int, *, seed: int, artifact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Beer-Lambert-like spectra: analyte band at BAND, two interferents, offset/slope baseline, noise."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.0, 1.0, n)
    c1, c2 = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    i = np.arange(N_CHANNELS) / N_CHANNELS
    X = (
        0.5
        + y[:, None] * _gauss(55, 3)
        + c1[:, None] * _gauss(20, 6)
        + c2[:, None] * _gauss(85, 5)
        + rng.normal(0, 0.05, (n, 1))
        + rng.normal(0, 0.05, (n, 1)) * i
        + rng.normal(0, 0.004, (n, N_CHANNELS))
    )
    if artifact:
        X[:, ARTIFACT[0] : ARTIFACT[1]] += 0.6 * y[:, None]
    return X, y


def _near_band(idx: int) -> bool:
    return BAND[0] - PEAK_MARGIN <= idx < BAND[1] + PEAK_MARGIN


def _tiny_cnn(X: np.ndarray, y: np.ndarray, seed: int = SEED, epochs: int = 40) -> object:
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=(X.shape[1],))
    h = keras.layers.Reshape((X.shape[1], 1))(inp)
    h = keras.layers.Conv1D(4, 7, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(1)(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    mu, sd = X.mean(axis=0), X.std(axis=0)
    model.fit(((X - mu) / sd).astype(np.float32), (y - y.mean()) / y.std(), epochs=epochs, batch_size=32, verbose=0)
    # Fold the input standardisation into a wrapper so the explained model takes raw spectra.
    raw = keras.Input(shape=(X.shape[1],))
    scaled = keras.layers.Rescaling(scale=(1 / sd).astype(np.float32), offset=(-mu / sd).astype(np.float32))(raw)
    return keras.Model(raw, model(scaled))


@pytest.fixture(scope="module")
def band_data() -> tuple[np.ndarray, np.ndarray]:
    return make_spectra(240, seed=SEED)


@pytest.fixture(scope="module")
def band_cnn(band_data: tuple[np.ndarray, np.ndarray]) -> object:
    return _tiny_cnn(*band_data)


@pytest.mark.slow
def test_integrated_gradients_peak_inside_band(band_cnn: object, band_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = band_data
    attr = explain.integrated_gradients(band_cnn, X[:24], X_train=X, steps=32)
    assert attr.shape == (24, N_CHANNELS)
    prof = explain.importance_profile(attr)
    assert _near_band(int(np.argmax(prof))), int(np.argmax(prof))


@pytest.mark.slow
def test_integrated_gradients_completeness(band_cnn: object, band_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = band_data
    base = X.mean(axis=0)
    attr = explain.integrated_gradients(band_cnn, X[:8], baseline=base, steps=128)
    f = band_cnn.predict(np.vstack([X[:8], base[None]]).astype(np.float32), verbose=0)[:, 0]
    spread = np.ptp(band_cnn.predict(X.astype(np.float32), verbose=0))
    np.testing.assert_allclose(attr.sum(axis=1), f[:8] - f[8], atol=IG_COMPLETENESS_RTOL * spread)


@pytest.mark.slow
def test_zeros_baseline_and_bad_arguments(band_cnn: object, band_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = band_data
    attr = explain.integrated_gradients(band_cnn, X[:2], baseline="zeros", steps=8)
    assert attr.shape == (2, N_CHANNELS) and np.all(np.isfinite(attr))
    with pytest.raises(explain.ExplainError, match="baseline"):
        explain.integrated_gradients(band_cnn, X[:2], baseline="median")
    with pytest.raises(explain.ExplainError, match="output in 0..0"):
        explain.integrated_gradients(band_cnn, X[:2], output=1)
    with pytest.raises(explain.ExplainError, match="occlusion window"):
        explain.occlusion(lambda Z: Z[:, 0], X[:2], window=0)


@pytest.mark.slow
def test_occlusion_peak_inside_band(band_cnn: object, band_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = band_data
    occ = explain.occlusion(lambda Z: band_cnn.predict(Z.astype(np.float32), verbose=0), X[:24], window=5, X_train=X)
    assert occ.shape == (N_CHANNELS, 1)
    assert _near_band(int(np.argmax(occ[:, 0])))


def test_pls_coefficients_and_vip_peak_inside_band(band_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = band_data
    pls = PLSRegression(n_components=4, scale=False).fit(X, y)
    coef = explain.pls_coefficients(pls)
    assert coef.shape == (N_CHANNELS, 1)
    np.testing.assert_allclose((X - X.mean(0)) @ coef[:, 0] + y.mean(), pls.predict(X).ravel(), atol=1e-8)
    assert _near_band(int(np.argmax(np.abs(coef[:, 0]))))
    vip = explain.vip_scores(pls)
    assert vip.shape == (N_CHANNELS,)
    np.testing.assert_allclose(np.mean(vip**2), 1.0, rtol=1e-10)
    assert _near_band(int(np.argmax(vip)))
    occ = explain.occlusion(lambda Z: pls.predict(Z), X[:24], window=5)
    assert _near_band(int(np.argmax(occ[:, 0])))


def _artifact_ratio(profile: np.ndarray) -> float:
    """Mean importance in the artifact region over the median importance."""
    return float(profile[ARTIFACT[0] : ARTIFACT[1]].mean() / np.median(profile))


def _artifact_peak_fraction(profile: np.ndarray) -> float:
    """Peak importance in the artifact region over the peak importance everywhere else (3 channels of margin)."""
    elsewhere = np.ones(profile.size, dtype=bool)
    elsewhere[ARTIFACT[0] - 3 : ARTIFACT[1] + 3] = False
    return float(profile[ARTIFACT[0] : ARTIFACT[1]].max() / profile[elsewhere].max())


@pytest.mark.slow
def test_spurious_artifact_lights_up() -> None:
    """A spike that tracks y in training only carries importance; without it, the same region stays dark."""
    X_art, y_art = make_spectra(240, seed=1, artifact=True)
    X_clean, y_clean = make_spectra(240, seed=1, artifact=False)
    ratios = {}
    for name, (X, y) in {"artifact": (X_art, y_art), "clean": (X_clean, y_clean)}.items():
        cnn = _tiny_cnn(X, y, epochs=30)
        ig = explain.importance_profile(explain.integrated_gradients(cnn, X[:24], X_train=X, steps=32))
        pls = PLSRegression(n_components=4, scale=False).fit(X, y)
        ratios[name] = {
            "ig": _artifact_peak_fraction(ig),
            "vip": _artifact_ratio(explain.vip_scores(pls)),
            "coef": _artifact_ratio(np.abs(explain.pls_coefficients(pls)[:, 0])),
        }
    assert ratios["artifact"]["ig"] > LIGHT_UP_PEAK_FRACTION, ratios
    for method in ("vip", "coef"):
        assert ratios["artifact"][method] > LIGHT_UP_FACTOR, (method, ratios)
    for method in ("ig", "vip", "coef"):
        assert ratios["clean"][method] < DARK_FRACTION * ratios["artifact"][method], (method, ratios)


@pytest.mark.slow
def test_first_layer_kernels_and_plots(band_cnn: object, band_data: tuple[np.ndarray, np.ndarray], tmp_path) -> None:
    X, y = band_data
    k = explain.first_layer_kernels(band_cnn)
    assert k.shape == (7, 1, 4)
    out = explain.explain_cnn(
        band_cnn, X, X[:8], wavelengths=WAVELENGTHS, mean_spectrum=X.mean(0), target_names=["y"], out_dir=tmp_path,
        steps=8, window=5,
    )
    pls = PLSRegression(n_components=3, scale=False).fit(X, y)
    out_pls = explain.explain_pls(
        pls, wavelengths=WAVELENGTHS, mean_spectrum=X.mean(0), target_names=["y"], out_dir=tmp_path
    )
    for p in (out["importance_png"], out["kernels_png"], out_pls["coef_png"], out_pls["vip_png"]):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["ig"].shape == (N_CHANNELS, 1) and out["occlusion"].shape == (N_CHANNELS, 1)
    with pytest.raises(explain.ExplainError, match="expected 120 importance values"):
        explain.plot_importance(WAVELENGTHS, X.mean(0), np.ones(5), tmp_path / "bad.png")


@pytest.mark.slow
def test_explain_run_and_html_section(band_cnn: object, band_data: tuple[np.ndarray, np.ndarray], tmp_path) -> None:
    from trainer.pls import fit_pls_baseline
    from trainer.preprocessing import make_pipeline_from_config

    X, y = band_data
    pls = fit_pls_baseline(
        X, y[:, None], candidates={"center": [{"op": "center"}]}, groups=np.arange(X.shape[0]), target_names=["y"],
        folds=3, max_components=5, wavelengths=WAVELENGTHS,
    )
    identity = make_pipeline_from_config([], WAVELENGTHS).fit(X)
    paths = explain.explain_run(
        tmp_path / "report", X_abs_train=X, X_abs_explain=X[:8], wavelengths=WAVELENGTHS, target_names=["y"],
        keras_model=band_cnn, preprocess=identity, pls_baseline=pls, steps=8, window=5,
    )
    assert set(paths) == {"cnn_importance", "cnn_kernels", "pls_coefficients_y", "pls_vip_y"}
    assert all(p.parent == tmp_path / "report" and p.is_file() for p in paths.values())
    section = explain.html_section(paths, tmp_path / "report")
    assert (
        section.count("<img") == 4
        and 'src="cnn_importance.png"' in section
        and "/" not in section.split('src="')[1][:20]
    )


def test_feature_axis_follows_crop_and_stack_to_wavelengths() -> None:
    from trainer.explain.run import _feature_axis
    from trainer.preprocessing import make_pipeline_from_config

    w = np.linspace(600.0, 1898.0, 650)
    X = np.random.default_rng(0).normal(1.0, 0.1, (20, 650)).cumsum(axis=1) / 100
    pre = make_pipeline_from_config(
        [{"op": "crop", "wavelength_min": 800, "wavelength_max": 1700},
         {"op": "stack", "branches": [[{"op": "snv"}], [{"op": "snv"}, {"op": "savgol", "window": 15,
                                                                         "polyorder": 2, "deriv": 1}]]}],
        w,
    ).fit(X)
    n_features = pre.transform(X).shape[1]
    axis, unit = _feature_axis(n_features, w, "nm", pre)
    assert unit == "nm" and axis.size == n_features
    assert axis[0] >= 800.0 - 1.0 and axis[-1] <= 1700.0 + 1.0
    # a step that remaps channels (a non-square linear map) falls back to the feature index
    assert _feature_axis(7, w, "nm", None)[1] == "index"
