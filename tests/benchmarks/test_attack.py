"""``spectro-bench attack`` with real processes (mosquitto, a hostile device on a pty, ``spectro-edge run``), quick:
two attacks that hold on every branch (a broken calibration STATUS, and a small "oversized" command message), the
report's keys, and that a held attack says so; then the later attacks (slower).  Behaviour, not figures."""

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


@pytest.mark.slow
def test_the_later_attacks_hold_and_say_what_they_saw(tmp_path: Path, demo_bundle: Path) -> None:
    """A 64 MB command over MQTT 3.1.1 under a memory limit, a really full outbox disk (skipped without root), the
    unsigned flood the command lanes protect against, forged device text and seq, retained and stale commands."""
    out = tmp_path / "attack.json"
    rc = main(["attack", "--attacks", "oversized_mqtt311,disk_full,command_flood_unsigned,forged_frames,stale_retained",
               "--bundle", str(demo_bundle), "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    by_name = {a["name"]: a for a in report["attacks"]}
    over = by_name["oversized_mqtt311"]
    assert over["held"] is True and set(over["detail"]["daemon_exit_codes"]) <= {2}, over
    assert report["redeliver_after_oversized_s"] == over["detail"]["redeliver_after_oversized_s"] <= 30, over
    disk = by_name["disk_full"]
    if disk["held"] is not None:  # None: no tmpfs could be mounted (not root), the detail says why
        d = disk["detail"]
        assert disk["held"] is True and disk["lost"] == 0, disk
        assert d["disk_free_after_fill_b"] < 64 * 1024, d  # the filesystem was really full
        assert d["newest_kept"] and d["outbox_evicted"] > 0 and d["predictions_delivered"] > 0, d
        assert d["predictions_made"] - d["predictions_delivered"] <= d["losses_counted"], d
    flood = by_name["command_flood_unsigned"]
    assert flood["held"] is True and flood["detail"]["signed_ran_first"] is True, flood
    assert flood["detail"]["flood_accounted"] == flood["detail"]["flood"] == 200, flood
    forged = by_name["forged_frames"]
    assert forged["held"] is True and forged["detail"]["seq_jumps"] >= 1, forged
    assert not forged["detail"]["raw_escape_in_log"] and not forged["detail"]["forged_log_line"], forged
    stale = by_name["stale_retained"]
    assert stale["held"] is True, stale
    assert not stale["detail"]["retained_ran"] and not stale["detail"]["stale_ran"] and stale["detail"]["fresh_ran"]
