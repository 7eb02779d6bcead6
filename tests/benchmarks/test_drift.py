"""``spectro-bench drift`` with real processes (spectro-sim on a pty with a provoked drift, spectro-edge run,
mosquitto, subscriber) on the committed trainer-built demo bundle, reduced to one scenario and one short
in-distribution stream; and its scoring of drift messages.  Behaviour, not figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.drift import (
    EXIT_REFUSED,
    GOAL_FALSE_ALARM_RATE_MAX,
    LEVEL_OFF,
    NOT_BUILT,
    _independent_draws,
    _unavailable,
)
from benchmarks.drift_scoring import DETECTORS, alerts, cusum_in_control, predicted_values, score_scenario
from tests.support.trained import DEMO_V1, committed

#: A baseline offset no detector can miss (absorbance; the simulator's default for the kind is 0.2).
LARGE_OFFSET = 0.5
ONSET, RAMP, HOLD, CLEAN = 60, 10, 40, 200
DETECTOR_KEYS = {"detected", "delay_spectra", "delay_from_onset_spectra", "false_alarms_before_onset"}


def _synthetic_npz(path: Path) -> Path:
    """The demo config's synthetic spectra as a dataset file (with its split column)."""
    from firmware_bridge.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(500, seed=0, n_channels=256)
    np.savez(path, **{k: np.asarray(v) for k, v in d.items()})
    return path


@pytest.mark.slow
def test_a_large_baseline_offset_is_detected_and_clean_spectra_raise_nothing(tmp_path: Path) -> None:
    out = tmp_path / "drift.json"
    rc = main(["drift", "--bundle", str(committed(DEMO_V1)), "--dataset", str(_synthetic_npz(tmp_path / "s.npz")),
               "--select", "split=test", "--scenarios", "baseline_offset", "--size", f"baseline_offset={LARGE_OFFSET}",
               "--onset", str(ONSET), "--ramp", str(RAMP), "--hold", str(HOLD), "--clean-streams", "1",
               "--clean-frames", str(CLEAN), "--broker", "mosquitto", "--json", str(out)])
    assert rc in (0, 1)  # 1: a goal missed (a figure), never a refusal
    data = json.loads(out.read_text())
    assert {"scenarios", "detectors", "goals", "in_distribution", "unavailable", "setup", "host", "load"} <= set(data)
    scenario = data["scenarios"]["baseline_offset"]
    assert (scenario["kind"], scenario["size"], scenario["predictions"]) == ("baseline", LARGE_OFFSET, ONSET + RAMP
                                                                               + HOLD)
    assert scenario["full_size_spectrum"] == ONSET + RAMP - 1
    assert set(scenario["detectors"]) == set(DETECTORS) == set(data["detectors"])
    # The autoencoder is not built: null everywhere, and said why.
    assert data["unavailable"] == {"autoencoder": NOT_BUILT}
    assert scenario["detectors"]["autoencoder"] is None and data["detectors"]["autoencoder"] is None
    for det in DETECTORS:
        if det != "autoencoder":
            assert DETECTOR_KEYS <= set(scenario["detectors"][det])
            assert 0.0 <= data["detectors"][det]["false_alarm_rate"] <= GOAL_FALSE_ALARM_RATE_MAX
    # The offset shifts the preprocessed spectra out of the training plane: the OOD alerts go up, within the goal.
    assert {"t2", "q"} & set(scenario["detected_by"])
    assert scenario["best_delay_spectra"] <= data["goals"]["detection"]["max_delay_spectra"]
    assert any(a in scenario["status_alerts"] for a in ("drift:ood_t2", "drift:ood_q"))  # the retained status too
    # In distribution: the stream without drift and the scenario's spectra before its onset.
    assert (data["in_distribution"]["spectra"], data["in_distribution"]["clean_stream_spectra"]) == (CLEAN + ONSET,
                                                                                                     CLEAN)
    goals = data["goals"]
    assert goals["detection"]["per_scenario"] == {"baseline_offset": True} and goals["detection"]["pass"] is True
    assert goals["false_alarms"]["per_detector"]["autoencoder"] is None
    quiet = goals["detection_by_quiet_detectors"]  # the same goal, from the detectors that met the false-alarm one
    assert set(quiet["detectors"]) == set(DETECTORS) - {"autoencoder"} and quiet["pass"] is True
    assert goals["autoencoder_compute"] == {"max_added_p50_us": 50.0, "pass": None, "reason": NOT_BUILT}
    assert "| baseline_offset | baseline 0.5 |" in out.with_suffix(".md").read_text()
    control = data["prediction_cusum_in_control"]  # the CUSUM's in-control figures against what it received
    assert set(control) == {"analyte_a_pct", "analyte_b_pct", "analyte_c_pct"}
    assert all(c["predictions"]["n"] == CLEAN + ONSET for c in control.values())
    assert "Prediction CUSUM in control?" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_scenario_is_refused_before_streaming(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["drift", "--bundle", str(committed(DEMO_V1)), "--dataset", str(tmp_path / "none.npz"),
               "--scenarios", "earthquake", "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == EXIT_REFUSED
    assert "expected scenarios among baseline_offset" in err and "got 'earthquake'" in err
    assert not (tmp_path / "x.json").exists()


def test_a_drift_setting_that_is_not_key_equals_toml_is_refused_before_streaming(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["drift", "--bundle", str(committed(DEMO_V1)), "--dataset", str(tmp_path / "none.npz"),
               "--edge-drift", "cusum_baseline_frames=0", "--edge-drift", "cusum_baseline_frames", "--json",
               str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == EXIT_REFUSED
    assert "expected --edge-drift KEY=VALUE with a TOML value, got 'cusum_baseline_frames'" in err
    assert not (tmp_path / "x.json").exists()


def test_the_in_control_check_standardises_received_predictions_and_references_with_the_bundle_figures() -> None:
    preds = {7: {"values": [{"name": "a", "value": 12.0}, {"name": "b", "value": 1.0}]},
             5: {"values": [{"name": "a", "value": 8.0}, {"name": "b", "value": None}]}}
    values = predicted_values(preds, ["a", "b"])
    np.testing.assert_array_equal(values, [[8.0, np.nan], [12.0, 1.0]])  # seq order; a missing value is NaN
    refs = np.array([[10.0, 0.0], [14.0, 2.0]])
    control = cusum_in_control(values, refs, ["a", "b"], mean=[10.0, 1.0], std=[2.0, 1.0])
    assert control["a"]["predictions"] == {"n": 2, "mean": 10.0, "std": 2.0, "z_mean": 0.0, "z_sd": 1.0}
    assert control["a"]["stream_references"]["z_mean"] == 1.0 and control["a"]["stream_references"]["z_sd"] == 1.0
    assert control["b"]["predictions"]["n"] == 1 and control["b"]["predictions"]["z_sd"] == 0.0


def test_each_spectrum_of_a_stream_is_an_independent_draw_of_the_selected_rows(tmp_path: Path) -> None:
    """Not the rows in one shuffled order repeated every len(rows) spectra: that repeats any alarming stretch."""
    n, frames = 10, 400
    np.savez(tmp_path / "rows.npz", X=np.arange(2.0 * n).reshape(n, 2), y=np.arange(float(n)).reshape(n, 1),
             wavelengths=np.array([1.0, 2.0]), target_names=np.array(["a"]), axis_unit=np.array("nm"))
    drawn = np.load(_independent_draws(tmp_path / "rows.npz", tmp_path / "s1" / "rows.npz", frames, seed=1))
    again = np.load(_independent_draws(tmp_path / "rows.npz", tmp_path / "s1b" / "rows.npz", frames, seed=1))
    other = np.load(_independent_draws(tmp_path / "rows.npz", tmp_path / "s2" / "rows.npz", frames, seed=2))
    y = drawn["y"][:, 0]
    assert drawn["X"].shape == (frames, 2) and np.array_equal(drawn["X"][:, 0], 2 * y)  # rows stay whole
    assert set(y) == set(range(n)) and str(drawn["axis_unit"]) == "nm"
    assert not np.array_equal(y[:n], y[n:2 * n])  # no period of len(rows)
    assert np.array_equal(y, again["y"][:, 0]) and not np.array_equal(y, other["y"][:, 0])  # seeded


def test_alerts_follow_raise_and_clear_across_the_monitors_of_one_detector() -> None:
    seqs = list(range(2, 22))  # 20 spectra after a dark (0) and a white (1)
    events = [
        {"event": "raised", "detector": "detector_temp", "seq": 5, "monitor_kind": "instrument"},
        {"event": "raised", "detector": "dark_level", "seq": 1, "monitor_kind": "instrument"},  # the dark frame
        {"event": "cleared", "detector": "detector_temp", "seq": 8, "monitor_kind": "instrument"},
        {"event": "raised", "detector": "prediction:a", "seq": 10, "monitor_kind": "model"},
        {"event": "cleared", "detector": "prediction:a", "seq": 12, "monitor_kind": "model"},
        {"event": "raised", "detector": "prediction:b", "seq": 15, "monitor_kind": "model"},
        {"event": "raised", "detector": "ood_t2", "seq": None, "monitor_kind": "model"},  # no seq: not placed
    ]
    raised, mask = alerts(events, seqs)
    # temp went up first (spectrum 3); the dark alert, from the dark frame before the spectra, came while it was up
    # (no second raise) and never cleared: the instrument health is in alert from spectrum 0 to the end.
    assert raised["instrument_health"] == [3] and bool(mask["instrument_health"].all())
    assert raised["prediction_cusum"] == [8, 13]
    assert np.flatnonzero(mask["prediction_cusum"]).tolist() == [8, 9, *range(13, 20)]
    assert raised["t2"] == [] and not mask["t2"].any()
    assert score_scenario([8, 13], onset=10, full_at=12) == {
        "detected": True, "delay_spectra": 1, "delay_from_onset_spectra": 3, "raised_at_spectrum": 13,
        "false_alarms_before_onset": 1}
    assert score_scenario([], onset=10, full_at=12)["detected"] is False


def test_a_spectrum_level_alert_is_its_own_detector_and_switching_it_off_says_so() -> None:
    seqs = list(range(2, 12))
    events = [{"event": "raised", "detector": "spectrum_level", "seq": 6, "monitor_kind": "signal"},
              {"event": "cleared", "detector": "spectrum_level", "seq": 9, "monitor_kind": "signal"}]
    raised, mask = alerts(events, seqs)
    assert raised["spectrum_level"] == [4] and np.flatnonzero(mask["spectrum_level"]).tolist() == [4, 5, 6]
    assert all(raised[d] == [] for d in DETECTORS if d != "spectrum_level")  # not the instrument health's
    runs = [{"ae_seen": False, "raised": {"autoencoder": []}}]
    assert _unavailable(runs, True, {"drift_overrides": {"spectrum_level_h_sigma": 0}}) == {
        "autoencoder": NOT_BUILT, "spectrum_level": LEVEL_OFF}
    assert _unavailable(runs, True, {"drift_overrides": {"spectrum_level_h_sigma": 8.0}}) == {"autoencoder": NOT_BUILT}


@pytest.mark.slow
def test_a_bundle_with_an_autoencoder_has_it_measured_as_a_detector(tmp_path: Path) -> None:
    """#16: with the committed bundle that carries an autoencoder, the ``autoencoder`` detector is scored like T2
    and Q (its ``ood_ae`` alert, its per-spectrum flag rate) instead of null ``not_built``."""
    from tests.support.trained import DEMO_AE

    out = tmp_path / "drift.json"
    rc = main(["drift", "--bundle", str(committed(DEMO_AE)), "--dataset", str(_synthetic_npz(tmp_path / "s.npz")),
               "--select", "split=test", "--scenarios", "baseline_offset", "--size", f"baseline_offset={LARGE_OFFSET}",
               "--onset", str(ONSET), "--ramp", str(RAMP), "--hold", str(HOLD), "--clean-streams", "1",
               "--clean-frames", str(CLEAN), "--broker", "mosquitto", "--json", str(out)])
    assert rc in (0, 1)
    data = json.loads(out.read_text())
    assert data["unavailable"] == {}
    ae = data["scenarios"]["baseline_offset"]["detectors"]["autoencoder"]
    assert DETECTOR_KEYS <= set(ae) and ae["detected"] is True  # the offset is far from every training spectrum
    assert ae["flag_share_at_full_size"] == 1.0
    assert data["detectors"]["autoencoder"]["false_alarm_rate"] == 0.0
    assert 0.0 <= data["detectors"]["autoencoder"]["flag_rate"] <= GOAL_FALSE_ALARM_RATE_MAX
    assert data["goals"]["autoencoder_compute"]["reason"] == "measured by spectro-bench latency"
