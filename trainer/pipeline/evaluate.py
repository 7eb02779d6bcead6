"""Stage "evaluate through the edge runtime": the written bundle loaded with :func:`edge.bundle.load_bundle` and fed
what a device would send, then the ``evaluations``, ``comparison`` and ``interval_coverage`` of ``metrics.json``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.errors import TrainerError
from trainer.pipeline.calibrate import Calibration, line_copies
from trainer.pipeline.choose import nested_folds
from trainer.pipeline.int8 import Predictions
from trainer.pipeline.prepare import Prepared
from trainer.pipeline.scores import classification_metrics, regression_metrics

log = logging.getLogger(__name__)

#: Model names of the ``evaluations`` rows of ``metrics.json``.
MODELS = ("pls", "cnn_float", "cnn_int8", "deployed")


@dataclass(frozen=True)
class Evaluation:
    """The loaded ``bundle``, every model's ``preds`` per role (now with ``deployed``), the OOD scores ``(t2, q)``
    per role (and through the line detector), and the ``metrics.json`` entries ``evaluations``, ``comparison``
    and ``coverage``."""

    bundle: Any
    preds: Predictions
    ood_scores: dict[str, tuple[np.ndarray, np.ndarray]]
    evaluations: list[dict[str, Any]]
    comparison: list[dict[str, Any]]
    coverage: dict[str, Any]
    #: OOD scores ``(t2, q)`` per role of the rows through the declared line detector (``[instrument.noise]``,
    #: every copy); empty without one.
    ood_line_scores: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: Autoencoder scores per role (and through the line detector), through the bundle's own autoencoder; empty
    #: without one.
    ae_scores: dict[str, np.ndarray] = field(default_factory=dict)
    ae_line_scores: dict[str, np.ndarray] = field(default_factory=dict)
    #: The deployed bundle's figure per role and target through the declared line detector beside its offline
    #: figure (``metrics.json`` ``line_accuracy``, :func:`line_accuracy`); empty without ``[instrument.noise]``.
    line_accuracy: dict[str, Any] = field(default_factory=dict)

    def metric(self, role: str, model_name: str, target: str, key: str) -> float:
        """One figure of the ``evaluations`` rows (NaN when absent)."""
        return _metric(self.evaluations, role, model_name, target, key)


def _metric(evaluations: list[dict[str, Any]], role: str, model_name: str, target: str, key: str) -> float:
    for e in evaluations:
        if (e["split"], e["model"], e["target"]) == (role, model_name, target):
            return float(e[key])
    return float("nan")


def score_key(classify: bool) -> str:
    """The figure models are compared on."""
    return "accuracy" if classify else "rmsep"


def _line_levels(cfg: TrainConfig, data: Prepared, rows: np.ndarray, noise: Any) -> np.ndarray:
    """The detector noise level (:meth:`edge.ood_noise.LineNoise.level`) of ``rows`` as the declared line
    detector measures them."""
    from trainer.line_noise import pixel_variance

    assert cfg.instrument.noise is not None
    var, _ = pixel_variance(data.ds.X[rows], data.wavelengths_nm, cfg.instrument.noise,
                            quantity=cfg.instrument.quantity)
    return np.asarray(var @ noise.pixel_gain, dtype=np.float64)


def evaluate_bundle(cfg: TrainConfig, data: Prepared, bundle_path: Path, preds: Predictions,
                    calibration: Calibration) -> Evaluation:
    """Predict every role through the written bundle and score all four models."""
    from edge.bundle import load_bundle
    from trainer.conformal import empirical_coverage, residual_shift

    ds, plan, classify = data.ds, data.plan, data.classify
    Y = ds.y
    roles = plan.roles()
    bundle = load_bundle(bundle_path)
    if bundle.ood is None:
        raise TrainerError(f"{bundle_path.name}: the written bundle carries no OOD model")
    bundle_ood = bundle.ood
    preds = dict(preds)
    ood_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ood_line_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ae, ae_scores, ae_line_scores = bundle.autoencoder, {}, {}
    line_preds: dict[str, np.ndarray] = {}
    for i, (role, rows) in enumerate(roles.items()):
        frames, ctx = bundle.frames_from_signal(ds.X[rows], ds.wavelengths)  # as the device sends them
        out_q = np.asarray(bundle.predict_spectra(frames, **ctx), dtype=np.float64).reshape(rows.size, -1)
        preds[(role, "deployed")] = np.argmax(out_q, axis=1)[:, None].astype(np.float64) if classify else out_q
        pre = bundle.preprocess(frames, **ctx)
        # An OOD model that scores each spectrum under its own detector noise gets the level the line detector
        # would give it (the one its limits were fitted with), not that of the offline frames' flat references.
        rho = None if bundle_ood.noise is None else _line_levels(cfg, data, rows, bundle_ood.noise)
        ood_scores[role] = bundle_ood.score(pre, rho)
        if ae is not None:
            ae_scores[role] = np.asarray(ae.score(pre), dtype=np.float64).reshape(-1)
        if cfg.instrument.noise is not None:  # the same rows through the declared line detector
            copies = line_copies(cfg, data, rows, seed_offset=1000 + i).reshape(-1, ds.X.shape[1])
            frames, ctx = bundle.frames_from_signal(copies, ds.wavelengths)
            pre = bundle.preprocess(frames, **ctx)
            out_line = np.asarray(bundle.predict_spectra(frames, **ctx), dtype=np.float64)
            line_preds[role] = out_line.reshape(cfg.instrument.noise.copies, rows.size, -1)
            ood_line_scores[role] = bundle_ood.score(pre, None if rho is None
                                                     else np.tile(rho, cfg.instrument.noise.copies))
            if ae is not None:
                ae_line_scores[role] = np.asarray(ae.score(pre), dtype=np.float64).reshape(-1)

    evaluations: list[dict[str, Any]] = []
    for role, rows in roles.items():
        for j, target in enumerate(ds.target_names):
            for m in MODELS:
                p = preds[(role, m)][:, j]
                row: dict[str, Any] = {"split": role, "target": target, "model": m}
                row.update(
                    classification_metrics(Y[rows][:, j], p) if classify else regression_metrics(Y[rows][:, j], p)
                )
                evaluations.append(row)
    coverage: dict[str, Any] = {}
    if calibration.intervals is not None:
        assert bundle.intervals is not None
        coverage = {"nominal": cfg.intervals.coverage, "calibration_rows": sum(calibration.rows.values()),
                    "calibration": calibration.rows, "out_of_fold": calibration.out_of_fold,
                    "nested_folds": nested_folds(cfg, plan.train_rows.size),
                    "half_widths": dict(zip(ds.target_names, bundle.intervals.q_hat.tolist()))}
        shift: dict[str, Any] = {}
        for name, rows in plan.tests.items():
            cov = empirical_coverage(bundle.intervals, Y[rows], preds[(name, "deployed")])
            coverage[name] = dict(zip(ds.target_names, cov.tolist()))
            if calibration.residuals is not None and rows.size:
                got = residual_shift(calibration.residuals, np.asarray(Y[rows], dtype=np.float64).reshape(rows.size, -1)
                                     - preds[(name, "deployed")])
                shift[name] = dict(zip(ds.target_names, got))
                for t, s in shift[name].items():
                    if s["shifted"]:
                        log.warning("intervals: on %s the errors of %s are larger than the calibration rows' (median "
                                    "|residual| %.4g against %.4g, rank test p = %.2g): not exchangeable with "
                                    "them, so the nominal coverage does not apply there (measured %.1f %%)", name, t,
                                    s["median_abs_test"], s["median_abs_calibration"], s["p_value"],
                                    100 * coverage[name][t])
        if shift:
            coverage["residual_shift"] = shift
    key = score_key(classify)
    comparison = []
    for name in plan.tests:
        for t in ds.target_names:
            a = _metric(evaluations, name, "pls", t, key)
            b = _metric(evaluations, name, "cnn_int8", t, key)
            f = _metric(evaluations, name, "cnn_float", t, key)
            d = _metric(evaluations, name, "deployed", t, key)
            comparison.append({"split": name, "target": t, f"pls_{key}": a, f"cnn_int8_{key}": b,
                               f"cnn_float_{key}": f, f"deployed_{key}": d,
                               "ratio_int8_to_pls": b / a if a else None,
                               "ratio_int8_to_float": b / f if f else None,
                               "ratio_deployed_to_pls": d / a if a else None})
    return Evaluation(bundle=bundle, preds=preds, ood_scores=ood_scores, ood_line_scores=ood_line_scores,
                      ae_scores=ae_scores, ae_line_scores=ae_line_scores,
                      evaluations=evaluations,
                      comparison=comparison, coverage=coverage,
                      line_accuracy=line_accuracy(cfg, data, line_preds, evaluations))


#: A test split whose figure through the line detector is worse than offline by more than this factor (RMSEP
#: ratio; for a classification, error rate ratio) gets a warning in the log.
LINE_WARN_RATIO = 1.25


def line_accuracy(cfg: TrainConfig, data: Prepared, line_preds: dict[str, np.ndarray],
                  evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """The deployed bundle's figure through the declared line detector, per role and target: its predictions of
    every line copy of the role's rows (``line_preds[role]``, (copies, n, outputs): the copies the OOD limits are
    checked on), scored against the rows' references, beside the offline figure of the same rows.

    What the line will measure when its detector, not the model, limits it: a model that meets its goal offline
    can miss it on the line (docs/training.md, ``[instrument.noise]``); ``spectro-bench loop`` measures the same
    through the real daemon. Empty without ``[instrument.noise]``."""
    if cfg.instrument.noise is None or not line_preds:
        return {}
    classify, Y = data.classify, data.ds.y
    key = score_key(classify)
    roles = data.plan.roles()
    splits: dict[str, dict[str, dict[str, float | None]]] = {}
    for role, out in line_preds.items():
        rows = roles[role]
        for j, target in enumerate(data.ds.target_names):
            y = np.tile(np.asarray(Y[rows][:, j]), out.shape[0])
            if classify:
                p = np.argmax(out, axis=2).reshape(-1).astype(np.float64)
                line = classification_metrics(y, p)[key]
            else:
                line = regression_metrics(y, out[:, :, j].reshape(-1))[key]
            offline = _metric(evaluations, role, "deployed", str(target), key)
            worse = (1.0 - line) / (1.0 - offline) if classify and offline < 1.0 else (
                line / offline if not classify and offline > 0 else None)
            splits.setdefault(role, {})[str(target)] = {key: float(line), f"offline_{key}": float(offline),
                                                        "ratio": None if worse is None else float(worse)}
            if classify and offline >= 1.0 and line < 1.0:
                worse = float("inf")  # perfect offline, errors on the line: warned; its ratio stays null
            if role in data.plan.tests and worse is not None and worse > LINE_WARN_RATIO:
                log.warning("line detector: on %s the deployed model's %s of %s is %.4g through the declared line "
                            "detector (%d scan(s) averaged) against %.4g offline (%s x %.2f): on the line the "
                            "detector's noise limits it; %s trade that back",
                            role, key, target, line, cfg.instrument.noise.averages, offline,
                            "error rate" if classify else "RMSEP", worse, _line_remedies(cfg.instrument.noise))
    return {"model": "deployed", "averages": cfg.instrument.noise.averages, "copies": cfg.instrument.noise.copies,
            "splits": splits}


def _line_remedies(noise: Any) -> str:
    """What the config can still change to narrow the gap between the line and offline: more scans averaged, and
    training on line copies where the config does not yet (``[instrument.noise]``, docs/training.md)."""
    unset = [key for key in ("cnn_copies", "calibration_copies") if not getattr(noise, key)]
    if not unset:
        return "more scans averaged, or more line copies ([instrument.noise] cnn_copies, calibration_copies),"
    return f"more scans averaged, or training on line copies ([instrument.noise] {', '.join(unset)}),"


def pruning_cost(data: Prepared, dense_preds: dict[str, np.ndarray], ev: Evaluation) -> dict[str, Any]:
    """Per role and target, the figure of the dense (unpruned) CNN beside the pruned one."""
    classify, Y = data.classify, data.ds.y
    key = score_key(classify)
    cost: dict[str, dict[str, dict[str, float]]] = {}
    for role, rows in data.plan.roles().items():
        for j, t in enumerate(data.ds.target_names):
            d = dense_preds[role][:, j]
            before = (classification_metrics(Y[rows][:, j], d) if classify
                      else regression_metrics(Y[rows][:, j], d))[key]
            cost.setdefault(role, {})[t] = {f"{key}_dense": before,
                                            f"{key}_pruned": ev.metric(role, "cnn_float", t, key)}
    return cost
