"""What the Graphite listener counts: its stats snapshot, its observer hooks,
and the tally that keeps both up to date from the I/O thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import attrs

from statsyard.graphite.protocol import REASONS

if TYPE_CHECKING:
    from statsyard._ratelimit import RateLimitedLogger
    from statsyard.graphite.protocol import Reject

__all__ = ["CLOSE_REASONS", "ListenerObserver", "ListenerStats", "Tally"]

CLIENT: Final = "client"
IDLE: Final = "idle"
EVICTED: Final = "evicted"
STOP: Final = "stop"

CLOSE_REASONS: Final[dict[str, str]] = {
    CLIENT: "the client closed it, or it failed",
    IDLE: "no data for idle_timeout seconds",
    EVICTED: "the longest idle, closed to make room for a new client",
    STOP: "the listener stopped",
}
"""Every reason a TCP connection is closed for, with its description."""


class ListenerObserver:
    """Hooks the listener calls from its I/O thread; the default does nothing.

    The metrics wiring overrides them to count lines and connections. Each
    is called after the listener's own counters (:meth:`GraphiteListener.stats`)
    are updated, so a test woken by one sees consistent stats.
    """

    def listening(self, udp_inode: int | None) -> None:
        """The listener bound its sockets (``udp_inode``: its UDP socket's inode)."""

    def queued(self, points: int) -> None:
        """``points`` read lines were queued (one push served)."""

    def rejected(self, reason: str, lines: int) -> None:
        """``lines`` lines were rejected for ``reason`` (a key of ``REASONS``)."""

    def udp_dropped(self, points: int) -> None:
        """``points`` good UDP points were dropped: the queue was full."""

    def lost(self, points: int) -> None:
        """``points`` read were not queued (closed queue, stop, queue gone)."""

    def unconfirmed(self, points: int) -> None:
        """At stop, ``points`` were handed to the queue with no answer seen."""

    def connection_opened(self) -> None:
        """A TCP connection was accepted."""

    def connection_closed(self) -> None:
        """A TCP connection was closed, for any reason (also at stop)."""

    def connection_idle_closed(self) -> None:
        """A TCP connection was closed after ``idle_timeout`` without data."""

    def connection_evicted(self) -> None:
        """The longest-idle TCP connection was closed to make room for a new one."""

    def connection_refused(self) -> None:
        """A TCP connection was closed at once: the table was full of busy ones."""

    def accept_failed(self) -> None:
        """``accept()`` failed (e.g. out of file descriptors): accepting pauses."""


@attrs.frozen
class ListenerStats:
    """Counters of a :class:`GraphiteListener` since it started."""

    lines_accepted: int
    """Lines parsed into points and queued (TCP and UDP)."""
    lines_rejected: int
    """Lines rejected, all reasons together."""
    rejected: dict[str, int]
    """Rejected lines by reason (a key of ``graphite_protocol.REASONS``)."""
    udp_datagrams: int
    """Datagrams received."""
    udp_points_dropped: int
    """Good points from datagrams dropped because the queue was full."""
    connections_open: int
    """TCP connections open now."""
    connections_total: int
    """TCP connections accepted."""
    connections_refused: int
    """TCP connections closed at once: ``max_connections`` were open and none
    could be evicted (every one had points waiting for the queue)."""
    connections_closed: dict[str, int]
    """TCP connections closed, by reason (a key of :data:`CLOSE_REASONS`)."""
    accept_failures: int
    """``accept()`` calls that failed (e.g. ``EMFILE``), each pausing accepting."""
    points_lost_at_stop: int
    """Points read but not queued: refused by a closed queue or by the stop's
    drain timeout, or still held by the listener when its queue died."""
    points_unconfirmed: int
    """Points of the push in flight at stop whose answer never came (all of
    it, though the queue may have taken a first part): queued later if the
    queue had parked it (its contents outlive it), lost if the push was still
    in a dead queue's mailbox or the tree gave up."""
    pushes: int
    """Push messages sent to the queue (at most one in flight)."""
    wakeups: int
    """Times the I/O thread came out of ``select()``: a busy loop shows here."""


class Tally:
    """The listener's counters, written by its I/O thread and read by stats().

    Each method updates the counters under a lock held for the update only,
    then calls the observer's hook outside it. Rejected lines and dropped
    UDP points are also logged, through the rate-limited ``log``.
    """

    def __init__(self, observer: ListenerObserver, log: RateLimitedLogger) -> None:
        self._observer = observer
        self._log = log
        self._lock = threading.Lock()
        self._accepted = 0
        self._rejected = dict.fromkeys(REASONS, 0)
        self._datagrams = 0
        self._dropped = 0
        self._open = 0
        self._total = 0
        self._refused = 0
        self._closed = dict.fromkeys(CLOSE_REASONS, 0)
        self._accept_failures = 0
        self._lost = 0
        self._unconfirmed = 0
        self._pushes = 0
        self._wakeups = 0

    @property
    def observer(self) -> ListenerObserver:
        """The hooks this tally calls."""
        return self._observer

    def snapshot(self) -> ListenerStats:
        """A consistent copy of every counter."""
        with self._lock:
            return ListenerStats(
                lines_accepted=self._accepted,
                lines_rejected=sum(self._rejected.values()),
                rejected=dict(self._rejected),
                udp_datagrams=self._datagrams,
                udp_points_dropped=self._dropped,
                connections_open=self._open,
                connections_total=self._total,
                connections_refused=self._refused,
                connections_closed=dict(self._closed),
                accept_failures=self._accept_failures,
                points_lost_at_stop=self._lost,
                points_unconfirmed=self._unconfirmed,
                pushes=self._pushes,
                wakeups=self._wakeups,
            )

    def woke(self) -> None:
        """The I/O thread came out of ``select()``."""
        with self._lock:
            self._wakeups += 1

    def pushed(self) -> None:
        """One push was told to the queue."""
        with self._lock:
            self._pushes += 1

    def queued(self, points: int) -> None:
        """``points`` were queued."""
        if points:
            with self._lock:
                self._accepted += points
            self._observer.queued(points)

    def rejected(self, rejects: Sequence[Reject], peer: str) -> None:
        """Lines rejected: counted by reason, logged rate-limited with an example."""
        counts: dict[str, int] = {}
        for reject in rejects:
            counts[reject.reason] = counts.get(reject.reason, 0) + 1
        for reason, count in counts.items():
            example = next(r for r in rejects if r.reason == reason)
            self._log.warning(
                reason,
                "Rejected %d Graphite line(s) from %s: %s, e.g. %r",
                count,
                peer,
                REASONS[reason],
                example.line,
            )
        with self._lock:
            for reason, count in counts.items():
                self._rejected[reason] += count
        for reason, count in counts.items():
            self._observer.rejected(reason, count)

    def udp(self, datagrams: int, dropped: int) -> None:
        """Datagrams read and good points dropped from them."""
        with self._lock:
            self._datagrams += datagrams
            self._dropped += dropped
        if dropped:
            self._log.warning(
                "udp-drop", "Dropped %d Graphite UDP points: the queue is full", dropped
            )
            self._observer.udp_dropped(dropped)

    def lost(self, points: int) -> None:
        """``points`` read were not queued."""
        if points:
            with self._lock:
                self._lost += points
            self._observer.lost(points)

    def unconfirmed(self, points: int) -> None:
        """``points`` were handed to the queue with no answer seen."""
        with self._lock:
            self._unconfirmed += points
        self._observer.unconfirmed(points)

    def opened(self) -> None:
        """A TCP connection was accepted."""
        with self._lock:
            self._open += 1
            self._total += 1
        self._observer.connection_opened()

    def closed(self, reason: str) -> None:
        """A TCP connection was closed for ``reason`` (a key of CLOSE_REASONS)."""
        with self._lock:
            self._open -= 1
            self._closed[reason] += 1
        self._observer.connection_closed()
        if reason == IDLE:
            self._observer.connection_idle_closed()
        elif reason == EVICTED:
            self._observer.connection_evicted()

    def refused(self) -> None:
        """A TCP connection was closed at once."""
        with self._lock:
            self._refused += 1
        self._observer.connection_refused()

    def accept_failed(self) -> None:
        """``accept()`` failed."""
        with self._lock:
            self._accept_failures += 1
        self._observer.accept_failed()

    def totals(self) -> tuple[int, int]:
        """Points lost and unconfirmed so far."""
        with self._lock:
            return self._lost, self._unconfirmed
