"""``spectro-bench accuracy``: RMSEP or accuracy of PLS, CNN float and CNN int8 on the shipped protocols, side by side.

Usage::

    spectro-bench accuracy [--configs examples/a.toml,examples/b.toml] [--out DIR] [--reuse] [--epochs E]
                           [--metrics m1.json,m2.json] [--json PATH]

Each config (default: every ``examples/*.toml``) is trained by the trainer's own orchestration
(:func:`trainer.pipeline.fit`) in its own child process (TensorFlow's memory does not pile up across protocols),
into ``DIR/<config stem>/``; the figures are then read from its ``metrics.json`` (``comparison``: one row per test
split and target with the PLS, CNN float and CNN int8 figure; the int8 figure comes from the written bundle run by
the edge runtime). ``--reuse`` tabulates an existing ``metrics.json`` instead of training again; ``--metrics``
tabulates given files without training at all. ``--epochs`` overrides the configs' epochs for a quick look (the
figures are then not those of the protocol, and the table says so). This is slow: minutes per protocol.
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

__all__ = ["add_arguments", "main", "rows_from_metrics", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench accuracy``."""
    parser.add_argument("--configs", help="comma-separated training configs (default: examples/*.toml)")
    parser.add_argument("--metrics", help="comma-separated metrics.json files to tabulate (no training)")
    parser.add_argument("--out", type=Path, default=None, help="training outputs folder (default: the user cache)")
    parser.add_argument("--reuse", action="store_true", help="reuse DIR/<stem>/metrics.json when present")
    parser.add_argument("--epochs", type=int, default=None, help="override the configs' CNN epochs (quick look)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the table as JSON (and .md beside)")


def rows_from_metrics(metrics: dict[str, Any], protocol: str) -> list[dict[str, Any]]:
    """One row per test split and target: ``metric`` (rmsep or accuracy), ``pls``, ``cnn_float``, ``cnn_int8``."""
    key = "accuracy" if metrics.get("task") == "classification" else "rmsep"
    rows = []
    for c in metrics.get("comparison", []):
        rows.append({
            "protocol": protocol,
            "dataset": metrics.get("dataset"),
            "split": c.get("split"),
            "target": c.get("target"),
            "metric": key,
            "pls": c.get(f"pls_{key}"),
            "cnn_float": c.get(f"cnn_float_{key}"),
            "cnn_int8": c.get(f"cnn_int8_{key}"),
            "ratio_int8_to_pls": c.get("ratio_int8_to_pls"),
            "ratio_int8_to_float": c.get("ratio_int8_to_float"),
            "pls_components": (metrics.get("pls_components") or {}).get(c.get("target")),
            "model_bytes": metrics.get("model_bytes"),
            "train_seconds": metrics.get("train_seconds"),
        })
    return rows


def _fit_child(config: Path, out: Path, epochs: int | None) -> int:
    """Train one protocol in a child process; returns its exit code."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "benchmarks.accuracy", "--fit", str(config), "--out", str(out)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
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
                rc = _fit_child(cfg, out, args.epochs)
                log.info("%s: exit code %d after %.0f s", cfg.name, rc, time.perf_counter() - t0)
                if rc != 0 or not metrics.is_file():
                    failures[cfg.stem] = f"training failed (exit code {rc})"
                    continue
            sources.append((cfg.stem, metrics))
    for name, path in sources:
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            failures[name] = f"cannot read {path}: {exc}"
            continue
        rows += rows_from_metrics(metrics, name)
    return jsonable({
        "benchmark": "accuracy",
        "epochs_override": args.epochs,
        "rows": rows,
        "failures": failures,
        "load": system_load(),
        "host": host_facts(),
    })


def render(result: dict[str, Any]) -> str:
    """Markdown table of every row, plus failures."""
    table = markdown_table(
        ["protocol", "test split", "target", "metric", "PLS", "CNN float", "CNN int8", "int8/PLS", "int8/float",
         "PLS LVs", "int8 bytes"],
        [[r["protocol"], r["split"], r["target"], r["metric"], r["pls"], r["cnn_float"], r["cnn_int8"],
          r["ratio_int8_to_pls"], r["ratio_int8_to_float"], r["pls_components"], r["model_bytes"]]
         for r in result["rows"]],
    )
    parts = [table]
    if result["epochs_override"] is not None:
        parts.append(f"\nCNN epochs overridden to {result['epochs_override']}: not the protocols' own figures.")
    for name, why in result["failures"].items():
        parts.append(f"\n{name}: {why}")
    return "\n".join(parts)


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
    """Child-process entry: ``python -m benchmarks.accuracy --fit CONFIG --out DIR [--epochs E]``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy")
    p.add_argument("--fit", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from trainer.config import config_from_dict, load_config
    from trainer.pipeline import fit

    cfg = load_config(args.fit)
    if args.epochs is not None:
        raw = dict(cfg.raw)
        raw["model"] = {**dict(raw.get("model", {})), "epochs": int(args.epochs)}
        raw["report"] = False
        cfg = config_from_dict(raw, base_dir=args.fit.parent, source=f"{args.fit} (epochs={args.epochs})")
    fit(cfg, args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
