"""A forwarder's cursor: the next log record to send, persisted atomically.

The cursor names a position in the write-ahead log: log file ``seq``, byte
``offset`` of the next record in it, and ``skip`` points of that record
already sent (a record may hold more points than one request). It lives in
``<data_dir>/forward/<name>.cursor`` as one line with its own CRC-32:

    statsyard-forward-cursor 1 <seq> <offset> <skip> <crc32 of the fields>

:meth:`CursorFile.save` writes a temporary file and renames it over the old
one after every acknowledged batch, so a crashed or killed process resends at
most the batch in flight. It fsyncs the file and the directory only every
``sync_interval`` seconds: after a power loss the cursor may be older, and
more is resent, never less. A cursor file that is missing its CRC or fails it
(or cannot be read) is reported and ignored: the forwarder then starts from
the oldest log kept, since resending beats skipping.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

import attrs

__all__ = ["CURSOR_DIR", "Cursor", "CursorFile", "cursor_path"]

logger = logging.getLogger(__name__)

CURSOR_DIR: Final = "forward"
"""Subdirectory of the data directory holding the cursor files."""
_MAGIC: Final = "statsyard-forward-cursor 1"


@attrs.frozen(slots=True, order=True)
class Cursor:
    """A position in the log: the next point to send."""

    seq: int
    """Number of the log file."""
    offset: int
    """Byte offset of the next record in it."""
    skip: int = 0
    """Points of that record already sent."""


def cursor_path(data_dir: str | os.PathLike[str], name: str) -> Path:
    """Where forwarder ``name`` keeps its cursor."""
    return Path(data_dir) / CURSOR_DIR / f"{name}.cursor"


def _fields(cursor: Cursor) -> str:
    return f"{_MAGIC} {cursor.seq} {cursor.offset} {cursor.skip}"


def encode_cursor(cursor: Cursor) -> bytes:
    """The file content for ``cursor``."""
    fields = _fields(cursor)
    return f"{fields} {zlib.crc32(fields.encode()):08x}\n".encode()


def decode_cursor(data: bytes) -> Cursor:
    """Inverse of :func:`encode_cursor`.

    Raises:
        ValueError: not a cursor, or its checksum fails.
    """
    text = data.decode("ascii").strip()
    fields, _sep, crc = text.rpartition(" ")
    parts = fields.split(" ")
    if len(parts) != 5 or " ".join(parts[:2]) != _MAGIC:
        raise ValueError(f"not a forwarder cursor: {text[:80]!r}")
    if f"{zlib.crc32(fields.encode()):08x}" != crc:
        raise ValueError(f"cursor fails its checksum: {text[:80]!r}")
    seq, offset, skip = (int(part) for part in parts[2:])
    if min(seq, offset, skip) < 0:
        raise ValueError(f"cursor has a negative field: {text[:80]!r}")
    return Cursor(seq, offset, skip)


class CursorFile:
    """Loads and saves one forwarder's cursor (one thread at a time).

    Args:
        path: the cursor file.
        sync_interval: seconds between fsyncs (a save within it only renames).
        clock: monotonic seconds (tests inject one).
    """

    def __init__(
        self,
        path: Path,
        *,
        sync_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._sync_interval = sync_interval
        self._clock = clock
        self._last_sync = -float("inf")
        self._unsynced = False
        self.damaged = False
        """The last :meth:`load` found a cursor file it could not use."""

    def load(self) -> Cursor | None:
        """The saved cursor; None if there is none, or it is damaged or unreadable.

        A damaged or unreadable one is logged and sets :attr:`damaged`: the
        caller should then resend from the oldest log kept rather than skip.
        """
        self.damaged = False
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.damaged = True
            logger.warning("Cannot read cursor file %s: %s", self.path, exc)
            return None
        try:
            return decode_cursor(data)
        except (ValueError, UnicodeDecodeError) as exc:
            self.damaged = True
            logger.warning("Ignoring damaged cursor file %s: %s", self.path, exc)
            return None

    def save(self, cursor: Cursor, *, sync: bool = False) -> bool:
        """Replace the saved cursor atomically; fsync when due or ``sync``.

        Returns:
            True when this save was fsynced (file and directory).

        Raises:
            OSError: the file could not be written.
        """
        directory = self.path.parent
        directory.mkdir(exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        due = sync or self._clock() - self._last_sync >= self._sync_interval
        with open(tmp, "wb") as f:
            f.write(encode_cursor(cursor))
            if due:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if not due:
            self._unsynced = True
            return False
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._last_sync = self._clock()
        self._unsynced = False
        return True

    @property
    def unsynced(self) -> bool:
        """A save since the last fsync has not been fsynced."""
        return self._unsynced
