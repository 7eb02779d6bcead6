"""Trainer-side preprocessing estimators: scikit-learn behaviour, config builder, and bitwise parity with the edge."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import savgol_filter
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import edge.preprocess as ep
from edge.errors import InputContractError, SpecError
from trainer.preprocessing import (
    EMSC,
    ESTIMATORS,
    MSC,
    SNV,
    Autoscale,
    Crop,
    SavitzkyGolay,
    Stack,
    TrainerPipeline,
    make_pipeline_from_config,
)

#: Agreement with an oracle, relative to the largest expected magnitude.
ORACLE_RTOL = 1e-10

TYPICAL = [
    {"op": "snv"},
    {"op": "savgol", "window": 15, "polyorder": 2, "deriv": 1},
    {"op": "crop", "wavelength_min": 1100.0, "wavelength_max": 1800.0},
    {"op": "autoscale"},
]


def assert_rel_close(actual: np.ndarray, expected: np.ndarray, rtol: float = ORACLE_RTOL) -> None:
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(actual - expected).max()) <= rtol * scale


@pytest.fixture(scope="module")
def tablets(datasets_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instrument-1 tablets: 60 training spectra, 20 others, and the axis (nm)."""
    with np.load(datasets_dir / "idrc2002_tablets.npz") as d:
        X = d["X"][d["instrument"] == 1].astype(np.float64)
        return X[:60], X[60:80], d["wavelengths"].astype(np.float64)


def test_the_trainer_fits_exactly_the_edge_registry_ops() -> None:
    """One op registry (#14): the trainer's op list is the edge's ``@register`` list, each keyed by its step class."""
    assert set(ESTIMATORS) == set(ep.known_ops())
    for op, est in ESTIMATORS.items():
        assert ep.step_class(op).op == op, (op, est)


def test_typical_chain_matches_scipy_and_sklearn(tablets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Xtr, Xte, wl = tablets
    tp = make_pipeline_from_config(TYPICAL, wl).fit(Xtr)

    def head(X: np.ndarray) -> np.ndarray:
        snv = (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)
        keep = (wl >= 1100.0) & (wl <= 1800.0)
        return savgol_filter(snv, 15, 2, deriv=1)[:, keep]

    scaler = StandardScaler().fit(head(Xtr))
    assert_rel_close(tp.transform(Xte), scaler.transform(head(Xte)))
    assert tp.output_shape == (351,)
    crop = tp.steps[2]
    assert (crop.start_, crop.stop_) == (250, 601)


def test_a_crop_takes_its_range_on_the_axis_the_edge_steps_before_it_give() -> None:
    """One ``output_axis`` per step (#14): the trainer follows the axis through the fitted edge steps, so a crop
    after a resample takes the model grid, a crop after a crop the cropped axis, a crop in a stack branch the axis
    that reaches the stack."""
    X = np.random.default_rng(0).normal(size=(12, 100)).cumsum(axis=1)
    device = np.linspace(1000.0, 1990.0, 100)  # 10 nm apart
    tp = make_pipeline_from_config([
        {"op": "snv"},
        {"op": "resample", "grid": np.arange(1100.0, 1800.0, 5.0)},  # 140 channels, 5 nm apart
        {"op": "crop", "wavelength_min": 1200.0, "wavelength_max": 1600.0},
        {"op": "crop", "wavelength_min": 1300.0},
        {"op": "stack", "branches": [[{"op": "crop", "wavelength_max": 1400.0}],
                                     [{"op": "savgol", "window": 5}, {"op": "crop", "wavelength_max": 1400.0}]]},
    ], device).fit(X, wavelengths=device)
    assert [(c.start_, c.stop_) for c in tp.steps[2:4]] == [(20, 101), (20, 81)]
    assert [(b[-1].start_, b[-1].stop_) for b in tp.steps[4].branches_] == [(0, 21), (0, 21)]
    assert tp.output_shape == (21, 2)
    after_crops = ep.Crop(20, 81).output_axis(ep.Crop(20, 101).output_axis(
        ep.Resample(np.arange(1100.0, 1800.0, 5.0)).output_axis(ep.Axis(100))))
    assert after_crops.wavelengths == tuple(np.arange(1300.0, 1605.0, 5.0)) and not after_crops.device


def test_trainer_and_edge_from_spec_are_bitwise_identical(tablets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Xtr, Xte, wl = tablets
    config = [
        {"op": "emsc", "poly_order": 2},
        {"op": "msc"},
        {"op": "detrend", "order": 1},
        {"op": "normalize", "norm": "vector"},
        *TYPICAL,
        {"op": "center"},
        {"op": "stack", "branches": [[], [{"op": "savgol", "window": 7, "polyorder": 2, "mode": "mirror"}]]},
    ]
    tp = make_pipeline_from_config(config, wl)
    Ztr = tp.fit_transform(Xtr)
    device = ep.Pipeline.from_json(tp.to_edge().to_json())
    assert np.array_equal(device.transform(Xte), tp.transform(Xte))
    assert np.array_equal(device.transform(Xtr), Ztr)
    assert np.array_equal(device.transform(Xte[4]), tp.transform(Xte[4]))
    assert Ztr.shape == (60, 351, 2)


def test_counts_and_resample_through_the_trainer(tablets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Xtr, _, wl = tablets
    dark = np.full(650, 1000.0)
    white = np.full(650, 41000.0)
    counts = dark + (white - dark) * 10.0 ** (-Xtr / 4.0)
    grid = np.arange(610.0, 1880.0, 2.0)
    config = [{"op": "counts"}, {"op": "resample", "grid": grid.tolist()}, {"op": "snv"}, {"op": "autoscale"}]
    tp = make_pipeline_from_config(config, wl)
    ctx = {"dark": dark, "reference": white, "wavelengths": wl + 0.2}
    Z = tp.fit_transform(counts, **ctx)
    edge = tp.to_edge()
    assert edge.input_contract.n_channels is None
    assert (edge.input_contract.wavelength_min, edge.input_contract.wavelength_max) == (610.0, 1878.0)
    assert np.array_equal(ep.Pipeline.from_json(edge.to_json()).transform(counts, **ctx), Z)
    assert np.allclose(Z.mean(axis=0), 0.0, atol=1e-12) and np.allclose(Z.std(axis=0), 1.0)


def test_estimators_are_sklearn_compatible(tablets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Xtr, Xte, _ = tablets
    y = np.linspace(0.0, 1.0, Xtr.shape[0])
    model = make_pipeline(SNV(), SavitzkyGolay(11, 2, 1), Autoscale(), PLSRegression(3)).fit(Xtr, y)
    assert model.predict(Xte).shape[0] == Xte.shape[0]
    est = SavitzkyGolay(window=9, polyorder=3)
    assert est.get_params() == {"window": 9, "polyorder": 3, "deriv": 0, "delta": 1.0, "mode": "interp"}
    assert clone(est).get_params() == est.get_params()
    stack = Stack([[SNV()], [SNV(), SavitzkyGolay(7, 2, 1)]])
    Z = clone(stack).fit_transform(Xtr)
    assert Z.shape == (60, 650, 2)
    msc = MSC().fit(Xtr)
    assert np.array_equal(msc.reference_, Xtr.mean(axis=0))
    emsc = EMSC(poly_order=1, interferents=np.sin(np.linspace(0, 9, 650))[None, :]).fit(Xtr)
    assert emsc.to_edge_step().to_spec()["poly_order"] == 1


def test_autoscale_equals_standard_scaler_exactly(tablets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Xtr, Xte, _ = tablets
    scaler = StandardScaler().fit(Xtr)
    est = Autoscale().fit(Xtr)
    assert np.array_equal(est.mean_, scaler.mean_) and np.array_equal(est.scale_, scaler.scale_)
    assert_rel_close(est.transform(Xte), scaler.transform(Xte))


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ([{"op": "wavelets"}], SpecError, "unknown preprocessing op 'wavelets'; known ops: autoscale, center, counts"),
        ([{"op": "savgol", "windw": 5}], SpecError, "savgol got unknown parameter(s) windw; expected: delta, deriv"),
        ([{"window": 5}], SpecError, "expected a preprocessing step"),
        ([{"op": "savgol", "window": 4}], SpecError, "expected an odd window"),
        ([{"op": "crop", "wavelength_min": 3000.0}], SpecError, "holds no channel"),
        ("snv", SpecError, "expected a list of preprocessing steps"),
    ],
)
def test_bad_configs(
    config: Any, error: type[Exception], message: str, tablets: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    Xtr, _, wl = tablets
    with pytest.raises(error) as exc:
        make_pipeline_from_config(config, wl).fit(Xtr)
    assert message in str(exc.value)


def test_bad_training_data(tablets: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    Xtr, _, wl = tablets
    tp = make_pipeline_from_config(TYPICAL, wl)
    bad = Xtr.copy()
    bad[3, 7] = np.nan
    with pytest.raises(InputContractError, match="expected finite values, got 1 NaN or inf"):
        tp.fit(bad)
    with pytest.raises(InputContractError, match="expected 650 channels"):
        tp.fit(Xtr[:, :600])
    tp.fit(Xtr)
    with pytest.raises(InputContractError, match="expected 650 channels, got 600"):
        tp.transform(Xtr[:, :600])
    with pytest.raises(SpecError, match="crop needs the wavelength axis"):
        Crop(1000.0, 1200.0).fit(Xtr)


def test_unfitted_pipeline_refuses_to_export() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TrainerPipeline([SNV()]).to_edge()


def test_docstring_example_runs() -> None:
    import trainer.preprocessing

    result = doctest.testmod(trainer.preprocessing)
    assert result.attempted > 0 and result.failed == 0
