"""The ``spectrum_level`` drift monitor: each spectrum's level before the scatter corrections (the mean absorbance
over the model's range), watched by a self-starting CUSUM.

SNV, MSC and derivatives remove a constant added to every pixel's absorbance before the model, T2, Q and the
prediction CUSUM see it; a lamp that lost light while the white reference was not retaken adds exactly such a
constant.  Here: the pipeline's level is the mean absorbance over its crop, bit for bit the same in a batch as
alone; the engine's predictions carry it; a daemon fed the simulator's lamp loss raises ``spectrum_level`` (kind
``signal``), stays quiet on the same stream without it, shows the baseline in its metrics, and can be switched off.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.drift import DriftKind, DriftMonitor, DriftMonitorConfig, DriftState, level_cusum
from edge.errors import ConfigError
from edge.inference import InferenceEngine, Prediction
from edge.preprocess import SNV, CountsConversion, Crop, InputContract, Pipeline, SavitzkyGolay
from edge.publish.schema import validate
from edge.references import ReferenceSet, ReferenceSpectrum
from tests.support.daemon import CHANNELS, SAMPLES, SEED, DemoBundles, edge_config
from tests.support.inprocess import feed, inprocess_daemon


def _lamp_stream(n: int, *, lamp_at: int | None, size: float = 0.3) -> list[Any]:
    """What the simulator sends in its first session: status, dark, white, ``n`` spectra; from spectrum
    ``lamp_at`` on (a step) the lamp gives ``size`` less light and the white reference is not retaken."""
    from firmware_bridge.simulator import ProvokedDriftConfig, SimulatorConfig, VirtualSpectrometer

    drift = ProvokedDriftConfig(drift_at_frame=lamp_at, drift_kind="lamp", drift_size=size, drift_ramp_frames=1)
    dev = VirtualSpectrometer.from_config(SimulatorConfig(seed=SEED, synthetic_samples=SAMPLES,
                                                          synthetic_channels=CHANNELS, drift=drift))
    return [*dev.session_start(), *(dev.stream_next()[0] for _ in range(n))]


# ------------------------------------------------------------------------------------------------ pipeline
def _counts_pipeline() -> Pipeline:
    return Pipeline((CountsConversion(), Crop(2, 10), SNV(), SavitzkyGolay(5, 2, 1)), InputContract(n_channels=12))


def test_the_level_is_the_mean_absorbance_over_the_crop_and_the_output_is_transforms() -> None:
    rng = np.random.default_rng(3)
    dark, white = np.full(12, 100.0), np.full(12, 60000.0)
    X = rng.uniform(5000.0, 50000.0, (6, 12))
    p = _counts_pipeline()
    assert p.level_index == 2
    for x in X:
        out, level = p.transform_level(x, dark=dark, reference=white)
        assert np.array_equal(out, p.transform(x, dark=dark, reference=white))
        assert level.shape == () and float(level) == pytest.approx(
            np.mean(-np.log10((x[2:10] - dark[2:10]) / (white[2:10] - dark[2:10]))), rel=1e-12)
    out, levels = p.transform_level(X, dark=dark, reference=white, rows=True)
    assert np.array_equal(out, p.transform_rows(X, dark=dark, reference=white))
    singles = [float(p.transform_level(x, dark=dark, reference=white)[1]) for x in X]
    assert levels.tolist() == singles  # a batch's rows get the very bits each gets alone
    # SNV removes a constant added to every pixel's absorbance: the level is what still sees it (30 % less light)
    out2, levels2 = p.transform_level(dark + 0.7 * (X - dark), dark=dark, reference=white, rows=True)
    assert np.allclose(out2, out, atol=1e-9)
    assert np.allclose(levels2 - levels, -np.log10(0.7), atol=1e-9)


def test_a_pipeline_without_instrument_steps_levels_its_input() -> None:
    p = Pipeline((SNV(),), InputContract(n_channels=4))
    out, level = p.transform_level(np.array([1.0, 2.0, 3.0, 5.0]))
    assert p.level_index == 0 and float(level) == 2.75 and np.array_equal(out, p.transform([1.0, 2.0, 3.0, 5.0]))
    with pytest.raises(Exception, match=r"expected a batch of spectra \(m, n\)"):
        p.transform_level(np.ones(4), rows=True)


# ------------------------------------------------------------------------------------------------ engine
def test_the_engine_carries_each_spectrums_level_the_same_in_a_batch_as_alone(demo_bundles: DemoBundles) -> None:
    frames = _lamp_stream(8, lamp_at=4)
    status, dark, white, *spectra = frames
    engine = InferenceEngine(load_bundle(demo_bundles.v1), clock=lambda: 0.0)
    refs = ReferenceSet().with_spectrum(ReferenceSpectrum.from_frame(dark, captured_at_s=0.0)).with_spectrum(
        ReferenceSpectrum.from_frame(white, captured_at_s=0.0))
    axis = status.wavelengths_nm()
    alone = [engine.process(s, refs, wavelengths_nm=axis, now_s=0.0) for s in spectra]
    together = engine.process_many(spectra, refs, wavelengths_nm=axis, now_s=0.0)
    assert all(isinstance(o, Prediction) and o.level is not None for o in [*alone, *together])
    assert [o.level for o in together] == [o.level for o in alone]  # type: ignore[union-attr]  # predictions
    levels = np.array([o.level for o in alone])  # type: ignore[union-attr]  # predictions (asserted above)
    assert levels[4:].mean() - levels[:4].mean() == pytest.approx(-np.log10(0.7), abs=0.05)


# ------------------------------------------------------------------------------------------------ monitor
def test_a_model_change_ends_a_raised_level_alert_and_learns_the_level_again() -> None:
    mon = DriftMonitor(DriftMonitorConfig(level=level_cusum(h_sigma=4.0, baseline_samples=20, warmup_samples=0)))
    rng = np.random.default_rng(5)
    events = [ev for i, v in enumerate([*rng.normal(1.0, 0.01, 40), *rng.normal(1.1, 0.01, 10)])
              for ev in mon.observe_prediction(i, level=float(v))]
    assert [(e.monitor, e.kind, e.state) for e in events] == [("spectrum_level", DriftKind.SIGNAL, DriftState.RAISED)]
    assert mon.active() == ["spectrum_level"] and mon.level is not None
    assert mon.level.baseline()["learned"] == 20 and mon.level.baseline()["mean"] == pytest.approx(1.0, abs=0.01)
    ended = mon.set_training(None, seq=49, reason="a new model")
    assert [(e.monitor, e.state) for e in ended] == [("spectrum_level", DriftState.CLEARED)]
    assert mon.active() == [] and mon.level.baseline()["learned"] == 0 and mon.level.baseline()["learning"]


def test_the_level_cusum_cannot_be_given_fixed_figures() -> None:
    with pytest.raises(ConfigError, match="self-starting"):
        DriftMonitorConfig(level=dataclasses.replace(level_cusum(), baseline_samples=0))


# ------------------------------------------------------------------------------------------------ daemon
def _level_messages(link: Any) -> list[dict[str, Any]]:
    return [m for k, m, _ in link.messages if k.value == "drift" and m["detector"] == "spectrum_level"]


@pytest.mark.parametrize("batched", [True, False])
def test_the_daemon_raises_spectrum_level_on_a_lamp_loss_and_not_without_it(
        tmp_path: Path, demo_bundles: DemoBundles, batched: bool) -> None:
    drift = {"spectrum_level_baseline_frames": 100, "min_frames": 20}
    lamp, link = inprocess_daemon(tmp_path / "lamp", demo_bundles.v1, drift=drift)
    feed(lamp, _lamp_stream(200, lamp_at=140), batched=batched)
    raised = _level_messages(link)
    assert raised and raised[0]["event"] == "raised" and raised[0]["monitor_kind"] == "signal"
    assert 140 < raised[0]["seq"] <= 160 and raised[0]["threshold"] == 12.0
    validate(raised[0], strict=True)
    gauges = lamp.metrics_payload(1.0)["gauges"]
    assert gauges["drift_spectrum_level_baseline_learning"] == 0.0
    assert gauges["drift_spectrum_level_baseline_learned"] == 100.0 and gauges["drift_spectrum_level"] >= 12.0
    assert gauges["drift_spectrum_level_baseline_std"] > 0.0
    clean, link2 = inprocess_daemon(tmp_path / "clean", demo_bundles.v1, drift=drift)
    feed(clean, _lamp_stream(200, lamp_at=None), batched=batched)
    assert _level_messages(link2) == []
    assert clean.metrics_payload(1.0)["gauges"]["drift_spectrum_level"] < 12.0


def test_line_frames_raise_spectrum_level_at_the_same_spectrum_as_single_frames(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    """A LINE frame's spectra feed the level as single spectra do (one engine batch per line)."""
    from firmware_bridge.frames import Line, Spectrum

    drift = {"spectrum_level_baseline_frames": 100, "min_frames": 20}
    frames = _lamp_stream(200, lamp_at=140)
    head, spectra = frames[:3], [f for f in frames[3:] if isinstance(f, Spectrum)]
    lines = [Line(seq=chunk[0].seq, timestamp_us=chunk[0].timestamp_us,
                  integration_time_us=chunk[0].integration_time_us, counts=np.stack([s.counts for s in chunk]),
                  averages=chunk[0].averages, detector_temp_c=chunk[0].detector_temp_c)
             for chunk in (spectra[i:i + 25] for i in range(0, len(spectra), 25))]
    single, link = inprocess_daemon(tmp_path / "single", demo_bundles.v1, drift=drift)
    feed(single, [*head, *(s for line in lines for s in line.spectra())])
    lined, link2 = inprocess_daemon(tmp_path / "lines", demo_bundles.v1, drift=drift, lines={"publish": "line"})
    feed(lined, [*head, *lines])
    assert lined.counters.snapshot()["lines_in"] == len(lines) == 8
    got, want = _level_messages(link2), _level_messages(link)
    assert want and want[0]["monitor_kind"] == "signal"
    assert [(m["event"], m["seq"], m["statistic"]) for m in got] == [(m["event"], m["seq"], m["statistic"])
                                                                     for m in want]


def test_spectrum_level_h_sigma_0_switches_it_off(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    daemon, link = inprocess_daemon(tmp_path / "off", demo_bundles.v1,
                                    drift={"spectrum_level_h_sigma": 0.0, "spectrum_level_baseline_frames": 100})
    feed(daemon, _lamp_stream(200, lamp_at=140))
    assert _level_messages(link) == [] and daemon.drift.level is None
    assert not any(n.startswith("drift_spectrum_level") for n in daemon.metrics_payload(1.0)["gauges"])


@pytest.mark.parametrize(("key", "value", "match"), [
    ("spectrum_level_baseline_frames", 5, r"drift.spectrum_level_baseline_frames.*20.*5"),
    ("spectrum_level_h_sigma", -1.0, r"drift.spectrum_level_h_sigma.*-1"),
])
def test_the_config_refuses_a_bad_spectrum_level_setting(tmp_path: Path, demo_bundles: DemoBundles, key: str,
                                                         value: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        edge_config(tmp_path, port_url="loop://", bundle_path=demo_bundles.v1, drift={key: value})
