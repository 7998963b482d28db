"""Self-metrics: counters, gauges, meters, HDR histograms and timers.

StatsYard measures itself the way the seed does with Folsom. Each
``StatsYard`` instance owns one :class:`Registry` (never a global, so two
embedded instances never mix their numbers); the pipeline records into it on
the hot path and the ``StatShipper`` actor calls :meth:`Registry.collect`
once per interval to turn everything into flat :class:`Sample` values.

Recording is cheap and thread-safe: one small lock per metric, no allocation,
and never an exception for a bad value (histograms clamp and count instead).
The costly work — histogram percentiles, meter rates — happens in
:meth:`Registry.collect`, off the data path.

Names are dotted (``ingest.written``); tags are a ``str -> str`` mapping and
the same name with other tags is another metric.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import attrs
from hdrh.histogram import HdrHistogram

from statsyard._ratelimit import warn_once
from statsyard.exceptions import MetricError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "DEFAULT_READER",
    "HISTOGRAM_STATS",
    "METER_STATS",
    "SHIPPER_READER",
    "Counter",
    "Gauge",
    "Histogram",
    "Meter",
    "Registry",
    "Sample",
    "ShippableStats",
    "TagTuple",
    "Timed",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

TagTuple = tuple[tuple[str, str], ...]
"""Tags in canonical form: ``(key, value)`` pairs sorted by key."""

HISTOGRAM_STATS: Final = (
    "count",
    "min",
    "max",
    "mean",
    "stddev",
    "p50",
    "p75",
    "p90",
    "p95",
    "p99",
    "p999",
)
"""Every statistic a histogram can ship, each as ``<name>.<stat>``."""

METER_STATS: Final = ("count", "mean_rate", "m1_rate", "m5_rate", "m15_rate")
"""Every statistic a meter can ship, each as ``<name>.<stat>``."""

_PERCENTILES: Final = {
    "p50": 50.0,
    "p75": 75.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
# DogStatsD separates fields with | , # and lines with newlines; a tag key
# may not hold a colon (it ends the key).
_TAG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]*")
_TAG_VALUE = re.compile(r"[^|,#\s]+")

# -- Meter constants, as Dropwizard and Folsom define them -----------------

TICK_SECONDS: Final = 5.0
"""A meter's EWMAs advance every 5 seconds."""


def _alpha(minutes: float) -> float:
    return 1.0 - math.exp(-TICK_SECONDS / 60.0 / minutes)


M1_ALPHA: Final = _alpha(1)
M5_ALPHA: Final = _alpha(5)
M15_ALPHA: Final = _alpha(15)


# -- Data -------------------------------------------------------------------


@attrs.frozen(slots=True)
class Sample:
    """One collected number, ready to ship as a gauge."""

    name: str
    """Full dotted name, suffix included (``writer.write_us.p99``)."""
    value: float
    """The value; units depend on the metric (see docs/metrics.md)."""
    tags: TagTuple = ()
    """Canonical tags of the metric it comes from."""


def _stats_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"expected a sequence of stat names, got the string {value!r}")
    return tuple(value)


def _known_stats(
    allowed: tuple[str, ...],
) -> Callable[[Any, Any, tuple[str, ...]], None]:
    def check(_instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
        unknown = [name for name in value if name not in allowed]
        if unknown:
            raise ValueError(
                f"unknown {attribute.name} stats {unknown!r}; "
                f"allowed: {', '.join(allowed)}"
            )

    return check


@attrs.frozen(slots=True)
class ShippableStats:
    """Which statistics of histograms and meters are collected and shipped.

    The seed's ``@shippable_meter_stats``. Counters and gauges always ship.

    Raises:
        ValueError: a name is not in :data:`HISTOGRAM_STATS` or
            :data:`METER_STATS`.
    """

    histogram: tuple[str, ...] = attrs.field(
        default=HISTOGRAM_STATS,
        converter=_stats_tuple,
        validator=_known_stats(HISTOGRAM_STATS),
    )
    """Histogram stats to emit, from :data:`HISTOGRAM_STATS`."""
    meter: tuple[str, ...] = attrs.field(
        default=METER_STATS,
        converter=_stats_tuple,
        validator=_known_stats(METER_STATS),
    )
    """Meter stats to emit, from :data:`METER_STATS`."""


_ALL_STATS: Final = ShippableStats()


# -- Metric kinds ------------------------------------------------------------


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


# -- Registry ------------------------------------------------------------------

_Metric = Counter | Gauge | Meter | Histogram


def _canonical_tags(name: str, tags: Mapping[str, str] | None) -> TagTuple:
    if not tags:
        return ()
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise MetricError(
                f"metric {name}: tag key must be a letter then letters, digits or "
                f"_.-/, got {key!r}"
            )
        if not isinstance(value, str) or not _TAG_VALUE.fullmatch(value):
            raise MetricError(
                f"metric {name}: tag {key} must be a str without | , # or "
                f"whitespace, got {value!r}"
            )
    return tuple(sorted(tags.items()))


class Registry:
    """Every metric of one StatsYard instance. Thread-safe.

    Asking twice for the same kind, name and tags returns the same object,
    so code may look metrics up where it needs them. Metric state lives
    here, not in actors: a restarted actor keeps counting where it left off.

    Args:
        clock: seconds from a monotonic clock, for meters and timers; tests
            inject a fake one.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._metrics: dict[tuple[str, TagTuple], _Metric] = {}
        self._timers: dict[tuple[str, TagTuple], Timed] = {}
        self._warned = warn_once(logger)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock meters and timers read."""
        return self._clock

    def _get(
        self,
        kind: type[_Metric],
        name: str,
        tags: Mapping[str, str] | None,
        factory: Callable[[TagTuple], _Metric],
    ) -> _Metric:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise MetricError(
                f"metric name must be dotted words of letters, digits and _ "
                f"(starting with a letter), got {name!r}"
            )
        key = (name, _canonical_tags(name, tags))
        metric = self._metrics.get(key)
        if metric is None:
            with self._lock:
                metric = self._metrics.get(key)
                if metric is None:
                    metric = self._metrics[key] = factory(key[1])
        if type(metric) is not kind:
            raise MetricError(
                f"metric {name} with tags {dict(key[1])} is a "
                f"{type(metric).__name__.lower()}, not a {kind.__name__.lower()}"
            )
        return metric

    def counter(self, name: str, *, tags: Mapping[str, str] | None = None) -> Counter:
        """The counter ``name`` with ``tags``, created on first use.

        Raises:
            MetricError: bad name or tags, or the name is another kind.
        """
        metric = self._get(Counter, name, tags, lambda t: Counter(name, t))
        assert isinstance(metric, Counter)
        return metric

    def gauge(
        self,
        name: str,
        read: Callable[[], float] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> Gauge:
        """The gauge ``name`` with ``tags``, created on first use.

        Args:
            name: dotted name.
            read: called at each collection for the current value. Asking
                again with another ``read`` rebinds the gauge to it (a
                restarted actor registers its new reader). An exception from
                it is counted in ``metrics.gauge_errors`` (tag ``gauge``),
                logged once, and the gauge skipped for that collection.
            tags: optional tags.

        Raises:
            MetricError: bad name or tags, or the name is another kind.
        """
        metric = self._get(Gauge, name, tags, lambda t: Gauge(name, t, read))
        assert isinstance(metric, Gauge)
        metric._rebind(read)
        if read is not None:
            # Its error counter ships from the first interval, at 0.
            self.counter("metrics.gauge_errors", tags={"gauge": name})
        return metric

    def meter(self, name: str, *, tags: Mapping[str, str] | None = None) -> Meter:
        """The meter ``name`` with ``tags``, created on first use.

        Raises:
            MetricError: bad name or tags, or the name is another kind.
        """
        metric = self._get(
            Meter, name, tags, lambda t: Meter(name, t, clock=self._clock)
        )
        assert isinstance(metric, Meter)
        return metric

    def histogram(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        lowest: int = 1,
        highest: int = 3_600_000_000,
        significant_figures: int = 3,
    ) -> Histogram:
        """The histogram ``name`` with ``tags``, created on first use.

        Args:
            name: dotted name.
            tags: optional tags.
            lowest: smallest value told apart from 0 (HDR's lowest trackable).
            highest: largest value kept; larger ones are clamped to it. The
                default is one hour in microseconds.
            significant_figures: precision, 1..5 decimal digits.

        Raises:
            MetricError: bad name, tags or range; the name is another kind;
                or it exists with other range parameters.
        """
        metric = self._get(
            Histogram,
            name,
            tags,
            lambda t: Histogram(
                name,
                t,
                lowest=lowest,
                highest=highest,
                significant_figures=significant_figures,
                on_clamp=self._histogram_clamped,
            ),
        )
        assert isinstance(metric, Histogram)
        # Its clamp counter ships from the first interval, at 0.
        self.counter("metrics.clamped", tags={"metric": name})
        wanted = (lowest, highest, significant_figures)
        if metric.parameters != wanted:
            raise MetricError(
                f"histogram {name} exists with (lowest, highest, significant_figures)"
                f" = {metric.parameters}, asked for {wanted}"
            )
        return metric

    def timed(self, name: str, *, tags: Mapping[str, str] | None = None) -> Timed:
        """A timer recording durations in µs into the histogram ``name``.

        Usable as a context manager and as a decorator; asking again returns
        the same timer.
        """
        tag_tuple = _canonical_tags(name, tags)
        timer = self._timers.get((name, tag_tuple))
        if timer is None:
            histogram = self.histogram(name, tags=tags)
            with self._lock:
                timer = self._timers.setdefault(
                    (name, tag_tuple), Timed(histogram, self._clock)
                )
        return timer

    def collect(
        self,
        *,
        shippable: ShippableStats = _ALL_STATS,
        reader: str = DEFAULT_READER,
    ) -> list[Sample]:
        """Every metric as samples; histograms give ``reader``'s interval.

        Counters ship ``<name>``; gauges ``<name>``; meters and histograms
        ``<name>.<stat>`` for each stat in ``shippable``. Each reader drains
        only its own histogram intervals (the shipper reads as
        :data:`SHIPPER_READER`), so no reader takes another's values. An
        empty histogram interval yields every stat as 0 (``count`` = 0 says
        why).
        """
        with self._lock:
            metrics = list(self._metrics.values())
        samples: list[Sample] = []
        for metric in metrics:
            try:
                if type(metric) is Histogram:
                    samples.extend(metric._samples(shippable, reader=reader))
                else:
                    samples.extend(metric._samples(shippable))
            except Exception as error:  # noqa: BLE001 (deliberate: a user callback)
                self._gauge_failed(metric, error)
        return samples

    def snapshot(
        self, *, shippable: ShippableStats = _ALL_STATS
    ) -> list[tuple[str, Sample]]:
        """Like :meth:`collect`, but no interval ends: histograms are read whole.

        For a reader that scrapes (the HTTP ``/metrics`` endpoint): each
        sample comes with its metric's kind, ``counter``, ``gauge``,
        ``meter`` or ``histogram``; histogram stats cover every value since
        the histogram was created, as Prometheus expects of a summary.
        """
        with self._lock:
            metrics = list(self._metrics.values())
        samples: list[tuple[str, Sample]] = []
        for metric in metrics:
            kind = type(metric).__name__.lower()
            try:
                if type(metric) is Histogram:
                    found = metric._samples(shippable, reader=None)
                else:
                    found = metric._samples(shippable)
            except Exception as error:  # noqa: BLE001 (deliberate: a user callback)
                self._gauge_failed(metric, error)
                continue
            samples.extend((kind, sample) for sample in found)
        return samples

    def _warn_once(
        self, what: str, metric: _Metric, message: str, *args: object
    ) -> None:
        self._warned.warning((what, metric.name, metric.tags), message, *args)

    def _gauge_failed(self, metric: _Metric, error: Exception) -> None:
        self.counter("metrics.gauge_errors", tags={"gauge": metric.name}).inc()
        self._warn_once(
            "gauge",
            metric,
            "Skipping %s %s%s: %r (counted in metrics.gauge_errors; logged once)",
            type(metric).__name__.lower(),
            metric.name,
            dict(metric.tags) or "",
            error,
        )

    def _histogram_clamped(self, histogram: Histogram, value: object) -> None:
        self.counter("metrics.clamped", tags={"metric": histogram.name}).inc()
        self._warn_once(
            "clamp",
            histogram,
            "Histogram %s got %r, outside [0, %d] or not a count: clamped or "
            "dropped (counted in metrics.clamped; logged once)",
            histogram.name,
            value,
            histogram.parameters[1],
        )
