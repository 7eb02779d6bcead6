"""The preprocessing pipeline: input contract, JSON spec round trip, and the specific error for each bad input."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import AxisContractError, ChannelCountError, InputContractError, SpecError
from edge.preprocess import (
    EMSC,
    MSC,
    SNV,
    SPEC_VERSION,
    Autoscale,
    CountsConversion,
    Crop,
    Detrend,
    InputContract,
    LinearTransfer,
    MeanCenter,
    Normalize,
    Pipeline,
    Resample,
    SavitzkyGolay,
    Stack,
    known_ops,
)


@pytest.fixture(scope="module")
def tablets(datasets_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """20 IDRC 2002 tablet spectra (absorbance, 650 channels, 600-1898 nm) and their axis."""
    with np.load(datasets_dir / "idrc2002_tablets.npz") as d:
        return d["X"][:20].astype(np.float64), d["wavelengths"].astype(np.float64)


def _counts_inputs(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    dark = np.round(1000.0 + rng.normal(0.0, 3.0, A.shape[1]))
    white = np.round(dark + 45000.0)
    return np.round(dark + (white - dark) * 10.0 ** (-A / 4.0)), dark, white


def full_pipeline(A: np.ndarray, wl: np.ndarray) -> Pipeline:
    """A pipeline using every op (stack last) with parameters fitted on ``A``."""
    ref = A.mean(axis=0)
    rng = np.random.default_rng(0)
    steps: list[Any] = [
        CountsConversion("absorbance", 1e-6, 65535.0),
        LinearTransfer(np.eye(650) + rng.normal(0.0, 1e-3, (650, 650)), rng.normal(0.0, 1e-3, 650)),
        MSC(ref / 4.0),
        EMSC(ref / 4.0, 2, np.sin(np.linspace(0.0, 3.0, 650))[None, :]),
        Detrend(1, 650),
        Normalize("vector"),
        SNV(),
        SavitzkyGolay(15, 2, 1, 2.0),
        Crop(25, 625),
        MeanCenter(np.full(600, 1e-4)),
        Autoscale(np.zeros(600), np.linspace(0.5, 2.0, 600)),
        Stack(((), (SavitzkyGolay(7, 2, 0, 1.0, "mirror"),), (Normalize("max"),))),
    ]
    return Pipeline(tuple(steps), InputContract.from_wavelengths(wl))


def test_every_op_is_exercised() -> None:
    assert set(known_ops()) == {
        "counts",
        "crop",
        "resample",
        "snv",
        "msc",
        "emsc",
        "savgol",
        "detrend",
        "normalize",
        "center",
        "autoscale",
        "linear",
        "stack",
    }


def test_json_round_trip_is_bitwise_identical(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, wl = tablets
    S, D, W = _counts_inputs(A)
    p = full_pipeline(A, wl)
    text = p.to_json()
    q = Pipeline.from_json(text)
    assert q.to_json() == text
    out_p = p.transform(S, dark=D, reference=W)
    out_q = q.transform(S, dark=D, reference=W)
    assert out_p.shape == (20, 600, 3) == (20, *p.output_shape)  # type: ignore[misc]  # a starred tuple in a comparison chain
    assert np.array_equal(out_p, out_q)
    assert np.array_equal(p.transform(S[3], dark=D, reference=W), q.transform(S[3], dark=D, reference=W))


def test_resample_pipeline_round_trip(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, wl = tablets
    grid = np.linspace(620.0, 1880.0, 500)
    p = Pipeline((Resample(grid), SNV()), InputContract(None, 620.0, 1880.0, "nm", 1.0))
    q = Pipeline.from_json(p.to_json())
    assert p.output_shape == (500,)
    assert np.array_equal(p.transform(A, wavelengths=wl + 0.3), q.transform(A, wavelengths=wl + 0.3))
    with pytest.raises(InputContractError, match="needs wavelengths="):
        q.transform(A)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=3, max_size=30))
def test_any_float_survives_the_spec_exactly(values: list[float]) -> None:
    mean = np.array(values)
    p = Pipeline((MeanCenter(mean),), InputContract(len(values)))
    q = Pipeline.from_json(p.to_json())
    assert np.array_equal(q.steps[0].mean, mean)  # type: ignore[attr-defined]  # steps[0] is a MeanCenter; Step has no mean
    assert [v.hex() for v in q.steps[0].mean.tolist()] == [v.hex() for v in values]  # type: ignore[attr-defined]  # steps[0] is a MeanCenter; Step has no mean


def test_output_is_a_new_array() -> None:
    x = np.arange(10.0)
    out = Pipeline((Crop(0, 10),), InputContract(10)).transform(x)
    assert not np.shares_memory(out, x)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def simple() -> Pipeline:
    return Pipeline((SNV(), SavitzkyGolay(5, 2, 1)), InputContract(650, 600.0, 1898.0, "nm", 1.0))


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.ones(512), "expected 650 channels, got 512"),
        (np.ones((3, 512)), "expected 650 channels, got 512"),
        (np.ones((2, 3, 650)), "expected one spectrum (n,) or a batch (m, n), got shape (2, 3, 650)"),
        (np.ones((0, 650)), "expected one spectrum"),
        (np.where(np.arange(650) == 3, np.nan, 1.0), "expected finite values, got 1 NaN or inf"),
        (np.where(np.arange(650) % 100 == 0, np.inf, 1.0), "expected finite values, got 7 NaN or inf"),
        (np.full((2, 650), -np.inf), "expected finite values, got 1300 NaN or inf"),
        ("not a spectrum", "expected a numeric array"),
    ],
)
def test_bad_spectra(simple: Pipeline, X: Any, message: str) -> None:
    with pytest.raises(InputContractError) as exc:
        simple.transform(X)
    assert message in str(exc.value)


def test_huge_finite_values_are_not_mistaken_for_inf() -> None:
    x = np.linspace(1e200, 2e200, 650)  # the fast check's dot product overflows; the exact check clears it
    with np.errstate(over="ignore"):
        out = Pipeline((Crop(0, 650),), InputContract(650)).transform(x)
    assert np.array_equal(out, x)


def test_wavelength_axis_is_checked_against_the_contract(
    simple: Pipeline, tablets: tuple[np.ndarray, np.ndarray]
) -> None:
    A, wl = tablets
    simple.transform(A[0], wavelengths=wl + 0.5)  # within tolerance
    with pytest.raises(InputContractError) as exc:
        simple.transform(A[0], wavelengths=wl + 10.0)
    assert str(exc.value) == "expected wavelengths 600.0-1898.0 nm (within 1.0), got 610.0-1908.0 nm"
    with pytest.raises(InputContractError, match=r"expected wavelengths of shape \(650,\)"):
        simple.transform(A[0], wavelengths=wl[:-1])


def test_resample_axis_out_of_range(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, _ = tablets
    p = Pipeline((Resample(np.linspace(600.0, 1898.0, 650)),), InputContract(None, 600.0, 1898.0))
    with pytest.raises(InputContractError) as exc:
        p.transform(A[0, :640], wavelengths=np.linspace(610.0, 1890.0, 640))
    assert str(exc.value) == "expected a wavelength axis covering 600-1898 nm, got 610-1890 nm"


def test_missing_or_zero_reference(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, _ = tablets
    S, D, W = _counts_inputs(A)
    p = Pipeline((CountsConversion(), SNV()), InputContract(650))
    with pytest.raises(InputContractError, match="needs reference="):
        p.transform(S, dark=D)
    with pytest.raises(InputContractError, match="white reference is all zeros"):
        p.transform(S, dark=D, reference=np.zeros(650))
    with pytest.raises(InputContractError, match="at or below dark"):
        p.transform(S, dark=D, reference=D)


# ------------------------------------------------------------------------------------------------ bad specs


def _spec(steps: list[dict[str, Any]], version: Any = SPEC_VERSION) -> dict[str, Any]:
    return {"spec_version": version, "input": {"n_channels": 10}, "steps": steps}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_spec([{"op": "wavelet"}]), "unknown op 'wavelet'; known ops: autoscale, center, counts, crop, detrend"),
        (
            _spec([{"op": "snv"}], SPEC_VERSION + 1),
            f"spec_version {SPEC_VERSION + 1} is newer than this code supports (up to {SPEC_VERSION})",
        ),
        (_spec([{"op": "snv"}], "1"), "spec_version: expected an integer"),
        ({"input": {}, "steps": []}, "expected a spec_version"),
        (_spec([{"no_op": 1}]), "expected an 'op' key"),
        (_spec([{"op": "snv", "dof": 1}]), "unknown key(s) dof; expected ddof, op"),
        (_spec([{"op": "savgol", "window": 4, "polyorder": 2}]), "expected an odd window"),
        (_spec([{"op": "savgol", "window": 5.0, "polyorder": 2}]), "window: expected an integer"),
        (_spec([{"op": "savgol", "window": 5, "polyorder": 2, "kernel": [0.0] * 5}]), "kernel does not match"),
        (_spec([{"op": "autoscale", "mean": [0.0] * 10, "scale": [1.0] * 9}]), "expected scale of shape (10,)"),
        (
            _spec([{"op": "center", "mean": [0.0] * 9}]),
            "center expects 9 input channels, but the previous step gives 10",
        ),
        (_spec([{"op": "center", "mean": ["a"] * 10}]), "expected mean as"),
        (_spec([{"op": "crop", "start": 0, "stop": 11}]), "crop stop=11 is beyond the 10 input channels"),
        (_spec([{"op": "stack", "branches": [[]]}, {"op": "snv"}]), "stack must be the last step"),
        (
            _spec([{"op": "crop", "start": 0, "stop": 5}, {"op": "resample", "grid": [1.0, 2.0]}]),
            "resample must come before",
        ),
        (_spec([{"op": "normalize", "norm": "l3"}]), "norm: expected one of ['vector', 'area', 'max']"),
        ({**_spec([]), "extra": 1}, "unknown key(s) extra"),
        ({**_spec([]), "input": {"n_channel": 10}}, "unknown key(s) n_channel in 'input'"),
        ([], "expected a spec object"),
    ],
)
def test_bad_specs(spec: Any, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        Pipeline.from_spec(spec)
    assert message in str(exc.value)


def test_nan_is_refused_in_json_both_ways() -> None:
    with pytest.raises(SpecError, match="spec is not valid JSON: expected finite numbers, got NaN"):
        Pipeline.from_json('{"spec_version": 1, "steps": [{"op": "center", "mean": [NaN, 1.0]}]}')
    with pytest.raises(SpecError, match="not valid JSON"):
        Pipeline.from_json('{"spec_version": 1, "steps": [')


def test_a_duplicate_key_in_spec_json_is_refused() -> None:
    with pytest.raises(SpecError, match="expected unique keys in a JSON object, got 'op' twice"):
        Pipeline.from_json('{"spec_version": 1, "steps": [{"op": "center", "op": "snv", "mean": [1.0]}]}')
    with pytest.raises(SpecError):
        MeanCenter(np.array([np.nan, 1.0]))


def test_error_messages_name_the_step() -> None:
    spec = _spec([{"op": "snv"}, {"op": "savgol", "window": 5, "polyorder": 7}])
    with pytest.raises(SpecError, match=r"step 1 \(savgol\): expected polyorder < window"):
        Pipeline.from_spec(spec)


def test_transfer_index_and_insert(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, wl = tablets
    S, D, W = _counts_inputs(A)
    p = Pipeline((CountsConversion(), SNV()), InputContract.from_wavelengths(wl))
    assert p.transfer_index == 1
    q = p.insert(p.transfer_index, LinearTransfer(np.eye(650)))
    assert [s.op for s in q.steps] == ["counts", "linear", "snv"]
    assert np.allclose(q.transform(S, dark=D, reference=W), p.transform(S, dark=D, reference=W), rtol=0, atol=1e-12)
    json.loads(q.to_json())


# ------------------------------------------------------------------------------------------------ property


@st.composite
def random_pipelines(draw: st.DrawFn) -> tuple[Pipeline, np.ndarray]:
    """A random chain of the channel-preserving ops (plus an optional crop) with random parameters, and input."""
    n = draw(st.integers(min_value=12, max_value=60))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    X = rng.normal(size=(4, n)).cumsum(axis=1) + np.linspace(1.0, 3.0, n)
    ref = X.mean(axis=0)
    choices = [
        lambda: SNV(draw(st.sampled_from([0, 1]))),
        lambda: MSC(ref),
        lambda: EMSC(ref, draw(st.integers(min_value=0, max_value=3))),
        lambda: Detrend(draw(st.integers(min_value=0, max_value=3)), n),
        lambda: Normalize(draw(st.sampled_from(["vector", "area", "max"]))),
        lambda: MeanCenter(rng.normal(size=n)),
        lambda: Autoscale(rng.normal(size=n), rng.uniform(0.5, 2.0, n)),
        lambda: LinearTransfer(np.eye(n) + rng.normal(0.0, 0.01, (n, n)), rng.normal(size=n)),
        lambda: SavitzkyGolay(
            2 * draw(st.integers(min_value=1, max_value=5)) + 1,
            draw(st.integers(min_value=0, max_value=2)),
            draw(st.integers(min_value=0, max_value=1)),
            draw(st.floats(min_value=0.5, max_value=4.0)),
            draw(st.sampled_from(["interp", "mirror", "nearest", "wrap"])),
        ),
    ]
    idx = draw(st.lists(st.integers(min_value=0, max_value=len(choices) - 1), min_size=1, max_size=5))
    steps: list[Any] = [choices[i]() for i in idx]
    if draw(st.booleans()):
        steps.append(Crop(1, n - 1))
    return Pipeline(tuple(steps), InputContract(n)), X


@settings(max_examples=60, deadline=None)
@given(case=random_pipelines())
def test_any_pipeline_round_trips_bitwise(case: tuple[Pipeline, np.ndarray]) -> None:
    p, X = case
    try:
        expected = p.transform(X)
    except InputContractError:
        return  # e.g. EMSC/MSC of data that no longer contains the reference after earlier steps
    q = Pipeline.from_json(p.to_json())
    assert q.to_json() == p.to_json()
    assert np.array_equal(q.transform(X), expected)


# ------------------------------------------------------------------------------------------------ packaging


def test_importing_edge_preprocess_stays_light() -> None:
    code = (
        "import sys, edge.preprocess; "
        "heavy = [m for m in ('scipy', 'sklearn', 'tensorflow', 'keras') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_docstring_examples_run() -> None:
    result = doctest.testmod(importlib.import_module("edge.preprocess.pipeline"))
    assert result.attempted > 0 and result.failed == 0


def test_preprocess_modules_import_one_way() -> None:
    """base <- step modules <- pipeline: no step module reaches back into the pipeline or the facade."""
    import ast
    from pathlib import Path

    import edge.preprocess as pkg

    root = Path(pkg.__file__).parent
    upward = {"edge.preprocess.pipeline", "edge.preprocess.steps", "edge.preprocess.Pipeline"}
    for name in ("spec", "base", "savgol", "instrument", "scatter", "filters", "scaling", "stack"):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                     for a in n.names}
        assert not imported & upward, (name, imported & upward)
    spec_imports = (root / "spec.py").read_text()
    assert "edge.preprocess.base" not in spec_imports and "edge.preprocess.steps" not in spec_imports


def test_check_axis_is_the_contract_check_that_transform_runs() -> None:
    """One axis check (#14): ``check_axis`` refuses what ``transform(wavelengths=)`` refuses, with the same words;
    a pipeline that resamples leaves the axis to its resample step."""
    axis = np.linspace(900.0, 1700.0, 5)
    p = Pipeline((SNV(),), InputContract.from_wavelengths(axis))
    p.check_axis(axis, 5)
    wide = np.linspace(700.0, 1700.0, 5)  # the tolerance is half the spacing, 100 nm
    with pytest.raises(InputContractError) as direct:
        p.check_axis(wide, 5)
    assert "expected wavelengths 900.0-1700.0 nm" in str(direct.value)
    with pytest.raises(InputContractError) as through:
        p.transform(np.arange(1.0, 6.0), wavelengths=wide)
    assert str(through.value) == str(direct.value)
    with pytest.raises(InputContractError, match=r"expected wavelengths of shape \(4,\), got \(5,\)"):
        p.check_axis(axis, 4)
    resampling = Pipeline((Resample(axis), SNV()), InputContract(None, 900.0, 1700.0))
    resampling.check_axis(wide, 5)


def test_contract_refusals_are_typed_for_the_daemon() -> None:
    """The daemon tells a device that does not fit (counted as ``input_contract``) from data a step cannot process
    (``bad_input``) by the error's type, not its words (#14): every channel-count refusal is a ChannelCountError,
    every axis refusal an AxisContractError, and data a step cannot handle neither."""
    axis = np.linspace(900.0, 1700.0, 20)
    x = np.linspace(1.0, 2.0, 20)
    channel_refusals = [
        (Pipeline((SNV(),), InputContract(21)), x),
        (Pipeline((Crop(0, 25),), InputContract()), x),
        (Pipeline((SavitzkyGolay(31, 2),), InputContract()), x),
        (Pipeline((LinearTransfer(np.eye(21)),), InputContract()), x),
        (Pipeline((Detrend(1, 21),), InputContract()), x),
    ]
    for pipeline, data in channel_refusals:
        with pytest.raises(ChannelCountError, match=r"expected .*channels"):
            pipeline.transform(data)
    resampling = Pipeline((Resample(axis),), InputContract(None, 900.0, 1700.0))
    matching = Pipeline((SNV(),), InputContract.from_wavelengths(axis))
    for pipeline, wavelengths, words in [
        (resampling, axis + 10.0, "expected a wavelength axis covering 900-1700 nm, got 910-1710 nm"),
        (resampling, None, "resampling needs wavelengths="),
        (matching, axis + 30.0, "expected wavelengths 900.0-1700.0 nm"),
        (matching, axis[:19], r"expected wavelengths of shape \(20,\), got \(19,\)"),
    ]:
        with pytest.raises(AxisContractError, match=words):
            pipeline.transform(x, wavelengths=wavelengths)
    with pytest.raises(InputContractError, match="standard deviation is 0") as exc:
        Pipeline((SNV(),), InputContract(20)).transform(np.ones(20))
    assert not isinstance(exc.value, (ChannelCountError, AxisContractError))


def test_contract_and_axis_docstring_examples_run() -> None:
    for name in ("edge.preprocess.contract", "edge.preprocess.base"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.attempted > 0 and result.failed == 0, name
