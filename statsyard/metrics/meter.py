"""Meter: a count with 1, 5 and 15 minute rates, as Dropwizard and Folsom do."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Final

from statsyard.metrics.sample import Sample, ShippableStats, TagTuple

__all__ = ["M1_ALPHA", "TICK_SECONDS", "Meter"]


# -- Meter constants, as Dropwizard and Folsom define them -----------------

TICK_SECONDS: Final = 5.0
"""A meter's EWMAs advance every 5 seconds."""


def _alpha(minutes: float) -> float:
    return 1.0 - math.exp(-TICK_SECONDS / 60.0 / minutes)


M1_ALPHA: Final = _alpha(1)
M5_ALPHA: Final = _alpha(5)
M15_ALPHA: Final = _alpha(15)


class Meter:
    """A count and its rates: mean, and 1/5/15-minute EWMAs.

    Exactly the Dropwizard ``Meter`` (also Folsom's): the EWMAs tick every
    :data:`TICK_SECONDS`; at a tick the instant rate is the count marked
    since the previous tick divided by 5 s, and each rate moves towards it
    by ``alpha = 1 - exp(-5 / 60 / minutes)`` (the first tick sets it). Ticks
    happen lazily, when the meter is marked or read, from ``clock`` — so no
    thread, and tests drive the clock.
    """

    __slots__ = (
        "_clock",
        "_count",
        "_initialized",
        "_last_tick",
        "_lock",
        "_m1",
        "_m5",
        "_m15",
        "_start",
        "_uncounted",
        "name",
        "tags",
    )

    def __init__(
        self,
        name: str,
        tags: TagTuple = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.tags = tags
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._last_tick = self._start
        self._count = 0
        self._uncounted = 0
        self._initialized = False
        self._m1 = 0.0
        self._m5 = 0.0
        self._m15 = 0.0

    def mark(self, n: int = 1) -> None:
        """Record ``n`` events now."""
        now = self._clock()
        with self._lock:
            if now - self._last_tick > TICK_SECONDS:
                self._tick_until(now)
            self._count += n
            self._uncounted += n

    def _tick_until(self, now: float) -> None:
        # Caller holds the lock. Like Dropwizard, tick once per whole 5 s
        # elapsed and keep the remainder for the next tick.
        age = now - self._last_tick
        ticks = int(age // TICK_SECONDS)
        if ticks <= 0:
            return
        self._last_tick = now - (age - ticks * TICK_SECONDS)
        instant = self._uncounted / TICK_SECONDS
        self._uncounted = 0
        if self._initialized:
            self._m1 += M1_ALPHA * (instant - self._m1)
            self._m5 += M5_ALPHA * (instant - self._m5)
            self._m15 += M15_ALPHA * (instant - self._m15)
        else:
            self._m1 = self._m5 = self._m15 = instant
            self._initialized = True
        if ticks > 1:
            # The remaining ticks each see an instant rate of 0: rate *= 1 - a.
            # Closed form instead of a loop, so a long idle spell costs O(1).
            extra = ticks - 1
            self._m1 *= (1.0 - M1_ALPHA) ** extra
            self._m5 *= (1.0 - M5_ALPHA) ** extra
            self._m15 *= (1.0 - M15_ALPHA) ** extra

    def snapshot(self) -> dict[str, float]:
        """Every stat of :data:`METER_STATS`, consistent with each other."""
        now = self._clock()
        with self._lock:
            self._tick_until(now)
            elapsed = now - self._start
            count = self._count
            mean = count / elapsed if count and elapsed > 0 else 0.0
            return {
                "count": float(count),
                "mean_rate": mean,
                "m1_rate": self._m1,
                "m5_rate": self._m5,
                "m15_rate": self._m15,
            }

    @property
    def count(self) -> int:
        """Events marked since creation."""
        return self._count

    @property
    def mean_rate(self) -> float:
        """Events per second since creation."""
        return self.snapshot()["mean_rate"]

    @property
    def one_minute_rate(self) -> float:
        """Events per second, exponentially weighted over 1 minute."""
        return self.snapshot()["m1_rate"]

    @property
    def five_minute_rate(self) -> float:
        """Events per second, exponentially weighted over 5 minutes."""
        return self.snapshot()["m5_rate"]

    @property
    def fifteen_minute_rate(self) -> float:
        """Events per second, exponentially weighted over 15 minutes."""
        return self.snapshot()["m15_rate"]

    def _samples(self, shippable: ShippableStats) -> list[Sample]:
        stats = self.snapshot()
        return [
            Sample(f"{self.name}.{stat}", stats[stat], self.tags)
            for stat in shippable.meter
        ]


# Runs of non-zero bytes in a counts array: lets a drain visit only the
# buckets that were hit instead of all ~23 000 of a default histogram.
