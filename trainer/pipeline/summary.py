"""The ``metrics.json`` of a fit (keys in :mod:`trainer.pipeline`), from each stage's result."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.pipeline.choose import Deployed, int8_cost_role
from trainer.pipeline.cnn import TrainedNetwork, best_epochs
from trainer.pipeline.evaluate import Evaluation
from trainer.pipeline.int8 import Int8Network
from trainer.pipeline.prepare import Prepared
from trainer.pipeline.recipe import Recipe


def alarm_rates(scores: tuple[np.ndarray, np.ndarray], ood: Any) -> dict[str, float]:
    """Share of spectra over the T2 limit, over the Q limit, and flagged (either), from their ``(t2, q)``."""
    t2, q = (np.asarray(s, dtype=np.float64).ravel() for s in scores)
    over_t2, over_q = t2 > ood.t2_limit, q > ood.q_limit
    return {"t2": float(np.mean(over_t2)), "q": float(np.mean(over_q)), "either": float(np.mean(over_t2 | over_q))}


def autoencoder_summary(ev: Evaluation, fitted: Any) -> dict[str, Any] | None:
    """``ood.autoencoder`` of ``metrics.json``: the fit's figures and, per role, the share of spectra over the
    autoencoder's limit and over any of the three limits (T2, Q, autoencoder); None without an autoencoder."""
    ae = ev.bundle.autoencoder
    if ae is None:
        return None

    def rates(ae_scores: dict[str, np.ndarray], ood_scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
        out = {}
        for role, s in ae_scores.items():
            over = np.asarray(s).ravel() > ae.limit
            t2, q = (np.asarray(v, dtype=np.float64).ravel() for v in ood_scores[role])
            over_any = over | (t2 > ev.bundle.ood.t2_limit) | (q > ev.bundle.ood.q_limit)
            out[role] = {"autoencoder": float(np.mean(over)), "any": float(np.mean(over_any))}
        return out

    base = fitted.summary() if fitted is not None else {"limit": ae.limit, "alpha": ae.alpha}
    return {**base, "alarm_rate": rates(ev.ae_scores, ev.ood_scores),
            "alarm_rate_line": rates(ev.ae_line_scores, ev.ood_line_scores)}


def summarise(cfg: TrainConfig, data: Prepared, recipe: Recipe, pls: Any, net: TrainedNetwork, pruning: dict[str, Any],
              int8: Int8Network, deployed: Deployed, ev: Evaluation) -> dict[str, Any]:
    """``metrics.json`` before the final bundle is written (``bundle_bytes`` and ``train_seconds`` still 0)."""
    ds, classify = data.ds, data.classify
    bundle = ev.bundle
    bundle_ood = bundle.ood
    selection, dep = deployed.selection, deployed.pls
    trained = net.trained
    ood_summary = {
        "n_components": bundle_ood.n_components,
        "t2_limit": bundle_ood.t2_limit,
        "q_limit": bundle_ood.q_limit,
        "alpha": bundle_ood.alpha,
        "alarm_rate": {r: alarm_rates(s, bundle_ood) for r, s in ev.ood_scores.items()},
        # The same rows through the declared line detector ([instrument.noise]): what the line alarms on.
        "line_noise": (None if cfg.instrument.noise is None else
                       {"averages": cfg.instrument.noise.averages, "copies": cfg.instrument.noise.copies,
                        "limits_fitted_on": "line copies of the training spectra, out of fold",
                        "scored_under": ("each spectrum's own detector noise" if bundle_ood.noise is not None
                                         else "the average detector noise")}),
        "alarm_rate_line": {r: alarm_rates(s, bundle_ood) for r, s in ev.ood_line_scores.items()},
    }
    return {
        "schema_version": 1,
        "task": cfg.task,
        "dataset": ds.source,
        "targets": list(ds.target_names),
        "class_names": list(ds.class_names) if ds.class_names else None,
        "model_id": cfg.bundle.model_id,
        "model_version": cfg.bundle.model_version,
        "seed": cfg.seed,
        "splits": {r: int(rows.size) for r, rows in data.plan.roles().items()},
        "evaluations": ev.evaluations,
        "comparison": ev.comparison,
        # The deployed bundle through the declared line detector ([instrument.noise]) beside offline; None without.
        "line_accuracy": ev.line_accuracy or None,
        "deployed_model": selection.winner,
        # The model serving each target (cnn, pls, or blend: selection.blend_weights), and which file carries it
        # (per_target: both, the bundle's format 4; 5 with a blend).
        "deployed_per_target": ({str(t): m for t, m in zip(ds.target_names, deployed.serving)}
                                if deployed.second is not None else
                                dict.fromkeys(map(str, ds.target_names), deployed.name or selection.winner)),
        "deployed_members": [{"name": m.name, "model": f, "bytes": len(m.tflite)}
                             for m, f in zip(deployed.members, ("model.tflite", "model_2.tflite"))],
        # int8_cost_rows: the role the int8 cost was measured on (select, or train where [split] names no select)
        "selection": {**selection.to_dict(), "int8_cost_rows": None if classify else int8_cost_role(data)},
        "search": recipe.search,
        "pretrain": net.pretrain,
        "deployed_pls": ({"candidate": dep.candidate, "n_components": dict(dep.n_components),
                          "branches": list(dep.branches)} if deployed.serves_pls else None),
        "pls_components": pls.components,
        "preprocessing": {"cnn": recipe.candidate, "pls": pls.candidates,
                          "candidates": {k: [dict(s) for s in v] for k, v in cfg.preprocessing.candidates.items()}},
        "sparsity": net.sparsity,
        "pruning": pruning,
        "model_bytes": sum(len(m.tflite) for m in deployed.members),
        "cnn_model_bytes": len(int8.tflite),
        "cnn_int8_output_step": (dict(zip(ds.target_names, map(float, int8.output_step)))
                                 if int8.output_step is not None and not classify else None),
        "cnn_int8_calibration": int8.calibration,
        "bundle_bytes": 0,
        "train_seconds": 0.0,
        "cnn_train_seconds": float(trained.train_seconds),
        "cnn_params": int(getattr(trained, "n_params", 0)),
        "cnn_best_epochs": best_epochs(trained),
        "cnn_epochs_run": getattr(trained, "epochs_run", None),
        "interval_coverage": ev.coverage,
        "ood": ood_summary,
        "runtime": bundle.runtime.runtime_description if hasattr(bundle.runtime, "runtime_description") else "",
    }
