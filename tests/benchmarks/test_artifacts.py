"""Reference models are found next to a bundle by their standard names; missing ones say why."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import artifacts


def test_find_references_by_name_and_reasons_for_missing(tmp_path: Path) -> None:
    (tmp_path / artifacts.FLOAT_NAME).write_bytes(b"x")
    (tmp_path / artifacts.PLS_NAME).write_bytes(b"x")
    (tmp_path / artifacts.MANIFEST_NAME).write_text(json.dumps(
        {"version": artifacts.ARTIFACTS_VERSION, "missing": {"pruned_int8_tflite": "pruning failed: reason"}}))
    refs = artifacts.find_references(tmp_path)
    assert refs.float_tflite == tmp_path / artifacts.FLOAT_NAME
    assert refs.pls_npz == tmp_path / artifacts.PLS_NAME
    assert refs.keras_path is None and "model.keras" in refs.missing["keras_path"]
    assert refs.pruned_int8_tflite is None and refs.missing["pruned_int8_tflite"] == "pruning failed: reason"


def test_counts_made_from_absorbance_convert_back() -> None:
    import numpy as np

    from edge.preprocess import CountsConversion

    A = np.array([[0.1, 0.5, 1.0, 2.0]])
    counts = artifacts.absorbance_to_counts(A)
    back = CountsConversion(quantity="absorbance").transform(
        counts[0], dark=np.full(4, artifacts.DARK_COUNTS), reference=np.full(4, artifacts.WHITE_COUNTS))
    assert np.allclose(back, A[0], atol=1e-12)
