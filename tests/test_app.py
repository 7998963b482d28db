"""StatsYard end to end: the supervised pipeline, crashes, accounting, shutdown."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statsyard import DataPoint, StatsYard
from statsyard.config import Config
from statsyard.datapoint import now_ms
from statsyard.exceptions import NotRunningError, StatsYardError
from statsyard.pipeline.queue_messages import Close
from statsyard.supervision import SupervisorExit
from tests._stored import stored_points

WAIT = 10.0
TS = 1_700_000_000_000

YardFactory = Callable[..., StatsYard]


@pytest.fixture
def make_yard(tmp_path: Path) -> Iterator[YardFactory]:
    """Start StatsYard instances; every one is stopped at teardown."""
    yards: list[StatsYard] = []

    def make(**kwargs: Any) -> StatsYard:
        kwargs.setdefault("data_dir", tmp_path / f"data{len(yards)}")
        kwargs.setdefault("batch_size", 100)
        yard = StatsYard(**kwargs)
        yards.append(yard)
        return yard.start()

    yield make
    for yard in yards:
        yard.stop(timeout=WAIT)


def points(n: int, start: int = 0, metric: str = "cpu.load") -> list[DataPoint]:
    return [
        DataPoint(metric, f"host{i % 7}", i * 0.5, TS + i)
        for i in range(start, start + n)
    ]


def started_children(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Child ids in the order the supervisor (re)started them, from its log."""
    names = []
    for record in caplog.records:
        match = re.match(r"Started child (\w+)", record.getMessage())
        if match:
            names.append(match.group(1))
    return names


def restarts(yard: StatsYard) -> dict[str, int]:
    return {
        c.id: c.restarts for c in yard.supervisor.which_children().get(timeout=WAIT)
    }


def test_pushed_points_are_written_and_accounted(make_yard: YardFactory) -> None:
    """Points pushed one at a time and in bulk reach disk; counts add up."""
    yard = make_yard()
    for point in points(250):
        yard.push(point)
    yard.push_many(points(250, start=250))
    yard.push(("cpu.load", "host1", math.nan, TS))  # invalid: counted, not written
    yard.flush(timeout=WAIT)
    counts = yard.counts()
    assert (counts.pushed, counts.written, counts.invalid, counts.lost) == (
        501,
        500,
        1,
        0,
    )
    assert counts.pending == 0
    stored = stored_points(yard.data_dir)
    assert sorted(stored) == sorted(
        (p.metric, p.entity, p.timestamp, p.value) for p in points(500)
    )


def test_a_partial_batch_goes_out_on_its_own(make_yard: YardFactory) -> None:
    """A single push is written without flush: the linger sends it."""
    yard = make_yard(batch_size=1000)
    yard.push(("m", "e", 1, TS))
    committed = yard.queue.await_committed(1, timeout=WAIT)
    assert committed >= 1


def test_the_tree_has_the_documented_order(make_yard: YardFactory) -> None:
    """Children start queue, writer, consumer, shipper: dependencies point back."""
    yard = make_yard()
    children = yard.supervisor.which_children().get(timeout=WAIT)
    assert [c.id for c in children] == ["queue", "writer", "consumer", "shipper"]
    assert all(c.alive for c in children)


@pytest.mark.parametrize(
    ("crashed", "restarted"),
    [
        ("queue", ["queue", "writer", "consumer", "shipper"]),
        ("writer", ["writer", "consumer", "shipper"]),
        ("consumer", ["consumer", "shipper"]),
        ("shipper", ["shipper"]),
    ],
)
def test_a_child_crash_mid_stream_restarts_the_right_children_and_loses_nothing(
    make_yard: YardFactory,
    caplog: pytest.LogCaptureFixture,
    crashed: str,
    restarted: list[str],
) -> None:
    """Crash each child with an unknown message while points flow; rest-for-one
    restarts it and those after it, in order, and the pipeline writes again."""
    yard = make_yard()
    yard.push_many(points(2000))
    with caplog.at_level(logging.DEBUG, logger="statsyard.supervision.supervisor"):
        caplog.clear()
        yard.child(crashed).tell("an unknown message")
        yard.push_many(points(2000, start=2000))
        yard.flush(timeout=WAIT)
    assert started_children(caplog) == restarted
    assert restarts(yard) == {
        name: int(name in restarted)
        for name in ("queue", "writer", "consumer", "shipper")
    }
    counts = yard.counts()
    assert (counts.pushed, counts.written, counts.invalid, counts.lost) == (
        4000,
        4000,
        0,
        0,
    )
    stored = stored_points(yard.data_dir)
    assert len(stored) == len(set(stored)) == 4000


def test_the_consumer_resumes_after_the_queue_restarts(make_yard: YardFactory) -> None:
    """The seed's Part 5: kill the queue; the new consumer drains the new queue."""
    yard = make_yard()
    yard.push_many(points(300))
    yard.flush(timeout=WAIT)
    old_consumer = yard.child("consumer")
    yard.child("queue").tell("die")
    yard.push_many(points(300, start=300))
    yard.flush(timeout=WAIT)
    assert yard.child("consumer") is not old_consumer
    assert yard.counts().written == 600


def test_exceeding_the_restart_intensity_stops_the_tree_and_tells_the_host(
    make_yard: YardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Four crashes within the period: children stop in reverse, the host is told."""
    exits: list[SupervisorExit] = []
    told = threading.Event()

    def on_exit(exit_: SupervisorExit) -> None:
        exits.append(exit_)
        told.set()

    yard = make_yard(
        settings=Config.of(pipeline={"max_restarts": 3, "max_seconds": 60.0}),
        on_exit=on_exit,
    )
    for crash in range(3):
        consumer = yard.child("consumer")
        consumer.tell("crash")
        assert consumer.actor_stopped.wait(WAIT)
        # wait for the restart to be published before the next crash
        assert yard.child("consumer", timeout=WAIT) is not consumer, crash
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        yard.child("consumer").tell("crash")
        assert told.wait(WAIT)
    assert exits[0].gave_up
    assert "more than 3 restarts" in exits[0].reason
    stopped = [
        r.getMessage().split()[1]
        for r in caplog.records
        if r.name == "pykka" and r.getMessage().startswith("Stopped ")
    ]
    assert stopped[:3] == ["StatShipper", "TimestampWriter", "BlockingQueue"]
    assert yard.wait_stopped(WAIT) == exits[0]
    with pytest.raises(NotRunningError):
        yard.push(("m", "e", 1, TS))


def test_accounting_holds_under_repeated_crashes(make_yard: YardFactory) -> None:
    """pushed == written + invalid + lost, nothing twice, while children crash."""
    yard = make_yard(
        settings=Config.of(pipeline={"max_restarts": 100, "max_seconds": 1.0})
    )
    bad = ("cpu.load", "host", "not a number", TS)
    expected_valid = 0
    for round_ in range(6):
        batch: list[Any] = points(1000, start=round_ * 1000)
        batch[::100] = [bad] * 10
        expected_valid += 990
        yard.push_many(batch)
        yard.child(["consumer", "writer", "queue"][round_ % 3]).tell(("crash", round_))
    yard.flush(timeout=WAIT)
    counts = yard.stop(timeout=WAIT)
    assert counts.pushed == 6000
    assert counts.pushed == counts.written + counts.invalid + counts.lost
    assert (counts.written, counts.invalid, counts.lost) == (expected_valid, 60, 0)
    stored = stored_points(yard.data_dir)
    assert len(stored) == len(set(stored)) == expected_valid


def test_a_stopped_statsyard_leaves_no_thread_and_spares_its_neighbour(
    make_yard: YardFactory,
) -> None:
    """Two instances in one process; stopping one stops only its own threads."""
    before = set(threading.enumerate())
    first = make_yard()
    second = make_yard()
    first.push_many(points(100))
    second.push_many(points(100))
    first.stop(timeout=WAIT)
    second.push_many(points(100, start=100))
    second.flush(timeout=WAIT)
    assert second.counts().written == 200
    second.stop(timeout=WAIT)
    assert set(threading.enumerate()) - before == set()


def test_stop_drains_everything_accepted(make_yard: YardFactory) -> None:
    """stop() writes what was pushed, even without flush, and says so in counts."""
    yard = make_yard(batch_size=500)
    yard.push_many(points(1234))
    counts = yard.stop(timeout=WAIT)
    assert (counts.pushed, counts.written, counts.lost) == (1234, 1234, 0)
    assert len(stored_points(yard.data_dir)) == 1234


def test_queries_read_back_by_range_and_downsample(make_yard: YardFactory) -> None:
    """query() returns acknowledged points in time order, per entity, downsampled."""
    yard = make_yard()
    late_first = [DataPoint("disk.used", "a", v, TS + 1000 * v) for v in (5, 3, 4)]
    yard.push_many(late_first)  # out of order on purpose
    yard.push_many(DataPoint("disk.used", "a", v, TS + 1000 * v) for v in (0, 1, 2))
    yard.push_many(DataPoint("disk.used", "b", 10 * v, TS + 1000 * v) for v in range(6))
    yard.push(("cpu.load", "a", 1, TS))
    yard.flush(timeout=WAIT)
    raw = yard.query("disk.used", "a")
    assert raw == {"a": [(TS + 1000 * v, v) for v in range(6)]}
    window = yard.query("disk.used", start=TS + 1000, end=TS + 3000)
    assert window == {
        "a": [(TS + 1000, 1), (TS + 2000, 2)],
        "b": [(TS + 1000, 10), (TS + 2000, 20)],
    }
    step = 3000
    buckets = yard.query("disk.used", "b", step=step, agg="sum")
    expected: dict[int, float] = {}
    for v in range(6):
        bucket = TS + 1000 * v
        bucket -= bucket % step
        expected[bucket] = expected.get(bucket, 0) + 10 * v
    assert buckets == {"b": sorted(expected.items())}
    assert yard.series("disk.*") == [("disk.used", "a"), ("disk.used", "b")]
    assert yard.series("*.load") == [("cpu.load", "a")]


def test_queries_run_while_ingest_goes_on_and_survive_a_writer_restart(
    make_yard: YardFactory,
) -> None:
    """A query sees everything flushed before it, even across a writer crash."""
    yard = make_yard()
    for round_ in range(3):
        yard.push_many(points(500, start=round_ * 500, metric="q.m"))
        yard.flush(timeout=WAIT)
        seen = sum(len(v) for v in yard.query("q.m").values())
        assert seen == (round_ + 1) * 500
        if round_ == 1:
            yard.child("writer").tell("crash")


def test_accounting_balances_when_the_tree_gives_up_mid_stream(
    make_yard: YardFactory,
) -> None:
    """Points queued, in flight or still staged when the tree stops by itself
    are counted as lost: nothing disappears from the counts."""
    yard = make_yard(
        settings=Config.of(pipeline={"max_restarts": 0}),
        queue_capacity=1000,
        batch_size=100,
    )
    yard.push_many(points(950))
    yard.child("writer").tell("crash")  # no restart allowed: the tree stops
    assert yard.wait_stopped(WAIT) is not None
    with pytest.raises(NotRunningError):
        yard.push_many(points(10, start=950))
    counts = yard.stop(timeout=WAIT)
    assert counts.pending == 0
    assert counts.pushed == counts.written + counts.invalid + counts.lost
    assert counts.written + counts.lost == 950
    assert len(stored_points(yard.data_dir)) == counts.written


def test_points_lost_before_the_queue_do_not_make_flush_wait_for_ever(
    make_yard: YardFactory,
) -> None:
    """Points refused before reaching the queue take no queue index, so a later
    flush() waits only for what was queued."""
    yard = make_yard(ship_metrics=False)
    yard.push_many(points(50))
    yard.flush(timeout=WAIT)
    yard.child("queue").ask(Close(), timeout=WAIT)  # refuses every new point
    yard.push_many(points(10, start=50))
    with pytest.raises(StatsYardError):
        yard.flush(timeout=WAIT)  # the 10 staged points are refused: lost
    assert yard.counts().lost == 10
    yard.flush(timeout=1.0)  # nothing queued is left to wait for
    counts = yard.counts()
    assert (counts.pushed, counts.written, counts.lost, counts.pending) == (
        60,
        50,
        10,
        0,
    )


def test_the_errors_a_caller_catches_are_exported_and_say_what_they_mean() -> None:
    """Everything derives from StatsYardError; a closed queue is a kind of
    "not running"; timeouts are TimeoutErrors."""
    import statsyard

    for name in (
        "ChildStartError",
        "DataDirectoryInUseError",
        "FlushTimeout",
        "NotADataDirectoryError",
        "NotRunningError",
        "QueueClosedError",
        "QueueTimeout",
        "StatsYardTimeoutError",
    ):
        assert name in statsyard.__all__
        assert issubclass(getattr(statsyard, name), statsyard.StatsYardError)
    assert issubclass(statsyard.QueueClosedError, statsyard.NotRunningError)
    assert issubclass(statsyard.QueueTimeout, statsyard.StatsYardTimeoutError)
    assert issubclass(statsyard.FlushTimeout, statsyard.StatsYardTimeoutError)
    assert issubclass(statsyard.StatsYardTimeoutError, TimeoutError)


def test_flush_raises_what_its_docstring_promises(make_yard: YardFactory) -> None:
    """NotRunningError when the queue refuses points; FlushTimeout (a
    TimeoutError) when they are not durable in time, with nothing lost."""
    import statsyard

    yard = make_yard(ship_metrics=False)
    yard.supervisor.terminate_child("consumer").get(timeout=WAIT)
    yard.push_many(points(10))
    with pytest.raises(statsyard.FlushTimeout):
        yard.flush(timeout=0.1)
    assert yard.counts().lost == 0
    yard.child("queue").ask(Close(), timeout=WAIT)
    yard.push_many(points(10, start=10))
    with pytest.raises(NotRunningError):
        yard.flush(timeout=WAIT)
    yard.stop(timeout=0.5)  # the 10 queued points cannot drain: no consumer


def test_queue_gauges_read_from_other_threads_are_never_skipped_or_torn(
    make_yard: YardFactory,
) -> None:
    """The queue's contents change in the queue's thread while the shipper
    and the host read them: reads are consistent and never fail."""
    yard = make_yard(batch_size=7, queue_capacity=50, ship_metrics=False)
    done = threading.Event()
    samples: list[dict[str, float]] = []

    def read() -> None:
        while not done.is_set():
            samples.append(
                {s.name: s.value for s in yard.registry.collect() if "queue" in s.name}
            )

    def push(n: int) -> None:
        yard.push_many(points(1500, start=n * 1500))

    reader = threading.Thread(target=read)
    reader.start()
    pushers = [threading.Thread(target=push, args=(n,)) for n in range(3)]
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join(WAIT)
    yard.flush(timeout=WAIT)
    done.set()
    reader.join(WAIT)
    errors = [s for s in yard.registry.collect() if s.name == "metrics.gauge_errors"]
    assert sum(s.value for s in errors) == 0, errors
    assert len(samples) > 10
    for sample in samples:
        assert 0 <= sample["queue.size"] <= 50
        assert sample["queue.in_flight"] >= 0


def test_points_without_a_timestamp_are_stamped_when_pushed(
    make_yard: YardFactory,
) -> None:
    """Not when validated: a point that waits in the queue (or is redelivered
    after a crash) keeps the time push() took it."""
    yard = make_yard(ship_metrics=False)
    yard.supervisor.terminate_child("consumer").get(timeout=WAIT)  # held in queue
    before = now_ms()
    yard.push(("one.by.one", "e", 1))
    yard.push_many(
        [("in.bulk", "e", 2), {"metric": "mapping", "entity": "e", "value": 3}]
    )
    after = now_ms()
    threading.Event().wait(0.2)  # let the clock move on while the points wait
    yard.supervisor.restart_child("consumer").get(timeout=WAIT)
    yard.child("consumer").tell("crash")  # and a redelivery on top
    yard.flush(timeout=WAIT)
    for metric in ("one.by.one", "in.bulk", "mapping"):
        [(stamp, _)] = yard.query(metric)["e"]
        assert before <= stamp <= after, metric


def test_a_retried_point_reads_back_once(make_yard: YardFactory) -> None:
    """StatsYard.query(): the same series and timestamp pushed twice is one point."""
    yard = make_yard()
    yard.push_many([DataPoint("disk.used", "a", v, TS + 1000 * v) for v in range(3)])
    yard.flush(timeout=WAIT)
    yard.push(DataPoint("disk.used", "a", 10, TS + 1000))  # the client retried
    yard.flush(timeout=WAIT)
    assert yard.query("disk.used") == {"a": [(TS, 0), (TS + 1000, 10), (TS + 2000, 2)]}
    assert yard.query("disk.used", step=10_000, agg="count") == {
        "a": [(TS - TS % 10_000, 3)]
    }


def test_a_bad_setting_or_argument_is_a_statsyard_error_naming_the_value(
    tmp_path: Path,
) -> None:
    """No raw ValueError/KeyError from the public surface: a bad setting is a
    ConfigError, a path where settings belong too; each names what was given."""
    import statsyard
    from statsyard.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"queue_capacity.*-5") as bad:
        StatsYard(data_dir=tmp_path, queue_capacity=-5)
    assert isinstance(bad.value, StatsYardError)
    with pytest.raises(ConfigError, match="data_dir=") as path:
        StatsYard(tmp_path)  # type: ignore[arg-type]
    assert isinstance(path.value, ValueError)
    with pytest.raises(ConfigError, match=r"batch_sise.*did you mean 'batch_size'"):
        statsyard.Config.of(pipeline={"batch_sise": 10})
    assert issubclass(statsyard.InvalidArgumentError, StatsYardError)
    assert issubclass(statsyard.InvalidArgumentError, ValueError)
    for name in ("Valid", "Invalid", "Row", "validate_batch", "validate_rows"):
        assert name not in statsyard.__all__  # validation internals stay inside
