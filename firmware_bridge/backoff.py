"""Reconnection delays with full jitter, shared by the serial transport and the edge's MQTT client.

After a broker restart or a power dip every device of a site loses its link at the same instant; delays that depend
only on the attempt number bring them all back at the same instant too, and they retry in lock-step for as long as
the far end stays down (a "thundering herd" on the broker's TLS handshakes).  "Full jitter" draws each delay
uniformly over the whole window the exponential backoff has reached, so the retries spread out more with every
failed attempt:

    delay(attempt) ~ uniform(lo, min(hi, lo * 2 ** (attempt + 1)))

with ``attempt`` 0 right after the link was lost: the first retry lands in ``[lo, 2 lo]``, never sooner than the
configured minimum and never later than the configured maximum.  paho-mqtt's own backoff has no jitter and pyserial
has no reconnection at all, hence this small module; it is pure (the caller passes its ``random.Random``).

>>> import random
>>> b = Backoff((1.0, 60.0), random.Random(0))
>>> [round(b.next_delay_s(), 2) for _ in range(4)]
[1.84, 3.27, 3.94, 4.88]
"""

from __future__ import annotations

import random

__all__ = ["Backoff", "full_jitter_delay_s"]


def full_jitter_delay_s(attempt: int, bounds_s: tuple[float, float], rng: random.Random) -> float:
    """Delay before reconnection attempt ``attempt`` (0-based), seconds: uniform over ``[lo, min(hi, lo 2^(n+1))]``."""
    lo, hi = bounds_s
    ceiling = min(hi, lo * 2.0 ** min(attempt + 1, 64))
    return lo if ceiling <= lo else rng.uniform(lo, ceiling)


class Backoff:
    """The attempt counter and random source of one link: :meth:`next_delay_s` after a failure, :meth:`reset` once
    connected."""

    def __init__(self, bounds_s: tuple[float, float], rng: random.Random | None = None) -> None:
        lo, hi = float(bounds_s[0]), float(bounds_s[1])
        if not 0.0 <= lo <= hi:
            raise ValueError(f"expected 0 <= shortest delay <= longest delay (seconds), got {bounds_s}")
        self.bounds_s = (lo, hi)
        self.attempt = 0
        self._rng = rng if rng is not None else random.Random()  # seeded from os.urandom: devices differ

    def next_delay_s(self) -> float:
        """The delay before the next attempt; each call widens the window until it reaches the longest delay."""
        delay = full_jitter_delay_s(self.attempt, self.bounds_s, self._rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """The link is up: the next failure starts again from the shortest window."""
        self.attempt = 0
