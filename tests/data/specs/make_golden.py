"""Writes a golden preprocessing spec (``<name>.json``) with its inputs and expected outputs (``<name>.npz``).

Golden files are written once, with the ``spec_version`` current at the time, and never regenerated: the test
``tests/edge/test_preprocess_golden.py`` requires that every one keeps loading and giving the same numbers.
To add a golden for a new format version, add a builder below and run
``python tests/data/specs/make_golden.py NAME``; existing files are never overwritten.

Inputs are small synthetic spectra made here (Gaussian bands on a sloping baseline), not copies of a dataset.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.preprocess import (
    EMSC,
    MSC,
    SNV,
    Autoscale,
    CountsConversion,
    Crop,
    Detrend,
    InputContract,
    LinearTransfer,
    MeanCenter,
    Normalize,
    Pipeline,
    Resample,
    SavitzkyGolay,
    Stack,
)

HERE = Path(__file__).resolve().parent
N_CHANNELS = 80
AXIS_NM = 1000.0 + 2.0 * np.arange(N_CHANNELS)


def synthetic_absorbance(n: int, seed: int) -> np.ndarray:
    """``n`` smooth absorbance spectra on :data:`AXIS_NM`: three Gaussian bands, offset, slope and noise."""
    rng = np.random.default_rng(seed)
    t = (AXIS_NM - AXIS_NM.mean()) / np.ptp(AXIS_NM)
    bands = [(1040.0, 12.0), (1090.0, 20.0), (1130.0, 8.0)]
    X = np.empty((n, N_CHANNELS))
    for i in range(n):
        x = 0.3 + rng.normal(0.0, 0.05) + rng.normal(0.0, 0.1) * t
        for centre, width in bands:
            x = x + rng.uniform(0.2, 1.0) * np.exp(-0.5 * ((AXIS_NM - centre) / width) ** 2)
        X[i] = x + rng.normal(0.0, 1e-3, N_CHANNELS)
    return X


def typical_chain() -> tuple[Pipeline, dict[str, np.ndarray]]:
    """counts -> absorbance, SNV, Savitzky-Golay first derivative, crop, autoscale (the benchmarked chain)."""
    rng = np.random.default_rng(11)
    A = synthetic_absorbance(6, 1)
    dark = np.round(800.0 + rng.normal(0.0, 4.0, N_CHANNELS))
    white = np.round(dark + 50000.0 + rng.normal(0.0, 100.0, N_CHANNELS))
    counts = np.round(dark + (white - dark) * 10.0 ** (-A))
    head = (CountsConversion("absorbance", 1e-6, 65535.0), SNV(), SavitzkyGolay(7, 2, 1, 2.0), Crop(5, 75))
    Z = Pipeline(head, InputContract(N_CHANNELS)).transform(counts, dark=dark, reference=white)
    steps = (*head, Autoscale(Z.mean(axis=0), Z.std(axis=0)))
    pipe = Pipeline(steps, InputContract.from_wavelengths(AXIS_NM))
    return pipe, {"X": counts, "dark": dark, "reference": white}


def scatter_chain() -> tuple[Pipeline, dict[str, np.ndarray]]:
    """MSC, EMSC with an interferent, detrend, area normalisation, mean-centring."""
    A = synthetic_absorbance(8, 2)
    ref = A.mean(axis=0)
    water = np.exp(-0.5 * ((AXIS_NM - 1100.0) / 25.0) ** 2)
    steps: list[Any] = [MSC(ref), EMSC(ref, 2, water[None, :]), Detrend(1, N_CHANNELS), Normalize("area")]
    Z = Pipeline(tuple(steps), InputContract(N_CHANNELS)).transform(A)
    steps.append(MeanCenter(Z.mean(axis=0)))
    return Pipeline(tuple(steps), InputContract.from_wavelengths(AXIS_NM)), {"X": A}


def resample_linear_stack() -> tuple[Pipeline, dict[str, np.ndarray]]:
    """Resample from a shifted device axis, a linear transfer, and a stack of five channels (all savgol modes)."""
    rng = np.random.default_rng(5)
    device_axis = AXIS_NM + 0.37
    A = synthetic_absorbance(4, 3)
    grid = np.arange(1004.0, 1150.0, 2.5)
    k = grid.shape[0]
    F = np.eye(k) + rng.normal(0.0, 0.01, (k, k))
    steps = (
        Resample(grid, "nm"),
        LinearTransfer(F, rng.normal(0.0, 0.01, k)),
        Stack(
            (
                (),
                (SNV(1),),
                (SNV(), SavitzkyGolay(5, 2, 2, 2.5, "mirror")),
                (SavitzkyGolay(9, 3, 1, 1.0, "nearest"),),
                (SavitzkyGolay(11, 4, 0, 1.0, "wrap"),),
            )
        ),
    )
    contract = InputContract(None, float(grid.min()), float(grid.max()), "nm", 1.25)
    return Pipeline(steps, contract), {"X": A, "wavelengths": device_axis}


BUILDERS: dict[str, Callable[[], tuple[Pipeline, dict[str, np.ndarray]]]] = {
    "v1_typical_chain": typical_chain,
    "v1_scatter_chain": scatter_chain,
    "v1_resample_linear_stack": resample_linear_stack,
}


def expected_for_handwritten(name: str) -> None:
    """Inputs/expected for a spec written by hand (``<name>.json`` must exist; only the .npz is written)."""
    pipe = Pipeline.from_json((HERE / f"{name}.json").read_text())
    X = synthetic_absorbance(5, 4)
    np.savez(HERE / f"{name}.npz", X=X, expected=pipe.transform(X))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help=f"golden names: {', '.join(BUILDERS)} or a hand-written spec")
    args = parser.parse_args(argv)
    for name in args.names:
        npz = HERE / f"{name}.npz"
        if npz.exists():
            print(f"{npz.name} exists; golden files are never overwritten", file=sys.stderr)
            return 1
        if name in BUILDERS:
            pipe, inputs = BUILDERS[name]()
            context = {k: v for k, v in inputs.items() if k != "X"}
            expected = pipe.transform(inputs["X"], **context)
            (HERE / f"{name}.json").write_text(pipe.to_json() + "\n")
            np.savez(npz, expected=expected, **inputs)  # type: ignore[arg-type]  # numpy's stubs type np.savez's keyword arrays narrowly
        else:
            expected_for_handwritten(name)
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
