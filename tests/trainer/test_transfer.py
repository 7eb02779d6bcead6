"""Tests of trainer.transfer: DS/PDS against a known instrument difference, the edge ``linear`` step, transferred
bundles, and the real two-instrument tablets data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.preprocess import LinearTransfer, Pipeline
from trainer import transfer as T
from trainer.errors import CalibrationError, DataError
from trainer.preprocessing import make_pipeline_from_config

N_CHANNELS = 160
SHIFT_CHANNELS = 0.6
BROADEN_SIGMA_CHANNELS = 1.2
#: Transferred slave spectra must be this much closer to the master than the raw slave spectra (RMS ratio).
TRANSFER_RMS_RATIO = 0.1
#: A slave identical to the master gives F = I and b = 0 to this tolerance.
IDENTITY_ATOL = 1e-8
#: Spec round trip: JSON floats are exact, the pipeline output identical to this tolerance.
ROUND_TRIP_ATOL = 1e-12
SNV_SG1 = [{"op": "snv"}, {"op": "savgol", "window": 15, "polyorder": 2, "deriv": 1}]
TABLETS_N_TRANSFER = 10
TABLETS_PLS_COMPONENTS = 8


def _band(centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((np.arange(N_CHANNELS) - centre) / width) ** 2)


def make_master(n: int, seed: int) -> np.ndarray:
    """Smooth absorbance spectra: five bands with random concentrations, a baseline, a little noise."""
    rng = np.random.default_rng(seed)
    bands = np.stack([_band(c, w) for c, w in ((25, 6), (55, 4), (80, 8), (110, 5), (135, 7))])
    return 0.3 + rng.uniform(0.2, 1.0, (n, 5)) @ bands + rng.normal(0, 1e-4, (n, N_CHANNELS))


def slave_of(Xm: np.ndarray) -> np.ndarray:
    """A known instrument difference: wavelength shift, extra broadening, channel-dependent gain, offset."""
    i = np.arange(N_CHANNELS, dtype=np.float64)
    shifted = np.stack([np.interp(i + SHIFT_CHANNELS, i, row) for row in Xm])
    k = np.arange(-5, 6)
    kernel = np.exp(-0.5 * (k / BROADEN_SIGMA_CHANNELS) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(shifted, ((0, 0), (5, 5)), mode="edge")
    broadened = np.stack([np.convolve(row, kernel, mode="valid") for row in padded])
    gain = 1.04 + 0.05 * i / N_CHANNELS
    return broadened * gain + 0.02


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a**2)))


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    Xm_t = make_master(15, seed=1)
    Xm_test = make_master(60, seed=2)
    return Xm_t, slave_of(Xm_t), Xm_test, slave_of(Xm_test)


@pytest.mark.parametrize("method", ["ds", "pds"])
def test_transferred_spectra_close_to_master(method: str, synthetic: tuple[np.ndarray, ...]) -> None:
    Xm_t, Xs_t, Xm_test, Xs_test = synthetic
    t = T.fit_transfer(Xm_t, Xs_t, method=method)
    assert t.matrix.shape == (N_CHANNELS, N_CHANNELS) and t.offset.shape == (N_CHANNELS,)
    before = _rms(Xs_test - Xm_test)
    after = _rms(t.transform(Xs_test) - Xm_test)
    assert after < TRANSFER_RMS_RATIO * before, (method, before, after)


def test_pds_window_cv_chooses_a_sensible_window(synthetic: tuple[np.ndarray, ...]) -> None:
    Xm_t, Xs_t, _, _ = synthetic
    window, cv = T.choose_pds_window(Xm_t, Xs_t, windows=(1, 3, 5, 7, 9, 13))
    # a shift plus broadening needs neighbouring channels; a window near the sample count over-fits
    assert 3 <= window <= 9, cv
    assert cv[window] < cv[1] / 10
    t = T.fit_pds(Xm_t, Xs_t, windows=(1, 3, 5, 7, 9, 13))
    assert t.window == window and dict(t.cv_mse) == cv
    band = np.abs(np.subtract.outer(np.arange(N_CHANNELS), np.arange(N_CHANNELS))) > window
    assert np.all(t.matrix[band] == 0.0)  # PDS is banded


@pytest.mark.parametrize("method", ["ds", "pds"])
def test_identical_instruments_give_identity(method: str) -> None:
    X = make_master(12, seed=3)
    t = T.fit_transfer(X, X, method=method, **({"window": 5} if method == "pds" else {}))
    np.testing.assert_allclose(t.matrix, np.eye(N_CHANNELS), atol=IDENTITY_ATOL)
    np.testing.assert_allclose(t.offset, 0.0, atol=IDENTITY_ATOL)


def test_classic_ds_projects_onto_transfer_span() -> None:
    """Without the identity prior, DS loses what the transfer spectra do not span; with it, that passes through."""
    X = make_master(12, seed=3)
    new = make_master(1, seed=4) + 0.05 * np.sin(np.arange(N_CHANNELS) / 3.0)
    classic = T.fit_ds(X, X, toward_identity=False)
    prior = T.fit_ds(X, X)
    assert _rms(classic.transform(new) - new) > 1e-3
    np.testing.assert_allclose(prior.transform(new), new, atol=IDENTITY_ATOL)


def test_bad_inputs_raise_clear_errors(synthetic: tuple[np.ndarray, ...]) -> None:
    Xm_t, Xs_t, _, _ = synthetic
    with pytest.raises(DataError, match="paired master and slave spectra of one shape"):
        T.fit_pds(Xm_t, Xs_t[:-1], window=3)
    with pytest.raises(CalibrationError, match="unknown transfer method 'osc'"):
        T.fit_transfer(Xm_t, Xs_t, method="osc")
    with pytest.raises(DataError, match="expected a PDS window >= 1"):
        T.fit_pds(Xm_t, Xs_t, window=0)
    with pytest.raises(DataError, match="at least 3 transfer samples"):
        T.choose_pds_window(Xm_t[:2], Xs_t[:2])
    with pytest.raises(DataError, match=f"expected {N_CHANNELS} channels, got 5"):
        T.fit_ds(Xm_t, Xs_t).transform(np.ones(5))


def test_linear_step_round_trips_through_edge_spec(synthetic: tuple[np.ndarray, ...]) -> None:
    Xm_t, Xs_t, Xm_test, Xs_test = synthetic
    wl = 1000.0 + 2.0 * np.arange(N_CHANNELS)
    edge_pipe = make_pipeline_from_config(SNV_SG1, wl).fit(Xm_test).to_edge()
    t = T.fit_pds(Xm_t, Xs_t, window=5)
    with_transfer = T.insert_transfer(edge_pipe, t)
    assert with_transfer.transfer_index == 0 and isinstance(with_transfer.steps[0], LinearTransfer)
    assert [s.op for s in with_transfer.steps] == ["linear", "snv", "savgol"]
    again = Pipeline.from_json(with_transfer.to_json())
    assert again.to_spec() == with_transfer.to_spec()
    expected = edge_pipe.transform(t.transform(Xs_test))
    np.testing.assert_allclose(again.transform(Xs_test), expected, atol=ROUND_TRIP_ATOL)
    with pytest.raises(CalibrationError, match="already holds a linear"):
        T.insert_transfer(with_transfer, t)


def test_transfer_goes_after_counts_conversion(synthetic: tuple[np.ndarray, ...]) -> None:
    from edge.preprocess import SNV, CountsConversion, InputContract

    Xm_t, Xs_t, _, Xs_test = synthetic
    p = Pipeline((CountsConversion(quantity="absorbance"), SNV()), InputContract(n_channels=N_CHANNELS))
    t = T.fit_ds(Xm_t, Xs_t)
    q = T.insert_transfer(p, t)
    assert [s.op for s in q.steps] == ["counts", "linear", "snv"]
    dark, white = np.full(N_CHANNELS, 1000.0), np.full(N_CHANNELS, 60000.0)
    counts = dark + (white - dark) * 10.0 ** (-Xs_test[:3])
    got = q.transform(counts, dark=dark, reference=white)
    want = Pipeline((SNV(),), InputContract(n_channels=N_CHANNELS)).transform(t.transform(Xs_test[:3]))
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_pair_by_sample_id_and_kennard_stone() -> None:
    X = np.arange(24.0).reshape(6, 4)
    inst = np.array([1, 2, 2, 1, 1, 2])
    sid = np.array(["a", "b", "a", "b", "c", "d"])
    Xm, Xs, ids = T.pair_by_sample_id(X, inst, sid)
    assert ids.tolist() == ["a", "b"]
    np.testing.assert_array_equal(Xm, X[[0, 3]])
    np.testing.assert_array_equal(Xs, X[[2, 1]])
    Xm, Xs, ids = T.pair_by_sample_id(X, inst, sid, rows=np.array([True, True, True, False, False, False]))
    assert ids.tolist() == ["a"]
    with pytest.raises(DataError, match="sample id 'a' repeats on the master instrument"):
        T.pair_by_sample_id(X, np.array([1, 1, 2, 2, 2, 2]), np.array(["a", "a", "b", "c", "d", "e"]))
    pts = np.array([[0.0], [10.0], [5.0], [4.9], [1.0], [9.0]])
    assert T.kennard_stone(pts, 3).tolist() == [0, 1, 2]
    assert sorted(T.select_transfer_samples(pts, 6).tolist()) == list(range(6))


# ------------------------------------------------------------------------------------------------ real tablets


@pytest.fixture(scope="module")
def tablets(datasets_dir: Path) -> dict[str, np.ndarray]:
    with np.load(datasets_dir / "idrc2002_tablets.npz", allow_pickle=False) as d:
        return {k: d[k] for k in ("X", "y", "instrument", "split", "sample_id", "wavelengths", "target_names")}


def test_tablets_pls_instrument2_rmsep_improves(tablets: dict[str, np.ndarray]) -> None:
    """PLS on instrument 1 (split ``test``); 10 transfer samples from the training split, Kennard-Stone."""
    from sklearn.cross_decomposition import PLSRegression

    X = tablets["X"].astype(np.float64)
    y = tablets["y"][:, list(tablets["target_names"]).index("assay_mg")].astype(np.float64)
    split, inst, sid = tablets["split"], tablets["instrument"], tablets["sample_id"]
    train = (split == "test") & (inst == 1)
    pre = make_pipeline_from_config(SNV_SG1, tablets["wavelengths"]).fit(X[train])
    pls = PLSRegression(n_components=TABLETS_PLS_COMPONENTS, scale=False).fit(pre.transform(X[train]), y[train])

    def predict(A: np.ndarray) -> np.ndarray:
        return pls.predict(pre.transform(A))

    Pm, Ps, ids = T.pair_by_sample_id(X, inst, sid, rows=split == "test")
    assert Pm.shape[0] == 460 and all(i.startswith("test_") for i in ids)
    t1, t2 = (split == "calibrate") & (inst == 1), (split == "calibrate") & (inst == 2)
    assert np.array_equal(sid[t1], sid[t2])
    rows = T.evaluate_transfer(
        predict, X_test_inst1=X[t1], X_test_inst2=X[t2], y_test=y[t1], X_pool_master=Pm, X_pool_slave=Ps,
        n_transfer=(TABLETS_N_TRANSFER,),
    )
    by = {r["method"]: r for r in rows}
    assert set(by) == {"none", "ds", "pds"}
    for r in rows:
        assert {"method", "n_transfer", "model", "rmsep_inst1", "rmsep_inst2"} <= set(r)
        assert r["model"] == "pls"
    before = by["none"]["rmsep_inst2"]
    assert by["pds"]["rmsep_inst2"] < before and by["ds"]["rmsep_inst2"] < before, rows
    assert by["pds"]["n_transfer"] == TABLETS_N_TRANSFER and by["pds"]["window"] >= 1


# ------------------------------------------------------------------------------------------------ bundles


@pytest.fixture(scope="module")
def tiny(datasets_dir: Path):
    pytest.importorskip("tensorflow")
    from tests.support.bundles import tiny_models

    return tiny_models(datasets_dir)


@pytest.mark.slow
def test_transferred_bundle_passes_self_test(tiny, tablets: dict[str, np.ndarray], tmp_path: Path) -> None:
    from tests.support.bundles import write_regression_bundle

    master = write_regression_bundle(tiny, tmp_path / "master.spectrolite")
    X = tablets["X"].astype(np.float64)
    split, inst, sid = tablets["split"], tablets["instrument"], tablets["sample_id"]
    Pm, Ps, _ = T.pair_by_sample_id(X, inst, sid, rows=split == "test")
    idx = T.select_transfer_samples(Pm, TABLETS_N_TRANSFER)
    out = T.transfer_bundle(master, Ps[idx], Pm[idx], tmp_path / "inst2.spectrolite", method="pds")
    old, new = load_bundle(master), load_bundle(out)
    assert new.self_test is not None and new.self_test.n_vectors == old.self_test.n_vectors
    assert new.model_version != old.model_version and new.model_id == old.model_id
    assert [s.op for s in new.pipeline.steps] == ["linear"] + [s.op for s in old.pipeline.steps]
    assert new.metrics["transfer"]["method"] == "pds" and new.metrics["transfer"]["n_transfer"] == TABLETS_N_TRANSFER
    assert new.metrics["transfer"]["parent_model_version"] == old.model_version
    assert new.ood is not None and new.intervals is not None
    t = T.fit_pds(Pm[idx], Ps[idx])
    inst2 = X[(split == "calibrate") & (inst == 2)][:8]
    np.testing.assert_array_equal(new.preprocess(inst2), old.preprocess(t.transform(inst2)))
    np.testing.assert_array_equal(new.predict_spectra(inst2), old.predict_spectra(t.transform(inst2)))
    with pytest.raises(CalibrationError, match="already holds a linear"):
        T.transfer_bundle(out, Ps[idx], Pm[idx], tmp_path / "again.spectrolite")


@pytest.mark.slow
def test_finetune_cnn_moves_towards_instrument2(tiny, tablets: dict[str, np.ndarray]) -> None:
    X = tablets["X"].astype(np.float64)
    y = tablets["y"][:, list(tablets["target_names"]).index("assay_mg")].astype(np.float64)
    split, inst = tablets["split"], tablets["instrument"]
    rows2 = np.flatnonzero((split == "test") & (inst == 2))[:TABLETS_N_TRANSFER]
    P2 = tiny.pipeline.transform(X[rows2])[..., None]
    before_w = [w.copy() for w in tiny.keras_model.get_weights()]
    tuned = T.finetune_cnn(
        tiny.keras_model, P2, y[rows2], X_anchor_pre=tiny.X_pre_train[:100, :, None], y_anchor=tiny.y_train[:100],
        epochs=20,
    )
    for a, b in zip(before_w, tiny.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the original is untouched
    err_before = T.rmsep(y[rows2], tiny.keras_model.predict(P2, verbose=0))
    err_after = T.rmsep(y[rows2], tuned.predict(P2, verbose=0))
    assert err_after < err_before


@pytest.mark.slow
def test_transfer_command_writes_slave_bundle(tiny, datasets_dir: Path, tmp_path: Path, capsys) -> None:
    from tests.support.bundles import write_regression_bundle
    from trainer.cli import main as train_main

    master = write_regression_bundle(tiny, tmp_path / "master.spectrolite")
    out = tmp_path / "inst2.spectrolite"
    pairs = str(datasets_dir / "idrc2002_tablets.npz")
    code = train_main([
        "transfer", str(master), "--pairs", pairs, "--split", "test",
        "--n-transfer", str(TABLETS_N_TRANSFER), "--out", str(out), "--model-version", "1.0.0-inst2",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "1.0.0-inst2" in printed and f"pds, {TABLETS_N_TRANSFER} pairs" in printed
    b = load_bundle(out)
    assert b.model_version == "1.0.0-inst2" and b.pipeline.steps[0].op == "linear"
    bad = ["transfer", str(master), "--pairs", pairs, "--split", "nope", "--out", str(tmp_path / "x.spectrolite")]
    assert train_main(bad) == 1
    assert "no rows of split 'nope'" in capsys.readouterr().err
    with pytest.raises(DataError, match="no rows of split 'nope'"):
        T.load_transfer_pairs(datasets_dir / "idrc2002_tablets.npz", split="nope")


@pytest.mark.slow
def test_transfer_rows_for_run(tiny, tablets: dict[str, np.ndarray], tmp_path: Path) -> None:
    """The accuracy benchmark's rows: PLS, int8 bundle through the edge runtime, and int8 fine-tuning."""
    from sklearn.cross_decomposition import PLSRegression

    from tests.support.bundles import write_regression_bundle

    X = tablets["X"].astype(np.float64)
    y = tablets["y"][:, list(tablets["target_names"]).index("assay_mg")].astype(np.float64)
    split, inst = tablets["split"], tablets["instrument"]
    train = (split == "test") & (inst == 1)
    pre = make_pipeline_from_config(SNV_SG1, tablets["wavelengths"]).fit(X[train])
    pls = PLSRegression(n_components=TABLETS_PLS_COMPONENTS, scale=False).fit(pre.transform(X[train]), y[train])
    master = write_regression_bundle(tiny, tmp_path / "master.spectrolite")
    rows = T.transfer_rows_for_run(
        X, y, instrument=inst, sample_id=tablets["sample_id"], train_rows=split == "test",
        test_rows=split == "calibrate", pls_predict=lambda A: pls.predict(pre.transform(A)), bundle_path=master,
        keras_model=tiny.keras_model, n_transfer=(5,), methods=("pds",), finetune_epochs=2,
    )
    got = {(r["model"], r["method"], r["n_transfer"]) for r in rows}
    assert got == {("pls", "none", 0), ("pls", "pds", 5), ("cnn_int8", "none", 0), ("cnn_int8", "pds", 5),
                   ("cnn_int8", "finetune", 5)}
    for r in rows:
        assert np.isfinite(r["rmsep_inst1"]) and np.isfinite(r["rmsep_inst2"])
    none_int8 = next(r for r in rows if r["model"] == "cnn_int8" and r["method"] == "none")
    b = load_bundle(master)
    t1 = (split == "calibrate") & (inst == 1)
    assert none_int8["rmsep_inst1"] == pytest.approx(T.rmsep(y[t1], b.predict_spectra(X[t1])))


@pytest.mark.slow
def test_transfer_bundle_of_a_counts_pipeline(tiny, tablets: dict[str, np.ndarray], tmp_path: Path) -> None:
    """Frames carry counts: the transfer step sits after the counts conversion, on absorbance."""
    from tests.support.bundles import DARK_COUNTS, WHITE_COUNTS, absorbance_to_counts, write_regression_bundle
    from trainer.bundle import make_input_contract

    dark, white = np.full(650, DARK_COUNTS), np.full(650, WHITE_COUNTS)
    master = write_regression_bundle(
        tiny, tmp_path / "counts.spectrolite", pipeline=tiny.counts_pipeline,
        golden_inputs=absorbance_to_counts(tiny.X_test[:4]), golden_dark=dark, golden_reference=white,
        input_contract=make_input_contract(pixel_count_min=650, wavelength_min=600.0, wavelength_max=1898.0,
                                           pixel_formats=["uint16"], frame_signal="counts"),
    )
    X = tablets["X"].astype(np.float64)
    split, inst, sid = tablets["split"], tablets["instrument"], tablets["sample_id"]
    Pm, Ps, _ = T.pair_by_sample_id(X, inst, sid, rows=split == "test")
    idx = T.select_transfer_samples(Pm, TABLETS_N_TRANSFER)
    out = T.transfer_bundle(master, Ps[idx], Pm[idx], tmp_path / "counts2.spectrolite", method="ds")
    new = load_bundle(out)
    assert [s.op for s in new.pipeline.steps][:2] == ["counts", "linear"]
    assert new.input_contract.frame_signal == "counts"
    t = T.fit_ds(Pm[idx], Ps[idx])
    inst2 = X[(split == "calibrate") & (inst == 2)][:4]
    got = new.preprocess(absorbance_to_counts(inst2), dark=dark, reference=white)
    want = load_bundle(master).preprocess(absorbance_to_counts(t.transform(inst2)), dark=dark, reference=white)
    np.testing.assert_allclose(got, want, atol=1e-6)
