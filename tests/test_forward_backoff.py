"""Capped exponential backoff with jitter."""

from __future__ import annotations

import pytest

from statsyard.forward.backoff import Backoff


def test_delays_double_up_to_the_cap_within_the_upper_half_of_each_step() -> None:
    """Step k is min(max, min * 2**k); the delay lies in [step/2, step]."""
    lows = Backoff(0.1, 1.0, uniform=lambda low, high: low)
    highs = Backoff(0.1, 1.0, uniform=lambda low, high: high)
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [lows.next_delay() for _ in steps] == pytest.approx([s / 2 for s in steps])
    assert [highs.next_delay() for _ in steps] == pytest.approx(steps)
    assert highs.attempts == len(steps)
    highs.reset()
    assert highs.next_delay() == pytest.approx(0.1)


def test_jitter_spreads_delays() -> None:
    """Real jitter: the same step gives different delays."""
    delays = set()
    for _ in range(20):
        backoff = Backoff(1.0, 1.0)
        delays.add(backoff.next_delay())
    assert len(delays) > 1
    assert all(0.5 <= d <= 1.0 for d in delays)


def test_a_maximum_below_the_minimum_is_refused() -> None:
    """Misconfiguration is an error, not a silent cap."""
    with pytest.raises(ValueError, match="minimum <= maximum"):
        Backoff(2.0, 1.0)
