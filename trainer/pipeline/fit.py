"""``spectro-train fit``: the stages of :mod:`trainer.pipeline` run in order, each handed only what it needs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.errors import TrainerError
from trainer.pipeline.baseline import fit_pls_on
from trainer.pipeline.calibrate import calibrate
from trainer.pipeline.choose import choose_deployed
from trainer.pipeline.cnn import cross_validate_cnn, train_network
from trainer.pipeline.evaluate import Evaluation, evaluate_bundle, pruning_cost
from trainer.pipeline.int8 import convert_network, predict_roles
from trainer.pipeline.prepare import Prepared, cnn_cross_validated, prepare_data
from trainer.pipeline.progress import Progress, WarningLog
from trainer.pipeline.recipe import (
    build_model_configs,
    choose_recipe,
    configured_instead,
    pretrain_plan,
    search_off_reason,
)
from trainer.pipeline.run_report import write_run_report
from trainer.pipeline.scores import clean_json
from trainer.pipeline.summary import autoencoder_summary, summarise
from trainer.pipeline.write import FitBundle, write_fit_bundle
from trainer.quantize import QuantizeError

log = logging.getLogger("trainer.pipeline")

#: The cnn_int8 predictions of the re-written final bundle must equal those of the first one (same model bytes).
_REPRODUCE_ATOL = 0.0


@dataclass
class FitResult:
    """What :func:`fit` produced, for callers that want more than the ``metrics.json`` dict."""

    metrics: dict[str, Any]
    bundle_path: Path
    metrics_path: Path
    report_path: Path | None
    extras: dict[str, Any] = field(default_factory=dict)


def fit(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a whole training and write the bundle, ``metrics.json`` and ``report/index.html`` into ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
        From :func:`trainer.config.load_config`.
    out_dir : str or Path
        Output folder (created; an existing bundle of the same model id is replaced).
    progress : callable, optional
        Called with one line per stage (the log carries the same lines).

    Returns
    -------
    dict
        The content of ``metrics.json`` (keys in the module docstring).
    """
    return fit_full(config, out_dir, progress=progress).metrics


def fit_full(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
    prepared: Prepared | None = None,
) -> FitResult:
    """:func:`fit`, returning the paths and in-memory results as well; ``prepared`` (from
    :func:`~trainer.pipeline.prepare.prepared_from`) replaces the stages that load and split ``[data]``."""
    cfg = config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prog = Progress(progress)
    configs = build_model_configs(cfg)  # the model sections are checked before anything expensive runs

    warned = WarningLog(prog)
    with warned.attached():
        data = prepare_data(cfg, prog.stage) if prepared is None else prepared
        prog.stage("PLS baseline")
        pls = _fit_pls(cfg, data)
        recipe = choose_recipe(cfg, configs, data, pls.models[0].candidate, out, prog.stage, progress)
        while True:
            cv = cross_validate_cnn(cfg, data, recipe, prog.stage, progress)
            net = train_network(cfg, data, recipe, prog.stage)
            prog.stage("int8 conversion")
            try:
                int8 = convert_network(cfg, data, net, cv.rmse)
                break
            except QuantizeError as exc:  # e.g. a model that makes LiteRT abort (edge.load_probe)
                instead = configured_instead(cfg, configs, data, pls.models[0].candidate, recipe, str(exc))
                if instead is None:
                    raise
                recipe = instead
        preds = predict_roles(data, pls, net, int8)
        prog.stage("choose the deployed model")
        deployed = choose_deployed(cfg, data, pls, recipe, cv, net, int8, preds)
        prog.stage("OOD + intervals")
        # The out-of-fold networks are dense: the change to the deployed CNN counts pruning as well as int8.
        calibration = calibrate(cfg, data, deployed, cv,
                                net.dense_preds.get("train", preds.get(("train", "cnn_float"))))
        prog.stage("bundle")
        written = write_fit_bundle(cfg, data, deployed, calibration, out)
        prog.stage("evaluate through the edge runtime")
        ev = evaluate_bundle(cfg, data, written.path, preds, calibration)
        pruning = ({**net.pruning, "accuracy_cost": pruning_cost(data, net.dense_preds, ev)} if net.dense_preds
                   else net.pruning)
        metrics = summarise(cfg, data, recipe, pls, net, pruning, int8, deployed, ev)
        metrics["ood"]["autoencoder"] = autoencoder_summary(ev, calibration.autoencoder)
        metrics["train_seconds"] = round(prog.elapsed_s, 2)
        metrics["warnings"] = warned.records  # the same list: the report stage's warnings reach metrics.json too
        _rewrite_final(written, metrics, data, ev)

        report_path = None
        if cfg.report:
            prog.stage("report")
            metrics["timings_s"] = dict(prog.timings)
            report_path = write_run_report(cfg, data, pls, net, pruning, ev, metrics, out)
        prog.finish()
        metrics["timings_s"] = dict(prog.timings)
        metrics["train_seconds"] = round(prog.elapsed_s, 2)
        metrics_path = out / "metrics.json"
        metrics_path.write_text(json.dumps(clean_json(metrics), indent=2, allow_nan=False) + "\n")
        log.info("wrote %s, %s%s in %.1f s", written.path.name, metrics_path.name,
                 ", report/index.html" if report_path else "", prog.elapsed_s)
    return FitResult(metrics=clean_json(metrics), bundle_path=written.path, metrics_path=metrics_path,
                     report_path=report_path, extras={"plan": data.plan, "pls": pls, "trained": net.trained,
                                                    "preds": ev.preds, "deployable_pls": deployed.pls})


def check_fit(config: TrainConfig) -> list[str]:
    """What ``spectro-train fit --check`` prints: the checks a fit makes before its first training stage (the
    config's model tables, the data file, the split and its row counts for cross-validation, the OOD model and the
    intervals, ``[pretrain]``'s spectra), run in seconds, and what would run. Raises the fit's own errors; trains
    and writes nothing (the ``[search]`` storage is opened only by the fit)."""
    cfg = config
    build_model_configs(cfg)
    data = prepare_data(cfg, lambda _: None)
    ds, plan = data.ds, data.plan
    lines = [
        f"data: {ds.source}, {ds.n_samples} spectra x {ds.n_channels} channels ({ds.wavelengths.min():g}-"
        f"{ds.wavelengths.max():g} {ds.axis_unit}), {cfg.task} of {', '.join(ds.target_names)}"
        + (f" (classes {', '.join(map(str, ds.class_names))})" if data.classify and ds.class_names else ""),
        "rows: " + ", ".join(f"{role} {rows.size} ({np.unique(data.groups[rows]).size} groups)"
                             for role, rows in plan.roles().items()),
    ]
    noise = cfg.instrument.noise
    lines.append(f"instrument: {cfg.instrument.signal} frames"
                 + ("" if noise is None else f"; line detector {noise.averages} scan(s) averaged, cnn_copies "
                    f"{noise.cnn_copies}, calibration_copies {noise.calibration_copies}"))
    plan_pretrain = pretrain_plan(cfg, data)  # loads and checks the [pretrain] source's spectra
    if plan_pretrain is not None:
        unlabeled = plan_pretrain.unlabeled
        lines.append(f"pretrain: {unlabeled.rows} unlabeled spectra from {unlabeled.source}")
    srch, off = cfg.search, search_off_reason(cfg)
    lines.append(f"search: {srch.budget_min:g} min, at most {srch.trials} trials" if off is None
                 else f"search: off ({off}): the configured [model] recipe trains")
    mode = cfg.selection.model
    # On its own, or the search's best trial's out-of-fold predictions when the search ran on the same folds.
    cnn_cv = cnn_cross_validated(cfg, data.classify, plan.select_rows.size) or (
        off is None and (srch.folds or cfg.selection.cnn_cv_folds) == cfg.selection.cnn_cv_folds)
    lines.append(f"cross-validation: PLS {cfg.cv.folds} folds (at most {cfg.cv.max_components} latent variables); "
                 f"model {mode}, " + (f"CNN {cfg.selection.cnn_cv_folds} folds" if cnn_cv
                                      else "CNN not cross-validated"))
    lines.append("checks passed; nothing was trained (the [search] storage and the conversions are reached by the "
                 "fit itself)")
    return lines


def _fit_pls(cfg: TrainConfig, data: Prepared) -> Any:
    """Stage "PLS baseline": PLS per preprocessing candidate, latent variables by grouped cross-validation."""
    ds, tr = data.ds, data.plan.train_rows
    return fit_pls_on(cfg, data, ds.X[tr], ds.y[tr], data.groups[tr])


def _rewrite_final(written: FitBundle, metrics: dict[str, Any], data: Prepared, ev: Evaluation) -> None:
    """Final bundle: same model, pipeline, OOD and intervals, now carrying the complete metrics; it must predict
    as the evaluated one did. Sets ``bundle_bytes`` and ``bundle`` in ``metrics``."""
    from edge.bundle import load_bundle

    ds = data.ds
    written.write(clean_json(metrics), note="with the final metrics")
    final = load_bundle(written.path)
    check_rows = next(iter(data.plan.tests.values()))
    again = np.asarray(final.predict_signal(ds.X[check_rows], ds.wavelengths), dtype=np.float64).reshape(
        check_rows.size, -1
    )
    first = np.asarray(ev.bundle.predict_signal(ds.X[check_rows], ds.wavelengths), dtype=np.float64).reshape(
        check_rows.size, -1
    )
    if not np.allclose(again, first, rtol=0, atol=_REPRODUCE_ATOL):
        raise TrainerError("the final bundle predicts differently from the evaluated one")
    metrics["bundle_bytes"] = written.path.stat().st_size
    metrics["bundle"] = written.path.name
