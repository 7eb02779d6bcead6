"""Commands to an in-process daemon as production delivers them: a body signed with the tests' HMAC key (as an
operator signs it; :func:`tests.support.processes.signed`) handed to :meth:`edge.daemon.Daemon.on_command`, which is
what paho's network thread calls for a message on ``.../cmd/<name>``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.processes import HMAC_KEY, signed

__all__ = ["commands_section", "send_signed"]


def commands_section(tmp: Path, *allowed_dirs: Path) -> dict[str, Any]:
    """The ``[commands]`` table of a daemon taking signed commands: on, its HMAC key written to ``tmp/hmac.key``,
    bundles read from ``allowed_dirs`` (none given: the directory of ``bundle.path``, the default)."""
    key = tmp / "hmac.key"
    key.write_bytes(HMAC_KEY)
    section: dict[str, Any] = {"enabled": True, "hmac_key_path": str(key)}
    if allowed_dirs:
        section["allowed_dirs"] = [str(d) for d in allowed_dirs]
    return section


def send_signed(daemon: Any, name: str, args: Mapping[str, Any], request_id: str) -> None:
    """Deliver the signed command ``name`` with ``args`` to ``daemon`` through its command path (parsed, its
    signature checked, queued in the signed lane, then executed by the housekeeping thread)."""
    from edge.commands import make_command

    body = make_command(name, dict(args), device_id=daemon.config.device.device_id, request_id=request_id)
    daemon.on_command(name, signed(body))
