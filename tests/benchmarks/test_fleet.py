"""``spectro-bench fleet`` with a tiny fleet and a short central outage: the shape of the JSON and the loss
accounting, not figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main

#: Keys of the fleet JSON named by issue 15.
KEYS = {"devices", "predictions_sent", "predictions_received_central", "lost", "rollout_devices_updated",
        "rollback_devices_restored", "reconnect_spread_s"}


@pytest.mark.slow
def test_fleet_loses_nothing_and_writes_the_issue_keys(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    rc = main(["fleet", "--devices", "3", "--outage-s", "3", "--rate-hz", "5", "--workdir", str(tmp_path / "run"),
               "--json", str(out)])
    data = json.loads(out.read_text())
    assert KEYS <= set(data), f"expected the keys {sorted(KEYS - set(data))} too"
    assert rc == 0
    assert data["devices"] == 3
    # 3 devices at 5/s through a 3 s outage and a site restart: at least the outage's worth was published.
    assert data["predictions_sent"] >= 3 * 5 * 3
    assert data["lost"] == 0 and data["predictions_received_central"] == data["predictions_sent"]
    assert data["devices_not_back"] == 0 and data["reconnect_spread_s"] is not None
    # A staged rollout through the central broker and the bridge: the one canary (nir-00, 10% of 3) sees a stream the
    # new bundle flags out_of_distribution, fails its probation and returns by itself; one failed canary is allowed,
    # so the other two get the bundle and pass.
    assert data["rollout_canaries"] == ["nir-00"] and data["rollout_failing_devices"] == ["nir-00"]
    assert data["rollback_devices_restored"] == 1, data["rollout_devices_not_updated"]
    assert data["rollout_devices_updated"] == 2, data["rollout_devices_not_updated"]
    assert set(data["rollout_devices_not_updated"]) == {"nir-00"}
    assert data["rollout_devices_not_updated"]["nir-00"].startswith("rolled_back: "), data
    assert data["rollout_as_rule_says"] is True and data["rollout_stopped"] is None and data["rollout_chunks"] >= 1
    assert out.with_suffix(".md").read_text().startswith("| figure | value |")
