"""The simulator's provoked ``noise`` and ``product`` drifts (firmware_bridge/simulator/scenarios.py): nothing before
the onset, the stated share along the ramp, full size after it, through the device and the ``spectro-sim`` options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.cli import _config, build_parser
from firmware_bridge.physics import absorbance_from_counts
from firmware_bridge.simulator import ProvokedDriftConfig, SimulatorConfig, SimulatorError, VirtualSpectrometer
from firmware_bridge.simulator.scenarios import other_product
from firmware_bridge.synthetic import make_synthetic_dataset

ONSET, RAMP = 10, 20
#: Relative tolerance on a noise standard deviation estimated from one 256-pixel spectrum.
NOISE_SD_REL = 0.15


def _device(kind: str, size: float | None = None, *, product_dataset: str | None = None,
            product_split: str | None = None) -> VirtualSpectrometer:
    config = SimulatorConfig(seed=3, synthetic_samples=40, drift=ProvokedDriftConfig(
        drift_at_frame=ONSET, drift_kind=kind, drift_size=size, drift_ramp_frames=RAMP,
        product_dataset=product_dataset, product_split=product_split))
    return VirtualSpectrometer.from_config(config)


def test_noise_rises_along_the_ramp_and_leaves_the_detector_noise_alone() -> None:
    noisy, clean = _device("noise", 0.05), VirtualSpectrometer.from_config(
        SimulatorConfig(seed=3, synthetic_samples=40))
    for k in range(ONSET):
        assert np.array_equal(noisy.sample_absorbance(k), clean.sample_absorbance(k))
    half = noisy.sample_absorbance(ONSET + RAMP // 2 - 1) - clean.sample_absorbance(ONSET + RAMP // 2 - 1)
    full = noisy.sample_absorbance(ONSET + RAMP + 5) - clean.sample_absorbance(ONSET + RAMP + 5)
    assert float(np.std(half)) == pytest.approx(0.025, rel=NOISE_SD_REL)
    assert float(np.std(full)) == pytest.approx(0.05, rel=NOISE_SD_REL)
    # The detector's own noise draws do not move: before the onset both devices send the same counts.
    for _ in range(ONSET):
        assert np.array_equal(noisy.spectrum()[0].counts, clean.spectrum()[0].counts)


def test_product_change_mixes_in_the_other_product_up_to_all_of_it() -> None:
    device = _device("product")
    other = other_product(device.config, device.axis)
    x = device.absorbance
    assert not np.allclose(other[: len(x)], x[: len(other)], atol=0.05)  # another product indeed
    assert np.array_equal(device.sample_absorbance(ONSET - 1), x[ONSET - 1])
    k = ONSET + RAMP // 2 - 1  # half way
    assert np.allclose(device.sample_absorbance(k), 0.5 * x[k % len(x)] + 0.5 * other[k % len(other)])
    k = ONSET + RAMP + 3
    assert np.allclose(device.sample_absorbance(k), other[k % len(other)])
    # Through the detector: the host's absorbance follows the other product once the change is complete.
    dark, reference = device.dark(), device.reference()
    for _ in range(k):
        device.spectrum()
    a = absorbance_from_counts(device.spectrum()[0].counts, dark.counts, reference.counts)
    assert float(np.median(np.abs(a - other[k % len(other)]))) < 0.01


def test_product_dataset_is_resampled_onto_the_axis_and_must_cover_it(tmp_path: Path) -> None:
    d = make_synthetic_dataset(30, seed=9, n_channels=512, wavelength_range_nm=(850.0, 1750.0))
    np.savez(tmp_path / "other.npz", **{k: np.asarray(v) for k, v in d.items()})
    device = _device("product", 0.5, product_dataset=str(tmp_path / "other.npz"), product_split="test")
    rows = np.asarray(d["X"], dtype=np.float64)[np.asarray(d["split"]) == "test"]
    k = ONSET + RAMP
    expected = 0.5 * device.absorbance[k % 40] + 0.5 * np.interp(device.axis, d["wavelengths"], rows[k % len(rows)])
    assert np.allclose(device.sample_absorbance(k), expected)

    narrow = make_synthetic_dataset(30, seed=9, n_channels=64, wavelength_range_nm=(1000.0, 1600.0))
    np.savez(tmp_path / "narrow.npz", **{k: np.asarray(v) for k, v in narrow.items()})
    with pytest.raises(SimulatorError, match="expected a product dataset covering the device's axis 900-1700, "
                                             "got 1000-1600"):
        _device("product", product_dataset=str(tmp_path / "narrow.npz"))
    with pytest.raises(SimulatorError, match="expected product rows with split 'nope'"):
        _device("product", product_dataset=str(tmp_path / "other.npz"), product_split="nope")


@pytest.mark.parametrize(("kind", "size", "message"), [
    ("product", 1.5, r"expected a product change size \(fraction mixed in\) in \(0, 1\], got 1.5"),
    ("noise", -0.1, "expected a non-negative noise size"),
])
def test_bad_sizes_are_refused(kind: str, size: float, message: str) -> None:
    with pytest.raises(SimulatorError, match=message):
        ProvokedDriftConfig(drift_at_frame=0, drift_kind=kind, drift_size=size)


def test_cli_options_reach_the_config() -> None:
    args = build_parser().parse_args(["--pty", "--drift-at", "100", "--drift-kind", "product", "--drift-ramp", "50",
                                      "--product-dataset", "other.npz", "--product-split", "test"])
    drift = _config(args).drift
    assert (drift.drift_kind, drift.drift_at_frame, drift.drift_ramp_frames, drift.size) == ("product", 100, 50, 1.0)
    assert (drift.product_dataset, drift.product_split) == ("other.npz", "test")
    noise = _config(build_parser().parse_args(["--pty", "--drift-at", "5", "--drift-kind", "noise"])).drift
    assert noise.size == 0.01
