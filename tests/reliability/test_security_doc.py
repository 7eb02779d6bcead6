"""docs/security.md stays true: its production settings are valid configuration keys, its mosquitto ACL is the
one that tests/edge/test_mqtt_security.py runs against a real broker, and its table of the issue #18 findings names
tests and ``spectro-bench attack`` attacks that exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Jetson): the tomli backport, an install requirement there
    import tomli as tomllib

from edge.config import parse_config, security_warnings
from tests.support.docs import fenced_blocks


def _acl_rules(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_the_acl_is_the_tested_one(repo_root: Path) -> None:
    mine = [b for b in fenced_blocks(repo_root / "docs" / "security.md") if b.startswith("# /etc/mosquitto/acl")]
    tested = [b for b in fenced_blocks(repo_root / "docs" / "mqtt.md") if b.startswith("# /etc/mosquitto/acl")]
    assert len(mine) == 1 and len(tested) == 1
    assert _acl_rules(mine[0]) == _acl_rules(tested[0])
    assert any(r.startswith("pattern write spectrolite/+/+/%u/") for r in _acl_rules(mine[0]))


def test_the_production_settings_are_valid_configuration(repo_root: Path, tmp_path: Path) -> None:
    """Every key of the documented production block exists and validates (files replaced by temporary ones)."""
    blocks = [b for b in fenced_blocks(repo_root / "docs" / "security.md") if "require_auth = true" in b]
    assert len(blocks) == 1
    text = re.sub(r'"(/[^"]+)"', lambda m: '"' + str(tmp_path / Path(m.group(1)).name) + '"', blocks[0])
    data = tomllib.loads(text)
    for name in ("mqtt.password", "ca.pem", "nir-01.pem", "nir-01.key", "model.spectrolite",
                 "bundle-signing.pub.pem"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "hmac.key").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "bundles").mkdir()
    data["device"] = {"site": "plant-a", "line": "line-3", "device_id": "nir-01"}
    data["serial"] = {"port_url": "loop://"}
    cfg = parse_config(data, base_dir=tmp_path)
    assert cfg.mqtt.tls.enabled and cfg.commands.require_auth and cfg.bundle.public_key_path is not None
    assert cfg.commands.enabled and security_warnings(cfg) == ()  # the documented production block names nothing


def _findings_rows(repo_root: Path) -> list[str]:
    text = (repo_root / "docs" / "security.md").read_text(encoding="utf-8")
    section = text.split("## Issue #18", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if re.match(r"\| \d\. ", line)]


def test_each_finding_names_tests_that_exist_and_attacks_that_run(repo_root: Path) -> None:
    """The findings table of docs/security.md: every ``file::test`` it names is a test function in that file (a
    bare ``::test`` belongs to the file named before it), every finding 1-7 has one, and every attack it names is
    one ``spectro-bench attack`` runs."""
    from benchmarks.attack import ATTACKS

    rows = _findings_rows(repo_root)
    assert {int(r[2]) for r in rows} == set(range(1, 8)), rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5, row
        named, current = [], None
        for file, name in re.findall(r"`(tests/[\w/]+\.py)?::(test_\w+)`", cells[2]):
            current = file or current
            assert current is not None, row
            named.append((current, name))
        assert named, f"expected a test named for {cells[0]!r}"
        for file, name in named:
            source = (repo_root / file).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"expected {file}::{name}, found none"
        attacks = re.findall(r"`(\w+)`", cells[4])
        assert set(attacks) <= set(ATTACKS), (attacks, ATTACKS)
    assert {a for r in rows for a in re.findall(r"`(\w+)`", r.split("|")[-2])} == set(ATTACKS)
