"""StatsYard's own metrics registry in the Prometheus text format.

A custom ``prometheus_client`` collector reads :meth:`Registry.snapshot`
(which never drains a histogram, so the DogStatsD shipper still sees every
value) and turns each sample into a metric family:

- a counter ``ingest.written`` becomes ``statsyard_ingest_written_total``;
- a gauge ``queue.size`` becomes the gauge ``statsyard_queue_size``;
- a meter's and a histogram's stats (``writer.write_us.p99``,
  ``ingest.rate.m1_rate``) become gauges ``statsyard_writer_write_us_p99``:
  histogram stats describe the values recorded since the shipper's last
  collection, as the shipped ones do.

Tags become labels. The exposition is ``prometheus_client``'s own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from statsyard.metrics import Registry

__all__ = ["CONTENT_TYPE", "RegistryCollector", "exposition"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The Content-Type of :func:`exposition`'s output."""

_BAD: Final = re.compile(r"[^a-zA-Z0-9_]")


def _name(namespace: str, name: str) -> str:
    return _BAD.sub("_", f"{namespace}_{name}" if namespace else name)


class RegistryCollector(Collector):
    """Collects one :class:`~statsyard.metrics.Registry` for prometheus_client.

    Args:
        registry: the metrics to expose.
        namespace: prefix of every name (``statsyard``).
    """

    def __init__(self, registry: Registry, namespace: str = "statsyard") -> None:
        self._registry = registry
        self._namespace = namespace

    def collect(self) -> Iterator[Metric]:
        """One metric family per name, each sample with its tags as labels."""
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        label_keys: dict[str, list[str]] = {}
        for kind, sample in self._registry.snapshot():
            name = _name(self._namespace, sample.name)
            labels = [_BAD.sub("_", key) for key, _ in sample.tags]
            family = families.get(name)
            if family is None:
                help_text = f"StatsYard {kind} {sample.name}"
                if kind == "counter":
                    family = CounterMetricFamily(name, help_text, labels=labels)
                else:
                    family = GaugeMetricFamily(name, help_text, labels=labels)
                families[name] = family
                label_keys[name] = labels
            elif label_keys[name] != labels:
                continue  # the same name with other tag keys: not expressible
            values = [value for _, value in sample.tags]
            family.add_metric(values, sample.value)
        yield from families.values()


def exposition(registry: Registry, namespace: str = "statsyard") -> bytes:
    """The registry's metrics in the Prometheus text format (version 0.0.4)."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(RegistryCollector(registry, namespace))
    return generate_latest(collectors)
