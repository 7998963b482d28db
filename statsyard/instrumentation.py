"""The pipeline's own metrics, recorded on a :class:`~statsyard.metrics.Registry`.

Per-batch hooks (validation and write timings, batch sizes) are recorded once
per batch, never per point. Counts that already exist elsewhere (the ledger,
the queue's contents) are registered as gauges read at shipping time, so they
cost nothing on the hot path.
"""

from __future__ import annotations

from statsyard.ingest_consumer import IngestObserver
from statsyard.ledger import Ledger, QueueContents
from statsyard.metrics import Registry
from statsyard.timestamp_writer import WriterObserver

__all__ = ["PipelineInstruments", "register_pipeline_gauges"]


class PipelineInstruments(IngestObserver, WriterObserver):
    """Records validation, write and fsync metrics for the consumer and writer."""

    def __init__(self, registry: Registry) -> None:
        self._validate_us = registry.histogram("ingest.validate_us")
        self._rate = registry.meter("ingest.rate")
        self._batch_size = registry.histogram("writer.batch_size")
        self._write_us = registry.histogram("writer.write_us")
        self._fsync_us = registry.histogram("writer.fsync_us")

    def validated(self, points: int, invalid: int, seconds: float) -> None:
        """Record a validated batch: per-point time, weighted by its size."""
        if points:
            self._validate_us.record(seconds * 1e6 / points, count=points)

    def wrote(self, points: int, seconds: float) -> None:
        """Record a written batch."""
        self._rate.mark(points)
        self._batch_size.record(points)
        self._write_us.record(seconds * 1e6)

    def synced(self, seconds: float) -> None:
        """Record an fsync."""
        self._fsync_us.record(seconds * 1e6)


def register_pipeline_gauges(
    registry: Registry,
    ledger: Ledger,
    contents: QueueContents,
) -> None:
    """Register the ledger totals and queue state as gauges read when shipped."""
    registry.gauge("ingest.pushed", lambda: ledger.counts().pushed)
    registry.gauge("ingest.written", lambda: ledger.counts().written)
    # A valid point is committed by being written, so the two are equal; both
    # names ship so dashboards can say what they mean.
    registry.gauge("ingest.valid", lambda: ledger.counts().written)
    registry.gauge("ingest.invalid", lambda: ledger.counts().invalid)
    registry.gauge("ingest.lost", lambda: ledger.counts().lost)
    registry.gauge("queue.size", lambda: contents.snapshot().size)
    registry.gauge("queue.capacity", lambda: contents.capacity)
    registry.gauge("queue.in_flight", lambda: contents.snapshot().in_flight)
    registry.gauge("queue.blocked_pushers", lambda: contents.snapshot().blocked_pushers)
    registry.gauge("queue.blocked_poppers", lambda: contents.snapshot().blocked_poppers)
