"""Checkpoint records of a segment's index file: where each series' blocks are.

One record per checkpoint lists every block that checkpoint appended to the
segment's data file, and says which write-ahead log files it covers. The
record is the checkpoint's commit: blocks it does not list do not exist.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from itertools import accumulate, chain
from operator import gt
from typing import Final, NamedTuple

from statsyard.datapoint import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from statsyard.exceptions import CorruptRecordError
from statsyard.storage._batch import ints_from_le, le_bytes
from statsyard.storage._framing import Cursor, inflate

KIND_CHECKPOINT: Final = 2
"""Record kind of a checkpoint in a segment index file."""

CHECKPOINT_HEADER: Final = struct.Struct("<QQQI")
"""covered log number, offset of the first block, data file end, block count."""


class BlockRef(NamedTuple):
    """Where one block is, and what it holds."""

    segment: int
    """Number of the segment whose data file holds the block."""
    offset: int
    """Byte offset of the block in the data file."""
    length: int
    """Length of the block in bytes."""
    points: int
    """Points in the block."""
    min_ts: int
    """Earliest timestamp in the block."""
    max_ts: int
    """Latest timestamp in the block."""


class Checkpoint(NamedTuple):
    """A decoded checkpoint record."""

    covered: int
    """Every log file numbered up to this is in blocks."""
    dat_end: int
    """Size of the data file once this checkpoint's blocks were written."""
    blocks: list[tuple[str, str, BlockRef]]
    """``(metric, entity, where)`` of each block."""


def encode_checkpoint(
    covered: int, first_offset: int, blocks: list[tuple[str, str, int, int, int, int]]
) -> bytes:
    """Pack a checkpoint record's payload.

    Args:
        covered: the newest log file number whose points are all in blocks.
        first_offset: data file offset of the first block (the others follow).
        blocks: ``(metric, entity, length, count, min_ts, max_ts)`` per block,
            in data file order.
    """
    metrics = [block[0].encode("utf-8", "surrogatepass") for block in blocks]
    entities = [block[1].encode("utf-8", "surrogatepass") for block in blocks]
    columns = list(zip(*[block[2:] for block in blocks], strict=True)) or [()] * 4
    lengths, counts, min_ts, max_ts = columns
    dat_end = first_offset + sum(lengths)
    body = b"".join(
        [
            le_bytes(array("H", map(len, metrics))),
            le_bytes(array("H", map(len, entities))),
            le_bytes(array("I", lengths)),
            le_bytes(array("I", counts)),
            le_bytes(array("q", min_ts)),
            le_bytes(array("q", max_ts)),
            *metrics,
            *entities,
        ]
    )
    header = CHECKPOINT_HEADER.pack(covered, first_offset, dat_end, len(blocks))
    return header + zlib.compress(body, 6)


MIN_BLOCK_BYTES: Final = 21
"""A block is at least this long: a version-3 block's marker, version and
four varints (9 bytes), a first timestamp (6 bytes of varint, as every
timestamp since 2000 is at least 2**35), a value encoding and a value
(2 bytes), and its CRC (4 bytes); a version-2 block is at least 32."""
_FIELD_BYTES: Final = 28
"""Bytes of fixed-width fields a block has in a checkpoint record's body."""


def decode_checkpoint(segment: int, payload: bytes, dat_size: int) -> Checkpoint:
    """Unpack a checkpoint record's payload.

    Args:
        segment: the segment's number.
        payload: the record's payload.
        dat_size: the size of the segment's data file: the blocks listed
            must lie within it.

    Raises:
        CorruptRecordError: the payload is malformed, or lists blocks its
            data file could not hold.
    """
    try:
        return _decode_checkpoint(segment, payload, dat_size)
    except CorruptRecordError:
        raise
    except Exception as exc:  # deliberate: any failure to decode bytes is damage
        raise CorruptRecordError(f"malformed checkpoint record: {exc!r}") from exc


def _decode_checkpoint(segment: int, payload: bytes, dat_size: int) -> Checkpoint:
    covered, first_offset, dat_end, n = CHECKPOINT_HEADER.unpack_from(payload)
    span = dat_end - first_offset
    if not 0 <= span <= dat_size - first_offset or n * MIN_BLOCK_BYTES > span:
        raise CorruptRecordError(
            f"lists {n} blocks in bytes {first_offset}..{dat_end} of a "
            f"{dat_size}-byte data file"
        )
    # Each block holds its names and at least 21 other bytes: the body (28
    # bytes a block and the names) is at most the span and 28 bytes a block.
    limit = span + _FIELD_BYTES * n
    body = Cursor(inflate(payload[CHECKPOINT_HEADER.size :], limit, "checkpoint"))
    take = body.take

    m_lens = ints_from_le("H", take(2 * n))
    e_lens = ints_from_le("H", take(2 * n))
    lengths = ints_from_le("I", take(4 * n))
    counts = ints_from_le("I", take(4 * n))
    min_ts = ints_from_le("q", take(8 * n))
    max_ts = ints_from_le("q", take(8 * n))
    metrics = [take(size).decode("utf-8", "surrogatepass") for size in m_lens]
    # Entities repeat across series ("default", host names): one copy each.
    entities = [
        sys.intern(take(size).decode("utf-8", "surrogatepass")) for size in e_lens
    ]
    if n and (
        min(min_ts) < MIN_TIMESTAMP_MS
        or max(max_ts) >= MAX_TIMESTAMP_MS
        or any(map(gt, min_ts, max_ts))
        or min(lengths) < MIN_BLOCK_BYTES
        or min(counts) < 1
    ):
        raise CorruptRecordError("checkpoint record lists an impossible block")
    offsets = list(accumulate(chain((first_offset,), lengths)))
    if body.pos != len(body.data) or offsets[-1] != dat_end:
        raise CorruptRecordError("checkpoint record is inconsistent")
    blocks = [
        (m, e, BlockRef(segment, offset, length, count, low, high))
        for m, e, offset, length, count, low, high in zip(
            metrics, entities, offsets, lengths, counts, min_ts, max_ts, strict=False
        )
    ]
    return Checkpoint(covered, dat_end, blocks)


KIND_MERGE: Final = 4
"""Record kind, in a segment index file, naming the segments a merge replaced
(format 5; kind 3 is the log's compressed batch)."""

_MERGE_HEADER: Final = struct.Struct("<I")
MAX_MERGE_SOURCES: Final = 1 << 20
"""More sources than this in a merge record is damage."""


def encode_merge(sources: list[int]) -> bytes:
    """Pack a merge record's payload: the numbers of the segments replaced."""
    return _MERGE_HEADER.pack(len(sources)) + le_bytes(array("q", sources))


def decode_merge(payload: bytes) -> list[int]:
    """Unpack a merge record's payload (see :func:`encode_merge`).

    Raises:
        CorruptRecordError: the payload is malformed.
    """
    if len(payload) < _MERGE_HEADER.size:
        raise CorruptRecordError("merge record is too short")
    (count,) = _MERGE_HEADER.unpack_from(payload)
    if count > MAX_MERGE_SOURCES or len(payload) != _MERGE_HEADER.size + 8 * count:
        raise CorruptRecordError(f"merge record of {len(payload)} bytes names {count}")
    sources = list(ints_from_le("q", payload[_MERGE_HEADER.size :]))
    if any(seq < 1 for seq in sources):
        raise CorruptRecordError("merge record names an impossible segment")
    return sources
