"""Tests of edge.commands: strict schema, size limit, HMAC envelope, replay protection and path confinement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.commands import (
    MAX_TAG_FRAMES,
    CaptureArgs,
    CommandName,
    CommandParser,
    ReloadBundleArgs,
    SetIntegrationTimeArgs,
    TagSampleArgs,
    make_command,
    sign_command,
)
from edge.config import CommandsConfig
from edge.errors import CommandError, StaleCommandError

KEY = b"0123456789abcdef0123456789abcdef"
NOW_S = 1_800_000_000.0
DEVICE = "nir-01"


class Clock:
    def __init__(self) -> None:
        self.now = NOW_S

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    d = tmp_path / "bundles"
    d.mkdir()
    (d / "good.bundle").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("outside")
    return d


def _parser(tmp_path: Path, bundles: Path, *, require_auth: bool = False, key: bool = True,
            clock: Clock | None = None) -> CommandParser:
    key_path = None
    if key:
        key_path = tmp_path / "hmac.key"
        key_path.write_bytes(KEY + b"\n")
    cfg = CommandsConfig(require_auth=require_auth, hmac_key_path=key_path, allowed_dirs=(bundles,))
    return CommandParser(cfg, device_id=DEVICE, clock=clock or Clock())


def _body(name: str, args: dict | None = None, **kw: object) -> dict:
    kw.setdefault("issued_at_unix_s", NOW_S)
    return make_command(name, args, device_id=DEVICE, **kw)  # type: ignore[arg-type]  # **kw of object: make_command's keyword arguments


def _raw(body: dict) -> bytes:
    return json.dumps(body).encode()


def test_each_command_parses_to_typed_args(tmp_path: Path, bundles: Path) -> None:
    p = _parser(tmp_path, bundles)
    cmd = p.parse("capture_dark", _raw(_body("capture_dark", {"average_frames": 4}, request_id="r-1")))
    assert cmd.name is CommandName.CAPTURE_DARK and cmd.args == CaptureArgs(4)
    assert cmd.request_id == "r-1" and cmd.authenticated is False
    assert p.parse("capture_reference", _raw(_body("capture_reference"))).args == CaptureArgs(16)
    assert p.parse("set_integration_time", _raw(_body("set_integration_time", {"integration_time_us": 5000}))
                   ).args == SetIntegrationTimeArgs(5000)
    assert p.parse("reload_bundle", _raw(_body("reload_bundle"))).args == ReloadBundleArgs(None)
    got = p.parse("reload_bundle", _raw(_body("reload_bundle", {"path": "good.bundle"}))).args
    assert got == ReloadBundleArgs(Path(os.path.realpath(bundles / "good.bundle")))


def test_values_beyond_float_range_or_with_a_trailing_newline_are_refused_not_raised(tmp_path: Path,
                                                                                     bundles: Path) -> None:
    """JSON integers have no bound: one beyond float range crashed the parser with OverflowError instead of a
    CommandError; and a request id with a trailing newline passed its pattern (both failed before the fix)."""
    p = _parser(tmp_path, bundles)
    with pytest.raises(CommandError, match=r"issued_at_unix_s: expected a Unix time in seconds, got 1000"):
        p.parse("capture_dark", _raw(_body("capture_dark", issued_at_unix_s=10 ** 400)))
    with pytest.raises(CommandError, match=r"reference_value\.args\.values\.a: expected a number, got 1000"):
        p.parse("reference_value", _raw(_body("reference_value", {"seq": 1, "values": {"a": 10 ** 400}})))
    with pytest.raises(CommandError, match=r"request_id: expected 1-64 characters"):
        p.parse("capture_dark", _raw(_body("capture_dark", request_id="ops-1\n")))


def test_tag_sample_parses_a_bounded_printable_sample_id_and_a_frame_count(tmp_path: Path, bundles: Path) -> None:
    p = _parser(tmp_path, bundles)
    cmd = p.parse("tag_sample", _raw(_body("tag_sample", {"sample_id": "LAB 2026/12-04#7", "frames": 3})))
    assert cmd.name is CommandName.TAG_SAMPLE and cmd.args == TagSampleArgs("LAB 2026/12-04#7", 3)
    assert p.parse("tag_sample", _raw(_body("tag_sample", {"sample_id": "x" * 64}))).args == TagSampleArgs("x" * 64, 1)
    for bad in ("", " LAB", "LAB ", "x" * 65, "caf\u00e9", "a\nb", 42, None):
        with pytest.raises(CommandError, match="tag_sample.args.sample_id: expected 1-64 printable ASCII"):
            p.parse("tag_sample", _raw(_body("tag_sample", {"sample_id": bad})))
    for frames in (0, MAX_TAG_FRAMES + 1, True, 1.5):
        with pytest.raises(CommandError, match=f"tag_sample.args.frames: expected an integer in 1..{MAX_TAG_FRAMES}"):
            p.parse("tag_sample", _raw(_body("tag_sample", {"sample_id": "S", "frames": frames})))
    with pytest.raises(CommandError, match="tag_sample.args.path: unknown argument"):
        p.parse("tag_sample", _raw(_body("tag_sample", {"sample_id": "S", "path": "/etc"})))


@pytest.mark.parametrize(
    ("name", "mutate", "fragment"),
    [
        ("shutdown", lambda b: None, "command: expected one of reload_bundle"),
        ("capture_dark", lambda b: b.update(command="capture_reference"), "capture_dark.command: expected"),
        ("capture_dark", lambda b: b.update(device_id="nir-02"), "capture_dark.device_id: expected 'nir-01'"),
        ("capture_dark", lambda b: b.update(schema_version=2), "capture_dark.schema_version: expected 1, got 2"),
        ("capture_dark", lambda b: b.update(shell="rm -rf /"), "capture_dark.shell: unknown field"),
        ("capture_dark", lambda b: b["args"].update(average_frames=0), "average_frames: expected an integer in 1..256"),
        ("capture_dark", lambda b: b["args"].update(average_frames=True), "average_frames: expected an integer"),
        ("capture_dark", lambda b: b["args"].update(average_frames=2.0), "average_frames: expected an integer"),
        ("capture_dark", lambda b: b["args"].update(frames=3), "capture_dark.args.frames: unknown argument"),
        ("capture_dark", lambda b: b.update(args=[1]), "capture_dark.args: expected an object, got list"),
        ("capture_dark", lambda b: b.update(request_id="a b"), "capture_dark.request_id: expected"),
        ("capture_dark", lambda b: b.update(nonce="short"), "capture_dark.nonce: expected 8-64"),
        ("set_integration_time", lambda b: None, "integration_time_us: required argument missing"),
        ("set_integration_time", lambda b: b["args"].update(integration_time_us=60_000_001),
         "integration_time_us: expected an integer in 1..60000000"),
        ("capture_dark", lambda b: b.update(issued_at_unix_s=NOW_S - 301), "issued_at_unix_s: expected within 300 s"),
        ("capture_dark", lambda b: b.update(issued_at_unix_s="now"), "issued_at_unix_s: expected a Unix time"),
    ],
)
def test_malformed_commands_are_refused_with_a_reason(tmp_path: Path, bundles: Path, name: str, mutate,  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
                                                       fragment: str) -> None:
    body = _body(name if name != "shutdown" else "capture_dark")
    mutate(body)
    with pytest.raises(CommandError) as err:
        _parser(tmp_path, bundles).parse(name, _raw(body))
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\xfe", "payload: expected a JSON object"),
        (b"[1, 2]", "payload: expected a JSON object, got list"),
        (b'{"a": 1, "a": 2}', "expected unique keys in a JSON object, got 'a' twice"),
        (b'{"x": NaN}', "expected finite numbers, got NaN"),
        (b"[" * 3000 + b"]" * 3000, "payload: expected at most 4096 bytes"),
        (b"[" * 2000 + b"]" * 2000, "nesting too deep"),
        (b" " * 5000, "payload: expected at most 4096 bytes, got 5000"),
    ],
)
def test_garbage_payloads_are_refused(tmp_path: Path, bundles: Path, raw: bytes, fragment: str) -> None:
    with pytest.raises(CommandError) as err:
        _parser(tmp_path, bundles).parse("capture_dark", raw)
    assert fragment in str(err.value)


def test_signed_command_is_accepted_and_marked_authenticated(tmp_path: Path, bundles: Path) -> None:
    p = _parser(tmp_path, bundles, require_auth=True)
    cmd = p.parse("capture_dark", sign_command(_body("capture_dark", request_id="r9"), KEY))
    assert cmd.authenticated and cmd.request_id == "r9" and cmd.issued_at_unix_s == NOW_S


def test_unsigned_command_is_refused_when_auth_is_required(tmp_path: Path, bundles: Path) -> None:
    with pytest.raises(CommandError, match="require_auth is true"):
        _parser(tmp_path, bundles, require_auth=True).parse("capture_dark", _raw(_body("capture_dark")))


@pytest.mark.parametrize("tamper", ["body", "mac", "key", "extra", "mac_format"])
def test_tampered_signatures_are_refused(tmp_path: Path, bundles: Path, tamper: str) -> None:
    p = _parser(tmp_path, bundles, require_auth=True)
    env = json.loads(sign_command(_body("capture_dark", {"average_frames": 2}),
                                  b"another key of 32 bytes........." if tamper == "key" else KEY))
    if tamper == "body":
        env["body"] = env["body"].replace('"average_frames":2', '"average_frames":200')
    elif tamper == "mac":
        env["hmac_sha256"] = ("0" if env["hmac_sha256"][0] != "0" else "1") + env["hmac_sha256"][1:]
    elif tamper == "extra":
        env["note"] = "hi"
    elif tamper == "mac_format":
        env["hmac_sha256"] = "zz"
    with pytest.raises(CommandError):
        p.parse("capture_dark", json.dumps(env).encode())


def test_signed_command_cannot_be_replayed_on_another_topic(tmp_path: Path, bundles: Path) -> None:
    p = _parser(tmp_path, bundles, require_auth=True)
    payload = sign_command(_body("capture_dark"), KEY)
    with pytest.raises(CommandError, match="capture_reference.command: expected"):
        p.parse("capture_reference", payload)


def test_replayed_nonce_and_stale_timestamp_are_refused(tmp_path: Path, bundles: Path) -> None:
    clock = Clock()
    p = _parser(tmp_path, bundles, require_auth=True, clock=clock)
    payload = sign_command(_body("capture_dark", nonce="nonce-0001"), KEY)
    p.parse("capture_dark", payload)
    with pytest.raises(CommandError, match="replay"):
        p.parse("capture_dark", payload)
    clock.now += 10_000  # long after: the nonce is forgotten but the timestamp is stale
    with pytest.raises(CommandError, match="stale or replayed"):
        p.parse("capture_dark", payload)
    # a refused (invalid) command does not burn its nonce
    bad = sign_command(_body("capture_dark", {"average_frames": 0}, nonce="nonce-0002",
                             issued_at_unix_s=clock.now), KEY)
    with pytest.raises(CommandError):
        p.parse("capture_dark", bad)
    p.parse("capture_dark", sign_command(_body("capture_dark", nonce="nonce-0002", issued_at_unix_s=clock.now), KEY))


def test_signed_command_without_a_configured_key(tmp_path: Path, bundles: Path) -> None:
    p = _parser(tmp_path, bundles, key=False)
    with pytest.raises(CommandError, match="no commands.hmac_key_path is configured"):
        p.parse("capture_dark", sign_command(_body("capture_dark"), KEY))


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd", "missing.bundle", "", "a\x00b", "x" * 2000])
def test_paths_are_confined_to_allowed_dirs(tmp_path: Path, bundles: Path, path: str) -> None:
    with pytest.raises(CommandError, match="reload_bundle.args.path: expected"):
        _parser(tmp_path, bundles).parse("reload_bundle", _raw(_body("reload_bundle", {"path": path})))


def test_symlink_out_of_the_allowed_dir_is_refused(tmp_path: Path, bundles: Path) -> None:
    (bundles / "escape.bundle").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(CommandError, match="expected a path inside"):
        _parser(tmp_path, bundles).parse("reload_bundle", _raw(_body("reload_bundle", {"path": "escape.bundle"})))


def test_peek_request_id_for_error_responses() -> None:
    assert CommandParser.peek_request_id(b'{"request_id": "r-5", "args": 7}') == "r-5"
    assert CommandParser.peek_request_id(sign_command({"request_id": "r-6"}, KEY)) == "r-6"
    assert CommandParser.peek_request_id(b"garbage") is None
    assert CommandParser.peek_request_id(b'{"request_id": "bad id with spaces"}') is None
    # read as strictly as the command: where two JSON readers would disagree, no request_id is echoed
    assert CommandParser.peek_request_id(b'{"request_id": "r-7", "request_id": "r-8"}') is None
    assert CommandParser.peek_request_id(b'{"request_id": "r-9", "args": NaN}') is None
    assert CommandParser.peek_request_id(b"[" * 100_000) is None  # too long: refused unread
    assert CommandParser.peek_request_id(b"[" * 60_000) is None  # nesting too deep for the parser


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(
    st.binary(max_size=600),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children,
                                                                                   max_size=6),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),
))
def test_arbitrary_payloads_only_raise_command_error(tmp_path_factory: pytest.TempPathFactory, payload: bytes) -> None:
    d = tmp_path_factory.getbasetemp() / "fuzz-bundles"
    d.mkdir(exist_ok=True)
    p = CommandParser(CommandsConfig(allowed_dirs=(d,)), device_id=DEVICE, clock=Clock())
    for name in ("capture_dark", "reload_bundle", "set_integration_time", "nope"):
        try:
            p.parse(name, payload)
        except CommandError:
            pass


def test_the_documented_command_body_parses(repo_root: Path, tmp_path: Path, bundles: Path) -> None:
    text = (repo_root / "docs" / "mqtt.md").read_text()
    start = text.index('{"schema_version": 1, "command": "capture_dark"')
    body = json.loads(text[start:text.index("```", start)])
    clock = Clock()
    clock.now = body["issued_at_unix_s"]
    cmd = _parser(tmp_path, bundles, clock=clock).parse("capture_dark", json.dumps(body).encode())
    assert cmd.args == CaptureArgs(16) and cmd.request_id == "ops-18"


def test_every_command_says_when_it_was_issued_and_a_stale_one_is_refused(tmp_path: Path, bundles: Path) -> None:
    """Finding 7: an unsigned command queued in the broker for hours must not run late; ``issued_at_unix_s`` is
    required and one more than ``commands.max_age_s`` (60 s) old is refused as stale, signed or not."""
    p = _parser(tmp_path, bundles)
    body = _body("capture_dark")
    del body["issued_at_unix_s"]
    with pytest.raises(CommandError, match="issued_at_unix_s: required"):
        p.parse("capture_dark", _raw(body))
    assert p.parse("capture_dark", _raw(_body("capture_dark", issued_at_unix_s=NOW_S - 59))).issued_at_unix_s
    for payload in (_raw(_body("capture_dark", issued_at_unix_s=NOW_S - 61)),
                    sign_command(_body("capture_dark", issued_at_unix_s=NOW_S - 61), KEY),
                    _raw(_body("capture_dark", issued_at_unix_s=NOW_S - 3600))):
        with pytest.raises(StaleCommandError, match="issued_at_unix_s: expected"):
            p.parse("capture_dark", payload)
    with pytest.raises(CommandError) as err:  # from the future: a clock problem, not a stale command
        p.parse("capture_dark", _raw(_body("capture_dark", issued_at_unix_s=NOW_S + 301)))
    assert not isinstance(err.value, StaleCommandError)
