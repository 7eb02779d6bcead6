"""``spectro-bench accuracy``: RMSEP or accuracy of PLS, CNN float and CNN int8 on the shipped protocols, side by side.

Usage::

    spectro-bench accuracy [--configs examples/a.toml,examples/b.toml] [--out DIR] [--reuse] [--epochs E]
                           [--metrics m1.json,m2.json] [--json PATH] [--no-transfer]

Each config (default: every ``examples/*.toml``) is trained by the trainer's own orchestration
(:func:`trainer.pipeline.fit`) in its own child process (TensorFlow's memory does not pile up across protocols),
into ``DIR/<config stem>/``; the figures are then read from its ``metrics.json`` (``comparison``: one row per test
split and target with the PLS, CNN float and CNN int8 figure; the int8 figure comes from the written bundle run by
the edge runtime). ``--reuse`` tabulates an existing ``metrics.json`` instead of training again; ``--metrics``
tabulates given files without training at all. ``--epochs`` overrides the configs' epochs for a quick look (the
figures are then not those of the protocol, and the table says so). This is slow: minutes per protocol.

Calibration transfer (issue 8): for a dataset measured on two instruments (columns ``instrument`` and
``sample_id``, i.e. the tablets), the child also evaluates DS and PDS transfer from 5, 10 and 20 transfer samples
taken from the training split only (``split`` ``"test"``), tested on split ``"calibrate"``, for PLS, the int8 CNN
and fine-tuning the CNN on the transfer samples (:func:`trainer.transfer.transfer_rows_for_run`), and writes the
rows to ``transfer.json`` beside ``metrics.json``; they come out under the result's ``transfer`` key (keys
``method``, ``n_transfer``, ``model``, ``rmsep_inst1``, ``rmsep_inst2``) and as a second table. ``--no-transfer``
skips that computation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.results import (
    host_facts,
    jsonable,
    markdown_table,
    system_load,
    write_json,
)

log = logging.getLogger(__name__)

#: The rank test's level for a residual shift: trainer.conformal.SHIFT_P_VALUE (this module imports the trainer
#: only inside the functions that train).
SHIFT_P_VALUE = 0.01

__all__ = [
    "TRANSFER_FILE", "add_arguments", "main", "rows_from_metrics", "run", "transfer_rows", "transfer_rows_from_file",
]

#: Written by the child beside ``metrics.json``: ``{"rows": [...]}``, the protocol's calibration-transfer rows.
TRANSFER_FILE = "transfer.json"
#: Transfer split (transfer samples come from it) and test split of a two-instrument dataset (the tablets).
TRANSFER_POOL_SPLIT = "test"
TRANSFER_TEST_SPLIT = "calibrate"
#: Transfer-set sizes, and fine-tuning epochs of the CNN on them (few: one fine-tuning and int8 conversion each).
TRANSFER_SIZES = (5, 10, 20)
FINETUNE_EPOCHS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench accuracy``."""
    parser.add_argument("--configs", help="comma-separated training configs (default: examples/*.toml)")
    parser.add_argument("--metrics", help="comma-separated metrics.json files to tabulate (no training)")
    parser.add_argument("--out", type=Path, default=None, help="training outputs folder (default: the user cache)")
    parser.add_argument("--reuse", action="store_true", help="reuse DIR/<stem>/metrics.json when present")
    parser.add_argument("--epochs", type=int, default=None, help="override the configs' CNN epochs (quick look)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the table as JSON (and .md beside)")
    parser.add_argument("--no-transfer", action="store_true",
                        help="skip the calibration-transfer rows (two-instrument datasets only)")


def rows_from_metrics(metrics: dict[str, Any], protocol: str) -> list[dict[str, Any]]:
    """One row per test split and target: ``metric`` (rmsep or accuracy), ``pls``, ``cnn_float``, ``cnn_int8``,
    ``deployed`` (the bundle as the edge runs it) and ``deployed_model`` (``cnn``, ``pls`` or ``blend``: the model
    serving that target); for a regression also the interval ``coverage`` on the split, ``ood_flagged`` and the
    residual shift against the calibration rows (``residual_ratio``, ``residual_shift_p``, ``residual_shifted``);
    with a declared line detector, ``deployed_line`` (the deployed bundle on line copies of the split,
    ``metrics.json`` ``line_accuracy``) and ``ratio_line_to_offline``, else None."""
    key = "accuracy" if metrics.get("task") == "classification" else "rmsep"
    cov = metrics.get("interval_coverage") or {}
    ood = metrics.get("ood") or {}
    line_splits = (metrics.get("line_accuracy") or {}).get("splits") or {}
    rows = []
    for c in metrics.get("comparison", []):
        split, target = c.get("split"), c.get("target")
        shift = ((cov.get("residual_shift") or {}).get(split) or {}).get(target) or {}
        # The bundle's own OOD monitor on the split (T2 or Q, and its autoencoder where it has one), through the
        # declared line detector where the config has one.
        line = bool(ood.get("alarm_rate_line"))
        alarms = (ood.get("alarm_rate_line" if line else "alarm_rate") or {}).get(split) or {}
        ae_alarms = ((ood.get("autoencoder") or {}).get("alarm_rate_line" if line else "alarm_rate") or {}).get(split)
        on_line = (line_splits.get(split) or {}).get(target) or {}
        rows.append({
            "protocol": protocol,
            "dataset": metrics.get("dataset"),
            "split": split,
            "target": target,
            "metric": key,
            "pls": c.get(f"pls_{key}"),
            "cnn_float": c.get(f"cnn_float_{key}"),
            "cnn_int8": c.get(f"cnn_int8_{key}"),
            "deployed": c.get(f"deployed_{key}"),
            # The model serving this target (a per-target bundle serves each target from its winner).
            "deployed_model": (metrics.get("deployed_per_target") or {}).get(c.get("target"),
                                                                            metrics.get("deployed_model")),
            "ratio_int8_to_pls": c.get("ratio_int8_to_pls"),
            "ratio_deployed_to_pls": c.get("ratio_deployed_to_pls"),
            "ratio_int8_to_float": c.get("ratio_int8_to_float"),
            # The deployed bundle through the declared line detector (its line copies of the split), and / offline.
            "deployed_line": on_line.get(key),
            "ratio_line_to_offline": on_line.get("ratio"),
            "pls_components": (metrics.get("pls_components") or {}).get(c.get("target")),
            # The deployed bundle's interval coverage on the split (regression; nominal: interval_nominal), the
            # share of its spectra the OOD monitor flags, and its errors against the calibration rows' (regression:
            # median |residual| ratio; shifted: a two-sided rank test below p 0.01 with the split's errors larger).
            "interval_nominal": cov.get("nominal"),
            "coverage": (cov.get(split) or {}).get(target),
            "ood_flagged": (ae_alarms or {}).get("any", alarms.get("either")),
            "residual_ratio": shift.get("ratio"),
            "residual_shift_p": shift.get("p_value"),
            "residual_shifted": shift.get("shifted"),
            "model_bytes": metrics.get("model_bytes"),
            "train_seconds": metrics.get("train_seconds"),
        })
    return rows


def transfer_rows_from_file(path: Path, protocol: str) -> list[dict[str, Any]]:
    """The rows of a child's ``transfer.json`` with ``protocol`` added; none when the file is absent."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [{"protocol": protocol, **r} for r in data.get("rows", [])]


def _fit_child(config: Path, out: Path, epochs: int | None, transfer: bool = True) -> int:
    """Train one protocol in a child process; returns its exit code."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "benchmarks.accuracy", "--fit", str(config), "--out", str(out)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if not transfer:
        cmd.append("--no-transfer")
    return subprocess.run(cmd, env=env, check=False).returncode


def _default_out() -> Path:
    from benchmarks.artifacts import default_cache_dir

    return default_cache_dir() / "accuracy"


def _split(text: str | None) -> list[Path]:
    return [Path(p.strip()) for p in (text or "").split(",") if p.strip()]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or reuse) and tabulate; returns the result dict."""
    from benchmarks.artifacts import repo_root

    rows: list[dict[str, Any]] = []
    transfer: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    sources: list[tuple[str, Path]] = [(p.parent.name or p.stem, p) for p in _split(args.metrics)]
    if not args.metrics:
        configs = _split(args.configs) or sorted((repo_root() / "examples").glob("*.toml"))
        if not configs:
            raise FileNotFoundError("expected training configs (examples/*.toml or --configs), found none")
        out_root = args.out or _default_out()
        for cfg in configs:
            out = out_root / (cfg.stem if args.epochs is None else f"{cfg.stem}-e{args.epochs}")
            metrics = out / "metrics.json"
            if not (args.reuse and metrics.is_file()):
                log.info("training %s into %s", cfg, out)
                t0 = time.perf_counter()
                rc = _fit_child(cfg, out, args.epochs, transfer=not args.no_transfer)
                log.info("%s: exit code %d after %.0f s", cfg.name, rc, time.perf_counter() - t0)
                if rc != 0 or not metrics.is_file():
                    failures[cfg.stem] = f"training (or its transfer rows) failed (exit code {rc})"
                    continue
            sources.append((cfg.stem, metrics))
    for name, path in sources:
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            failures[name] = f"cannot read {path}: {exc}"
            continue
        rows += rows_from_metrics(metrics, name)
        if not args.no_transfer:
            try:
                transfer += transfer_rows_from_file(path.with_name(TRANSFER_FILE), name)
            except (OSError, ValueError) as exc:
                failures[name] = f"cannot read {path.with_name(TRANSFER_FILE)}: {exc}"
    return jsonable({
        "benchmark": "accuracy",
        "epochs_override": args.epochs,
        "rows": rows,
        "transfer": transfer,
        "failures": failures,
        "load": system_load(),
        "host": host_facts(),
    })


def render(result: dict[str, Any]) -> str:
    """Markdown table of every row, plus failures."""
    table = markdown_table(
        ["protocol", "test split", "target", "metric", "PLS", "CNN float", "CNN int8", "deployed", "deployed/PLS",
         "int8/PLS", "int8/float", "line / offline", "PLS LVs", "model bytes", "coverage", "OOD flagged",
         "errors vs calibration", "fit s"],
        [[r["protocol"], r["split"], r["target"], r["metric"], r["pls"], r["cnn_float"], r["cnn_int8"],
          f"{r.get('deployed_model')} {r['deployed']:.4g}" if r.get("deployed") is not None else None,
          r.get("ratio_deployed_to_pls"), r["ratio_int8_to_pls"], r["ratio_int8_to_float"],
          r.get("ratio_line_to_offline"), r["pls_components"],
          r["model_bytes"], r.get("coverage"), r.get("ood_flagged"), _shift_cell(r), r.get("train_seconds")]
         for r in result["rows"]],
    )
    parts = [table]
    if result.get("transfer"):
        parts.append("\nCalibration transfer (instrument 1 -> 2; transfer samples from the training split):\n")
        parts.append(markdown_table(
            ["protocol", "target", "model", "method", "n transfer", "RMSEP inst1", "RMSEP inst2", "inst2/inst1",
             "PDS window"],
            [[r["protocol"], r.get("target"), r["model"], r["method"], r["n_transfer"], r["rmsep_inst1"],
              r["rmsep_inst2"], r["rmsep_inst2"] / r["rmsep_inst1"] if r["rmsep_inst1"] else None, r.get("window")]
             for r in result["transfer"]],
        ))
    if result["epochs_override"] is not None:
        parts.append(f"\nCNN epochs overridden to {result['epochs_override']}: not the protocols' own figures.")
    for name, why in result["failures"].items():
        parts.append(f"\n{name}: {why}")
    return "\n".join(parts)


def _shift_cell(row: dict[str, Any]) -> str | None:
    """The split's median |residual| over the calibration rows', marked when the rank test calls it a shift (larger
    errors: under-coverage) or the errors significantly smaller (over-coverage)."""
    ratio, p = row.get("residual_ratio"), row.get("residual_shift_p")
    if ratio is None:  # no ratio to a calibration set predicted exactly
        return f"shifted (calibration median 0, p {p:.1g})" if row.get("residual_shifted") else None
    if row.get("residual_shifted"):
        return f"{ratio:.2f}x (shifted, p {p:.1g})"
    if p is not None and p < SHIFT_P_VALUE and ratio < 1.0:  # conservative intervals there: over-coverage
        return f"{ratio:.2f}x (smaller, p {p:.1g})"
    return f"{ratio:.2f}x"


def run(args: argparse.Namespace) -> int:
    """``spectro-bench accuracy``."""
    try:
        result = measure(args)
    except FileNotFoundError as exc:
        print(f"spectro-bench accuracy: {exc}", file=sys.stderr)
        return 1
    text = render(result)
    print(text)
    write_json(args.json, result, markdown=text)
    return 0 if result["rows"] and not result["failures"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Child-process entry: ``python -m benchmarks.accuracy --fit CONFIG --out DIR [--epochs E] [--no-transfer]``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy")
    p.add_argument("--fit", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--no-transfer", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from trainer.config import config_from_dict, load_config
    from trainer.pipeline import fit_full

    cfg = load_config(args.fit)
    if args.epochs is not None:
        raw = dict(cfg.raw)
        raw["model"] = {**dict(raw.get("model", {})), "epochs": int(args.epochs)}
        raw["report"] = False
        cfg = config_from_dict(raw, base_dir=args.fit.parent, source=f"{args.fit} (epochs={args.epochs})")
    stale = args.out / TRANSFER_FILE
    if stale.is_file():
        stale.unlink()
    result = fit_full(cfg, args.out)
    if not args.no_transfer:
        trained = result.extras.get("trained")
        rows = transfer_rows(cfg, pls=result.extras.get("pls"), bundle_path=result.bundle_path,
                             keras_model=None if trained is None else trained.model)
        if rows is not None:
            write_json(stale, jsonable({"rows": rows}))
    return 0


def transfer_rows(
    cfg: Any,
    *,
    pls: Any = None,
    bundle_path: Path | None = None,
    keras_model: Any = None,
    n_transfer: Sequence[int] = TRANSFER_SIZES,
    finetune_epochs: int = FINETUNE_EPOCHS,
) -> list[dict[str, Any]] | None:
    """Calibration-transfer rows of one trained protocol, one block per target; None for a one-instrument dataset.

    Parameters
    ----------
    cfg : TrainConfig
        The protocol's config (its data is loaded again here, all rows and columns).
    pls : PlsBaseline, optional
        The run's PLS baseline (rows with ``model`` ``pls``).
    bundle_path : Path, optional
        The run's bundle (rows with ``model`` ``cnn_int8``).
    keras_model : keras.Model, optional
        The run's float CNN; fine-tuning rows (``method`` ``finetune``) for a single-target regression only.
    n_transfer, finetune_epochs
        As :func:`trainer.transfer.transfer_rows_for_run`.

    Returns
    -------
    list of dict or None
        Rows with keys ``target``, ``method``, ``n_transfer``, ``model``, ``rmsep_inst1``, ``rmsep_inst2`` (and
        ``window`` for PDS).
    """
    import numpy as np

    from trainer.data import load_configured
    from trainer.transfer import transfer_rows_for_run

    if cfg.task != "regression":
        return None
    ds = load_configured(cfg.data)
    cols = ds.columns
    if not all(c in cols for c in ("instrument", "sample_id", "split")):
        return None
    split = np.asarray(cols["split"]).astype(str)
    Y = np.asarray(ds.y, dtype=np.float64).reshape(ds.n_samples, -1)
    rows: list[dict[str, Any]] = []
    for j, target in enumerate(ds.target_names):
        log.info("calibration transfer for %s", target)
        got = transfer_rows_for_run(
            ds.X, Y[:, j], instrument=cols["instrument"], sample_id=cols["sample_id"],
            train_rows=split == TRANSFER_POOL_SPLIT, test_rows=split == TRANSFER_TEST_SPLIT,
            pls_predict=None if pls is None else pls.predict, bundle_path=bundle_path,
            keras_model=keras_model if Y.shape[1] == 1 else None, n_transfer=n_transfer,
            finetune_epochs=finetune_epochs, seed=cfg.seed, output=j,
        )
        rows += [{"target": target, **r} for r in got]
    return rows


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
