"""Fuzz target of the MQTT command parser (:class:`edge.commands.CommandParser`), plain and HMAC-authenticated."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmarks.fuzz.target import MAX_INPUT_BYTES, mutate

#: Key, device id and clock of the fuzzed command parsers.
HMAC_KEY = b"fuzz-key-0123456789abcdef-0123456789"
DEVICE_ID = "fuzz-01"
NOW_S = 1_800_000_000.0


# ------------------------------------------------------------------------------------------------ commands
_PARSERS: dict[str, Any] = {}


def command_parser(require_auth: bool) -> Any:
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
    parser, tmp = command_parser(require_auth)
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
            payload = mutate(sign_command(text, HMAC_KEY), flips, None)
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


def command_errors() -> tuple[type[BaseException], ...]:
    from edge.errors import CommandError

    return (CommandError,)
