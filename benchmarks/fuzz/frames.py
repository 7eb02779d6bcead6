"""Fuzz targets of the device link: the frame decoder and the C12880 and AS7265x adapters (``firmware_bridge``)."""

from __future__ import annotations

from typing import Any

from benchmarks.fuzz.target import mutate


# ------------------------------------------------------------------------------------------------ frame decoder
def _frames_strategy() -> Any:
    import numpy as np
    from hypothesis import strategies as st

    from firmware_bridge import frames as fr

    u16 = st.integers(0, 0xFFFF)
    u32 = st.integers(0, 0xFFFFFFFF)

    @st.composite
    def spectrum(draw: Any) -> Any:
        cls = draw(st.sampled_from([fr.Spectrum, fr.Dark, fr.Reference]))
        fmt = draw(st.sampled_from(list(fr.PixelFormat)))
        n = draw(st.integers(1, 300))
        dtype = {fr.PixelFormat.UINT16: "<u2", fr.PixelFormat.UINT32: "<u4", fr.PixelFormat.FLOAT32: "<f4"}[fmt]
        size = n * np.dtype(dtype).itemsize  # raw bytes: fast to draw, and NaN/inf/denormals come for free
        counts = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype=dtype).copy()
        return cls(seq=draw(u32), timestamp_us=draw(st.integers(0, 2**63 - 1)),
                   integration_time_us=draw(u32), averages=draw(st.integers(1, 0xFFFF)),
                   saturated_count=draw(st.integers(0, n)), counts=counts)

    simple = st.one_of(
        st.builds(fr.Hello, nonce=u32),
        st.builds(fr.Command, command_id=u16, code=st.sampled_from(list(fr.CommandCode)), value=u32),
        st.builds(fr.Ack, command_id=u16, code=st.sampled_from(list(fr.CommandCode))),
        st.builds(fr.Nack, command_id=u16, code=st.sampled_from(list(fr.CommandCode)),
                  reason=st.sampled_from(list(fr.NackCode)), detail=st.text(max_size=20)),
        st.builds(fr.Annotation, seq=u32, values=st.lists(st.floats(width=32, allow_nan=False), max_size=8)
                  .map(tuple)),
        st.builds(fr.Status, nonce=u32, device_id=st.text(max_size=16), firmware_version=st.text(max_size=8),
                  pixel_count=st.integers(1, 4096), wavelength_coeffs_nm=st.lists(
                      st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=4).map(tuple),
                  integration_time_us=u32, detector_temp_c=st.floats(width=32),
                  signal=st.sampled_from(list(fr.SignalKind)), boot_id=u32,
                  axis_unit=st.sampled_from(list(fr.AxisUnit))),
    )
    return st.one_of(spectrum(), simple)


def decoder_strategy() -> Any:
    """Streams of valid frames, mutated frames and garbage, cut into arbitrary chunks."""
    from hypothesis import strategies as st

    from firmware_bridge.codec import encode
    from firmware_bridge.frames import Hello

    decoder_check(([encode(Hello(nonce=1))], [3]))  # warm-up: imports happen before the deadline applies

    def encoded(frame: Any) -> bytes:
        try:
            return encode(frame)
        except Exception:  # strategy side: a frame the encoder refuses becomes garbage instead
            return b"\x01\x02\x03\x00"

    flips = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4)
    piece = st.one_of(
        _frames_strategy().map(encoded),
        st.tuples(_frames_strategy().map(encoded), flips, st.none() | st.integers(0, 1 << 20))
        .map(lambda t: mutate(*t)),
        st.binary(max_size=512),
        st.just(b"\x00"),
        st.binary(min_size=1, max_size=64).map(lambda b: b.replace(b"\x00", b"\x01") * 200),  # oversize runs
    )
    return st.tuples(st.lists(piece, max_size=12), st.lists(st.integers(1, 4096), min_size=1, max_size=16))


def decoder_check(example: Any) -> str:
    from firmware_bridge.codec import FrameDecoder, decode_frame
    from firmware_bridge.codec.decoding import max_encoded_bytes
    from firmware_bridge.errors import BridgeError

    pieces, cuts = example
    stream = b"".join(pieces)
    decoder = FrameDecoder()
    pos, i, n_frames = 0, 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        n_frames += len(decoder.feed(stream[pos:pos + step]))
        pos += step
        i += 1
    s = decoder.stats
    assert s.frames_ok == n_frames, (s, n_frames)
    assert s.bytes_fed == len(stream)
    assert s.bytes_fed == s.bytes_ok + s.bytes_skipped + s.empty_frames + s.bytes_pending, s
    tail = stream[stream.rfind(b"\x00") + 1:]  # the frame still coming: 11,309 bytes at most, or 4 MiB for a LINE
    assert s.bytes_pending <= max_encoded_bytes(tail) + 1, s
    outcome = "ok"
    for body in stream.split(b"\x00")[:4]:  # the one-frame entry point on the same bytes
        try:
            decode_frame(body)
        except BridgeError as exc:
            outcome = type(exc).__name__
    return outcome


def bridge_errors() -> tuple[type[BaseException], ...]:
    from firmware_bridge.errors import BridgeError

    return (BridgeError,)


# ------------------------------------------------------------------------------------------------ adapters
def c12880_strategy() -> Any:
    from hypothesis import strategies as st

    c12880_check(([b"1,2,3\n"], 3, False, [2]))  # warm-up: imports happen before the deadline applies

    number = st.one_of(st.integers(-5, 1100).map(str), st.sampled_from(["", "-", "1e3", "nan", "0x10", "\t"]),
                       st.text(max_size=4))
    line = st.lists(number, max_size=300).map(lambda xs: ",".join(xs))
    sep = st.sampled_from(["\n", "\r\n", "\r", "", "\x00"])
    text_piece = st.tuples(line, sep).map(lambda t: (t[0] + t[1]).encode("utf-8", "surrogatepass"))
    piece = st.one_of(text_piece, st.binary(max_size=256))
    return st.tuples(st.lists(piece, max_size=8), st.integers(1, 300), st.booleans(),
                     st.lists(st.integers(1, 2048), min_size=1, max_size=8))


def c12880_check(example: Any) -> str:
    from firmware_bridge.adapters import C12880Adapter
    from firmware_bridge.errors import AdapterError

    pieces, pixels, strict, cuts = example
    stream = b"".join(pieces)
    adapter = C12880Adapter(pixel_count=pixels, strict=strict)
    outcome = "ok"
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        try:
            for frame in adapter.feed(stream[pos:pos + step]):
                assert len(frame.counts) == pixels
        except AdapterError as exc:
            assert strict, "a non-strict adapter must count, not raise"
            outcome = type(exc).__name__
            adapter.reset()
        pos += step
        i += 1
    for line in stream.splitlines()[:3]:
        try:
            assert len(adapter.parse_line(line).counts) == pixels
        except AdapterError as exc:
            outcome = type(exc).__name__
    return outcome


def as7265x_strategy() -> Any:
    from hypothesis import strategies as st

    as7265x_check((["spectrum"], [b"1,2 OK\r\n"], False, [3]))  # warm-up before the deadline applies

    value = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10, 10**6).map(str),
                      st.text(max_size=3))
    cdata = st.lists(value, max_size=20).map(lambda xs: ",".join(xs) + " OK")
    reply = st.one_of(cdata, st.sampled_from(["OK", "ERROR", "ERROR: bad", "", "AT", "OK OK"]), st.text(max_size=40))
    sep = st.sampled_from(["\r\n", "\n", "\r", ""])
    piece = st.one_of(st.tuples(reply, sep).map(lambda t: (t[0] + t[1]).encode("utf-8", "surrogatepass")),
                      st.binary(max_size=128))
    requests = st.lists(st.sampled_from(["spectrum", "inttime", "gain"]), max_size=6)
    return st.tuples(requests, st.lists(piece, max_size=10), st.booleans(),
                     st.lists(st.integers(1, 512), min_size=1, max_size=8))


def as7265x_check(example: Any) -> str:
    from firmware_bridge.adapters import AS7265xAdapter
    from firmware_bridge.errors import AdapterError

    requests, pieces, strict, cuts = example
    adapter = AS7265xAdapter(strict=strict)
    for r in requests:  # commands in flight, so replies are matched against pending requests
        if r == "spectrum":
            adapter.request_spectrum()
        elif r == "inttime":
            adapter.set_integration_time(100_000)
        else:
            adapter.set_gain(2)
    stream = b"".join(pieces)
    outcome = "ok"
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        try:
            adapter.feed(stream[pos:pos + step])
        except AdapterError as exc:
            assert strict, "a non-strict adapter must count, not raise"
            outcome = type(exc).__name__
        pos += step
        i += 1
    for line in stream.split(b"\r\n")[:3]:
        try:
            values = adapter.parse_cdata(line)
            assert values.shape == (18,)
        except AdapterError as exc:
            outcome = type(exc).__name__
    return outcome
