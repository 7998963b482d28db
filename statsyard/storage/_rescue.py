"""Finding blocks again: scan a segment's data file for blocks no index lists.

Blocks are self-describing (marker, sizes, names, CRC-32 over all of it; in
format 2 and 3 alike), so
the blocks of a checkpoint whose index record was damaged or lost can be
found by scanning the bytes the good records do not cover, and listed again
by new checkpoint records. Nothing is ever deleted for want of an index.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

from statsyard.exceptions import CorruptRecordError
from statsyard.storage._blocks import (
    BLOCK_MARKER,
    BLOCK_PEEK,
    block_length,
    decode_block,
)
from statsyard.storage._framing import FileWindow, pack_record
from statsyard.storage._index import KIND_CHECKPOINT, BlockRef, encode_checkpoint

logger = logging.getLogger("statsyard.storage")

MAX_BLOCK_BYTES: Final = 64 * 2**20
"""A block header declaring more bytes than this is damage (the most points
a block holds compress far below it)."""

Found = tuple[str, str, BlockRef]
"""``(metric, entity, where)`` of a block found by a scan."""


def _block_at(window: FileWindow, pos: int, seq: int) -> Found | None:
    """The sound block starting at ``pos``, or None."""
    head = window.get(pos, min(BLOCK_PEEK, window.end - pos))
    if head is None or head[:4] != BLOCK_MARKER:
        return None
    length = block_length(head)
    if length is None or length > MAX_BLOCK_BYTES:
        return None
    data = window.get(pos, length)
    if data is None:
        return None
    try:
        metric, entity, timestamps, _values = decode_block(data)
    except CorruptRecordError:
        return None
    ref = BlockRef(seq, pos, length, len(timestamps), min(timestamps), max(timestamps))
    return metric, entity, ref


def rescue_blocks(
    fd: int, gaps: list[tuple[int, int]], name: str, seq: int | None = None
) -> tuple[list[Found], int, int, int | None]:
    """Every sound block lying wholly within ``gaps`` of a data file.

    Args:
        fd: the open data file.
        gaps: ``[start, end)`` byte ranges to scan.
        name: the file's name, for the log.
        seq: the segment's number (default: read from ``name``).

    Returns:
        The blocks found (in file order), the damaged stretches skipped
        (each logged with its offset), the bytes read, and where the
        unreadable bytes that end the last gap start (None if none do).
    """
    number = int(name[4:20]) if seq is None else seq
    found: list[Found] = []
    skipped = 0
    end_of_file = max(end for _start, end in gaps)
    window = FileWindow(fd, end_of_file)
    tail: int | None = None
    for start, end in gaps:
        pos = start
        while pos < end:
            block = _block_at(window, pos, number)
            if block is not None and pos + block[2].length <= end:
                found.append(block)
                pos += block[2].length
                continue
            nxt = window.find(BLOCK_MARKER, pos + 1)
            while nxt != -1 and nxt < end and _block_at(window, nxt, number) is None:
                nxt = window.find(BLOCK_MARKER, nxt + 1)
            stop = end if nxt == -1 or nxt >= end else nxt
            if stop == end_of_file:
                tail = pos
            skipped += 1
            logger.warning(
                "Skipped %d unreadable bytes at %s:%d", stop - pos, name, pos
            )
            pos = stop
    return found, skipped, window.bytes_read, tail


def write_rescue_records(path: Path, covered: int, found: list[Found]) -> int:
    """Append checkpoint records listing ``found`` to an index file, fsynced.

    One record per run of adjacent blocks (a record lists consecutive
    blocks). ``covered`` claims no log the segment's own records did not.

    Returns:
        The index file's new size.
    """
    runs: list[list[Found]] = []
    for block in found:
        ref = block[2]
        if runs and runs[-1][-1][2].offset + runs[-1][-1][2].length == ref.offset:
            runs[-1].append(block)
        else:
            runs.append([block])
    records = b"".join(
        pack_record(
            KIND_CHECKPOINT,
            encode_checkpoint(
                covered,
                run[0][2].offset,
                [
                    (m, e, ref.length, ref.points, ref.min_ts, ref.max_ts)
                    for m, e, ref in run
                ],
            ),
        )
        for run in runs
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(records)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)
