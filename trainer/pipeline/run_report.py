"""Stage "report": ``report/index.html`` of a fit, with what the network and PLS look at (:mod:`trainer.explain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.pipeline.cnn import TrainedNetwork, histories, standardised_history
from trainer.pipeline.evaluate import Evaluation
from trainer.pipeline.prepare import Prepared


def write_run_report(cfg: TrainConfig, data: Prepared, pls: Any, net: TrainedNetwork, pruning: dict[str, Any],
                     ev: Evaluation, metrics: dict[str, Any], out: Path) -> Path:
    """Write the explanations and the HTML report into ``out / "report"``; returns the report's path."""
    from trainer.explain import explain_run, html_section
    from trainer.report import ReportInputs, write_report

    ds, classify, tr, sel = data.ds, data.classify, data.plan.train_rows, data.plan.select_rows
    trained = net.trained
    bundle = ev.bundle
    # What the network and PLS look at, over the mean spectrum (integrated gradients, occlusion, VIP, kernels).
    explain_paths = explain_run(
        out / "report",
        X_abs_train=ds.X[tr],
        X_abs_explain=ds.X[sel if sel.size else tr],  # no selection rows: the training rows
        wavelengths=ds.wavelengths,
        target_names=list(ds.class_names) if classify and ds.class_names else list(ds.target_names),
        unit=ds.axis_unit,
        keras_model=net.model,
        preprocess=net.pre,
        pls_baseline=pls,
    )
    return write_report(
        out / "report",
        ReportInputs(
            title=f"{cfg.bundle.model_id} {cfg.bundle.model_version}",
            config_source=cfg.source,
            dataset=ds,
            plan=data.plan,
            metrics=metrics,
            predictions=ev.preds,
            histories=[("CNN", h) for h in histories(trained)]
            + ([("pruning fine-tune", standardised_history(pruning["history"], trained, classify))]
               if pruning.get("history") else []),
            pls_curves={", ".join(m.targets): dict(m.cv_curves) for m in pls.models},
            ood_scores=ev.ood_scores,
            ood_limits=(bundle.ood.t2_limit, bundle.ood.q_limit),
            intervals=bundle.intervals,
            units=dict(cfg.bundle.units),
            extra_html=html_section(explain_paths, out / "report"),
        ),
    )
