"""Fuzz targets of the untrusted-input parsers (frame decoder, C12880 and AS7265x adapters, command parser, bundle
reader) and ``spectro-bench fuzz``, the dedicated long run of each under Hypothesis.

Why Hypothesis rather than atheris: Hypothesis is already a test dependency, runs on every platform CI uses, and
its structured strategies (valid frames with a few bytes flipped, signed commands with one field changed, real
bundles with one byte changed) reach the deep checks far more often than byte-level mutation of random input
would; atheris needs a clang-built CPython extension that the target devices do not have.

Each target is a :class:`FuzzTarget`: a Hypothesis strategy factory, a check function that feeds one example to
the parser and asserts the parser's documented contract (which exceptions may escape, what the counters say), and
the tuple of exception types the package promises (anything else is a bug). ``tests/reliability/test_fuzz.py``
runs the same targets with a small example count in CI; this module runs them with ``--examples 100000``.
Heavy imports (hypothesis, the packages under test) happen inside functions so that ``spectro-bench`` stays fast
to start.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Environment variable giving the number of examples per target (CI keeps it small).
EXAMPLES_ENV = "SPECTROLITE_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 300
#: Hypothesis deadline per example: far above any normal parse (milliseconds), it only catches hangs.
HANG_DEADLINE_MS = 5_000
#: Largest traced allocation peak allowed while parsing one example (bytes): inputs are at most ~100 kB, so a
#: parser that needs more than this is amplifying its input (decompression bomb, unbounded buffer).
MEMORY_PEAK_LIMIT_BYTES = 64 * 1024 * 1024
#: Up-front read buffer of the bundle reader: ``edge.bundle.MAX_BUNDLE_BYTES + 1`` (member caps + 1 MiB + 1 byte).
BUNDLE_READ_BUFFER_BYTES = 119 * 1024 * 1024 + 1024 + 1
#: The long run traces memory on every this many-th example (CI traces every example).
MEMORY_SAMPLE_EVERY = 10
#: Seconds between two partial JSON writes of a long run.
PROGRESS_EVERY_S = 30.0
#: Largest byte string the byte-level strategies produce.
MAX_INPUT_BYTES = 8192

REPO = Path(__file__).resolve().parents[1]
#: A real signed bundle kept in the tests' data (built by tests/data/bundles/make_bundles.py).
SEED_BUNDLE = REPO / "tests" / "data" / "bundles" / "v1_counts_two_targets.spectrolite"
SEED_PUBLIC_KEY = REPO / "tests" / "data" / "bundles" / "v1_signing.pub.pem"

#: Outcome label of the known lone-surrogate bug of edge.commands (see commands_check).
HMAC_KEY = b"fuzz-key-0123456789abcdef-0123456789"
DEVICE_ID = "fuzz-01"
NOW_S = 1_800_000_000.0


@dataclass
class FuzzTarget:
    """One parser under fuzz.

    Attributes
    ----------
    name : str
        Short name (``decoder``, ``c12880``, ``as7265x``, ``commands``, ``bundle``).
    strategy : callable
        ``strategy() -> hypothesis.strategies.SearchStrategy`` of one example.
    check : callable
        ``check(example) -> str`` parses the example, asserts the contract and returns an outcome label
        (``"ok"`` or the name of the package exception raised) for the statistics.
    allowed : callable
        ``allowed() -> tuple[type[BaseException], ...]``: the package's own exceptions the parser may raise.
    memory_limit_bytes : int
        Largest traced allocation peak of one example, bytes.
    """

    name: str
    strategy: Callable[[], Any]
    check: Callable[[Any], str]
    allowed: Callable[[], tuple[type[BaseException], ...]]
    memory_limit_bytes: int = MEMORY_PEAK_LIMIT_BYTES
    outcomes: dict[str, int] = field(default_factory=dict)


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    """Apply XOR byte flips ``(index, mask)`` (indices modulo the length) and an optional truncation."""
    buf = bytearray(data)
    if buf:
        for index, mask in flips:
            buf[index % len(buf)] ^= mask or 1
    if cut is not None and buf:
        del buf[cut % len(buf):]
    return bytes(buf)


# ------------------------------------------------------------------------------------------------ frame decoder
def _frames_strategy() -> Any:
    import numpy as np
    from hypothesis import strategies as st

    from firmware_bridge.frames import (
        Ack,
        Annotation,
        AxisUnit,
        Command,
        CommandCode,
        Dark,
        Hello,
        Nack,
        NackCode,
        PixelFormat,
        Reference,
        SignalKind,
        Spectrum,
        Status,
    )

    u16 = st.integers(0, 0xFFFF)
    u32 = st.integers(0, 0xFFFFFFFF)

    @st.composite
    def spectrum(draw: Any) -> Any:
        cls = draw(st.sampled_from([Spectrum, Dark, Reference]))
        fmt = draw(st.sampled_from(list(PixelFormat)))
        n = draw(st.integers(1, 300))
        dtype = {PixelFormat.UINT16: "<u2", PixelFormat.UINT32: "<u4", PixelFormat.FLOAT32: "<f4"}[fmt]
        size = n * np.dtype(dtype).itemsize  # raw bytes: fast to draw, and NaN/inf/denormals come for free
        counts = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype=dtype).copy()
        return cls(seq=draw(u32), timestamp_us=draw(st.integers(0, 2**63 - 1)),
                   integration_time_us=draw(u32), averages=draw(st.integers(1, 0xFFFF)),
                   saturated_count=draw(st.integers(0, n)), counts=counts)

    simple = st.one_of(
        st.builds(Hello, nonce=u32),
        st.builds(Command, command_id=u16, code=st.sampled_from(list(CommandCode)), value=u32),
        st.builds(Ack, command_id=u16, code=st.sampled_from(list(CommandCode))),
        st.builds(Nack, command_id=u16, code=st.sampled_from(list(CommandCode)),
                  reason=st.sampled_from(list(NackCode)), detail=st.text(max_size=20)),
        st.builds(Annotation, seq=u32, values=st.lists(st.floats(width=32, allow_nan=False), max_size=8)
                  .map(tuple)),
        st.builds(Status, nonce=u32, device_id=st.text(max_size=16), firmware_version=st.text(max_size=8),
                  pixel_count=st.integers(1, 4096), wavelength_coeffs_nm=st.lists(
                      st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=4).map(tuple),
                  integration_time_us=u32, detector_temp_c=st.floats(width=32),
                  signal=st.sampled_from(list(SignalKind)), boot_id=u32,
                  axis_unit=st.sampled_from(list(AxisUnit))),
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
        except Exception:  # noqa: BLE001 - strategy side: a frame the encoder refuses becomes garbage instead
            return b"\x01\x02\x03\x00"

    flips = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4)
    piece = st.one_of(
        _frames_strategy().map(encoded),
        st.tuples(_frames_strategy().map(encoded), flips, st.none() | st.integers(0, 1 << 20))
        .map(lambda t: _mutate(*t)),
        st.binary(max_size=512),
        st.just(b"\x00"),
        st.binary(min_size=1, max_size=64).map(lambda b: b.replace(b"\x00", b"\x01") * 200),  # oversize runs
    )
    return st.tuples(st.lists(piece, max_size=12), st.lists(st.integers(1, 4096), min_size=1, max_size=16))


def decoder_check(example: Any) -> str:
    from firmware_bridge.codec import MAX_ENCODED_BYTES, FrameDecoder, decode_frame
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
    assert s.bytes_pending <= MAX_ENCODED_BYTES + 1, s
    outcome = "ok"
    for body in stream.split(b"\x00")[:4]:  # the one-frame entry point on the same bytes
        try:
            decode_frame(body)
        except BridgeError as exc:
            outcome = type(exc).__name__
    return outcome


def _bridge_errors() -> tuple[type[BaseException], ...]:
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


# ------------------------------------------------------------------------------------------------ commands
_PARSERS: dict[str, Any] = {}


def _command_parser(require_auth: bool) -> Any:
    """One parser per auth mode, kept across examples like the daemon keeps it (the nonce memory is bounded)."""
    key = f"auth={require_auth}"
    if key not in _PARSERS:
        import tempfile

        from edge.commands import CommandParser
        from edge.config import CommandsConfig

        tmp = Path(tempfile.mkdtemp(prefix="spectrolite-fuzz-"))
        (tmp / "bundles").mkdir()
        (tmp / "bundles" / "model.spectrolite").write_bytes(b"x")
        (tmp / "hmac.key").write_bytes(HMAC_KEY)
        cfg = CommandsConfig(require_auth=require_auth, hmac_key_path=tmp / "hmac.key",
                             allowed_dirs=(tmp / "bundles",))
        _PARSERS[key] = (CommandParser(cfg, device_id=DEVICE_ID, clock=lambda: NOW_S), tmp)
    return _PARSERS[key]


def commands_strategy() -> Any:
    from hypothesis import strategies as st

    for auth in (False, True):  # warm-up: imports and the parsers exist before the deadline applies
        commands_check(("capture_dark", b"{}", auth, 1))

    names = st.sampled_from(["reload_bundle", "capture_dark", "capture_reference", "set_integration_time",
                             "reboot", "", "../x"])
    json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.text(max_size=10), c, max_size=4), max_leaves=12)
    path = st.one_of(st.sampled_from(["model.spectrolite", "../../etc/passwd", "/etc/passwd", "", "a" * 2000,
                                      "bundles/../../x", "\x00", "~/x", "a\udd81"]), st.text(max_size=40))
    args = st.one_of(
        st.fixed_dictionaries({}, optional={"path": path, "average_frames": json_value,
                                            "integration_time_us": st.one_of(st.integers(), json_value)}),
        st.dictionaries(st.text(max_size=12), json_value, max_size=3),
    )
    body = st.fixed_dictionaries(
        {"schema_version": st.one_of(st.just(1), json_value), "command": names,
         "device_id": st.one_of(st.just(DEVICE_ID), st.text(max_size=10)),
         "issued_at_unix_s": st.one_of(st.just(NOW_S), st.floats(), json_value),
         "nonce": st.one_of(st.text("abcdef0123456789", min_size=8, max_size=32), json_value),
         "args": args},
        optional={"request_id": st.text(max_size=70), "extra": json_value},
    )
    # how the body travels: plain, signed with the right key, signed with a wrong key, or a byte-mangled envelope
    how = st.sampled_from(["plain", "signed", "badkey", "mangled"])
    raw = st.binary(max_size=MAX_INPUT_BYTES)
    flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3)
    return st.tuples(names, st.one_of(st.tuples(body, how, flips), raw), st.booleans(), st.integers(1, 3))


def commands_check(example: Any) -> str:
    from edge.commands import RemoteCommand, sign_command
    from edge.errors import CommandError

    name, content, require_auth, repeat = example
    parser, tmp = _command_parser(require_auth)
    if isinstance(content, bytes):
        payload = content
    else:
        body, how, flips = content
        text = json.dumps(body, separators=(",", ":"))  # NaN/inf stay in: the parser must refuse them
        if how == "plain":
            payload = text.encode()
        elif how == "signed":
            payload = sign_command(text, HMAC_KEY)
        elif how == "badkey":
            payload = sign_command(text, HMAC_KEY[::-1])
        else:
            payload = _mutate(sign_command(text, HMAC_KEY), flips, None)
    outcome = "ok"
    for _ in range(repeat):  # a replay of an accepted signed command must be refused
        try:
            cmd = parser.parse(name, payload)
        except CommandError as exc:
            outcome = type(exc).__name__
            continue
        assert isinstance(cmd, RemoteCommand)
        path = getattr(cmd.args, "path", None)
        if path is not None:  # path confinement: whatever got through lies inside the allowed directory
            resolved = Path(os.path.realpath(path))
            assert resolved.is_relative_to(Path(os.path.realpath(tmp / "bundles"))), path
        if require_auth:
            assert cmd.authenticated
    parser.peek_request_id(payload)  # best effort, must not raise
    return outcome


def _command_errors() -> tuple[type[BaseException], ...]:
    from edge.errors import CommandError

    return (CommandError,)


# ------------------------------------------------------------------------------------------------ bundle reader
_BUNDLE_CACHE: dict[str, Any] = {}


def _seed_bundle() -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The seed bundle's bytes and, per member, the (offset, size) of its stored data in the zip."""
    if "seed" not in _BUNDLE_CACHE:
        import zipfile

        raw = SEED_BUNDLE.read_bytes()
        spans: dict[str, tuple[int, int]] = {}
        with zipfile.ZipFile(SEED_BUNDLE) as zf:
            for info in zf.infolist():
                # local header: 30 bytes + name + extra (read from the local header itself)
                off = info.header_offset
                name_len = int.from_bytes(raw[off + 26:off + 28], "little")
                extra_len = int.from_bytes(raw[off + 28:off + 30], "little")
                start = off + 30 + name_len + extra_len
                spans[info.filename] = (start, info.compress_size)
        _BUNDLE_CACHE["seed"] = (raw, spans)
    return _BUNDLE_CACHE["seed"]  # type: ignore[no-any-return]


def _seed_members() -> dict[str, bytes]:
    if "members" not in _BUNDLE_CACHE:
        from edge.bundle import load_bundle, read_members

        load_bundle(SEED_BUNDLE, public_key=SEED_PUBLIC_KEY)  # warm-up: imports and the runtime's first load
        _BUNDLE_CACHE["members"] = read_members(SEED_BUNDLE)[0]
    return _BUNDLE_CACHE["members"]  # type: ignore[no-any-return]


def bundle_strategy() -> Any:
    from hypothesis import strategies as st

    _seed_members()
    raw, spans = _seed_bundle()
    members = sorted(spans)
    member_flip = st.tuples(st.sampled_from(members), st.integers(0, 1 << 24), st.integers(1, 255)).map(
        lambda t: ("member", t))
    anywhere = st.tuples(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), min_size=1,
                                  max_size=4), st.none() | st.integers(0, len(raw))).map(lambda t: ("anywhere", t))
    truncated = st.integers(0, len(raw) - 1).map(lambda n: ("truncate", n))
    garbage = st.binary(max_size=4096).map(lambda b: ("garbage", b))
    return st.tuples(st.one_of(member_flip, anywhere, truncated, garbage), st.booleans())


def bundle_check(example: Any) -> str:
    import tempfile

    from edge.bundle import load_bundle, read_members
    from edge.errors import BundleError

    (kind, arg), with_key = example
    raw, spans = _seed_bundle()
    if kind == "member":
        name, index, mask = arg
        start, size = spans[name]
        data = _mutate(raw, [(start + index % max(size, 1), mask)], None)
    elif kind == "anywhere":
        data = _mutate(raw, *arg)
    elif kind == "truncate":
        data = raw[:arg]
    else:
        data = arg
    if "dir" not in _BUNDLE_CACHE:
        _BUNDLE_CACHE["dir"] = Path(tempfile.mkdtemp(prefix="spectrolite-fuzz-bundle-"))
    path = _BUNDLE_CACHE["dir"] / "candidate.spectrolite"
    path.write_bytes(data)
    try:
        load_bundle(path, public_key=SEED_PUBLIC_KEY if with_key else None)
    except BundleError as exc:
        return type(exc).__name__
    if kind == "truncate":  # the central directory is at the end: a truncated bundle can never pass
        raise AssertionError(f"bundle truncated to {arg} bytes was accepted")
    # an accepted mutation must have left every member's content unchanged (e.g. a flipped deflate BFINAL bit
    # or a byte of the zip's own bookkeeping that the reader does not need): what serves is the signed content
    members, _ = read_members(path)
    assert members == _seed_members(), f"bundle with {kind} {arg!r} was accepted with changed member content"
    return "ok-unchanged"


def _bundle_errors() -> tuple[type[BaseException], ...]:
    from edge.errors import BundleError

    return (BundleError,)


TARGETS: dict[str, FuzzTarget] = {
    "decoder": FuzzTarget("decoder", decoder_strategy, decoder_check, _bridge_errors),
    "c12880": FuzzTarget("c12880", c12880_strategy, c12880_check, _bridge_errors),
    "as7265x": FuzzTarget("as7265x", as7265x_strategy, as7265x_check, _bridge_errors),
    "commands": FuzzTarget("commands", commands_strategy, commands_check, _command_errors),
    # edge.bundle.read_members reads with ``fh.read(MAX_BUNDLE_BYTES + 1)``, which allocates the whole
    # 123 MiB buffer up front whatever the file size (then shrinks it); the bound allows that one buffer.
    "bundle": FuzzTarget("bundle", bundle_strategy, bundle_check, _bundle_errors,
                         memory_limit_bytes=BUNDLE_READ_BUFFER_BYTES + MEMORY_PEAK_LIMIT_BYTES),
}


def examples_from_env(default: int = DEFAULT_EXAMPLES) -> int:
    """Examples per target from ``$SPECTROLITE_FUZZ_EXAMPLES`` (default 300)."""
    raw = os.environ.get(EXAMPLES_ENV, "")
    return int(raw) if raw.strip() else default


def guarded(target: FuzzTarget, *, memory_every: int = 1) -> Callable[[Any], None]:
    """The property run per example: the check, only the package's exceptions tolerated, memory bounded.

    The check function itself lets a package exception escape only where the contract allows it (it catches
    them where they are expected); any other exception, an assertion failure, or a traced allocation peak above
    ``target.memory_limit_bytes`` fails the example. Every ``memory_every``-th example runs under
    :mod:`tracemalloc` (tracing triples the cost of an example, so the long run samples).
    """
    count = [0]

    def prop(example: Any) -> None:
        count[0] += 1
        if count[0] % memory_every:
            outcome = target.check(example)
        else:
            tracemalloc.start()
            try:
                outcome = target.check(example)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak <= target.memory_limit_bytes, f"{target.name}: {peak} bytes traced at peak"
        target.outcomes[outcome] = target.outcomes.get(outcome, 0) + 1

    return prop


def run_target(target: FuzzTarget, examples: int, *, seed: int | None = None,
               memory_every: int = 1) -> dict[str, Any]:
    """Run one target for ``examples`` Hypothesis examples; return counts and time (raises on a failure)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    strategy = target.strategy()  # built (and warmed up) before the clock and the deadline start
    target.outcomes = {}
    prop = guarded(target, memory_every=memory_every)
    test = settings(max_examples=examples, deadline=HANG_DEADLINE_MS, database=None, derandomize=seed is None,
                    suppress_health_check=list(HealthCheck), print_blob=True)(given(strategy)(prop))
    if seed is not None:
        test = hseed(seed)(test)
    t0 = time.perf_counter()
    test()
    elapsed = time.perf_counter() - t0
    n = sum(target.outcomes.values())
    return {"examples": n, "seconds": elapsed, "examples_per_s": n / elapsed if elapsed else 0.0,
            "memory_traced_every": memory_every, "outcomes": dict(sorted(target.outcomes.items()))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench fuzz``."""
    parser.add_argument("--examples", type=int, default=None,
                        help=f"examples per target (default ${EXAMPLES_ENV} or {DEFAULT_EXAMPLES})")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS),
                        help="targets to run (default all)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default derandomized)")
    parser.add_argument("--memory-every", type=int, default=MEMORY_SAMPLE_EVERY,
                        help=f"trace memory on every N-th example (default {MEMORY_SAMPLE_EVERY})")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")


def run(args: argparse.Namespace) -> int:
    """Run the chosen targets; print a table and write JSON ``{targets: {name: {examples, seconds, ...}}}``."""
    import threading

    examples = args.examples if args.examples is not None else examples_from_env()
    results: dict[str, Any] = {}
    failed: list[str] = []
    t_start = time.perf_counter()
    current: list[str] = []
    done = threading.Event()

    def write(partial: bool) -> None:
        if args.json is None:
            return
        snapshot = dict(results)
        if partial and current:  # the target running now, so a run cut short still leaves its figures
            outcomes = dict(TARGETS[current[0]].outcomes)
            snapshot[current[0]] = {"examples": sum(outcomes.values()), "running": True,
                                    "seconds": time.perf_counter() - t_start, "outcomes": outcomes}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps({"benchmark": "fuzz", "examples_requested": examples,
                                   "hang_deadline_ms": HANG_DEADLINE_MS,
                                   "memory_peak_limit_bytes": MEMORY_PEAK_LIMIT_BYTES,
                                   "targets": snapshot, "failed": failed}, indent=2) + "\n")
        tmp.replace(args.json)

    def progress() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            write(partial=True)

    reporter = threading.Thread(target=progress, name="fuzz-progress", daemon=True)
    reporter.start()
    print(f"{'target':<10} {'examples':>9} {'seconds':>9} {'ex/s':>8}  outcomes")
    for name in args.targets:
        current[:] = [name]
        t_start = time.perf_counter()
        try:
            r = run_target(TARGETS[name], examples, seed=args.seed, memory_every=args.memory_every)
        except Exception as exc:  # noqa: BLE001 - a failing target is reported, the others still run
            failed.append(name)
            r = {"examples": sum(TARGETS[name].outcomes.values()), "failure": f"{type(exc).__name__}: {exc}"[:4000]}
            print(f"{name:<10} FAILED {r['failure'][:300]}")
        else:
            top = ", ".join(f"{k}={v}" for k, v in sorted(r["outcomes"].items(), key=lambda kv: -kv[1])[:4])
            print(f"{name:<10} {r['examples']:>9} {r['seconds']:>9.1f} {r['examples_per_s']:>8.1f}  {top}")
        results[name] = r
        current.clear()
        write(partial=False)
    done.set()
    return 1 if failed else 0
