"""The writer's side of a storage: append, rotate, checkpoint, retention, sync.

Driven by one thread (the ``TimestampWriter`` actor's). It owns the log and
segment files and the series limits; it changes the catalog that queries
read, under the catalog's lock where they iterate.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Callable, Sequence
from itertools import compress
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from statsyard.datapoint import now_ms
from statsyard.exceptions import CorruptRecordError, WriteError
from statsyard.storage._admission import REASONS, SeriesLimits
from statsyard.storage._batch import (
    KIND_BATCH,
    KIND_BATCH_ZSTD,
    compress_batch,
    encode_batch,
    out_of_range,
    value_column,
)
from statsyard.storage._catalog import Catalog
from statsyard.storage._checkpoint import SegmentWriter
from statsyard.storage._compaction import Compactor, Encoded, encode_head
from statsyard.storage._files import segment_name
from statsyard.storage._framing import MAX_RECORD_PAYLOAD, pack_record
from statsyard.storage._log import LogWriter
from statsyard.storage._log_watch import LogEnd, LogRetention
from statsyard.storage._merge import (
    DEFAULT_BLOCK_POINTS,
    MAX_PACE_S,
    PACE_SHARE,
    MergeCancelledError,
    MergeJob,
    MergePlan,
    commit_merge,
    plan_merge,
    remove_sources,
    remove_temporary,
)
from statsyard.storage._merge import (
    HANDLER as MERGE_HANDLER,
)
from statsyard.storage._recovery import Loader
from statsyard.storage._retention import (
    remove_covered_logs,
    remove_segment,
    segments_to_remove,
)

if TYPE_CHECKING:
    from statsyard._child_process import WorkerProcess
    from statsyard.datapoint import DataPoint, Row
    from statsyard.storage._head import Head
    from statsyard.storage._pacing import Pacer

logger = logging.getLogger("statsyard.storage")

_ROW_COLUMNS = tuple(map(itemgetter, range(4)))
_POINT_COLUMNS = tuple(map(attrgetter, ("metric", "entity", "value", "timestamp")))

MAX_MERGE_FAILURES: Final = 3
"""After this many failures of the merge worker, merges run in a thread."""
CLOSE_MERGE_SECONDS: Final = 1.0
"""A clean stop merges what is left of small blocks for at most this long
(checked between series), so that a stop stays quick."""
CLOSE_MERGE_POINTS: Final = 500_000
"""...and only merges of at most this many points (a long series merges
in one piece, past the time budget's checks)."""

MAX_LAG: Final = 1.0
"""While the worker compacts, the new head may reach this many times
``checkpoint_points``; then appends wait for the worker (memory stays bounded:
a worker slower than ingest slows ingest down to its pace)."""


class _Frozen:
    """A checkpoint under way: the frozen head, its last log, its blocks once in."""

    __slots__ = ("covered", "encoded", "head")

    def __init__(self, head: Head, covered: int) -> None:
        self.head = head
        self.covered = covered
        self.encoded: Encoded | None = None


class Writer:
    """Appends to a recovered data directory and keeps it compacted and trimmed.

    Args:
        directory: the data directory (locked by the caller).
        catalog: the storage's catalog (filled by :meth:`recover`).
        segment_bytes: size at which logs and segments rotate.
        retention_max_age_ms: remove segments older than this (None: never).
        retention_max_bytes: remove the oldest segments beyond this (None: never).
        checkpoint_points: checkpoint at this many head points (None: on call).
        log_retention: asked which covered logs to keep (None: delete them).
        limits: series limits (None: none).
        compaction_worker: encode the blocks of checkpoints due by count
            (and of :meth:`start_checkpoint`) in a worker process while
            appends go on; False: in the writer's thread.
        compaction_ready: called from another thread when the worker's
            blocks (or a merge) are in, to have :meth:`finish_checkpoint`
            called soon; without it they are committed at the next append.
        merge_after_ms: seal the segment being written once its points span
            this many ms, and merge sealed segments of small blocks (None:
            only on :meth:`merge`).
        merge_block_points: most points a merged block holds.
        pace: tells whether ingest is active (a merge in a thread then
            steps aside).
    """

    def __init__(
        self,
        directory: Path,
        catalog: Catalog,
        *,
        segment_bytes: int,
        retention_max_age_ms: int | None,
        retention_max_bytes: int | None,
        checkpoint_points: int | None,
        log_retention: LogRetention | None,
        limits: SeriesLimits | None,
        compaction_worker: bool = False,
        compaction_ready: Callable[[], None] | None = None,
        merge_after_ms: int | None = None,
        merge_block_points: int = DEFAULT_BLOCK_POINTS,
        pace: Pacer | None = None,
    ) -> None:
        self._dir = directory
        self._catalog = catalog
        self._segment_bytes = segment_bytes
        self._retention_max_age_ms = retention_max_age_ms
        self._retention_max_bytes = retention_max_bytes
        self._checkpoint_points = checkpoint_points
        self._next_checkpoint = checkpoint_points
        self._log_retention = log_retention
        self._limits = limits
        self._log = LogWriter(directory, catalog.wal_seqs, 0)
        self._segments = SegmentWriter(directory, segment_bytes)
        self._kept_logs: list[int] = []
        self._compactor = Compactor(compaction_ready) if compaction_worker else None
        self._frozen: _Frozen | None = None
        self._notify = compaction_ready
        self._merge_after_ms = merge_after_ms
        self._merge_block_points = merge_block_points
        self._merge_in_worker = compaction_worker
        self._merge_worker: WorkerProcess | None = None
        self._merge_job: MergeJob | None = None
        self._merge_excluded: set[int] = set()
        self._pacer = pace
        self.merge_failures = 0
        """Merges the worker failed (then run in a thread)."""
        self.merges_done = 0
        """Merges committed since open."""
        self.closing = False
        """Set by a closing storage: start no merge (it would be called off)."""
        self.checkpoints_done = 0
        """Checkpoints committed since open."""
        self.opened_log_end = self._log.end
        """Where the log ended right after recovery."""
        self.points_written = 0
        self.bytes_written = 0

    def recover(self) -> int:
        """Load and repair the directory, then open its files for appending.

        Returns:
            File bytes read.
        """
        catalog = self._catalog
        loader = Loader(
            self._dir, catalog, repair=True, log_retention=self._log_retention
        )
        loader.load()
        self._kept_logs = loader.kept_logs
        self._log = LogWriter(self._dir, catalog.wal_seqs, catalog.wal_seq)
        if loader.directory_changed:
            self._log.note_directory_changed()
        self._log.start()
        self._segments.start(catalog)
        # Only the newest segment takes checkpoints: the others are sealed.
        for seq in sorted(catalog.segments)[:-1]:
            catalog.segments[seq].sealed = True
        self.opened_log_end = self._log.end
        self.apply_retention()
        return loader.bytes_read

    @property
    def log_end(self) -> LogEnd:
        """The published end of the acknowledged log."""
        return self._log.end

    @property
    def refused(self) -> dict[str, int]:
        """Points refused by a series limit, by reason."""
        if self._limits is None:
            return dict.fromkeys(REASONS, 0)
        return dict(self._limits.refused)

    # -- appending ----------------------------------------------------------------

    def append(self, points: Sequence[DataPoint] | Sequence[Row]) -> int:
        """See :meth:`Storage.append`."""
        # Whole columns at C speed, creating no container per point (that
        # would set off the garbage collector): no per-point Python code.
        first = points[0]
        if type(first) is tuple:
            if len(first) != 4:
                raise ValueError(
                    f"rows must be (metric, entity, value, timestamp), got {first!r}"
                )
            getters: tuple[Callable[[Any], Any], ...] = _ROW_COLUMNS
        else:
            getters = _POINT_COLUMNS
        try:
            metrics, entities, values, timestamps = [
                list(map(getter, points)) for getter in getters
            ]
        except IndexError:
            raise ValueError(
                "rows must be (metric, entity, value, timestamp), got a shorter one"
            ) from None
        catalog = self._catalog
        stamps = array("q", timestamps)
        column = value_column(values)
        problem = out_of_range(stamps, column)
        if problem is not None:  # it could not be read back
            raise ValueError(f"cannot store a {problem}")
        found = catalog.series_numbers(metrics, entities, self._limits)
        if self._limits is not None and -1 in found:  # new series over a limit
            keep = [number != -1 for number in found]
            found = list(compress(found, keep))
            stamps = array("q", compress(stamps, keep))
            column = value_column(list(compress(values, keep)))
            if not found:
                return 0
        numbers = array("I", found)
        payload = encode_batch(
            numbers, stamps, column, catalog.entries, catalog.table_cache
        )
        if len(payload) > MAX_RECORD_PAYLOAD:
            raise ValueError(
                f"a batch takes at most {MAX_RECORD_PAYLOAD} bytes in the log, "
                f"this one {len(payload)}: split it"
            )
        # Compressed in a third of the bytes (the lock released meanwhile);
        # as it is in the rare batch that would not shrink.
        packed = compress_batch(payload)
        if len(packed) < len(payload):
            record = pack_record(KIND_BATCH_ZSTD, packed)
        else:
            record = pack_record(KIND_BATCH, payload)
        self._log.append(record, stamps[-1])
        # In the log: now in the head too. No lock: the head only ever grows
        # by whole batches, which a query either sees or does not.
        catalog.head.add(numbers, stamps, column)
        self.points_written += len(numbers)
        self.bytes_written += len(record)
        self._maintain()
        return len(record)

    def _maintain(self) -> None:
        """After an append: commit, start a checkpoint or rotate the log; never raises.

        The batch is already in the log, so a failure here must not reach the
        caller (who would retry and duplicate it): it is logged and retried
        later.
        """
        due = self._next_checkpoint
        head = self._catalog.head  # its points go on counting after a commit
        self._poll_merge()
        try:
            frozen = self._frozen
            # The worker's blocks, as soon as they are in; blocks that failed
            # to be written, once the head has grown by a tenth again.
            if frozen is not None and (
                frozen.encoded is None or (due is not None and head.points >= due)
            ):
                self._finish(wait=False)
            if due is not None and head.points >= due:
                frozen = self._frozen
                if frozen is None:
                    self._begin(background=True)
                elif frozen.encoded is None and head.points >= due * MAX_LAG:
                    logger.debug("Appends wait for the compaction worker")
                    self._finish(wait=True)
            elif self._log.size >= self._segment_bytes:
                self._log.rotate()
        except Exception as exc:  # deliberate: the batch is in the log already
            if due is not None:
                live = self._catalog.head.points
                self._next_checkpoint = live + due // 10 + 1
            logger.error(
                "Checkpoint of %s failed, will retry: %s",
                self._dir,
                exc,
                exc_info=not isinstance(exc, OSError),
            )

    def sync(self) -> None:
        """fsync the log (and the directory when needed).

        Raises:
            WriteError: fsync failed.
        """
        self._log.sync()

    # -- checkpoints and retention ------------------------------------------------

    def checkpoint(self) -> None:
        """See :meth:`Storage.checkpoint`."""
        self._guard(self._checkpoint)

    def start_checkpoint(self) -> None:
        """See :meth:`Storage.start_checkpoint`."""
        self._guard(self._start_checkpoint)

    def finish_checkpoint(self) -> int:
        """See :meth:`Storage.finish_checkpoint`."""
        before = self.checkpoints_done
        if self._frozen is not None:
            self._guard(lambda: self._finish(wait=False))
        self._poll_merge()
        return self.checkpoints_done - before

    @property
    def compacting(self) -> bool:
        """Whether a checkpoint is under way (its head frozen, not committed)."""
        return self._frozen is not None

    @property
    def compactor(self) -> Compactor | None:
        """The worker's keeper, with a worker."""
        return self._compactor

    def guard(self, action: Callable[[], object]) -> None:
        """Run ``action``, reporting an OS error as :class:`WriteError`."""
        self._guard(action)

    def _guard(self, action: Callable[[], object]) -> None:
        try:
            action()
        except WriteError:
            raise
        except OSError as exc:
            raise WriteError(
                exc.errno, f"checkpoint of {self._dir} failed: {exc}"
            ) from exc

    def _checkpoint(self) -> None:
        """Commit the checkpoint under way, then compact the rest, waiting.

        A worker already running encodes the blocks (the caller waits either
        way; the writer's memory stays lower); none is started for this.
        """
        if self._frozen is not None:
            self._finish(wait=True)
        compactor = self._compactor
        self._begin(
            background=compactor is not None and compactor.worker_pid is not None
        )
        self._finish(wait=True)

    def _start_checkpoint(self) -> None:
        if self._frozen is None:
            self._begin(background=True)

    def _begin(self, *, background: bool) -> None:
        """Freeze the head (after its last log) and have it encoded.

        In the background (with a worker that takes it) this returns at
        once; otherwise the blocks are encoded and committed here.
        """
        catalog = self._catalog
        if catalog.head.points == 0:
            return
        self._log.rotate()
        covered = self._log.seq - 1
        frozen = self._frozen = _Frozen(catalog.freeze_head(), covered)
        self._next_checkpoint = self._checkpoint_points
        compactor = self._compactor
        if (
            background
            and compactor is not None
            and compactor.start(frozen.head, catalog.keys)
        ):
            return
        frozen.encoded = encode_head(frozen.head, catalog.keys)
        self._commit()

    def _finish(self, *, wait: bool) -> None:
        """Commit the checkpoint under way once its blocks are in.

        Args:
            wait: wait for the worker; else return if it is not done yet.
        """
        frozen = self._frozen
        if frozen is None:
            return
        if frozen.encoded is None:
            compactor = self._compactor
            if compactor is not None and compactor.busy:
                if not wait and not compactor.ready:
                    return
                frozen.encoded = compactor.result(len(self._catalog.keys))
            if frozen.encoded is None:  # the worker failed: the log still has all
                frozen.encoded = encode_head(frozen.head, self._catalog.keys)
        self._commit()

    def _commit(self) -> None:
        """Write the frozen head's blocks and show them instead of it.

        On failure the frozen head stays (and its blocks): the next call tries
        to write them again.
        """
        frozen = self._frozen
        assert frozen is not None and frozen.encoded is not None
        catalog = self._catalog
        covered = frozen.covered
        written = self._segments.write(
            catalog, covered, frozen.encoded.data, frozen.encoded.entries(catalog.keys)
        )
        # Durable: show the blocks instead of the frozen head.
        catalog.commit_blocks(written.segment, written.entries)
        self._frozen = None
        self.checkpoints_done += 1
        segment = written.segment
        segment.dat_size += written.data_size
        segment.idx_size += written.record_size
        segment.covered = max(segment.covered, covered)
        catalog.covered = covered
        done = [s for s in catalog.wal_seqs if s <= covered]
        catalog.wal_seqs[:] = [s for s in catalog.wal_seqs if s > covered]
        candidates = sorted({*self._kept_logs, *done})
        self._kept_logs, removed = remove_covered_logs(
            self._dir, self._log_retention, candidates
        )
        if removed:
            self._log.note_directory_changed()
        logger.info(
            "Checkpoint: %d points of %d series into %s (%d bytes)",
            sum(entry[3] for entry in written.entries),
            len(written.entries),
            segment_name(segment.seq),
            written.data_size,
        )
        self.apply_retention()
        self.sync()
        if self._merge_after_ms is not None and not self.closing:
            self._seal_if_due()
            if self._merge_job is None:
                self._guard_merge(self._start_merge)

    # -- merges -------------------------------------------------------------------

    def _seal_if_due(self, *, now: bool = False) -> None:
        """Seal the segment being written once its points span ``merge_after``."""
        segments = self._catalog.segments
        if not segments:
            return
        newest = segments[max(segments)]
        if newest.sealed or newest.min_ts is None or newest.max_ts is None:
            return
        after = self._merge_after_ms
        if now or (after is not None and newest.max_ts - newest.min_ts >= after):
            newest.sealed = True
            logger.debug("Sealed segment %d for merging", newest.seq)

    def _poll_merge(self) -> None:
        """Commit a background merge that is done, and start the next one due."""
        job = self._merge_job
        if job is None or not job.done.is_set():
            return
        self._guard_merge(lambda: self._finish_merge(wait=True))
        if self._merge_after_ms is not None and self._merge_job is None:
            self._guard_merge(self._start_merge)

    def _step_aside(self, worked: float) -> None:
        """A merge thread, after a series: sleep a while if ingest is active,
        so that the writer keeps most of the interpreter lock."""
        pacer = self._pacer
        if pacer is not None and pacer.ingest_active:
            time.sleep(min(worked * PACE_SHARE, MAX_PACE_S))

    def _guard_merge(self, action: Callable[[], object]) -> None:
        """Run a merge step; a failure is logged and the merge tried later."""
        try:
            action()
        except Exception as exc:  # deliberate: merges are optional work
            logger.error(
                "Merge in %s failed, will retry: %s",
                self._dir,
                exc,
                exc_info=not isinstance(exc, OSError),
            )

    def _plan(self) -> MergePlan | None:
        return plan_merge(
            self._catalog,
            block_points=self._merge_block_points,
            max_bytes=self._segment_bytes,
            excluded=self._merge_excluded,
        )

    def _merge_process(self) -> WorkerProcess | None:
        """The merge worker (started from this, the writer's, thread), if used."""
        if not self._merge_in_worker or self.merge_failures >= MAX_MERGE_FAILURES:
            return None
        if self._merge_worker is None:
            from statsyard._child_process import WorkerProcess

            try:
                self._merge_worker = WorkerProcess(MERGE_HANDLER, name="merge")
            except OSError as exc:
                self._merge_failed(exc)
                return None
        return self._merge_worker

    def _merge_failed(self, error: BaseException) -> None:
        self.merge_failures += 1
        worker, self._merge_worker = self._merge_worker, None
        if worker is not None:
            worker.kill()
        logger.warning(
            "Merge worker failed (%d of %d; then merges run in a thread): %s",
            self.merge_failures,
            MAX_MERGE_FAILURES,
            error,
        )

    def _start_merge(self) -> bool:
        """Start the next merge the policy calls for, in the background.

        Returns:
            Whether one started.
        """
        if self._merge_job is not None:
            return False
        plan = self._plan()
        if plan is None:
            return False
        remove_temporary(self._dir)
        job = MergeJob(
            self._dir,
            plan,
            worker=self._merge_process(),
            pace=self._step_aside,
            notify=self._notify,
        )
        self._merge_job = job
        job.start()
        return True

    def _finish_merge(self, *, wait: bool) -> bool:
        """Commit the merge under way once it is done.

        Returns:
            Whether a merge was committed.
        """
        job = self._merge_job
        if job is None or (not wait and not job.done.is_set()):
            return False
        job.wait()
        self._merge_job = None
        plan = job.plan
        if job.error is not None or job.output is None:
            remove_temporary(self._dir)
            error = job.error or ValueError("no output")
            if isinstance(error, CorruptRecordError) or "CorruptRecordError" in str(
                error
            ):
                # A damaged block: never drop bytes a merge cannot read.
                self._merge_excluded.update(plan.sources)
                logger.warning("Not merging segments %s: %s", plan.sources, error)
                return False
            if isinstance(error, MergeCancelledError) or any(
                seq not in self._catalog.segments for seq in plan.sources
            ):
                return False  # called off, or retention took a source meanwhile
            if job.in_worker:
                # Whatever went wrong (a timeout too), the worker may still
                # be busy with the request: replace it.
                self._merge_failed(error)
                return False
            raise error
        done = commit_merge(self._dir, self._catalog, plan, job.output)
        if done is None:
            return False
        segment, durable = done
        for info in self._catalog.segments.values():
            info.sealed = True  # the next checkpoint starts a new segment
        self._log.note_directory_changed()
        self.merges_done += 1
        logger.info(
            "Merged segments %s into %s: %d blocks of %d points (%d bytes)",
            plan.sources,
            segment_name(segment.seq),
            segment.blocks,
            segment.points,
            segment.dat_size,
        )
        if durable:
            remove_sources(self._dir, plan.sources, segment.seq)
        return True

    def merge(self, *, seal: bool) -> int:
        """See :meth:`Storage.merge`."""
        if seal:
            self._seal_if_due(now=True)
        merged = 0
        if self._merge_job is not None:
            merged += len(self._merge_job.plan.sources)
            if not self._finish_merge(wait=True):
                merged = 0
        while True:
            plan = self._plan()
            if plan is None:
                return merged
            remove_temporary(self._dir)
            job = MergeJob(
                self._dir,
                plan,
                worker=self._merge_process(),
                pace=lambda _worked: None,
                notify=None,
            )
            self._merge_job = job
            job.run()
            if not self._finish_merge(wait=True):
                return merged
            merged += len(plan.sources)

    @property
    def merging(self) -> bool:
        """Whether a merge is under way."""
        return self._merge_job is not None

    @property
    def merge_worker_pid(self) -> int | None:
        """The merge worker's process id, while there is one."""
        return None if self._merge_worker is None else self._merge_worker.pid

    def apply_retention(self) -> None:
        """Remove the oldest whole segments that are too old or over the size limit."""
        doomed = segments_to_remove(
            self._catalog.segments,
            max_age_ms=self._retention_max_age_ms,
            max_bytes=self._retention_max_bytes,
            now_ms=now_ms(),
        )
        for segment, reason in doomed:
            remove_segment(self._dir, self._catalog, segment, reason)
            self._log.note_directory_changed()

    def merge_before_close(self) -> None:
        """A clean stop: merge the small blocks left, within a second.

        A merge under way in the background is called off (waiting for it
        could hold the stop up); the segment being written is sealed, and
        the merges the policy calls for run in this thread (ingest has
        stopped) until :data:`CLOSE_MERGE_SECONDS` have passed: one past
        the budget calls itself off between series, its sources untouched.
        Failures are logged; nothing is lost either way.
        """
        if self._merge_after_ms is None:
            return
        give_up_at = time.monotonic() + CLOSE_MERGE_SECONDS

        def run() -> None:
            job, self._merge_job = self._merge_job, None
            if job is not None:
                job.cancel()
                remove_temporary(self._dir)
            self._seal_if_due(now=True)
            while (
                time.monotonic() < give_up_at
                and (plan := self._plan()) is not None
                and plan.points <= CLOSE_MERGE_POINTS
            ):
                remove_temporary(self._dir)
                job = MergeJob(
                    self._dir, plan, worker=None, pace=lambda _worked: None, notify=None
                )
                job.give_up_at = give_up_at
                self._merge_job = job
                job.run()
                if not self._finish_merge(wait=True):
                    return

        self._guard_merge(run)

    def close(self) -> None:
        """Stop the worker, close the log and segment files (no sync).

        A checkpoint under way is abandoned: its points are in the log.
        """
        if self._compactor is not None:
            self._compactor.close()
        job, self._merge_job = self._merge_job, None
        if job is not None:
            job.cancel()
            remove_temporary(self._dir)
        worker, self._merge_worker = self._merge_worker, None
        if worker is not None:
            worker.close()
        self._log.close()
        self._segments.close()
