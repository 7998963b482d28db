"""StatsYard's own metrics: the registry, the instruments, the shipper.

- :mod:`~statsyard.metrics.registry`: :class:`Registry` and its counter,
  gauge, meter and histogram.
- :mod:`~statsyard.metrics.process_stats`: ``vm.*`` process statistics.
- :mod:`~statsyard.metrics.instruments`: the observers that record the
  pipeline's and the Graphite listener's metrics into a registry.
- :mod:`~statsyard.metrics.stat_shipper`: the actor that ships a registry
  to DogStatsD.
"""

from __future__ import annotations

from statsyard.metrics.registry import (
    HISTOGRAM_STATS,
    METER_STATS,
    Counter,
    Gauge,
    Histogram,
    Meter,
    Registry,
    Sample,
    ShippableStats,
    TagTuple,
    Timed,
)

__all__ = [
    "HISTOGRAM_STATS",
    "METER_STATS",
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
