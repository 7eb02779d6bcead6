"""Evaluating calibration transfer: RMSEP on both instruments per method and number of transfer samples."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.errors import CalibrationError, DataError
from trainer.transfer.ds_pds import _check_pair, fit_transfer
from trainer.transfer.finetune import finetune_cnn
from trainer.transfer.model import FloatArray
from trainer.transfer.samples import paired_rows, select_transfer_samples

log = logging.getLogger(__name__)


def rmsep(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error of prediction."""
    a = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(y_pred, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"expected {a.size} predictions, got {b.size}")
    return float(math.sqrt(np.mean((a - b) ** 2)))


def evaluate_transfer(
    predict: Callable[[FloatArray], npt.ArrayLike],
    *,
    X_test_inst1: npt.ArrayLike,
    X_test_inst2: npt.ArrayLike,
    y_test: npt.ArrayLike,
    X_pool_master: npt.ArrayLike,
    X_pool_slave: npt.ArrayLike,
    n_transfer: Sequence[int] = (5, 10, 20),
    methods: Sequence[str] = ("ds", "pds"),
    model: str = "pls",
    selection: str = "kennard-stone",
    y_pool: npt.ArrayLike | None = None,
    finetune: Callable[[FloatArray, FloatArray, FloatArray], Callable[[FloatArray], npt.ArrayLike]] | None = None,
    seed: int = 0,
    fit_kwargs: Mapping[str, Any] | None = None,
    output: int = 0,
) -> list[dict[str, Any]]:
    """Instrument-2 RMSEP before and after calibration transfer, for ``spectro-bench accuracy`` ``transfer`` rows.

    Parameters
    ----------
    predict : callable
        Absorbance spectra of the master's domain (n, p) -> predictions (n,) or (n, 1), for one target; for
        example ``PlsBaseline.predict`` or ``Bundle.predict_spectra`` of the int8 bundle.
    X_test_inst1, X_test_inst2 : ndarray, shape (m, p)
        Test spectra of the same samples on instrument 1 and 2 (rows need not be paired).
    y_test : ndarray, shape (m,)
        Their reference values (the same for both instruments when the rows are paired).
    X_pool_master, X_pool_slave : ndarray, shape (k, p)
        Paired candidate transfer samples, from the training rows only (see :func:`pair_by_sample_id`).
    n_transfer : sequence of int
        Transfer-set sizes; the first ``n`` of the Kennard-Stone order (nested sets).
    methods : sequence of {"ds", "pds"}
    model : str
        Label written in the rows (``pls``, ``cnn_int8``, ...).
    selection : {"kennard-stone", "random"}
    y_pool : ndarray, shape (k,), optional
        Reference values of the pool; needed by ``finetune``.
    finetune : callable, optional
        ``finetune(X_slave_transfer, y_transfer, X_master_transfer) -> predict_fn`` evaluated as method
        ``finetune`` (the predict function gets raw instrument-2 absorbance).
    seed : int
        Seed of a random selection.
    fit_kwargs : dict, optional
        Passed to :func:`fit_transfer`.
    output : int
        Column of the predictions evaluated (the target's position in a multi-target model).

    Returns
    -------
    list of dict
        One row per (method, n_transfer) plus a ``none`` row (``n_transfer`` 0); keys ``method``, ``n_transfer``,
        ``model``, ``rmsep_inst1``, ``rmsep_inst2``, and ``window`` for PDS.
    """
    X1 = np.asarray(X_test_inst1, dtype=np.float64)
    X2 = np.asarray(X_test_inst2, dtype=np.float64)
    y = np.asarray(y_test, dtype=np.float64).ravel()
    Pm, Ps = _check_pair(X_pool_master, X_pool_slave)

    def pred(fn: Callable[[FloatArray], npt.ArrayLike], X: FloatArray) -> np.ndarray:
        return np.asarray(fn(X), dtype=np.float64).reshape(X.shape[0], -1)[:, output]

    r1 = rmsep(y, pred(predict, X1))
    rows: list[dict[str, Any]] = [
        {
            "method": "none", "n_transfer": 0, "model": model, "rmsep_inst1": r1,
            "rmsep_inst2": rmsep(y, pred(predict, X2)),
        }
    ]
    order = select_transfer_samples(Pm, max(n_transfer), method=selection, seed=seed)
    for n in n_transfer:
        idx = order[:n]
        for method in methods:
            t = fit_transfer(Pm[idx], Ps[idx], method=method, **dict(fit_kwargs or {}))
            row = {
                "method": method,
                "n_transfer": int(n),
                "model": model,
                "rmsep_inst1": r1,
                "rmsep_inst2": rmsep(y, pred(predict, t.transform(X2))),
            }
            if t.window is not None:
                row["window"] = t.window
            rows.append(row)
            log.info("transfer %s n=%d %s: inst2 RMSEP %.4g (inst1 %.4g)", method, n, model, row["rmsep_inst2"], r1)
        if finetune is not None:
            if y_pool is None:
                raise CalibrationError("finetune needs y_pool, the reference values of the transfer pool")
            yp = np.asarray(y_pool, dtype=np.float64).ravel()
            fn = finetune(Ps[idx], yp[idx], Pm[idx])
            rows.append(
                {
                    "method": "finetune",
                    "n_transfer": int(n),
                    "model": model,
                    "rmsep_inst1": rmsep(y, pred(fn, X1)),
                    "rmsep_inst2": rmsep(y, pred(fn, X2)),
                }
            )
    return rows


def transfer_rows_for_run(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    instrument: npt.ArrayLike,
    sample_id: npt.ArrayLike,
    train_rows: npt.ArrayLike,
    test_rows: npt.ArrayLike,
    master: Any = 1,
    slave: Any = 2,
    pls_predict: Callable[[FloatArray], npt.ArrayLike] | None = None,
    bundle_path: str | Path | None = None,
    keras_model: Any = None,
    n_transfer: Sequence[int] = (5, 10, 20),
    methods: Sequence[str] = ("ds", "pds"),
    finetune_epochs: int = 15,
    seed: int = 0,
    output: int = 0,
) -> list[dict[str, Any]]:
    """``transfer`` rows of ``spectro-bench accuracy`` for one training run (PLS, int8 CNN, CNN fine-tuning).

    Parameters
    ----------
    X : ndarray, shape (n_rows, p)
        All spectra of the dataset (absorbance), both instruments.
    y : ndarray, shape (n_rows,)
        The target evaluated (one column).
    instrument, sample_id : ndarray, shape (n_rows,)
    train_rows, test_rows : ndarray of bool, shape (n_rows,), or indices
        Rows of the training and of the test split (either instrument; they are paired by ``sample_id``). Transfer
        samples come from the training split only.
    master, slave
        Instrument values.
    pls_predict : callable, optional
        Absorbance (n, p) -> predictions of the target (e.g. ``PlsBaseline.predict`` of a one-target run); rows
        with ``model`` ``pls``.
    bundle_path : str or Path, optional
        The run's bundle; its int8 model through the edge pipeline and LiteRT gives rows with ``model``
        ``cnn_int8``.
    keras_model : keras.Model, optional
        The run's float CNN; with ``bundle_path`` adds ``finetune`` rows (fine-tuned copy, converted to int8,
        run by the edge runtime). Slow: one fine-tuning and conversion per transfer-set size.
    n_transfer, methods, seed
        As :func:`evaluate_transfer`.
    output : int
        Position of the target among the outputs of ``pls_predict`` and of the bundle (multi-target models).
        Fine-tuning trains on ``y`` for that output only, so it is offered for single-output models only.

    Returns
    -------
    list of dict
        Rows with keys ``method``, ``n_transfer``, ``model``, ``rmsep_inst1``, ``rmsep_inst2`` (and ``window``).
    """
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64).reshape(Xa.shape[0], -1)[:, 0]
    inst = np.asarray(instrument)
    sid = np.asarray(sample_id)

    def mask(rows: npt.ArrayLike) -> np.ndarray:
        r = np.asarray(rows)
        return r.astype(bool) if r.dtype == bool else np.isin(np.arange(Xa.shape[0]), r)

    pm, ps = paired_rows(Xa.shape[0], inst, sid, master=master, slave=slave, rows=mask(train_rows))
    tm, ts = paired_rows(Xa.shape[0], inst, sid, master=master, slave=slave, rows=mask(test_rows))
    pool_y = ya[pm]
    common: dict[str, Any] = {
        "X_test_inst1": Xa[tm],
        "X_test_inst2": Xa[ts],
        "y_test": ya[tm],
        "X_pool_master": Xa[pm],
        "X_pool_slave": Xa[ps],
        "n_transfer": n_transfer,
        "methods": methods,
        "seed": seed,
        "output": output,
    }
    rows: list[dict[str, Any]] = []
    if pls_predict is not None:
        rows += evaluate_transfer(pls_predict, model="pls", **common)
    if bundle_path is not None:
        from edge.bundle import load_bundle

        bundle = load_bundle(bundle_path)
        cnn_bundle = bundle.metrics.get("deployed_model", "cnn") == "cnn"
        finetune = None
        if keras_model is not None and cnn_bundle:
            if int(keras_model.output_shape[-1]) != 1:
                raise CalibrationError("fine-tuning comparison needs a single-output CNN; pass keras_model=None")
            finetune = _int8_finetuner(keras_model, bundle, Xa[pm], pool_y, finetune_epochs, seed)
        per_target = bundle.serving is not None  # each target from its winner or a blend (format 4 or 5)
        rows += evaluate_transfer(bundle.predict_signal, model="cnn_int8" if cnn_bundle else
                                  "per_target_bundle" if per_target else "pls_bundle",
                                  y_pool=pool_y, finetune=finetune, **common)
    return rows


def _int8_finetuner(
    keras_model: Any, bundle: Any, X_anchor: FloatArray, y_anchor: np.ndarray, epochs: int, seed: int
) -> Callable[[FloatArray, FloatArray, FloatArray], Callable[[FloatArray], npt.ArrayLike]]:
    """``finetune`` callable for :func:`evaluate_transfer`: fine-tune, convert to int8, run through the bundle."""
    from edge.runtime import ModelRuntime
    from trainer.quantize import convert_int8

    shape = tuple(int(v) for v in keras_model.input_shape[1:])
    anchor_pre = bundle.preprocess_signal(X_anchor).reshape((-1, *shape))

    def run(Xs: FloatArray, ys: FloatArray, Xm: FloatArray) -> Callable[[FloatArray], npt.ArrayLike]:
        tuned = finetune_cnn(
            keras_model, bundle.preprocess_signal(Xs).reshape((-1, *shape)), ys, X_anchor_pre=anchor_pre,
            y_anchor=y_anchor, epochs=epochs, seed=seed,
        )
        runtime = ModelRuntime(convert_int8(tuned, anchor_pre, subprocess=False))
        return lambda A: runtime.predict(bundle.preprocess_signal(A).reshape((-1, *shape)))

    return run
