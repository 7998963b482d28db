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

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from statsyard._ratelimit import warn_once
from statsyard.exceptions import MetricError
from statsyard.metrics.counter import Counter, Gauge
from statsyard.metrics.histogram import DEFAULT_READER, Histogram, Timed
from statsyard.metrics.meter import Meter
from statsyard.metrics.sample import (
    ALL_STATS,
    Sample,
    ShippableStats,
    TagTuple,
)

if TYPE_CHECKING:
    pass

__all__ = ["Registry"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
# DogStatsD separates fields with | , # and lines with newlines; a tag key
# may not hold a colon (it ends the key).
_TAG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]*")
_TAG_VALUE = re.compile(r"[^|,#\s]+")

P = ParamSpec("P")
R = TypeVar("R")


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
        shippable: ShippableStats = ALL_STATS,
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
        self, *, shippable: ShippableStats = ALL_STATS
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
