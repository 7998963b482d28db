"""The retention floor: compacted logs stay on disk until every forwarder sent them.

The storage deletes the logs a checkpoint covered. With forwarders configured
it first asks :class:`ForwardRetention` (a
:class:`~statsyard.storage.LogRetention`) which of them to keep: every log
from the oldest *saved* cursor on (the cursor a restarted forwarder resumes
from), so a forwarder only ever reads the log, never the segments. A cap,
``backlog_max_bytes`` per forwarder, bounds the disk a lagging forwarder
holds: beyond it the oldest logs go anyway, and their unsent points are
counted in ``forward.dropped`` (reason ``retention``) and logged at ERROR.

A forwarder that never ran (no cursor file) holds nothing with
``start = "now"`` and everything (up to its cap) with ``start = "beginning"``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from statsyard.forward.cursor import Cursor, CursorFile, cursor_path
from statsyard.forward.instruments import ForwardInstruments
from statsyard.forward.log_reader import count_points
from statsyard.forward.progress import ForwardProgress
from statsyard.forward.settings import ForwardSettings
from statsyard.storage import wal_name

__all__ = ["ForwardRetention"]

logger = logging.getLogger(__name__)


class ForwardRetention:
    """Keeps the logs the forwarders still need (called in the writer's thread).

    Args:
        data_dir: the data directory.
        forwarders: each forwarder's settings, progress and instruments.
    """

    def __init__(
        self,
        data_dir: Path,
        forwarders: Mapping[
            str, tuple[ForwardSettings, ForwardProgress, ForwardInstruments]
        ],
    ) -> None:
        self._dir = data_dir
        self._forwarders = forwarders

    def _saved(
        self, settings: ForwardSettings, progress: ForwardProgress
    ) -> tuple[Cursor | None, bool]:
        """The saved cursor, and whether the forwarder resends from the oldest log."""
        known, cursor = progress.saved_cursor()
        if known:
            return cursor, False
        file = CursorFile(cursor_path(self._dir, settings.name))
        cursor = file.load()
        if cursor is not None:
            progress.saved(cursor)
        return cursor, file.damaged

    def keep(self, logs: Sequence[tuple[int, int]]) -> Collection[int]:
        """Of the covered logs ``(seq, size)``, those a forwarder has not sent."""
        keep: set[int] = set()
        for settings, progress, instruments in self._forwarders.values():
            cursor, damaged = self._saved(settings, progress)
            if cursor is None and settings.start == "now" and not damaged:
                continue
            first = 0 if cursor is None else cursor.seq
            needed = [(seq, size) for seq, size in logs if seq >= first]
            total = 0
            held: list[int] = []
            for seq, size in reversed(needed):
                if total + size > settings.backlog_max_bytes:
                    break
                total += size
                held.append(seq)
            keep.update(held)
            gone = [seq for seq, _ in needed if seq not in held]
            if gone:
                self._count_dropped(settings, instruments, cursor, gone)
        return keep

    def _count_dropped(
        self,
        settings: ForwardSettings,
        instruments: ForwardInstruments,
        cursor: Cursor | None,
        gone: list[int],
    ) -> None:
        points = sum(
            count_points(
                self._dir / wal_name(seq),
                cursor if cursor is not None and cursor.seq == seq else None,
            )
            for seq in gone
        )
        instruments.dropped("retention", points)
        logger.error(
            "Forwarder %s is more than backlog_max_bytes (%d) behind: deleting "
            "%s to %s with %d unsent points (counted in forward.dropped, "
            "reason retention)",
            settings.name,
            settings.backlog_max_bytes,
            wal_name(gone[0]),
            wal_name(gone[-1]),
            points,
        )
