"""The prediction CUSUM's in-control figures through ``spectro-train fit``: the bundle's ``targets[i].training``
(read by the edge as ``Bundle.training_stats``) are the mean and spread of the deployed model's held-out
predictions as the declared line detector (``[instrument.noise]``) measures them, so the daemon's CUSUM, fed the
bundle's predictions of new in-distribution line spectra in an exchangeable order, stays near its nominal
false-alarm rate and still catches a shift of the predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.drift import DriftMonitor
from tests.support.tiny_fit import CONFIG, write_synthetic
from trainer.config import LineNoiseConfig, load_config
from trainer.line_noise import line_spectra
from trainer.pipeline import fit
from trainer.prediction_stats import prediction_stats

pytestmark = pytest.mark.slow

#: A noisy line detector (few counts per scan, one scan, references of one scan too): the noise it adds to each
#: prediction is as large as the spread of the targets, so the predictions' spread is far from the reference values'.
NOISE = {"averages": 1, "reference_averages": 1, "copies": 4, "read_noise_counts": 1500.0}
CUSUM_CONFIG = (CONFIG + '[selection]\nmodel = "pls"\n[instrument]\nsignal = "counts"\nquantity = "absorbance"\n'
                "[instrument.noise]\n" + "".join(f"{k} = {v}\n" for k, v in NOISE.items()))
#: Rows of the synthetic data set (3 replicates per sample).
ROWS = 900
#: Spectra per exchangeable in-distribution stream, and streams.
STREAM, STREAMS = 2000, 5
#: The daemon's default CUSUM (k 0.5, h 8) alarms on about 0.14 % of N(0, 1) spectra (in-control ARL about 10,500
#: spectra); the test rows' own mean differs from the training rows' by sampling: allow up to 1 % (the issue's goal).
MAX_UNDER_ALERT = 0.01
#: A shift of the predictions by one in-control standard deviation is caught within this many spectra (the CUSUM's
#: out-of-control run length for a 1-sigma shift at k 0.5, h 8 is about 17).
SHIFT_SIGMA, MAX_SHIFT_DELAY = 1.0, 50


@pytest.fixture(scope="module")
def noisy_fit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("cusumfit")
    write_synthetic(base / "synthetic.npz", n=ROWS)
    with np.load(base / "synthetic.npz") as z:  # 70 % of the samples to train on (the mean is known well enough)
        arrays = dict(z)
    sample = np.arange(ROWS) // 3
    arrays["split"] = np.where(sample < 0.7 * ROWS / 3, "cal", np.where(sample < 0.8 * ROWS / 3, "val", "test"))
    np.savez(base / "synthetic.npz", **arrays)
    write_synthetic(base / "new.npz", n=ROWS, seed=1)  # new samples of the same population: the line's
    (base / "train.toml").write_text(CUSUM_CONFIG)
    cfg = load_config(base / "train.toml")
    fit(cfg, base / "out")
    return {"bundle": load_bundle(base / "out" / "synthetic-conc.spectrolite"), "data": np.load(base / "synthetic.npz"),
            "new": np.load(base / "new.npz"), "noise": cfg.instrument.noise}


def _line_predictions(fitted: dict[str, Any], copies: int, seed: int) -> np.ndarray:
    """The bundle's predictions of new in-distribution spectra (samples it was not trained on) as the line detector
    measures them (copies x rows), through the bundle's own counts path."""
    b, d = fitted["bundle"], fitted["new"]
    rows = np.arange(d["X"].shape[0])
    noise: LineNoiseConfig = fitted["noise"]
    line = line_spectra(d["X"][rows].astype(np.float64), d["wavelengths"],
                        LineNoiseConfig(averages=noise.averages, reference_averages=noise.reference_averages,
                                        copies=copies, read_noise_counts=noise.read_noise_counts), seed=seed)
    return np.asarray(b.predict_signal(line.reshape(-1, line.shape[-1])), dtype=np.float64).reshape(-1)


def _under_alert(monitor: DriftMonitor, values: np.ndarray) -> tuple[float, int | None]:
    """Share of spectra under the prediction alert, and the index of the first alarm (None: none)."""
    under, first, raised = 0, None, False
    for i, v in enumerate(values):
        for ev in monitor.observe_prediction(i, values=[float(v)]):
            raised = ev.state.value == "raised"
            if raised and first is None:
                first = i
        under += raised
    return under / values.size, first


def test_the_bundle_centres_the_cusum_on_the_line_predictions_not_the_reference_values(
        noisy_fit: dict[str, Any]) -> None:
    b, d = noisy_fit["bundle"], noisy_fit["data"]
    stats = b.training_stats
    assert stats is not None and stats.names == ("conc_pct",)
    train = d["split"] == "cal"
    y_sd = float(np.std(d["y"][train, 0]))
    pred = _line_predictions(noisy_fit, copies=4, seed=7)  # new samples, new detector noise
    # The detector's noise makes the predictions spread wider than the references: the CUSUM must know it.
    facts = f"predictions {np.mean(pred):.3f} +/- {np.std(pred):.3f}, references sd {y_sd:.3f}, bundle {stats}"
    assert float(np.std(pred)) > 1.3 * y_sd, facts
    assert stats.std[0] == pytest.approx(float(np.std(pred)), rel=0.1), facts
    assert abs(stats.mean[0] - float(np.mean(pred))) < 0.15 * stats.std[0], facts  # other samples: their mean


def test_the_daemon_cusum_holds_its_false_alarm_rate_on_exchangeable_line_predictions_and_catches_a_shift(
        noisy_fit: dict[str, Any]) -> None:
    stats = noisy_fit["bundle"].training_stats
    assert stats is not None
    pool = _line_predictions(noisy_fit, copies=8, seed=11)
    rng = np.random.default_rng(3)
    rates = []
    for _ in range(STREAMS):  # exchangeable: every spectrum drawn independently from the held-out line predictions
        rate, _first = _under_alert(DriftMonitor(training=stats), rng.choice(pool, STREAM))
        rates.append(rate)
    assert float(np.mean(rates)) <= MAX_UNDER_ALERT, rates
    shifted = rng.choice(pool, 500) + SHIFT_SIGMA * stats.std[0]
    _rate, first = _under_alert(DriftMonitor(training=stats), shifted)
    assert first is not None and first <= MAX_SHIFT_DELAY


def test_prediction_stats_add_the_line_noise_to_the_held_out_predictions() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(100.0, 10.0, size=(400, 1))
    oof = 100.0 + 0.9 * (y - 100.0) + rng.normal(0, 3.0, size=y.shape)  # shrunk, with the model's own error
    fitted = 100.0 + 0.95 * (y - 100.0)
    line = fitted[None] + 0.5 + rng.normal(0, 8.0, size=(6, *y.shape))  # the detector's bias and noise
    (s,) = prediction_stats(y, oof, fitted, line)
    assert s.source == "out_of_fold+line_noise" and s.n == 400
    assert s.mean == pytest.approx(float(oof.mean()) + 0.5, abs=0.5)
    assert s.std == pytest.approx(float(np.sqrt(oof.var() + 64.0)), rel=0.05)
    assert s.line_noise_std == pytest.approx(8.0, rel=0.05)
    assert (s.reference_mean, s.reference_std) == (pytest.approx(float(y.mean())), pytest.approx(float(y.std())))
    (plain,) = prediction_stats(y, np.full(y.shape, np.nan), fitted)  # no usable out-of-fold predictions
    assert plain.source == "in_sample" and plain.std == pytest.approx(float(fitted.std())) and plain.line_noise_std == 0
