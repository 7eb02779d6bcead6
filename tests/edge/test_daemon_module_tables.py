"""The two tables of where things live in the daemon, docs/daemon.md's and ``edge.daemon``'s docstring, name every
module of ``edge/daemon/`` (each was missing some: deploy, probation, lines, control_watch, install, ...)."""

from __future__ import annotations

import re
from pathlib import Path

import edge.daemon

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "edge" / "daemon").glob("*.py") if p.stem != "__init__")


def test_docs_daemon_md_table_names_every_module_once() -> None:
    text = (REPO / "docs" / "daemon.md").read_text(encoding="utf-8")
    table = text.split("| module of `edge/daemon/` |", 1)[1].splitlines()[2:]
    rows = table[: next(i for i, line in enumerate(table) if not line.startswith("|"))]
    named = re.findall(r"`(\w+)\.py`", "\n".join(row.split("|")[1] for row in rows))
    assert sorted(named) == MODULES


def test_the_package_docstring_names_every_module() -> None:
    doc = edge.daemon.__doc__ or ""
    where = doc.split("Where things live", 1)[1].split("Threads and hand-overs", 1)[0]
    assert sorted(set(re.findall(r":mod:`edge\.daemon\.(\w+)`", where))) == MODULES
