"""Counter and Gauge: the two metrics that are one number."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from statsyard.metrics.sample import Sample, ShippableStats, TagTuple

__all__ = ["Counter", "Gauge"]


class Counter:
    """A cumulative count (points pushed, errors). Never reset by collection."""

    __slots__ = ("_lock", "_value", "name", "tags")

    def __init__(self, name: str, tags: TagTuple = ()) -> None:
        self.name = name
        self.tags = tags
        self._lock = threading.Lock()
        self._value = 0

    def inc(self, n: int = 1) -> None:
        """Add ``n``."""
        with self._lock:
            self._value += n

    def dec(self, n: int = 1) -> None:
        """Subtract ``n``."""
        with self._lock:
            self._value -= n

    @property
    def value(self) -> int:
        """The current count."""
        return self._value

    def _samples(self, _shippable: ShippableStats) -> list[Sample]:
        return [Sample(self.name, float(self._value), self.tags)]


class Gauge:
    """An instantaneous value: set by the code, or read at collection time."""

    __slots__ = ("_read", "_value", "name", "tags")

    def __init__(
        self,
        name: str,
        tags: TagTuple = (),
        read: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.tags = tags
        self._read = read
        self._value: float | None = None

    def set(self, value: float) -> None:
        """Set the value (a single attribute store: atomic)."""
        self._value = float(value)

    @property
    def value(self) -> float | None:
        """The last value set, or read; None before the first."""
        return self._value

    def _rebind(self, read: Callable[[], float] | None) -> None:
        if read is not None:
            self._read = read

    def _samples(self, _shippable: ShippableStats) -> list[Sample]:
        # May raise from the reader: Registry.collect guards it.
        if self._read is not None:
            value = float(self._read())
            if not math.isfinite(value):
                raise ValueError(f"gauge reader returned a non-finite value: {value}")
            self._value = value
        if self._value is None:
            return []
        return [Sample(self.name, self._value, self.tags)]
