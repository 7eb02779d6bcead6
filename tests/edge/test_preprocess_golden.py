"""Golden preprocessing specs in tests/data/specs keep loading and keep giving the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.preprocess import Pipeline

SPECS_DIR = Path(__file__).resolve().parents[1] / "data" / "specs"
GOLDEN_NAMES = sorted(p.stem for p in SPECS_DIR.glob("v*.json"))

#: Allowed difference from the stored outputs, relative to the largest stored magnitude. Same machine and
#: library versions give exact equality; another machine may sum the dot products of the matrix steps (EMSC,
#: detrend, linear, autoscale after them) in another order (BLAS kernels, SIMD width), which changes results by
#: a few units in the last place times the number of terms: ~80 * 2.2e-16 = 2e-14 here. 1e-12 leaves a margin of
#: 50 while still catching any real change of formula, parameter or edge handling (those move values by >1e-6).
GOLDEN_RTOL = 1e-12


def test_there_are_golden_specs() -> None:
    assert {"v1_typical_chain", "v1_scatter_chain", "v1_resample_linear_stack", "v1_handwritten"} <= set(GOLDEN_NAMES)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_spec_gives_the_stored_output(name: str) -> None:
    pipeline = Pipeline.from_json((SPECS_DIR / f"{name}.json").read_text())
    with np.load(SPECS_DIR / f"{name}.npz") as d:
        arrays = {k: d[k] for k in d.files}
    expected = arrays.pop("expected")
    X = arrays.pop("X")
    got = pipeline.transform(X, **arrays)
    assert got.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= GOLDEN_RTOL * scale


@pytest.mark.parametrize("name", [n for n in GOLDEN_NAMES if n != "v1_handwritten"])
def test_golden_spec_is_rewritten_unchanged(name: str) -> None:
    text = (SPECS_DIR / f"{name}.json").read_text()
    assert Pipeline.from_json(text).to_spec() == json.loads(text)
