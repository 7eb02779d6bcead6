"""The golden version-1 payloads of tests/data/messages (written by its make_messages.py), for tests that need a
real payload of a kind."""

from __future__ import annotations

from pathlib import Path

#: Where the golden payloads ``v1_<name>.json`` are.
GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "messages"


def golden_names() -> list[str]:
    """Every golden's name (``prediction``, ``status_online``, ...), sorted."""
    return sorted(p.stem[len("v1_"):] for p in GOLDEN_DIR.glob("v1_*.json"))


def golden_payload(name: str) -> bytes:
    """The bytes of ``v1_<name>.json``: exactly what the daemon publishes for that case."""
    return (GOLDEN_DIR / f"v1_{name}.json").read_bytes()
