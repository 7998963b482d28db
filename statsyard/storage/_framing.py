"""Framing shared by every StatsYard data file: file headers and checksummed records.

A file starts with a 16-byte header (magic, format version, CRC of the header).
The write-ahead log and the segment index files then hold a sequence of
*records*, each a 16-byte header followed by its payload; the CRC-32 in the
record header covers the first 12 header bytes and the payload, so a torn or
flipped length is caught as surely as a flipped payload byte. See
``docs/storage.md`` for the byte layout.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Final

import attrs

from statsyard.exceptions import CorruptRecordError

FILE_HEADER: Final = struct.Struct("<8sHHI")
"""magic, format version, reserved (0), CRC-32 of the first 12 bytes."""
FILE_HEADER_SIZE: Final = FILE_HEADER.size  # 16

FORMAT_VERSION: Final = 2

WAL_MAGIC: Final = b"SYARDWAL"
SEGMENT_MAGIC: Final = b"SYARDSEG"
INDEX_MAGIC: Final = b"SYARDIDX"

RECORD_HEADER: Final = struct.Struct("<4sBBHII")
"""marker, record version, kind, reserved (0), payload length, CRC-32."""
RECORD_HEADER_SIZE: Final = RECORD_HEADER.size  # 16
RECORD_MARKER: Final = b"SYRC"
RECORD_VERSION: Final = 1

MAX_RECORD_PAYLOAD: Final = 256 * 2**20
"""Longest record payload a writer produces (``append`` refuses a bigger
batch); a length field above it is corruption, never trusted."""

SCAN_CHUNK: Final = 2**20
"""Bytes a file scan reads at a time (more only for one bigger record)."""


def inflate(data: bytes | memoryview, limit: int, what: str) -> bytes:
    """Decompress one whole zlib stream that must inflate to at most ``limit`` bytes.

    Never allocates more than ``limit`` bytes, however the stream was made
    (a decompression bomb is damage, not an allocation).

    Raises:
        CorruptRecordError: the stream is malformed, truncated, followed by
            stray bytes, or inflates past ``limit``.
    """
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CorruptRecordError(f"{what}: malformed zlib stream: {exc}") from exc
    if len(out) > limit:
        raise CorruptRecordError(
            f"{what}: inflates past the {limit} bytes its header allows"
        )
    if not inflater.eof:
        raise CorruptRecordError(f"{what}: zlib stream is truncated")
    if inflater.unused_data:
        raise CorruptRecordError(f"{what}: stray bytes after the zlib stream")
    return out


def pack_file_header(magic: bytes) -> bytes:
    """The 16-byte header that starts every file of kind ``magic``."""
    head = FILE_HEADER.pack(magic, FORMAT_VERSION, 0, 0)[:12]
    return head + struct.pack("<I", zlib.crc32(head))


def check_file_header(data: bytes, magic: bytes, path: str) -> None:
    """Raise :class:`CorruptRecordError` unless ``data`` starts with a good header.

    Args:
        data: at least the first 16 bytes of the file.
        magic: the magic expected for this kind of file.
        path: the file, for the error message.
    """
    if len(data) < FILE_HEADER_SIZE:
        raise CorruptRecordError(
            f"{path}: file header is truncated: expected {FILE_HEADER_SIZE} bytes, "
            f"got {len(data)}"
        )
    got_magic, version, _reserved, crc = FILE_HEADER.unpack_from(data)
    if got_magic != magic:
        raise CorruptRecordError(
            f"{path}: not a StatsYard file of this kind: expected magic {magic!r}, "
            f"got {got_magic!r}"
        )
    if zlib.crc32(data[:12]) != crc:
        raise CorruptRecordError(f"{path}: file header fails its checksum")
    if version != FORMAT_VERSION:
        raise CorruptRecordError(
            f"{path}: unsupported format version {version} "
            f"(this StatsYard reads version {FORMAT_VERSION})"
        )


def pack_record(kind: int, payload: bytes) -> bytes:
    """Frame ``payload`` as one checksummed record of ``kind``."""
    head = RECORD_HEADER.pack(RECORD_MARKER, RECORD_VERSION, kind, 0, len(payload), 0)[
        :12
    ]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


@attrs.define
class ScanResult:
    """What a scan of a record stream found."""

    records: list[tuple[int, int, bytes]] = attrs.Factory(list)
    """``(offset, kind, payload)`` of every good record, in file order."""
    skipped_records: int = 0
    """Damaged stretches skipped in the middle of the stream."""
    skipped_bytes: int = 0
    """Bytes in those stretches."""
    valid_end: int = 0
    """Offset just past the last good record (or the start when there is none)."""
    torn_bytes: int = 0
    """Bytes after ``valid_end`` that hold no good record: a torn tail."""
    bytes_read: int = 0
    """File bytes read by a streaming scan."""


class Cursor:
    """Reads consecutive fields of a payload, refusing to run past its end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, size: int) -> bytes:
        """The next ``size`` bytes.

        Raises:
            ValueError: fewer than ``size`` bytes are left.
        """
        end = self.pos + size
        if end > len(self.data):
            raise ValueError("a column runs past the end of the record")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def rest(self) -> bytes:
        """Everything not taken yet."""
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def record_at(data: bytes, pos: int) -> tuple[int, bytes] | None:
    """The ``(kind, payload)`` of a good record starting at ``pos``, else None."""
    end = len(data)
    if end - pos < RECORD_HEADER_SIZE:
        return None
    marker, version, kind, _reserved, length, crc = RECORD_HEADER.unpack_from(data, pos)
    if marker != RECORD_MARKER or version != RECORD_VERSION:
        return None
    start = pos + RECORD_HEADER_SIZE
    if length > MAX_RECORD_PAYLOAD or start + length > end:
        return None
    payload = data[start : start + length]
    if zlib.crc32(payload, zlib.crc32(data[pos : pos + 12])) != crc:
        return None
    return kind, payload


def next_data(fd: int, pos: int) -> int:
    """The first offset at or after ``pos`` that is not in a hole, or -1.

    Where the file system cannot tell (no ``SEEK_DATA``), ``pos`` itself.
    """
    try:
        return os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return -1  # only a hole from here to the end
        return pos


class FileWindow:
    """Reads a file through a bounded window: ``pread`` in chunks, never whole.

    Args:
        fd: an open regular file.
        end: bytes of the file to consider (its size when opened).
    """

    __slots__ = ("_base", "_buf", "_fd", "bytes_read", "end")

    def __init__(self, fd: int, end: int) -> None:
        self._fd = fd
        self.end = end
        self._base = 0
        self._buf = b""
        self.bytes_read = 0

    def get(self, pos: int, size: int) -> bytes | None:
        """Bytes ``[pos, pos + size)``, or None if the file ends before."""
        if pos + size > self.end:
            return None
        offset = pos - self._base
        if offset < 0 or offset + size > len(self._buf):
            self._base = pos
            self._buf = os.pread(self._fd, max(size, SCAN_CHUNK), pos)
            self.bytes_read += len(self._buf)
            offset = 0
            if len(self._buf) < size:  # shrank since it was measured
                self.end = pos + len(self._buf)
                return None
        return self._buf[offset : offset + size]

    def find(self, needle: bytes, pos: int) -> int:
        """Offset of the next ``needle`` at or after ``pos``, or -1.

        Holes of a sparse file (zeros, never a needle) are stepped over
        with ``SEEK_DATA`` instead of being read.
        """
        while pos + len(needle) <= self.end:
            pos = next_data(self._fd, pos)
            if pos == -1 or pos + len(needle) > self.end:
                return -1
            chunk = self.get(pos, min(SCAN_CHUNK, self.end - pos))
            if chunk is None:
                return -1
            found = chunk.find(needle)
            if found != -1:
                return pos + found
            pos += max(1, len(chunk) - len(needle) + 1)
        return -1


def _record_in(window: FileWindow, pos: int) -> tuple[int, bytes] | None:
    """The ``(kind, payload)`` of a good record at ``pos`` of a file, else None."""
    head = window.get(pos, RECORD_HEADER_SIZE)
    if head is None:
        return None
    marker, version, kind, _reserved, length, crc = RECORD_HEADER.unpack(head)
    if marker != RECORD_MARKER or version != RECORD_VERSION:
        return None
    if length > MAX_RECORD_PAYLOAD:
        return None
    payload = window.get(pos + RECORD_HEADER_SIZE, length)
    if payload is None or zlib.crc32(payload, zlib.crc32(head[:12])) != crc:
        return None
    return kind, payload


def scan_file(
    fd: int, start: int, end: int, result: ScanResult
) -> Iterator[tuple[int, int, bytes]]:
    """Yield every good record ``(offset, kind, payload)`` of a file, streaming.

    As :func:`scan_records`, but reads through a :class:`FileWindow`: memory
    stays within a chunk and one record, whatever the file's size. The
    counts (skips, torn tail, ``valid_end``) accumulate in ``result``.
    """
    window = FileWindow(fd, end)
    result.valid_end = pos = start
    try:
        while pos < window.end:
            found = _record_in(window, pos)
            if found is not None:
                kind, payload = found
                yield pos, kind, payload
                pos += RECORD_HEADER_SIZE + len(payload)
                result.valid_end = pos
                continue
            nxt = window.find(RECORD_MARKER, pos + 1)
            while nxt != -1 and _record_in(window, nxt) is None:
                nxt = window.find(RECORD_MARKER, nxt + 1)
            if nxt == -1:
                result.torn_bytes = window.end - pos
                break
            result.skipped_records += 1
            result.skipped_bytes += nxt - pos
            pos = nxt
    finally:
        result.bytes_read += window.bytes_read


def scan_records(data: bytes, start: int) -> ScanResult:
    """Read every good record of ``data`` from ``start``, resynchronising past damage.

    A record that fails its checks is skipped by searching forward for the next
    good record; if there is none, everything from the bad spot on is a torn
    tail (``torn_bytes``) rather than a skip.
    """
    result = ScanResult(valid_end=start)
    pos = start
    end = len(data)
    find = data.find
    while pos < end:
        found = record_at(data, pos)
        if found is not None:
            kind, payload = found
            result.records.append((pos, kind, payload))
            pos += RECORD_HEADER_SIZE + len(payload)
            result.valid_end = pos
            continue
        nxt = find(RECORD_MARKER, pos + 1)
        while nxt != -1 and record_at(data, nxt) is None:
            nxt = find(RECORD_MARKER, nxt + 1)
        if nxt == -1:
            result.torn_bytes = end - pos
            break
        result.skipped_records += 1
        result.skipped_bytes += nxt - pos
        pos = nxt
    return result
