"""``spectro-bench compare A.json B.json``: two benchmark result files side by side, with B/A ratios.

Every numeric leaf present in both files becomes a row (nested keys joined with dots), so a run on a Raspberry Pi
or a Jetson can be set against this machine, or against an earlier run, whatever the benchmark was.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Iterator

from benchmarks.results import markdown_table, write_json


def _numeric_leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield prefix, float(obj)
    elif isinstance(obj, dict):
        for key in sorted(obj):
            yield from _numeric_leaves(obj[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            label = item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else str(i)
            yield from _numeric_leaves(item, f"{prefix}[{label}]")


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{key, a, b, ratio}`` for every numeric leaf in both results (ratio = b / a, None when a is 0)."""
    left = dict(_numeric_leaves({k: v for k, v in a.items() if k != "host"}))
    right = dict(_numeric_leaves({k: v for k, v in b.items() if k != "host"}))
    rows = []
    for key in left.keys() & right.keys():
        va, vb = left[key], right[key]
        ratio = vb / va if va != 0 and math.isfinite(va) and math.isfinite(vb) else None
        rows.append({"key": key, "a": va, "b": vb, "ratio": ratio})
    return sorted(rows, key=lambda r: r["key"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, help="first result JSON (the reference)")
    parser.add_argument("b", type=Path, help="second result JSON")
    parser.add_argument("--json", metavar="PATH", help="write the comparison as JSON (and a .md table beside it)")


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"spectro-bench compare: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"spectro-bench compare: expected a JSON object in {path}, got {type(data).__name__}")
    return data


def run(args: argparse.Namespace) -> int:
    a, b = _load(args.a), _load(args.b)
    rows = compare(a, b)
    hosts = [(d.get("host") or {}).get("cpu_model", "?") for d in (a, b)]
    table = markdown_table(
        ["figure", f"A ({hosts[0]})", f"B ({hosts[1]})", "B/A"],
        [(r["key"], r["a"], r["b"], r["ratio"]) for r in rows],
    )
    print(table)
    write_json(args.json, {"a": str(args.a), "b": str(args.b), "host_a": a.get("host"), "host_b": b.get("host"),
                           "rows": rows}, table)
    return 0
