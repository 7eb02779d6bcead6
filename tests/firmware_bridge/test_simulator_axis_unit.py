"""spectro-sim announces a dataset's axis in its own unit (issue 13): nm for grating sets, cm-1 for FTIR sets.

Real parts: the shared FTIR dataset ``fruit_puree_mir.npz`` (its axis is even in cm-1, rounded to 1e-3), the codec
round trip of every STATUS, and ``spectro-sim`` as a process on a real pty read by ``SerialTransport``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.cli import _config, build_parser
from firmware_bridge.codec import STATUS_AXIS_UNIT_BYTES, decode_frame, encode, encode_body
from firmware_bridge.frames import AxisUnit, SignalKind, Status
from firmware_bridge.simulator import (
    SimulatorConfig,
    SimulatorError,
    VirtualSpectrometer,
    dataset_axis_unit,
    load_spectra,
)
from firmware_bridge.synthetic import load_npz, make_synthetic_dataset, save_npz
from firmware_bridge.transport import SerialTransport
from tests.support.simulator import read_until, spectro_sim

#: How closely the announced polynomial must reproduce a dataset's axis (``fit_wavelength_polynomial``'s default
#: tolerance, in the axis's unit).
AXIS_FIT_TOL = 1e-3
#: Relative rounding of ``1e7 / (1e7 / x)`` in float64: a few units in the last place.
RECIPROCAL_RTOL = 1e-14


def _status(device: VirtualSpectrometer) -> Status:
    """The device's STATUS as a host receives it (through the codec)."""
    status = decode_frame(encode(device.status()))
    assert isinstance(status, Status)
    return status


def test_a_cm1_synthetic_device_announces_its_polynomial_in_cm1() -> None:
    config = SimulatorConfig(synthetic_samples=8, synthetic_channels=64, axis_unit=AxisUnit.CM_1)
    device = VirtualSpectrometer.from_config(config)
    _, axis, _ = load_spectra(config)
    status = _status(device)
    assert status.axis_unit is AxisUnit.CM_1 and device.axis_unit is AxisUnit.CM_1
    np.testing.assert_allclose(status.axis(), axis, atol=AXIS_FIT_TOL)
    assert status.axis()[0] == axis[0] and status.axis()[-1] == pytest.approx(axis[-1], abs=1e-9)
    np.testing.assert_allclose(status.wavelengths_nm(), 1e7 / status.axis(), rtol=RECIPROCAL_RTOL)
    np.testing.assert_allclose(device.wavelengths_nm, 1e7 / axis, rtol=RECIPROCAL_RTOL)  # the detector model's axis
    assert np.all(np.diff(status.wavelengths_nm()) < 0)  # ascending wavenumbers are descending wavelengths


def test_an_nm_device_keeps_the_status_bytes_it_always_sent() -> None:
    nm = VirtualSpectrometer.from_config(SimulatorConfig(synthetic_samples=8, synthetic_channels=64, boot_id=7))
    status = nm.status()
    assert status.axis_unit is AxisUnit.NM
    cm1 = Status(**{**status.__dict__, "axis_unit": AxisUnit.CM_1})
    assert len(encode_body(cm1)) - len(encode_body(status)) == STATUS_AXIS_UNIT_BYTES  # nm: no axis_unit byte


def test_the_unit_comes_from_the_dataset_unless_configured(tmp_path: Path) -> None:
    path = save_npz(make_synthetic_dataset(12, seed=3, n_channels=40, axis_unit="cm-1"), tmp_path / "ftir.npz")
    assert str(load_npz(path)["axis_unit"]) == "cm-1"
    auto = VirtualSpectrometer.from_config(SimulatorConfig(dataset_path=str(path)))
    assert auto.axis_unit is AxisUnit.CM_1 and auto.status().axis_unit is AxisUnit.CM_1
    forced = VirtualSpectrometer.from_config(SimulatorConfig(dataset_path=str(path), axis_unit="nm"))
    assert forced.axis_unit is AxisUnit.NM
    assert dataset_axis_unit({}) is AxisUnit.NM  # a dataset that does not say is nm, as before
    with pytest.raises(SimulatorError, match=r"^expected an axis unit of 'nm', 'cm-1', got 'um'$"):
        dataset_axis_unit({"axis_unit": np.array("um")})
    with pytest.raises(SimulatorError, match="expected the dataset's axis_unit as one string"):
        dataset_axis_unit({"axis_unit": np.array(["nm", "nm"])})
    with pytest.raises(SimulatorError, match=r"^expected an axis unit of 'nm', 'cm-1', got 'angstrom'$"):
        SimulatorConfig(axis_unit="angstrom")  # type: ignore[arg-type]  # deliberately the wrong type


def test_a_wavenumber_axis_must_be_positive() -> None:
    x, axis, y = load_spectra(SimulatorConfig(synthetic_samples=4, synthetic_channels=16))
    with pytest.raises(SimulatorError, match="expected positive wavenumbers"):
        VirtualSpectrometer(x, axis - 1000.0, y, SimulatorConfig(axis_unit=AxisUnit.CM_1))


def test_shared_ftir_dataset_is_served_in_cm1_with_its_exact_range(datasets_dir: Path) -> None:
    dataset = datasets_dir / "fruit_puree_mir.npz"
    axis = load_npz(dataset)["wavelengths"]
    args = build_parser().parse_args(["--pty", "--dataset", str(dataset), "--axis-unit", "cm-1"])
    config = _config(args)
    assert config.axis_unit is AxisUnit.CM_1
    status = _status(VirtualSpectrometer.from_config(config))
    assert status.axis_unit is AxisUnit.CM_1 and status.pixel_count == axis.size == 235
    fitted = status.axis()
    assert np.max(np.abs(fitted - axis)) <= AXIS_FIT_TOL
    # the ends are the dataset's own: a host checking that the device covers a model trained on this axis never
    # refuses it for the rounding of the file's values
    assert fitted[0] == axis[0] and fitted[-1] >= axis[-1] - 1e-9 * axis[-1]
    assert _config(build_parser().parse_args(["--pty", "--dataset", str(dataset)])).axis_unit is None  # auto


def test_spectro_sim_announces_cm1_on_a_pty() -> None:
    with spectro_sim(
        "--pty", "--axis-unit", "cm-1", "--signal", "absorbance", "--synthetic-samples", "20",
        "--synthetic-channels", "64", "--rate", "0", "--count", "3",
    ) as (_, link):  # fmt: skip
        with SerialTransport(link) as t:
            frames = read_until(t, lambda fs: any(isinstance(f, Status) for f in fs))
    status = next(f for f in frames if isinstance(f, Status))
    assert status.axis_unit is AxisUnit.CM_1 and status.signal is SignalKind.ABSORBANCE
    _, axis, _ = load_spectra(SimulatorConfig(synthetic_samples=20, synthetic_channels=64, axis_unit=AxisUnit.CM_1))
    np.testing.assert_allclose(status.axis(), axis, atol=AXIS_FIT_TOL)
