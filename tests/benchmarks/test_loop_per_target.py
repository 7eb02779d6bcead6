"""``spectro-bench loop`` on the committed per-target bundle (tests/support/trained.py ``PER_TARGET_BUNDLE``: PLS
serves one target, the int8 CNN the other) with real processes: the daemon publishes both targets of every frame,
each exactly as the bundle's own two models give it offline on the frame the simulator sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from tests.support import trained
from tests.support.per_target import TARGETS, write_mixtures

#: Test rows of the mixtures (rows 200-239).
FRAMES = 40


@pytest.mark.slow
def test_the_loop_publishes_each_target_from_the_model_that_serves_it(tmp_path: Path) -> None:
    bundle = trained.committed(trained.PER_TARGET_BUNDLE)
    write_mixtures(tmp_path / "mix.npz")
    out = tmp_path / "loop.json"
    rc = main(["loop", "--bundle", str(bundle), "--dataset", str(tmp_path / "mix.npz"), "--select", "split=test",
               "--averages", "64", "--rate", "100", "--broker", "mosquitto", "--json", str(out)])
    assert rc in (0, 1)  # 1: a goal missed (a figure), never a refusal
    data = json.loads(out.read_text())
    assert (data["sent"], data["predictions"], data["lost"]) == (FRAMES, FRAMES, 0)
    assert set(data["loop_rmsep"]) == set(TARGETS)
    # Each published value is the bundle's own prediction of the frame sent: linear_pct from the PLS, curved_pct
    # from the CNN (Bundle.predict_spectra, tests/edge/test_per_target_bundle.py).
    assert data["replayed"] == FRAMES and data["loop_vs_replay_max_abs_diff"] == 0.0
    assert data["replay_rmsep"] == data["loop_rmsep"]
