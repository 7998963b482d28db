"""The Graphite listener's side of its queue: one push in flight at a time,
its reply slot, and the points that wait for the next push."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import pykka

from statsyard._ratelimit import RateLimitedLogger
from statsyard.pipeline.queue_messages import Push

if TYPE_CHECKING:
    import logging

    from statsyard.datapoint import Row
    from statsyard.graphite._connections import Connection
    from statsyard.graphite.stats import Tally

__all__ = ["Pusher", "Submission", "await_served"]

_PUSH_POINTS: Final = 50_000
"""Points gathered into one push (more wait for the next)."""
_STOP_POLL: Final = 0.05
"""At stop only: how often to check that the queue still lives while draining."""
_STALL: Final = 0.5
"""At stop: seconds the pipeline may stand still before the listener stops waiting."""


class Submission:
    """One push in flight: the reply slot the queue completes, from its thread.

    Completing it records the answer and wakes the I/O thread through the
    wake socket. It never raises: the queue calls it from its own handlers.
    """

    __slots__ = ("_wake", "error", "finished", "queued", "size")

    def __init__(self, size: int, wake: Callable[[], None]) -> None:
        self.size = size
        self.queued = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._wake = wake

    def set(self, value: Any = None) -> None:
        """All points were queued (``value`` is the count)."""
        self.queued = value if type(value) is int else self.size
        self._done()

    def set_exception(self, exc_info: Any = None) -> None:
        """Some points were not queued (``accepted`` on the error says how many)."""
        error = exc_info[1] if exc_info is not None else None
        self.error = error
        accepted = getattr(error, "accepted", 0)
        self.queued = accepted if type(accepted) is int else 0
        self._done()

    def _done(self) -> None:
        self.finished.set()
        self._wake()


def await_served(
    submission: Submission,
    *,
    queue: pykka.ActorRef[Any],
    deadline: float,
    progress: Callable[[], int] | None,
    logger: logging.Logger,
) -> bool:
    """Wait for a push to be served while the queue lives and moves.

    Bounded three ways: the deadline (the queue itself fails a push at
    its deadline; one second of grace covers the message's way back),
    the queue's death, and a pipeline that stops draining (``progress``
    standing still) for ``_STALL`` seconds: its consumer or writer is
    gone, the tree is stopping by itself, and waiting would only delay
    that. ``logger`` says so when it gives up for that reason.

    Returns:
        True if the push was answered.
    """
    last = progress() if progress is not None else 0
    moved = time.monotonic()
    while queue.is_alive() and time.monotonic() <= deadline + 1.0:
        if submission.finished.wait(_STOP_POLL):
            return True
        if progress is None:
            continue
        now = progress()
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > _STALL:
            logger.warning("The pipeline stopped draining; the listener stops now")
            break
    return submission.finished.is_set()


class Pusher:
    """The listener's side of its queue: one push in flight, points waiting.

    Connections whose points wait are held in :attr:`waiting` (the I/O
    server stops reading them: back-pressure); UDP points are held up to
    ``udp_pending``, more are dropped. Used from the I/O thread only.

    Args:
        queue: the BlockingQueue's ref.
        tally: the listener's counters.
        logger: the listener's channel.
        udp_pending: UDP points held while a push is in flight.
        progress: the pipeline's progress count, for stopping (see
            :func:`await_served`).
        wake: wakes the I/O thread (a push was served).
    """

    def __init__(
        self,
        *,
        queue: pykka.ActorRef[Any],
        tally: Tally,
        logger: logging.Logger,
        udp_pending: int,
        progress: Callable[[], int] | None,
        wake: Callable[[], None],
    ) -> None:
        self._queue = queue
        self._tally = tally
        self._logger = logger
        self._log = RateLimitedLogger(logger)
        self._udp_limit = udp_pending
        self._progress = progress
        self._wake = wake
        self._inflight: Submission | None = None
        self._udp: list[Row] = []
        self.waiting: deque[Connection] = deque()
        """Connections whose points wait for the next push, in arrival order."""
        self.queue_gone = False
        """The queue died: nothing more can be pushed."""

    def hold(self, connection: Connection) -> None:
        """``connection`` has pending points: it waits for the next push."""
        if not connection.waiting:
            connection.waiting = True
            self.waiting.append(connection)

    def hold_udp(self, points: list[Row]) -> int:
        """Hold UDP points while there is room; returns how many were dropped."""
        room = max(self._udp_limit - len(self._udp), 0)
        self._udp.extend(points[:room])
        return max(len(points) - room, 0)

    def udp_held(self) -> int:
        """UDP points held now."""
        return len(self._udp)

    def pump(self) -> list[Connection]:
        """Settle the push in flight if served, send the next one.

        Returns:
            The connections whose points it took (they may be read again).
        """
        inflight = self._inflight
        if inflight is not None:
            if not inflight.finished.is_set():
                return []
            self._inflight = None
            self._settle(inflight)
        if self.queue_gone:
            return []
        points, self._udp = self._udp, []
        taken: list[Connection] = []
        while self.waiting and len(points) < _PUSH_POINTS:
            connection = self.waiting.popleft()
            connection.waiting = False
            points.extend(connection.pending)
            connection.pending = []
            taken.append(connection)
        if points:
            self._submit(points)
        return taken

    def drain(self, points: list[Row], deadline: float) -> None:
        """At stop: queue ``points`` (and the UDP held) after the push in flight.

        Counts what could not be queued by ``deadline`` as lost, and the
        push whose answer never came as unconfirmed.
        """
        points = self._udp + points
        self._udp = []
        self.waiting.clear()
        inflight = self._inflight
        if inflight is not None and self._await(inflight, deadline):
            self._inflight = None
            self._settle(inflight)
            inflight = None
        if inflight is None and points and not self.queue_gone:
            self._submit(points, deadline)
            inflight, points = self._inflight, []
            if inflight is not None and self._await(inflight, deadline):
                self._inflight = None
                self._settle(inflight)
                inflight = None
        self._inflight = None
        self._tally.lost(len(points))
        if inflight is not None:
            # Handed to the queue, answer not seen: a push the queue had
            # parked lives on in its contents (a restarted queue serves it);
            # one still in a dead queue's mailbox is gone. Not knowable here.
            self._tally.unconfirmed(inflight.size)

    def _submit(self, points: list[Row], deadline: float | None = None) -> None:
        """Tell the queue one push; its reply wakes the I/O thread when served."""
        submission = Submission(len(points), self._wake)
        try:
            self._queue.tell(Push(tuple(points), deadline, reply=submission))
        except pykka.ActorDeadError:
            self._on_queue_gone(len(points))
            return
        self._inflight = submission
        self._tally.pushed()

    def _on_queue_gone(self, lost: int) -> None:
        if not self.queue_gone:
            self.queue_gone = True
            self._logger.warning(
                "The queue is gone: the Graphite listener stops reading until "
                "the supervisor restarts it"
            )
        self._tally.lost(lost)

    def _settle(self, submission: Submission) -> None:
        self._tally.queued(submission.queued)
        missed = submission.size - submission.queued
        if missed:
            self._log.warning(
                "not-queued",
                "%d Graphite points were not queued: %s",
                missed,
                submission.error,
            )
            self._tally.lost(missed)

    def _await(self, submission: Submission, deadline: float) -> bool:
        return await_served(
            submission,
            queue=self._queue,
            deadline=deadline,
            progress=self._progress,
            logger=self._logger,
        )
