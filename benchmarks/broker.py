"""Where :mod:`benchmarks.throughput` still imports the benchmarks' broker from; it lives in
:mod:`benchmarks.harness.mosquitto` (one mosquitto for the harness, the benchmarks and the tests).  Remove this
module once throughput imports ``benchmarks.harness.Mosquitto``."""

from __future__ import annotations

from benchmarks.harness.mosquitto import Mosquitto

__all__ = ["Mosquitto"]
