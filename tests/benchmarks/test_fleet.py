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
    # One signed bundle pushed to the site's group through the central broker and the bridge: every device has it.
    assert data["rollout_devices_updated"] == 3, data["rollout_devices_not_updated"]
    assert data["rollout_devices_not_updated"] == {} and data["rollout_chunks"] >= 1
    # The staged rollout with rollback does not exist yet: no figure, and a reason.
    assert data["rollback_devices_restored"] is None
    assert "not implemented" in data["not_measured"]["rollback_devices_restored"]
    assert out.with_suffix(".md").read_text().startswith("| figure | value |")
