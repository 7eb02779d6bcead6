"""The JSON Schema files in schemas/v1 are what ``spectro-edge schemas`` writes, and standard validators accept the
payloads the builders emit (and refuse the ones the daemon's own validator refuses)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from edge.json_schema import DRAFT, render_all, write_all
from edge.publish.schema import SCHEMAS
from tests.support.golden_messages import golden_names, golden_payload

REGENERATE = "spectro-edge schemas --out schemas/v1"


def _golden(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(golden_payload(name))
    return payload


def _schema_dir(repo_root: Path) -> Path:
    return repo_root / "schemas" / "v1"


def test_committed_files_are_what_the_generator_writes(repo_root: Path) -> None:
    folder = _schema_dir(repo_root)
    expected = render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.schema.json"))}
    stale = sorted(set(committed) - set(expected))
    missing = sorted(set(expected) - set(committed))
    differ = sorted(n for n in set(expected) & set(committed) if expected[n] != committed[n])
    assert not (stale or missing or differ), (
        f"schemas/v1 is out of date with edge.publish.schema.SCHEMAS (missing {missing}, stale {stale}, "
        f"differ {differ}): "
        f"regenerate with `{REGENERATE}` and commit the files")
    assert set(expected) == {f"{kind}.schema.json" for kind in SCHEMAS}


def test_the_cli_writes_the_files_and_removes_stale_ones(tmp_path: Path, repo_root: Path) -> None:
    (tmp_path / "gone.schema.json").write_text("{}")
    (tmp_path / "README.txt").write_text("kept")
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "schemas", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("*.schema.json")) == sorted(render_all())
    assert (tmp_path / "README.txt").exists()
    assert len(proc.stdout.split()) == len(SCHEMAS)
    assert write_all(tmp_path)  # idempotent
    for name, text in render_all().items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text


def _jsonschema() -> ModuleType:
    """The ``jsonschema`` package (the dev extra); CI must have it, a bare checkout skips."""
    if os.environ.get("CI"):
        import jsonschema

        return jsonschema
    return pytest.importorskip("jsonschema", reason="the dev extra brings jsonschema: pip install -e '.[dev]'")


def _validator(repo_root: Path, kind: str) -> Any:
    js = _jsonschema()
    doc = json.loads((_schema_dir(repo_root) / f"{kind}.schema.json").read_text(encoding="utf-8"))
    assert doc["$schema"] == DRAFT
    js.Draft202012Validator.check_schema(doc)
    return js.Draft202012Validator(doc)


@pytest.mark.parametrize("name", golden_names())
def test_golden_payloads_validate_against_the_files(repo_root: Path, name: str) -> None:
    payload = _golden(name)
    validator = _validator(repo_root, payload["kind"])
    assert list(validator.iter_errors(payload)) == []
    # consumers ignore fields they do not know (new fields are added within a version)
    assert list(validator.iter_errors({**payload, "added_later": {"x": 1}})) == []


@pytest.mark.parametrize("name", golden_names())
def test_the_files_refuse_what_the_producer_refuses(repo_root: Path, name: str) -> None:
    payload = _golden(name)
    kind = payload["kind"]
    validator = _validator(repo_root, kind)
    for field in ("schema_version", "device_id", "time_unix_s"):
        bad = copy.deepcopy(payload)
        del bad[field]
        assert not validator.is_valid(bad), f"{kind}: expected missing {field} to be refused"
    assert not validator.is_valid({**payload, "kind": "other"})
    assert not validator.is_valid({**payload, "time_unix_s": "1767225600"})
    assert not validator.is_valid({**payload, "schema_version": True})


def test_wrong_nested_values_are_refused(repo_root: Path) -> None:
    prediction = _golden("prediction")
    v = _validator(repo_root, "prediction")
    bad = copy.deepcopy(prediction)
    bad["values"][0]["value"] = "12.4"
    assert not v.is_valid(bad)
    bad = copy.deepcopy(prediction)
    del bad["values"][0]["unit"]
    assert not v.is_valid(bad)
    assert not v.is_valid({**prediction, "quality": "fine"})
    assert not v.is_valid({**prediction, "device_boot_id": 1 << 32})
    metrics = _golden("metrics")
    assert not _validator(repo_root, "metrics").is_valid({**metrics, "counters": {"frames_in": 1.5}})


def test_every_json_example_in_the_mqtt_doc_validates_against_the_files(repo_root: Path) -> None:
    text = (repo_root / "docs" / "mqtt.md").read_text()
    kinds = []
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        obj = json.loads(block)
        if "kind" in obj:
            errors = [e.message for e in _validator(repo_root, obj["kind"]).iter_errors(obj)]
            assert errors == [], (obj["kind"], errors)
            kinds.append(obj["kind"])
    assert set(kinds) == set(SCHEMAS)
