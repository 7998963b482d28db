"""StatsYard's own metrics: the registry, the instruments, the shipper.

- :mod:`~statsyard.metrics.sample`: :class:`Sample`, tags, which stats ship.
- :mod:`~statsyard.metrics.counter`: :class:`Counter`, :class:`Gauge`.
- :mod:`~statsyard.metrics.meter`: :class:`Meter` (Dropwizard's rates).
- :mod:`~statsyard.metrics.histogram`: :class:`Histogram`, :class:`Timed`;
  each reader drains its own intervals.
- :mod:`~statsyard.metrics.registry`: :class:`Registry`, one per StatsYard.
- :mod:`~statsyard.metrics.process_stats`: ``vm.*`` process statistics.
- :mod:`~statsyard.metrics.instruments`: the observers that record the
  pipeline's and the Graphite listener's metrics into a registry.
- :mod:`~statsyard.metrics.stat_shipper`: the actor that ships a registry
  to DogStatsD.
"""

from __future__ import annotations

from statsyard.metrics.counter import Counter, Gauge
from statsyard.metrics.histogram import DEFAULT_READER, SHIPPER_READER, Histogram, Timed
from statsyard.metrics.meter import M1_ALPHA, TICK_SECONDS, Meter
from statsyard.metrics.registry import Registry
from statsyard.metrics.sample import (
    ALL_STATS,
    HISTOGRAM_STATS,
    METER_STATS,
    Sample,
    ShippableStats,
    TagTuple,
)

__all__ = [
    "ALL_STATS",
    "DEFAULT_READER",
    "HISTOGRAM_STATS",
    "M1_ALPHA",
    "METER_STATS",
    "SHIPPER_READER",
    "TICK_SECONDS",
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
