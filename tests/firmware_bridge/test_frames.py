"""Frame dataclasses: derived fields, exact equality, and validation of what they hold."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge import (
    Annotation,
    Command,
    CommandCode,
    Dark,
    PixelFormat,
    ProtocolError,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
    draw_boot_id,
)
from firmware_bridge.frames import AxisUnit


def _spectrum(cls: type[Spectrum] = Spectrum, counts: object = None) -> Spectrum:
    counts = np.arange(8, dtype=np.uint16) if counts is None else counts
    return cls(seq=3, timestamp_us=10, integration_time_us=500, counts=counts)


@pytest.mark.parametrize(
    ("dtype", "fmt"),
    [(np.uint16, PixelFormat.UINT16), (np.uint32, PixelFormat.UINT32), (np.float32, PixelFormat.FLOAT32)],
)
def test_pixel_format_follows_dtype(dtype: type, fmt: PixelFormat) -> None:
    s = _spectrum(counts=np.ones(4, dtype=dtype))
    assert s.pixel_format is fmt
    assert s.pixel_count == 4


def test_counts_are_a_read_only_copy() -> None:
    source = np.arange(4, dtype=np.uint16)
    s = _spectrum(counts=source)
    source[0] = 99
    assert s.counts[0] == 0
    with pytest.raises(ValueError):
        s.counts[0] = 1


def test_equality_is_bitwise_and_typed() -> None:
    a = _spectrum()
    assert a == _spectrum()
    assert hash(a) == hash(_spectrum())
    assert a != _spectrum(Dark)
    assert a != a.replace(counts=np.arange(8, dtype=np.uint32))  # same numbers, other wire format
    nan_temp = a.replace(detector_temp_c=float("nan"))
    assert nan_temp == nan_temp.replace()  # NaN temperatures compare by their bits


@pytest.mark.parametrize("counts", [np.zeros((2, 3), np.uint16), np.zeros(3, np.int8), np.zeros(3, np.float64)])
def test_bad_counts_are_refused_with_the_reason(counts: np.ndarray) -> None:
    with pytest.raises(ProtocolError, match="expected"):
        _spectrum(counts=counts)


def test_flags_and_codes_become_enums() -> None:
    s = _spectrum().replace(flags=1)
    assert s.flags is SpectrumFlags.SATURATED
    assert Command(command_id=1, code=1).code is CommandCode.SET_INTEGRATION_TIME


def test_status_builds_the_wavelength_axis() -> None:
    st = Status(
        nonce=1,
        device_id="sim",
        firmware_version="1.0",
        pixel_count=4,
        wavelength_coeffs_nm=(600, 2.0, 0.001),
        integration_time_us=1000,
    )
    np.testing.assert_allclose(st.wavelengths_nm(), [600.0, 602.001, 604.004, 606.009])
    assert st == Status(1, "sim", "1.0", 4, (600.0, 2.0, 0.001), 1000)


def test_annotation_values_are_floats() -> None:
    a = Annotation(seq=5, values=(1, 2))
    assert a.values == (1.0, 2.0)
    assert a == Annotation(5, (1.0, 2.0))


def test_unknown_codes_are_protocol_errors_naming_the_known_ones() -> None:
    with pytest.raises(ProtocolError, match=r"expected a command code one of 1 \(SET_INTEGRATION_TIME\).*got 99"):
        Command(command_id=1, code=99)


def test_signal_kind_wire_codes() -> None:
    assert {k.name: int(k) for k in SignalKind} == {"COUNTS": 0, "ABSORBANCE": 1, "REFLECTANCE": 2}


def test_status_signal_and_boot_id_default_to_counts_of_an_unknown_boot() -> None:
    st = Status(1, "sim", "1.0", 4, (600.0, 2.0), 1000)
    assert st.signal is SignalKind.COUNTS and st.boot_id == 0
    assert Status(1, "sim", "1.0", 4, (600.0, 2.0), 1000, signal=1).signal is SignalKind.ABSORBANCE
    with pytest.raises(ProtocolError, match=r"expected a signal kind one of 0 \(COUNTS\), .*got 3"):
        Status(1, "sim", "1.0", 4, (600.0, 2.0), 1000, signal=3)


def test_axis_unit_wire_codes_and_symbols() -> None:
    assert {u.name: int(u) for u in AxisUnit} == {"NM": 0, "CM_1": 1}
    assert [u.symbol for u in AxisUnit] == ["nm", "cm-1"]
    assert all(AxisUnit.from_symbol(u.symbol) is u for u in AxisUnit)
    with pytest.raises(ProtocolError, match=r"^expected an axis unit of 'nm', 'cm-1', got 'cm\^-1'$"):
        AxisUnit.from_symbol("cm^-1")


def test_a_cm1_status_gives_its_axis_in_cm1_and_true_nm() -> None:
    st = Status(1, "ftir", "1.0", 4, (1000.0, 250.0), 1000, axis_unit=AxisUnit.CM_1)
    np.testing.assert_array_equal(st.axis(), [1000.0, 1250.0, 1500.0, 1750.0])
    np.testing.assert_allclose(st.wavelengths_nm(), [10_000.0, 8_000.0, 1e7 / 1500.0, 1e7 / 1750.0], rtol=1e-15)
    np.testing.assert_array_equal(st.axis_in("cm-1"), st.axis())  # its own unit: the polynomial itself
    np.testing.assert_array_equal(st.axis_in(AxisUnit.NM), st.wavelengths_nm())
    nm = Status(1, "grating", "1.0", 3, (900.0, 100.0), 1000)
    assert nm.axis_unit is AxisUnit.NM
    np.testing.assert_array_equal(nm.wavelengths_nm(), nm.axis())
    np.testing.assert_allclose(nm.axis_in("cm-1"), [1e7 / 900.0, 1e4, 1e7 / 1100.0], rtol=1e-15)
    with np.errstate(all="raise"):  # a zero wavenumber is inf nm, not an exception (the host refuses the axis)
        assert np.isinf(Status(1, "x", "", 2, (0.0, 1.0), 1, axis_unit=1).wavelengths_nm()[0])


def test_boot_ids_are_random_non_zero_and_new() -> None:
    ids = {draw_boot_id() for _ in range(50)}
    assert len(ids) == 50 and all(0 < i <= 0xFFFF_FFFF for i in ids)
    assert all(draw_boot_id(previous=i) != i for i in ids)


def test_frames_docstring_examples() -> None:
    import doctest

    import firmware_bridge.frames

    result = doctest.testmod(firmware_bridge.frames)
    assert result.attempted > 0 and result.failed == 0
