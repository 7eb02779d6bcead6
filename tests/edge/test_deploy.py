"""The pieces of a bundle sent over MQTT without processes: the ``deploy_*`` arguments (:mod:`edge.deploy.args`),
the staging on disk and its resumption (:mod:`edge.deploy.staging`), the trusted-signature rule
(:mod:`edge.deploy.trust`) on the committed trainer-built bundles, the ``[deploy]`` configuration checks, the group
topics and the parser's group identity and chunk bound.  End to end with real processes: test_deploy_e2e.py."""

from __future__ import annotations

import base64
import doctest
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

import edge.deploy.args
import edge.deploy.staging
from edge.commands import CommandParser, make_command, sign_command
from edge.config import parse_config
from edge.deploy.args import DeployBeginArgs, DeployChunkArgs, chunk_payload_limit, parse_deploy_args
from edge.deploy.staging import DeployError, StagingArea, TransferState
from edge.deploy.trust import signing_key
from edge.errors import CommandError, ConfigError
from edge.publish.topics import Topics
from tests.support.daemon import DemoBundles
from tests.support.signing import make_signing_key, signed_copy

KEY = b"0123456789abcdef0123"
DATA = bytes(range(256)) * 41  # 10,496 bytes: 3 chunks of 4096 (the last 2,304)
CHUNK = 4096


def _begin(tid: str = "t-00000001", data: bytes = DATA, chunk: int = CHUNK) -> DeployBeginArgs:
    return DeployBeginArgs(tid, len(data), hashlib.sha256(data).hexdigest(), chunk, -(-len(data) // chunk), "m.b")


def _chunk(i: int, data: bytes = DATA, tid: str = "t-00000001", *, payload: bytes | None = None) -> DeployChunkArgs:
    part = data[i * CHUNK:(i + 1) * CHUNK]
    return DeployChunkArgs(tid, i, hashlib.sha256(part).hexdigest(), part if payload is None else payload)


def test_the_module_examples_hold() -> None:
    for module in (edge.deploy.args, edge.deploy.staging):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("name", "args", "message"), [
    ("deploy_begin", {"transfer_id": "short", "size": 1, "sha256": "0" * 64, "chunk_size": 256, "chunks": 1},
     "transfer_id: expected 8-64 characters"),
    ("deploy_begin", {"transfer_id": "t-00000001", "size": 1, "sha256": "A" * 64, "chunk_size": 256, "chunks": 1},
     "sha256: expected 64 lower-case hexadecimal"),
    ("deploy_begin", {"transfer_id": "t-00000001", "size": 1, "sha256": "0" * 64, "chunk_size": 100, "chunks": 1},
     "chunk_size: expected an integer in 256..262144, got 100"),
    ("deploy_begin", {"transfer_id": "t-00000001", "size": 1, "sha256": "0" * 64, "chunk_size": 256, "chunks": 1,
                      "target_path": "/etc/passwd"}, "target_path: unknown argument"),
    ("deploy_chunk", {"transfer_id": "t-00000001", "index": 0, "sha256": "0" * 64, "data_b64": "not base64!"},
     "data_b64: expected base64"),
    ("deploy_chunk", {"transfer_id": "t-00000001", "index": -1, "sha256": "0" * 64, "data_b64": "AA=="},
     "index: expected an integer in 0.."),
    ("deploy_commit", {}, "transfer_id: required argument missing"),
])
def test_malformed_deploy_arguments_are_refused_naming_the_field(name: str, args: dict[str, Any],
                                                                 message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_deploy_args(name, args)


def test_a_transfer_resumes_after_a_restart_and_checks_every_chunk_and_the_whole(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "deploy")
    t = area.begin(_begin(), max_bytes=20_000, max_chunk_bytes=CHUNK, now=1.0)
    assert t.missing_ranges() == [[0, 3]]
    area.write_chunk(_chunk(2), now=2.0)

    with pytest.raises(DeployError, match="deploy_chunk 0: SHA-256 mismatch"):
        area.write_chunk(_chunk(0, payload=b"\xff" + DATA[1:CHUNK]), now=3.0)
    with pytest.raises(DeployError, match="deploy_chunk 2: expected 2304 bytes, got 4096"):
        area.write_chunk(DeployChunkArgs("t-00000001", 2, hashlib.sha256(DATA[:CHUNK]).hexdigest(), DATA[:CHUNK]),
                         now=3.0)
    with pytest.raises(DeployError, match="expected the transfer in progress, got 't-00000002'"):
        area.write_chunk(_chunk(0, tid="t-00000002"), now=3.0)
    with pytest.raises(DeployError, match="expected all 3 chunks, got 1; missing 0..1"):
        area.complete("t-00000001", now=3.0)

    again = StagingArea(tmp_path / "deploy")  # the daemon restarted
    t = again.load()
    assert t is not None and t.received == {2}
    assert again.begin(_begin(), max_bytes=20_000, max_chunk_bytes=CHUNK, now=4.0) is t  # resumed, not restarted
    with pytest.raises(DeployError, match="in progress with size"):
        again.begin(_begin(data=DATA[:-1]), max_bytes=20_000, max_chunk_bytes=CHUNK, now=4.0)
    again.write_chunk(_chunk(0), now=5.0)
    again.write_chunk(_chunk(1), now=5.0)
    t, path = again.complete("t-00000001", now=6.0)
    assert path.read_bytes() == DATA and t.state == TransferState.COMPLETE
    assert StagingArea(tmp_path / "deploy").load().state == TransferState.COMPLETE  # type: ignore[union-attr]  # not None here


def test_a_whole_that_does_not_match_is_refused_and_must_be_sent_again(tmp_path: Path) -> None:
    area = StagingArea(tmp_path)
    lie = DeployBeginArgs("t-00000001", len(DATA), "0" * 64, CHUNK, 3, None)  # every chunk fine, the whole not
    area.begin(lie, max_bytes=20_000, max_chunk_bytes=CHUNK, now=0.0)
    for i in range(3):
        area.write_chunk(_chunk(i), now=0.0)
    with pytest.raises(DeployError, match="SHA-256 of the whole mismatch"):
        area.complete("t-00000001", now=1.0)
    assert area.current is not None and area.current.state == TransferState.REFUSED
    with pytest.raises(DeployError, match="is refused"):
        area.write_chunk(_chunk(0), now=2.0)
    t = area.begin(lie, max_bytes=20_000, max_chunk_bytes=CHUNK, now=3.0)  # the sender starts over
    assert t.state == TransferState.RECEIVING and t.received == set()


def test_bounds_are_checked_at_begin(tmp_path: Path) -> None:
    area = StagingArea(tmp_path)
    with pytest.raises(DeployError, match=r"size: expected at most 10000 bytes \(deploy.max_bundle_bytes\), got 10496"):
        area.begin(_begin(), max_bytes=10_000, max_chunk_bytes=CHUNK, now=0.0)
    with pytest.raises(DeployError, match=r"chunk_size: expected at most 1024 bytes \(deploy.max_chunk_bytes\)"):
        area.begin(_begin(), max_bytes=20_000, max_chunk_bytes=1024, now=0.0)
    assert not (tmp_path / "transfer.part").exists()


def test_a_damaged_state_file_is_discarded_and_the_sender_starts_over(tmp_path: Path) -> None:
    area = StagingArea(tmp_path)
    area.begin(_begin(), max_bytes=20_000, max_chunk_bytes=CHUNK, now=0.0)
    (tmp_path / "transfer.json").write_text("{not json", encoding="utf-8")
    assert StagingArea(tmp_path).load() is None
    assert not (tmp_path / "transfer.part").exists()


def test_only_a_bundle_signed_by_a_trusted_key_passes(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    lab, other = make_signing_key(tmp_path, "lab"), make_signing_key(tmp_path, "other")
    good = signed_copy(demo_bundles.v2, tmp_path / "good.spectrolite", lab)
    assert signing_key(good, [other.public_pem, lab.public_pem]) == lab.public_pem
    with pytest.raises(DeployError, match="got an unsigned bundle"):
        signing_key(demo_bundles.v2, [lab.public_pem])
    with pytest.raises(DeployError, match="none of them verifies"):
        signing_key(signed_copy(demo_bundles.v2, tmp_path / "bad.spectrolite", other), [lab.public_pem])
    with pytest.raises(DeployError, match="not a readable bundle"):
        (tmp_path / "junk").write_bytes(b"PK junk")
        signing_key(tmp_path / "junk", [lab.public_pem])


def _cfg(tmp_path: Path, **sections: dict[str, Any]) -> Any:
    data: dict[str, Any] = {"device": {"site": "plant-a", "line": "line-1", "device_id": "nir-01"},
                            "serial": {"port_url": "loop://"}, "bundle": {"path": "m.spectrolite"}}
    (tmp_path / "hmac.key").write_bytes(KEY)
    data.update(sections)
    return parse_config(data, base_dir=tmp_path)


def test_deploy_is_off_by_default_and_on_needs_commands_and_a_trusted_key(tmp_path: Path) -> None:
    assert _cfg(tmp_path).deploy.enabled is False
    commands = {"enabled": True, "hmac_key_path": "hmac.key"}
    with pytest.raises(ConfigError, match="deploy.enabled: expected commands.enabled = true"):
        _cfg(tmp_path, deploy={"enabled": True})
    with pytest.raises(ConfigError, match="deploy.trusted_keys: expected at least one Ed25519 public key"):
        _cfg(tmp_path, commands=commands, deploy={"enabled": True})
    pem = make_signing_key(tmp_path).public_pem
    with pytest.raises(ConfigError, match="deploy.trusted_keys: expected none when bundle.public_key_path is set"):
        _cfg(tmp_path, commands=commands, deploy={"enabled": True, "trusted_keys": [str(pem)]},
             bundle={"path": "m.spectrolite", "public_key_path": str(pem)})
    with pytest.raises(ConfigError, match=r"deploy.groups\[0\]: expected 1-4 topic levels"):
        _cfg(tmp_path, deploy={"groups": ["plant-a/+"]})
    cfg = _cfg(tmp_path, commands=commands, deploy={"enabled": True, "trusted_keys": [str(pem)],
                                                    "groups": ["plant-a", "plant-a/line-1"]})
    assert cfg.deploy.groups == ("plant-a", "plant-a/line-1")


def test_group_topics_and_the_group_identity_of_a_command(tmp_path: Path) -> None:
    t = Topics(prefix="spectrolite", site="plant-a", line="line-1", device_id="nir-01")
    assert t.group_command_filter("plant-a/line-1") == "spectrolite/group/plant-a/line-1/cmd/+"
    groups = ["plant-a/line-1"]
    assert t.parse_group_command("spectrolite/group/plant-a/line-1/cmd/deploy_begin", groups) == (
        "plant-a/line-1", "deploy_begin")
    assert t.parse_group_command("spectrolite/group/plant-b/cmd/deploy_begin", groups) is None  # not a member

    cfg = _cfg(tmp_path, commands={"enabled": True, "hmac_key_path": "hmac.key"})
    chunk = {"transfer_id": "t-00000001", "index": 0, "sha256": "0" * 64,
             "data_b64": base64.b64encode(bytes(20_000)).decode()}
    body = make_command("deploy_chunk", chunk, device_id="group:plant-a/line-1", request_id="r1")
    payload = sign_command(body, KEY)
    group = CommandParser(cfg.commands, device_id="group:plant-a/line-1",
                          payload_limits={"deploy_chunk": chunk_payload_limit(32_768)})
    assert group.parse("deploy_chunk", payload).args.data == bytes(20_000)  # type: ignore[union-attr]  # not None here
    device = CommandParser(cfg.commands, device_id="nir-01",
                           payload_limits={"deploy_chunk": chunk_payload_limit(32_768)})
    with pytest.raises(CommandError, match="device_id: expected 'nir-01', got 'group:plant-a/line-1'"):
        device.parse("deploy_chunk", sign_command(dict(body, nonce="another-nonce"), KEY))
    plain = CommandParser(cfg.commands, device_id="group:plant-a/line-1")  # without the chunk bound
    with pytest.raises(CommandError, match="payload: expected at most 4096 bytes"):
        plain.parse("deploy_chunk", sign_command(dict(body, nonce="third-nonce"), KEY))
    assert json.loads(payload)["hmac_sha256"]
