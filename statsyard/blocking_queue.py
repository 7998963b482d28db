"""BlockingQueue: a bounded FIFO of points with back-pressure, as an actor.

Pykka has no deferred replies, so a caller that must wait (pushing into a
full queue, popping from an empty one) is not served by a blocking handler:
the handler parks a reply future in the queue's contents and returns it at
once, and the queue completes it later, when there is room or data, or fails
it with :class:`~statsyard.exceptions.QueueTimeout` when its deadline passes.
The actor itself never waits, so other callers keep being served.

The contents (points and parked callers) live in a
:class:`~statsyard.ledger.QueueContents` handed in by the owner, so they
survive a crash of the actor, as an ETS table survives with an heir.

:class:`BlockingQueueClient` is the blocking API callers use (the seed's
client functions around ``GenServer.call``).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import attrs
import pykka

from statsyard.child_actor import ChildActor, Link
from statsyard.exceptions import (
    FlushTimeout,
    NotRunningError,
    QueueClosedError,
    QueueTimeout,
)
from statsyard.ledger import Ledger, QueueContents, QueueSnapshot

__all__ = [
    "Ack",
    "AwaitCommitted",
    "BlockingQueue",
    "BlockingQueueClient",
    "Close",
    "Delivery",
    "Fetch",
    "NoAnswerYet",
    "Offer",
    "Pop",
    "Push",
    "QueueStats",
    "Reply",
    "RequeueInFlight",
    "close_contents",
]

logger = logging.getLogger(__name__)


class Reply(Protocol):
    """Where a parked request's answer goes: a Pykka future or a :class:`TellReply`."""

    def set(self, value: Any = None) -> None:
        """Deliver the answer."""

    def set_exception(self, exc_info: Any = None) -> None:
        """Deliver a failure, as ``(type, value, traceback)``."""


def _fail(reply: Reply, error: BaseException) -> None:
    reply.set_exception((type(error), error, None))


# -- messages ---------------------------------------------------------------


@attrs.frozen(slots=True)
class Push:
    """Queue ``points`` in order; ask it: the reply is a future of the count queued.

    The future completes once every point is queued (perhaps after waiting for
    room), or fails with ``QueueTimeout(accepted=k)`` at ``deadline``
    (a ``time.monotonic()`` value; ``None`` waits forever).

    With ``reply``, tell it instead: the count (or the failure) goes to
    ``reply``, so a caller that must never block (the Graphite listener's
    I/O thread) is woken when its push is served rather than polling.
    """

    points: tuple[Any, ...]
    deadline: float | None = None
    reply: Reply | None = None


@attrs.frozen(slots=True)
class Offer:
    """Queue what fits now without waiting; ask it: the reply is the count queued."""

    points: tuple[Any, ...]


@attrs.frozen(slots=True)
class Pop:
    """Take points; ask it: the reply is a future of one point, or of a list.

    ``max_items=None`` pops one point; an int pops between 1 and that many.
    """

    max_items: int | None = None
    deadline: float | None = None


@attrs.frozen(slots=True)
class Delivery:
    """Points handed to the consumer: indices ``start`` to ``start + len(points)``."""

    start: int
    points: tuple[Any, ...]

    @property
    def end(self) -> int:
        """Index just past the last point."""
        return self.start + len(self.points)


@attrs.frozen(slots=True)
class Fetch:
    """The consumer's pop: ``reply`` gets a :class:`Delivery` when data is there.

    Delivered points stay in flight until acknowledged with :class:`Ack`, so a
    crash of the consumer or writer never loses them.
    """

    max_items: int
    reply: Reply


@attrs.frozen(slots=True)
class Ack:
    """Release in-flight deliveries that end at or before index ``upto``."""

    upto: int


@attrs.frozen(slots=True)
class RequeueInFlight:
    """Put every unacknowledged delivery back at the front (a new consumer started)."""


@attrs.frozen(slots=True)
class AwaitCommitted:
    """Ask it: the reply is a future completed once ``target`` is committed."""

    target: int


@attrs.frozen(slots=True)
class Close:
    """Refuse new pushes and fail every parked caller with QueueClosedError."""


@attrs.frozen(slots=True)
class _Expire:
    """Timer tick: fail parked callers whose deadline has passed."""


QueueStats = QueueSnapshot
"""What the queue holds and who waits on it (see :class:`QueueSnapshot`)."""


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
                raise ValueError(f"capacity must be at least 1, got {capacity}")
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
        return self._c.size

    def capacity(self) -> int:
        """The most points the queue holds before pushes wait."""
        return self._c.capacity

    def stats(self) -> QueueStats:
        """Size, capacity, in-flight points and parked callers."""
        return self._c.snapshot()

    def _handle_receive(self, message: Any) -> Any:
        # Every message, proxy calls included, reads and changes the
        # contents under their lock: the host reads them from other threads.
        with self._c.lock:
            return super()._handle_receive(message)

    def on_receive(self, message: Any) -> Any:
        """Dispatch queue messages; anything else crashes the actor."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return super().on_receive(message)
        return handler(message)

    # -- handlers -----------------------------------------------------------

    def _on_push(self, message: Push) -> Reply:
        reply: Reply = (
            message.reply if message.reply is not None else pykka.ThreadingFuture()
        )
        if self._c.closed:
            error = QueueClosedError("the queue is closed to new points")
            if message.reply is None:
                raise error
            _fail(reply, error)  # told, not asked: raising would crash the queue
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
            raise ValueError(f"max_items must be at least 1, got {message.max_items}")
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
                _fail(popper.reply, QueueTimeout("timed out waiting for a point"))
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
        _fail(
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
                _fail(waiter.reply, QueueTimeout("timed out waiting for a point"))
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
        _fail(
            waiter.reply,
            QueueClosedError(
                f"{error} ({accepted} points were queued before it)",
                accepted=accepted,
            ),
        )
    for popper in contents.poppers:
        if popper.fetch:
            continue
        _fail(popper.reply, error)
    for flusher in contents.flushers:
        _fail(flusher.reply, error)
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


# -- the client ---------------------------------------------------------------

Resolver = Callable[[float | None], pykka.ActorRef[Any]]
"""Returns the living queue actor, waiting up to the given seconds for a restart."""

_POLL = 0.25
"""Seconds between liveness checks of the queue while its reply to an ask is due."""


class NoAnswerYet(Exception):  # noqa: N818 (internal signal, never leaves statsyard)
    """The caller's own wait ran out before the queue answered.

    It says nothing about the points: the queue may still queue them (or
    refuse them, or time them out) and will answer whoever waits next.
    """


def _answer(
    ref: pykka.ActorRef[Any], future: pykka.Future[Any], deadline: float | None
) -> Any:
    """The queue's reply to an ask, or ActorDeadError if it died before handling it.

    Pykka answers messages left in a dead actor's inbox with ActorDeadError,
    but a message put there just after that sweep is never answered: so the
    wait checks now and then whether the queue still lives. A handled message
    is answered before the actor can stop, so "stopped and unanswered" means
    "never handled": it is safe to send again.

    Raises:
        NoAnswerYet: ``deadline`` passed with the queue alive and silent.
    """
    while True:
        wait = _POLL if deadline is None else min(_POLL, _remaining(deadline))
        try:
            return future.get(timeout=wait)
        except pykka.Timeout:
            pass
        if not ref.is_alive():
            try:
                return future.get(timeout=0)
            except pykka.Timeout:
                raise pykka.ActorDeadError(f"{ref} stopped without answering") from None
        if deadline is not None and _remaining(deadline) <= 0:
            raise NoAnswerYet("the queue has not answered yet")


def _decision(inner: pykka.Future[Any], deadline: float | None) -> Any:
    """The queue's decision on a parked request; the queue alone decides.

    A parked push or pop is always answered by the queue: served, timed out
    at its own deadline by the queue's timer, or failed when the tree stops.
    ``deadline`` bounds only how long *this* caller waits for it.

    Raises:
        NoAnswerYet: ``deadline`` passed first (the request stays parked).
    """
    try:
        return inner.get(timeout=None if deadline is None else _remaining(deadline))
    except pykka.Timeout:
        raise NoAnswerYet("the queue has not decided yet") from None


class PendingPush:
    """A push sent to the queue whose acceptance has not been awaited yet."""

    def __init__(
        self,
        client: BlockingQueueClient,
        points: tuple[Any, ...],
        deadline: float | None,
    ) -> None:
        self._client = client
        self._points = points
        self._deadline = deadline
        self._sent: tuple[pykka.ActorRef[Any], pykka.Future[Any]] | None = client._send(
            Push(points, deadline), None
        )
        self._inner: pykka.Future[Any] | None = None

    @property
    def size(self) -> int:
        """Points in this push."""
        return len(self._points)

    def wait(self, *, deadline: float | None = None) -> int:
        """Block until the queue decides; returns how many points were queued.

        Only the queue decides: ``QueueTimeout`` (from the push's own
        deadline) and ``QueueClosedError`` mean the points it does not count
        as accepted were not queued and never will be.

        Args:
            deadline: a ``time.monotonic()`` bound on this wait only; when it
                passes first, :class:`NoAnswerYet` is raised and the push
                stays pending (call ``wait`` again later).

        Raises:
            QueueTimeout: the push's own deadline passed with points not queued.
            QueueClosedError: the queue was closed first.
            NotRunningError: no queue is running to take the push.
            NoAnswerYet: ``deadline`` passed before the queue decided.
        """
        while self._inner is None:
            if self._sent is None:
                # The queue died before it saw the push: nothing was queued.
                try:
                    self._sent = self._client._send(
                        Push(self._points, self._deadline), deadline
                    )
                except NotRunningError:
                    if deadline is not None and _remaining(deadline) <= 0:
                        raise NoAnswerYet(
                            "no queue to resend the push to yet"
                        ) from None
                    raise
            ref, outer = self._sent
            try:
                self._inner = _answer(ref, outer, deadline)
            except pykka.ActorDeadError:
                self._sent = None
        return int(_decision(self._inner, deadline))


def _remaining(deadline: float | None) -> float:
    if deadline is None:
        return math.inf
    return max(0.0, deadline - time.monotonic())


class BlockingQueueClient:
    """The blocking API over a :class:`BlockingQueue` actor.

    A timeout given to a call is the queue's: the queue itself answers
    ``QueueTimeout`` when it passes, so "timed out" always means "not
    queued" (or, for a pop, "nothing taken"); the client never gives up on
    its own while the queue may still serve the request.

    Args:
        queue: the queue's actor ref, or a resolver that returns the living
            one (the supervisor restarts it under a new ref).
    """

    def __init__(self, queue: pykka.ActorRef[Any] | Resolver) -> None:
        if isinstance(queue, pykka.ActorRef):
            ref = queue

            def resolve_fixed(timeout: float | None) -> pykka.ActorRef[Any]:
                if not ref.is_alive():
                    raise NotRunningError("the queue has stopped")
                return ref

            self._resolve: Resolver = resolve_fixed
        else:
            self._resolve = queue

    def _send(
        self, message: Any, deadline: float | None
    ) -> tuple[pykka.ActorRef[Any], pykka.Future[Any]]:
        while True:
            ref = self._resolve(None if deadline is None else _remaining(deadline))
            try:
                return ref, ref.ask(message, block=False)
            except pykka.ActorDeadError:
                continue  # died just now: resolve its successor

    def _call(self, message: Any, deadline: float | None = None) -> Any:
        while True:
            ref, future = self._send(message, deadline)
            try:
                return _answer(ref, future, deadline)
            except pykka.ActorDeadError:
                continue  # not handled by the dead queue: safe to resend

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    def push(self, point: Any, *, timeout: float | None = None) -> None:
        """Queue one point, waiting while the queue is full.

        Raises:
            QueueTimeout: ``timeout`` seconds passed and the point was not queued.
        """
        self.push_many((point,), timeout=timeout)

    def push_many(self, points: Iterable[Any], *, timeout: float | None = None) -> int:
        """Queue points in order, waiting for room; returns how many were queued.

        Raises:
            QueueTimeout: ``timeout`` passed first; ``accepted`` says how many
                of the points were queued (the first ones, in order).
            QueueClosedError: the queue was closed first (``accepted`` likewise).
        """
        return self.submit(points, timeout=timeout).wait()

    def submit(
        self, points: Iterable[Any], *, timeout: float | None = None
    ) -> PendingPush:
        """Send a push without waiting for it; ``wait()`` on the result later."""
        return PendingPush(self, tuple(points), self._deadline(timeout))

    def offer_many(self, points: Sequence[Any]) -> int:
        """Queue what fits right now, never waiting; returns how many were queued."""
        return int(self._call(Offer(tuple(points))))

    def pop(self, *, timeout: float | None = None) -> Any:
        """Take the oldest point, waiting while the queue is empty.

        Raises:
            QueueTimeout: nothing arrived within ``timeout`` seconds.
        """
        return _decision(self._call(Pop(None, self._deadline(timeout))), None)

    def pop_many(self, max_items: int, *, timeout: float | None = None) -> list[Any]:
        """Take 1 to ``max_items`` of the oldest points, waiting while empty."""
        future = self._call(Pop(max_items, self._deadline(timeout)))
        return list(_decision(future, None))

    def pop_stream(
        self, *, batch_size: int = 1000, timeout: float | None = None
    ) -> Iterator[Any]:
        """Lazily yield popped points, fetching ``batch_size`` at a time.

        The stream ends when no point arrives within ``timeout`` seconds
        (``None``: it never ends on its own).
        """
        while True:
            try:
                points = self.pop_many(batch_size, timeout=timeout)
            except QueueTimeout:
                return
            yield from points

    def size(self) -> int:
        """Points queued now."""
        return int(self._call(_proxy_call("size")))

    def capacity(self) -> int:
        """The queue's capacity."""
        return int(self._call(_proxy_call("capacity")))

    def stats(self) -> QueueStats:
        """Size, capacity, in-flight points and parked callers."""
        result: QueueStats = self._call(_proxy_call("stats"))
        return result

    def await_committed(self, target: int, *, timeout: float | None = None) -> int:
        """Wait until the writer has committed every point before index ``target``.

        Raises:
            FlushTimeout: not committed within ``timeout`` seconds (nothing is
                lost by that: the points are still on their way).
        """
        deadline = self._deadline(timeout)
        try:
            return int(
                _decision(self._call(AwaitCommitted(target), deadline), deadline)
            )
        except NoAnswerYet as exc:
            raise FlushTimeout(
                f"points up to index {target} were not committed within {timeout} s"
            ) from exc


def _proxy_call(name: str) -> Any:
    from pykka.messages import ProxyCall

    return ProxyCall(attr_path=(name,), args=(), kwargs={})
