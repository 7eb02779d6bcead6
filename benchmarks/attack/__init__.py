"""``spectro-bench attack``: the high and medium findings of issue #18 replayed against a running daemon.

Each attack starts its own broker, device (``spectro-sim`` on a pty, or a hostile device played here on a pty pair)
and ``spectro-edge run`` (:mod:`benchmarks.harness`, as production starts it), attacks, and reports whether the
daemon ``held``, how many predictions were lost that the daemon's policy does not allow (a loss that is counted in
its metrics, or one while no daemon ran after a crash, is allowed; a silent one is not), and what it saw.

Command settings are the project's defaults (``[commands]`` as ``spectro-edge config --example`` has them), plus an
HMAC key file (and ``enabled = true``: off, every attack on commands holds trivially), so the figures follow the
defaults as they change; ``command_flood_unsigned`` states ``require_auth = false`` (the flood the command lanes
protect against).
A daemon that exits is restarted after 2 s, as ``deploy/spectrolite-edge.service`` (``Restart=always``) does.

The parts: :mod:`~benchmarks.attack.rig` (the processes of one attack and what they saw), one module per family of
attacks (:mod:`~benchmarks.attack.oversized`, :mod:`~benchmarks.attack.disk`, :mod:`~benchmarks.attack.commands`,
:mod:`~benchmarks.attack.device`) and :mod:`~benchmarks.attack.runner` (the list, the report, the CLI, which
``spectro-bench attack`` reaches through this package).
"""

from __future__ import annotations

from benchmarks.attack.runner import ATTACKS, add_arguments, run

__all__ = ["ATTACKS", "add_arguments", "run"]
