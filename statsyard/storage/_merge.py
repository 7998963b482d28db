"""Merge compaction: rewrite old segments of small blocks into one of large blocks.

A checkpoint a minute leaves every series in blocks of about 60 points,
each paying some 50 bytes of names, header and index besides its values. A
merge takes a run of consecutive *sealed* segments (no checkpoint goes into
them any more), reads each series' blocks from them, keeps one point per
timestamp (the last written, as a query does), and writes them as blocks
of up to ``merge_block_points`` points into one new segment, numbered
above every other: the *merged* segment. Its index begins with a merge
record naming the segments it replaces.

**Order.** A query resolves a timestamp written twice by arrival order,
which across segments is their number. The merged segment is the newest by
number, so its points would win over those of the segments numbered
between its sources and it; so the merge drops every point whose series
and timestamp one of those segments also holds (that later write wins
anyway). Blocks those segments gain while the merge runs are checked at
the commit: one whose time span meets the merged blocks' of its series
calls the merge off (it is tried again later). Points appended meanwhile
are in the head or in segments numbered above the merged one: newer both
ways.

**Commit.** The merge writes ``merge.dat.tmp`` and ``merge.idx.tmp`` and
fsyncs them (in a worker process or a paced thread). The writer's thread
then renames the index into place as ``seg-N.idx``, fsyncs the directory,
renames the data file as ``seg-N.dat`` and fsyncs the directory again:
**that second rename is the commit**. Only then are the sources dropped
from the catalog (under its lock, with the merged blocks shown in the same
step) and their files removed, data file first. At open: temporary files
are removed; an index beginning with a merge record whose data file is
missing is a merge cut short before its commit if its sources are all
there (removed; they hold every point), else damage (quarantined); a
committed merge's sources are not loaded and their files
are removed. A merged segment and its sources both on disk never show a
point twice or change which write wins (the order rule above), so no step
can make a query wrong; the merge record only says which files are waste.

The rules are in ``docs/storage.md`` (Merge compaction).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from statsyard.exceptions import CorruptRecordError, WriteError
from statsyard.storage._blocks import MAX_BLOCK_POINTS, decode_block, encode_block
from statsyard.storage._catalog import BlockEntry, Catalog, SegmentInfo, SeriesKey
from statsyard.storage._files import (
    MERGE_DAT_TMP,
    MERGE_IDX_TMP,
    fsync_directory,
    index_name,
    segment_name,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    INDEX_MAGIC,
    SEGMENT_MAGIC,
    pack_file_header,
    pack_record,
)
from statsyard.storage._index import (
    KIND_CHECKPOINT,
    KIND_MERGE,
    BlockRef,
    encode_checkpoint,
    encode_merge,
)
from statsyard.storage._query import Piece, merge

if TYPE_CHECKING:
    from statsyard._child_process import WorkerProcess

logger = logging.getLogger("statsyard.storage")

HANDLER: Final = "statsyard.storage._merge:handle"
"""The worker's request handler."""
DEFAULT_BLOCK_POINTS: Final = 4096
"""Points a merged block holds at most, by default."""
SMALL_SHARE: Final = 2
"""A segment whose blocks hold fewer than ``block_points / SMALL_SHARE``
points on average is worth merging."""
MAX_RUN_POINTS: Final = 16_000_000
"""A run takes no further segment past this many points (a merge holds one
series' points in memory at a time; this bounds the worst, one series)."""
MERGE_NICE: Final = 10
"""How much the merge worker lowers its priority (``nice``)."""
PACE_SHARE: Final = 2.0
"""A merge in the writer's process sleeps this many times as long as it
worked on a series while ingest is active (ingest keeps most of the
interpreter lock)."""
MAX_PACE_S: Final = 0.05
"""Longest such sleep."""
_WRITE_CHUNK: Final = 1 << 20


@attrs.frozen
class SeriesPlan:
    """One series of a merge: its blocks in the sources, and in later segments."""

    key: SeriesKey
    sources: list[BlockRef]
    """Its blocks in the sources, in arrival order."""
    later: list[BlockRef]
    """Its blocks in segments numbered above the sources (when planned)."""


@attrs.frozen
class MergePlan:
    """What a merge reads and where: decided by the writer, run anywhere."""

    sources: list[int]
    """The segments replaced: consecutive live segments, oldest first."""
    covered: int
    """The highest *covered* of their checkpoint records (kept by the merge)."""
    block_points: int
    """Most points a merged block holds."""
    series: list[SeriesPlan]
    later_sizes: dict[int, int]
    """Data file size of each later segment when planned: blocks past it
    are checked at the commit."""

    @property
    def points(self) -> int:
        """Points in the sources' blocks."""
        return sum(ref.points for series in self.series for ref in series.sources)

    def to_bytes(self) -> bytes:
        """The plan as a worker request."""
        return json.dumps(
            {
                "sources": self.sources,
                "covered": self.covered,
                "block_points": self.block_points,
                "series": [
                    [
                        list(s.key),
                        [list(r) for r in s.sources],
                        [list(r) for r in s.later],
                    ]
                    for s in self.series
                ],
                "later_sizes": list(self.later_sizes.items()),
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> MergePlan:
        """Inverse of :meth:`to_bytes`."""
        raw = json.loads(data)
        return cls(
            sources=raw["sources"],
            covered=raw["covered"],
            block_points=raw["block_points"],
            series=[
                SeriesPlan(
                    (key[0], key[1]),
                    [BlockRef(*r) for r in sources],
                    [BlockRef(*r) for r in later],
                )
                for key, sources, later in raw["series"]
            ],
            later_sizes=dict(raw["later_sizes"]),
        )


@attrs.frozen
class MergeOutput:
    """A merge's temporary files, written and fsynced, not yet committed."""

    entries: list[BlockEntry]
    """The merged blocks, in data file order (from the file header on)."""
    dat_size: int
    idx_size: int
    dropped: int
    """Points not carried over: written again (later) for the same timestamp."""

    def to_bytes(self) -> bytes:
        """The output as a worker reply."""
        return json.dumps(
            [self.entries, self.dat_size, self.idx_size, self.dropped]
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> MergeOutput:
        """Inverse of :meth:`to_bytes`."""
        entries, dat_size, idx_size, dropped = json.loads(data)
        return cls([tuple(e) for e in entries], dat_size, idx_size, dropped)


class MergeCancelledError(Exception):
    """The merge was called off (the storage is closing)."""


# -- planning (the writer's thread) ----------------------------------------------


def plan_merge(
    catalog: Catalog,
    *,
    block_points: int,
    max_bytes: int,
    excluded: set[int],
) -> MergePlan | None:
    """The oldest run of consecutive sealed segments worth merging, or None.

    A run is consecutive live segments, each sealed, not ``excluded`` and
    *small* (its blocks average fewer than ``block_points / 2`` points),
    adding up to at most ``max_bytes`` of data and :data:`MAX_RUN_POINTS`
    points (at least one segment); it is worth merging when it holds more
    blocks than series.
    """
    segments = catalog.segments
    runs: list[list[SegmentInfo]] = [[]]
    size = points = 0
    for seq in sorted(segments):
        segment = segments[seq]
        small = (
            segment.sealed
            and seq not in excluded
            and segment.points * SMALL_SHARE < block_points * max(segment.blocks, 1)
        )
        run = runs[-1]
        if not small or (
            run
            and (
                size + segment.dat_size > max_bytes
                or points + segment.points > MAX_RUN_POINTS
            )
        ):
            if run:
                runs.append([])
            size = points = 0
            if not small:
                continue
        runs[-1].append(segment)
        size += segment.dat_size
        points += segment.points
    for run in runs:
        if run:
            plan = _plan_run(catalog, run, block_points)
            if plan is not None:
                return plan
    return None


def _plan_run(
    catalog: Catalog, run: list[SegmentInfo], block_points: int
) -> MergePlan | None:
    """The plan of merging ``run``, or None if it holds one block a series."""
    sources = [segment.seq for segment in run]
    low, high = sources[0], sources[-1]
    series: list[SeriesPlan] = []
    blocks = 0
    with catalog.lock:
        for key in list(catalog.index):
            refs = catalog.refs(key)
            mine = [ref for ref in refs if low <= ref.segment <= high]
            if not mine:
                continue
            blocks += len(mine)
            series.append(
                SeriesPlan(key, mine, [ref for ref in refs if ref.segment > high])
            )
        later_sizes = {
            seq: s.dat_size for seq, s in catalog.segments.items() if seq > high
        }
    if blocks <= len(series):
        return None  # one block a series already: nothing to gain
    return MergePlan(
        sources=sources,
        covered=max(segment.covered for segment in run),
        block_points=block_points,
        series=series,
        later_sizes=later_sizes,
    )


# -- running (a worker process, or a thread of the writer's process) -------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_block(
    fds: dict[int, int], directory: Path, key: SeriesKey, ref: BlockRef
) -> Piece:
    """One block's columns; raises CorruptRecordError if it is not sound."""
    fd = fds.get(ref.segment)
    if fd is None:
        fd = fds[ref.segment] = os.open(
            directory / segment_name(ref.segment), os.O_RDONLY | os.O_CLOEXEC
        )
    data = os.pread(fd, ref.length, ref.offset)
    metric, entity, timestamps, values = decode_block(data)
    if (metric, entity) != key or len(timestamps) != ref.points:
        raise CorruptRecordError(
            f"block at {segment_name(ref.segment)}:{ref.offset} is not the "
            f"{ref.points} points of {key!r} its index lists"
        )
    return timestamps, values


def run_merge(
    directory: Path,
    plan: MergePlan,
    *,
    pace: Callable[[float], None] = lambda _worked: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> MergeOutput:
    """Write a plan's merged blocks and index into the temporary files, fsynced.

    ``pace`` is called after each series with the seconds it took (a merge
    in the writer's process steps aside for ingest for a while).

    Raises:
        CorruptRecordError: a source block is damaged: the merge is called
            off (a merge never drops bytes it cannot read).
        MergeCancelledError: ``cancelled()`` said so.
        OSError: reading or writing failed.
    """
    dat_path = directory / MERGE_DAT_TMP
    idx_path = directory / MERGE_IDX_TMP
    fds: dict[int, int] = {}
    out = os.open(dat_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    entries: list[BlockEntry] = []
    dropped = 0
    try:
        _write_all(out, pack_file_header(SEGMENT_MAGIC))
        size = FILE_HEADER_SIZE
        pending: list[bytes] = []
        pending_bytes = 0
        per = max(1, min(plan.block_points, MAX_BLOCK_POINTS))
        for series in plan.series:
            if cancelled():
                raise MergeCancelledError
            began = time.monotonic()
            key = series.key
            pieces = [_read_block(fds, directory, key, ref) for ref in series.sources]
            timestamps, values = merge(pieces)
            if timestamps:
                low, high = timestamps[0], timestamps[-1]
                later = {
                    t
                    for ref in series.later
                    if ref.max_ts >= low and ref.min_ts <= high
                    for t in _read_block(fds, directory, key, ref)[0]
                }
                if later:
                    keep = [t not in later for t in timestamps]
                    dropped += len(keep) - sum(keep)
                    timestamps = [t for t, k in zip(timestamps, keep, strict=True) if k]
                    values = [v for v, k in zip(values, keep, strict=True) if k]
            count = len(timestamps)
            chunks = -(-count // per)
            step = -(-count // chunks) if chunks else 1
            for at in range(0, count, step):
                some_ts = timestamps[at : at + step]
                block, first, last = encode_block(
                    key[0], key[1], some_ts, values[at : at + step]
                )
                entries.append((key[0], key[1], len(block), len(some_ts), first, last))
                pending.append(block)
                pending_bytes += len(block)
                size += len(block)
            if pending_bytes >= _WRITE_CHUNK:
                _write_all(out, b"".join(pending))
                pending, pending_bytes = [], 0
            pace(time.monotonic() - began)
        _write_all(out, b"".join(pending))
        os.fsync(out)
    finally:
        os.close(out)
        for fd in fds.values():
            os.close(fd)
    index = b"".join(
        [
            pack_file_header(INDEX_MAGIC),
            pack_record(KIND_MERGE, encode_merge(plan.sources)),
            pack_record(
                KIND_CHECKPOINT,
                encode_checkpoint(plan.covered, FILE_HEADER_SIZE, entries),
            ),
        ]
    )
    fd = os.open(idx_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, index)
        os.fsync(fd)
    finally:
        os.close(fd)
    return MergeOutput(entries, size, len(index), dropped)


_niced = False


def handle(payload: bytes) -> bytes:
    """The worker's handler: a directory and a plan in, the output out.

    The worker lowers its own priority first (merging is background work:
    on a machine of few cores, the writer and the compaction worker go first).
    """
    global _niced  # once per worker process
    if not _niced:
        _niced = True
        try:
            os.nice(MERGE_NICE)
        except OSError as exc:
            logger.debug("Could not lower the merge worker's priority: %s", exc)
    length = int.from_bytes(payload[:4], "little")
    directory = Path(payload[4 : 4 + length].decode("utf-8", "surrogateescape"))
    plan = MergePlan.from_bytes(payload[4 + length :])
    return run_merge(directory, plan).to_bytes()


def remove_temporary(directory: Path) -> None:
    """Remove a merge's temporary files, if any (never raises)."""
    for name in (MERGE_DAT_TMP, MERGE_IDX_TMP):
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("Could not remove %s: %s", name, exc)


class MergeJob:
    """One merge on its way, in a thread of its own (which waits on the worker
    when there is one, or does the work itself, paced).

    Args:
        directory: the data directory.
        plan: what to merge.
        worker: a worker process to do it in (started by the writer's
            thread); None: in this thread, calling ``pace`` between series.
        pace: called with the seconds a series took (in-process only).
        notify: called (from the job's thread) when the job is done.
    """

    def __init__(
        self,
        directory: Path,
        plan: MergePlan,
        *,
        worker: WorkerProcess | None,
        pace: Callable[[float], None],
        notify: Callable[[], None] | None,
    ) -> None:
        self.plan = plan
        self.done = threading.Event()
        self.output: MergeOutput | None = None
        self.error: BaseException | None = None
        self._dir = directory
        self._worker = worker
        self._pace = pace
        self._notify = notify
        self._cancel = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name="statsyard-merge", daemon=True
        )

    def _run(self) -> None:
        try:
            if self._worker is not None:
                where = os.fsencode(self._dir)
                request = (
                    len(where).to_bytes(4, "little") + where + self.plan.to_bytes()
                )
                points = self.plan.points
                reply = self._worker.request(request, timeout=60.0 + points * 50e-6)
                self.output = MergeOutput.from_bytes(reply)
            else:
                self.output = run_merge(
                    self._dir, self.plan, pace=self._pace, cancelled=self._called_off
                )
        except BaseException as exc:  # noqa: BLE001 - handed to the writer's thread
            self.error = exc
        finally:
            self.done.set()
            if self._notify is not None:
                try:
                    self._notify()
                except Exception:  # deliberate: a listener must not lose the result
                    logger.exception("Merge listener failed")

    give_up_at: float | None = None
    """(in this process) ``time.monotonic()`` past which the merge calls
    itself off between series: a clean stop's merge stays within a budget."""

    def _called_off(self) -> bool:
        give_up_at = self.give_up_at
        return self._cancel.is_set() or (
            give_up_at is not None and time.monotonic() > give_up_at
        )

    @property
    def in_worker(self) -> bool:
        """Whether the merge is done by a worker process."""
        return self._worker is not None

    def start(self) -> None:
        """Run the merge in the job's thread."""
        self.thread.start()

    def run(self) -> None:
        """Run the merge in the calling thread, waiting for it."""
        self._run()

    def wait(self) -> None:
        """Wait until the merge is done (and its thread, if it has one)."""
        self.done.wait()
        if self.thread.ident is not None:
            self.thread.join()

    def cancel(self) -> None:
        """Call the merge off and wait for its thread (the caller removes files)."""
        self._cancel.set()
        if self._worker is not None:
            self._worker.kill()
        if self.thread.ident is not None:
            self.thread.join()


# -- committing (the writer's thread) ---------------------------------------------


def _conflict(catalog: Catalog, plan: MergePlan, output: MergeOutput) -> str | None:
    """Why the merged blocks cannot go in now, if they cannot: a source gone
    (retention), or a block written to a later segment since the plan whose
    time span meets the merged blocks' of its series."""
    for seq in plan.sources:
        if seq not in catalog.segments:
            return f"segment {seq} was removed meanwhile"
    high = plan.sources[-1]
    spans: dict[SeriesKey, tuple[int, int]] = {}
    for metric, entity, _length, _count, low_ts, high_ts in output.entries:
        key = (metric, entity)
        known = spans.get(key)
        spans[key] = (
            (low_ts, high_ts)
            if known is None
            else (min(known[0], low_ts), max(known[1], high_ts))
        )
    sizes = plan.later_sizes
    with catalog.lock:
        for key, (low_ts, high_ts) in spans.items():
            for ref in catalog.refs(key):
                if ref.segment <= high or ref.offset < sizes.get(ref.segment, 0):
                    continue  # a source, or known to the plan
                if ref.max_ts >= low_ts and ref.min_ts <= high_ts:
                    return f"{key!r} was written again in segment {ref.segment}"
    return None


def commit_merge(
    directory: Path, catalog: Catalog, plan: MergePlan, output: MergeOutput
) -> tuple[SegmentInfo, bool] | None:
    """Put a merge's files in place and show its blocks instead of the sources'.

    Returns:
        The merged segment, and whether the directory was fsynced after
        the commit (only then may the sources' files go); None when the
        merge was called off (its temporary files removed).

    Raises:
        WriteError: a rename or fsync failed before the commit (the
            temporary files are removed; the sources stay) or after it
            (the merged segment is in place; the sources go at the next
            open or merge).
    """
    reason = _conflict(catalog, plan, output)
    if reason is not None:
        logger.info("Merge of segments %s called off: %s", plan.sources, reason)
        remove_temporary(directory)
        return None
    seq = max(catalog.segments) + 1
    idx_path = directory / index_name(seq)
    dat_path = directory / segment_name(seq)
    try:
        os.rename(directory / MERGE_IDX_TMP, idx_path)
        fsync_directory(directory)
        os.rename(directory / MERGE_DAT_TMP, dat_path)  # the commit
    except OSError as exc:
        # Not committed: without its data file, the index is a merge cut
        # short (removed at open); remove it now if we can.
        for path in (idx_path, directory / MERGE_DAT_TMP, directory / MERGE_IDX_TMP):
            try:
                path.unlink()
            except OSError:
                pass
        raise WriteError(
            exc.errno, f"merge into {dat_path.name} failed: {exc}"
        ) from exc
    try:
        fsync_directory(directory)
        durable = True
    except OSError as exc:
        # Committed, maybe not durably: keep the sources until the next open.
        logger.error("Could not fsync %s after a merge: %s", directory, exc)
        durable = False
    segment = SegmentInfo(
        seq,
        dat_size=output.dat_size,
        idx_size=output.idx_size,
        covered=plan.covered,
        sealed=True,
    )
    for _m, _e, _length, count, low, high in output.entries:
        segment.cover(low, high)
        segment.count(1, count)
    catalog.replace_segments(
        set(plan.sources),
        [s.key for s in plan.series],
        segment,
        output.entries,
        FILE_HEADER_SIZE,
    )
    return segment, durable


def remove_sources(directory: Path, sources: list[int], into: int) -> bool:
    """Delete merged segments' files, data file first (see ``find_merges``).

    Returns:
        Whether every file went (else the next open removes the rest).
    """
    done = True
    for seq in sources:
        for name in (segment_name(seq), index_name(seq)):
            try:
                (directory / name).unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.error("Could not remove %s (merged): %s", name, exc)
                done = False
        logger.debug("Removed segment %d: merged into segment %d", seq, into)
    return done
