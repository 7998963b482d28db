"""Merge compaction: old segments of small blocks rewritten into large blocks.

Every test compares what queries read through the public API (``Storage``)
before and after merges, after a reopen, after a fault at each step of a
merge, and from the directory as a crash at each step would leave it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statsyard.exceptions import WriteError
from statsyard.storage import Storage
from statsyard.storage._files import (
    MARKER_NAME,
    MARKER_TEXT,
    MARKER_TEXT_3,
    MARKER_TEXT_4,
)
from tests._processes import ends

TS = 1_700_000_000_000
WAIT = 60.0
SERIES = [("cpu", "a"), ("cpu", "b"), ("mem", "a")]

Snapshot = dict[tuple[str, str], list[tuple[int, Any]]]


def everything(storage: Storage) -> Snapshot:
    """Every series' raw points, as queries read them."""
    found: Snapshot = {}
    for metric, entity in storage.series("**"):
        points = storage.query(metric, entity).get(entity, [])
        if points:
            found[(metric, entity)] = points
    return found


def model_of(writes: list[tuple[str, str, Any, int]]) -> Snapshot:
    """What queries must read after ``writes``: one point per timestamp, the last."""
    last: dict[tuple[str, str], dict[int, Any]] = {}
    for metric, entity, value, ts in writes:
        last.setdefault((metric, entity), {})[ts] = value
    return {key: sorted(points.items()) for key, points in last.items()}


def block_points(storage: Storage) -> int:
    """Points in the blocks the storage lists (a point stored twice counts twice)."""
    catalog = storage._catalog
    with catalog.lock:
        return sum(
            ref.points for key in list(catalog.index) for ref in catalog.refs(key)
        )


def segment_files(directory: Path) -> list[str]:
    """Names of the segment and temporary files."""
    return sorted(
        name
        for name in os.listdir(directory)
        if name.startswith(("seg-", "merge.")) or name.endswith(".tmp")
    )


def fill(
    directory: Path, minutes: int, *, series: int = 4, segment_bytes: int = 2**26
) -> list[tuple[str, str, Any, int]]:
    """A minute of points a series per checkpoint, as a running service makes
    (a new segment once one holds ``segment_bytes``)."""
    writes: list[tuple[str, str, Any, int]] = []
    with Storage.open(
        directory, checkpoint_points=None, segment_bytes=segment_bytes
    ) as storage:
        for minute in range(minutes):
            batch = [
                (
                    f"m{k}",
                    "host",
                    (minute * 60 + second) * (k + 1) * 0.25,
                    TS + (minute * 60 + second) * 1000,
                )
                for second in range(60)
                for k in range(series)
            ]
            storage.append(batch)
            writes += batch
            storage.checkpoint()
    return writes


# -- semantics ------------------------------------------------------------------


def test_merge_rewrites_small_blocks_into_large_ones_and_reads_the_same(
    tmp_path: Path,
) -> None:
    """Ten checkpoints of 60 points a series become one block a series in one
    segment; every query reads what it read before, and after a reopen."""
    writes = fill(tmp_path, 10)
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        before = everything(storage)
        assert before == model_of(writes)
        assert storage.merge(seal=True) == 1
        assert storage.merges_done == 1
        assert everything(storage) == before
        catalog = storage._catalog
        assert [len(catalog.refs((f"m{k}", "host"))) for k in range(4)] == [1] * 4
    assert segment_files(tmp_path) == [
        "seg-0000000000000002.dat",
        "seg-0000000000000002.idx",
    ]
    with Storage.open(tmp_path) as storage:
        assert everything(storage) == before
        assert block_points(storage) == sum(map(len, before.values()))
    reader = Storage.open_readonly(tmp_path)
    assert everything(reader) == before
    one = Storage.open_readonly(tmp_path, series=[("m1", "host")])
    assert one.query("m1", "host") == {"host": before[("m1", "host")]}


def test_blocks_are_split_at_merge_block_points(tmp_path: Path) -> None:
    """Merged blocks hold at most ``merge_block_points`` points, evenly split."""
    writes = fill(tmp_path, 5, series=1)
    with Storage.open(
        tmp_path, checkpoint_points=None, merge_block_points=150
    ) as storage:
        assert storage.merge(seal=True) == 1
        refs = storage._catalog.refs(("m0", "host"))
        assert [ref.points for ref in refs] == [150, 150]
        assert everything(storage) == model_of(writes)


def test_a_later_rewrite_still_wins_over_merged_points(tmp_path: Path) -> None:
    """A timestamp written again in a later segment (and in the head) keeps
    its last value after the older segments are merged into a segment
    numbered above that later one."""
    writes = fill(tmp_path, 4, series=2, segment_bytes=150)  # a segment each
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        again = [("m0", "host", -1.5, TS + 1000), ("m1", "host", -2.5, TS + 61_000)]
        storage.append(again)
        storage.checkpoint()  # into the newest segment, not sealed: not merged
        head = [("m0", "host", -9, TS + 2000)]
        storage.append(head)
        writes += again + head
        assert storage.merge() == 3  # the three older segments, numbered 5
        assert everything(storage) == model_of(writes)
    with Storage.open(tmp_path) as storage:
        assert everything(storage) == model_of(writes)


def test_a_block_damaged_in_a_source_keeps_its_segment_out_of_merges(
    tmp_path: Path,
) -> None:
    """A merge never drops bytes it cannot read: a segment with a damaged
    block is not merged (its other blocks still read)."""
    fill(tmp_path, 3)
    dat = tmp_path / "seg-0000000000000001.dat"
    data = bytearray(dat.read_bytes())
    data[40] ^= 0xFF  # inside the first block
    dat.write_bytes(bytes(data))
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        before = everything(storage)
        assert storage.merge(seal=True) == 0
        assert everything(storage) == before
    assert "seg-0000000000000001.dat" in segment_files(tmp_path)


@pytest.mark.parametrize("older", [MARKER_TEXT_3, MARKER_TEXT_4])
def test_an_older_directory_is_upgraded_in_place(tmp_path: Path, older: bytes) -> None:
    """A format-3 or -4 directory reads as it is; the first writer marks it
    format 5 (an older StatsYard would take merge records for damage)."""
    writes = fill(tmp_path, 2)
    (tmp_path / MARKER_NAME).write_bytes(older)
    reader = Storage.open_readonly(tmp_path)
    assert everything(reader) == model_of(writes)
    assert (tmp_path / MARKER_NAME).read_bytes() == older
    with Storage.open(tmp_path) as storage:
        assert (tmp_path / MARKER_NAME).read_bytes() == MARKER_TEXT
        assert MARKER_TEXT.endswith(b"format 5\n")
        storage.merge(seal=True)
        assert everything(storage) == model_of(writes)


def test_retention_by_age_removes_a_merged_segment_of_old_points(
    tmp_path: Path,
) -> None:
    """A merged segment, numbered above newer segments, still goes by age."""
    fill(tmp_path, 3)
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        storage.merge(seal=True)
        storage.append([("new", "host", 1.0, TS + 10**10)])
        storage.checkpoint()
        storage.append([("new", "host", 2.0, TS + 10**10 + 1)])
        storage.checkpoint()
    now = TS + 10**10 + 1000
    with Storage.open(tmp_path, retention_max_age_ms=now - TS - 10**9) as storage:
        assert storage.series("m*") == []
        assert storage.query("new", "host") == {
            "host": [(TS + 10**10, 1.0), (TS + 10**10 + 1, 2.0)]
        }


# -- the property ---------------------------------------------------------------

_batch = st.lists(
    st.tuples(
        st.sampled_from(SERIES),
        st.integers(0, 8),
        st.one_of(st.integers(-5, 5), st.floats(-10, 10, allow_nan=False)),
    ),
    min_size=1,
    max_size=15,
)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), _batch),
        st.tuples(st.just("append+checkpoint"), _batch),
        st.tuples(st.just("checkpoint"), st.none()),
        st.tuples(st.just("merge"), st.booleans()),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=40,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=_ops)
def test_random_appends_checkpoints_and_merges_read_back_what_was_read_before(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, Any]]
) -> None:
    """Any sequence of appends (rewriting timestamps across segments),
    checkpoints, merges and reopens: a merge never changes what a query
    reads, which is always one point per timestamp, the last written."""
    directory = tmp_path_factory.mktemp("prop")
    writes: list[tuple[str, str, Any, int]] = []
    storage = Storage.open(
        directory, checkpoint_points=None, merge_block_points=7, segment_bytes=100
    )
    try:
        for op, arg in ops:
            if op.startswith("append"):
                batch = [(m, e, v, TS + t * 1000) for (m, e), t, v in arg]
                storage.append(batch)
                writes += batch
                if op.endswith("checkpoint"):
                    storage.checkpoint()
            elif op == "checkpoint":
                storage.checkpoint()
            elif op == "merge":
                before = everything(storage)
                storage.merge(seal=arg)
                assert everything(storage) == before
            else:
                storage.close()
                storage = Storage.open(
                    directory,
                    checkpoint_points=None,
                    merge_block_points=7,
                    segment_bytes=100,
                )
            assert everything(storage) == model_of(writes)
        storage.checkpoint()
        storage.merge(seal=True)
        assert everything(storage) == model_of(writes)
    finally:
        storage.close()
    with Storage.open(directory) as reopened:
        assert everything(reopened) == model_of(writes)
    assert everything(Storage.open_readonly(directory)) == model_of(writes)


# -- faults and crashes at each step ----------------------------------------------


class _Faults:
    """Counts calls of file-layer functions; fails (and snapshots) at one."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, fail_at: int, on_fail: Callable[[], None]
    ) -> None:
        self.calls = 0
        self.fail_at = fail_at
        self._on_fail = on_fail
        self.failed = False
        for name in ("write", "fsync", "rename", "replace", "unlink", "ftruncate"):
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name), name))

    def _wrap(self, real: Callable[..., Any], name: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.failed:
                self.calls += 1
                if self.calls == self.fail_at:
                    self.failed = True
                    self._on_fail()
                    code = errno.ENOSPC if name == "write" else errno.EIO
                    raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)

        return wrapper


def _copy(source: Path, target: Path) -> Callable[[], None]:
    def snapshot() -> None:
        shutil.copytree(source, target)

    return snapshot


def test_a_fault_or_a_crash_at_each_step_of_a_merge_loses_and_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC/EIO from each write, fsync, rename and unlink of a merge in
    turn: the merge fails (WriteError) or completes, queries read the same
    throughout, and a reopen reads every point once with no leftover files.
    The directory as it was at the moment of each failing call (a crash
    there) reopens the same way."""
    template = tmp_path / "template"
    writes = fill(template, 6, segment_bytes=400)  # three segments of two
    expected = model_of(writes)
    unique = sum(map(len, expected.values()))
    step = 0
    while True:
        step += 1
        directory = tmp_path / f"run{step}"
        crashed = tmp_path / f"crash{step}"
        shutil.copytree(template, directory)
        storage = Storage.open(directory, checkpoint_points=None)
        with monkeypatch.context() as patch:
            faults = _Faults(patch, step, _copy(directory, crashed))
            try:
                storage.merge(seal=True)
            except WriteError:
                pass
            assert everything(storage) == expected
        storage.close()
        for where in (directory, crashed) if faults.failed else (directory,):
            with Storage.open(where) as reopened:
                assert everything(reopened) == expected, (step, where)
                assert block_points(reopened) == unique, (step, where)
            names = segment_files(where)
            assert not [n for n in names if "tmp" in n], (step, names)
            assert not (where / "damaged").exists(), step
            with Storage.open(where) as again:  # what is left merges cleanly
                again.merge(seal=True)
                assert everything(again) == expected
            assert len(segment_files(where)) == 2, (step, segment_files(where))
        if not faults.failed:
            break
    assert step > 8, step  # every write, fsync and rename of the merge was hit


# -- concurrent readers -------------------------------------------------------------


def test_queries_during_merges_never_miss_a_point(tmp_path: Path) -> None:
    """A thread queries continuously, in this process and through a
    read-only storage, while checkpoints and merges replace the segments
    under it: every answer holds every point written before."""
    writes = fill(tmp_path, 4)
    expected = model_of(writes)
    storage = Storage.open(tmp_path, checkpoint_points=None)
    reader = Storage.open_readonly(tmp_path)
    stop = threading.Event()
    failures: list[str] = []
    queries = [0]

    def query_loop() -> None:
        while not stop.is_set():
            for source in (storage, reader):
                for (metric, entity), points in expected.items():
                    got = source.query(metric, entity).get(entity, [])
                    if got[: len(points)] != points:
                        failures.append(f"{metric} {entity}: {len(got)} points")
                        return
            queries[0] += 1

    thread = threading.Thread(target=query_loop)
    thread.start()
    try:
        for round_ in range(12):
            base = TS + 10**8 + round_ * 60_000
            storage.append([("other", "x", i, base + i * 1000) for i in range(60)])
            storage.checkpoint()
            storage.merge(seal=True)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert not failures, failures
    assert queries[0] > 0
    assert storage.merges_done >= 10
    storage.close()


# -- kill -9 -------------------------------------------------------------------------

_KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from statsyard.storage import Storage

    data_dir, kill_at, worker = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    storage = Storage.open(data_dir, checkpoint_points=None, compaction_worker=worker)
    if worker:
        print(os.getpid(), flush=True)
        storage.merge(seal=True)
        print("merged", flush=True)
        sys.exit(0)
    calls = 0

    def wrap(real):
        def call(*args, **kwargs):
            global calls
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return call

    for name in ("write", "fsync", "rename", "unlink"):
        setattr(os, name, wrap(getattr(os, name)))
    storage.merge(seal=True)
    print("merged", flush=True)
    storage.close()
    """
)


def _run_child(script: Path, directory: Path, kill_at: int, worker: bool) -> Any:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, str(script), str(directory), str(kill_at), str(int(worker))],
        stdout=subprocess.PIPE,
        env=env,
    )


def _check_reopened(directory: Path, expected: Snapshot) -> None:
    unique = sum(map(len, expected.values()))
    with Storage.open(directory) as reopened:
        assert everything(reopened) == expected
        assert block_points(reopened) == unique  # no source left beside its merge
    assert not [n for n in segment_files(directory) if "tmp" in n]
    assert not (directory / "damaged").exists()  # nothing taken for damage
    assert everything(Storage.open_readonly(directory)) == expected


def test_sigkill_at_each_step_of_a_merge_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """A process SIGKILLs itself at each write, fsync, rename and unlink of
    a merge in turn; the reopened directory reads every point once, with
    no source segment left beside its merged segment and no temporary file."""
    script = tmp_path / "child.py"
    script.write_text(_KILLED_CHILD)
    template = tmp_path / "template"
    expected = model_of(fill(template, 5, segment_bytes=400))
    for kill_at in range(1, 200):
        directory = tmp_path / f"run{kill_at}"
        shutil.copytree(template, directory)
        child = _run_child(script, directory, kill_at, worker=False)
        out, _ = child.communicate(timeout=WAIT)
        _check_reopened(directory, expected)
        if child.returncode == 0:
            assert out == b"merged\n"
            break
        assert child.returncode == -signal.SIGKILL
    assert kill_at > 8  # the merge's writes, fsyncs and renames were each hit


def test_sigkill_mid_merge_leaves_no_worker_and_loses_nothing(tmp_path: Path) -> None:
    """The merge worker is stopped (SIGSTOP) mid-request (once it writes its
    temporary file, so past setting ``PR_SET_PDEATHSIG``); SIGKILL its
    parent: the worker dies with it and the directory reads every point once."""
    script = tmp_path / "child.py"
    script.write_text(_KILLED_CHILD)
    directory = tmp_path / "data"
    expected = model_of(fill(directory, 60, series=100))
    child = _run_child(script, directory, 0, worker=True)
    assert child.stdout is not None
    try:
        pid = int(child.stdout.readline())
        worker = None
        deadline = time.monotonic() + WAIT
        while worker is None and time.monotonic() < deadline:
            if (directory / "merge.dat.tmp").exists():
                for process in psutil.Process(pid).children():
                    if "statsyard.storage._merge:handle" in process.cmdline():
                        worker = process
            if worker is None:
                assert child.poll() is None, "the child ended before its worker showed"
                time.sleep(0.002)  # polling a file, not an actor
        assert worker is not None, "no merge worker started"
        worker.suspend()
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        assert ends(worker.pid, WAIT), f"worker {worker.pid} outlived its parent"
    finally:
        child.kill()
        child.wait(WAIT)
        child.stdout.close()
    _check_reopened(directory, expected)


# -- the service -----------------------------------------------------------------


def test_a_running_statsyard_merges_in_the_background(tmp_path: Path) -> None:
    """A StatsYard checkpointing by count seals a segment once it spans
    ``merge_after`` and merges it in its worker; queries read every point
    once meanwhile and after a clean stop, some in merged blocks."""
    from statsyard import Config, StatsYard

    directory = tmp_path / "data"
    config = Config.of(
        storage={
            "data_dir": str(directory),
            "checkpoint_points": 600,  # a minute of 10 series
            "checkpoint_after": 0,
            "merge_after": 120,
        }
    )
    writes: list[tuple[str, str, Any, int]] = []
    with StatsYard(config) as yard:
        for second in range(900):
            batch = [
                (f"g{k}", "host", (second // 7) % (k + 2), TS + second * 1000)
                for k in range(10)
            ]
            yard.push_many(batch)
            writes += batch
        yard.flush(timeout=WAIT)
        deadline = time.monotonic() + WAIT
        storage = yard._storage_handle.get(timeout=WAIT)
        while storage.merges_done < 1 and time.monotonic() < deadline:
            yard.push_many([("tick", "host", 1, TS)])
            yard.flush(timeout=WAIT)  # each flush lets the writer commit a merge
        assert storage.merges_done >= 1
        writes.append(("tick", "host", 1, TS))
        assert yard.query("g3") == {"host": model_of(writes)[("g3", "host")]}
    reader = Storage.open_readonly(directory)
    assert everything(reader) == model_of(writes)
    merged = [ref for ref in reader._catalog.refs(("g0", "host")) if ref.points > 120]
    assert merged, "no block of a merge"


def test_a_failing_merge_worker_is_replaced_then_merges_run_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge worker that cannot serve fails its merge (nothing changes);
    after three failures merges run in a thread of the writer's process."""
    from statsyard.storage import _writer

    monkeypatch.setattr(_writer, "MERGE_HANDLER", "statsyard.storage._merge:absent")
    writes = fill(tmp_path, 4)
    with Storage.open(
        tmp_path, checkpoint_points=None, compaction_worker=True
    ) as storage:
        for failures in (1, 2, 3):
            assert storage.merge(seal=True) == 0
            assert storage.merge_failures == failures
            assert everything(storage) == model_of(writes)
        assert storage.merge() == 1
        assert storage.merge_worker_pid is None
        assert everything(storage) == model_of(writes)


def test_a_rewrite_checkpointed_while_a_merge_runs_calls_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A background merge is held done-but-uncommitted while a timestamp it
    merged is written again and checkpointed into a later segment: the
    commit calls the merge off, the next one drops the overwritten point,
    and the last write wins throughout."""
    from statsyard.storage import _merge

    gate = threading.Event()
    real = _merge.run_merge

    def held(*args: Any, **kwargs: Any) -> Any:
        output = real(*args, **kwargs)
        assert gate.wait(WAIT)
        return output

    monkeypatch.setattr(_merge, "run_merge", held)
    writes: list[tuple[str, str, Any, int]] = []
    storage = Storage.open(tmp_path, checkpoint_points=None, merge_after_ms=120_000)
    try:
        for minute in range(3):
            batch = [
                ("m0", "h", minute * 60 + s, TS + (minute * 60 + s) * 1000)
                for s in range(60)
            ]
            storage.append(batch)
            writes += batch
            storage.checkpoint()
        assert storage.merging  # sealed at 179 s of span: merging, held
        again = [("m0", "h", -1, TS + 5000)]
        storage.append(again)
        writes += again
        storage.checkpoint()  # into a segment the merge did not plan for
        assert everything(storage) == model_of(writes)
        gate.set()
        with caplog.at_level("INFO", logger="statsyard.storage"):
            storage.merge()
        assert "called off" in caplog.text
        assert storage.merges_done >= 1  # the retry, planned with the rewrite
        assert everything(storage) == model_of(writes)
    finally:
        gate.set()
        storage.close()
    with Storage.open(tmp_path) as reopened:
        assert everything(reopened) == model_of(writes)


def test_sources_left_beside_their_merge_are_skipped_then_removed(
    tmp_path: Path,
) -> None:
    """A crash after the commit, before the sources' files went: readers
    (and ``statsyard check``) skip them, the next writer removes them."""
    from statsyard.cli.check import check_directory

    writes = fill(tmp_path, 4)
    aside = tmp_path.parent / "aside"
    aside.mkdir()
    for name in ("seg-0000000000000001.dat", "seg-0000000000000001.idx"):
        shutil.copy(tmp_path / name, aside / name)
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        assert storage.merge(seal=True) == 1
    for name in ("seg-0000000000000001.dat", "seg-0000000000000001.idx"):
        shutil.copy(aside / name, tmp_path / name)
    expected = model_of(writes)
    unique = sum(map(len, expected.values()))
    reader = Storage.open_readonly(tmp_path)
    assert everything(reader) == expected
    assert block_points(reader) == unique
    report = check_directory(tmp_path)
    assert report.points == unique
    assert report.ok
    with Storage.open(tmp_path) as storage:
        assert everything(storage) == expected
    assert segment_files(tmp_path) == [
        "seg-0000000000000002.dat",
        "seg-0000000000000002.idx",
    ]


def test_close_calls_off_a_background_merge_and_stops_its_worker(
    tmp_path: Path,
) -> None:
    """A merge started in the worker by a checkpoint is called off by
    ``close()``: the worker ends, no temporary file stays, nothing is lost."""
    writes: list[tuple[str, str, Any, int]] = []
    storage = Storage.open(
        tmp_path, checkpoint_points=None, compaction_worker=True, merge_after_ms=60_000
    )
    for minute in range(2):  # sealed at 119 s of span: a merge starts
        batch = [
            (f"m{k}", "h", k + minute, TS + (minute * 60 + s) * 1000)
            for s in range(60)
            for k in range(50)
        ]
        storage.append(batch)
        writes += batch
        storage.checkpoint()
    assert storage.merging  # committed only at the next append or poll
    pid = storage.merge_worker_pid
    assert pid is not None
    storage.close()
    assert ends(pid, WAIT)
    assert not [n for n in segment_files(tmp_path) if "tmp" in n]
    _check_reopened(tmp_path, model_of(writes))


def test_a_reader_in_another_process_refreshes_when_a_merge_removed_its_files(
    tmp_path: Path,
) -> None:
    """A read-only storage's snapshot names segments that a writer in
    another process then merges away: its next query refreshes and still
    reads every point."""
    writes = fill(tmp_path, 4)
    reader = Storage.open_readonly(tmp_path)
    script = (
        "import sys\n"
        "from statsyard.storage import Storage\n"
        "with Storage.open(sys.argv[1]) as storage:\n"
        "    assert storage.merge(seal=True) == 1\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, check=True, timeout=WAIT
    )
    assert not (tmp_path / "seg-0000000000000001.dat").exists()
    assert everything(reader) == model_of(writes)
    assert reader.skipped_records == 0


def test_a_committed_merge_whose_data_file_was_lost_is_damage_not_a_merge_cut_short(
    tmp_path: Path,
) -> None:
    """Its index names sources that are gone: the writer moves the index to
    ``damaged/`` and counts it, rather than removing it as a merge that
    never committed (which only a merge whose sources are all there is)."""
    fill(tmp_path, 4)
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        assert storage.merge(seal=True) == 1
    merged = segment_files(tmp_path)
    assert merged == ["seg-0000000000000002.dat", "seg-0000000000000002.idx"]
    (tmp_path / merged[0]).unlink()
    with Storage.open(tmp_path) as storage:
        assert storage.skipped_records == 1
        assert everything(storage) == {}
    assert segment_files(tmp_path) == []
    assert [p.name for p in (tmp_path / "damaged").iterdir()] == [merged[1]]


def _minutes(
    storage: Storage, minutes: int, offset: float = 0.0
) -> list[tuple[str, str, Any, int]]:
    """A checkpoint a minute of 4 series, as a running service makes them
    (values ``offset`` up from the first run's)."""
    writes: list[tuple[str, str, Any, int]] = []
    for minute in range(minutes):
        batch = [
            (
                f"m{k}",
                "host",
                offset + minute * 60 + second + k * 0.5,
                TS + (minute * 60 + second) * 1000,
            )
            for second in range(60)
            for k in range(4)
        ]
        storage.append(batch)
        writes += batch
        storage.checkpoint()
    return writes


def _largest_block(directory: Path) -> int:
    reader = Storage.open_readonly(directory)
    with reader._catalog.lock:
        refs = [
            r for key in list(reader._catalog.index) for r in reader._catalog.refs(key)
        ]
    reader.close()
    return max(ref.points for ref in refs)


def test_a_clean_stop_merges_the_newest_minutes(tmp_path: Path) -> None:
    """Segments not yet sealed by ``merge_after`` are sealed and merged by
    ``close(compact=True)``: the directory is left in large blocks, every
    point once; a plain close leaves them as they are."""
    plain = tmp_path / "plain"
    storage = Storage.open(plain, checkpoint_points=None, merge_after_ms=3_600_000)
    writes = _minutes(storage, 5)
    storage.close()
    assert _largest_block(plain) == 60
    stopped = tmp_path / "stopped"
    storage = Storage.open(stopped, checkpoint_points=None, merge_after_ms=3_600_000)
    writes = _minutes(storage, 5)
    storage.append([("m0", "host", -1.0, TS + 300_000)])  # left in the head
    writes.append(("m0", "host", -1.0, TS + 300_000))
    storage.close(compact=True)
    assert _largest_block(stopped) == 301
    with Storage.open(stopped) as reopened:
        assert everything(reopened) == model_of(writes)
        assert block_points(reopened) == len(writes)


def test_a_clean_stop_leaves_a_merge_of_too_many_points_for_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge of more points than a stop's budget is not started at all (a
    long series merges in one piece, past the time budget's checks)."""
    from statsyard.storage import _writer

    monkeypatch.setattr(_writer, "CLOSE_MERGE_POINTS", 100)
    storage = Storage.open(tmp_path, checkpoint_points=None, merge_after_ms=3_600_000)
    writes = _minutes(storage, 3)
    storage.close(compact=True)
    assert _largest_block(tmp_path) == 60
    with Storage.open_readonly(tmp_path) as reader:
        assert everything(reader) == model_of(writes)


def test_a_clean_stop_leaves_a_merge_past_its_budget_for_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge that would take longer than a stop's budget calls itself off:
    the small blocks stay, every point once, no temporary file."""
    import types

    from statsyard.storage import _merge, _writer

    # The stop starts its merges in time; each finds itself past the budget
    # at its first series.
    monkeypatch.setattr(_writer, "time", types.SimpleNamespace(monotonic=lambda: 0.0))
    monkeypatch.setattr(_merge, "time", types.SimpleNamespace(monotonic=lambda: 9e9))
    started: list[int] = []
    real = _merge.run_merge

    def counted(*args: Any, **kwargs: Any) -> Any:
        started.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_merge, "run_merge", counted)
    storage = Storage.open(tmp_path, checkpoint_points=None, merge_after_ms=3_600_000)
    writes = _minutes(storage, 3)
    storage.close(compact=True)
    assert started, "the stop did not start a merge"
    assert _largest_block(tmp_path) == 60
    assert not [name for name in segment_files(tmp_path) if "merge" in name]
    with Storage.open_readonly(tmp_path) as reader:
        assert everything(reader) == model_of(writes)


def test_checkpoints_after_a_stop_that_merged_read_back_with_it(tmp_path: Path) -> None:
    """The stop's merged segment is the newest at the next open: what the
    next writer checkpoints and merges (three times over) reads back once,
    rewrites of old timestamps winning, and ``statsyard check`` agrees."""
    from statsyard.cli.check import check_directory

    writes: list[tuple[str, str, Any, int]] = []
    for run in range(3):
        storage = Storage.open(tmp_path, checkpoint_points=None, merge_after_ms=120_000)
        writes += _minutes(storage, 3, offset=run * 1000)
        storage.append(writes[-8:])  # rewrite the newest points, then stop
        storage.close(compact=True)
        # The next run writes the same minutes again: its values must win.
        with Storage.open_readonly(tmp_path) as reader:
            assert everything(reader) == model_of(writes)
    report = check_directory(tmp_path)
    assert report.ok
    assert report.points == sum(map(len, model_of(writes).values()))
