"""PushStage: pushed points wait here and go to the queue a batch at a time.

``StatsYard.push()`` is cheap because of it: points are staged in a small
batch in the caller's thread and handed to the queue one actor message per
batch, not per point, waiting while the queue is full. A partial batch goes
out after ``linger`` seconds (sent by the stage's linger thread), on
``send()`` (``flush()``) and on ``stop()``.

Every point the stage took ends in the queue or is counted as lost in the
ledger (``lose_unqueued``): :meth:`PushStage.settle` counts what is still
staged, or sent but refused, once the tree has stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from itertools import islice
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from statsyard.datapoint import DataPoint, now_ms
from statsyard.exceptions import FlushTimeout, NotRunningError, StatsYardError
from statsyard.pipeline.queue_client import NoAnswerYet, PendingPush
from statsyard.supervision.deadline import lock_timeout

if TYPE_CHECKING:
    from statsyard.pipeline.ledger import Ledger
    from statsyard.pipeline.queue_client import BlockingQueueClient

__all__ = ["PushStage", "as_queued"]

logger = logging.getLogger(__name__)

_DATAPOINT: frozenset[type] = frozenset({DataPoint})
_HELD: frozenset[type] = frozenset({list, tuple})
_PIECE = 256
"""Points of a lazy iterable read and converted at once by ``push_many``."""
_TUPLE: frozenset[type] = frozenset({tuple})
_fields_of: Callable[[DataPoint], tuple[Any, Any, Any, Any]] = attrgetter(
    "metric", "entity", "value", "timestamp"
)
"""A DataPoint's fields as a tuple, read at C speed (slots: no caller code)."""


def as_queued(points: list[Any], now: int) -> list[Any]:
    """``points`` as they wait in the queue: stamped, DataPoints as 4-tuples.

    A tuple or dict lacking a timestamp gets ``now`` (ms). A ``DataPoint``
    (the exact class) becomes the tuple of its four fields: it is validated
    exactly as the DataPoint was (validation reads the same four values and
    checks their exact types), and unlike the DataPoint, which the garbage
    collector tracks for as long as it waits in the queue, a tuple of
    untracked values leaves the collector's lists at its first collection,
    so a full queue does not make every collection longer. Anything else is
    left as it is, for validation. A batch of DataPoints or 4-tuples is
    recognised at C speed.
    """
    kinds = set(map(type, points))
    if kinds == _DATAPOINT:
        return list(map(_fields_of, points))
    if kinds == _TUPLE and 3 not in map(len, points):
        return points
    return [
        (*p, now)
        if type(p) is tuple and len(p) == 3
        else _fields_of(p)
        if type(p) is DataPoint
        else {**p, "timestamp": now}
        if type(p) is dict and p.get("timestamp") is None
        else p
        for p in points
    ]


class PushStage:
    """Points pushed by host threads, sent to the queue a batch at a time.

    The stage lock is held while a pusher waits on the queue, so no thread of
    the tree may ever take it: the tree's exit only calls :meth:`tree_exited`,
    and the linger thread settles.

    Args:
        queue: the client of the living queue.
        ledger: where points lost before the queue are counted.
        batch_size: points per push message.
        linger: seconds a partial batch may wait before it is sent.
    """

    def __init__(
        self,
        *,
        queue: BlockingQueueClient,
        ledger: Ledger,
        batch_size: int,
        linger: float,
    ) -> None:
        self._queue = queue
        self._ledger = ledger
        self._batch_size = batch_size
        self._linger = linger
        self.lock = threading.Lock()
        """Held while staging or sending, also while waiting for room."""
        self._staged: list[Any] = []
        self._staged_since = 0.0
        self._pending: PendingPush | None = None
        self._pending_since = 0.0
        self._settled = False
        self._exit_reason: str | None = None
        self._stopping = False
        # The linger thread sleeps on this until there is something to send.
        self._wake = threading.Event()
        # Whether it sleeps with no timeout (changed under the lock): only
        # then must a new batch or push wake it. While it has a timeout it
        # looks at the stage by itself when that runs out, so a pusher
        # sending batch after batch does not wake it (a thread switch and
        # a contended lock) for each one.
        self._linger_idle = True
        self.wakeups = 0
        """How often the linger thread woke up (an idle stage does not)."""
        self._thread: threading.Thread | None = None

    # -- taking points ---------------------------------------------------------

    def push(self, point: Any) -> None:
        """Stage one point, stamping a tuple or dict without a timestamp now.

        Raises:
            NotRunningError: the stage is settled (the point is not taken).
            StatsYardError: the queue refused the batch this point completed.
        """
        kind = type(point)
        if kind is DataPoint:
            point = _fields_of(point)
        elif kind is tuple:
            if len(point) == 3:
                point = (*point, now_ms())
        elif kind is dict and point.get("timestamp") is None:
            point = {**point, "timestamp": now_ms()}
        with self.lock:
            staged = self._staged
            if not staged:
                self._first_staged()
            staged.append(point)
            if len(staged) >= self._batch_size:
                self._send_staged()

    def push_many(self, points: Iterable[Any]) -> None:
        """Stage many points in order, one clock reading per batch for stamps.

        Raises:
            NotRunningError: the stage is settled; points already taken are
                settled (queued, or counted as lost).
            StatsYardError: the queue refused a batch.
        """
        size = self._batch_size
        # Points the caller makes as we read them (a generator) are read and
        # turned into their queued form a few hundred at a time, so that
        # each DataPoint dies before the garbage collector looks at it:
        # one that lives through two collections is promoted to the oldest
        # generation, and those promotions are what trigger full
        # collections, each of which walks every object of the process.
        # A list or tuple the caller holds anyway is taken a batch at a time.
        piece = size if type(points) in _HELD else _PIECE
        remaining = iter(points)
        with self.lock:
            while True:
                if not self._staged:
                    self._first_staged()
                staged = self._staged
                now = now_ms()
                while (room := size - len(staged)) > 0:
                    want = min(room, piece)
                    taken = list(islice(remaining, want))
                    staged.extend(as_queued(taken, now))
                    if len(taken) < want:
                        return  # all taken; the rest of a batch waits staged
                self._send_staged()

    def send(self, deadline: float | None) -> None:
        """Send what is staged and wait until the queue has taken every push.

        Raises:
            FlushTimeout: a pusher held the stage, or the queue did not
                answer, before ``deadline`` (nothing is lost by it).
            StatsYardError: the queue refused the points (counted as lost).
        """
        # A pusher may hold the stage lock while it waits for room: wait for
        # it no longer than the deadline.
        if not self.lock.acquire(timeout=lock_timeout(deadline)):
            raise FlushTimeout("a pusher still waits for room in the queue")
        try:
            self._send_staged(deadline)
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._await_push(pending, deadline)
        except NoAnswerYet as exc:
            raise FlushTimeout("the queue did not take the points in time") from exc
        finally:
            self.lock.release()

    def _first_staged(self) -> None:
        """A batch starts (lock held): refuse if settled, wake the linger."""
        if self._exit_reason is not None or self._settled:
            reason = self._exit_reason or "stopped"
            raise NotRunningError(f"StatsYard is not running: {reason}")
        self._staged_since = time.monotonic()
        if self._linger_idle:
            self._wake.set()

    def _send_staged(self, deadline: float | None = None) -> None:
        """Hand the staged batch to the queue (caller holds the lock).

        One push stays in flight while the next batch fills; it is awaited
        before the next one goes, which is where back-pressure bites.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._await_push(pending, deadline)
        batch, self._staged = self._staged, []
        if batch:
            try:
                self._pending = self._queue.submit(batch)
            except StatsYardError as exc:
                self._count_lost(len(batch), exc)
                raise
            self._pending_since = time.monotonic()
            if self._linger_idle:
                self._wake.set()  # the linger thread awaits it if nobody else does

    def _await_push(self, pending: PendingPush, deadline: float | None = None) -> None:
        """Wait for the queue's decision on a push; count what it refused as lost.

        Raises:
            NoAnswerYet: ``deadline`` passed first; the push is pending again.
        """
        try:
            pending.wait(deadline=deadline)
        except NoAnswerYet:
            self._pending = pending
            raise
        except StatsYardError as exc:
            self._count_lost(pending.size - getattr(exc, "accepted", 0), exc)
            raise

    def _count_lost(self, points: int, reason: Exception) -> None:
        """Points the stage took that never reached the queue: count them as lost."""
        if points > 0:
            self._ledger.lose_unqueued(points)
            logger.error("Lost %d pushed points before the queue: %s", points, reason)

    # -- the end -----------------------------------------------------------------

    def settle(self, reason: str, deadline: float | None) -> bool:
        """Count what the stage still holds as lost and refuse more, once.

        Call it once the queue's contents are closed, so that a push still
        pending is answered at once. Returns True if this call settled the
        stage; False if it was settled already, or a pusher still held the
        lock at ``deadline`` (logged).
        """
        if not self.lock.acquire(timeout=lock_timeout(deadline)):
            logger.error("A pusher still holds the staging lock; not settled")
            return False
        try:
            if self._settled:
                return False
            self._settled = True
            staged, self._staged = self._staged, []
            self._count_lost(len(staged), NotRunningError(reason))
            if self._pending is not None:  # answered by now: the contents are closed
                pending, self._pending = self._pending, None
                try:
                    self._await_push(pending, deadline)
                except StatsYardError:
                    pass  # counted as lost by _await_push
                except NoAnswerYet:
                    self._count_lost(pending.size, NotRunningError(reason))
        finally:
            self.lock.release()
        return True

    def tree_exited(self, reason: str) -> None:
        """The tree stopped (any thread, no lock taken): refuse new batches and
        let the linger thread settle."""
        self._exit_reason = reason
        self._wake.set()

    def stopping(self) -> None:
        """``stop()`` sends and settles what is staged: the linger thread ends."""
        self._stopping = True
        self._wake.set()

    # -- the linger thread ---------------------------------------------------------

    def start_linger(self, on_tree_exit: Callable[[], None]) -> None:
        """Start the thread that sends partial batches.

        Args:
            on_tree_exit: called from that thread once :meth:`tree_exited`
                was called (it settles the host, this stage included).
        """
        self._thread = threading.Thread(
            target=self._linger_loop,
            args=(on_tree_exit,),
            name="statsyard-linger",
            daemon=True,
        )
        self._thread.start()

    def join_linger(self, timeout: float | None) -> bool:
        """Wait for the linger thread to end; False if it still runs.

        From the linger thread itself (an ``on_exit`` callback) it returns True.
        """
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _linger_loop(self, on_tree_exit: Callable[[], None]) -> None:
        """Send a partial batch ``linger`` s after its first point, and await a
        push nobody awaited for ``linger`` s; idle, sleep.

        While nothing is staged or pending it waits on an event with no
        timeout, so an idle StatsYard costs no wake-ups; while a pusher keeps
        sending (and so awaits its own pushes) it wakes once per ``linger``.
        """
        timeout: float | None = None
        while True:
            self._wake.wait(timeout)
            self.wakeups += 1
            self._wake.clear()
            if self._exit_reason is not None:
                on_tree_exit()
                return
            if self._stopping:
                return  # stop() sends and settles what is staged
            with self.lock:
                timeout = self._linger_due()
                self._linger_idle = timeout is None
                if timeout is None or timeout > 0:
                    continue
                timeout = None
                try:
                    self._send_staged()
                    if self._pending is not None:
                        pending, self._pending = self._pending, None
                        self._await_push(pending)
                except StatsYardError:  # logged and counted where it happened
                    pass
                self._linger_idle = True  # nothing staged or pending now

    def _linger_due(self) -> float | None:
        """Seconds until the linger thread must act (<= 0: now), None: idle.

        Lock held. What is staged goes out ``linger`` s after its first
        point; a push still pending is awaited ``linger`` s after it went.
        """
        dues: list[float] = []
        if self._staged:
            dues.append(self._staged_since)
        if self._pending is not None:
            dues.append(self._pending_since)
        if not dues:
            return None
        return min(dues) + self._linger - time.monotonic()
