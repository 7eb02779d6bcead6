"""Batched invokes of ModelRuntime on the committed models: one interpreter call per chunk of rows, bit for bit the
single-row outputs, and row by row for a model that refuses a batch axis or is not exact in batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge.bundle import load_bundle
from edge.runtime import BATCH_SIZES, InterpreterInfo, ModelRuntime, load_interpreter_class
from tests.support.trained import (
    DEMO_ABSORBANCE,
    DEMO_V1,
    FTIR_BUNDLE,
    TABLETS_BUNDLE,
    TABLETS_CLASS_INT8,
    TABLETS_FLOAT,
    TABLETS_INT8,
    TabletModels,
    committed,
    tablet_models,
)

#: Batch sizes the issue asks about, plus one past the largest chunk (a full chunk and a padded one).
SIZES = (1, 2, 7, 64, 70)


@pytest.fixture(scope="module")
def models(datasets_dir: Path) -> TabletModels:
    return tablet_models(datasets_dir)


def _rows(x: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """``n`` rows from ``x``, repeated when it has fewer, each row a little different."""
    reps = -(-n // x.shape[0])
    tiled = np.concatenate([x * (1.0 + 0.01 * k) for k in range(reps)])
    return tiled[:n]


def _singles(rt: ModelRuntime, q: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.stack([rt.invoke_quantized(row).copy() for row in q])


def _check_exact(rt: ModelRuntime, features: npt.NDArray[np.float64]) -> None:
    for n in SIZES:
        q = rt.quantize(_rows(features, n))
        batch = rt.invoke_quantized(q)
        np.testing.assert_array_equal(batch, _singles(rt, q), err_msg=f"batch of {n}")
        np.testing.assert_array_equal(rt.predict(_rows(features, n)), rt.dequantize(batch))


@pytest.mark.parametrize(
    ("path", "whole"),
    [(TABLETS_INT8, False), (TABLETS_FLOAT, False), (TABLETS_CLASS_INT8, True)],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_committed_models_batch_bit_exact(models: TabletModels, path: Path, whole: bool) -> None:
    rt = ModelRuntime(committed(path).read_bytes())
    _check_exact(rt, models.X_pre_test)
    assert rt.batches_invoked_whole is whole
    if whole:
        assert rt.batch_refusal is None
    else:
        # the tablets regression graph reshapes to a fixed batch of 1: a resized input still gives one output row
        assert rt.batch_refusal is not None and "expected an output of shape (64, 1) for 64 rows" in rt.batch_refusal


@pytest.mark.parametrize("path", [DEMO_V1, DEMO_ABSORBANCE, FTIR_BUNDLE, TABLETS_BUNDLE], ids=lambda p: p.name)
def test_committed_bundles_batch_bit_exact_after_the_golden_check(path: Path) -> None:
    bundle = load_bundle(committed(path))
    assert bundle.self_test is not None
    rt = bundle.runtime
    # the loader already decided on the golden vectors
    assert rt.batches_invoked_whole is (path != TABLETS_BUNDLE)
    _check_exact(rt, np.asarray(bundle.golden.preprocessed, dtype=np.float64))
    want = ("batches: row by row, each prediction as for one spectrum alone (this model refused a batch: expected an "
            "output of shape (64, 1) for 64 rows, got (1, 1))"
            if path == TABLETS_BUNDLE else "batches: one invoke per chunk of rows")
    assert want in bundle.describe().splitlines()


class _Counting:
    """Wraps the real interpreter class: counts invokes per batch size and can corrupt batched outputs."""

    invokes: dict[int, int] = {}
    corrupt_batches = False

    def __init__(self, **kwargs: Any) -> None:
        self._real = load_interpreter_class().interpreter_class(**kwargs)
        self._rows = 1

    def resize_tensor_input(self, index: int, shape: Any, strict: bool = False) -> None:
        self._real.resize_tensor_input(index, shape, strict=strict)
        self._rows = int(shape[0])

    def invoke(self) -> None:
        _Counting.invokes[self._rows] = _Counting.invokes.get(self._rows, 0) + 1
        self._real.invoke()

    def get_tensor(self, index: int) -> Any:
        out = self._real.get_tensor(index)
        if _Counting.corrupt_batches and self._rows > 1:
            out = out.copy()
            out[0] = out[0] + 1  # first row of every batch off by one step
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture()
def counting() -> InterpreterInfo:
    _Counting.invokes = {}
    _Counting.corrupt_batches = False
    return InterpreterInfo(name="counting", version="0", interpreter_class=_Counting)


def test_a_batch_is_one_invoke_per_chunk(models: TabletModels, counting: InterpreterInfo) -> None:
    rt = ModelRuntime(committed(TABLETS_CLASS_INT8).read_bytes(), interpreter_info=counting)
    assert rt.check_batching(models.X_pre_test)
    _Counting.invokes = {}
    rt.predict(_rows(models.X_pre_test, 64))
    assert _Counting.invokes == {64: 1}
    _Counting.invokes = {}
    rt.predict(_rows(models.X_pre_test, 70))  # 64 + 6 padded to 8
    assert _Counting.invokes == {64: 1, 8: 1}
    assert max(BATCH_SIZES) == 64


def test_a_model_not_exact_in_batch_runs_row_by_row(models: TabletModels, counting: InterpreterInfo) -> None:
    _Counting.corrupt_batches = True
    rt = ModelRuntime(committed(TABLETS_CLASS_INT8).read_bytes(), interpreter_info=counting)
    assert rt.check_batching(models.X_pre_test) is False
    assert rt.batch_refusal == "a batch of 64 gives row 0 another output than a single-row invoke"
    _Counting.invokes = {}
    q = rt.quantize(_rows(models.X_pre_test, 7))
    np.testing.assert_array_equal(rt.invoke_quantized(q), _singles(rt, q))
    assert set(_Counting.invokes) == {1}


def test_the_first_batch_checks_when_nobody_did(models: TabletModels, counting: InterpreterInfo) -> None:
    rt = ModelRuntime(committed(TABLETS_CLASS_INT8).read_bytes(), interpreter_info=counting)
    assert rt.batches_invoked_whole is None
    rt.predict(models.X_pre_test[:1])  # one row: no check needed
    assert rt.batches_invoked_whole is None
    rt.predict(_rows(models.X_pre_test, 3))
    assert rt.batches_invoked_whole is True
