"""``reset_drift`` (issue 16): the self-starting drift detectors (the prediction CUSUMs under ``[drift]
cusum_baseline_frames`` and the ``spectrum_level`` CUSUM) learn their in-control baseline again, as after a start, so
a product change or a lamp recalibration does not leave them judging the line against the old product.  Pure
(the monitor and the command's arguments), then an in-process daemon built from a trainer-built bundle
(:class:`edge.daemon.drift_events.DriftBaselines`: the response, the cleared events, the retained status); the real
``spectro-edge run`` with a real broker is in test_drift_reset_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.commands import CommandName, CommandParser, RemoteCommand, make_command
from edge.config import CommandsConfig
from edge.drift import CusumConfig, DriftMonitor, DriftMonitorConfig, TrainingStats, level_cusum
from edge.drift.reset import ResetDriftArgs
from edge.errors import CommandError
from edge.publish.messages import status_message
from edge.publish.schema import MessageError, MessageKind, encode
from tests.support.daemon import DemoBundles, offline_stream
from tests.support.inprocess import feed, inprocess_daemon

BASELINE = 30
MEAN, STD = 10.0, 1.0
#: The step of the level a product change makes, in the level's own standard deviations.
STEP_SIGMAS = 8.0


def _monitor(prediction_baseline: int = BASELINE, level: bool = True) -> DriftMonitor:
    config = DriftMonitorConfig(
        prediction=CusumConfig(k_sigma=0.5, h_sigma=8.0, warmup_samples=10, baseline_samples=prediction_baseline),
        level=level_cusum(baseline_samples=BASELINE, warmup_samples=10) if level else None)
    return DriftMonitor(config, training=TrainingStats(("a", "b"), (MEAN, MEAN), (STD, STD)))


def _feed(mon: DriftMonitor, n: int, *, level: float, start: int = 0, seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        events += mon.observe_prediction(start + i, values=rng.normal(MEAN, STD, 2), level=level + rng.normal(0, 0.01))
    return events


def test_a_reset_ends_the_alert_and_the_detector_learns_the_new_level() -> None:
    mon = _monitor()
    assert mon.learning() == ["prediction:a", "prediction:b", "spectrum_level"]
    _feed(mon, 60, level=1.0)
    assert mon.learning() == []
    raised = _feed(mon, 40, level=1.0 + STEP_SIGMAS * 0.01, start=60, seed=1)  # the product changed
    assert [(e.monitor, e.state.value) for e in raised] == [("spectrum_level", "raised")]
    assert mon.active() == ["spectrum_level"]

    names, ended = mon.reset_baselines(["spectrum_level"], seq=99, reason="product change to B-20")
    assert names == ["spectrum_level"]
    assert [(e.monitor, e.state.value, e.seq) for e in ended] == [("spectrum_level", "cleared", 99)]
    assert "product change to B-20" in ended[0].detail and "without the statistic clearing" in ended[0].detail
    assert mon.active() == [] and mon.learning() == ["spectrum_level"], "only the named detector relearns"
    assert mon.level is not None and mon.level.baseline()["learned"] == 0

    after = _feed(mon, 200, level=1.0 + STEP_SIGMAS * 0.01, start=100, seed=2)
    assert after == [], "the new product's level is the new baseline: no alert comes back"
    assert mon.learning() == [] and mon.level.baseline()["mean"] == pytest.approx(1.08, abs=0.005)


def test_without_a_reset_the_old_baseline_keeps_the_alert_raised() -> None:
    mon = _monitor()
    _feed(mon, 60, level=1.0)
    _feed(mon, 240, level=1.08, start=60, seed=1)
    assert mon.active() == ["spectrum_level"], "the frozen baseline judges the new product against the old one"


def test_the_names_it_takes_and_the_ones_it_refuses() -> None:
    mon = _monitor()
    assert [d.name for d in mon.select_baselines(None)] == ["prediction:a", "prediction:b", "spectrum_level"]
    assert [d.name for d in mon.select_baselines(["prediction"])] == ["prediction:a", "prediction:b"]
    assert [d.name for d in mon.select_baselines(["spectrum_level", "prediction:b"])] == ["prediction:b",
                                                                                          "spectrum_level"]
    _feed(mon, 60, level=1.0)
    for bad in (["ood_t2"], ["prediction:c"], ["spectrum_level", "dark_level"]):
        with pytest.raises(ValueError, match=r"expected detectors among \['prediction', 'prediction:a', "
                                             r"'prediction:b', 'spectrum_level'\].*got '(ood_t2|prediction:c|dark)"):
            mon.reset_baselines(bad, seq=60)
    assert mon.learning() == [], "a refused name resets nothing, not even the valid names beside it"

    fixed = _monitor(prediction_baseline=0)  # the prediction CUSUMs run on the bundle's figures: nothing to learn
    assert [d.name for d in fixed.baseline_detectors()] == ["spectrum_level"]
    with pytest.raises(ValueError, match="got 'prediction'"):
        fixed.reset_baselines(["prediction"])
    with pytest.raises(ValueError, match="expected a self-starting drift detector to reset, got none"):
        _monitor(prediction_baseline=0, level=False).reset_baselines()


def test_a_model_change_still_relearns_everything() -> None:
    mon = _monitor()
    _feed(mon, 60, level=1.0)
    mon.set_training(TrainingStats(("a",), (MEAN,), (STD,)), seq=60)
    assert mon.learning() == ["prediction:a", "spectrum_level"]


# ------------------------------------------------------------------------------------------------ the command
def _parse(args: dict[str, Any]) -> RemoteCommand:
    parser = CommandParser(CommandsConfig(require_auth=False), device_id="nir-01")
    return parser.parse("reset_drift", json.dumps(make_command("reset_drift", args, device_id="nir-01")).encode())


def test_the_command_s_arguments() -> None:
    cmd = _parse({"detectors": ["spectrum_level", "prediction", "spectrum_level"], "reason": "lamp replaced"})
    assert cmd.name is CommandName.RESET_DRIFT
    assert cmd.args == ResetDriftArgs(("spectrum_level", "prediction"), "lamp replaced")
    assert _parse({}).args == ResetDriftArgs(None, None)
    for args, error in (
        ({"detectors": "spectrum_level"}, r"reset_drift.args.detectors: expected 1-32 detector names"),
        ({"detectors": []}, r"reset_drift.args.detectors: expected 1-32"),
        ({"detectors": [f"prediction:{i}" for i in range(33)]}, r"reset_drift.args.detectors: expected 1-32"),
        ({"detectors": [3]}, r"reset_drift.args.detectors\[0\]: expected a detector name"),
        ({"reason": " padded"}, r"reset_drift.args.reason: expected 1-200 printable ASCII"),
        ({"reason": "x" * 201}, r"reset_drift.args.reason: expected 1-200"),
        ({"why": "x"}, r"reset_drift.args.why: unknown argument \(expected detectors, reason\)"),
    ):
        with pytest.raises(CommandError, match=error):
            _parse(args)


def test_unsigned_is_refused_under_require_auth() -> None:
    body = json.dumps(make_command("reset_drift", {}, device_id="nir-01")).encode()
    with pytest.raises(CommandError, match="expected an HMAC-SHA256 envelope"):
        CommandParser(CommandsConfig(), device_id="nir-01").parse("reset_drift", body)


def test_the_status_field_is_strict() -> None:
    reset = {"time_unix_s": 5.0, "detectors": ["spectrum_level"], "reason": "product change", "request_id": "r-1"}
    msg = status_message(device_id="nir-01", state="online", time_unix_s=6.0,
                         drift_baselines={"learning": ["spectrum_level"], "reset": reset})
    assert json.loads(encode(msg))["drift_baselines"] == {"learning": ["spectrum_level"], "reset": reset}
    assert "drift_baselines" not in status_message(device_id="nir-01", state="online", time_unix_s=6.0)
    for bad in ({"learning": [3], "reset": None}, {"learning": [], "reset": {**reset, "reason": "x" * 201}}):
        with pytest.raises(MessageError):
            status_message(device_id="nir-01", state="online", time_unix_s=6.0, drift_baselines=bad)


# ------------------------------------------------------------------------------------------------ in the daemon
def _responses(link: Any, request_id: str) -> list[dict[str, Any]]:
    return [m for k, m, _c in link.messages if k is MessageKind.COMMAND_RESPONSE and m["request_id"] == request_id]


def _statuses(link: Any) -> list[dict[str, Any]]:
    return [m for k, m, _c in link.messages if k is MessageKind.STATUS]


def test_the_daemon_resets_between_batches_answers_and_says_so_in_the_status(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream = offline_stream(120)
    daemon, link = inprocess_daemon(tmp_path / "d", demo_bundles.v1, drift={
        "cusum_baseline_frames": 20, "spectrum_level_baseline_frames": 20, "min_frames": 10})
    first = daemon.status_payload()["drift_baselines"]
    assert first["reset"] is None and "spectrum_level" in first["learning"]
    predictions = [n for n in first["learning"] if n.startswith("prediction:")]
    assert predictions, "the demo bundle's targets each have a self-starting CUSUM"
    tick = lambda: daemon.inference.baselines.tick(daemon.drift, 0, daemon.inference._publish_drift)  # noqa: E731  # the inference loop's turn

    feed(daemon, [stream["status"], stream["dark"], stream["white"], *stream["spectra"][:40]])
    tick()
    assert _statuses(link)[-1]["drift_baselines"] == {"learning": [], "reset": None}, "learned: published"
    gauges = daemon.metrics_payload(1.0)["gauges"]
    assert gauges["drift_spectrum_level_baseline_learning"] == 0.0

    daemon.control.execute(RemoteCommand(CommandName.RESET_DRIFT, ResetDriftArgs(None, "product change"), "r-1",
                                         True, None))
    assert not _responses(link, "r-1"), "carried out by the inference thread, not the housekeeping thread"
    tick()
    (answer,) = _responses(link, "r-1")
    assert answer["ok"] is True, answer
    assert answer["result"]["detectors"] == [*predictions, "spectrum_level"]
    assert answer["result"]["reason"] == "product change" and answer["result"]["cleared"] == []
    assert answer["result"]["baseline_frames"] == {name: 20 for name in [*predictions, "spectrum_level"]}
    status = _statuses(link)[-1]["drift_baselines"]
    assert status["learning"] == [*predictions, "spectrum_level"]
    assert status["reset"] == {"time_unix_s": 1_700_000_000.0, "detectors": [*predictions, "spectrum_level"],
                               "reason": "product change", "request_id": "r-1"}
    assert daemon.counters.get("drift_baseline_resets") == 1 and daemon.counters.get("commands_reset_drift") == 1

    feed(daemon, stream["spectra"][40:50])
    gauges = daemon.metrics_payload(1.0)["gauges"]
    assert gauges["drift_spectrum_level_baseline_learning"] == 1.0
    assert gauges["drift_spectrum_level_baseline_learned"] == 10.0, "learning again from the next spectra"
    feed(daemon, stream["spectra"][50:80])
    tick()
    assert _statuses(link)[-1]["drift_baselines"]["learning"] == [], "the status says when they have learned"

    daemon.control.execute(RemoteCommand(CommandName.RESET_DRIFT, ResetDriftArgs(("ood_q",), None), "r-2", True,
                                         None))
    tick()
    (refusal,) = _responses(link, "r-2")
    assert refusal["ok"] is False and "got 'ood_q'" in refusal["error"], refusal
    assert daemon.counters.get("drift_baseline_resets") == 1
