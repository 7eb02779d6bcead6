"""``spectro-bench compare``: numeric leaves of two result files matched by key, with ratios."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.cli import main
from benchmarks.compare import compare


def test_compare_matches_nested_numbers_and_skips_host() -> None:
    a = {"host": {"cpu_count": 2}, "decode_mb_per_s": 10.0, "stages": [{"name": "invoke", "p99_us": 100}], "x": 0}
    b = {"host": {"cpu_count": 4}, "decode_mb_per_s": 5.0, "stages": [{"name": "invoke", "p99_us": 300}], "x": 1}
    rows = {r["key"]: r for r in compare(a, b)}
    assert set(rows) == {"decode_mb_per_s", "stages[invoke].p99_us", "x"}
    assert rows["decode_mb_per_s"]["ratio"] == 0.5
    assert rows["stages[invoke].p99_us"]["ratio"] == 3.0
    assert rows["x"]["ratio"] is None


def test_compare_command_writes_json_and_markdown(tmp_path: Path, capsys) -> None:
    for name, v in (("a", 2.0), ("b", 3.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"sustained_fps": v}))
    out = tmp_path / "cmp.json"
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rows"] == [{"key": "sustained_fps", "a": 2.0, "b": 3.0, "ratio": 1.5}]
    assert "sustained_fps" in (tmp_path / "cmp.md").read_text()
    assert "1.5" in capsys.readouterr().out
