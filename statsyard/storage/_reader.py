"""Answering queries from a catalog: a short snapshot under the lock, then blocks.

A query takes the catalog's lock only to collect references (index entries,
the head), then reads and decodes blocks and groups the head without it,
pacing itself for ingest.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from statsyard.exceptions import CorruptRecordError
from statsyard.storage._batch import Value
from statsyard.storage._blocks import decode_block_columns
from statsyard.storage._catalog import Catalog
from statsyard.storage._files import DamagedFileError, open_regular, segment_name
from statsyard.storage._head import Head
from statsyard.storage._index import BlockRef
from statsyard.storage._query import Piece, check_agg, downsample, merge, select

if TYPE_CHECKING:
    from statsyard.storage._columns import FloatColumns

logger = logging.getLogger("statsyard.storage")

QueryResult = dict[str, list[tuple[int, Value]]]
"""Entity -> ``(timestamp ms, value)`` points, by time."""

MAX_COLUMN_STEP: Final = 2**62
"""Steps up to this many ms aggregate over numpy columns (int64 arithmetic)."""


class SegmentVanishedError(Exception):
    """A segment file a query's snapshot named is gone (a merge or retention
    removed it after the snapshot): the query starts over (internal signal)."""


def _as_lists(columns: tuple[Any, Any]) -> Piece:
    """A decoded block's columns as the lists of Python objects a piece holds."""
    timestamps, values = columns
    if isinstance(timestamps, list):  # a small block, decoded without numpy
        return timestamps, values
    return timestamps.tolist(), values if isinstance(values, list) else values.tolist()


def _anything(metric: str) -> bool:
    """Every metric matches ``*``."""
    return True


class Reader:
    """Runs queries against whichever catalog a storage holds at the time.

    Args:
        directory: the data directory (blocks are read from its segments).
        pace: called between pieces of work (steps aside for ingest).
    """

    def __init__(self, directory: Path, pace: Callable[[], None]) -> None:
        self._dir = directory
        self._pace = pace
        self._stats_lock = threading.Lock()
        self.bytes_read = 0
        """Block bytes read by queries."""

    def query(
        self,
        catalog: Catalog,
        metric: str,
        entity: str | None,
        start: int | None,
        end: int | None,
        step: int | None,
        agg: str,
        *,
        strict: bool = False,
    ) -> QueryResult:
        """See :meth:`Storage.query`.

        Raises:
            SegmentVanishedError: (``strict``) a segment file named by the
                snapshot is gone; else its blocks are skipped.
        """
        aggregate = check_agg(agg)
        if step is not None and (type(step) is not int or step <= 0):
            raise ValueError(f"step must be a positive int of ms, got {step!r}")
        head, snapshot = self._snapshot(catalog, metric, entity, start, end)
        result: QueryResult = {}
        pace = self._pace
        pace()
        for name, refs, number in snapshot:
            # The head's batches only ever grow by whole batches: it holds
            # every batch appended before the call (and maybe later ones).
            recent: Piece = ([], [])
            if number is not None:
                recent = head.piece(number, pace)
                pace()
            blocks = self._read_blocks(catalog, (metric, name), refs, strict)
            # Large blocks are numpy columns already: aggregate them as columns
            # (small blocks and the head stay on the list path, as fast there,
            # and a small read does not import numpy).
            if (
                step is not None
                and step <= MAX_COLUMN_STEP
                and any(not isinstance(piece[0], list) for piece in blocks)
            ):
                from statsyard.storage._columns import (  # numpy: lazily
                    as_columns,
                    downsample_columns,
                    merge_columns,
                    select_columns,
                )

                columns = as_columns([*blocks, recent])
                if columns is not None:
                    pace()
                    columns = select_columns(merge_columns(columns), start, end)
                    if len(columns[0]):
                        result[name] = downsample_columns(columns, step, agg, pace)
                    continue
            piece = merge([*map(_as_lists, blocks), recent])
            pace()
            piece = select(piece, start, end)
            if not piece[0]:
                continue
            if step is None:
                result[name] = list(zip(*piece, strict=True))
            else:
                result[name] = downsample(piece, step, aggregate, pace)
        return result

    def columns(
        self,
        catalog: Catalog,
        metric: str,
        entity: str,
        start: int | None,
        end: int | None,
        *,
        strict: bool = False,
    ) -> FloatColumns:
        """See :meth:`Storage.query_columns` (and :meth:`query` for ``strict``)."""
        from statsyard.storage._columns import (  # numpy: lazily
            float_columns,
            merge_columns,
            select_columns,
        )

        head, snapshot = self._snapshot(catalog, metric, entity, start, end)
        pieces: list[tuple[Any, Any]] = []
        pace = self._pace
        for _name, refs, number in snapshot:  # one entry at most
            recent: Piece = ([], [])
            if number is not None:
                recent = head.piece(number, pace)
                pace()
            blocks = self._read_blocks(catalog, (metric, entity), refs, strict)
            pieces = [*blocks, recent]
        columns = merge_columns(float_columns(pieces))
        pace()
        return select_columns(columns, start, end)

    def _snapshot(
        self,
        catalog: Catalog,
        metric: str,
        entity: str | None,
        start: int | None,
        end: int | None,
    ) -> tuple[Head, list[tuple[str, list[BlockRef], int | None]]]:
        """Under the catalog's lock: the head, and per entity the blocks that
        may hold points in ``[start, end)`` and its number in the head."""
        with catalog.lock:
            wanted = catalog.entities_of(metric) if entity is None else [entity]
            snapshot: list[tuple[str, list[BlockRef], int | None]] = []
            for name in wanted:
                key = (metric, name)
                refs = [
                    ref
                    for ref in catalog.refs(key)
                    if (start is None or ref.max_ts >= start)
                    and (end is None or ref.min_ts < end)
                ]
                number = catalog.numbers.get(key)
                if refs or number is not None:
                    snapshot.append((name, refs, number))
            return catalog.head, snapshot

    def _read_blocks(
        self,
        catalog: Catalog,
        key: tuple[str, str],
        refs: list[BlockRef],
        strict: bool = False,
    ) -> list[tuple[Any, Any]]:
        """Read and decode blocks into columns (lists for small blocks; numpy
        arrays, or a list for generic values, for large ones); a damaged one
        is skipped, counted and logged."""
        pieces: list[tuple[Any, Any]] = []
        fds: dict[int, int] = {}
        read = 0
        try:
            for ref in refs:
                self._pace()
                fd = fds.get(ref.segment)
                if fd is None:
                    path = self._dir / segment_name(ref.segment)
                    try:
                        fd, _size = open_regular(path)
                    except FileNotFoundError:
                        if strict:  # merged or removed since the snapshot
                            raise SegmentVanishedError(path.name) from None
                        fd = -1  # removed by retention since the snapshot
                    except DamagedFileError as exc:
                        fd = -1
                        with self._stats_lock:
                            catalog.skipped_records += 1
                        logger.warning("Skipped the blocks of %s", exc)
                    fds[ref.segment] = fd
                if fd == -1:
                    continue
                data = os.pread(fd, ref.length, ref.offset)
                read += len(data)
                try:
                    metric, entity, timestamps, values = decode_block_columns(data)
                    if (metric, entity) != key or len(timestamps) != ref.points:
                        raise CorruptRecordError(  # a sound block, but not this one
                            f"holds {len(timestamps)} points of {metric!r} "
                            f"{entity!r}, not {ref.points} of {key[0]!r} {key[1]!r}"
                        )
                except CorruptRecordError as exc:
                    with self._stats_lock:
                        catalog.skipped_records += 1
                    logger.warning(
                        "Skipped damaged block at %s:%d: %s",
                        segment_name(ref.segment),
                        ref.offset,
                        exc,
                    )
                    continue
                pieces.append((timestamps, values))
        finally:
            for fd in fds.values():
                if fd != -1:
                    os.close(fd)
            with self._stats_lock:
                self.bytes_read += read
        return pieces

    def series(self, catalog: Catalog, pattern: str) -> list[tuple[str, str]]:
        """See :meth:`Storage.series`."""
        if pattern in ("*", "**"):  # everything (metrics()): no matcher to load
            wanted: Callable[[str], object] = _anything
        else:
            from statsyard.storage._glob import compile_glob

            wanted = compile_glob(pattern).fullmatch
        with catalog.lock:
            head, numbers = catalog.head, catalog.numbers
            candidates = [
                (metric, entity, bool(catalog.index.get((metric, entity))))
                for metric, entity in catalog.series_of(wanted)
            ]
        in_head = head.nonempty()
        found = [
            (metric, entity)
            for metric, entity, compacted in candidates
            if compacted or numbers.get((metric, entity)) in in_head
        ]
        return sorted(found)
