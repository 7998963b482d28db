"""Histogram and Timed: HDR distributions, each reader with its own intervals."""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar

from hdrh.histogram import HdrHistogram

from statsyard.exceptions import MetricError

if TYPE_CHECKING:
    from types import TracebackType
from statsyard.metrics.sample import HISTOGRAM_STATS, Sample, ShippableStats, TagTuple

__all__ = ["DEFAULT_READER", "SHIPPER_READER", "Histogram", "Timed"]


_PERCENTILES: Final = {
    "p50": 50.0,
    "p75": 75.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
}

P = ParamSpec("P")
R = TypeVar("R")

_NONZERO_RUN = re.compile(rb"[^\x00]+")


def _hit_buckets(hdr: HdrHistogram) -> Iterator[tuple[int, int]]:
    """Yield ``(index, count)`` for each non-empty bucket, in index order."""
    counts = hdr.counts
    data = bytes(counts)  # one C-level copy of the ctypes array
    word = int(hdr.word_size)
    last = -1
    for run in _NONZERO_RUN.finditer(data):
        first = max(run.start() // word, last + 1)
        last = (run.end() - 1) // word
        for index in range(first, last + 1):
            count = int(counts[index])
            if count:
                yield index, count


DEFAULT_READER: Final = "default"
"""The histogram reader of :meth:`Registry.collect` when none is named."""
SHIPPER_READER: Final = "shipper"
"""The histogram reader the DogStatsD shipper collects as."""


class Histogram:
    """A distribution of integer values (durations in µs, sizes) in HDR form.

    Backed by :class:`hdrh.histogram.HdrHistogram`. :meth:`record` never
    raises: a value outside ``[0, highest]`` is clamped into it (and NaN or a
    non-number dropped), and either is counted in the registry counter
    ``metrics.clamped`` (tag ``metric:<name>``) and logged once.
    Each *reader* (the shipper, a test, any other consumer of intervals)
    drains its own intervals: its stats describe only the values recorded
    since its own previous collection, so two readers never take values from
    each other. :meth:`peek` without a reader reads every value since the
    histogram was created.
    """

    __slots__ = (
        "_highest",
        "_intervals",
        "_lock",
        "_lowest",
        "_on_clamp",
        "_significant_figures",
        "_total",
        "clamped",
        "name",
        "tags",
    )

    def __init__(
        self,
        name: str,
        tags: TagTuple = (),
        *,
        lowest: int = 1,
        highest: int = 3_600_000_000,
        significant_figures: int = 3,
        on_clamp: Callable[[Histogram, object], None] | None = None,
    ) -> None:
        if not isinstance(lowest, int) or lowest < 1:
            raise MetricError(
                f"histogram {name}: lowest must be an int >= 1, got {lowest!r}"
            )
        if not isinstance(highest, int) or highest < 2 * lowest:
            raise MetricError(
                f"histogram {name}: highest must be an int >= 2 * lowest "
                f"({2 * lowest}), got {highest!r}"
            )
        if (
            not isinstance(significant_figures, int)
            or not 1 <= significant_figures <= 5
        ):
            raise MetricError(
                f"histogram {name}: significant_figures must be an int in 1..5, "
                f"got {significant_figures!r}"
            )
        self.name = name
        self.tags = tags
        self._lowest = lowest
        self._highest = highest
        self._significant_figures = significant_figures
        self._on_clamp = on_clamp
        self._lock = threading.Lock()
        self._total = self._new_hdr()
        self._intervals: dict[str, HdrHistogram] = {}
        self.clamped = 0
        """Values clamped or dropped since creation."""

    @property
    def parameters(self) -> tuple[int, int, int]:
        """``(lowest, highest, significant_figures)``."""
        return (self._lowest, self._highest, self._significant_figures)

    def _new_hdr(self) -> HdrHistogram:
        return HdrHistogram(self._lowest, self._highest, self._significant_figures)

    def record(self, value: float, count: int = 1) -> None:
        """Record ``value`` (rounded to an int) ``count`` times. Never raises."""
        if count < 1:
            self._clamp(count)
            return
        try:
            v = round(value)
        except (TypeError, ValueError, OverflowError):
            # NaN, a non-number; ±inf clamps to the matching end.
            if value == math.inf:
                v = self._highest + 1
            elif value == -math.inf:
                v = -1
            else:
                self._clamp(value)
                return
        if v < 0 or v > self._highest:
            self._clamp(value)
            v = 0 if v < 0 else self._highest
        with self._lock:
            self._total.record_value(v, count)
            for interval in self._intervals.values():
                interval.record_value(v, count)

    def _clamp(self, value: object) -> None:
        with self._lock:
            self.clamped += 1
        if self._on_clamp is not None:
            self._on_clamp(self, value)

    def drain(self, reader: str = DEFAULT_READER) -> dict[str, float]:
        """Take ``reader``'s interval and start its next one, atomically.

        A fresh backing histogram is built first, then swapped in under the
        lock, so a concurrent :meth:`record` lands in one interval or the
        next, never nowhere. A reader's first interval holds every value
        since the histogram was created. Other readers' intervals are not
        touched.

        Returns:
            Every stat of :data:`HISTOGRAM_STATS` for the drained values; each
            ``0.0`` if none were recorded (see docs/metrics.md).
        """
        fresh = self._new_hdr()
        with self._lock:
            old = self._intervals.get(reader)
            if old is None:
                old = self._new_hdr()
                old.add(self._total)
            self._intervals[reader] = fresh
        return _summarize(old)

    def peek(self, reader: str | None = None) -> dict[str, float]:
        """The stats of ``reader``'s current interval without ending it, or,
        without a reader, of every value since the histogram was created."""
        with self._lock:
            hdr = self._total if reader is None else self._intervals.get(reader)
            return _summarize(self._total if hdr is None else hdr)

    def _samples(
        self, shippable: ShippableStats, *, reader: str | None = DEFAULT_READER
    ) -> list[Sample]:
        stats = self.peek() if reader is None else self.drain(reader)
        return [
            Sample(f"{self.name}.{stat}", stats[stat], self.tags)
            for stat in shippable.histogram
            if stat in stats
        ]


_IDLE: Final = dict.fromkeys(HISTOGRAM_STATS, 0.0)
"""What an interval without values ships: every stat, each 0."""


def _summarize(hdr: HdrHistogram) -> dict[str, float]:
    total = int(hdr.get_total_count())
    if total == 0:
        # Every stat ships as a gauge, and an agent shows a gauge's last
        # value until it gets another: shipping only count = 0 would leave
        # the previous interval's p99 on every dashboard as if current.
        return dict(_IDLE)
    # Same definitions as HdrHistogram's own methods (percentile = highest
    # value equivalent to the bucket reaching the target count; mean and
    # stddev over bucket midpoints) in one pass over the hit buckets.
    targets = sorted(
        (max(int(pct * total / 100 + 0.5), 1), stat)
        for stat, pct in _PERCENTILES.items()
    )
    stats: dict[str, float] = {}
    weighted: list[tuple[int, int]] = []
    running = 0
    t = 0
    # HdrHistogram.get_value_from_index and its equivalent-range helpers,
    # inlined: method calls per bucket dominate a drain otherwise.
    half_magnitude = hdr.sub_bucket_half_count_magnitude
    half = hdr.sub_bucket_half_count
    unit_magnitude = hdr.unit_magnitude
    for index, count in _hit_buckets(hdr):
        bucket = (index >> half_magnitude) - 1
        sub_bucket = (index & (half - 1)) + half
        if bucket < 0:
            sub_bucket -= half
            bucket = 0
        shift = bucket + unit_magnitude
        lowest = sub_bucket << shift  # lowest value equivalent to the bucket
        size = 1 << shift  # how many values it holds
        weighted.append((lowest + (size >> 1), count))
        running += count
        while t < len(targets) and running >= targets[t][0]:
            stats[targets[t][1]] = float(lowest + size - 1)
            t += 1
    mean = sum(mid * count for mid, count in weighted) / total
    variance = sum((mid - mean) ** 2 * count for mid, count in weighted) / total
    stats["count"] = float(total)
    stats["min"] = float(hdr.get_min_value())
    stats["max"] = float(hdr.get_max_value())
    stats["mean"] = mean
    stats["stddev"] = math.sqrt(variance)
    return stats


class Timed:
    """Times a block or a function into a histogram, in microseconds.

    The seed's ``histogram_timed_update``. Use ``with registry.timed(n):`` or
    ``@registry.timed(n)``. One instance may be shared by threads and nested.
    """

    __slots__ = ("_clock", "_histogram", "_local")

    def __init__(self, histogram: Histogram, clock: Callable[[], float]) -> None:
        self._histogram = histogram
        self._clock = clock
        self._local = threading.local()

    def __enter__(self) -> Timed:
        starts: list[float] | None = getattr(self._local, "starts", None)
        if starts is None:
            starts = self._local.starts = []
        starts.append(self._clock())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        start = self._local.starts.pop()
        self._histogram.record((self._clock() - start) * 1e6)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``func`` so that every call is timed."""
        histogram = self._histogram
        clock = self._clock

        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = clock()
            try:
                return func(*args, **kwargs)
            finally:
                histogram.record((clock() - start) * 1e6)

        return timed
