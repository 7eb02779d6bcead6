"""Detector model and synthetic data: counts in ADC range, saturation, dark current, absorbance round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.physics import DetectorModel, PhysicsError, absorbance_from_counts
from firmware_bridge.simulator import fit_wavelength_polynomial
from firmware_bridge.synthetic import load_npz, make_synthetic_dataset, save_npz

#: Shot + read noise of one spectrum, as absorbance, at absorbance <= 1 and 80 % ADC fill (about 2e-3 expected).
ABSORBANCE_NOISE_TOL = 0.01
#: Measured noise must match the model's sigma to within this relative error.
NOISE_SIGMA_RTOL = 0.15
#: Tablet spectra (log(1/T) 2.3 to 6) recovered from counts through a scaled reference: median error, absorbance.
TABLETS_MEDIAN_TOL = 0.02
#: The wavelength polynomial must reproduce a dataset axis to this, nm.
AXIS_TOL_NM = 1e-3


@pytest.fixture()
def model() -> DetectorModel:
    return DetectorModel(np.linspace(900.0, 1700.0, 256))


def test_counts_stay_in_adc_range_for_any_absorbance(model: DetectorModel) -> None:
    rng = np.random.default_rng(0)
    t = model.auto_integration_time_us(0.0)
    for absorbance in (np.full(256, -2.0), np.zeros(256), rng.uniform(-1, 8, 256), np.full(256, np.nan)):
        acq = model.measure(absorbance, t, rng, averages=3)
        assert acq.counts.dtype == np.uint16
        assert acq.counts.shape == (256,)
        assert int(acq.counts.max()) <= model.full_scale_counts


def test_saturation_is_flagged(model: DetectorModel) -> None:
    rng = np.random.default_rng(1)
    t = model.auto_integration_time_us(0.0)
    fine = model.measure(np.full(256, 0.2), t, rng)
    assert fine.saturated_count == 0 and not fine.saturated
    over = model.measure(np.full(256, -0.5), t, rng)  # 3x more light than the exposure was set for
    assert over.saturated
    assert over.saturated_count == int(np.count_nonzero(over.counts == model.full_scale_counts))


def test_dark_grows_with_integration_time_and_temperature(model: DetectorModel) -> None:
    rng = np.random.default_rng(2)
    short = model.dark(1_000, rng, averages=16).counts.astype(float).mean()
    long = model.dark(1_000_000, rng, averages=16).counts.astype(float).mean()
    assert long > short + 100  # 0.5 counts/ms over ~1 s
    expected = model.dark_mean_counts(1_000_000).mean() - model.dark_mean_counts(1_000).mean()
    assert long - short == pytest.approx(expected, rel=0.05)
    warm = model.dark_mean_counts(1_000_000, temp_c=39.0).mean() - model.bias_counts
    cold = model.dark_mean_counts(1_000_000, temp_c=25.0).mean() - model.bias_counts
    assert warm == pytest.approx(4 * cold, rel=1e-9)  # doubles every 7 degC


def test_noise_matches_shot_plus_read_noise(model: DetectorModel) -> None:
    rng = np.random.default_rng(3)
    t = model.auto_integration_time_us(0.0)
    a = np.full(256, 0.3)
    reads = np.stack([model.measure(a, t, rng).counts.astype(float) for _ in range(400)])
    mean = model.expected_counts(a, t)
    predicted = np.sqrt((mean - model.bias_counts) / model.electrons_per_count + model.read_noise_counts**2)
    np.testing.assert_allclose(reads.std(axis=0).mean(), predicted.mean(), rtol=NOISE_SIGMA_RTOL)
    averaged = np.stack([model.measure(a, t, rng, averages=16).counts.astype(float) for _ in range(100)])
    assert averaged.std(axis=0).mean() < reads.std(axis=0).mean() / 2.5  # ~1/4 with 16 scans


def test_absorbance_recovered_from_counts(model: DetectorModel) -> None:
    rng = np.random.default_rng(4)
    data = make_synthetic_dataset(20, seed=4, n_channels=256)
    t = model.auto_integration_time_us(float(data["X"].min()) - 0.05)
    dark = model.dark(t, rng)
    white = model.reference(t, rng)
    assert white.counts.dtype == np.uint16 and not white.saturated
    for row in data["X"]:
        sample = model.measure(row, t, rng)
        recovered = absorbance_from_counts(sample.counts, dark.counts, white.counts)
        assert np.sqrt(np.mean((recovered - row) ** 2)) < ABSORBANCE_NOISE_TOL


def test_strong_absorbers_use_a_scaled_float_reference(datasets_dir: Path) -> None:
    data = load_npz(datasets_dir / "idrc2002_tablets.npz")
    model = DetectorModel(data["wavelengths"])
    rng = np.random.default_rng(5)
    t = model.auto_integration_time_us(float(np.percentile(data["X"], 1)) - 0.05)
    reference = model.reference(t, rng, averages=4)
    assert reference.counts.dtype == np.float32 and reference.integration_time_us == t
    assert float(reference.counts.max()) > model.full_scale_counts  # more light than the ADC could hold
    dark = model.dark(t, rng, averages=4)
    errors = []
    for row in data["X"][:20].astype(np.float64):
        sample = model.measure(row, t, rng)
        assert sample.counts.dtype == np.uint16
        errors.append(np.median(np.abs(absorbance_from_counts(sample.counts, dark.counts, reference.counts) - row)))
    assert float(np.median(errors)) < TABLETS_MEDIAN_TOL


def test_model_rejects_bad_arguments(model: DetectorModel) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(PhysicsError, match="expected absorbance of shape"):
        model.measure(np.zeros(10), 1000, rng)
    with pytest.raises(PhysicsError, match="positive integration time"):
        model.dark(0, rng)
    with pytest.raises(ValueError):
        DetectorModel(np.zeros((2, 2)))


def test_synthetic_is_seeded_and_npz_compatible(tmp_path: Path) -> None:
    a = make_synthetic_dataset(30, seed=7, n_channels=64)
    b = make_synthetic_dataset(30, seed=7, n_channels=64)
    c = make_synthetic_dataset(30, seed=8, n_channels=64)
    for key in ("X", "wavelengths", "y"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["X"], c["X"])
    assert a["X"].dtype == np.float32 and a["X"].shape == (30, 64)
    assert a["y"].shape == (30, 3) and a["target_names"].shape == (3,)
    back = load_npz(save_npz(a, tmp_path / "synthetic.npz"))
    np.testing.assert_array_equal(back["X"], a["X"])
    assert back["target_names"].tolist() == a["target_names"].tolist()


def test_synthetic_obeys_beer_lambert() -> None:
    """Without baseline, scatter, interferent or noise, absorbance is linear in the concentrations."""
    d = make_synthetic_dataset(
        40,
        seed=2,
        n_channels=80,
        noise_absorbance=0.0,
        baseline_offset_sd=0.0,
        baseline_slope_sd=0.0,
        scatter_sd=0.0,
        interferent_max=0.0,
    )
    x = d["X"].astype(np.float64)
    design = np.hstack([d["y"].astype(np.float64), np.ones((40, 1))])
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    np.testing.assert_allclose(design @ coef, x, atol=1e-5)  # float32 storage
    np.testing.assert_allclose(coef[:3], d["pure_absorptivity"], atol=1e-5)


def test_wavelength_polynomial_reproduces_dataset_axes(datasets_dir: Path) -> None:
    for name in ("idrc2002_tablets.npz", "tecator.npz"):
        wl = load_npz(datasets_dir / name)["wavelengths"]
        coeffs = fit_wavelength_polynomial(wl)
        fitted = np.polynomial.polynomial.polyval(np.arange(wl.size), coeffs)
        assert np.max(np.abs(fitted - wl)) < AXIS_TOL_NM


def test_docstring_examples() -> None:
    import doctest

    import firmware_bridge.physics
    import firmware_bridge.synthetic

    for module in (firmware_bridge.physics, firmware_bridge.synthetic):
        assert doctest.testmod(module).failed == 0
