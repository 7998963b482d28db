"""The pipeline's own metrics, recorded on a :class:`~statsyard.metrics.Registry`.

Per-batch hooks (validation and write timings, batch sizes) are recorded once
per batch, never per point. Counts that already exist elsewhere (the ledger,
the queue's contents) are registered as gauges read at shipping time, so they
cost nothing on the hot path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Final

from statsyard.graphite.listener import ListenerObserver
from statsyard.graphite.protocol import REASONS
from statsyard.metrics.registry import Registry
from statsyard.pipeline.ingest_consumer import IngestObserver
from statsyard.pipeline.ledger import Ledger, QueueContents
from statsyard.pipeline.timestamp_writer import WriterObserver

__all__ = [
    "ListenerInstruments",
    "PipelineInstruments",
    "register_pipeline_gauges",
    "udp_socket_drops",
]


class PipelineInstruments(IngestObserver, WriterObserver):
    """Records validation, write and fsync metrics for the consumer and writer."""

    def __init__(self, registry: Registry) -> None:
        self._validate_us = registry.histogram("ingest.validate_us")
        self._rate = registry.meter("ingest.rate")
        self._batch_size = registry.histogram("writer.batch_size")
        self._write_us = registry.histogram("writer.write_us")
        self._fsync_us = registry.histogram("writer.fsync_us")
        self._stalled = registry.gauge("writer.write_stalled")
        self._stalled.set(0)
        self._write_retries = registry.counter("writer.write_retries")

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

    def write_stalled(self, stalled: bool) -> None:
        """Show whether writes are held (disk full): 1 while they are."""
        self._stalled.set(int(stalled))

    def write_retried(self) -> None:
        """Count a failed retry of a held batch."""
        self._write_retries.inc()


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


_UDP_TABLES: Final = ("/proc/net/udp", "/proc/net/udp6")


def udp_socket_drops(
    inode: int, tables: Sequence[str | os.PathLike[str]] = _UDP_TABLES
) -> int | None:
    """Datagrams the kernel dropped on the UDP socket ``inode``; None if unknown.

    Linux counts them per socket (a full receive buffer) in the last column,
    ``drops``, of ``/proc/net/udp`` and ``/proc/net/udp6``.
    """
    wanted = str(inode)
    for table in tables:
        try:
            with open(table, encoding="ascii") as rows:
                next(rows, None)  # the header
                for row in rows:
                    fields = row.split()
                    if len(fields) >= 13 and fields[9] == wanted:
                        return int(fields[12])
        except (OSError, ValueError):
            continue
    return None


class ListenerInstruments(ListenerObserver):
    """Ships the Graphite listener's lines, drops and connections (docs/metrics.md).

    One object serves every incarnation of the listener, so its counters
    carry on across restarts; every name is registered at once so that it
    ships from the first interval, 0 until something happens.
    """

    def __init__(self, registry: Registry) -> None:
        self._accepted = registry.counter("graphite.lines.accepted")
        self._rejected = {
            reason: registry.counter("graphite.lines.rejected", tags={"reason": reason})
            for reason in REASONS
        }
        self._udp_dropped = registry.counter("graphite.udp.dropped")
        self._lost = registry.counter("graphite.points.lost")
        self._unconfirmed = registry.counter("graphite.points.unconfirmed")
        self._opened = registry.counter("graphite.connections.opened")
        self._closed = registry.counter("graphite.connections.closed")
        self._refused = registry.counter("graphite.connections.refused")
        self._idle_closed = registry.counter("graphite.connections.idle_closed")
        self._evicted = registry.counter("graphite.connections.evicted")
        self._accept_failures = registry.counter("graphite.accept.failures")
        self._open_gauge = registry.gauge("graphite.connections.open")
        self._open_gauge.set(0)
        self._lock = threading.Lock()
        self._open = 0
        self._udp_inode: int | None = None
        if os.path.exists(_UDP_TABLES[0]):
            registry.gauge("graphite.udp.kernel_drops", self._kernel_drops)

    def _kernel_drops(self) -> float:
        inode = self._udp_inode
        drops = None if inode is None else udp_socket_drops(inode)
        return float(drops or 0)

    def listening(self, udp_inode: int | None) -> None:
        """A (new) listener bound its UDP socket: read that socket's drops."""
        self._udp_inode = udp_inode
        with self._lock:
            self._open = 0
            self._open_gauge.set(0)

    def queued(self, points: int) -> None:
        """Lines queued."""
        self._accepted.inc(points)

    def rejected(self, reason: str, lines: int) -> None:
        """Lines rejected, by reason."""
        counter = self._rejected.get(reason)
        if counter is not None:
            counter.inc(lines)

    def udp_dropped(self, points: int) -> None:
        """Good UDP points dropped by the listener (the queue was full)."""
        self._udp_dropped.inc(points)

    def lost(self, points: int) -> None:
        """Points read but not queued."""
        self._lost.inc(points)

    def unconfirmed(self, points: int) -> None:
        """Points handed to the queue whose answer the stopped listener never saw."""
        self._unconfirmed.inc(points)

    def connection_opened(self) -> None:
        """A TCP connection was accepted."""
        self._opened.inc()
        with self._lock:
            self._open += 1
            self._open_gauge.set(self._open)

    def connection_closed(self) -> None:
        """A TCP connection was closed."""
        self._closed.inc()
        with self._lock:
            self._open = max(0, self._open - 1)
            self._open_gauge.set(self._open)

    def connection_refused(self) -> None:
        """A TCP connection was refused (``max_connections`` open, all busy)."""
        self._refused.inc()

    def connection_idle_closed(self) -> None:
        """A TCP connection was closed after ``idle_timeout`` without data."""
        self._idle_closed.inc()

    def connection_evicted(self) -> None:
        """The longest-idle TCP connection was closed to make room."""
        self._evicted.inc()

    def accept_failed(self) -> None:
        """``accept()`` failed (out of descriptors): accepting paused."""
        self._accept_failures.inc()
