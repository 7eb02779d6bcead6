"""Stage "int8 conversion": the CNN as an int8 ``.tflite`` (representative set: real training spectra), and the
predictions of PLS, the float CNN and the int8 CNN (edge preprocessing and LiteRT) on every role."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.pipeline.cnn import TrainedNetwork, cnn_predict
from trainer.pipeline.prepare import Prepared

log = logging.getLogger(__name__)

#: Predictions per (role, model name), model names as in :data:`trainer.pipeline.fit.MODELS`.
Predictions = dict[tuple[str, str], np.ndarray]


@dataclass(frozen=True)
class Int8Network:
    """The int8 CNN: ``tflite`` bytes, ``output_transform`` (regression: standardised outputs -> target units, the
    bundle's manifest entry; None for classification), ``output_step`` (one int8 output step in target units, or
    None), ``X_train_pre`` (the preprocessed, un-augmented training spectra) and ``runtime`` (the edge's
    :class:`~edge.runtime.ModelRuntime` running it)."""

    tflite: bytes
    output_transform: dict[str, list[float]] | None
    output_step: Any
    X_train_pre: np.ndarray
    runtime: Any


def convert_network(cfg: TrainConfig, data: Prepared, net: TrainedNetwork) -> Int8Network:
    """Convert the (pruned) CNN to int8."""
    from trainer.quantize import convert_int8

    X, tr = data.ds.X, data.plan.train_rows
    X_train_pre = net.pre.transform(X[tr])  # real, un-augmented training spectra: the representative set
    rng = np.random.default_rng(cfg.seed)
    n_rep = min(cfg.quantize.representative_samples, X_train_pre.shape[0])
    rep = X_train_pre[np.sort(rng.choice(X_train_pre.shape[0], n_rep, replace=False))]
    # Regression: the int8 model emits standardised targets, the edge turns them into units in float.
    cnn_transform = None
    to_convert = net.model
    if not data.classify:
        from trainer.models import standardised_output_copy

        to_convert = standardised_output_copy(net.model, net.trained.y_mean, net.trained.y_scale)
        cnn_transform = {"scale": [float(v) for v in np.reshape(net.trained.y_scale, -1)],
                         "offset": [float(v) for v in np.reshape(net.trained.y_mean, -1)]}
    tflite_int8 = convert_int8(to_convert, rep, subprocess=cfg.quantize.subprocess, seed=cfg.seed)
    rt = _runtime(tflite_int8, cnn_transform)
    output_step = rt.output_step
    if output_step is not None and not data.classify:
        log.info("int8 output step: %s", ", ".join(f"{t} {v:.3g}" for t, v in zip(data.ds.target_names, output_step)))
    return Int8Network(tflite=tflite_int8, output_transform=cnn_transform, output_step=output_step,
                       X_train_pre=X_train_pre, runtime=rt)


def predict_roles(data: Prepared, pls: Any, net: TrainedNetwork, int8: Int8Network) -> Predictions:
    """Predictions of PLS, the float CNN and the int8 CNN (edge preprocessing and LiteRT) on every role."""
    classify, X = data.classify, data.ds.X
    rt_cnn = int8.runtime
    preds: Predictions = {}
    for role, rows in data.plan.roles().items():
        preds[(role, "pls")] = pls.predict(X[rows]).astype(np.float64)
        preds[(role, "cnn_float")] = cnn_predict(net.model, net.role_pre[role], classify)
        out_q = np.asarray(rt_cnn.predict(net.edge_pipe.transform(X[rows])), dtype=np.float64).reshape(rows.size, -1)
        preds[(role, "cnn_int8")] = np.argmax(out_q, axis=1)[:, None].astype(np.float64) if classify else out_q
    return preds


def _runtime(tflite: bytes, transform: dict[str, list[float]] | None) -> Any:
    from edge.runtime import ModelRuntime

    return ModelRuntime(tflite, output_affine=None if transform is None else (transform["scale"], transform["offset"]))
