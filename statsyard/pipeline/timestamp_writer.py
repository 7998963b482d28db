"""TimestampWriter: the seed's first actor, now the durable end of the pipeline.

``write_timestamp`` is the seed's original job (one ``"<timestamp> <message>"``
line appended to a file), asked rather than told so that failures reach the
caller (the seed's Part 3 move from cast to call). ``write_points`` and the
pipeline's :class:`WriteBatch` append points to the data directory through
:class:`~statsyard.storage.Storage` and acknowledge once they are durable
under the fsync policy:

- ``always``: fsync before every acknowledgement;
- ``interval`` (default): fsync every ``fsync_interval`` seconds and on ``sync()``;
- ``never``: leave it to the operating system (``sync()`` still fsyncs).

The ledger, not the sender, says what is new: only the part of a batch above
the committed index is written. An fsync that fails after a batch is
committed is reported by the next ``sync()`` (the batch is never written
again). A full disk holds the batch and retries it on a timer, so ingest
waits instead of the writer crashing (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import pykka

from statsyard._ticker import Ticker
from statsyard.datapoint import Row, validate_rows
from statsyard.exceptions import InvalidArgumentError, NotRunningError, WriteError
from statsyard.pipeline.ledger import Ledger
from statsyard.pipeline.storage_handle import StorageHandle
from statsyard.pipeline.write_stall import STALL_ERRNOS, WriteStall
from statsyard.pipeline.writer_messages import WriteAck, WriteBatch
from statsyard.storage import Storage
from statsyard.supervision import ChildActor, Link

__all__ = [
    "FsyncPolicy",
    "StorageHandle",
    "TimestampWriter",
    "WriteAck",
    "WriteBatch",
    "WriterObserver",
]

logger = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("always", "interval", "never")


@attrs.frozen(slots=True)
class _SyncTick:
    """Timer tick of the ``interval`` fsync policy."""


@attrs.frozen(slots=True)
class _CheckpointTick:
    """Timer tick: compact the head if it has held points long enough."""


@attrs.frozen(slots=True)
class _CompactionReady:
    """From the compaction thread: the worker's blocks are in, commit them."""


@attrs.frozen(slots=True)
class _RetryWrite:
    """Timer message: try the held batch again (the disk was full)."""


class WriterObserver:
    """Hooks the writer calls per write and fsync; the default does nothing."""

    def wrote(self, points: int, seconds: float) -> None:
        """A batch of ``points`` was appended in ``seconds``."""

    def synced(self, seconds: float) -> None:
        """An fsync took ``seconds``."""

    def write_stalled(self, stalled: bool) -> None:
        """Writes stopped (disk full, I/O error) or, with False, resumed."""

    def write_retried(self) -> None:
        """A held batch was tried again and failed again."""

    def checkpointed(self, points: int, seconds: float) -> None:
        """The head's ``points`` were compacted into a segment after they aged."""


class TimestampWriter(ChildActor):
    """Appends points durably to the data directory and acknowledges writes.

    Args:
        data_dir: the data directory (created if missing).
        ledger: the pipeline's accounting; batches are committed to it.
        fsync: ``always``, ``interval`` or ``never``.
        fsync_interval: seconds between fsyncs under ``interval``.
        checkpoint_after: compact the head once it has held points this many
            seconds, so that an idle or slow writer's data does not stay in
            the log (about 11 bytes a point) until the count is reached;
            None: only by count (``checkpoint_points``) and at a clean stop.
        storage_options: passed to :meth:`Storage.open`.
        observer: per-write hooks (metrics).
        handle: the writer publishes its open storage here, for queries.
        link: the supervisor's link.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str],
        ledger: Ledger | None = None,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
        checkpoint_after: float | None = None,
        storage_options: dict[str, Any] | None = None,
        observer: WriterObserver | None = None,
        handle: StorageHandle | None = None,
        link: Link | None = None,
    ) -> None:
        super().__init__(link=link)
        if fsync not in FSYNC_POLICIES:
            raise InvalidArgumentError(
                f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}", value=fsync
            )
        if fsync_interval <= 0:
            raise InvalidArgumentError(
                f"fsync_interval must be > 0 seconds, got {fsync_interval}",
                value=fsync_interval,
            )
        if checkpoint_after is not None and not checkpoint_after > 0:
            raise InvalidArgumentError(
                f"checkpoint_after must be > 0 seconds or None, got {checkpoint_after}",
                value=checkpoint_after,
            )
        self._checkpoint_after = checkpoint_after
        self._checkpoint_ticker: Ticker | None = None
        self._head_since: float | None = None
        # An aged head being compacted by the worker: its points, when it
        # started, and the count of checkpoints done once it is committed.
        self._aged: tuple[int, float, int] | None = None
        self._data_dir = data_dir
        self._ledger = ledger if ledger is not None else Ledger()
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._storage_options = storage_options or {}
        self._observer = observer if observer is not None else WriterObserver()
        self._handle = handle
        self._storage: Storage | None = None
        self._ticker: Ticker | None = None
        self._dirty = False
        self._sync_failure: WriteError | None = None
        # While the disk refuses writes: the held batch, those behind it.
        self._stall = WriteStall(
            data_dir=data_dir,
            log=logger,
            tell_retry=self._tell_retry,
            on_stalled=self._observer.write_stalled,
            on_retried=self._observer.write_retried,
        )

    # -- lifecycle ----------------------------------------------------------

    def on_child_start(self) -> None:
        """Open (and recover) the data directory; start the fsync timer.

        If anything fails after the directory is open, it is closed again
        (Pykka calls no ``on_failure`` when ``on_start`` raises), so that a
        restart does not find the directory locked by this dead writer.
        """
        try:
            options = dict(self._storage_options)
            if options.get("compaction_worker"):
                # Started by this thread (at the first checkpoint), the worker
                # dies with it; its blocks are committed here when told.
                options["compaction_ready"] = self._tell_compaction_ready
            self._storage = Storage.open(self._data_dir, **options)
            if self._handle is not None:
                self._handle.publish(self._storage)
            if self._fsync == "interval":
                self._ticker = Ticker(
                    self.actor_ref,
                    lambda _due: _SyncTick(),
                    self._fsync_interval,
                    name="statsyard-fsync-ticker",
                )
                self._ticker.start()
            if self._checkpoint_after is not None:
                # A quarter of the age: the head is compacted between 1 and
                # 1.25 times checkpoint_after after its first point came.
                self._checkpoint_ticker = Ticker(
                    self.actor_ref,
                    lambda _due: _CheckpointTick(),
                    self._checkpoint_after / 4,
                    name="statsyard-checkpoint-ticker",
                )
                self._checkpoint_ticker.start()
        except BaseException:
            self._close(compact=False)
            raise

    def on_child_stop(self) -> None:
        """Compact the head, fsync and close: a clean stop leaves the log empty."""
        self._close(compact=True)

    def on_child_failure(self, error: BaseException | None) -> None:
        """Close as on a stop, without compacting: what was written stays written."""
        self._close(compact=False)

    def _close(self, *, compact: bool) -> None:
        self._stall.close()
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if self._checkpoint_ticker is not None:
            self._checkpoint_ticker.stop()
            self._checkpoint_ticker = None
        if self._storage is not None:
            storage, self._storage = self._storage, None
            if self._handle is not None:
                self._handle.publish(None)
            storage.close(compact=compact)

    @property
    def storage(self) -> Storage:
        """The open storage (only inside the actor)."""
        if self._storage is None:
            raise NotRunningError("the writer's storage is not open")
        return self._storage

    # -- proxy API ----------------------------------------------------------

    def write_timestamp(
        self, path: str | os.PathLike[str], timestamp: int, message: str
    ) -> None:
        """Append ``"<timestamp> <message>"`` as a line to ``path``; reply when written.

        Raises:
            InvalidArgumentError: ``message`` is not a one-line str or
                ``timestamp`` not an int.
            OSError: the path is missing, a directory, not writable, ...
        """
        if not isinstance(message, str):
            raise InvalidArgumentError(
                f"message must be a str, got {type(message).__name__} {message!r}",
                value=message,
            )
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise InvalidArgumentError(
                f"timestamp must be an int, got {type(timestamp).__name__} "
                f"{timestamp!r}",
                value=timestamp,
            )
        if "\n" in message or "\r" in message:
            raise InvalidArgumentError(
                f"message must be a single line, got {message!r}", value=message
            )
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{timestamp} {message}\n")
            file.flush()

    def write_points(self, points: Sequence[Any]) -> WriteAck:
        """Validate and append a batch outside the pipeline; reply once durable.

        Raises:
            InvalidArgumentError: some points are invalid (none is written).
            WriteError: the data directory refused the write.
        """
        valid, invalid = validate_rows(points)
        if invalid:
            raise InvalidArgumentError(
                f"{len(invalid)} of {len(points)} points are invalid, "
                f"first: {invalid[0].reason}",
                value=invalid[0].candidate,
            )
        refused_before = self._refused()
        self._append(valid)
        written = len(valid) - (self._refused() - refused_before)
        synced = self._fsync == "always"
        if synced:
            try:
                self._fsync_now()
            except WriteError as exc:
                raise _not_durable(len(valid), exc) from exc
        return WriteAck(end=0, written=written, synced=synced)

    def sync(self) -> None:
        """Fsync everything written so far, whatever the policy.

        Raises:
            WriteError: this fsync failed, or an earlier one did since the
                last ``sync()`` (an fsync after a pipeline write, or a timer's
                under ``interval``). The points concerned are in the log and
                committed, and are never written again, but are not known to
                have reached the disk: a later successful fsync does not prove
                that they did (the kernel may have dropped the failed pages).
                Each failure is reported once.
        """
        failure, self._sync_failure = self._sync_failure, None
        self._fsync_now()
        if failure is not None:
            raise failure

    def _fsync_now(self) -> None:
        started = time.perf_counter()
        self.storage.sync()
        self._dirty = False
        self._observer.synced(time.perf_counter() - started)

    def _fsync_failed(self, points: int, error: WriteError) -> None:
        """Remember a failed fsync of committed points for the next ``sync()``."""
        if self._sync_failure is not None:
            logger.debug("fsync failed again: %s", error)  # already logged, pending
            return
        logger.error(
            "fsync failed; %d committed points not known durable: %s", points, error
        )
        self._sync_failure = _not_durable(points, error)

    # -- messages -----------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Handle pipeline writes and fsync ticks; crash on anything else."""
        if isinstance(message, WriteBatch):
            if self._stall.holding:
                self._stall.wait_behind(message)  # in order, after the held one
                return None
            return self._on_write_batch(message)
        if isinstance(message, _RetryWrite):
            return self._on_retry()
        if isinstance(message, _CompactionReady):
            return self._on_compaction_ready()
        if isinstance(message, _CheckpointTick):
            return self._on_checkpoint_tick()
        if isinstance(message, _SyncTick):
            if self._dirty:
                try:
                    self._fsync_now()
                except WriteError as exc:
                    self._fsync_failed(0, exc)  # retried at the next tick
            return None
        return super().on_receive(message)

    def _on_checkpoint_tick(self) -> None:
        """Compact the head once its first point has waited ``checkpoint_after``.

        With a compaction worker the blocks are encoded there; they are
        committed when :class:`_CompactionReady` comes (or by an append).
        """
        since = self._head_since
        storage = self.storage
        if (
            since is None
            or self._checkpoint_after is None
            or self._stall.holding  # the disk refuses writes: wait
            or time.monotonic() - since < self._checkpoint_after
        ):
            return
        if storage.compacting:  # write blocks that failed to be written before
            try:
                storage.finish_checkpoint()
            except WriteError as exc:
                logger.error("Checkpoint failed, will retry: %s", exc)
            if storage.compacting:
                return  # the next tick, once this one is committed
        points = storage.head_points
        if points == 0:  # compacted by count meanwhile
            self._head_since = None
            return
        started = time.perf_counter()
        target = storage.checkpoints_done + 1
        try:
            storage.start_checkpoint()
        except WriteError as exc:
            # Nothing is lost (the log stays); try again a whole period later.
            logger.error("Checkpoint of an aged head failed, will retry: %s", exc)
            self._head_since = time.monotonic()
            return
        self._head_since = None
        self._aged = (points, started, target)
        self._report_aged()

    def _tell_compaction_ready(self) -> None:
        """Compaction thread: wake the writer to commit the worker's blocks."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_CompactionReady())

    def _on_compaction_ready(self) -> None:
        if self._storage is None:
            return
        try:
            self._storage.finish_checkpoint()
        except WriteError as exc:
            # The blocks are kept; the next append or tick writes them again.
            logger.error("Checkpoint failed, will retry: %s", exc)
        self._report_aged()

    def _report_aged(self) -> None:
        """Tell the observer once the aged head's checkpoint is committed."""
        aged = self._aged
        if aged is None or self.storage.checkpoints_done < aged[2]:
            return
        self._aged = None
        points, started, _target = aged
        self._observer.checkpointed(points, time.perf_counter() - started)

    def _refused(self) -> int:
        """Points the storage refused so far (series limits), all reasons."""
        return sum(self.storage.refused_points.values())

    def _append(self, points: Sequence[Row]) -> None:
        if not points:
            return
        started = time.perf_counter()
        self.storage.append(points)
        self._dirty = True
        if self._head_since is None:
            self._head_since = time.monotonic()
        self._observer.wrote(len(points), time.perf_counter() - started)

    def _above_committed(self, batch: WriteBatch) -> WriteBatch | None:
        """The part of ``batch`` not committed yet (the ledger decides); None
        when all of it is.

        Raises:
            ValueError: the batch cannot be cut exactly (see WriteBatch.above).
        """
        trimmed = batch.above(self._ledger.committed_upto)
        if trimmed is not None and trimmed is not batch:
            logger.info(
                "Trimmed batch [%d, %d) to [%d, %d): the rest is already committed",
                batch.start,
                batch.end,
                trimmed.start,
                batch.end,
            )
        return trimmed

    def _on_write_batch(self, batch: WriteBatch) -> None:
        try:
            trimmed = self._above_committed(batch)
        except ValueError as exc:
            logger.error("Refused a write: %s", exc)
            self._reply_error(batch, exc)
            return
        if trimmed is None:
            self._reply(batch, WriteAck(batch.end, 0, synced=False, duplicate=True))
            return
        batch = trimmed
        refused_before = self._refused()
        try:
            self._append(batch.points)
        except WriteError as exc:
            if exc.errno not in STALL_ERRNOS:
                logger.error("Write of %d points failed: %s", len(batch.points), exc)
                self._reply_error(batch, exc)
                return
            # The log is as it was before the call: hold the batch and try
            # again later. The consumer waits for this reply and fetches no
            # more, so the queue fills and pushers wait: back-pressure.
            self._stall.hold(batch, exc)
            return
        except Exception as exc:  # noqa: BLE001 (deliberate: the asker crashes, retries)
            logger.error("Write of %d points failed: %s", len(batch.points), exc)
            self._reply_error(batch, exc)
            return
        # Written to the file: commit before anything else can fail, so a
        # redelivery never writes these points twice.
        # Points of new series over a series limit were refused: invalid.
        refused = self._refused() - refused_before
        written = len(batch.points) - refused
        self._ledger.commit(batch.end, written=written, invalid=batch.invalid + refused)
        # From here on the batch is committed: whatever fails must not make
        # anyone write it again, so the consumer is always acknowledged.
        synced = False
        if self._fsync == "always" and batch.points:
            try:
                self._fsync_now()
                synced = True
            except WriteError as exc:
                self._fsync_failed(len(batch.points), exc)
        self._reply(batch, WriteAck(batch.end, written, synced=synced))

    # -- a full disk --------------------------------------------------------

    def _tell_retry(self) -> None:
        """Timer thread: wake the writer to try its held batch again."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_RetryWrite())

    def _on_retry(self) -> None:
        batch = self._stall.take_held()
        if batch is None:
            return
        self._on_write_batch(batch)
        if self._stall.holding:
            return  # still refused: the next try is scheduled
        self._stall.resumed()
        while (behind := self._stall.next_behind()) is not None:
            self._on_write_batch(behind)

    @staticmethod
    def _reply(batch: WriteBatch, ack: WriteAck) -> None:
        try:
            batch.reply.set(ack)
        except pykka.ActorDeadError:
            pass  # the consumer died; its successor reads the ledger

    @staticmethod
    def _reply_error(batch: WriteBatch, error: Exception) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            batch.reply.set_exception((type(error), error, None))


def _not_durable(points: int, error: WriteError) -> WriteError:
    """The error for points in the log whose fsync failed."""
    what = f"{points} points were" if points else "points were"
    return WriteError(
        error.errno,
        f"{what} written to the log and committed (they will not be written "
        f"again) but are not known to be durable: {error.strerror or error}",
    )
