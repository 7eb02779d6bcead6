"""Fuzz target of the bundle reader (:func:`edge.bundle.load_bundle`): a real signed bundle with bytes changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.fuzz.target import mutate

#: Up-front read buffer of the bundle reader: ``edge.bundle.MAX_BUNDLE_BYTES + 1`` (member caps + 1 MiB + 1 byte).
BUNDLE_READ_BUFFER_BYTES = 215 * 1024 * 1024 + 1024 + 1

REPO = Path(__file__).resolve().parents[2]
#: A real signed bundle kept in the tests' data (built by tests/data/bundles/make_bundles.py).
SEED_BUNDLE = REPO / "tests" / "data" / "bundles" / "v1_counts_two_targets.spectrolite"
SEED_PUBLIC_KEY = REPO / "tests" / "data" / "bundles" / "v1_signing.pub.pem"


# ------------------------------------------------------------------------------------------------ bundle reader
_BUNDLE_CACHE: dict[str, Any] = {}


def seed_bundle() -> tuple[bytes, dict[str, tuple[int, int]]]:
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
    return _BUNDLE_CACHE["seed"]  # type: ignore[no-any-return]  # the cache holds Any; this key holds the seed


def seed_members() -> dict[str, bytes]:
    if "members" not in _BUNDLE_CACHE:
        from edge.bundle import load_bundle, read_members

        load_bundle(SEED_BUNDLE, public_key=SEED_PUBLIC_KEY)  # warm-up: imports and the runtime's first load
        _BUNDLE_CACHE["members"] = read_members(SEED_BUNDLE)[0]
    return _BUNDLE_CACHE["members"]  # type: ignore[no-any-return]  # the cache holds Any; this key holds the members


def bundle_strategy() -> Any:
    from hypothesis import strategies as st

    seed_members()
    raw, spans = seed_bundle()
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
    raw, spans = seed_bundle()
    if kind == "member":
        name, index, mask = arg
        start, size = spans[name]
        data = mutate(raw, [(start + index % max(size, 1), mask)], None)
    elif kind == "anywhere":
        data = mutate(raw, *arg)
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
    assert members == seed_members(), f"bundle with {kind} {arg!r} was accepted with changed member content"
    return "ok-unchanged"


def bundle_errors() -> tuple[type[BaseException], ...]:
    from edge.errors import BundleError

    return (BundleError,)
