"""BlockingQueueClient: the blocking API over a BlockingQueue actor.

What callers use (the seed's client functions around ``GenServer.call``):
it sends :mod:`~statsyard.pipeline.queue_messages` to the living queue,
follows it through restarts, and waits for its answers, which are always
the queue's own decision (served, timed out, closed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pykka

from statsyard.exceptions import FlushTimeout, NotRunningError, QueueTimeout
from statsyard.pipeline.queue_messages import (
    AwaitCommitted,
    GetStats,
    Offer,
    Pop,
    Push,
    QueueStats,
)
from statsyard.supervision.deadline import deadline_after, remaining

__all__ = ["BlockingQueueClient", "NoAnswerYet", "PendingPush", "Resolver"]


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
    """Seconds left until ``deadline``; infinite for no deadline."""
    left = remaining(deadline)
    return math.inf if left is None else left


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
        return deadline_after(timeout)

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
        return self.stats().size

    def capacity(self) -> int:
        """The queue's capacity."""
        return self.stats().capacity

    def stats(self) -> QueueStats:
        """Size, capacity, in-flight points and parked callers."""
        result: QueueStats = self._call(GetStats())
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
