"""The messages of the BlockingQueue actor, and where parked answers go.

Frozen values sent to :class:`~statsyard.pipeline.blocking_queue.BlockingQueue`
by its client, the consumer and the Graphite listener; one class per request.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from statsyard.pipeline.ledger import QueueSnapshot

__all__ = [
    "Ack",
    "AwaitCommitted",
    "Close",
    "Delivery",
    "Fetch",
    "GetStats",
    "Offer",
    "Pop",
    "Push",
    "QueueStats",
    "Reply",
    "RequeueInFlight",
    "fail",
]


class Reply(Protocol):
    """Where a parked request's answer goes: a Pykka future or a :class:`TellReply`."""

    def set(self, value: Any = None) -> None:
        """Deliver the answer."""

    def set_exception(self, exc_info: Any = None) -> None:
        """Deliver a failure, as ``(type, value, traceback)``."""


def fail(reply: Reply, error: BaseException) -> None:
    """Deliver ``error`` to a parked request's reply."""
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
class GetStats:
    """Ask the queue for its :class:`QueueStats` (size, capacity, in flight)."""


@attrs.frozen(slots=True)
class Close:
    """Refuse new pushes and fail every parked caller with QueueClosedError."""


QueueStats = QueueSnapshot
"""What the queue holds and who waits on it (see :class:`QueueSnapshot`)."""
