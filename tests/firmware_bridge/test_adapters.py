"""Adapters for foreign dialects (C12880MA ASCII lines, AS7265x AT replies) against recorded byte streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.adapters import AS7265X_WAVELENGTHS_NM, AS7265xAdapter, C12880Adapter
from firmware_bridge.adapters.as7265x import AS7265X_CHANNEL_NM, AS7265X_CHANNEL_ORDER
from firmware_bridge.adapters.c12880 import MAX_LINE_BYTES
from firmware_bridge.codec import decode_frame, encode
from firmware_bridge.errors import AdapterError, BridgeError
from firmware_bridge.frames import Ack, Command, CommandCode, Nack, NackCode, SignalKind, Spectrum, SpectrumFlags

DIALECTS = Path(__file__).resolve().parents[1] / "data" / "dialects"
#: Calibrated AS7265x values are printed with two decimals and carried as float32.
AS7265X_VALUE_TOL = 1e-4
#: The AS7265x status polynomial (six coefficients) cannot follow the 18 irregular centres exactly, nm.
AS7265X_POLY_TOL_NM = 15.0


def _clock() -> int:
    return 42


# ------------------------------------------------------------------------------------------------ C12880MA
@pytest.fixture()
def c12880_stream() -> bytes:
    return (DIALECTS / "c12880_session.bin").read_bytes()


@pytest.fixture()
def c12880_expected() -> np.ndarray:
    return np.loadtxt(DIALECTS / "c12880_session_expected.csv", delimiter=",", dtype=np.int64)


def test_c12880_recorded_session_gives_the_good_lines(c12880_stream: bytes, c12880_expected: np.ndarray) -> None:
    adapter = C12880Adapter(clock_us=_clock)
    spectra = adapter.feed(c12880_stream)
    assert len(spectra) == len(c12880_expected) == 5
    for k, (spectrum, expected) in enumerate(zip(spectra, c12880_expected)):
        assert isinstance(spectrum, Spectrum)
        assert spectrum.seq == k
        assert spectrum.counts.dtype == np.uint16 and spectrum.pixel_count == 288
        np.testing.assert_array_equal(spectrum.counts, expected)
    stats = adapter.stats
    assert (stats.lines_ok, stats.lines_bad) == (5, 2)
    assert stats.lines_ignored >= 1  # the banner
    assert "expected" in stats.last_error
    assert stats.bytes_fed == len(c12880_stream)


def test_c12880_saturated_line_is_flagged(c12880_stream: bytes) -> None:
    spectra = C12880Adapter(clock_us=_clock).feed(c12880_stream)
    saturated = [s for s in spectra if s.flags & SpectrumFlags.SATURATED]
    assert len(saturated) == 1
    assert saturated[0].saturated_count == int(np.count_nonzero(saturated[0].counts == 1023)) >= 12


def test_c12880_any_chunking_gives_the_same_frames(c12880_stream: bytes) -> None:
    whole = C12880Adapter(clock_us=_clock).feed(c12880_stream)
    adapter = C12880Adapter(clock_us=_clock)
    pieces: list[Spectrum] = []
    rng = np.random.default_rng(3)
    i = 0
    while i < len(c12880_stream):
        n = int(rng.integers(1, 97))
        pieces += adapter.feed(c12880_stream[i : i + n])
        i += n
    assert pieces == whole


def test_c12880_corrupt_lines_raise_adapter_error() -> None:
    adapter = C12880Adapter()
    with pytest.raises(AdapterError, match="expected 288 channels, got 287"):
        adapter.parse_line(",".join(["1"] * 287))
    with pytest.raises(AdapterError, match="integer counts"):
        adapter.parse_line(",".join(["1"] * 100 + ["5l2"] + ["1"] * 187))
    with pytest.raises(AdapterError, match="between 0 and 1023"):
        adapter.parse_line(",".join(["1"] * 287 + ["4096"]))
    with pytest.raises(AdapterError, match="non-ASCII"):
        adapter.parse_line(b"\xff" + b",1" * 287)
    with pytest.raises(ValueError):  # AdapterError is also a ValueError
        adapter.parse_line("")


def test_c12880_strict_mode_raises_on_the_corrupt_line(c12880_stream: bytes) -> None:
    with pytest.raises(AdapterError):
        C12880Adapter(strict=True).feed(c12880_stream)


def test_c12880_overlong_line_is_dropped_without_growing() -> None:
    adapter = C12880Adapter()
    assert adapter.feed(b"1," * (MAX_LINE_BYTES)) == []
    assert adapter.feed(b"2," * 1000 + b"\r\n") == []  # rest of the monster line
    good = ",".join(["7"] * 288).encode() + b"\n"
    assert len(adapter.feed(good)) == 1
    assert adapter.stats.lines_bad == 1


def test_c12880_status_carries_the_calibration() -> None:
    status = C12880Adapter().status(nonce=9)
    wl = status.wavelengths_nm()
    assert status.nonce == 9 and status.pixel_count == 288
    assert wl.shape == (288,) and np.all(np.diff(wl) > 0)
    assert 300 < wl[0] < 340 and 840 < wl[-1] < 900


@pytest.mark.parametrize("make", [C12880Adapter, AS7265xAdapter], ids=["c12880", "as7265x"])
def test_adapter_status_says_counts_and_names_its_numbering(make: type) -> None:
    adapter = make()
    status = adapter.status()
    # C12880: raw ADC counts; AS7265x: calibrated intensities, which need DARK + REFERENCE just like counts
    assert status.signal is SignalKind.COUNTS
    assert status.boot_id == adapter.boot_id != 0 and adapter.status(nonce=3).boot_id == status.boot_id
    assert make().boot_id != adapter.boot_id  # a new adapter numbers its spectra from 0 again, under a new id
    assert make(boot_id=0xABC).status().boot_id == 0xABC
    assert decode_frame(encode(status)) == status
    with pytest.raises(AdapterError, match="expected a boot_id in 1..4294967295, got 0"):
        make(boot_id=0)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_c12880_garbage_never_raises(data: bytes) -> None:
    adapter = C12880Adapter()
    for spectrum in adapter.feed(data):
        assert spectrum.pixel_count == 288


# ------------------------------------------------------------------------------------------------ AS7265x
def _as_session() -> tuple[AS7265xAdapter, list[bytes], bytes]:
    adapter = AS7265xAdapter(clock_us=_clock)
    commands = (DIALECTS / "as7265x_session_commands.txt").read_text().split()
    written = []
    for line in commands:
        if line.startswith("ATINTTIME="):
            written.append(adapter.set_integration_time(int(line.split("=")[1]) * 2800))
        elif line.startswith("ATGAIN="):
            value = int(line.split("=")[1])
            if value <= 3:
                written.append(adapter.set_gain(value))
            else:  # the recording probes the module with a code the adapter refuses to write: queue it by hand
                with pytest.raises(AdapterError, match="gain code 0 to 3"):
                    adapter.set_gain(value)
                written.append(_force_gain(adapter, value))
        else:
            written.append(adapter.request_spectrum())
    return adapter, written, (DIALECTS / "as7265x_session.bin").read_bytes()


def _force_gain(adapter: AS7265xAdapter, value: int) -> bytes:
    from firmware_bridge.adapters.as7265x import _Pending

    adapter._pending.append(_Pending("GAIN", value, None, None))
    return f"ATGAIN={value}\r\n".encode()


def test_as7265x_commands_are_at_lines() -> None:
    _, written, _ = _as_session()
    assert written[0] == b"ATINTTIME=20\r\n"
    assert written[1] == b"ATGAIN=3\r\n"
    assert written[2] == b"ATCDATA\r\n"


def test_as7265x_recorded_session() -> None:
    adapter, _, stream = _as_session()
    frames = adapter.feed(stream)
    spectra = [f for f in frames if isinstance(f, Spectrum)]
    expected = np.loadtxt(DIALECTS / "as7265x_session_expected.csv", delimiter=",")
    assert len(spectra) == 3
    order = np.argsort([AS7265X_CHANNEL_NM[c] for c in AS7265X_CHANNEL_ORDER], kind="stable")
    for k, (s, e) in enumerate(zip(spectra, expected)):
        assert s.seq == k and s.counts.dtype == np.float32 and s.pixel_count == 18
        np.testing.assert_allclose(s.counts, e[order], rtol=AS7265X_VALUE_TOL)
    assert adapter.integration_time_us == 20 * 2800 and adapter.gain == 64.0
    assert all(s.integration_time_us == 56_000 for s in spectra)
    stats = adapter.stats
    assert (stats.spectra, stats.acks, stats.nacks, stats.lines_bad, stats.pending) == (3, 2, 1, 1, 0)
    assert "expected 18 channels, got 17" in stats.last_error


def test_as7265x_any_chunking_gives_the_same_frames() -> None:
    adapter, _, stream = _as_session()
    whole = adapter.feed(stream)
    adapter2, _, _ = _as_session()
    pieces = []
    for i in range(0, len(stream), 7):
        pieces += adapter2.feed(stream[i : i + 7])
    assert pieces == whole


def test_as7265x_protocol_commands_map_to_at() -> None:
    adapter = AS7265xAdapter(clock_us=_clock)
    data, now = adapter.command_bytes(Command(1, CommandCode.SET_INTEGRATION_TIME, 28_000))
    assert data == b"ATINTTIME=10\r\n" and now == []
    assert adapter.feed(b"OK\r\n") == [Ack(1, CommandCode.SET_INTEGRATION_TIME)]
    data, now = adapter.command_bytes(Command(2, CommandCode.SET_INTEGRATION_TIME, 10_000_000))
    assert data == b"" and isinstance(now[0], Nack) and now[0].reason == NackCode.VALUE_OUT_OF_RANGE
    data, now = adapter.command_bytes(Command(3, CommandCode.SET_AVERAGING, 4))
    assert data == b"" and now[0].reason == NackCode.NOT_SUPPORTED
    data, _ = adapter.command_bytes(Command(4, CommandCode.TRIGGER, 2))
    assert data == b"ATCDATA\r\n" * 2
    reply = (", ".join(["2.5"] * 18) + " OK\r\n").encode()
    frames = adapter.feed(reply + b"ERROR\r\n")
    assert frames[0] == Ack(4, CommandCode.TRIGGER) and isinstance(frames[1], Spectrum)
    assert isinstance(frames[2], Nack) and frames[2].command_id == 4


def test_as7265x_errors_are_adapter_errors() -> None:
    adapter = AS7265xAdapter()
    with pytest.raises(AdapterError, match="expected 18 channels, got 3"):
        adapter.parse_cdata("1, 2, 3 OK")
    with pytest.raises(AdapterError, match="a number per channel"):
        adapter.parse_cdata(", ".join(["1"] * 17 + ["x"]))
    with pytest.raises(AdapterError, match="finite"):
        adapter.parse_cdata(", ".join(["1"] * 17 + ["nan"]))
    with pytest.raises(AdapterError, match="1 to 255"):
        adapter.set_integration_time(0)
    assert isinstance(AdapterError("x"), BridgeError)
    # a reply nobody asked for is counted, not returned
    assert adapter.feed(b"OK\r\n") == [] and adapter.stats.lines_bad == 1


def test_as7265x_status_axis() -> None:
    adapter = AS7265xAdapter()
    assert np.all(np.diff(adapter.wavelengths_nm()) > 0)
    assert adapter.wavelengths_nm()[0] == AS7265X_WAVELENGTHS_NM[0] == 410.0
    status = adapter.status()
    assert status.pixel_count == 18
    assert np.max(np.abs(status.wavelengths_nm() - adapter.wavelengths_nm())) < AS7265X_POLY_TOL_NM


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 5))
def test_as7265x_garbage_never_raises(data: bytes, n_requests: int) -> None:
    adapter = AS7265xAdapter()
    for _ in range(n_requests):
        adapter.request_spectrum()
    for frame in adapter.feed(data):
        assert not isinstance(frame, Spectrum) or frame.pixel_count == 18


def test_docstring_examples() -> None:
    import doctest

    import firmware_bridge.adapters.as7265x
    import firmware_bridge.adapters.c12880

    for module in (firmware_bridge.adapters.c12880, firmware_bridge.adapters.as7265x):
        assert doctest.testmod(module).failed == 0
