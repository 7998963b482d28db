"""What the storage tells log readers (forwarders): where the log ends, what to keep.

Two small hooks let another thread follow the write-ahead log without going
through the writer's mailbox:

- :class:`LogEnd` is published by the writer after every append (one
  attribute store, atomic under the interpreter lock): a reader may read log
  ``seq`` up to ``size`` bytes, and every older log to its end. Bytes past it
  may be a record still being written; they are never read.
- A :class:`LogRetention` is asked, at each checkpoint and at open, which of
  the logs a checkpoint has covered must stay on disk because a reader has not
  finished with them. Without one, covered logs are deleted as before.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple, Protocol

__all__ = ["LogEnd", "LogRetention"]


class LogEnd(NamedTuple):
    """The end of the acknowledged log: read log ``seq`` up to ``size`` bytes."""

    seq: int
    """Number of the newest log file."""
    size: int
    """Bytes of it holding whole, appended records."""
    last_timestamp: int | None
    """Timestamp (ms) of the last point appended since the storage opened."""


class LogRetention(Protocol):
    """Decides which covered log files a reader still needs (writer's thread)."""

    def keep(self, logs: Sequence[tuple[int, int]]) -> Collection[int]:
        """Of the covered logs ``(seq, size)``, oldest first, the numbers to keep.

        Called in the writer's thread just before the others are deleted: it
        must be quick and must not raise (an exception keeps every log).
        """
        ...  # pragma: no cover (protocol)
