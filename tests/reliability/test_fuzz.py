"""Hypothesis fuzzing of every parser that reads untrusted bytes: the frame decoder, the C12880 and AS7265x
adapters, the MQTT command parser and the bundle reader.

The targets live in :mod:`benchmarks.fuzz` (shared with ``spectro-bench fuzz``, the dedicated 100,000-example
run). Here each runs ``$SPECTROLITE_FUZZ_EXAMPLES`` examples (default 300): only the package's own exceptions may
escape, no example may hang past the Hypothesis deadline, and no example may allocate more than the traced-memory
bound.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import fuzz
from benchmarks.fuzz import bundle as fuzz_bundle
from benchmarks.fuzz import commands as fuzz_commands
from benchmarks.fuzz.target import mutate

EXAMPLES = fuzz.examples_from_env()


def _run(name: str) -> None:
    """Every example traced for memory; the same settings as ``spectro-bench fuzz`` otherwise."""
    result = fuzz.run_target(fuzz.TARGETS[name], EXAMPLES, memory_every=1)
    assert result["examples"] > 0


@pytest.mark.parametrize("name", ["decoder", "c12880", "as7265x", "commands"])
def test_parser_survives_arbitrary_input(name: str) -> None:
    _run(name)


@pytest.mark.slow
def test_bundle_reader_refuses_every_mutation() -> None:
    """Every changed member byte and every truncation of a real signed bundle is refused with a BundleError."""
    _run("bundle")
    outcomes = fuzz.TARGETS["bundle"].outcomes
    assert set(outcomes) <= {"ok-unchanged", "BundleError"}, outcomes


def test_mutation_helper() -> None:
    assert mutate(b"\x00\x00\x00", [(4, 0xFF)], None) == b"\x00\xff\x00"
    assert mutate(b"abcdef", [], 3) == b"abc"
    assert mutate(b"", [(1, 1)], 2) == b""


def test_a_real_signed_bundle_passes_the_bundle_check() -> None:
    """The seed is good: the unmutated bundle loads with its key (so refusals above are due to the mutations)."""
    raw, _ = fuzz_bundle.seed_bundle()
    fuzz_bundle.bundle_strategy()
    assert fuzz_bundle.bundle_check((("anywhere", ([], None)), True)) == "ok-unchanged"
    assert raw == fuzz_bundle.SEED_BUNDLE.read_bytes()


def test_bundle_memory_bound_tracks_the_reader_buffer() -> None:
    from edge.bundle import MAX_BUNDLE_BYTES

    assert fuzz_bundle.BUNDLE_READ_BUFFER_BYTES == MAX_BUNDLE_BYTES + 1


def test_command_path_with_a_lone_surrogate_is_refused_with_a_command_error() -> None:
    # Found by spectro-bench fuzz: a lone surrogate used to escape as a bare UnicodeEncodeError.
    from edge.errors import CommandError

    body = {"schema_version": 1, "command": "reload_bundle", "device_id": fuzz_commands.DEVICE_ID,
            "issued_at_unix_s": fuzz_commands.NOW_S, "nonce": "0123456789abcdef", "args": {"path": "a\udd81"}}
    parser, _ = fuzz_commands.command_parser(False)
    with pytest.raises(CommandError, match="valid UTF-8"):
        parser.parse("reload_bundle", json.dumps(body).encode())


def test_envelope_body_with_a_lone_surrogate_is_refused_with_a_command_error() -> None:
    # Found by spectro-bench fuzz: the body was UTF-8 encoded, before authentication, without a guard.
    from edge.errors import CommandError

    parser, _ = fuzz_commands.command_parser(True)
    with pytest.raises(CommandError, match="valid UTF-8"):
        parser.parse("capture_dark", b'{"body": "\\ud997", "hmac_sha256": "' + b"0" * 64 + b'"}')
