"""Checkpoints compacted in a worker process: same blocks, each point once, any failure.

A storage opened with ``compaction_worker=True`` freezes its head at a
checkpoint and has a worker process encode the blocks while it appends to
a new head. These tests stop (SIGSTOP) the worker to hold a compaction in
flight for as long as they need, and kill it (SIGKILL) to make it fail.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import threading
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.datapoint import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from statsyard.exceptions import WriteError
from statsyard.storage import Storage
from statsyard.storage import _compaction as compaction
from statsyard.storage._batch import value_column
from statsyard.storage._blocks import encode_block
from statsyard.storage._head import Head
from tests._stored import stored_points

TESTS = Path(__file__).resolve().parent
WAIT = 60.0
TS = 1_700_000_000_000
METRICS = ("cpu", "mem", "disk")


def rows(start: int, count: int) -> list[tuple[str, str, float, int]]:
    """``count`` points, numbered from ``start``: distinct timestamps per series."""
    return [
        (METRICS[i % 3], f"host{i % 7}", i * 0.5, TS + i * 10)
        for i in range(start, start + count)
    ]


def expected(count: int) -> list[tuple[str, str, int, float]]:
    """What :func:`rows` from 0 reads back as, in :func:`stored_points`' order."""
    return sorted((m, e, ts, v) for m, e, v, ts in rows(0, count))


def raw_points(storage: Storage) -> int:
    """Points held, counting a point twice if it were both in blocks and a head."""
    catalog = storage._catalog
    with catalog.lock:
        keys = list(catalog.index)
    in_blocks = sum(ref.points for key in keys for ref in catalog.refs(key))
    return in_blocks + storage.head_points


class Ready:
    """The ``compaction_ready`` callback: an event per result."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self) -> None:
        self.event.set()

    def wait(self) -> None:
        assert self.event.wait(WAIT), "the worker's result never came"
        self.event.clear()


@pytest.fixture
def ready() -> Ready:
    return Ready()


@pytest.fixture
def storage(tmp_path: Path, ready: Ready) -> Iterator[Storage]:
    s = open_with_worker(tmp_path / "d", ready, 5_000)
    yield s
    s.close()


def open_with_worker(path: Path, ready: Ready, checkpoint_points: int) -> Storage:
    """A storage compacting in a worker, telling ``ready`` of each result."""
    return Storage.open(
        path,
        checkpoint_points=checkpoint_points,
        compaction_worker=True,
        compaction_ready=ready,
    )


def start_worker(storage: Storage, ready: Ready, appended: int) -> int:
    """Append past a checkpoint and let the worker finish it; the worker's pid."""
    storage.append(rows(appended, 5_000))
    assert storage.compacting
    ready.wait()
    assert storage.finish_checkpoint() == 1
    pid = storage.compaction_worker_pid
    assert pid is not None
    return pid


def test_the_worker_writes_the_blocks_the_writer_would_have(tmp_path: Path) -> None:
    """Same appends, same checkpoints: byte-identical segment files either way."""
    ready = Ready()
    inline = Storage.open(tmp_path / "inline", checkpoint_points=5_000)
    worker = open_with_worker(tmp_path / "worker", ready, 5_000)
    for start in range(0, 23_000, 2_300):
        for storage in (inline, worker):
            storage.append(rows(start, 2_300))
        if worker.compacting:
            ready.wait()
            worker.finish_checkpoint()
    assert worker.checkpoints_done == inline.checkpoints_done >= 3
    assert worker.compaction_fallbacks == 0
    for storage in (inline, worker):
        storage.close(compact=True)
    names = sorted(p.name for p in (tmp_path / "inline").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "worker").iterdir())
    for name in names:
        if name.startswith(("seg", "idx")) or name.endswith((".dat", ".idx")):
            assert (tmp_path / "inline" / name).read_bytes() == (
                tmp_path / "worker" / name
            ).read_bytes(), name
    assert stored_points(tmp_path / "worker") == expected(23_000)


def test_appends_go_on_while_the_worker_compacts(
    storage: Storage, ready: Ready
) -> None:
    """A stopped worker holds a checkpoint in flight; appends and queries go on,
    every point read once, until the blocks come back and are committed."""
    pid = start_worker(storage, ready, 0)
    os.kill(pid, signal.SIGSTOP)
    try:
        storage.append(rows(5_000, 5_000))  # due: the head is frozen, sent
        assert storage.compacting
        storage.append(rows(10_000, 4_000))  # into the new head, no waiting
        assert raw_points(storage) == 14_000
        assert storage.head_points == 9_000
        got = storage.query("cpu")
        assert sum(map(len, got.values())) == len(range(0, 14_000, 3))
    finally:
        os.kill(pid, signal.SIGCONT)
    ready.wait()
    assert storage.finish_checkpoint() == 1
    assert storage.head_points == 4_000
    assert raw_points(storage) == 14_000
    assert storage.compaction_worker_pid == pid  # the same worker serves on


def test_queries_racing_compactions_see_every_point_once(tmp_path: Path) -> None:
    """Random appends, checkpoints and commits while threads query: each query
    sees every point appended before it, with its value; the count of points
    held (blocks plus heads) always equals the points appended."""
    rng = random.Random(1313)
    ready = Ready()
    storage = open_with_worker(tmp_path / "d", ready, 3_000)
    appended = 0
    stop = threading.Event()
    problems: list[str] = []

    def query(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set() and not problems:
            before = appended
            metric = rng.choice(METRICS)
            got = storage.query(metric)
            seen = {ts: v for points in got.values() for ts, v in points}
            first = METRICS.index(metric)
            want = {TS + i * 10: i * 0.5 for i in range(first, before, 3)}
            if any(seen.get(ts) != v for ts, v in want.items()):
                problems.append(f"a {metric} query after {before} points missed some")
            if len(seen) > appended:
                problems.append(f"a {metric} query saw {len(seen)} of {appended}")

    threads = [threading.Thread(target=query, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(120):
            size = rng.choice((1, 50, 700, 2_000))
            storage.append(rows(appended, size))
            appended += size
            action = rng.random()
            if action < 0.1:
                storage.start_checkpoint()
            elif action < 0.2 and ready.event.wait(0):
                ready.event.clear()
                storage.finish_checkpoint()
            elif action < 0.25:
                storage.checkpoint()
            assert raw_points(storage) == appended
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    assert not problems, problems[:3]
    assert storage.checkpoints_done > 5
    assert storage.compaction_fallbacks == 0
    storage.close(compact=True)
    assert stored_points(tmp_path / "d") == expected(appended)


def test_a_worker_killed_mid_compaction_loses_and_doubles_nothing(
    tmp_path: Path, storage: Storage, ready: Ready, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer encodes the frozen head itself; the next checkpoint starts
    a new worker."""
    pid = start_worker(storage, ready, 0)
    os.kill(pid, signal.SIGSTOP)
    storage.append(rows(5_000, 5_000))
    assert storage.compacting
    os.kill(pid, signal.SIGKILL)
    ready.wait()
    with caplog.at_level(logging.WARNING, logger="statsyard.storage"):
        assert storage.finish_checkpoint() == 1
    assert "Compaction worker failed, compacting in the writer's thread" in caplog.text
    assert storage.compaction_fallbacks == 1
    assert storage.compaction_worker_pid is None
    assert not psutil.pid_exists(pid)
    assert raw_points(storage) == 10_000
    assert storage.head_points == 0
    new_pid = start_worker(storage, ready, 10_000)
    assert new_pid != pid
    storage.close()
    assert stored_points(tmp_path / "d") == expected(15_000)


def test_blocks_that_fail_to_be_written_are_kept_and_written_later(
    tmp_path: Path, storage: Storage, ready: Ready, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk when the worker's blocks come back: WriteError, the frozen
    head stays readable, and the next call writes the same blocks."""
    start_worker(storage, ready, 0)
    storage.append(rows(5_000, 5_000))
    ready.wait()
    real_write = os.write

    def full_for_segments(fd: int, data: Any) -> int:
        if "seg-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_segments)
    with pytest.raises(WriteError) as failed:
        storage.finish_checkpoint()
    monkeypatch.undo()
    assert failed.value.errno == errno.ENOSPC
    assert storage.compacting
    assert raw_points(storage) == 10_000
    assert sum(map(len, storage.query("mem").values())) == len(range(1, 10_000, 3))
    assert storage.finish_checkpoint() == 1
    assert storage.compaction_fallbacks == 0
    assert raw_points(storage) == 10_000
    storage.close()
    assert stored_points(tmp_path / "d") == expected(10_000)


def test_closing_abandons_a_compaction_in_flight_and_stops_the_worker(
    tmp_path: Path, storage: Storage, ready: Ready
) -> None:
    """close() without compacting neither waits nor commits: the log has the points."""
    pid = start_worker(storage, ready, 0)
    os.kill(pid, signal.SIGSTOP)
    storage.append(rows(5_000, 6_000))
    assert storage.compacting
    storage.close()
    assert not psutil.pid_exists(pid)
    reader = Storage.open_readonly(tmp_path / "d")
    assert reader.head_points == 6_000
    reader.close()
    assert stored_points(tmp_path / "d") == expected(11_000)


def test_closing_with_compact_waits_for_the_worker(
    tmp_path: Path, storage: Storage, ready: Ready
) -> None:
    """close(compact=True) commits the compaction in flight, then the rest."""
    pid = start_worker(storage, ready, 0)
    storage.append(rows(5_000, 5_000))
    storage.append(rows(10_000, 123))
    storage.close(compact=True)
    assert not psutil.pid_exists(pid)
    reader = Storage.open_readonly(tmp_path / "d")
    assert reader.head_points == 0
    reader.close()
    assert stored_points(tmp_path / "d") == expected(10_123)


@pytest.mark.parametrize(
    ("handler", "reason"),
    [("_worker_handlers:fail", "cannot handle"), ("_worker_handlers:echo", "does not")],
)
def test_a_worker_that_fails_is_replaced_then_given_up(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    handler: str,
    reason: str,
) -> None:
    """A worker raising, or replying with blocks that do not add up, is never
    committed: the writer encodes the head, and after MAX_FAILURES it stops
    starting workers, saying so once."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setattr(compaction, "HANDLER", handler)
    ready = Ready()
    storage = open_with_worker(tmp_path / "d", ready, 1_000)
    with caplog.at_level(logging.WARNING, logger="statsyard.storage"):
        for start in range(0, 5 * 1_000, 1_000):
            storage.append(rows(start, 1_000))
            if storage.compacting:
                ready.wait()
                assert storage.finish_checkpoint() == 1
            assert raw_points(storage) == start + 1_000
    assert storage.compaction_fallbacks == compaction.MAX_FAILURES
    assert storage.checkpoints_done == 5
    assert reason in caplog.text
    given_up = [r for r in caplog.records if "from now on" in r.getMessage()]
    assert len(given_up) == 1
    assert given_up[0].levelno == logging.ERROR
    assert storage.compaction_worker_pid is None
    storage.close()
    assert stored_points(tmp_path / "d") == expected(5_000)


names = st.text(st.characters(codec="utf-8"), max_size=5)


@settings(max_examples=60, deadline=None)
@given(
    series=st.lists(st.tuples(names, names), min_size=1, max_size=8, unique=True),
    picks=st.lists(
        st.tuples(
            st.integers(0, 7),
            st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
            st.one_of(
                st.floats(allow_nan=False, allow_infinity=False),
                st.integers(-(2**63), 2**63 - 1),
            ),
        ),
        min_size=1,
        max_size=300,
    ),
    kind=st.sampled_from(["float", "int", "mixed"]),
    first=st.integers(0, 3),
    chunk=st.integers(1, 100),
)
def test_a_request_round_trip_encodes_what_the_writer_would(
    series: list[tuple[str, str]],
    picks: list[tuple[int, int, float | int]],
    kind: str,
    first: int,
    chunk: int,
) -> None:
    """Columns of any kind the storage holds (floats, int64s, both mixed), in
    chunks, keys sent in parts: the worker's blocks are byte for byte the
    writer's own (Head.groups, then encode_block)."""
    keys = series
    numbers = array("I", [n % len(keys) for n, _, _ in picks])
    stamps = array("q", [ts for _, ts, _ in picks])
    values: list[float | int]
    if kind == "float":
        values = [float(v) for _, _, v in picks]
    elif kind == "int":
        values = [v if isinstance(v, int) else 7 for _, _, v in picks]
    else:
        values = [v for _, _, v in picks]
    head = Head()
    head.add(numbers, stamps, value_column(values))
    state = compaction._WorkerState()
    state.keys.extend(keys[: min(first, len(keys))])
    old_state, compaction._state = compaction._state, state
    sent = min(first, len(keys))
    try:
        replies = [
            compaction.handle(b"".join(bytes(memoryview(p).cast("B")) for p in parts))
            for parts in compaction.encode_requests(head, sent, keys[sent:], chunk)
        ]
    finally:
        compaction._state = old_state
    assert all(reply == b"" for reply in replies[:-1])
    got = compaction.decode_reply(replies[-1], len(picks), len(keys))
    blocks: list[bytes] = []
    want_rows: array[int] = array("q")
    kind_seen = head.value_kind()
    for number, ts, vs in head.groups():
        block, low, high = encode_block(*keys[number], ts, vs, kind_seen)
        blocks.append(block)
        want_rows.extend((number, len(block), len(ts), low, high))
    assert got.data == b"".join(blocks)
    assert got.rows == want_rows
    assert compaction.encode_head(head, keys) == got
