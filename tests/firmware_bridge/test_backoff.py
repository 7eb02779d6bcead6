"""Full-jitter reconnection delays (firmware_bridge.backoff), used by the serial transport and the MQTT client."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.backoff import Backoff, full_jitter_delay_s


@given(st.integers(0, 200), st.floats(0.01, 10.0), st.floats(1.0, 100.0), st.integers())
def test_every_delay_lies_between_the_bounds_and_within_the_attempts_window(attempt: int, lo: float, factor: float,
                                                                            seed: int) -> None:
    hi = lo * factor
    delay = full_jitter_delay_s(attempt, (lo, hi), random.Random(seed))
    assert lo <= delay <= min(hi, lo * 2.0 ** (attempt + 1)) * (1 + 1e-12)


def test_a_fleet_that_lost_its_broker_at_once_does_not_retry_at_once() -> None:
    """20 devices, each with its own random source: their first retries spread over [lo, 2 lo], their fifth over
    [lo, 32 lo]; with attempt-only delays (paho's backoff) every device would retry at the same instant."""
    fleet = [Backoff((1.0, 60.0), random.Random(device)) for device in range(20)]
    first = [b.next_delay_s() for b in fleet]
    assert min(first) >= 1.0 and max(first) <= 2.0
    assert max(first) - min(first) > 0.5  # spread over more than half the window
    assert len({round(d, 3) for d in first}) == 20
    for _ in range(3):
        for b in fleet:
            b.next_delay_s()
    fifth = [b.next_delay_s() for b in fleet]
    assert max(fifth) <= 32.0 and max(fifth) - min(fifth) > 10.0


def test_the_window_stops_at_the_longest_delay_and_resets_once_connected() -> None:
    b = Backoff((0.5, 4.0), random.Random(1))
    delays = [b.next_delay_s() for _ in range(50)]
    assert all(0.5 <= d <= 4.0 for d in delays) and max(delays[10:]) > 3.0  # the window reached [0.5, 4]
    b.reset()
    assert b.attempt == 0 and 0.5 <= b.next_delay_s() <= 1.0


def test_equal_bounds_give_a_fixed_delay() -> None:
    assert full_jitter_delay_s(7, (1.0, 1.0), random.Random(0)) == 1.0


def test_bounds_in_the_wrong_order_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 0 <= shortest delay <= longest delay"):
        Backoff((5.0, 1.0))
