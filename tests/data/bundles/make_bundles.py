"""Regenerate the golden bundles of this folder (run by hand, never by the tests; needs TensorFlow).

    python tests/data/bundles/make_bundles.py

Writes ``v1_counts_two_targets.spectrolite``, a small signed format-version-1 bundle (64-channel counts-mode
pipeline, int8 model with two regression targets, OOD statistics and intervals), and ``v1_signing.pub.pem``,
the public half of a key pair made for the occasion (the private half is thrown away). The tests load the
committed bundle as it is: a reader change that stops format version 1, its pipeline spec or its golden vectors
from verifying fails them. Regenerate only for a deliberate format change, and say so in the change log.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

N_CHANNELS = 64
SEED = 11
DARK = 900.0
WHITE = 50000.0


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absorbance spectra of two Gaussian bands whose heights are the two targets, plus baseline and noise."""
    wl = np.linspace(1000.0, 1630.0, N_CHANNELS)
    y = rng.uniform(0.2, 1.0, size=(n, 2))
    band1 = np.exp(-0.5 * ((wl - 1200.0) / 40.0) ** 2)
    band2 = np.exp(-0.5 * ((wl - 1450.0) / 60.0) ** 2)
    base = rng.uniform(0.05, 0.3, size=(n, 1)) + rng.normal(0, 1e-4, size=(n, 1)) * (wl - wl.mean())
    A = base + y[:, :1] * band1 + y[:, 1:] * band2 + rng.normal(0, 2e-3, size=(n, N_CHANNELS))
    return A, y * 10.0, wl


def main() -> int:
    import keras

    from edge.intervals import IntervalModel
    from edge.ood import OodModel
    from edge.preprocess import SNV, Autoscale, CountsConversion, InputContract, Pipeline
    from trainer.bundle import (
        BundleIdentity,
        FitArtefacts,
        GoldenInputs,
        generate_keypair,
        hash_training_data,
        make_input_contract,
        write_bundle,
    )
    from trainer.quantize import convert_int8

    rng = np.random.default_rng(SEED)
    A, y, wl = synthetic(300, rng)
    counts = DARK + (WHITE - DARK) * np.power(10.0, -A)
    contract = InputContract.from_wavelengths(wl)
    counts_step = CountsConversion(quantity="absorbance", saturation_counts=65535.0)
    snv = Pipeline((counts_step, SNV()), contract).transform(counts, dark=np.full(N_CHANNELS, DARK),
                                                              reference=np.full(N_CHANNELS, WHITE))
    pipeline = Pipeline((counts_step, SNV(), Autoscale(mean=snv.mean(axis=0), scale=snv.std(axis=0))), contract)
    dark = np.full(N_CHANNELS, DARK)
    white = np.full(N_CHANNELS, WHITE)
    P = pipeline.transform(counts, dark=dark, reference=white)

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((N_CHANNELS, 1))
    h = keras.layers.Conv1D(4, 5, strides=2, activation="relu")(inp)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(2)(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(P[..., None], y, epochs=30, batch_size=32, verbose=0)
    tflite = convert_int8(model, P, subprocess=False, seed=SEED)

    mean = P.mean(axis=0)
    _, s, vt = np.linalg.svd(P - mean, full_matrices=False)
    ood = OodModel(mean=mean, components=vt[:3], explained_variance=s[:3] ** 2 / (P.shape[0] - 1),
                   t2_limit=15.0, q_limit=float(np.sum(s[3:] ** 2) / P.shape[0] * 3))
    intervals = IntervalModel(q_hat=np.array([0.5, 0.6]), coverage=0.9, target_names=("band1", "band2"),
                              n_calibration=50)
    with tempfile.TemporaryDirectory() as tmp:
        private, public = generate_keypair(tmp, name="v1_signing")
        path = write_bundle(
            HERE / "v1_counts_two_targets.spectrolite",
            identity=BundleIdentity(
                model_id="golden-v1",
                model_version="1.0.0",
                task="regression",
                targets=[("band1", "AU"), ("band2", "AU")],
                training_data_sha256=hash_training_data(counts, y),
                seed=SEED,
                created_utc="2026-11-22T00:00:00Z",
                library_versions={"python": "3.11", "numpy": np.__version__, "tensorflow": "2.21.0"},
            ),
            artefacts=FitArtefacts(
                tflite_bytes=tflite,
                pipeline=pipeline,
                wavelengths=wl,
                input_contract=make_input_contract(pixel_count_min=N_CHANNELS, wavelength_min=1000.0,
                                                   wavelength_max=1630.0, pixel_formats=["uint16"],
                                                   frame_signal="counts"),
                ood=ood,
                intervals=intervals,
            ),
            golden=GoldenInputs(inputs=counts[:4], dark=dark, reference=white, wavelengths=wl),
            metrics={"note": "golden bundle of format version 1 for the reader tests"},
            private_key_path=private,
        )
        (HERE / "v1_signing.pub.pem").write_bytes(public.read_bytes())
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
