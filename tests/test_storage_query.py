"""Reading back: range queries, downsampling, series listing, readers, retention."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.datapoint import DataPoint
from statsyard.storage import Storage
from tests._storage_helpers import T0, expected, points


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    """A writable storage that checkpoints only when asked, closed after the test."""
    s = Storage.open(tmp_path, checkpoint_points=None)
    yield s
    s.close()


def test_range_is_half_open_and_per_entity(storage: Storage) -> None:
    """[start, end) in ms, all entities by default, one entity on request."""
    storage.append(points("cpu", "a", [1, 2, 3, 4]) + points("cpu", "b", [10, 20]))
    assert storage.query("cpu", start=T0 + 1000, end=T0 + 3000) == {
        "a": [(T0 + 1000, 2), (T0 + 2000, 3)],
        "b": [(T0 + 1000, 20)],
    }
    assert storage.query("cpu", entity="b") == {"b": [(T0, 10), (T0 + 1000, 20)]}
    assert storage.query("cpu", entity="a", start=T0 + 10_000) == {}


def test_unknown_metric_or_entity_gives_an_empty_result(storage: Storage) -> None:
    """No such series: {} (documented), not an error."""
    storage.append(points("cpu", "a", [1]))
    assert storage.query("nope") == {}
    assert storage.query("cpu", entity="nope") == {}


@pytest.mark.parametrize("with_checkpoints", [False, True])
def test_out_of_order_points_come_back_in_order(
    storage: Storage, with_checkpoints: bool
) -> None:
    """Late points, across batches and checkpoints, are merged by time.

    The timestamp written twice (3 then 33) reads back once: the last write.
    """
    batches = [
        points("m", "e", [5, 6], start=T0 + 5000),
        points("m", "e", [1, 2], start=T0 + 1000),
        [DataPoint("m", "e", 9, T0 + 9000), DataPoint("m", "e", 3, T0 + 3000)],
        [DataPoint("m", "e", 33, T0 + 3000)],
    ]
    for batch in batches:
        storage.append(batch)
        if with_checkpoints:
            storage.checkpoint()
    got = storage.query("m")["e"]
    assert got == [
        (T0 + 1000, 1),
        (T0 + 2000, 2),
        (T0 + 3000, 33),
        (T0 + 5000, 5),
        (T0 + 6000, 6),
        (T0 + 9000, 9),
    ]


@pytest.mark.parametrize(
    ("agg", "want"),
    [
        ("avg", [(T0, 2.0), (T0 + 3000, 4.5), (T0 + 6000, 7.0)]),
        ("min", [(T0, 1), (T0 + 3000, 4), (T0 + 6000, 7)]),
        ("max", [(T0, 3), (T0 + 3000, 5), (T0 + 6000, 7)]),
        ("sum", [(T0, 6), (T0 + 3000, 9), (T0 + 6000, 7)]),
        ("count", [(T0, 3), (T0 + 3000, 2), (T0 + 6000, 1)]),
        ("last", [(T0, 3), (T0 + 3000, 5), (T0 + 6000, 7)]),
    ],
)
def test_step_buckets_are_aligned_and_aggregated(
    storage: Storage, agg: str, want: list[tuple[int, float]]
) -> None:
    """Buckets of `step` ms start at multiples of step; empty buckets are left out."""
    assert T0 % 3000 == 2000  # so alignment matters: shift the data to a boundary
    base = T0 - 2000 + 3000
    storage.append(
        [
            DataPoint("m", "e", v, base + t)
            for v, t in [(1, 0), (2, 1000), (3, 2999), (4, 3000), (5, 5000), (7, 6500)]
        ]
    )
    storage.checkpoint()
    got = storage.query("m", step=3000, agg=agg)["e"]
    assert got == [(t - T0 + base, v) for t, v in want]


def test_bad_agg_and_step_are_value_errors_naming_the_choices(storage: Storage) -> None:
    """A bad agg names the valid ones; a step must be a positive int of ms."""
    with pytest.raises(ValueError, match=r"avg, min, max, sum, count, last.*'median'"):
        storage.query("m", agg="median")
    with pytest.raises(ValueError, match="step must be a positive int"):
        storage.query("m", step=0)


def test_series_lists_pairs_matching_a_graphite_glob(storage: Storage) -> None:
    """`*` stays within a dotted component; {a,b}, [..] and ** also work."""
    for metric in ("cpu.load", "cpu.user", "mem.load", "cpu.core.0", "disk"):
        storage.append(points(metric, "h1", [1]))
    storage.append(points("cpu.load", "h2", [1]))
    storage.checkpoint()
    storage.append(points("disk", "h3", [1]))
    assert storage.series("cpu.*") == [
        ("cpu.load", "h1"),
        ("cpu.load", "h2"),
        ("cpu.user", "h1"),
    ]
    assert storage.series("*.load") == [
        ("cpu.load", "h1"),
        ("cpu.load", "h2"),
        ("mem.load", "h1"),
    ]
    assert storage.series("{cpu,mem}.load") == storage.series("*.load")
    assert storage.series("cpu.[lu]*") == storage.series("cpu.*")
    assert storage.series("cpu.**") == [
        *storage.series("cpu.*")[:0],
        ("cpu.core.0", "h1"),
        ("cpu.load", "h1"),
        ("cpu.load", "h2"),
        ("cpu.user", "h1"),
    ]
    assert len(storage.series()) == 7
    assert storage.series("nothing.*") == []
    with pytest.raises(ValueError, match="unbalanced"):
        storage.series("cpu.{a,b")


def test_queries_in_other_threads_see_every_acknowledged_point(tmp_path: Path) -> None:
    """While one thread appends (with checkpoints), another queries: each query sees
    at least every batch acknowledged before it started, never a torn state."""
    s = Storage.open(tmp_path, checkpoint_points=2_000)
    acked = [0]
    done = threading.Event()
    failures: list[str] = []

    def reader() -> None:
        while not done.is_set():
            floor = acked[0]
            rows = s.query("m").get("e", [])
            values = [v for _, v in rows]
            if len(values) < floor * 100 or values != sorted(values):
                failures.append(f"saw {len(values)} points after {floor} batches")
            if len(set(values)) != len(values):
                failures.append("saw a point twice")
            # Each value was appended with its own timestamp: never mismatched.
            for timestamp, value in rows:
                if timestamp != T0 + (value // 100) * 100_000 + (value % 100) * 1000:
                    failures.append(f"value {value} paired with {timestamp}")
                    break

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for batch in range(100):
            s.append(
                points(
                    "m",
                    "e",
                    range(batch * 100, batch * 100 + 100),
                    start=T0 + batch * 100_000,
                )
            )
            acked[0] = batch + 1
    finally:
        done.set()
        thread.join(timeout=30)
    assert not failures, failures[:3]
    assert len(s.query("m")["e"]) == 10_000
    s.close()


def test_reader_sees_a_live_writers_directory_without_changing_it(
    tmp_path: Path,
) -> None:
    """open_readonly() on a directory a writer is using: reads segments and logs."""
    writer = Storage.open(tmp_path, checkpoint_points=None)
    first = points("m", "e", range(50))
    writer.append(first)
    writer.checkpoint()
    second = points("m", "e", range(50, 60), start=T0 + 100_000)
    writer.append(second)
    writer.sync()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    reader = Storage.open_readonly(tmp_path)
    assert reader.query("m") == expected(first + second, "m")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    third = points("m", "e", [99], start=T0 + 999_000)
    writer.append(third)
    writer.checkpoint()
    assert len(reader.query("m")["e"]) == 60  # a snapshot...
    reader.refresh()
    assert reader.query("m") == expected(first + second + third, "m")  # ...refreshed
    writer.close()


def test_retention_by_age_removes_whole_old_segments(tmp_path: Path) -> None:
    """Segments whose newest point is older than the limit go; the newest stays."""
    day = 86_400_000
    s = Storage.open(
        tmp_path,
        segment_bytes=32,
        retention_max_age_ms=30 * day,
        checkpoint_points=None,
    )
    old_start = 1_600_000_000_000  # 2020: far beyond 30 days
    for i in range(3):
        s.append(points("m", "old", range(10), start=old_start + i * 10**6))
        s.checkpoint()
    recent = points("m", "new", range(10), start=s_now() - 1000 * 60)
    s.append(recent)
    s.checkpoint()
    assert s.query("m") == {"new": expected(recent, "m")["new"]}
    assert len(list(tmp_path.glob("seg-*.dat"))) == 1
    s.close()
    assert Storage.open_readonly(tmp_path).series() == [("m", "new")]


def test_retention_by_size_keeps_the_total_under_the_limit(tmp_path: Path) -> None:
    """The oldest segments go while the segment files exceed max bytes."""
    s = Storage.open(
        tmp_path, segment_bytes=100, retention_max_bytes=500, checkpoint_points=None
    )
    for i in range(8):
        s.append(
            [
                DataPoint("m", "e", i * 1000 + j * 0.37, T0 + i * 10**6 + j)
                for j in range(20)
            ]
        )
        s.checkpoint()
    files = list(tmp_path.glob("seg-*"))
    assert sum(p.stat().st_size for p in files) <= 500
    kept = s.query("m")["e"]
    assert kept and kept[-1][1] == 7000 + 19 * 0.37  # the newest is always kept
    assert len(kept) < 160
    s.close()


def test_retention_is_off_by_default(tmp_path: Path) -> None:
    """Without limits nothing is ever removed, however old."""
    with Storage.open(tmp_path, segment_bytes=100, checkpoint_points=None) as s:
        for i in range(4):
            s.append(points("m", "e", [i], start=1_000_000_000_000 + i))
            s.checkpoint()
        assert len(s.query("m")["e"]) == 4


def s_now() -> int:
    """Now, in ms."""
    from statsyard.datapoint import now_ms

    return now_ms()


@pytest.mark.parametrize("checkpoint_between", [False, True])
def test_a_point_written_twice_reads_back_once_last_write_wins(
    storage: Storage, checkpoint_between: bool
) -> None:
    """A retried write (same series and timestamp) is one point: the last value.

    Holds within one batch, across batches, across blocks and the head, for
    raw reads and for step aggregates (a count or sum does not double).
    """
    storage.append([*points("m", "e", [1, 2, 3]), DataPoint("m", "e", 20, T0 + 1000)])
    if checkpoint_between:
        storage.checkpoint()
    storage.append([DataPoint("m", "e", 30, T0 + 2000), DataPoint("m", "f", 7, T0)])
    storage.append([DataPoint("m", "e", 31, T0 + 2000)])
    want = [(T0, 1), (T0 + 1000, 20), (T0 + 2000, 31)]
    assert storage.query("m", entity="e") == {"e": want}
    assert storage.query("m", step=10_000, agg="count") == {
        "e": [(T0 - T0 % 10_000, 3)],
        "f": [(T0 - T0 % 10_000, 1)],
    }
    assert storage.query("m", entity="e", step=10_000, agg="sum") == {
        "e": [(T0 - T0 % 10_000, 52)]
    }
    storage.checkpoint()
    assert storage.query("m", entity="e") == {"e": want}


def test_duplicates_stay_resolved_after_reopening(tmp_path: Path) -> None:
    """Recovery (log replay) and a read-only reader agree: last write wins."""
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(points("m", "e", [1, 2]))
        s.checkpoint()
        s.append([DataPoint("m", "e", 9, T0)])
    with Storage.open_readonly(tmp_path) as reader:
        assert reader.query("m") == {"e": [(T0, 9), (T0 + 1000, 2)]}
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        assert s.query("m") == {"e": [(T0, 9), (T0 + 1000, 2)]}


_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.tuples(
            st.lists(
                st.tuples(st.integers(min_value=0, max_value=200), _VALUES),
                min_size=1,
                max_size=30,
            ),
            st.booleans(),
        ),
        max_size=6,
    ),
    big=st.booleans(),
    bounds=st.tuples(
        st.none() | st.integers(min_value=-5, max_value=205),
        st.none() | st.integers(min_value=-5, max_value=205),
    ),
)
def test_query_columns_give_the_points_query_gives_as_floats(
    batches: list[tuple[list[tuple[int, int | float]], bool]],
    big: bool,
    bounds: tuple[int | None, int | None],
) -> None:
    """Same points, order, last write and range as query(), from the head
    and from blocks (small ones, and a numpy-decoded one of 5,000 points),
    each value as float() gives it; another series' points stay out."""
    start, end = (None if b is None else T0 + b * 1000 for b in bounds)
    with tempfile.TemporaryDirectory() as directory:
        storage = Storage.open(directory, checkpoint_points=None)
        if big:
            storage.append(
                [DataPoint("m", "e", i * 0.5, T0 - 10_000_000 + i) for i in range(5000)]
            )
            storage.checkpoint()
        for batch, then_checkpoint in batches:
            storage.append(
                [DataPoint("m", "e", v, T0 + offset * 1000) for offset, v in batch]
                + [
                    DataPoint("m", "other", 1, T0 + offset * 1000)
                    for offset, _ in batch
                ]
            )
            if then_checkpoint:
                storage.checkpoint()
        expected = storage.query("m", entity="e", start=start, end=end).get("e", [])
        timestamps, values = storage.query_columns("m", "e", start, end)
        storage.close()
    assert (str(timestamps.dtype), str(values.dtype)) == ("int64", "float64")
    assert timestamps.tolist() == [t for t, _ in expected]
    assert values.tolist() == [float(v) for _, v in expected]


def test_query_columns_of_an_unknown_series_are_empty(storage: Storage) -> None:
    """No such series: two empty columns, not an error."""
    storage.append(points("cpu", "a", [1]))
    for metric, entity in (("nope", "a"), ("cpu", "nope")):
        timestamps, values = storage.query_columns(metric, entity)
        assert (len(timestamps), len(values)) == (0, 0)
