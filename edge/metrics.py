"""Thread-safe counters and latency percentiles of the daemon, summarised into its periodic metrics message.

Hand-written because the device imports only numpy, pyserial and paho-mqtt: a Prometheus client would be one more
dependency for two small classes.

>>> c = Counters()
>>> c.incr("frames_in"); c.incr("frames_in", 2)
>>> c.snapshot()["frames_in"]
3
>>> w = LatencyWindow(capacity=4)
>>> for v in (10.0, 20.0, 30.0, 40.0, 50.0): w.add(v)
>>> w.summary()["count"], w.summary()["max_us"]
(4, 50.0)
"""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

from edge.validation import require_int

__all__ = ["Counters", "LatencyWindow"]


class Counters:
    """Named monotonically increasing integer counters, safe to increment from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: defaultdict[str, int] = defaultdict(int)

    def incr(self, name: str, n: int = 1) -> None:
        """Add ``n`` (default 1) to counter ``name`` (created at 0)."""
        with self._lock:
            self._values[name] += n

    def get(self, name: str) -> int:
        """Current value of ``name`` (0 when never incremented)."""
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """Copy of every counter, sorted by name."""
        with self._lock:
            return dict(sorted(self._values.items()))


class LatencyWindow:
    """The last ``capacity`` latencies (microseconds) in a ring buffer, summarised as percentiles.

    Parameters
    ----------
    capacity : int
        Samples kept (default 4096).
    """

    def __init__(self, capacity: int = 4096) -> None:
        require_int(capacity, "capacity", ValueError, minimum=1)
        self._lock = threading.Lock()
        self._buf = np.zeros(capacity, dtype=np.float64)
        self._n = 0
        self._i = 0

    def add(self, latency_us: float) -> None:
        """Record one latency, microseconds."""
        with self._lock:
            self._buf[self._i] = latency_us
            self._i = (self._i + 1) % self._buf.size
            self._n = min(self._n + 1, self._buf.size)

    def summary(self) -> dict[str, float | int]:
        """``count``, ``p50_us``, ``p95_us``, ``p99_us``, ``max_us``, ``mean_us`` of the window (zeros when empty)."""
        with self._lock:
            data = self._buf[: self._n].copy()
        if data.size == 0:
            return {"count": 0, "p50_us": 0.0, "p95_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "mean_us": 0.0}
        p50, p95, p99 = np.percentile(data, [50.0, 95.0, 99.0])
        return {
            "count": int(data.size),
            "p50_us": round(float(p50), 1),
            "p95_us": round(float(p95), 1),
            "p99_us": round(float(p99), 1),
            "max_us": round(float(data.max()), 1),
            "mean_us": round(float(data.mean()), 1),
        }
