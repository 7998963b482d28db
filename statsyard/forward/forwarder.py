"""Forwarder: a supervised child shipping acknowledged points to one destination.

The actor is the supervised shell; the work happens in its own delivery
thread, so that the actor's mailbox stays free (it stops promptly even while
a destination hangs: every network call has a timeout, and a stop aborts
the connection). The delivery thread, in a loop:

1. reads the next chunk after its cursor from the write-ahead log
   (:class:`~statsyard.forward.log_reader.LogReader`), never past the
   writer's published :class:`~statsyard.storage.LogEnd`;
2. sends it (:class:`~statsyard.forward.prometheus_sender.PrometheusSender`
   or :class:`~statsyard.forward.graphite_sender.GraphiteSender`), retrying
   connection errors, timeouts, 429 and 5xx for ever with capped exponential
   backoff and jitter; a batch refused for good (other 4xx) is dropped,
   counted and logged (rate-limited);
3. saves the cursor past the chunk (renamed into place after every batch,
   fsynced at ``cursor_sync_interval``), so a crash, a restart or a kill -9
   resends at most the batch that was in flight.

Ingest comes first: while ``ingest_busy()`` says the pipeline is saturated
(the queue at least half full), the thread pauses after each batch for
``INGEST_FIRST_FACTOR`` times as long as the batch took, so forwarding takes at
most a tenth of the interpreter from ingest; the backlog waits in the log and
drains as soon as ingest eases.

An unexpected error in the thread is told to the actor, which crashes with it:
the supervisor restarts the forwarder, which resumes from its saved cursor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import attrs
import pykka

from statsyard._ratelimit import RateLimitedLogger
from statsyard.exceptions import NotRunningError, RejectedBatchError, RetryableSendError
from statsyard.forward.backoff import Backoff
from statsyard.forward.cursor import Cursor, CursorFile, cursor_path
from statsyard.forward.instruments import ForwardInstruments
from statsyard.forward.log_reader import Chunk, LogReader, Piece, oldest_log
from statsyard.forward.progress import ForwardProgress
from statsyard.forward.settings import ForwardSettings
from statsyard.pipeline.storage_handle import StorageHandle
from statsyard.storage import FILE_HEADER_SIZE, LogEnd
from statsyard.supervision import ChildActor, Link

__all__ = ["Forwarder", "Sender", "make_sender"]

logger = logging.getLogger(__name__)

POLL_INTERVAL: Final = 0.05
"""Seconds the delivery thread waits when there is nothing new to send."""
GAUGE_INTERVAL: Final = 0.5
"""Seconds between updates of the pending and lag gauges."""
INGEST_FIRST_FACTOR: Final = 9.0
"""While ingest is saturated: pause this many times a batch's duration after it."""
MAX_PAUSE: Final = 0.2
"""Longest such pause, in seconds."""
LOG_INTERVAL: Final = 10.0
"""A repeated delivery problem is logged at most once per this many seconds."""


class Sender(Protocol):
    """Delivers batches to one destination (the delivery thread's)."""

    where: str

    def cost(self, metric: str, entity: str) -> tuple[int, int]:
        """Request bytes of a point and of a series (:data:`SeriesCost`)."""
        ...  # pragma: no cover (protocol)

    def send(self, pieces: tuple[Piece, ...]) -> None:
        """Deliver, or raise RetryableSendError / RejectedBatchError."""

    def close(self) -> None:
        """Abort what is in progress; may be called from another thread."""


def make_sender(settings: ForwardSettings) -> Sender:
    """The sender for the settings' kind."""
    if settings.kind == "prometheus":
        from statsyard.forward.prometheus_sender import PrometheusSender

        return PrometheusSender(settings)
    from statsyard.forward.graphite_sender import GraphiteSender

    return GraphiteSender(settings)


@attrs.frozen(slots=True)
class _DeliveryFailed:
    """The delivery thread failed: the actor crashes with ``error``."""

    error: Exception


class _Delivery(threading.Thread):
    """The forwarder's delivery thread: read, send, save the cursor; repeat."""

    def __init__(
        self,
        *,
        settings: ForwardSettings,
        data_dir: Path,
        storage: StorageHandle,
        progress: ForwardProgress,
        instruments: ForwardInstruments,
        sender: Sender,
        actor: pykka.ActorRef[Any],
        poll_interval: float,
        ingest_busy: Callable[[], bool],
    ) -> None:
        super().__init__(name=f"statsyard-forward-{settings.name}", daemon=True)
        self._ingest_busy = ingest_busy
        self._settings = settings
        self._dir = data_dir
        self._storage = storage
        self._progress = progress
        self._instruments = instruments
        self._sender = sender
        self._actor = actor
        self._poll = poll_interval
        self._stopping = threading.Event()
        self._reader = LogReader(data_dir, cost=sender.cost)
        self._file = CursorFile(
            cursor_path(data_dir, settings.name),
            sync_interval=settings.cursor_sync_interval,
        )
        self._backoff = Backoff(settings.min_backoff, settings.max_backoff)
        self._log = RateLimitedLogger(logger, interval=LOG_INTERVAL)
        self._last_sent_ts: int | None = None
        self._bytes_per_point = 10.0
        self._gauges_due = 0.0

    # -- control (the actor's thread) ----------------------------------------

    def stop(self, timeout: float) -> None:
        """Stop delivering, abort a send in progress, wait up to ``timeout`` s."""
        self._stopping.set()
        self._sender.close()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout)
            if self.is_alive():
                logger.error(
                    "Forwarder %s: delivery thread still busy after %.1fs; left "
                    "behind (it saves no cursor once stopped)",
                    self._settings.name,
                    timeout,
                )

    # -- the loop (this thread) -----------------------------------------------

    def run(self) -> None:
        """Deliver until stopped; report an unexpected error to the actor."""
        try:
            self._deliver_all()
        except Exception as error:  # deliberate: the actor crashes with it
            if not self._stopping.is_set():
                logger.error(
                    "Forwarder %s failed: %r", self._settings.name, error, exc_info=True
                )
                with contextlib.suppress(pykka.ActorDeadError):
                    self._actor.tell(_DeliveryFailed(error))
        finally:
            self._reader.close()

    def _log_end(self) -> LogEnd | None:
        try:
            return self._storage.get(timeout=0).log_end
        except NotRunningError:
            return None  # the writer is (re)starting

    def _opened_end(self) -> LogEnd | None:
        try:
            return self._storage.get(timeout=0).opened_log_end
        except NotRunningError:
            return None

    def _wait_log_end(self) -> LogEnd | None:
        while not self._stopping.is_set():
            end = self._log_end()
            if end is not None and end.seq > 0:
                return end
            self._stopping.wait(self._poll)
        return None

    def _first_cursor(self, end: LogEnd) -> Cursor:
        saved = self._file.load()
        name = self._settings.name
        if saved is not None:
            logger.info(
                "Forwarder %s resumes at log %d offset %d",
                name,
                saved.seq,
                saved.offset,
            )
            self._progress.saved(saved)
            return saved
        if self._settings.start == "beginning" or self._file.damaged:
            first = oldest_log(self._dir)
            cursor = Cursor(first if first is not None else end.seq, FILE_HEADER_SIZE)
            where = "the oldest log kept" + (
                " (its cursor file is unusable)" if self._file.damaged else ""
            )
        else:
            opened = self._opened_end() or end
            cursor = Cursor(opened.seq, opened.size)
            where = "now (start = 'now': where the log ended when it was opened)"
        logger.info("Forwarder %s starts from %s", name, where)
        self._save(cursor, sync=True)
        return cursor

    def _deliver_all(self) -> None:
        end = self._wait_log_end()
        if end is None:
            return
        cursor = self._first_cursor(end)
        self._progress.delivered(cursor)
        settings = self._settings
        while not self._stopping.is_set():
            end = self._log_end()
            if end is None:
                self._stopping.wait(self._poll)
                continue
            if cursor.seq > end.seq:
                logger.warning(
                    "Forwarder %s: cursor (log %d) is past the newest log (%d); "
                    "going on from the end of the log",
                    settings.name,
                    cursor.seq,
                    end.seq,
                )
                cursor = Cursor(end.seq, end.size)
                self._save(cursor, sync=True)
            began = time.monotonic()
            chunk, moved = self._reader.read(
                cursor,
                end,
                max_samples=settings.max_samples,
                max_bytes=settings.max_bytes,
            )
            if chunk is None:
                if moved != cursor:
                    cursor = moved
                    self._save(cursor)
                    self._progress.delivered(cursor)
                elif self._file.unsynced:
                    self._save(cursor, sync=True)
                self._update_gauges(cursor, end, caught_up=True)
                self._stopping.wait(self._poll)
                continue
            if not self._deliver(chunk):
                return
            self._yield_to_ingest(began)
            self._learn_density(cursor, chunk)
            cursor = chunk.end
            self._last_sent_ts = chunk.last_timestamp
            if not self._stopping.is_set():
                self._save(cursor)
            self._progress.delivered(cursor)
            self._update_gauges(cursor, end, caught_up=False)

    def _yield_to_ingest(self, began: float) -> None:
        """Pause while ingest is saturated, so that it keeps the interpreter."""
        if self._ingest_busy():
            took = time.monotonic() - began
            self._stopping.wait(min(MAX_PAUSE, took * INGEST_FIRST_FACTOR))

    def _save(self, cursor: Cursor, *, sync: bool = False) -> None:
        """Save the cursor; a failure (disk full) is logged and retried next time.

        The cursor on disk then stays older: a restart would resend more, never
        skip anything.
        """
        try:
            self._file.save(cursor, sync=sync)
        except OSError as error:
            self._log.warning(
                "cursor",
                "Forwarder %s: cannot save its cursor to %s: %s (a restart would "
                "resend from the last one saved)",
                self._settings.name,
                self._file.path,
                error,
            )
            return
        self._progress.saved(cursor)

    def _deliver(self, chunk: Chunk) -> bool:
        """Send until delivered or refused for good; False if stopped first."""
        settings, instruments = self._settings, self._instruments
        self._backoff.reset()
        while not self._stopping.is_set():
            try:
                with instruments.send_us:
                    self._sender.send(chunk.pieces)
            except RetryableSendError as error:
                instruments.failed(error.reason)
                self._progress.failing(True)
                if self._stopping.is_set():
                    return False
                instruments.retries.inc()
                delay = self._backoff.next_delay()
                self._log.warning(
                    error.reason,
                    "Forwarder %s: cannot deliver to %s (%s): %s; retrying in %.2fs "
                    "(attempt %d; counted in forward.batches_failed)",
                    settings.name,
                    self._sender.where,
                    error.reason,
                    error,
                    delay,
                    self._backoff.attempts,
                )
                self._stopping.wait(delay)
                continue
            except RejectedBatchError as error:
                instruments.failed(error.reason)
                instruments.dropped(error.reason, chunk.samples)
                self._log.warning(
                    "rejected " + error.reason,
                    "Forwarder %s: %s refused a batch of %d samples for good (%s), "
                    "dropped it (counted in forward.dropped): %s",
                    settings.name,
                    self._sender.where,
                    chunk.samples,
                    error.reason,
                    error,
                )
                return True
            instruments.samples_sent.inc(chunk.samples)
            instruments.batches_sent.inc()
            self._progress.failing(False)
            if self._backoff.attempts:
                logger.info(
                    "Forwarder %s: delivering to %s again after %d failed attempts",
                    settings.name,
                    self._sender.where,
                    self._backoff.attempts,
                )
            return True
        return False

    def _learn_density(self, start: Cursor, chunk: Chunk) -> None:
        """Bytes of log per point, from a chunk of whole records in one log."""
        end = chunk.end
        if start.seq == end.seq and start.skip == 0 and end.skip == 0:
            self._bytes_per_point = max(
                1.0, (end.offset - start.offset) / chunk.samples
            )

    def _update_gauges(self, cursor: Cursor, end: LogEnd, *, caught_up: bool) -> None:
        now = time.monotonic()
        if now < self._gauges_due and not caught_up:
            return
        self._gauges_due = now + GAUGE_INTERVAL
        instruments = self._instruments
        pending = self._reader.pending_bytes(cursor, end)
        instruments.pending_bytes.set(pending)
        instruments.pending_points.set(round(pending / self._bytes_per_point))
        if pending == 0:
            instruments.lag_seconds.set(0.0)
        elif end.last_timestamp is not None and self._last_sent_ts is not None:
            lag = (end.last_timestamp - self._last_sent_ts) / 1000
            instruments.lag_seconds.set(max(0.0, lag))


class Forwarder(ChildActor):
    """Ships what the writer acknowledged to one destination, in order, at least once.

    Args:
        settings: the destination and how to deliver.
        data_dir: the data directory (logs and cursor).
        storage: where the writer publishes its open storage (its log end).
        progress: the forwarder's progress (host-owned: outlives restarts).
        instruments: its metrics.
        sender: a sender to use instead of the one the settings make (tests).
        poll_interval: seconds between looks at the log when idle.
        ingest_busy: True while ingest is saturated (forwarding then yields).
        link: the supervisor's link.
    """

    def __init__(
        self,
        *,
        settings: ForwardSettings,
        data_dir: str | os.PathLike[str],
        storage: StorageHandle,
        progress: ForwardProgress,
        instruments: ForwardInstruments,
        sender: Sender | None = None,
        poll_interval: float = POLL_INTERVAL,
        ingest_busy: Callable[[], bool] = lambda: False,
        link: Link | None = None,
    ) -> None:
        super().__init__(link=link)
        self._settings = settings
        self._dir = Path(data_dir)
        self._storage = storage
        self._progress = progress
        self._instruments = instruments
        self._sender = sender
        self._poll = poll_interval
        self._ingest_busy = ingest_busy
        self._delivery: _Delivery | None = None

    def on_child_start(self) -> None:
        """Make the sender and start the delivery thread."""
        sender = (
            self._sender if self._sender is not None else make_sender(self._settings)
        )
        self._delivery = _Delivery(
            settings=self._settings,
            data_dir=self._dir,
            storage=self._storage,
            progress=self._progress,
            instruments=self._instruments,
            sender=sender,
            actor=self.actor_ref,
            poll_interval=self._poll,
            ingest_busy=self._ingest_busy,
        )
        self._delivery.start()
        logger.info(
            "Forwarder %s: shipping to %s (%s)",
            self._settings.name,
            sender.where,
            self._settings.kind,
        )

    def on_child_stop(self) -> None:
        """Stop the delivery thread (a send in progress is aborted)."""
        self._close()

    def on_child_failure(self, error: BaseException | None) -> None:
        """Stop the delivery thread, as on a stop."""
        self._close()

    def _close(self) -> None:
        if self._delivery is not None:
            delivery, self._delivery = self._delivery, None
            delivery.stop(timeout=self._settings.timeout + 2.0)

    def on_receive(self, message: Any) -> Any:
        """Crash with the delivery thread's error; anything unknown crashes too."""
        if isinstance(message, _DeliveryFailed):
            raise message.error
        return super().on_receive(message)

    @property
    def cursor(self) -> Cursor | None:
        """Where delivery stands."""
        return self._progress.cursor
