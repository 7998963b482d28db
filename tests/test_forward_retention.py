"""The retention floor: covered logs stay until sent, within a cap."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from statsyard.forward.cursor import Cursor, CursorFile, cursor_path
from statsyard.forward.instruments import ForwardInstruments
from statsyard.forward.log_reader import count_points
from statsyard.forward.progress import ForwardProgress
from statsyard.forward.retention import ForwardRetention
from statsyard.forward.settings import ForwardSettings
from statsyard.metrics import Registry
from statsyard.storage import WAL_PATTERN, Storage, numbered

TS = 1_700_000_000_000


def logs_of(tmp_path: Path, count: int) -> tuple[Path, list[tuple[int, int]]]:
    """A data directory with ``count`` full logs; their ``(seq, size)``."""
    data_dir = tmp_path / "data"
    with Storage.open(data_dir, segment_bytes=2000, checkpoint_points=None) as store:
        while len(numbered(data_dir, WAL_PATTERN)) <= count:
            store.append([("m", "e", float(i), TS + i) for i in range(40)])
    found = numbered(data_dir, WAL_PATTERN)[:count]
    return data_dir, [(seq, path.stat().st_size) for seq, path in found]


def retention(
    data_dir: Path, registry: Registry, **settings: Any
) -> tuple[ForwardRetention, ForwardProgress, ForwardInstruments]:
    forward = ForwardSettings(name="f", kind="graphite", address="h:1", **settings)
    progress = ForwardProgress("f")
    instruments = ForwardInstruments(registry, "f")
    keeper = ForwardRetention(data_dir, {"f": (forward, progress, instruments)})
    return keeper, progress, instruments


def test_logs_from_the_saved_cursor_on_are_kept(tmp_path: Path) -> None:
    """The floor is the cursor on disk (where a restart resumes), read lazily."""
    data_dir, logs = logs_of(tmp_path, 5)
    CursorFile(cursor_path(data_dir, "f")).save(Cursor(logs[2][0], 100))
    keeper, progress, _ = retention(data_dir, Registry())
    assert set(keeper.keep(logs)) == {seq for seq, _ in logs[2:]}
    progress.saved(Cursor(logs[4][0], 16))
    assert set(keeper.keep(logs)) == {logs[4][0]}


def test_without_a_cursor_now_keeps_nothing_and_beginning_keeps_all(
    tmp_path: Path,
) -> None:
    """A forwarder that never ran holds logs only if it will send history."""
    data_dir, logs = logs_of(tmp_path, 3)
    assert set(retention(data_dir, Registry(), start="now")[0].keep(logs)) == set()
    assert set(retention(data_dir, Registry(), start="beginning")[0].keep(logs)) == {
        seq for seq, _ in logs
    }


def test_beyond_the_cap_the_oldest_go_and_their_unsent_points_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """backlog_max_bytes bounds what one lagging forwarder holds."""
    data_dir, logs = logs_of(tmp_path, 4)
    cap = logs[2][1] + logs[3][1]
    registry = Registry()
    keeper, progress, instruments = retention(data_dir, registry, backlog_max_bytes=cap)
    cursor = Cursor(logs[0][0], 16, 5)
    progress.saved(cursor)
    paths = dict(numbered(data_dir, WAL_PATTERN))
    unsent = count_points(paths[logs[0][0]], cursor) + count_points(paths[logs[1][0]])
    with caplog.at_level(logging.ERROR):
        kept = set(keeper.keep(logs))
    assert kept == {logs[2][0], logs[3][0]}
    assert instruments.dropped_count("retention") == unsent > 0
    assert "more than backlog_max_bytes" in caplog.text


class KeepFrom:
    """A LogRetention keeping covered logs numbered ``floor`` and above."""

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.asked: list[list[int]] = []

    def keep(self, logs: Sequence[tuple[int, int]]) -> list[int]:
        self.asked.append([seq for seq, _ in logs])
        if self.floor < 0:
            raise RuntimeError("broken hook")
        return [seq for seq, _ in logs if seq >= self.floor]


def wal_seqs(data_dir: Path) -> list[int]:
    return [seq for seq, _ in numbered(data_dir, WAL_PATTERN)]


def test_the_storage_asks_the_hook_at_checkpoints_and_at_open(tmp_path: Path) -> None:
    """Covered logs the hook keeps survive checkpoints and reopening; then go."""
    data_dir = tmp_path / "data"
    hook = KeepFrom(1)
    with Storage.open(data_dir, checkpoint_points=None, log_retention=hook) as store:
        store.append([("m", "e", 1.0, TS)])
        store.checkpoint()
        store.append([("m", "e", 2.0, TS + 1)])
        store.checkpoint()
        assert wal_seqs(data_dir) == [1, 2, 3]  # 1 and 2 covered but kept
        assert hook.asked[-1] == [1, 2]
        hook.floor = 2
        store.append([("m", "e", 3.0, TS + 2)])
        store.checkpoint()
        assert wal_seqs(data_dir) == [2, 3, 4]
        assert store.log_end.seq == 4
    with Storage.open(data_dir, log_retention=KeepFrom(3)) as store:
        assert wal_seqs(data_dir) == [3, 4]
        assert store.query("m") == {"e": [(TS, 1.0), (TS + 1, 2.0), (TS + 2, 3.0)]}
    with Storage.open(data_dir, log_retention=KeepFrom(-1)) as store:
        assert wal_seqs(data_dir) == [3, 4]  # a failing hook keeps them
    with Storage.open(data_dir) as store:
        assert wal_seqs(data_dir) == [4]  # no hook: deleted as before
        assert store.log_end == store.opened_log_end == (4, 16, None)
