"""What a collection yields: samples, tags, and which statistics ship."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs

from statsyard.exceptions import MetricError

__all__ = [
    "ALL_STATS",
    "HISTOGRAM_STATS",
    "METER_STATS",
    "Sample",
    "ShippableStats",
    "TagTuple",
]


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
        raise MetricError(
            f"expected a sequence of stat names, got the string {value!r}"
        )
    return tuple(value)


def _known_stats(
    allowed: tuple[str, ...],
) -> Callable[[Any, Any, tuple[str, ...]], None]:
    def check(_instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
        unknown = [name for name in value if name not in allowed]
        if unknown:
            raise MetricError(
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


ALL_STATS: Final = ShippableStats()
"""Every statistic: what ships unless a shipper is told otherwise."""
