"""What a storage knows of its directory, in memory: series, head, block index, files.

A :class:`Catalog` is filled by recovery (``_recovery.py``), grown by the
writer (new series, appended batches, committed checkpoints) and read by
queries in other threads. Everything queries iterate is changed under
:attr:`Catalog.lock`; a read-only storage's ``refresh()`` builds a new
catalog and swaps it in with one attribute store.
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Callable, Sequence

import attrs

from statsyard.storage._admission import SeriesLimits
from statsyard.storage._batch import Batch, TableCache, series_entry
from statsyard.storage._framing import FILE_HEADER_SIZE
from statsyard.storage._head import Head
from statsyard.storage._index import BlockRef

_REF = 6
"""Fields of a :class:`BlockRef` (a row of a series' index array)."""

SeriesKey = tuple[str, str]
"""``(metric, entity)``."""

BlockEntry = tuple[str, str, int, int, int, int]
"""``(metric, entity, length, points, min_ts, max_ts)`` of a block being written."""


@attrs.define
class SegmentInfo:
    """What is known of one segment: sizes and the time span of its blocks."""

    seq: int
    dat_size: int = FILE_HEADER_SIZE
    idx_size: int = FILE_HEADER_SIZE
    min_ts: int | None = None
    max_ts: int | None = None
    covered: int = 0
    """The highest *covered* of its checkpoint records."""
    blocks: int = 0
    """Blocks its records list (the writer's count, for the merge policy)."""
    points: int = 0
    """Points in those blocks."""
    sealed: bool = False
    """No checkpoint goes into it any more (a merge may take it)."""

    def count(self, blocks: int, points: int) -> None:
        """Count blocks listed in the segment."""
        self.blocks += blocks
        self.points += points

    def cover(self, low: int, high: int) -> None:
        """Widen the segment's time span to include ``[low, high]``."""
        self.min_ts = low if self.min_ts is None else min(self.min_ts, low)
        self.max_ts = high if self.max_ts is None else max(self.max_ts, high)

    @property
    def size(self) -> int:
        """Bytes of its data and index files."""
        return self.dat_size + self.idx_size


class Catalog:
    """The in-memory state of one storage: series numbering, head, block index.

    Only the writer's thread changes it (and recovery, before anyone reads);
    queries in any thread read it under :attr:`lock`.
    """

    def __init__(self) -> None:
        """An empty catalog (an empty directory)."""
        self.lock = threading.Lock()
        """Held while changing what queries iterate; only ever briefly."""
        self.head = Head()
        """Points appended since the last checkpoint."""
        self.numbers: dict[SeriesKey, int] = {}
        """Series -> its number in the head (and in this storage's log records)."""
        self.keys: list[SeriesKey] = []
        """Series by number."""
        self.entries: list[bytes] = []
        """By series number: its entry in a log record's series table."""
        self.table_cache = TableCache()
        self.entities: dict[str, str | dict[str, None]] = {}
        """Metric -> its entity, or a dict of its entities (insertion
        ordered) once it has several: most metrics have one, and a dict
        costs 232 bytes. Read with :meth:`entities_of`."""
        self.index: dict[SeriesKey, array[int]] = {}
        """Series -> its compacted blocks: the six fields of each
        :class:`BlockRef` in a row of an ``array("q")`` (a third of the
        memory of a list of named tuples; :meth:`refs` makes those)."""
        self.segments: dict[int, SegmentInfo] = {}
        self.covered = 0
        """Every log numbered up to this is in blocks."""
        self.wal_seqs: list[int] = []
        """Numbers of the logs holding the head's points, oldest first."""
        self.wal_seq = 0
        """Number of the newest log file (or ``covered`` when there is none)."""
        self.skipped_records = 0
        """Damaged records, blocks or stretches skipped while reading."""
        self.series_held = 0
        """Distinct series, compacted or in the head."""

    # -- series -------------------------------------------------------------------

    def new_series(self, key: SeriesKey) -> int:
        """Number a series never seen before (the writer's thread).

        Raises:
            ValueError: a name is longer than the format holds.
        """
        number = len(self.keys)
        entry = series_entry(number, *key)  # may raise: check first
        # Entities repeat across metrics ("default", host names): one copy.
        key = (key[0], sys.intern(key[1]))
        if key not in self.index:
            self.series_held += 1
        with self.lock:  # queries iterate these under the lock
            self.numbers[key] = number
            self.keys.append(key)
            self._add_entity(*key)
        self.entries.append(entry)
        return number

    def series_numbers(
        self,
        metrics: Sequence[str],
        entities: Sequence[str],
        limits: SeriesLimits | None = None,
    ) -> list[int]:
        """The number of each point's series, numbering new series.

        With ``limits``, a new series beyond them gets -1 (its points are
        refused; the caller drops them and counts them).
        """
        number_of = self.numbers
        try:  # C speed: the usual case, where every series is known
            return list(map(number_of.__getitem__, zip(metrics, entities, strict=True)))
        except KeyError:
            pass
        numbers: list[int] = []
        refused: dict[SeriesKey, str] = {}
        for key in zip(metrics, entities, strict=True):
            number = number_of.get(key)
            if number is None:
                reason = refused.get(key)
                if reason is None and limits is not None and key not in self.index:
                    reason = limits.admit(self.series_held)
                if reason is not None:
                    refused[key] = reason
                    numbers.append(-1)
                    continue
                number = self.new_series(key)
            numbers.append(number)
        if refused and limits is not None:
            for reason in set(refused.values()):
                keys = [k for k, r in refused.items() if r == reason]
                wanted = set(keys)
                points = sum(
                    1 for key in zip(metrics, entities, strict=True) if key in wanted
                )
                limits.count_refused(
                    reason, points, len(keys), f"{keys[0][0]} {keys[0][1]}"
                )
        return numbers

    def add_batch(self, batch: Batch) -> None:
        """Add a decoded log record to the head (loading the log)."""
        mapping: dict[int, int] = {}
        for number, key in batch.keys.items():
            known = self.numbers.get(key)
            mapping[number] = self.new_series(key) if known is None else known
        self.head.add(
            array("I", map(mapping.__getitem__, batch.series_numbers)),
            batch.timestamps,
            batch.values,
        )

    # -- blocks -------------------------------------------------------------------

    def _add_entity(self, metric: str, entity: str) -> None:
        known = self.entities.get(metric)
        if known is None:
            self.entities[metric] = entity
        elif type(known) is str:
            if known != entity:
                self.entities[metric] = {known: None, entity: None}
        else:
            known[entity] = None  # type: ignore[index]

    def entities_of(self, metric: str) -> list[str]:
        """The entities of ``metric`` (call under :attr:`lock`)."""
        known = self.entities.get(metric)
        if known is None:
            return []
        return [known] if type(known) is str else list(known)

    def series_of(self, wanted: Callable[[str], object]) -> list[SeriesKey]:
        """Every series whose metric ``wanted`` accepts (call under :attr:`lock`)."""
        return [
            (metric, entity)
            for metric, known in self.entities.items()
            if wanted(metric)
            for entity in ([known] if type(known) is str else known)
        ]

    def refs(self, key: SeriesKey) -> list[BlockRef]:
        """The blocks of a series, in the order they were written."""
        packed = self.index.get(key)
        if not packed:
            return []
        return [BlockRef(*packed[at : at + _REF]) for at in range(0, len(packed), _REF)]

    def add_loaded_block(self, metric: str, entity: str, ref: BlockRef) -> None:
        """Index a block listed by a checkpoint record (recovery, no reader yet)."""
        key = (metric, entity)
        refs = self.index.get(key)
        if refs is None:
            self.index[key] = array("q", ref)
            self._add_entity(metric, entity)
            if key not in self.numbers:
                self.series_held += 1
        else:
            refs.extend(ref)

    def freeze_head(self) -> Head:
        """Start a checkpoint: new points go to a new head over the frozen one.

        Returns:
            The frozen head, whose columns no longer change.
        """
        with self.lock:
            frozen = self.head
            self.head = Head(frozen)
        return frozen

    def commit_blocks(self, segment: SegmentInfo, entries: list[BlockEntry]) -> None:
        """Show a durable checkpoint's blocks instead of the frozen head, at once."""
        offset = segment.dat_size
        with self.lock:
            for metric, entity, length, count, low, high in entries:
                key = (metric, entity)
                ref = (segment.seq, offset, length, count, low, high)
                refs = self.index.get(key)
                if refs is None:
                    self.index[key] = array("q", ref)
                else:
                    refs.extend(ref)
                segment.cover(low, high)
                segment.count(1, count)
                offset += length
            self.head = self.head.unfrozen()

    def replace_segments(
        self,
        sources: set[int],
        keys: list[SeriesKey],
        segment: SegmentInfo,
        entries: list[BlockEntry],
        offset: int,
    ) -> None:
        """Show a merged segment's blocks instead of its sources', at once.

        Args:
            sources: the segments replaced (dropped from the catalog).
            keys: every series with blocks in ``sources``.
            segment: the merged segment (added to the catalog).
            entries: its blocks, in data file order from ``offset``.
            offset: data file offset of the first block.
        """
        new: dict[SeriesKey, list[int]] = {}
        for metric, entity, length, count, low, high in entries:
            new.setdefault((metric, entity), []).extend(
                (segment.seq, offset, length, count, low, high)
            )
            offset += length
        with self.lock:
            for key in dict.fromkeys([*keys, *new]):
                kept = [
                    field
                    for ref in self.refs(key)
                    if ref.segment not in sources
                    for field in ref
                ]
                # The merged segment is the newest: its blocks come last,
                # as a load (by segment number) would order them.
                self.index[key] = array("q", [*kept, *new.get(key, ())])
            for seq in sources:
                self.segments.pop(seq, None)
            self.segments[segment.seq] = segment

    def drop_segment(self, seq: int) -> None:
        """Forget a segment and its blocks (retention removes its files)."""
        with self.lock:
            del self.segments[seq]
            for key, packed in self.index.items():
                if seq in packed[::_REF]:
                    kept = [r for r in self.refs(key) if r.segment != seq]
                    self.index[key] = array("q", [f for r in kept for f in r])
