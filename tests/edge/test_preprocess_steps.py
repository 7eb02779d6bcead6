"""Each edge preprocessing step against an independent oracle on real spectra (scipy, scikit-learn, textbook)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import interp1d
from scipy.signal import detrend as scipy_detrend
from scipy.signal import savgol_filter
from sklearn.preprocessing import StandardScaler, normalize

from edge.errors import InputContractError, SpecError
from edge.preprocess import (
    EMSC,
    MSC,
    SNV,
    Autoscale,
    Axis,
    CountsConversion,
    Crop,
    Detrend,
    LinearTransfer,
    MeanCenter,
    Normalize,
    Resample,
    SavitzkyGolay,
    Stack,
)

#: Agreement with an oracle: max |actual - expected| <= ORACLE_RTOL * max |expected| (relative to the data scale,
#: so values crossing zero, as derivatives do, are judged against the size of the signal).
ORACLE_RTOL = 1e-10
#: Savitzky-Golay kernels against exact rational arithmetic (our least squares is on a [-1, 1]-scaled window).
EXACT_KERNEL_RTOL = 1e-13
#: One spectrum transformed alone vs inside a batch (summation order may differ in the last bits).
SINGLE_BATCH_RTOL = 1e-13
N_SPECTRA = 40


def assert_rel_close(actual: np.ndarray, expected: np.ndarray, rtol: float = ORACLE_RTOL) -> None:
    """Shapes equal and max abs difference within ``rtol`` of the largest expected magnitude."""
    assert actual.shape == expected.shape
    scale = max(float(np.abs(expected).max()), np.finfo(float).tiny)
    err = float(np.abs(actual - expected).max())
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} x {scale:.3g}"


@pytest.fixture(scope="module")
def tablets(datasets_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """First spectra of the IDRC 2002 tablets (absorbance, 650 channels) and their wavelengths (nm)."""
    with np.load(datasets_dir / "idrc2002_tablets.npz") as d:
        return d["X"][:N_SPECTRA].astype(np.float64), d["wavelengths"].astype(np.float64)


@pytest.fixture(scope="module")
def mir(datasets_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """First spectra of the fruit puree MIR set (235 channels, cm-1)."""
    with np.load(datasets_dir / "fruit_puree_mir.npz") as d:
        return d["X"][:N_SPECTRA].astype(np.float64), d["wavelengths"].astype(np.float64)


# ------------------------------------------------------------------------------------------------ counts


def _counts(A: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = A.shape[-1]
    dark = 900.0 + rng.normal(0.0, 3.0, n)
    white = dark + 40000.0 + rng.normal(0.0, 50.0, n)
    signal = dark + (white - dark) * 10.0 ** (-A / 4.0)
    return signal, dark, white


def test_counts_to_absorbance_matches_textbook(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, _ = tablets
    S, D, W = _counts(A, np.random.default_rng(1))
    step = CountsConversion("absorbance")
    assert_rel_close(step.transform(S, dark=D, reference=W), np.log10((W - D) / (S - D)))
    assert_rel_close(step.transform(S, dark=D, reference=W), A / 4.0)
    ratio = CountsConversion("transmittance").transform(S[0], dark=D, reference=W)
    assert_rel_close(ratio, (S[0] - D) / (W - D))


def test_counts_floors_signal_below_dark() -> None:
    D = np.full(5, 100.0)
    W = np.full(5, 1100.0)
    S = np.array([[50.0, 100.0, 600.0, 1100.0, 5000.0]])
    step = CountsConversion("absorbance", min_ratio=1e-4, saturation_counts=4095.0)
    out = step.transform(S, dark=D, reference=W)
    assert np.all(np.isfinite(out))
    assert out[0, 0] == out[0, 1] == pytest.approx(4.0)  # floored at min_ratio, not NaN/inf
    assert out[0, 4] == pytest.approx(-np.log10(4.9))  # saturation is the device's flag; the value is as computed


@pytest.mark.parametrize(
    ("dark", "reference", "message"),
    [
        (np.zeros(4), None, "needs reference="),
        (None, np.ones(4), "needs dark="),
        (np.zeros(4), np.zeros(4), "white reference is all zeros"),
        (np.full(4, 10.0), np.array([20.0, 10.0, 5.0, 30.0]), "2 channel(s) at or below dark (first: channel 1"),
        (np.zeros(4), np.array([1.0, np.nan, 1.0, 1.0]), "expected finite reference"),
        (np.zeros(3), np.ones(4), "expected dark of shape (4,), got (3,)"),
    ],
)
def test_counts_bad_references(dark: np.ndarray | None, reference: np.ndarray | None, message: str) -> None:
    with pytest.raises(InputContractError) as exc:
        CountsConversion().transform(np.full(4, 5.0), dark=dark, reference=reference)
    assert message in str(exc.value)


def test_counts_cache_only_for_immutable_references() -> None:
    step = CountsConversion("transmittance")
    D, W = np.zeros(3), np.full(3, 10.0)
    D.setflags(write=False)
    W.setflags(write=False)
    assert step.transform(np.full(3, 5.0), dark=D, reference=W).tolist() == [0.5, 0.5, 0.5]
    assert step.transform(np.full(3, 5.0), dark=D, reference=W).tolist() == [0.5, 0.5, 0.5]
    W2 = np.full(3, 10.0)  # writeable: validated on every call, a later change is seen
    step.transform(np.full(3, 5.0), dark=D, reference=W2)
    W2[:] = 0.0
    with pytest.raises(InputContractError):
        step.transform(np.full(3, 5.0), dark=D, reference=W2)


# ------------------------------------------------------------------------------------------------ axis


def test_crop_is_a_slice(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, _ = tablets
    assert np.array_equal(Crop(100, 600).transform(A), A[:, 100:600])
    with pytest.raises(SpecError):
        Crop(5, 5)


def test_resample_matches_scipy_interp1d(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, wl = tablets
    device_axis = wl + 0.7  # an instrument whose axis is shifted by 0.7 nm
    grid = np.arange(610.0, 1880.0, 2.5)
    out = Resample(grid).transform(A, wavelengths=device_axis)
    assert_rel_close(out, interp1d(device_axis, A, axis=-1)(grid))
    # a descending device axis (as MIR instruments often write it) gives the same numbers
    flipped = Resample(grid).transform(A[:, ::-1], wavelengths=device_axis[::-1])
    assert np.array_equal(flipped, out)


def test_resample_refuses_an_axis_that_does_not_cover_the_grid() -> None:
    grid = np.linspace(600.0, 1898.0, 650)
    device_axis = np.linspace(610.0, 1890.0, 640)
    with pytest.raises(InputContractError) as exc:
        Resample(grid).transform(np.ones(640), wavelengths=device_axis)
    assert str(exc.value) == "expected a wavelength axis covering 600-1898 nm, got 610-1890 nm"
    with pytest.raises(InputContractError, match="needs wavelengths="):
        Resample(grid).transform(np.ones(640))
    with pytest.raises(InputContractError, match="expected wavelengths of shape"):
        Resample(grid).transform(np.ones(640), wavelengths=device_axis[:-1])


# ------------------------------------------------------------------------------------------------ scatter


@pytest.mark.parametrize("ddof", [0, 1])
def test_snv_matches_textbook(tablets: tuple[np.ndarray, np.ndarray], ddof: int) -> None:
    A, _ = tablets
    expected = (A - A.mean(axis=1, keepdims=True)) / A.std(axis=1, ddof=ddof, keepdims=True)
    assert_rel_close(SNV(ddof).transform(A), expected)
    assert_rel_close(SNV(ddof).transform(A[3]), expected[3])


def test_snv_of_a_constant_spectrum_is_an_error() -> None:
    with pytest.raises(InputContractError, match="standard deviation is 0"):
        SNV().transform(np.full(10, 3.0))
    with pytest.raises(InputContractError, match="standard deviation is 0"):
        SNV().transform(np.vstack([np.arange(10.0), np.full(10, 3.0)]))


def test_msc_matches_polyfit(mir: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = mir
    ref = X.mean(axis=0)
    expected = np.empty_like(X)
    for i, x in enumerate(X):
        b, a = np.polyfit(ref, x, 1)
        expected[i] = (x - a) / b
    assert_rel_close(MSC(ref).transform(X), expected)
    assert_rel_close(MSC(ref).transform(X[0]), expected[0])


def _emsc_oracle(X: np.ndarray, ref: np.ndarray, order: int, interferents: np.ndarray | None) -> np.ndarray:
    """Textbook EMSC: least squares per spectrum on [ref, 1, t, .., t^order, interferents], t in [-1, 1]."""
    n = X.shape[1]
    t = np.linspace(-1.0, 1.0, n)
    poly = np.column_stack([t**k for k in range(order + 1)])
    extra = np.zeros((n, 0)) if interferents is None else interferents.T
    design = np.column_stack([ref, poly, extra])
    out = np.empty_like(X)
    for i, x in enumerate(X):
        coef, *_ = np.linalg.lstsq(design, x, rcond=None)
        out[i] = (x - design[:, 1:] @ coef[1:]) / coef[0]
    return out


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_emsc_matches_lstsq(tablets: tuple[np.ndarray, np.ndarray], order: int) -> None:
    A, _ = tablets
    ref = A.mean(axis=0)
    assert_rel_close(EMSC(ref, order).transform(A), _emsc_oracle(A, ref, order, None))


def test_emsc_with_an_interferent(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, wl = tablets
    ref = A[10:].mean(axis=0)
    water = np.exp(-0.5 * ((wl - 1450.0) / 30.0) ** 2)
    X = A[:10] + np.outer(np.linspace(0.0, 0.2, 10), water)
    out = EMSC(ref, 2, water[None, :]).transform(X)
    assert_rel_close(out, _emsc_oracle(X, ref, 2, water[None, :]))
    # the added interferent is removed: same result as without it
    assert_rel_close(out, EMSC(ref, 2, water[None, :]).transform(A[:10]), 1e-9)


def test_emsc_rejects_a_collinear_design() -> None:
    with pytest.raises(SpecError, match="rank deficient"):
        EMSC(np.ones(20), 1)


# ------------------------------------------------------------------------------------------------ Savitzky-Golay


SG_CASES = [(5, 2, 0), (15, 2, 1), (11, 3, 2), (21, 4, 1), (7, 6, 3), (31, 2, 0), (3, 1, 1), (1, 0, 0), (9, 2, 3)]


@pytest.mark.parametrize("mode", ["interp", "mirror", "nearest", "wrap"])
@pytest.mark.parametrize(("window", "polyorder", "deriv"), SG_CASES)
def test_savgol_matches_scipy(
    tablets: tuple[np.ndarray, np.ndarray], mode: str, window: int, polyorder: int, deriv: int
) -> None:
    A, _ = tablets
    step = SavitzkyGolay(window, polyorder, deriv, 2.0, mode)
    expected = savgol_filter(A, window, polyorder, deriv=deriv, delta=2.0, mode=mode)
    if deriv > polyorder:
        assert np.all(step.transform(A) == 0.0) and np.all(expected == 0.0)
        return
    assert_rel_close(step.transform(A), expected)
    assert_rel_close(step.transform(A[7]), expected[7])


@settings(max_examples=40, deadline=None)
@given(
    half=st.integers(min_value=0, max_value=12),
    polyorder=st.integers(min_value=0, max_value=6),
    deriv=st.integers(min_value=0, max_value=3),
    delta=st.floats(min_value=0.1, max_value=10.0),
    mode=st.sampled_from(["interp", "mirror", "nearest", "wrap"]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_savgol_matches_scipy_for_any_parameters(
    half: int, polyorder: int, deriv: int, delta: float, mode: str, seed: int
) -> None:
    window = 2 * half + 1
    polyorder = min(polyorder, window - 1)
    x = np.random.default_rng(seed).normal(size=(3, 60)).cumsum(axis=1)
    got = SavitzkyGolay(window, polyorder, deriv, delta, mode).transform(x)
    if deriv > polyorder:
        assert np.all(got == 0.0)
        return
    # scipy's own kernel drifts by up to ~1e-9 relative at high polyorder (unscaled Vandermonde matrix, see
    # test_savgol_kernel_is_exact_for_long_windows), so wherever the result is a plain correlation the oracle is
    # the exact rational kernel on scipy's padding; scipy's polynomial-fit edges of mode="interp" stay the oracle.
    exact = _exact_kernel(window, polyorder, deriv) / delta**deriv
    half = window // 2
    if mode == "interp":
        expected = savgol_filter(x, window, polyorder, deriv=deriv, delta=delta, mode=mode)
        padded = x
    else:
        expected = np.empty_like(x)
        pad_mode = {"mirror": "reflect", "nearest": "edge", "wrap": "wrap"}[mode]
        padded = np.pad(x, ((0, 0), (half, half)), mode=pad_mode)
    valid = np.stack([np.correlate(row, exact, mode="valid") for row in padded])
    if mode == "interp":
        expected[:, half : x.shape[1] - half] = valid
    else:
        expected[:] = valid
    assert_rel_close(got, expected)


def _exact_kernel(window: int, polyorder: int, deriv: int) -> np.ndarray:
    """Savitzky-Golay correlation kernel in exact rational arithmetic (normal equations, Gauss-Jordan)."""
    half = window // 2
    t = [Fraction(i) for i in range(-half, half + 1)]
    m = polyorder + 1
    aug = [
        [sum(ti ** (j + k) for ti in t) for k in range(m)] + [Fraction(int(i == j)) for i in range(m)] for j in range(m)
    ]
    for c in range(m):
        aug[c] = [v / aug[c][c] for v in aug[c]]
        for r in range(m):
            if r != c:
                f = aug[r][c]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[c], strict=True)]
    inv = [row[m:] for row in aug]
    return np.array([float(math.factorial(deriv) * sum(inv[deriv][k] * ti**k for k in range(m))) for ti in t])


@pytest.mark.parametrize(("window", "polyorder", "deriv"), [(101, 5, 1), (61, 4, 0), (51, 6, 3), (15, 2, 1)])
def test_savgol_kernel_is_exact_for_long_windows(window: int, polyorder: int, deriv: int) -> None:
    # scipy.signal.savgol_coeffs itself drifts by ~1e-9 relative at window 101 (unscaled Vandermonde matrix), so
    # long windows are checked against exact arithmetic instead of scipy.
    step = SavitzkyGolay(window, polyorder, deriv)
    assert_rel_close(np.asarray(step.kernel), _exact_kernel(window, polyorder, deriv), EXACT_KERNEL_RTOL)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 4, "polyorder": 2}, "odd window"),
        ({"window": 5, "polyorder": 5}, "polyorder < window"),
        ({"window": 5, "polyorder": 2, "mode": "constant"}, "expected mode in"),
        ({"window": 5, "polyorder": 2, "delta": 0.0}, "positive delta"),
    ],
)
def test_savgol_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SavitzkyGolay(**kwargs)  # type: ignore[arg-type]  # deliberately the wrong type


def test_savgol_window_longer_than_spectrum() -> None:
    with pytest.raises(InputContractError, match="expected at least 15 channels"):
        SavitzkyGolay(15, 2).transform(np.ones(10))


def test_one_spectrum_and_a_batch_agree(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    # Not bitwise: numpy's SIMD sums depend on memory alignment, which differs between a lone spectrum and a
    # batch row; identical inputs of identical shape are bitwise identical (see the pipeline tests).
    A, _ = tablets
    ref = A.mean(axis=0)
    for step in [SNV(), MSC(ref), EMSC(ref), SavitzkyGolay(15, 2, 1), Detrend(2, 650), Normalize("vector")]:
        batch = step.transform(A)
        for i in range(0, A.shape[0], 7):
            assert_rel_close(step.transform(A[i]), batch[i], SINGLE_BATCH_RTOL)


# ------------------------------------------------------------------------------------------------ others


@pytest.mark.parametrize("order", [0, 1])
def test_detrend_matches_scipy(tablets: tuple[np.ndarray, np.ndarray], order: int) -> None:
    A, _ = tablets
    expected = scipy_detrend(A, axis=-1, type="constant" if order == 0 else "linear")
    assert_rel_close(Detrend(order, A.shape[1]).transform(A), expected)


def test_detrend_quadratic_matches_polyfit(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, wl = tablets
    expected = np.array([x - np.polyval(np.polyfit(wl, x, 2), wl) for x in A])
    assert_rel_close(Detrend(2, A.shape[1]).transform(A), expected, 1e-9)


@pytest.mark.parametrize(("norm", "sk_norm"), [("vector", "l2"), ("area", "l1"), ("max", "max")])
def test_normalize_matches_sklearn(mir: tuple[np.ndarray, np.ndarray], norm: str, sk_norm: str) -> None:
    X, _ = mir
    assert_rel_close(Normalize(norm).transform(X), normalize(X, norm=sk_norm))
    with pytest.raises(InputContractError, match="norm is 0"):
        Normalize(norm).transform(np.zeros(5))


def test_center_and_autoscale_match_standard_scaler(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, _ = tablets
    scaler = StandardScaler().fit(A)
    assert_rel_close(Autoscale(scaler.mean_, scaler.scale_).transform(A), scaler.transform(A))
    centre = StandardScaler(with_std=False).fit(A)
    assert_rel_close(MeanCenter(centre.mean_).transform(A), centre.transform(A))
    with pytest.raises(SpecError, match="scale > 0"):
        Autoscale(np.zeros(3), np.array([1.0, 0.0, 1.0]))


def test_linear_transfer(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, _ = tablets
    rng = np.random.default_rng(3)
    F = rng.normal(size=(650, 20))
    b = rng.normal(size=20)
    assert_rel_close(LinearTransfer(F, b).transform(A), A @ F + b)
    assert_rel_close(LinearTransfer(F).transform(A[0]), A[0] @ F)
    with pytest.raises(SpecError, match="offset of length 20"):
        LinearTransfer(F, b[:5])


def test_stack_adds_a_trailing_channel_axis(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, _ = tablets
    snv, sg = SNV(), SavitzkyGolay(11, 2, 1)
    out = Stack(((), (snv,), (snv, sg))).transform(A)
    assert out.shape == (A.shape[0], 650, 3)
    assert np.array_equal(out[..., 0], A)
    assert np.array_equal(out[..., 2], sg.transform(snv.transform(A)))
    assert Stack(((), (snv,))).transform(A[0]).shape == (650, 2)
    with pytest.raises(SpecError, match="different lengths"):
        Stack(((), (Crop(0, 10),))).output_axis(Axis(650))
    with pytest.raises(SpecError, match="cannot contain another stack"):
        Stack(((Stack(((),)),),))


def test_steps_never_modify_their_input(tablets: tuple[np.ndarray, np.ndarray]) -> None:
    A, wl = tablets
    A = A[:5].copy()
    A.setflags(write=False)  # any in-place write would raise
    ref = A.mean(axis=0)
    for step in [
        SNV(),
        MSC(ref),
        EMSC(ref),
        SavitzkyGolay(9, 2, 1),
        SavitzkyGolay(9, 2, 1, mode="wrap"),
        Detrend(1, 650),
        Normalize("max"),
        MeanCenter(ref),
        Autoscale(ref, np.ones(650)),
        Crop(3, 9),
        LinearTransfer(np.eye(650)),
        Stack(((), (SNV(),))),
    ]:
        step.transform(A)
    Resample(wl[10:-10]).transform(A, wavelengths=wl)


def test_window_one_savgol_round_trips() -> None:
    step = SavitzkyGolay(1, 0)
    again = SavitzkyGolay.from_spec(step.to_spec())
    x = np.arange(5.0)
    assert np.array_equal(again.transform(x), x)
