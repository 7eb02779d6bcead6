"""A device's axis reaches a bundle in the bundle's unit (issue 13): the edge gets it in nm from the STATUS and
converts it once, in the inference engine, into the unit of the bundle's wavelength grid (nm or cm-1).

Real parts: a cm-1 bundle trained by ``spectro-train fit`` (committed in tests/data/trained by its generator) on a
synthetic FTIR dataset that ``make_synthetic_dataset`` writes in cm-1, the simulator's device serving that dataset
(its STATUS through the codec), the real :class:`~edge.inference.InferenceEngine`, ``InputContract``, ``Pipeline``
and ``Resample``; and the daemon itself (in process, with a recording MQTT link) reading that simulator on a real pty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import Bundle, InputContract, load_bundle
from edge.errors import InputContractError
from edge.inference import InferenceEngine, Prediction, Rejection, RejectReason
from edge.preprocess import Resample
from edge.references import ReferenceSet, ReferenceSpectrum
from firmware_bridge.codec import decode_frame, encode
from firmware_bridge.frames import AxisUnit, Dark, Frame, Reference, Spectrum, Status
from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer
from firmware_bridge.synthetic import make_synthetic_dataset, save_npz
from tests.support.trained import FTIR_BUNDLE, FTIR_PIXELS, FTIR_RANGE_CM1, FTIR_ROWS, FTIR_SEED, committed

REPO = Path(__file__).resolve().parents[2]
#: The synthetic FTIR dataset: rows, pixels, and its wavenumber range (cm-1).
N_ROWS, N_PIXELS, RANGE_CM1 = FTIR_ROWS, FTIR_PIXELS, FTIR_RANGE_CM1
#: Spectra predicted per test.
N_SPECTRA = 5
#: Relative rounding of ``1e7 / (1e7 / x)`` in float64.
RECIPROCAL_RTOL = 1e-14
#: Host time of the references (they are taken as fresh).
NOW_S = 1_000_000.0
#: The same spectrum predicted through the engine (axis converted from nm) and offline (the cm-1 axis itself):
#: the axes differ by a few units in the last place, the float32 model output by at most its rounding.
PREDICTION_RTOL, PREDICTION_ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def ftir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dataset (.npz, axis in cm-1, rebuilt: it is deterministic) and the bundle trained on it by
    ``spectro-train fit`` (PLS; few epochs for the CNN it also trains: accuracy is not tested here), committed in
    tests/data/trained by its generator."""
    directory = tmp_path_factory.mktemp("ftir-dataset")
    data = make_synthetic_dataset(N_ROWS, seed=FTIR_SEED, n_channels=N_PIXELS, wavelength_range_nm=RANGE_CM1,
                                  axis_unit="cm-1")
    npz = save_npz(data, directory / "ftir.npz")
    bundle_path = committed(FTIR_BUNDLE)
    return {"npz": npz, "bundle": load_bundle(bundle_path), "path": bundle_path, "axis": data["wavelengths"]}


def _received(frames: list[Frame]) -> list[Frame]:
    """The frames as a host decodes them off the wire."""
    return [decode_frame(encode(f)) for f in frames]


def _device_frames(npz: Path) -> tuple[Status, ReferenceSet, list[Spectrum]]:
    """STATUS, references and a few counts spectra of the simulator serving ``npz`` (unit from the dataset)."""
    device = VirtualSpectrometer.from_config(SimulatorConfig(dataset_path=str(npz), seed=1, shuffle=True))
    start = _received(device.session_start())
    status = next(f for f in start if isinstance(f, Status))
    refs = ReferenceSet()
    for f in start:
        if isinstance(f, (Dark, Reference)):
            refs = refs.with_spectrum(ReferenceSpectrum.from_frame(f, captured_at_s=NOW_S))
    spectra = [f for f in _received([device.spectrum()[0] for _ in range(N_SPECTRA)]) if isinstance(f, Spectrum)]
    return status, refs, spectra


class _Spy:
    """Stands in for an object, recording the ``wavelengths=`` each call of ``method`` gets."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner, self._method, self.axes = inner, method, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.axes.append(kwargs.get("wavelengths"))
            return attr(*args, **kwargs)

        return call


def _engine(bundle: Bundle) -> InferenceEngine:
    return InferenceEngine(bundle, clock=lambda: NOW_S)


def test_the_bundle_is_in_cm1_end_to_end(ftir: dict[str, Any]) -> None:
    bundle = ftir["bundle"]
    assert bundle.manifest["wavelength_grid"]["unit"] == "cm-1"
    assert bundle.input_contract.wavelength_unit == "cm-1" == bundle.pipeline.input_contract.wavelength_unit
    resample = next(s for s in bundle.pipeline.steps if isinstance(s, Resample))
    assert resample.unit == "cm-1"
    np.testing.assert_array_equal(resample.grid, ftir["axis"])


def test_a_cm1_axis_from_a_status_reaches_the_cm1_contracts_and_resample(ftir: dict[str, Any]) -> None:
    bundle = ftir["bundle"]
    status, refs, spectra = _device_frames(ftir["npz"])
    assert status.axis_unit is AxisUnit.CM_1  # the simulator took the unit from the dataset
    wavelengths_nm = status.wavelengths_nm()  # what the daemon hands the engine: nm, whatever the device's unit
    engine = _engine(bundle)
    assert engine.axis_unit is AxisUnit.CM_1
    # the engine preprocesses with transform_level (transform plus each spectrum's level, for the drift monitor)
    contract_spy, pipeline_spy = _Spy(engine.contract, "check"), _Spy(engine.pipeline, "transform_level")
    engine.contract, engine.pipeline = contract_spy, pipeline_spy  # type: ignore[assignment]  # spies stand in for the contract and the pipeline
    outcomes = [engine.process(s, refs, wavelengths_nm=wavelengths_nm, frame_signal="counts") for s in spectra]
    assert all(isinstance(o, Prediction) for o in outcomes), outcomes

    converted = engine.device_axis(wavelengths_nm)
    assert converted is engine.device_axis(wavelengths_nm)  # converted once per STATUS array
    assert converted is not None and not converted.flags.writeable
    np.testing.assert_allclose(converted, status.axis(), rtol=RECIPROCAL_RTOL)
    assert contract_spy.axes[0] is converted  # the bundle's input contract judged the cm-1 axis (once, then cached)
    assert all(a is None for a in contract_spy.axes[1:])
    assert len(pipeline_spy.axes) == N_SPECTRA and all(a is converted for a in pipeline_spy.axes)  # Resample too

    counts = np.stack([s.counts for s in spectra]).astype(np.float64)
    context = refs.context()
    offline = np.asarray(bundle.predict_spectra(counts, wavelengths=status.axis(), **context), dtype=np.float64)
    got = np.array([o.values for o in outcomes if isinstance(o, Prediction)])
    np.testing.assert_allclose(got, offline.reshape(got.shape), rtol=PREDICTION_RTOL, atol=PREDICTION_ATOL)


def test_another_cm1_grid_covering_the_model_is_resampled_onto_it(ftir: dict[str, Any]) -> None:
    """A device of another resolution, sending high to low wavenumbers, over a wider range: served on the grid."""
    bundle = ftir["bundle"]
    device_axis = np.linspace(1850.0, 850.0, 301)  # descending, 3.33 cm-1 per pixel
    status = Status(0, "ftir-2", "1.0", 301, (1850.0, -1000.0 / 300), 1000, axis_unit=AxisUnit.CM_1, boot_id=1)
    status = decode_frame(encode(status))
    assert isinstance(status, Status)
    np.testing.assert_allclose(status.axis(), device_axis, rtol=1e-12)
    rng = np.random.default_rng(0)
    absorbance = 0.3 + 0.1 * np.sin(device_axis / 40.0) + rng.normal(0.0, 1e-3, 301)
    dark = np.full(301, 1000.0)
    white = np.full(301, 50_000.0)
    counts = np.round(dark + (white - dark) * 10.0**-absorbance).astype(np.uint16)
    refs = (
        ReferenceSet()
        .with_spectrum(ReferenceSpectrum.from_frame(Dark(1, 0, 1000, dark.astype(np.uint16)), captured_at_s=NOW_S))
        .with_spectrum(
            ReferenceSpectrum.from_frame(Reference(2, 0, 1000, white.astype(np.uint16)), captured_at_s=NOW_S)
        )
    )
    outcome = _engine(bundle).process(
        Spectrum(3, 0, 1000, counts), refs, wavelengths_nm=status.wavelengths_nm(), frame_signal="counts"
    )
    assert isinstance(outcome, Prediction), outcome
    offline = bundle.predict_spectra(counts.astype(np.float64), wavelengths=device_axis, dark=dark, reference=white)
    np.testing.assert_allclose(outcome.values, np.ravel(offline), rtol=PREDICTION_RTOL, atol=PREDICTION_ATOL)


def test_an_nm_device_that_does_not_cover_a_cm1_bundle_is_refused(ftir: dict[str, Any]) -> None:
    """Today's coincidence ends: a device announcing the bundle's cm-1 numbers as nm is 5556-11111 cm-1."""
    bundle = ftir["bundle"]
    _, refs, spectra = _device_frames(ftir["npz"])
    lo, hi = RANGE_CM1
    nm_device = Status(0, "grating", "1.0", N_PIXELS, (lo, (hi - lo) / (N_PIXELS - 1)), 1000, boot_id=2)
    assert nm_device.axis_unit is AxisUnit.NM
    wavelengths_nm = nm_device.wavelengths_nm()
    engine = _engine(bundle)
    outcomes = [engine.process(s, refs, wavelengths_nm=wavelengths_nm, frame_signal="counts") for s in spectra[:2]]
    assert all(isinstance(o, Rejection) and o.reason is RejectReason.INPUT_CONTRACT for o in outcomes)
    detail = outcomes[0].detail  # type: ignore[union-attr]  # not None here
    assert detail == (
        "expected a wavelength axis covering 900-1800 cm-1, got 5555.56-11111.1 cm-1 "
        "(the device's axis, 900-1800 nm, in the bundle's cm-1)"
    )
    assert outcomes[1].detail == detail  # type: ignore[union-attr]  # the same verdict, from the cached axis
    with pytest.raises(InputContractError) as exc:  # the daemon's check of a device against a bundle to load
        bundle.input_contract.check(N_PIXELS, wavelengths_nm=wavelengths_nm)
    assert str(exc.value) == detail


def test_an_nm_device_covering_the_cm1_range_is_served(ftir: dict[str, Any]) -> None:
    """Units are a matter of conversion, not of refusal: 5000-12000 nm is 833-2000 cm-1, which covers 900-1800."""
    bundle = ftir["bundle"]
    status = Status(0, "grating-mir", "1.0", 400, (5000.0, 7000.0 / 399), 1000, boot_id=3)
    axis_cm1 = 1e7 / status.wavelengths_nm()
    absorbance = 0.2 + 0.05 * np.cos(axis_cm1 / 60.0)
    dark, white = np.full(400, 900.0), np.full(400, 40_000.0)
    counts = np.round(dark + (white - dark) * 10.0**-absorbance).astype(np.uint16)
    refs = (
        ReferenceSet()
        .with_spectrum(ReferenceSpectrum.from_frame(Dark(1, 0, 1000, dark.astype(np.uint16)), captured_at_s=NOW_S))
        .with_spectrum(
            ReferenceSpectrum.from_frame(Reference(2, 0, 1000, white.astype(np.uint16)), captured_at_s=NOW_S)
        )
    )
    outcome = _engine(bundle).process(
        Spectrum(3, 0, 1000, counts), refs, wavelengths_nm=status.wavelengths_nm(), frame_signal="counts"
    )
    assert isinstance(outcome, Prediction), outcome
    bundle.input_contract.check(400, wavelengths_nm=status.wavelengths_nm())  # the daemon's reload check agrees


def test_frame_contract_converts_an_nm_axis_to_its_unit() -> None:
    frames = {"pixel_count_min": 2, "pixel_count_max": 10, "pixel_formats": ("uint16",), "frame_signal": "counts"}
    cm1 = InputContract(None, 1000.0, 2000.0, "cm-1", resamples=True).with_frames(**frames)
    np.testing.assert_allclose(cm1.axis_from_nm([10_000.0, 5_000.0]), [1000.0, 2000.0], rtol=RECIPROCAL_RTOL)
    cm1.check(3, wavelengths_nm=np.array([10_000.0, 7_000.0, 5_000.0]))  # 1000-2000 cm-1: covered
    nm = InputContract(None, 1000.0, 2000.0, "nm", resamples=True).with_frames(**frames)
    wl = np.array([1000.0, 1500.0, 2000.0])
    np.testing.assert_array_equal(nm.axis_from_nm(wl), wl)
    nm.check(3, wavelengths_nm=wl)
    with pytest.raises(InputContractError,
                       match=r"^expected a wavelength axis covering 1000-2000 nm, got 1100-2000 nm$"):
        nm.check(3, wavelengths_nm=wl + np.array([100.0, 0.0, 0.0]))  # nm: no conversion, no extra words
    with pytest.raises(TypeError, match="got both"):
        nm.check(3, wavelengths=wl, wavelengths_nm=wl)


def test_a_bundle_whose_pipeline_axis_is_in_another_unit_than_its_grid_is_refused(ftir: dict[str, Any]) -> None:
    """The engine converts to the grid's unit only: a resample step in another unit would be fed the wrong axis."""
    from edge.bundle.loader import _check_consistency
    from edge.errors import BundleError
    from edge.preprocess import Pipeline

    bundle = ftir["bundle"]
    _check_consistency(bundle.manifest, bundle.pipeline, bundle.runtime)  # as trained: consistent
    steps = tuple(Resample(s.grid, unit="nm") if isinstance(s, Resample) else s for s in bundle.pipeline.steps)
    wrong = Pipeline(steps, bundle.pipeline.input_contract)
    with pytest.raises(BundleError, match=r"the pipeline's resample step 1 is in 'nm', the wavelength grid in 'cm-1'$"):
        _check_consistency(bundle.manifest, wrong, bundle.runtime)


#: Predictions the daemon test waits for, and how far each may be from the simulator's reference value: the
#: bundle's PLS predicts the synthetic analytes to a few tenths of a percent; a prediction on a wrongly scaled axis
#: is refused, not merely off.
N_DAEMON_PREDICTIONS = 15
DAEMON_ABS_ERROR_PCT = 2.0


def _serve(tmp: Path, npz: Path, bundle: Path, axis_unit: str | None) -> tuple[Any, Any, list[str]]:
    """The simulator serving ``npz`` on a pty (``axis_unit`` None: the dataset's own) and the daemon reading it with
    ``bundle``; returns the daemon, its recording link and a stopper (call ``stop()``)."""
    import threading

    from edge.daemon import Daemon
    from firmware_bridge.simulator import PtyEndpoint, Simulator
    from firmware_bridge.transport import SerialTransport
    from tests.support.daemon import RecordingLink, edge_config

    config = SimulatorConfig(dataset_path=str(npz), seed=1, shuffle=True, rate_hz=50.0, connect_delay_s=0.3,
                             axis_unit=axis_unit)  # type: ignore[arg-type]  # the axis unit as a string, parametrised
    sim = Simulator(config, PtyEndpoint(tmp / "spectrometer"))
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), kwargs={"on_ready": lambda a: ready.set()}, daemon=True)
    thread.start()
    assert ready.wait(60), "simulator did not open its pty"
    cfg = edge_config(tmp, port_url=sim.address, bundle_path=bundle)
    link = RecordingLink()
    transport = SerialTransport(sim.address, read_timeout_s=0.05)
    daemon = Daemon(cfg, load_bundle(bundle), transport, link, forward_annotations=True)
    daemon.start()

    class _Stop:
        def stop(self) -> None:
            daemon.stop()
            stop.set()
            thread.join(timeout=10)

    return daemon, link, _Stop()


def test_the_daemon_serves_a_cm1_device_with_a_cm1_bundle(tmp_path: Path, ftir: dict[str, Any]) -> None:
    from edge.bundle import load_bundle
    from tests.support.daemon import wait_for

    daemon, link, stopper = _serve(tmp_path, ftir["npz"], ftir["path"], None)
    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= N_DAEMON_PREDICTIONS, "predictions of the cm-1 device")
        daemon.reloader.check_device_fit(load_bundle(ftir["path"]))  # a reload of a cm-1 bundle fits this cm-1 device
    finally:
        stopper.stop()
    assert daemon.counters.get("frames_rejected_input_contract") == 0
    predictions = link.of_kind("prediction")
    values = np.array([[t["value"] for t in m["values"]] for m in predictions])
    reference = np.array([m["reference"] for m in predictions], dtype=np.float64)  # the simulator's y rows
    assert values.shape == reference.shape == (len(predictions), 3)
    np.testing.assert_allclose(values, reference, atol=DAEMON_ABS_ERROR_PCT)


def test_the_daemon_refuses_a_device_announcing_the_cm1_numbers_as_nm(tmp_path: Path, ftir: dict[str, Any]) -> None:
    """What spectro-sim did before the axis unit: cm-1 values in an nm polynomial. Now every frame is refused."""
    from tests.support.daemon import wait_for

    daemon, link, stopper = _serve(tmp_path, ftir["npz"], ftir["path"], "nm")
    try:
        wait_for(lambda: daemon.counters.get("frames_rejected_input_contract") >= 5, "refused frames")
    finally:
        stopper.stop()
    assert link.of_kind("prediction") == [] and daemon.counters.get("predictions") == 0


def test_the_engine_judges_a_device_axis_against_the_one_contract_once(ftir: dict[str, Any]) -> None:
    """One verdict per device axis (#14): ``check_frame`` runs the bundle's one input contract (the manifest's range
    and the pipeline's axis rule) on a new axis once, then not again for the frames that follow."""
    bundle = ftir["bundle"]
    status, refs, spectra = _device_frames(ftir["npz"])
    wavelengths_nm = status.wavelengths_nm()
    engine = _engine(bundle)
    checked: list[Any] = []
    real = engine.contract

    class _Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def check(self, n_pixels: int, **kwargs: Any) -> None:
            if kwargs.get("wavelengths") is not None:
                checked.append(kwargs["wavelengths"])
            real.check(n_pixels, **kwargs)

    engine.contract = _Counting()  # type: ignore[assignment]  # a counting stand-in for the contract
    outcomes = engine.process_many(spectra, refs, wavelengths_nm=wavelengths_nm, frame_signal="counts")
    outcomes += [engine.process(s, refs, wavelengths_nm=wavelengths_nm, frame_signal="counts") for s in spectra]
    assert all(isinstance(o, Prediction) for o in outcomes), outcomes
    assert len(checked) == 1 and checked[0] is engine.device_axis(wavelengths_nm)
