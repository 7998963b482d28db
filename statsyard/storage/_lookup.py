"""Loading only the series a read names: found in index and log records at C speed.

A read-only open that names its series (``Storage.open_readonly(directory,
series=[...])``) still reads every index and log record (their checksums,
*covered*, damage), but makes block references and head points only for
those series: it finds their names in a checkpoint record's name columns
(one inflate, ``bytes.find``, offsets from accumulated lengths with
``bisect``), and their points in a batch record's series-number column
(``bytes.find`` of the number, or ``itertools.compress``), skipping every
other series at C speed.

Every record is still checked as fully as the whole decoders check it
(``decode_checkpoint``, ``decode_batch``): lengths, UTF-8 names, ranges. A
record that fails any check, or that this module does not read itself (a
batch of mixed or text values), goes to the whole decoder, which has the
last word: so a record is skipped and counted, with the same message, exactly
when a full open skips it, and a named series reads back the same.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate, compress
from operator import gt
from typing import Final, NamedTuple

from statsyard.datapoint import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from statsyard.storage._batch import (
    BATCH_HEADER,
    MAX_NAME_BYTES,
    MAX_TABLE_BYTES,
    VALUES_FLOAT64,
    VALUES_INT64,
    Batch,
    decode_batch,
    out_of_range,
)
from statsyard.storage._framing import inflate
from statsyard.storage._index import (
    CHECKPOINT_HEADER,
    MIN_BLOCK_BYTES,
    BlockRef,
    Checkpoint,
    decode_checkpoint,
)

_LITTLE: Final = sys.byteorder == "little"
_TABLE_ENTRY: Final = struct.Struct("<IHH")
"""A batch's series table entry: series number, metric length, entity length."""
_CONTINUATION: Final = re.compile(rb"[\x80-\xbf]")
"""A UTF-8 continuation byte: a name starting with one splits a character."""
_KEPT: Final = 4
"""Parsed series tables (and series columns) remembered: a writer repeats
the same one batch after batch, so the last few serve."""
_KEPT_BYTES: Final = 4 * 2**20
"""A table or column longer than this is not remembered (memory stays small)."""

SeriesKey = tuple[str, str]
Block = tuple[str, str, BlockRef]


class Listing(NamedTuple):
    """What a checkpoint record tells a loader: the blocks it lists, and its extent."""

    covered: int
    """Every log numbered up to this is in blocks."""
    extent: tuple[int, int] | None
    """``[first offset, data end)`` of the blocks it lists (None: none)."""
    span: tuple[int, int] | None
    """Earliest and latest timestamp of every block it lists (None: none)."""
    blocks: list[Block]
    """The blocks to index (all of them, or those of the series asked for)."""


def listing_of(checkpoint: Checkpoint) -> Listing:
    """The :class:`Listing` of a wholly decoded checkpoint record."""
    blocks = checkpoint.blocks
    if not blocks:
        return Listing(checkpoint.covered, None, None, blocks)
    refs = [ref for _m, _e, ref in blocks]
    return Listing(
        checkpoint.covered,
        (refs[0].offset, checkpoint.dat_end),
        (min(ref.min_ts for ref in refs), max(ref.max_ts for ref in refs)),
        blocks,
    )


def _column(typecode: str, data: bytes, start: int, count: int) -> array[int]:
    column = array(typecode)
    column.frombytes(data[start : start + column.itemsize * count])
    if not _LITTLE:
        column.byteswap()
    return column


def _names_decode(names: bytes, starts: Sequence[int]) -> bool:
    """Whether every name of a concatenation decodes as UTF-8 on its own.

    One C-speed decode of the whole, and no name starting on a continuation
    byte (which would split a character between two names).
    """
    if names.isascii():
        return True
    try:
        names.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    inside = starts[: bisect_left(starts, len(names))]  # starts never decrease
    firsts = bytes(map(names.__getitem__, inside))
    return _CONTINUATION.search(firsts) is None


_PLAIN_LOW: Final = 2**40
_PLAIN_HIGH: Final = 3 * 2**40
_PLAIN_RANGE: Final = MIN_TIMESTAMP_MS <= _PLAIN_LOW and _PLAIN_HIGH <= MAX_TIMESTAMP_MS


def _plainly_in_range(raw: bytes) -> bool:
    """Whether every little-endian int64 of ``raw`` lies in [2**40, 3 * 2**40).

    That is November 2004 to July 2074 in ms, inside the timestamps a writer
    accepts: byte 5 of each is 1 or 2, bytes 6 and 7 are zero. Three strided
    slices at C speed, no int made; False only means "check them one by one".
    """
    return _PLAIN_RANGE and not (
        raw[5::8].translate(None, b"\x01\x02")
        or raw[6::8].strip(b"\0")
        or raw[7::8].strip(b"\0")
    )


def _elements(
    data: bytes, starts: Sequence[int], lengths: Sequence[int], needle: bytes
) -> list[int]:
    """Indexes of the elements of a concatenation that equal ``needle``."""
    found = []
    count = len(lengths)
    pos = data.find(needle)
    while pos != -1:
        index = bisect_left(starts, pos)
        while index < count and starts[index] == pos:
            if lengths[index] == len(needle):
                found.append(index)
            index += 1
        pos = data.find(needle, pos + 1)
    return found


class _Offsets:
    """Block offsets of a checkpoint record, each summed when asked for."""

    def __init__(self, first: int, lengths: array[int]) -> None:
        self._first = first
        self._lengths = lengths

    def __getitem__(self, index: int) -> int:
        return self._first + sum(self._lengths[:index])  # C speed


class _Table(NamedTuple):
    numbers: frozenset[int]
    """Every series number the table names."""
    wanted: dict[int, SeriesKey]
    """Number -> series, for the series asked for."""


class SeriesSelection:
    """The series a read-only open loads; every other series is skipped.

    Args:
        series: ``(metric, entity)`` pairs; an entity of None selects every
            entity of the metric.

    Raises:
        TypeError: an item is not a ``(str, str | None)`` pair.
    """

    def __init__(self, series: Iterable[tuple[str, str | None]]) -> None:
        self._wanted: dict[str, set[str] | None] = {}
        for item in series:
            if (
                type(item) is not tuple
                or len(item) != 2
                or not isinstance(item[0], str)
                or not (item[1] is None or isinstance(item[1], str))
            ):
                raise TypeError(
                    f"series must be (metric, entity or None) pairs of str, "
                    f"got {item!r}"
                )
            metric, entity = item
            if entity is None:
                self._wanted[metric] = None
            elif metric not in self._wanted:
                self._wanted[metric] = {entity}
            else:
                entities = self._wanted[metric]
                if entities is not None:
                    entities.add(entity)
        self._tables: dict[tuple[bytes, int], _Table | None] = {}
        self._picks: dict[
            tuple[tuple[bytes, int], bytes], tuple[list[int], list[int]] | None
        ] = {}

    def wants(self, metric: str, entity: str) -> bool:
        """Whether the series is one of those selected."""
        if metric not in self._wanted:
            return False
        entities = self._wanted[metric]
        return entities is None or entity in entities

    # -- checkpoint records (segment indexes) ------------------------------------

    def checkpoint(self, segment: int, payload: bytes, dat_size: int) -> Listing:
        """The selected series' blocks a checkpoint record lists.

        Raises:
            CorruptRecordError: as :func:`decode_checkpoint` does, for the
                same records.
        """
        try:
            found = self._find_blocks(segment, payload, dat_size)
        except Exception:  # noqa: BLE001 (deliberate: the whole decoder judges)
            found = None
        if found is not None:
            return found
        listing = listing_of(decode_checkpoint(segment, payload, dat_size))
        blocks = [block for block in listing.blocks if self.wants(block[0], block[1])]
        return listing._replace(blocks=blocks)

    def _find_blocks(
        self, segment: int, payload: bytes, dat_size: int
    ) -> Listing | None:
        """As :func:`decode_checkpoint`, for the selected series only; None
        when a check fails (the whole decoder then judges the record)."""
        covered, first_offset, dat_end, n = CHECKPOINT_HEADER.unpack_from(payload)
        span = dat_end - first_offset
        if not 0 <= span <= dat_size - first_offset or n * MIN_BLOCK_BYTES > span:
            return None
        # The same bound as decode_checkpoint: a format-3 block may be shorter
        # than its 28 bytes of fields and its names in the record's body.
        names_at = 28 * n
        body = inflate(payload[CHECKPOINT_HEADER.size :], span + names_at, "checkpoint")
        if len(body) < names_at:
            return None
        m_lens = _column("H", body, 0, n)
        e_lens = _column("H", body, 2 * n, n)
        lengths = _column("I", body, 4 * n, n)
        counts = _column("I", body, 8 * n, n)
        min_ts = _column("q", body, 12 * n, n)
        max_ts = _column("q", body, 20 * n, n)
        m_starts = list(accumulate(m_lens, initial=0))
        e_starts = list(accumulate(e_lens, initial=0))
        entities_at = names_at + m_starts[-1]
        if entities_at + e_starts[-1] != len(body):
            return None
        if first_offset + sum(lengths) != dat_end:
            return None
        low = min(min_ts) if n else 0
        high = max(max_ts) if n else 0
        if n and (
            low < MIN_TIMESTAMP_MS
            or high >= MAX_TIMESTAMP_MS
            or any(map(gt, min_ts, max_ts))
            or min(lengths) < MIN_BLOCK_BYTES
            or min(counts) < 1
        ):
            return None
        metrics = body[names_at:entities_at]
        entities = body[entities_at:]
        if not (_names_decode(metrics, m_starts) and _names_decode(entities, e_starts)):
            return None
        indexes: set[int] = set()
        for metric, wanted in self._wanted.items():
            m = metric.encode("utf-8", "surrogatepass")
            if wanted is None:
                indexes.update(_elements(metrics, m_starts, m_lens, m))
                continue
            for entity in wanted:
                e = entity.encode("utf-8", "surrogatepass")
                # Search the rarer name; check the other at the same index.
                if metrics.count(m) <= entities.count(e):
                    candidates = _elements(metrics, m_starts, m_lens, m)
                    other, starts, lens, name = entities, e_starts, e_lens, e
                else:
                    candidates = _elements(entities, e_starts, e_lens, e)
                    other, starts, lens, name = metrics, m_starts, m_lens, m
                indexes.update(
                    i
                    for i in candidates
                    if other[starts[i] : starts[i] + lens[i]] == name
                )
        if len(indexes) > 8:  # else a sum per block found is cheaper
            offsets: list[int] | _Offsets = list(
                accumulate(lengths, initial=first_offset)
            )
        else:
            offsets = _Offsets(first_offset, lengths)
        blocks = [
            (
                metrics[m_starts[i] : m_starts[i + 1]].decode("utf-8", "surrogatepass"),
                sys.intern(
                    entities[e_starts[i] : e_starts[i + 1]].decode(
                        "utf-8", "surrogatepass"
                    )
                ),
                BlockRef(
                    segment,
                    offsets[i],
                    lengths[i],
                    counts[i],
                    min_ts[i],
                    max_ts[i],
                ),
            )
            for i in sorted(indexes)
        ]
        if not n:
            return Listing(covered, None, None, blocks)
        return Listing(covered, (first_offset, dat_end), (low, high), blocks)

    # -- batch records (logs) ------------------------------------------------------

    def batch(self, payload: bytes) -> Batch:
        """The selected series' points of a log record, as a :class:`Batch`.

        Raises:
            CorruptRecordError: as :func:`decode_batch` does, for the same
                records.
        """
        try:
            picked = self._pick_points(payload)
        except Exception:  # noqa: BLE001 (deliberate: the whole decoder judges)
            picked = None
        if picked is not None:
            return picked
        whole = decode_batch(payload)
        keys = {n: key for n, key in whole.keys.items() if self.wants(*key)}
        at = [i for i, n in enumerate(whole.series_numbers) if n in keys]
        values = whole.values
        return Batch(
            keys,
            [whole.series_numbers[i] for i in at],
            array("q", [whole.timestamps[i] for i in at]),
            (
                array(values.typecode, [values[i] for i in at])
                if isinstance(values, array)
                else [values[i] for i in at]
            ),
        )

    def _pick_points(self, payload: bytes) -> Batch | None:
        """As :func:`decode_batch`, for the selected series only; None when a
        check fails or the values are mixed or text (the whole decoder then
        reads the record)."""
        n_series, n_points, kind, table_len = BATCH_HEADER.unpack_from(payload, 0)
        if kind not in (VALUES_FLOAT64, VALUES_INT64):
            return None
        if n_series > n_points or 12 * n_points > len(payload):
            return None
        table_at = BATCH_HEADER.size
        numbers_at = table_at + table_len
        timestamps_at = numbers_at + 4 * n_points
        values_at = timestamps_at + 8 * n_points
        if len(payload) - values_at != 8 * n_points:
            return None
        table_key = (payload[table_at:numbers_at], n_series)
        table = self._table(table_key)
        if table is None:
            return None
        # A writer repeats a batch's series, in the same order, batch after
        # batch: the check and the positions of one column serve them all.
        raw_numbers = payload[numbers_at:timestamps_at]
        picks_key = (table_key, raw_numbers)
        if picks_key in self._picks:
            picks = self._picks[picks_key]
        else:
            picks = self._pick(table, raw_numbers, n_points)
            if len(self._picks) >= _KEPT:
                self._picks.clear()
            if len(raw_numbers) + len(table_key[0]) <= _KEPT_BYTES:
                self._picks[picks_key] = picks
        if picks is None:
            return None
        at, picked_numbers = picks
        raw_timestamps = payload[timestamps_at:values_at]
        timestamps = _column("q", raw_timestamps, 0, n_points)
        values: array[float] | array[int] = array(
            "d" if kind == VALUES_FLOAT64 else "q"
        )
        values.frombytes(payload[values_at:])
        if not _LITTLE:
            values.byteswap()
        # Timestamps: three byte planes at C speed when they plainly fit,
        # else as the whole decoder checks them.
        checked = () if _plainly_in_range(raw_timestamps) else timestamps
        if out_of_range(checked, values) is not None:
            return None
        return Batch(
            dict(table.wanted),
            list(picked_numbers),
            array("q", map(timestamps.__getitem__, at)),
            array(values.typecode, map(values.__getitem__, at)),
        )

    def _pick(
        self, table: _Table, raw_numbers: bytes, n_points: int
    ) -> tuple[list[int], list[int]] | None:
        """Positions and numbers of the selected series' points; None when a
        point's series is not in the table."""
        numbers = _column("I", raw_numbers, 0, n_points)
        if not table.numbers.issuperset(numbers):
            return None
        at = self._positions(table, raw_numbers, numbers)
        return at, list(map(numbers.__getitem__, at))

    @staticmethod
    def _positions(table: _Table, raw: bytes, numbers: array[int]) -> list[int]:
        """Positions of the selected series' points, in arrival order."""
        if not table.wanted:
            return []
        patterns = [number.to_bytes(4, "little") for number in table.wanted]
        if len(patterns) > 4 or sum(map(raw.count, patterns)) * 16 > len(numbers):
            # Many series or many points: one pass over the column.
            wanted = table.wanted.keys()
            return list(
                compress(range(len(numbers)), map(wanted.__contains__, numbers))
            )
        at: list[int] = []
        for pattern in patterns:
            pos = raw.find(pattern)
            while pos != -1:
                if pos % 4 == 0:
                    at.append(pos // 4)
                pos = raw.find(pattern, pos + 1)
        if len(patterns) > 1:
            at.sort()
        return at

    def _table(self, key: tuple[bytes, int]) -> _Table | None:
        """A batch's series table (compressed, and its entry count), parsed
        and checked (kept: writers repeat it)."""
        if key in self._tables:
            return self._tables[key]
        table = self._parse_table(*key)
        if len(self._tables) >= _KEPT:
            self._tables.clear()
        if len(key[0]) <= _KEPT_BYTES:
            self._tables[key] = table
        return table

    def _parse_table(self, compressed: bytes, n_series: int) -> _Table | None:
        """Walk a series table's entries (one ``unpack`` each), check every
        name at once, and find the selected series by ``bytes.find``."""
        limit = min(
            n_series * (_TABLE_ENTRY.size + 2 * MAX_NAME_BYTES), MAX_TABLE_BYTES
        )
        table = inflate(compressed, limit, "series table")
        unpack = _TABLE_ENTRY.unpack_from
        numbers: list[int] = []
        starts: list[int] = []
        splits: list[int] = []  # where each metric ends and its entity starts
        plain = bytearray(table)  # entry headers blanked: names decode at once
        blank = bytes(_TABLE_ENTRY.size)
        at = 0
        for _ in range(n_series):
            number, m_len, e_len = unpack(table, at)
            numbers.append(number)
            starts.append(at)
            plain[at : at + _TABLE_ENTRY.size] = blank
            at += _TABLE_ENTRY.size
            splits.append(at + m_len)
            at += m_len + e_len
        if at != len(table):
            return None
        # Each name decodes on its own: the whole decodes (names between
        # blanked headers), and no entity starts inside a character.
        if not _names_decode(bytes(plain), splits):
            return None
        unique = frozenset(numbers)
        wanted = self._wanted_in(table, numbers, starts, len(unique) == len(numbers))
        return _Table(unique, wanted)

    def _wanted_in(
        self, table: bytes, numbers: list[int], starts: list[int], unique: bool
    ) -> dict[int, SeriesKey]:
        """Number -> series of the selected series a checked table names."""
        count = len(starts)
        head = _TABLE_ENTRY.size
        found: set[int] = set()  # entry indexes
        for metric in self._wanted:
            name = metric.encode("utf-8", "surrogatepass")
            if not name or table.count(name) > count:  # a common name: each entry
                found.update(
                    i
                    for i, start in enumerate(starts)
                    if table.startswith(name, start + head)
                )
                continue
            pos = table.find(name)
            while pos != -1:
                index = bisect_left(starts, pos - head)
                if index < count and starts[index] == pos - head:
                    found.add(index)
                pos = table.find(name, pos + 1)
        wanted: dict[int, SeriesKey] = {}
        reversed_numbers = None if unique else numbers[::-1]
        for index in found:
            number = numbers[index]
            last = index
            if reversed_numbers is not None:  # a later entry of the number wins
                last = count - 1 - reversed_numbers.index(number)
            key = _entry_key(table, starts[last])
            if self.wants(*key):
                wanted[number] = key
        return wanted


def _entry_key(table: bytes, start: int) -> SeriesKey:
    """The series of the series-table entry at ``start`` (names checked)."""
    _number, m_len, e_len = _TABLE_ENTRY.unpack_from(table, start)
    at = start + _TABLE_ENTRY.size
    return (
        table[at : at + m_len].decode("utf-8", "surrogatepass"),
        table[at + m_len : at + m_len + e_len].decode("utf-8", "surrogatepass"),
    )


__all__ = ["Listing", "SeriesSelection", "listing_of"]
