"""``spectro-bench attack`` with real processes (mosquitto, a hostile device on a pty, ``spectro-edge run``), quick:
two attacks that hold on every branch (a broken calibration STATUS, and a small "oversized" command message), the
report's keys, and that a held attack says so.  Behaviour, not figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main

KEYS = {"attacks", "all_held", "predictions_lost_unallowed", "redeliver_after_oversized_s"}
ATTACK_KEYS = {"name", "held", "lost", "detail"}


@pytest.mark.slow
def test_attack_reports_each_attack_and_a_held_one_says_so(tmp_path: Path, demo_bundle: Path) -> None:
    out = tmp_path / "attack.json"
    rc = main(["attack", "--attacks", "hostile_status,oversized", "--size-mb", "1", "--bundle", str(demo_bundle),
               "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == KEYS
    by_name = {a["name"]: a for a in report["attacks"]}
    assert set(by_name) == {"hostile_status", "oversized"}
    assert all(set(a) == ATTACK_KEYS for a in report["attacks"])
    hostile = by_name["hostile_status"]
    assert hostile["held"] is True, hostile
    assert hostile["detail"]["status_refused"] >= 2 and hostile["detail"]["predicted_ok_on_hostile"] == 0
    over = by_name["oversized"]
    assert over["held"] is True and over["detail"]["size_mb"] == 1, over
    assert report["redeliver_after_oversized_s"] == over["detail"]["redeliver_after_oversized_s"] is not None
    assert report["all_held"] is True and report["predictions_lost_unallowed"] == 0
    assert "| hostile_status | yes |" in Path(f"{out}.md").read_text(encoding="utf-8")
