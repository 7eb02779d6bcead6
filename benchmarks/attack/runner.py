"""Running the attacks: the list, one rig each, the report (the JSON's content) and its table, and the CLI."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.attack.commands import (
    command_flood,
    command_flood_unsigned,
    reload_flood,
    stale_retained,
    unauthenticated,
)
from benchmarks.attack.device import forged_frames, hostile_status
from benchmarks.attack.disk import disk_full
from benchmarks.attack.oversized import oversized
from benchmarks.attack.rig import Result, Rig
from benchmarks.harness import HarnessError, ensure_trained, repo_root

__all__ = ["ATTACKS", "add_arguments", "run", "run_attacks", "table"]

#: The attacks, in the order they run.
ATTACKS = ("oversized", "oversized_mqtt311", "unauthenticated", "disk_full", "reload_flood", "command_flood",
           "command_flood_unsigned", "hostile_status", "forged_frames", "stale_retained")


def run_attacks(names: tuple[str, ...], bundle: Path, workdir: Path, *, size_mb: int = 64, flood: int = 200,
                reloads: int = 5, tmpfs_mb: int = 2, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``names`` (each on its own rig under ``workdir``) and return the report (the JSON's content)."""
    steps: dict[str, Callable[[Rig], Result]] = {
        "oversized": lambda r: oversized(r, size_mb, "5"),
        "oversized_mqtt311": lambda r: oversized(r, size_mb, "3.1.1"), "unauthenticated": unauthenticated,
        "disk_full": lambda r: disk_full(r, tmpfs_mb), "reload_flood": lambda r: reload_flood(r, reloads),
        "command_flood": lambda r: command_flood(r, flood),
        "command_flood_unsigned": lambda r: command_flood_unsigned(r, flood), "hostile_status": hostile_status,
        "forged_frames": forged_frames, "stale_retained": stale_retained}
    results: list[Result] = []
    for name in names:
        if name not in steps:
            raise HarnessError(f"expected attacks among {list(ATTACKS)}, got {name!r}")
        echo(f"attack {name} ...")
        t0 = time.monotonic()
        rig = Rig(workdir / name, bundle)
        try:
            result = steps[name](rig)
        except HarnessError as exc:
            result = Result(name, False, detail={"error": str(exc)})
        finally:
            rig.close()
        result.detail["wall_s"] = round(time.monotonic() - t0, 1)
        results.append(result)
    ran = [r for r in results if r.held is not None]
    # The slowest redelivery of the oversized attacks run (None: none ran, or one never delivered again).
    over = [r.detail.get("redeliver_after_oversized_s") for r in results if r.name.startswith("oversized")]
    return {
        "attacks": [r.to_dict() for r in results],
        "all_held": bool(ran) and all(r.held for r in ran),
        "predictions_lost_unallowed": sum(r.lost for r in results),
        "redeliver_after_oversized_s": max(over) if over and None not in over else None,
    }


def table(report: Mapping[str, Any]) -> str:
    lines = ["| attack | held | lost | detail |", "|---|---|---|---|"]
    for a in report["attacks"]:
        held = "skipped" if a["held"] is None else ("yes" if a["held"] else "**no**")
        detail = ", ".join(f"{k}={v}" for k, v in a["detail"].items() if k not in ("answers", "note"))
        lines.append(f"| {a['name']} | {held} | {a['lost']} | {detail} |")
    lines.append(f"\nall held: {report['all_held']}; predictions lost (not allowed): "
                 f"{report['predictions_lost_unallowed']}; redelivery after the oversized message: "
                 f"{report['redeliver_after_oversized_s']} s")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated subset of: " + ", ".join(ATTACKS))
    p.add_argument("--size-mb", type=int, default=64, help="size of the oversized command message")
    p.add_argument("--flood", type=int, default=200, help="unauthenticated reloads before the authenticated command")
    p.add_argument("--reloads", type=int, default=5, help="reloads of the bundle in service, one every 3 s")
    p.add_argument("--tmpfs-mb", type=int, default=2, help="size of the outbox's filesystem in the disk-full attack")
    p.add_argument("--bundle", type=Path, help="bundle to serve (default: the demo model, trained once and cached)")
    p.add_argument("--json", type=Path, help="write the report here (and the table as PATH.md)")


def run(args: argparse.Namespace) -> int:
    bundle = args.bundle or ensure_trained(repo_root() / "examples" / "demo.toml", echo=lambda s: None).bundle
    names = tuple(n.strip() for n in args.attacks.split(",") if n.strip())
    with tempfile.TemporaryDirectory(prefix="spectro-attack-") as tmp:
        report = run_attacks(names, Path(bundle), Path(tmp), size_mb=args.size_mb, flood=args.flood,
                             reloads=args.reloads, tmpfs_mb=args.tmpfs_mb)
    text = table(report)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        Path(f"{args.json}.md").write_text(text + "\n", encoding="utf-8")
    # as loop, drift and soak: an attack that did not hold fails the command (one that could not run is no failure)
    return 1 if any(a["held"] is False for a in report["attacks"]) else 0
