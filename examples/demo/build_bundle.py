"""Build the demo's example bundle with the trainer's own code on the simulator's synthetic spectra.

The spectra are exactly those ``spectro-sim`` streams without ``--dataset`` (``firmware_bridge.synthetic`` with the
same seed, sample count and channel count), so the bundle and the simulator agree on the wavelength axis and the
analytes.  The model is a PLS regression (scikit-learn, as in the trainer's baseline) on smoothed, centred absorbance,
exported as one dense layer and converted to a full-integer int8 ``.tflite`` by :func:`trainer.quantize.convert_int8`;
the preprocessing starts with a counts -> absorbance conversion, so the device feeds it raw detector counts with the
dark and white references the simulator sends.  OOD limits come from :func:`trainer.drift.fit_ood`, intervals from
:func:`trainer.conformal.fit_intervals` on held-out rows, and :func:`trainer.bundle.write_bundle` writes the zip and
re-loads it with the edge reader (hashes, golden vectors) before it replaces the target file.

Usage::

    python examples/demo/build_bundle.py --out demo.spectrolite [--seed 0] [--samples 500] [--channels 256]

Prints the bundle path on stdout.  Used by ``spectro-edge demo`` (run in a child process: TensorFlow never enters
the daemon) and by the daemon's end-to-end tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from pathlib import Path
from typing import Sequence

if typing.TYPE_CHECKING:
    import numpy as np

#: Preprocessing after the counts conversion: smoothing (detector noise would dominate the Q residual) and centring.
PREPROCESSING = [{"op": "savgol", "window": 15, "polyorder": 2}, {"op": "center"}]
#: PLS latent variables of the demo model.
N_COMPONENTS = 8
#: Share of the synthetic rows held out to calibrate the intervals.
CALIBRATION_FRACTION = 0.25
#: Offset between the synthetic data's seed and the seed of the detector noise of the training acquisitions.
NOISE_SEED_OFFSET = 1000
#: Training acquisitions take a new dark and white reference every this many spectra (their noise is part of
#: what the OOD limits must accept).
ROWS_PER_SESSION = 10
#: Nominal coverage of the prediction intervals.
COVERAGE = 0.9
#: Flat dark and white levels (counts) used to express the golden vectors as raw counts.
GOLDEN_DARK_COUNTS = 1000.0
GOLDEN_WHITE_COUNTS = 50000.0


def _acquire(X_true: "np.ndarray", wl: "np.ndarray", y: "np.ndarray", *, seed: int) -> "np.ndarray":
    """The absorbance the device will report for each row: counts from the simulator's detector model (its own
    noise seed), converted back with its dark and white references, so the model and its OOD limits are fitted on
    spectra with real detector noise, not on the noise-free generator output."""
    import numpy as np

    from edge.preprocess import CountsConversion
    from firmware_bridge.frames import Dark, Reference
    from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer

    dev = VirtualSpectrometer(X_true, wl, y, SimulatorConfig(seed=seed))
    conv = CountsConversion(quantity="absorbance")
    rows = []
    for start in range(0, len(X_true), ROWS_PER_SESSION):  # new dark/white per session, as on the line
        refs = [f for f in dev.session_start() if isinstance(f, (Dark, Reference))]
        dark = np.asarray(refs[0].counts, dtype=np.float64)
        white = np.asarray(refs[1].counts, dtype=np.float64)
        for _ in range(min(ROWS_PER_SESSION, len(X_true) - start)):
            counts = np.asarray(dev.spectrum()[0].counts, dtype=np.float64)
            rows.append(conv.transform(counts, dark=dark, reference=white))
    return np.stack(rows)


def build(out: Path, *, seed: int = 0, samples: int = 500, channels: int = 256, model_version: str = "1.0.0") -> Path:
    """Build and write the bundle; returns its path (see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    from sklearn.cross_decomposition import PLSRegression

    from edge.preprocess import CountsConversion
    from firmware_bridge.synthetic import make_synthetic_dataset
    from trainer.bundle import hash_training_data, write_bundle
    from trainer.conformal import fit_intervals
    from trainer.drift import fit_ood
    from trainer.preprocessing import make_pipeline_from_config
    from trainer.quantize import convert_int8

    data = make_synthetic_dataset(samples, seed=seed, n_channels=channels)
    X_true = np.asarray(data["X"], dtype=np.float64)
    y = np.asarray(data["y"], dtype=np.float64)
    wl = np.asarray(data["wavelengths"], dtype=np.float64)
    X = _acquire(X_true, wl, y, seed=seed + NOISE_SEED_OFFSET)
    names = [str(n) for n in data["target_names"]]
    rng = np.random.default_rng(seed)
    calib = rng.random(len(X)) < CALIBRATION_FRACTION
    X_fit, y_fit, X_cal, y_cal = X[~calib], y[~calib], X[calib], y[calib]

    tp = make_pipeline_from_config(PREPROCESSING, wavelengths=wl).fit(X_fit)
    P_fit = tp.transform(X_fit)
    P_cal = tp.transform(X_cal)
    pls = PLSRegression(n_components=N_COMPONENTS, scale=False).fit(P_fit, y_fit)
    coef = np.asarray(pls.coef_, dtype=np.float64)
    coef = coef.T if coef.shape == (y.shape[1], P_fit.shape[1]) else coef  # (n_features, n_targets)
    intercept = np.asarray(pls.predict(np.zeros((1, P_fit.shape[1]))), dtype=np.float64).reshape(-1)

    keras.utils.set_random_seed(seed)
    inp = keras.Input((P_fit.shape[1],))
    dense = keras.layers.Dense(y.shape[1])
    model = keras.Model(inp, dense(inp))
    dense.set_weights([coef.astype(np.float32), intercept.astype(np.float32)])
    tflite = convert_int8(model, P_fit, subprocess=False, seed=seed)

    edge_pipeline = tp.to_edge()
    edge_pipeline = edge_pipeline.insert(0, CountsConversion(quantity="absorbance"))
    resid = y_cal - pls.predict(P_cal)
    intervals = fit_intervals(resid, COVERAGE, target_names=names)
    ood = fit_ood(P_fit, variance=0.999, alpha=0.01)

    golden_rows = np.linspace(0, len(X_cal) - 1, 8).astype(int)
    dark = np.full(channels, GOLDEN_DARK_COUNTS)
    white = np.full(channels, GOLDEN_WHITE_COUNTS)
    golden_counts = dark + (white - dark) * np.power(10.0, -X_cal[golden_rows])
    metrics = {
        "model": "pls_int8",
        "n_components": N_COMPONENTS,
        "rmsep_calibration": [float(v) for v in np.sqrt(np.mean(resid**2, axis=0))],
        "training": {"y_mean": [float(v) for v in y_fit.mean(axis=0)], "y_std": [float(v) for v in y_fit.std(axis=0)]},
        "data": {"generator": "firmware_bridge.synthetic", "seed": seed, "samples": samples, "channels": channels},
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_bundle(
        out,
        model_id="synthetic-demo",
        model_version=model_version,
        task="regression",
        targets=[(n, "%") for n in names],
        wavelengths=wl,
        tflite_bytes=tflite,
        pipeline=edge_pipeline,
        metrics=metrics,
        golden_inputs=golden_counts,
        golden_dark=dark,
        golden_reference=white,
        golden_wavelengths=wl,
        training_data_sha256=hash_training_data(X, y),
        seed=seed,
        ood=ood,
        intervals=intervals,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="bundle file to write (.spectrolite)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (= spectro-sim --seed)")
    p.add_argument("--samples", type=int, default=500, help="= spectro-sim --synthetic-samples")
    p.add_argument("--channels", type=int, default=256, help="= spectro-sim --synthetic-channels")
    p.add_argument("--model-version", default="1.0.0")
    args = p.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    path = build(args.out, seed=args.seed, samples=args.samples, channels=args.channels,
                 model_version=args.model_version)
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
