"""Capped exponential backoff with jitter, for retrying a delivery for ever."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays between attempts: doubling from ``minimum`` up to ``maximum``.

    Each delay is drawn uniformly from the upper half of its step ("equal
    jitter"): forwarders that failed together do not retry in lockstep, and
    the delay never falls below half the step.

    Args:
        minimum: first step, in seconds.
        maximum: the cap, in seconds.
        uniform: random source (tests pass a fixed one).
    """

    def __init__(
        self,
        minimum: float,
        maximum: float,
        *,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(
                f"expected 0 < minimum <= maximum, got {minimum} and {maximum}"
            )
        self._minimum = minimum
        self._maximum = maximum
        self._uniform = uniform
        self._attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count this one)."""
        step = min(self._maximum, self._minimum * 2 ** min(self._attempt, 60))
        self._attempt += 1
        return self._uniform(step / 2, step)

    def reset(self) -> None:
        """Success: start from ``minimum`` again."""
        self._attempt = 0

    @property
    def attempts(self) -> int:
        """Failed attempts since the last reset."""
        return self._attempt
