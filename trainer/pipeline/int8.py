"""Stage "int8 conversion": the CNN as an int8 ``.tflite`` (representative set: real training spectra), and the
predictions of PLS, the float CNN and the int8 CNN (edge preprocessing and LiteRT) on every role.

Regression CNNs are converted with each calibration variant of :mod:`trainer.quant_ranges`; the one kept is the
one whose int8 outputs (run by the edge runtime) stay closest to the float network on the training and selection
rows (RMS difference in standardised target units, :data:`FIDELITY_ROLES`), never on test rows; the plain
conversion is kept unless a variant is closer by more than :data:`MIN_GAIN`. The 16-bit-activation conversion
(:data:`trainer.quant_ranges.WIDE`) replaces the int8 model kept so where that model's RMS difference from the float
network, in target units, exceeds :data:`MAX_GAP` of the CNN's own error on some target (its out-of-fold RMSE
from the CNN cross-validation, else its float RMSE on the selection rows, else on the training rows) and the wide
conversion is closer to the float network by more than :data:`MIN_GAIN`.

Classification CNNs get the same candidates (without headroom: the softmax output's range is fixed) and
:func:`choose_class_calibration` counts, on the same rows, the spectra whose int8 class differs from the float
network's: the plain conversion is kept unless a variant changes fewer (or as many, with probabilities closer by
more than :data:`MIN_GAIN`), and the 16-bit-activation conversion replaces it where it still changes any and the
wide one changes fewer. A classifier whose int8 rounding moves no training or selection spectrum across a class
boundary stays full int8."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import RuntimeLoadError
from trainer.config import TrainConfig
from trainer.errors import TrainerError
from trainer.pipeline.cnn import TrainedNetwork, cnn_predict
from trainer.pipeline.prepare import Prepared

log = logging.getLogger(__name__)

#: Predictions per (role, model name), model names as in :data:`trainer.pipeline.fit.MODELS`.
Predictions = dict[tuple[str, str], np.ndarray]
#: Roles whose spectra choose the calibration variant (never a test split).
FIDELITY_ROLES = ("train", "select")
#: A calibration variant replaces the plain conversion only when its RMS difference from the float network is
#: smaller by more than this share (the plain conversion wins near-ties).
MIN_GAIN = 0.02
#: The int8 model is kept while its RMS difference from the float network stays within this share of the CNN's own
#: error on every target. Rounding errors of that size are a small random function of the spectrum: on
#: tecator_fat_moisture, weight perturbations with a gap of 0.07 of the error moved test int8 / float between 0.98
#: and 1.03 (about 0.45 x the gap), so 0.05 keeps it near the 1.02 goal. The gap is measured on the model as
#: converted, ``[quantize] headroom`` included: the headroom's coarser step counts, its benefit beyond the
#: calibration range cannot, so a model near the limit crosses it with the headroom (wheat: 0.047 -> 0.054).
MAX_GAP = 0.05


@dataclass(frozen=True)
class Int8Network:
    """The int8 CNN: ``tflite`` bytes, ``output_transform`` (regression: standardised outputs -> target units, the
    bundle's manifest entry; None for classification), ``output_step`` (one int8 output step in target units, or
    None), ``X_train_pre`` (the preprocessed, un-augmented training spectra), ``runtime`` (the edge's
    :class:`~edge.runtime.ModelRuntime` running it) and ``calibration`` (the ``metrics.json``
    ``cnn_int8_calibration`` entry: each candidate's RMS difference from the float network, a classifier's also
    the rows whose class it changes, and the one kept)."""

    tflite: bytes
    output_transform: dict[str, list[float]] | None
    output_step: Any
    X_train_pre: np.ndarray
    runtime: Any
    calibration: dict[str, Any] | None = None


def convert_network(cfg: TrainConfig, data: Prepared, net: TrainedNetwork,
                    cv_rmse: np.ndarray | None = None) -> Int8Network:
    """Convert the (pruned) CNN to int8; ``cv_rmse`` is the CNN recipe's out-of-fold RMSE per target (or None)."""
    from trainer.quantize import convert_int8_candidates

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

        mean, scale = np.reshape(net.trained.y_mean, -1), np.reshape(net.trained.y_scale, -1)
        if not net.trained.config.standardize_y:  # trained in units: the int8 head is standardised all the same
            y = np.asarray(data.ds.y[tr], dtype=np.float64).reshape(tr.size, -1)
            mean, scale = y.mean(axis=0), np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        to_convert = standardised_output_copy(net.model, mean, scale)
        cnn_transform = {"scale": [float(v) for v in scale], "offset": [float(v) for v in mean]}
    roles = data.plan.roles()
    fid_roles = [r for r in FIDELITY_ROLES if r in roles]
    rows = np.concatenate([roles[r] for r in fid_roles])
    X_fid = net.pre.transform(X[rows])
    headroom = 0.0 if data.classify else cfg.quantize.headroom
    wide_wanted = cfg.quantize.int16x8 != "never"
    candidates = convert_int8_candidates(to_convert, rep, X_fid, subprocess=cfg.quantize.subprocess, seed=cfg.seed,
                                         int16x8=wide_wanted, headroom=headroom)
    float_out = cnn_predict(to_convert, X_fid, False)
    if data.classify:
        tflite_int8, calibration = choose_class_calibration(candidates, net.edge_pipe.transform(X[rows]), float_out,
                                                            roles=fid_roles, wide_wanted=wide_wanted)
    else:
        error, source = _cnn_error(data, net, cv_rmse)
        tflite_int8, calibration = choose_calibration(candidates, net.edge_pipe.transform(X[rows]), float_out,
                                                      roles=fid_roles, y_scale=scale,  # the head's, set above
                                                      cnn_error=error,
                                                      error_source=source, wide_wanted=wide_wanted)
    calibration["int16x8"] = cfg.quantize.int16x8
    calibration["headroom"] = headroom
    rt = _runtime(tflite_int8, cnn_transform)
    output_step = rt.output_step
    if output_step is None and cnn_transform is not None:  # int16x8: the step of the tensor its output dequantises
        from trainer.quant_ranges import output_scale

        tensor_scale = output_scale(tflite_int8)
        output_step = None if tensor_scale is None else tensor_scale * np.abs(np.asarray(cnn_transform["scale"]))
    if output_step is not None and not data.classify:
        log.info("int8 output step: %s", ", ".join(f"{t} {v:.3g}" for t, v in zip(data.ds.target_names, output_step)))
    return Int8Network(tflite=tflite_int8, output_transform=cnn_transform, output_step=output_step,
                       X_train_pre=X_train_pre, runtime=rt, calibration=calibration)


def _cnn_error(data: Prepared, net: TrainedNetwork, cv_rmse: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The CNN's own error per target (target units) that the int8 gap is measured against, and where it comes
    from: the out-of-fold RMSE, else the float network's RMSE on the selection rows, else on the training rows."""
    if cv_rmse is not None:
        return np.asarray(cv_rmse, dtype=np.float64).reshape(-1), "cnn_cv_rmse"
    role = "select" if data.plan.select_rows.size else "train"
    rows = data.plan.roles()[role]
    pred = cnn_predict(net.model, net.role_pre[role], False)
    return np.sqrt(np.mean((pred - data.ds.y[rows]) ** 2, axis=0)), f"cnn_float_rmse_{role}"


def choose_calibration(candidates: list[tuple[str, bytes]], X_edge: np.ndarray, float_std: np.ndarray,
                       roles: Sequence[str] = FIDELITY_ROLES, *, y_scale: Any = None, cnn_error: Any = None,
                       error_source: str = "", wide_wanted: bool = True) -> tuple[bytes, dict[str, Any]]:
    """The int8 candidate closest to the float network (or the wide one, see the module), and the ``metrics.json``
    ``cnn_int8_calibration`` entry.

    Parameters
    ----------
    candidates : list of (str, bytes)
        ``(name, int8 .tflite)``, the plain conversion first (:func:`trainer.quantize.convert_int8_candidates`).
    X_edge : ndarray, shape (n, ...)
        The fidelity rows through the edge's preprocessing (what the runtime is fed on the line).
    float_std : ndarray, shape (n, n_targets)
        The float network's standardised outputs on the same rows.
    roles : sequence of str
        The roles those rows come from (``train`` alone when ``[split]`` names no select rows).
    y_scale, cnn_error : array_like, shape (n_targets,), optional
        Target units per standardised unit, and the CNN's own error in target units; without both the wide
        conversion is never taken.
    error_source : str
        Where ``cnn_error`` comes from, for the entry.
    wide_wanted : bool
        False for ``[quantize] int16x8 = "never"``: keeping the int8 model is then said at INFO, not warned.

    Returns
    -------
    bytes, dict
        The kept model, and ``{"criterion", "rows", "rms_std": {name: value}, "rms_std_per_target",
        "int8_chosen", "gap_to_error", "max_gap", "error", "error_source", "chosen", "refused"}``.

    Raises
    ------
    TrainerError
        When the edge runtime runs none of the int8 candidates. A candidate it cannot run (XNNPACK refuses some
        requantisation scales) is left out, logged, and named with the reason in ``refused``.
    """
    from trainer.quant_ranges import WIDE

    outs, refused = _run_candidates(candidates, X_edge, float_std.shape)
    rms = {k: float(np.sqrt(np.mean((out - float_std) ** 2))) for k, out in outs.items()}
    per_target = {k: [float(v) for v in np.sqrt(np.mean((out - float_std) ** 2, axis=0)).reshape(-1)]
                  for k, out in outs.items()}
    int8_rms = {k: v for k, v in rms.items() if k != WIDE}
    plain = next(name for name, _ in candidates if name in int8_rms)  # the plain conversion, unless refused
    best = min(int8_rms, key=lambda k: int8_rms[k])
    chosen = int8_chosen = best if rms[best] < (1.0 - MIN_GAIN) * rms[plain] else plain
    gap = None
    if y_scale is not None and cnn_error is not None:
        err = np.asarray(cnn_error, dtype=np.float64).reshape(-1)
        units = np.asarray(per_target[int8_chosen]) * np.abs(np.asarray(y_scale, dtype=np.float64).reshape(-1))
        gap = [float(v) for v in np.where(err > 0, units / np.where(err > 0, err, 1.0), np.inf)]
        if WIDE in rms and max(gap) > MAX_GAP and rms[WIDE] < (1.0 - MIN_GAIN) * rms[int8_chosen]:
            chosen = WIDE
        elif WIDE not in rms and max(gap) > MAX_GAP:
            _int8_kept(f"the int8 model's gap to the float network is {', '.join(f'{g:.3g}' for g in gap)} of the "
                       f"CNN's error (limit {MAX_GAP:g})", refused, wide_wanted)
    on = _rows_named(roles)
    log.info("int8 calibration variants, RMS difference from the float network (standardised, %d %s): %s; kept %s%s",
             X_edge.shape[0], on, ", ".join(f"{k} {v:.4g}" for k, v in rms.items()), chosen,
             "" if gap is None else f" (gap of {int8_chosen} / CNN error: {', '.join(f'{g:.3g}' for g in gap)}, "
             f"limit {MAX_GAP:g})")
    entry = {"criterion": f"rms of int8 - float standardised outputs on the {on}", "roles": list(roles),
             "rows": int(X_edge.shape[0]), "min_gain": MIN_GAIN, "rms_std": rms, "rms_std_per_target": per_target,
             "int8_chosen": int8_chosen, "gap_to_error": gap, "max_gap": MAX_GAP,
             "error": None if cnn_error is None else [float(v) for v in np.reshape(cnn_error, -1)],
             "error_source": error_source or None, "chosen": chosen, "int16x8_built": WIDE in rms,
             "refused": refused}
    return dict(candidates)[chosen], entry


def choose_class_calibration(candidates: list[tuple[str, bytes]], X_edge: np.ndarray, float_prob: np.ndarray,
                             roles: Sequence[str] = FIDELITY_ROLES,
                             wide_wanted: bool = True) -> tuple[bytes, dict[str, Any]]:
    """The conversion of a classification CNN (see the module): the int8 candidate that changes the float
    network's class on the fewest fidelity rows, or the wide one where that int8 model still changes some and the
    wide one fewer; and the ``metrics.json`` ``cnn_int8_calibration`` entry (``flips``: rows whose class differs,
    per candidate; ``rms_prob``: RMS difference of the class probabilities).

    Raises
    ------
    TrainerError
        When the edge runtime runs none of the int8 candidates (as :func:`choose_calibration`).
    """
    from trainer.quant_ranges import WIDE

    outs, refused = _run_candidates(candidates, X_edge, float_prob.shape)
    want = np.argmax(float_prob, axis=1)
    flips = {k: int(np.count_nonzero(np.argmax(out, axis=1) != want)) for k, out in outs.items()}
    rms = {k: float(np.sqrt(np.mean((out - float_prob) ** 2))) for k, out in outs.items()}
    int8 = [k for k in outs if k != WIDE]
    plain = int8[0]  # the plain conversion, unless refused
    best = min(int8, key=lambda k: (flips[k], rms[k]))
    better = flips[best] < flips[plain] or (flips[best] == flips[plain] and rms[best] < (1.0 - MIN_GAIN) * rms[plain])
    chosen = int8_chosen = best if better else plain
    if flips[int8_chosen] and WIDE in flips and flips[WIDE] < flips[int8_chosen]:
        chosen = WIDE
    on = _rows_named(roles)
    if flips[int8_chosen] and WIDE not in flips:
        _int8_kept(f"the int8 model changes the float network's class on {flips[int8_chosen]} of {X_edge.shape[0]} "
                   f"{on}", refused, wide_wanted)
    log.info("int8 calibration variants, %s whose class differs from the float network's: %s; kept %s",
             f"of {X_edge.shape[0]} {on}", ", ".join(f"{k} {v}" for k, v in flips.items()), chosen)
    entry = {"criterion": f"rows whose class differs from the float network's, of the {on}", "roles": list(roles),
             "rows": int(X_edge.shape[0]), "min_gain": MIN_GAIN, "flips": flips, "rms_prob": rms,
             "int8_chosen": int8_chosen, "gap_to_error": None, "chosen": chosen, "int16x8_built": WIDE in flips,
             "refused": refused}
    return dict(candidates)[chosen], entry


def _rows_named(roles: Sequence[str]) -> str:
    """``training and selection rows``, or ``training rows``: the fidelity rows in words."""
    where = {"train": "training", "select": "selection"}
    return " and ".join(where.get(r, r) for r in roles) + " rows"


def _int8_kept(why: str, refused: dict[str, str], wide_wanted: bool) -> None:
    """Say why the int8 model is kept where its rounding called for the wide conversion: the config asked for none
    (INFO), the edge runtime refused it, or it was not built (the converter's reason is logged above)."""
    from trainer.quant_ranges import WIDE

    if not wide_wanted:
        log.info('%s; [quantize] int16x8 = "never": the int8 model is kept', why)
    elif WIDE in refused:
        log.warning("%s, but the edge runtime cannot run the %s conversion (%s): the int8 model is kept", why, WIDE,
                    refused[WIDE])
    else:
        log.warning("%s, but no %s conversion was built (the reason is logged above): the int8 model is kept", why,
                    WIDE)


def _run_candidates(candidates: list[tuple[str, bytes]], X_edge: np.ndarray,
                    shape: tuple[int, ...]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each candidate's outputs on ``X_edge`` (edge runtime), and the reasons of those it cannot run.

    Raises
    ------
    TrainerError
        When it runs none of the int8 ones.
    """
    from trainer.quant_ranges import WIDE

    outs: dict[str, np.ndarray] = {}
    refused: dict[str, str] = {}
    for name, model_bytes in candidates:
        try:
            out = np.asarray(_runtime(model_bytes, None).predict(X_edge), dtype=np.float64)
        except (RuntimeLoadError, RuntimeError, ValueError) as exc:  # e.g. XNNPACK: a requantisation scale it refuses
            refused[name] = str(exc)
            log.warning("int8 calibration variant %s left out: the edge runtime cannot run it (%s)", name, exc)
            continue
        outs[name] = out.reshape(shape)
    if not any(k != WIDE for k in outs):
        raise TrainerError("int8 conversion: the edge runtime cannot run any int8 conversion of the CNN ("
                           + "; ".join(f"{k}: {v}" for k, v in refused.items()) + ")")
    return outs, refused


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
