"""``spectro-train update``: join, the deployed bundle on the line, retraining on old + new, the new bundle vs the
old one on the new samples and the original test sets, and the report."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import TrainConfigError
from trainer.update.deployed import evaluate_on_line, line_figures, offline_engine
from trainer.update.join import join_references
from trainer.update.line import load_line_archive
from trainer.update.report import link_from_fit_report, write_update_report
from trainer.update.retrain import prepare_update

__all__ = ["UpdateOptions", "UpdateResult", "run_update", "next_version", "DEFAULT_SEARCH_BUDGET_MIN"]

log = logging.getLogger("trainer.update")

#: Minutes of CNN recipe search an update runs by default when the config has an active ``[search]``
#: (a fit's default is 8): the update re-fits a known recipe family on a little more data.
DEFAULT_SEARCH_BUDGET_MIN = 1.0


@dataclass(frozen=True)
class UpdateOptions:
    """What ``spectro-train update`` was asked (its options, in the same names)."""

    bundle: Path
    archive: Path
    references: Path
    out: Path
    config: Path | None = None
    id_column: str = "sample_id"
    time_column: str = "sampled_at"
    window_s: float = 60.0
    rolling: int = 10
    holdout_fraction: float = 0.3
    budget_min: float | None = None
    model: str | None = None
    seed: int | None = None
    model_version: str | None = None
    retrain: bool = True


@dataclass(frozen=True)
class UpdateResult:
    """Paths written and the ``update.json`` content."""

    summary: dict[str, Any]
    json_path: Path
    report_path: Path
    bundle_path: Path | None


def next_version(version: str) -> str:
    """The old version with its last number incremented (``1.0.0`` -> ``1.0.1``, ``2.0.0-abs`` -> ``2.0.1-abs``),
    or ``<version>-update1`` when it has none.

    >>> next_version("1.0.0"), next_version("2.0.0-absorbance"), next_version("beta")
    ('1.0.1', '2.0.1-absorbance', 'beta-update1')
    """
    head, sep, tail = version.partition("-")
    numbers = list(re.finditer(r"\d+", head))
    if not numbers:
        return f"{version}-update1"[:64]
    m = numbers[-1]
    return (head[: m.start()] + str(int(m.group()) + 1) + head[m.end():] + sep + tail)[:64]


def _config(opts: UpdateOptions, bundle: Any) -> Any:
    """The training config of ``bundle`` with the update's overrides; refused when it did not train that bundle."""
    from trainer.cli import _apply_fit_overrides, _apply_search_overrides
    from trainer.config import load_config

    if opts.config is None:
        raise TrainConfigError("--config: the bundle does not carry its training config; expected the TOML that "
                               f"trained {bundle.model_id} {bundle.model_version} (or --no-retrain), got none")
    cfg = load_config(opts.config)
    if cfg.bundle.model_id != bundle.model_id:
        raise TrainConfigError(f"{opts.config}: expected the config that trained {bundle.model_id} ([bundle] "
                               f"model_id = {bundle.model_id!r}), got model_id = {cfg.bundle.model_id!r}")
    cfg = _apply_fit_overrides(cfg, opts.seed, opts.model)
    budget = opts.budget_min
    if budget is None:
        budget = min(cfg.search.budget_min, DEFAULT_SEARCH_BUDGET_MIN) if cfg.search.active else 0.0
    cfg = _apply_search_overrides(cfg, budget)
    version = opts.model_version or next_version(bundle.model_version)
    if version == bundle.model_version:
        raise ValueError(f"--model-version: expected a version other than the deployed one, got {version}")
    return replace(cfg, bundle=replace(cfg.bundle, model_version=version))


def _original_tests(old_metrics: dict[str, Any], new_metrics: dict[str, Any], skip: str) -> dict[str, Any]:
    """Per original test set and target: RMSEP and bias of each bundle's ``deployed`` evaluation rows."""
    def rows(m: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(e["split"], e["target"]): e for e in m.get("evaluations", []) if e.get("model") == "deployed"}

    old, new = rows(old_metrics), rows(new_metrics)
    out: dict[str, dict[str, Any]] = {}
    for (split, target), e in old.items():
        if split in ("train", "select", skip) or (split, target) not in new:
            continue
        n = new[(split, target)]
        out.setdefault(split, {})[target] = {"n": e.get("n"), "old_rmsep": e.get("rmsep"),
                                             "new_rmsep": n.get("rmsep"), "old_bias": e.get("bias"),
                                             "new_bias": n.get("bias")}
    return out


def _totals(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures per target without their rolling series (a copy)."""
    return {t: {k: v for k, v in f.items() if k != "rolling"} for t, f in figures.items()}


def run_update(opts: UpdateOptions) -> UpdateResult:
    """The whole command (module docstring); raises on bad input with a message naming what is wrong."""
    from edge.bundle import load_bundle

    if opts.rolling < 1:
        raise ValueError(f"--rolling: expected an integer >= 1 (lab samples), got {opts.rolling}")
    bundle = load_bundle(opts.bundle)
    if bundle.task != "regression":
        raise ValueError(f"{opts.bundle.name}: expected a regression bundle, got {bundle.task} (update joins "
                         "numeric reference values)")
    cfg = _config(opts, bundle) if opts.retrain else None
    targets = tuple(t.name for t in bundle.targets)
    units = {t.name: t.unit for t in bundle.targets}
    line = load_line_archive(opts.archive)
    join = join_references(line, opts.references, targets, id_column=opts.id_column, time_column=opts.time_column,
                           window_s=opts.window_s)
    old_ev = evaluate_on_line(bundle, line, join)
    if old_ev.reproduced is None:
        log.warning("none of the joined spectra was predicted on the device by %s (%s %s); the figures are those "
                    "it would have given (the archive names bundle(s) %s)", opts.bundle.name, bundle.model_id,
                    bundle.model_version, ", ".join(sorted(set(line.model_version[join.rows]))))
    t_s = line.received_unix_s[join.rows]
    summary: dict[str, Any] = {
        "schema_version": 1, "targets": list(targets), "archive": line.path.name, "references": opts.references.name,
        "old_bundle": {"file": opts.bundle.name, "model_id": bundle.model_id, "model_version": bundle.model_version,
                       "sha256": bundle.file_sha256},
        "join": {**join.summary(), "window_s": opts.window_s},
        "deployed_on_line": {"rejected": dict(old_ev.rejected), "reproduced": old_ev.reproduced,
                             "rolling_lab_samples": opts.rolling,
                             "figures": line_figures(join, old_ev.pred, line.received_unix_s, window=opts.rolling)},
    }
    new_pred = None
    held = np.zeros(join.rows.size, dtype=bool)
    bundle_path = None
    if cfg is not None:
        from trainer.pipeline import fit_full

        prepared, placed = prepare_update(cfg, line, join, bundle, offline_engine(bundle),
                                          holdout_fraction=opts.holdout_fraction)
        res = fit_full(cfg, opts.out, prepared=prepared)
        bundle_path = res.bundle_path
        new_bundle = load_bundle(res.bundle_path)  # the golden self-test runs, as on the device
        new_ev = evaluate_on_line(new_bundle, line, join)
        new_pred = new_ev.pred
        held[placed.test] = True
        old_fig = line_figures(join, old_ev.pred, line.received_unix_s, rows=placed.test, window=opts.rolling)
        new_fig = line_figures(join, new_ev.pred, line.received_unix_s, rows=placed.test, window=opts.rolling)
        line_cmp: dict[str, Any] = {}
        if placed.test.size:
            line_cmp["held_out"] = {"old": _totals(old_fig), "new": _totals(new_fig)}
        line_cmp["all_joined"] = {
            "old": _totals(summary["deployed_on_line"]["figures"]),
            "new": _totals(line_figures(join, new_ev.pred, line.received_unix_s, window=opts.rolling))}
        summary["new_bundle"] = {"file": res.bundle_path.name, "model_id": new_bundle.model_id,
                                 "model_version": new_bundle.model_version, "sha256": new_bundle.file_sha256,
                                 "deployed_model": res.metrics.get("deployed_model"),
                                 "selection": (res.metrics.get("selection") or {}).get("reason"),
                                 "self_test": "passed" if new_bundle.self_test is not None else "skipped",
                                 "rejected_on_line": dict(new_ev.rejected)}
        summary["line_rows"] = placed.summary()
        summary["comparison"] = {
            "note": ("held_out: lab samples the new model did not train on (a fair comparison); all_joined includes "
                     "the samples it trained on, so the new model's figures there are optimistic"
                     if placed.test.size else
                     "--holdout-fraction 0: the new model trained on every joined sample, so its figures on them are "
                     "in-sample and optimistic"),
            "line": line_cmp,
            "original_tests": _original_tests(bundle.metrics, res.metrics, "line"),
        }
        link_from_fit_report(res.report_path)
    json_path, report = write_update_report(opts.out, summary, t_s=t_s, y=join.y, old_pred=old_ev.pred,
                                            new_pred=new_pred, held_out=held, units=units)
    return UpdateResult(summary=summary, json_path=json_path, report_path=report, bundle_path=bundle_path)
