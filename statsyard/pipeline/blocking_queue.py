"""BlockingQueue: a bounded FIFO of points with back-pressure, as an actor.

Pykka has no deferred replies, so a caller that must wait (pushing into a
full queue, popping from an empty one) is not served by a blocking handler:
the handler parks a reply future in the queue's contents and returns it at
once, and the queue completes it later, when there is room or data, or fails
it with :class:`~statsyard.exceptions.QueueTimeout` when its deadline passes.
The actor itself never waits, so other callers keep being served.

The contents (points and parked callers) live in a
:class:`~statsyard.pipeline.ledger.QueueContents` handed in by the owner, so they
survive a crash of the actor, as an ETS table survives with an heir.

:class:`~statsyard.pipeline.queue_client.BlockingQueueClient` is the
blocking API callers use (the seed's client functions around
``GenServer.call``); the messages are in
:mod:`~statsyard.pipeline.queue_messages`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pykka

from statsyard.exceptions import InvalidArgumentError, QueueClosedError, QueueTimeout
from statsyard.pipeline.ledger import Ledger, QueueContents
from statsyard.pipeline.queue_messages import (
    Ack,
    AwaitCommitted,
    Close,
    Delivery,
    Fetch,
    GetStats,
    Offer,
    Pop,
    Push,
    QueueStats,
    Reply,
    RequeueInFlight,
    fail,
)
from statsyard.supervision import ChildActor, Link

__all__ = ["BlockingQueue", "close_contents", "fail_parked_callers"]

logger = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class _Expire:
    """Timer tick: fail parked callers whose deadline has passed."""


# -- parked callers ---------------------------------------------------------


@attrs.define(slots=True)
class _PushWaiter:
    remaining: tuple[Any, ...]
    reply: Reply
    deadline: float | None
    accepted: int = 0


@attrs.define(slots=True)
class _PopWaiter:
    max_items: int | None
    reply: Reply
    deadline: float | None
    fetch: bool = False


@attrs.define(slots=True)
class _FlushWaiter:
    target: int
    reply: Reply


class _DeadlineTimer:
    """One timer thread for the earliest deadline of all parked callers."""

    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire
        self._timer: threading.Timer | None = None
        self._due: float | None = None

    def arm(self, deadline: float | None) -> None:
        if deadline is None or (self._due is not None and self._due <= deadline):
            return
        self.cancel()
        self._due = deadline
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.name = "statsyard-queue-deadline"
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        timer, self._timer, self._due = self._timer, None, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()


class BlockingQueue(ChildActor):
    """Bounded FIFO of points; pushes wait while full, pops while empty.

    Args:
        contents: the points and parked callers; pass the same object to a
            restarted queue so nothing is lost. Defaults to a fresh one.
        capacity: used only when ``contents`` is not given.
        ledger: the accounting shared with the writer.
        link: the supervisor's link.
    """

    def __init__(
        self,
        *,
        contents: QueueContents | None = None,
        capacity: int = 100_000,
        ledger: Ledger | None = None,
        link: Link | None = None,
    ) -> None:
        super().__init__(link=link)
        if contents is None:
            if capacity < 1:
                raise InvalidArgumentError(
                    f"capacity must be at least 1, got {capacity}", value=capacity
                )
            contents = QueueContents(capacity=capacity)
        self._c = contents
        self._ledger = ledger if ledger is not None else Ledger()
        self._timer = _DeadlineTimer(self._tell_expire)
        self._handlers: dict[type, Callable[[Any], Any]] = {
            Push: self._on_push,
            Offer: self._on_offer,
            Pop: self._on_pop,
            Fetch: self._on_fetch,
            Ack: self._on_ack,
            RequeueInFlight: self._on_requeue,
            AwaitCommitted: self._on_await_committed,
            Close: self._on_close,
            GetStats: self._on_get_stats,
            _Expire: self._on_expire,
        }

    # -- lifecycle ----------------------------------------------------------

    def on_child_start(self) -> None:
        """Adopt parked callers left by a predecessor and re-arm their deadlines."""
        with self._c.lock:
            for waiter in itertools.chain(self._c.pushers, self._c.poppers):
                self._timer.arm(waiter.deadline)
            self._serve()
        logger.debug("BlockingQueue started with %d points queued", self._c.size)

    def on_child_stop(self) -> None:
        """Stop the deadline timer; the contents stay with their owner."""
        self._timer.cancel()

    def on_child_failure(self, error: BaseException | None) -> None:
        """Same as a stop: the contents outlive the actor."""
        self._timer.cancel()

    # -- proxy API ----------------------------------------------------------

    def size(self) -> int:
        """Points queued (not counting those in flight to the consumer)."""
        with self._c.lock:
            return self._c.size

    def capacity(self) -> int:
        """The most points the queue holds before pushes wait."""
        with self._c.lock:
            return self._c.capacity

    def stats(self) -> QueueStats:
        """Size, capacity, in-flight points and parked callers."""
        return self._c.snapshot()

    def on_receive(self, message: Any) -> Any:
        """Dispatch queue messages; anything else crashes the actor.

        Every handler reads and changes the contents under their lock: the
        host reads them from other threads. (The proxy methods above only
        read, each under the same lock.)
        """
        handler = self._handlers.get(type(message))
        if handler is None:
            return super().on_receive(message)
        with self._c.lock:
            return handler(message)

    def _on_get_stats(self, message: GetStats) -> QueueStats:
        return self._c.snapshot()

    # -- handlers -----------------------------------------------------------

    def _on_push(self, message: Push) -> Reply:
        reply: Reply = (
            message.reply if message.reply is not None else pykka.ThreadingFuture()
        )
        if self._c.closed:
            error = QueueClosedError("the queue is closed to new points")
            if message.reply is None:
                raise error
            fail(reply, error)  # told, not asked: raising would crash the queue
            return reply
        waiter = _PushWaiter(message.points, reply, message.deadline)
        if not message.points:
            reply.set(0)
            return reply
        if self._c.pushers or not self._admit(waiter):
            if self._expired(message.deadline):
                self._fail_push(waiter)
            else:
                self._c.pushers.append(waiter)
                self._timer.arm(message.deadline)
        self._serve()
        return reply

    def _on_offer(self, message: Offer) -> int:
        if self._c.closed:
            raise QueueClosedError("the queue is closed to new points")
        if self._c.pushers:
            return 0
        free = self._c.capacity - self._c.size
        points = (
            message.points if len(message.points) <= free else message.points[:free]
        )
        if points:
            self._enqueue(points)
            self._serve()
        return len(points)

    def _on_pop(self, message: Pop) -> pykka.Future[Any]:
        if message.max_items is not None and message.max_items < 1:
            raise InvalidArgumentError(
                f"max_items must be at least 1, got {message.max_items}",
                value=message.max_items,
            )
        reply: pykka.Future[Any] = pykka.ThreadingFuture()
        self._park_popper(_PopWaiter(message.max_items, reply, message.deadline))
        return reply

    def _on_fetch(self, message: Fetch) -> None:
        self._park_popper(
            _PopWaiter(message.max_items, message.reply, None, fetch=True)
        )

    def _on_ack(self, message: Ack) -> None:
        for start in [
            s for s, p in self._c.in_flight.items() if s + len(p) <= message.upto
        ]:
            del self._c.in_flight[start]
        committed = self._ledger.committed_upto
        still: list[_FlushWaiter] = []
        for flusher in self._c.flushers:
            if flusher.target <= committed:
                flusher.reply.set(committed)
            else:
                still.append(flusher)
        self._c.flushers = still

    def _on_requeue(self, message: RequeueInFlight) -> int:
        c = self._c
        # Parked fetches belonged to the consumer that died.
        c.poppers = type(c.poppers)(w for w in c.poppers if not w.fetch)
        if not c.in_flight:
            return 0
        self._normalise_head()
        requeued = 0
        for start in sorted(c.in_flight, reverse=True):
            points = c.in_flight.pop(start)
            c.chunks.appendleft((start, points))
            c.size += len(points)
            requeued += len(points)
        logger.info("Requeued %d in-flight points for redelivery", requeued)
        return requeued

    def _on_await_committed(self, message: AwaitCommitted) -> pykka.Future[int]:
        reply: pykka.Future[int] = pykka.ThreadingFuture()
        committed = self._ledger.committed_upto
        if message.target <= committed:
            reply.set(committed)
        else:
            self._c.flushers.append(_FlushWaiter(message.target, reply))
        return reply

    def _on_close(self, message: Close) -> None:
        self._c.closed = True
        fail_parked_callers(self._c, QueueClosedError("the queue was closed"))

    def _on_expire(self, message: _Expire) -> None:
        self._timer.cancel()
        c = self._c
        now = time.monotonic()
        keep_pushers = type(c.pushers)()
        for waiter in c.pushers:
            if waiter.deadline is not None and waiter.deadline <= now:
                self._fail_push(waiter)
            else:
                keep_pushers.append(waiter)
        c.pushers = keep_pushers
        keep_poppers = type(c.poppers)()
        for popper in c.poppers:
            if popper.deadline is not None and popper.deadline <= now:
                fail(popper.reply, QueueTimeout("timed out waiting for a point"))
            else:
                keep_poppers.append(popper)
        c.poppers = keep_poppers
        for waiter in itertools.chain(c.pushers, c.poppers):
            self._timer.arm(waiter.deadline)
        self._serve()

    # -- mechanics ----------------------------------------------------------

    def _tell_expire(self) -> None:
        try:
            self.actor_ref.tell(_Expire())
        except pykka.ActorDeadError:
            pass  # the actor stopped; its successor re-arms the deadlines

    @staticmethod
    def _expired(deadline: float | None) -> bool:
        return deadline is not None and deadline <= time.monotonic()

    def _fail_push(self, waiter: _PushWaiter) -> None:
        fail(
            waiter.reply,
            QueueTimeout(
                f"timed out with the queue full: {waiter.accepted} points queued, "
                f"{len(waiter.remaining)} not",
                accepted=waiter.accepted,
            ),
        )

    def _enqueue(self, points: tuple[Any, ...]) -> None:
        start = self._ledger.accept(len(points))
        self._c.chunks.append((start, points))
        self._c.size += len(points)

    def _admit(self, waiter: _PushWaiter) -> bool:
        """Queue what fits of a pusher's points; True once all are queued."""
        free = self._c.capacity - self._c.size
        if free <= 0:
            return False
        remaining = waiter.remaining
        if len(remaining) <= free:
            self._enqueue(remaining)
            waiter.accepted += len(remaining)
            waiter.remaining = ()
            waiter.reply.set(waiter.accepted)
            return True
        self._enqueue(remaining[:free])
        waiter.accepted += free
        waiter.remaining = remaining[free:]
        return False

    def _park_popper(self, waiter: _PopWaiter) -> None:
        if self._c.poppers or self._c.size == 0:
            if not waiter.fetch and self._expired(waiter.deadline):
                fail(waiter.reply, QueueTimeout("timed out waiting for a point"))
                return
            self._c.poppers.append(waiter)
            self._timer.arm(waiter.deadline)
        else:
            self._hand_over(waiter)
        self._serve()

    def _hand_over(self, waiter: _PopWaiter) -> None:
        start, points = self._take(waiter.max_items or 1)
        if waiter.fetch:
            self._c.in_flight[start] = points
            try:
                waiter.reply.set(Delivery(start, points))
            except pykka.ActorDeadError:
                del self._c.in_flight[start]
                self._normalise_head()
                self._c.chunks.appendleft((start, points))
                self._c.size += len(points)
            return
        self._ledger.take(len(points))
        waiter.reply.set(points[0] if waiter.max_items is None else list(points))

    def _serve(self) -> None:
        """Match parked poppers with data and parked pushers with room."""
        c = self._c
        progress = True
        while progress:
            progress = False
            while c.poppers and c.size > 0:
                self._hand_over(c.poppers.popleft())
                progress = True
            while c.pushers and c.size < c.capacity:
                if self._admit(c.pushers[0]):
                    c.pushers.popleft()
                progress = True

    def _normalise_head(self) -> None:
        c = self._c
        if c.head_offset:
            start, points = c.chunks[0]
            c.chunks[0] = (start + c.head_offset, points[c.head_offset :])
            c.head_offset = 0

    def _take(self, max_items: int) -> tuple[int, tuple[Any, ...]]:
        """Remove up to ``max_items`` contiguous points from the head."""
        c = self._c
        parts: list[tuple[Any, ...]] = []
        taken = 0
        first = expect = -1
        while taken < max_items and c.chunks:
            start, points = c.chunks[0]
            offset = c.head_offset
            at = start + offset
            if parts and at != expect:
                break  # a gap in the indices: deliveries stay contiguous
            if not parts:
                first = at
            want = max_items - taken
            available = len(points) - offset
            if available <= want:
                parts.append(points[offset:] if offset else points)
                c.chunks.popleft()
                c.head_offset = 0
                taken += available
                expect = at + available
            else:
                parts.append(points[offset : offset + want])
                c.head_offset += want
                taken += want
                expect = at + want
        c.size -= taken
        if len(parts) == 1:
            return first, parts[0]
        return first, tuple(itertools.chain.from_iterable(parts))


def fail_parked_callers(contents: QueueContents, error: QueueClosedError) -> None:
    """Fail every parked pusher, popper and flusher (the tree is going away)."""
    for waiter in contents.pushers:
        accepted = waiter.accepted
        fail(
            waiter.reply,
            QueueClosedError(
                f"{error} ({accepted} points were queued before it)",
                accepted=accepted,
            ),
        )
    for popper in contents.poppers:
        if popper.fetch:
            continue
        fail(popper.reply, error)
    for flusher in contents.flushers:
        fail(flusher.reply, error)
    contents.pushers.clear()
    contents.poppers.clear()
    contents.flushers.clear()


def close_contents(
    contents: QueueContents, error: QueueClosedError, *, committed: int
) -> int:
    """Close the queue's contents for good: the tree is going away.

    Fails every parked caller first (so threads blocked on the queue are
    released before anything else happens), then drops the queued and
    in-flight points. Returns how many of those are lost: only those at or
    above index ``committed``, since the writer may have committed points
    whose acknowledgement never reached the queue. Idempotent.
    """
    with contents.lock:
        contents.closed = True
        fail_parked_callers(contents, error)
        lost = 0
        for start, points in contents.chunks:
            lost += _above(start, len(points), committed)
        if contents.head_offset and contents.chunks:
            start, _ = contents.chunks[0]
            lost -= _above(start, contents.head_offset, committed)
        for start, points in contents.in_flight.items():
            lost += _above(start, len(points), committed)
        contents.chunks.clear()
        contents.head_offset = 0
        contents.size = 0
        contents.in_flight.clear()
        return lost


def _above(start: int, count: int, committed: int) -> int:
    """How many of the indices ``start`` to ``start + count`` are >= ``committed``."""
    return max(0, start + count - max(start, committed))
