"""The ledger: where every pushed point ends up, kept outside any actor.

Like an ETS table with an heir, the ledger and the queue's contents
(:class:`QueueContents`) outlive the actors that use them, so a restarted
queue, consumer or writer carries on where its predecessor stopped.

Every point accepted by the queue gets an index (0, 1, 2, ... in FIFO order).
The writer commits contiguous index ranges: once ``committed_upto`` passes a
point, that point was either written or rejected as invalid, exactly once.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import attrs

__all__ = ["Counts", "Ledger", "QueueContents", "QueueSnapshot"]


@attrs.frozen(slots=True)
class Counts:
    """A snapshot of the accounting: ``pushed == written + invalid + lost + pending``.

    ``taken`` counts points removed with a plain ``pop`` (outside the pipeline);
    it is zero unless someone pops from the queue by hand.
    """

    pushed: int
    written: int
    invalid: int
    lost: int
    taken: int = 0

    @property
    def pending(self) -> int:
        """Points accepted but not yet written, rejected or lost."""
        return self.pushed - self.written - self.invalid - self.lost - self.taken


class Ledger:
    """Thread-safe accounting shared by the queue, the writer and the host."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pushed = 0
        self._written = 0
        self._invalid = 0
        self._lost = 0
        self._taken = 0
        self._committed_upto = 0
        self._next_index = 0

    def accept(self, n: int) -> int:
        """Record ``n`` points accepted by the queue; return the first one's index."""
        with self._lock:
            first = self._next_index
            self._next_index += n
            self._pushed += n
            return first

    def lose_unqueued(self, n: int) -> None:
        """Record ``n`` pushed points that were lost before the queue took them.

        They take no queue index: only queued points are ever committed, so
        an index given to a lost point would never be passed and a flush
        waiting for it would wait for ever.
        """
        with self._lock:
            self._pushed += n
            self._lost += n

    def commit(self, end: int, *, written: int, invalid: int) -> None:
        """Record that every point before index ``end`` is written or rejected."""
        with self._lock:
            self._written += written
            self._invalid += invalid
            self._committed_upto = max(self._committed_upto, end)

    def take(self, n: int) -> None:
        """Record ``n`` points handed to a plain ``pop`` caller."""
        with self._lock:
            self._taken += n

    def lose(self, n: int) -> None:
        """Record ``n`` accepted points that will never be written."""
        with self._lock:
            self._lost += n

    @property
    def committed_upto(self) -> int:
        """Index of the first point not yet committed by the writer."""
        return self._committed_upto

    @property
    def pushed(self) -> int:
        """Points pushed so far (queued, or lost before the queue)."""
        return self._pushed

    @property
    def next_index(self) -> int:
        """Index the queue gives the next point it accepts (flush waits for it)."""
        return self._next_index

    def counts(self) -> Counts:
        """A consistent snapshot of all counters."""
        with self._lock:
            return Counts(
                pushed=self._pushed,
                written=self._written,
                invalid=self._invalid,
                lost=self._lost,
                taken=self._taken,
            )


@attrs.define(slots=True)
class QueueContents:
    """The queue's points and parked callers, owned by whichever queue actor is alive.

    The living :class:`~statsyard.pipeline.blocking_queue.BlockingQueue` changes it
    from its own thread, and the host reads it (gauges) or closes it (when
    the tree stops) from others: everyone holds ``lock`` meanwhile, and no
    one holds it while waiting for anything. A successor queue picks the
    contents up unchanged.
    """

    capacity: int
    chunks: deque[tuple[int, tuple[Any, ...]]] = attrs.field(factory=deque)
    """FIFO of (index of first point, points); the head may be partly taken."""
    head_offset: int = 0
    size: int = 0
    in_flight: dict[int, tuple[Any, ...]] = attrs.field(factory=dict)
    """Deliveries handed to the consumer and not yet acknowledged, by start index."""
    pushers: deque[Any] = attrs.field(factory=deque)
    poppers: deque[Any] = attrs.field(factory=deque)
    flushers: list[Any] = attrs.field(factory=list)
    closed: bool = False
    lock: threading.RLock = attrs.field(factory=threading.RLock, eq=False, repr=False)
    """Held by whoever reads or changes the contents; never while waiting."""

    @property
    def in_flight_size(self) -> int:
        """Points delivered to the consumer and not yet acknowledged."""
        with self.lock:
            return sum(len(points) for points in self.in_flight.values())

    def snapshot(self) -> QueueSnapshot:
        """Size, in-flight points and parked callers, read together."""
        with self.lock:
            return QueueSnapshot(
                size=self.size,
                capacity=self.capacity,
                in_flight=self.in_flight_size,
                blocked_pushers=len(self.pushers),
                blocked_poppers=sum(1 for w in self.poppers if not w.fetch),
            )


@attrs.frozen(slots=True)
class QueueSnapshot:
    """What the queue holds and who waits on it, at one instant."""

    size: int
    capacity: int
    in_flight: int
    blocked_pushers: int
    blocked_poppers: int
