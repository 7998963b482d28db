"""IngestConsumer: drains the queue, validates every point, feeds the writer.

It starts draining as soon as it starts: nothing has to trigger it. Work
moves in batches: the consumer fetches up to ``batch_size`` points, validates
them in one pass, and sends the valid ones to the writer as one write. At
most one write is in flight and one validated batch waits behind it, so
validation overlaps writing while the writer commits batches strictly in
order (which is what makes redelivery after a crash exactly-once).

It never blocks: a fetch and a write are requests whose answers come back
as messages (:class:`~statsyard.pipeline._reply.Replied`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pykka

from statsyard.datapoint import Invalid, validate_rows
from statsyard.exceptions import InvalidArgumentError, WriteError
from statsyard.pipeline._reply import Replied, TellReply
from statsyard.pipeline.ingest_observer import IngestObserver
from statsyard.pipeline.ledger import Ledger
from statsyard.pipeline.queue_messages import Ack, Delivery, Fetch, RequeueInFlight
from statsyard.pipeline.writer_messages import WriteAck, WriteBatch
from statsyard.supervision import ChildActor, Link

__all__ = ["IngestConsumer", "IngestFanOut", "IngestObserver"]

logger = logging.getLogger(__name__)

_DELIVERY = "delivery"
_WRITTEN = "written"


class IngestFanOut(IngestObserver):
    """Passes each hook on to several observers, in order."""

    def __init__(self, observers: Sequence[IngestObserver]) -> None:
        self._observers = tuple(observers)

    def validated(self, points: int, invalid: int, seconds: float) -> None:
        """Tell every observer."""
        for observer in self._observers:
            observer.validated(points, invalid, seconds)


def _indices_of(
    invalid: Sequence[Invalid], candidates: Sequence[Any], start: int
) -> tuple[int, ...] | None:
    """The pipeline indices of the rejected candidates, or None if not found.

    Rejections come back in input order holding the candidate itself, so one
    pass matching by identity places them. The writer needs them only to
    trim a batch that overlaps what is already committed; None makes it
    refuse such a batch instead of guessing.
    """
    indices: list[int] = []
    pending = iter(invalid)
    wanted = next(pending).candidate
    for position, candidate in enumerate(candidates):
        if candidate is wanted:
            indices.append(start + position)
            following = next(pending, None)
            if following is None:
                return tuple(indices)
            wanted = following.candidate
    return None


class IngestConsumer(ChildActor):
    """Continuously drains the queue into the writer, validating every point.

    Args:
        queue: the BlockingQueue's ref.
        writer: the TimestampWriter's ref.
        ledger: the accounting shared with the queue and the writer.
        batch_size: most points fetched, validated and written at once.
        observer: per-batch hooks (metrics).
        link: the supervisor's link.
    """

    def __init__(
        self,
        *,
        queue: pykka.ActorRef[Any],
        writer: pykka.ActorRef[Any],
        ledger: Ledger,
        batch_size: int = 5000,
        observer: IngestObserver | None = None,
        link: Link | None = None,
    ) -> None:
        super().__init__(link=link)
        if batch_size < 1:
            raise InvalidArgumentError(
                f"batch_size must be at least 1, got {batch_size}", value=batch_size
            )
        self._queue = queue
        self._writer = writer
        self._ledger = ledger
        self._batch_size = batch_size
        self._observer = observer if observer is not None else IngestObserver()
        self._writing = False
        self._ready: WriteBatch | None = None

    def on_child_start(self) -> None:
        """Reclaim what a dead predecessor left in flight, then start draining."""
        self._tell(self._queue, RequeueInFlight())
        self._fetch()

    def on_receive(self, message: Any) -> Any:
        """Handle deliveries and write acknowledgements; crash on anything else."""
        if isinstance(message, Replied):
            if message.tag == _DELIVERY:
                return self._on_delivery(message)
            if message.tag == _WRITTEN:
                return self._on_written(message)
        return super().on_receive(message)

    def _fetch(self) -> None:
        self._tell(
            self._queue, Fetch(self._batch_size, TellReply(self.actor_ref, _DELIVERY))
        )

    def _tell(self, sibling: pykka.ActorRef[Any], message: Any) -> None:
        """Tell a sibling; if it just died, wait quietly to be restarted.

        The queue and the writer start before the consumer, so rest-for-one
        restarts the consumer whenever either dies: crashing here as well
        would only count a second restart against the intensity limit.
        Whatever this consumer held is still in flight in the queue's
        contents, and its successor gets it back.
        """
        try:
            sibling.tell(message)
        except pykka.ActorDeadError:
            logger.info(
                "%s is gone; the consumer waits for the supervisor to restart it",
                sibling.actor_class.__name__,
            )

    def _on_delivery(self, message: Replied) -> None:
        if message.error is not None:
            raise message.error
        delivery: Delivery = message.value
        # A predecessor may have had part of this committed before it died.
        committed = self._ledger.committed_upto
        if delivery.end <= committed:
            self._tell(self._queue, Ack(delivery.end))
            self._fetch()
            return
        skip = max(0, committed - delivery.start)
        candidates = delivery.points[skip:] if skip else delivery.points
        started = time.perf_counter()
        valid, invalid = validate_rows(candidates)
        self._observer.validated(
            len(candidates), len(invalid), time.perf_counter() - started
        )
        start = delivery.start + skip
        batch = WriteBatch(
            start=start,
            end=delivery.end,
            points=tuple(valid),
            invalid=len(invalid),
            reply=TellReply(self.actor_ref, _WRITTEN),
            invalid_at=_indices_of(invalid, candidates, start) if invalid else (),
        )
        if self._writing:
            self._ready = batch  # fetch no more until the write completes
        else:
            self._send(batch)
            self._fetch()

    def _send(self, batch: WriteBatch) -> None:
        self._writing = True
        self._tell(self._writer, batch)

    def _on_written(self, message: Replied) -> None:
        if message.error is not None:
            # Crash: the supervisor restarts us, the queue redelivers the
            # unacknowledged points, and the write is tried again.
            raise WriteError(f"write failed: {message.error}") from message.error
        ack: WriteAck = message.value
        self._tell(self._queue, Ack(ack.end))
        self._writing = False
        if self._ready is not None:
            batch, self._ready = self._ready, None
            self._send(batch)
            self._fetch()
