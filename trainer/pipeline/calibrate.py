"""Stage "OOD + intervals": the deployed model's OOD model (PCA on its preprocessed training spectra) and, for
regression, conformal intervals from the held-out residuals of every calibration row (a deployed PLS: nested CV,
its preprocessing and latent variables chosen again in every fold); in a per-target bundle each target's
residuals come from the model that serves it (a blended target: the same blend of both models' held-out
predictions), the OOD model from the primary member's features."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.errors import TrainerError
from trainer.pipeline.choose import Deployed, nested_pls_oof
from trainer.pipeline.cnn import CnnCv
from trainer.pipeline.prepare import Prepared

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """The ``ood`` model, the ``intervals`` (None for classification) and where their calibration rows came
    from (``rows``: ``select`` and ``train_out_of_fold`` counts; empty for classification), how the training
    rows' out-of-fold predictions were made (``out_of_fold``: ``"nested"``, the deployed PLS chosen again in every
    fold; ``"fixed_recipe"``, the champion's cross-validation of the chosen CNN recipe; ``"none"``), and the
    ``autoencoder`` (:class:`trainer.autoencoder.FittedAutoencoder`; None unless ``[ood] autoencoder``)."""

    ood: Any
    intervals: Any = None
    rows: dict[str, int] = field(default_factory=dict)
    autoencoder: Any = None
    out_of_fold: str = "none"
    #: In-control distribution of the deployed model's predictions per target (regression; the manifest's
    #: ``targets[i].training``, read by the edge's prediction CUSUM): :func:`trainer.prediction_stats.prediction_stats`.
    predictions: Any = None
    #: The held-out residuals the intervals were calibrated on, shape (n, n_targets) (None for classification).
    residuals: Any = None


def line_copies(cfg: TrainConfig, data: Prepared, rows: np.ndarray, *, seed_offset: int = 0) -> np.ndarray:
    """``rows`` of the dataset as the declared line detector (``[instrument.noise]``) measures them, shape
    (copies, n, channels), in the training quantity."""
    from trainer.line_noise import line_spectra

    assert cfg.instrument.noise is not None
    return line_spectra(data.ds.X[rows], data.wavelengths_nm, cfg.instrument.noise, quantity=cfg.instrument.quantity,
                        min_ratio=data.min_ratio, seed=cfg.seed + seed_offset)


def noise_inputs(cfg: TrainConfig, data: Prepared, rows: np.ndarray, transform: Any) -> Any:
    """What the OOD model needs to score each spectrum under its own detector noise
    (:class:`trainer.drift.NoiseInputs`): the per-pixel variances of ``rows`` as the declared line detector
    measures them and the Jacobian of ``transform`` (the deployed preprocessing) at their mean spectrum."""
    from trainer.drift import NoiseInputs
    from trainer.line_noise import pixel_variance

    assert cfg.instrument.noise is not None
    X = np.asarray(data.ds.X[rows], dtype=np.float64)
    var, detector = pixel_variance(X, data.wavelengths_nm, cfg.instrument.noise, quantity=cfg.instrument.quantity)
    a0 = X.mean(axis=0)
    eps = 1e-4 * max(float(np.mean(np.abs(a0))), 1e-3)
    base = np.asarray(transform(a0[None]), dtype=np.float64).reshape(1, -1)
    jac = (np.asarray(transform(a0[None] + eps * np.eye(a0.size)), dtype=np.float64).reshape(a0.size, -1) - base) / eps
    return NoiseInputs(pixel_variance=var, jacobian=jac, quantity=cfg.instrument.quantity, **detector)


def calibrate(cfg: TrainConfig, data: Prepared, deployed: Deployed, cv: CnnCv,
              cnn_float_train: np.ndarray | None = None) -> Calibration:
    """Fit the OOD model and the intervals of the deployed model."""
    from trainer.conformal import fit_intervals
    from trainer.drift import fit_ood

    X, Y, tr, sel = data.ds.X, data.ds.y, data.plan.train_rows, data.plan.select_rows
    target_names = data.ds.target_names
    # The OOD reference: the training rows, and with [ood] include_select the selection rows too (calibration
    # data of the same instrument, never test data).
    with_sel = cfg.ood.include_select and sel.size > 0
    ood_rows = np.concatenate([tr, sel]) if with_sel else tr
    ood_pre = (np.concatenate([deployed.train_pre, deployed.edge_pipe.transform(X[sel])]) if with_sel
               else deployed.train_pre)
    line_pre, copies, noise = None, None, None
    if cfg.instrument.noise is not None:
        copies = line_copies(cfg, data, tr)
        ood_copies = np.concatenate([copies, line_copies(cfg, data, sel, seed_offset=500)], axis=1) if with_sel \
            else copies
        line_pre = np.stack([deployed.edge_pipe.transform(c) for c in ood_copies])
        noise = noise_inputs(cfg, data, ood_rows, deployed.edge_pipe.transform)
    ood = fit_ood(ood_pre, cfg.ood.n_components, cfg.ood.variance, cfg.ood.alpha,
                  max_components=cfg.ood.max_components, groups=data.groups[ood_rows], seed=cfg.seed,
                  X_pre_line=line_pre, noise=noise)
    autoencoder = None
    if cfg.ood.autoencoder:
        from trainer.autoencoder import fit_autoencoder

        autoencoder = fit_autoencoder(deployed.train_pre, alpha=cfg.ood.alpha, groups=data.groups[tr], seed=cfg.seed,
                                      epochs=cfg.ood.autoencoder_epochs, bottleneck=cfg.ood.autoencoder_bottleneck,
                                      # the training rows' copies: with include_select line_pre has the
                                      # selection rows' after them, which the autoencoder does not fit
                                      X_pre_line=None if line_pre is None else line_pre[:, :tr.size],
                                      subprocess=cfg.quantize.subprocess)
    if data.classify:
        return Calibration(ood=ood, autoencoder=autoencoder)
    from edge.runtime import ModelRuntime

    # Each target's residuals come from the member that serves it (one member serves all in a one-model bundle).
    serving = deployed.serving or (deployed.name or ("pls" if deployed.is_pls else "cnn"),) * len(target_names)
    by_name = {m.name or serving[0]: m for m in deployed.members}
    member_sel, runtimes = {}, {}
    for name, member in by_name.items():
        transform = member.output_transform
        rt = ModelRuntime(member.tflite, output_affine=None if transform is None
                          else (transform["scale"], transform["offset"]))
        runtimes[name] = rt
        member_sel[name] = (np.asarray(rt.predict(member.edge_pipe.transform(X[sel])), dtype=np.float64)
                            .reshape(sel.size, -1) if sel.size else np.zeros((0, len(target_names))))
    per_target = partial(_per_target, serving=serving, pls_weights=deployed.pls_weights)
    sel_pred = per_target(member_sel)
    # Held-out residuals of every calibration row: the selection rows (final model) and the training rows
    # out of fold, not the selection rows alone. A deployed PLS is chosen again in every fold (nested CV): its
    # preprocessing and latent variables were chosen on these very rows, which makes plain out-of-fold residuals
    # of the chosen recipe optimistic.
    member_oof: dict[str, np.ndarray | None] = {}
    kinds = {"pls": "nested", "cnn": "fixed_recipe", "blend": "blend of both"}
    if "pls" in serving or "blend" in serving:
        member_oof["pls"] = deployed.pls_oof if deployed.pls_oof is not None else nested_pls_oof(cfg, data)
    fitted_by = {name: np.asarray(runtimes[name].predict(m.edge_pipe.transform(X[tr])), dtype=np.float64)
                 .reshape(tr.size, -1) for name, m in by_name.items()}
    if "cnn" in serving or "blend" in serving:
        member_oof["cnn"] = _int8_out_of_fold(cv.oof, fitted_by.get("cnn"), cnn_float_train)
    oof, how = None, "none"
    if all(v is not None for v in member_oof.values()):
        oof = per_target({k: v for k, v in member_oof.items() if v is not None})
        if len(set(serving)) == 1 and serving[0] != "blend":
            how = kinds[serving[0]]
        else:
            how = "per_target (" + "; ".join(f"{t}: {kinds[m]}" for t, m in zip(target_names, serving)) + ")"
    resid = Y[sel] - sel_pred
    interval_rows = {"select": int(sel.size), "train_out_of_fold": 0}
    if oof is not None and np.all(np.isfinite(oof)):
        resid = np.concatenate([resid, Y[tr] - oof])
        interval_rows["train_out_of_fold"] = int(tr.size)
    elif sel.size == 0:
        # prepare._check_rows makes every regression without selection rows cross-validate its deployed model
        raise TrainerError("intervals: expected out-of-fold predictions of the training rows (no selection rows), "
                           "got none or non-finite ones; nothing to calibrate the intervals on")
    else:
        how = "none"
    intervals = fit_intervals(resid, cfg.intervals.coverage, target_names=target_names)
    fitted = per_target(fitted_by)
    line = None
    if copies is not None:
        line = np.stack([per_target({name: np.asarray(runtimes[name].predict(m.edge_pipe.transform(c)),
                                                       dtype=np.float64).reshape(tr.size, -1)
                                     for name, m in by_name.items()}) for c in copies])
    predictions = _prediction_stats(fitted, Y[tr], oof, line, target_names)
    log.info("conformal half-widths at %.0f%% from %d held-out residuals (training rows out of fold: %s): %s",
             100 * cfg.intervals.coverage, resid.shape[0], how,
             ", ".join(f"{t} +/-{q:.4g}" for t, q in zip(target_names, intervals.q_hat)))
    return Calibration(ood=ood, intervals=intervals, rows=interval_rows, autoencoder=autoencoder, out_of_fold=how,
                       predictions=predictions, residuals=resid)


def _int8_out_of_fold(oof: np.ndarray | None, int8_train: np.ndarray | None,
                      float_train: np.ndarray | None) -> np.ndarray | None:
    """The CNN's out-of-fold predictions of the training rows as the deployed int8 model would make them: the
    cross-validation trains dense float networks, so each row's change (the deployed int8 prediction minus the final
    dense float network's, ``float_train``: int8 rounding, and pruning where it ran) is added to its out-of-fold
    prediction. The intervals then cover what the edge serves. Unchanged where either is missing."""
    if oof is None or int8_train is None or float_train is None:
        return oof
    change = np.asarray(int8_train, dtype=np.float64) - np.asarray(float_train, dtype=np.float64).reshape(
        np.shape(int8_train))
    return oof + change if np.shape(oof) == change.shape else oof


def _prediction_stats(fitted: np.ndarray, y_train: np.ndarray, oof: np.ndarray | None, line: np.ndarray | None,
                      target_names: Any) -> Any:
    """The in-control distribution of the deployed model's predictions (held out, plus the line's noise): ``fitted``
    and ``line`` (copies, rows, targets) are the deployed bundle's predictions on the training rows and on their
    line copies, each target from the member that serves it."""
    from trainer.prediction_stats import prediction_stats

    stats = prediction_stats(y_train, oof, fitted, line)
    for name, s in zip(target_names, stats):
        log.info("prediction CUSUM of %s centred on the predictions (%s): mean %.4g, std %.4g (line noise %.3g); "
                 "training reference values: mean %.4g, std %.4g", name, s.source, s.mean, s.std, s.line_noise_std,
                 s.reference_mean, s.reference_std)
    return stats


def _per_target(by_member: dict[str, np.ndarray], serving: tuple[str, ...],
                pls_weights: tuple[float, ...] = ()) -> np.ndarray:
    """Predictions (n, n_targets) with each target's column from the member that serves it, or for a ``blend``
    ``(1 - w) * cnn + w * pls`` with ``w`` = ``pls_weights[j]``."""
    first = next(iter(by_member.values()))
    out = np.empty_like(first, dtype=np.float64)
    for j, name in enumerate(serving):
        if name == "blend":
            w = pls_weights[j]
            out[:, j] = (1.0 - w) * by_member["cnn"][:, j] + w * by_member["pls"][:, j]
        else:
            out[:, j] = by_member[name][:, j]
    return out
