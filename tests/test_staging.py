"""PushStage and the form points wait in the queue: stamped, DataPoints as tuples."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from statsyard import DataPoint, StatsYard
from statsyard.config import Config
from statsyard.pipeline.staging import as_queued

WAIT = 10.0
TS = 1_700_000_000_000


class Labelled(DataPoint):
    """A DataPoint subclass: not the exact class, so left for validation."""


@pytest.fixture
def yard(tmp_path: Path) -> Iterator[StatsYard]:
    """A StatsYard whose linger is long: only full batches go out on their own."""
    running = StatsYard(
        Config.of(pipeline={"linger": 5.0, "batch_size": 100}),
        data_dir=tmp_path / "data",
        ship_metrics=False,
    ).start()
    yield running
    running.stop(timeout=WAIT)


def test_datapoints_wait_in_the_queue_as_the_tuple_of_their_fields() -> None:
    """Exact DataPoints become plain 4-tuples; stamps go to what lacks one."""
    point = DataPoint("m", "e", 1.5, TS)
    assert as_queued([point, point], 7) == [("m", "e", 1.5, TS)] * 2
    sub = Labelled("m", "e", 2, TS)
    junk = object()
    mixed = [
        point,
        ("m", "e", 3),
        {"metric": "m", "entity": "e", "value": 4},
        sub,
        junk,
    ]
    assert as_queued(mixed, 7) == [
        ("m", "e", 1.5, TS),
        ("m", "e", 3, 7),
        {"metric": "m", "entity": "e", "value": 4, "timestamp": 7},
        sub,
        junk,
    ]
    complete = [("m", "e", 1, TS), ("m", "e", 2, TS)]
    assert as_queued(complete, 7) is complete  # nothing to do: not copied


def test_a_pushed_datapoint_is_validated_as_before(
    yard: StatsYard, caplog: pytest.LogCaptureFixture
) -> None:
    """Queued as a tuple, a DataPoint is still written or rejected, and
    counted, exactly as it was: by its four fields (a subclass, left as it
    is, is still refused)."""
    yard.push(DataPoint("cpu.load", "a", 1.0, TS))
    yard.push_many(
        iter(
            [
                DataPoint("cpu.load", "a", 2, TS + 1),
                DataPoint("cpu.load", "a", math.nan),
            ]
        )
    )
    yard.push_many(
        [DataPoint("bad name", "a", 3, TS + 2), Labelled("cpu.load", "a", 4, TS + 3)]
    )
    yard.flush(timeout=WAIT)
    assert yard.query("cpu.load") == {"a": [(TS, 1.0), (TS + 1, 2)]}
    counts = yard.counts()
    assert (counts.pushed, counts.written, counts.invalid) == (5, 2, 3)
    rejected = "\n".join(r.getMessage() for r in caplog.records)
    assert "value must be a finite number, got nan" in rejected
    assert "metric must not contain whitespace" in rejected
    assert "got Labelled" in rejected  # only the exact class, as before


def test_push_many_reads_a_generator_a_few_hundred_points_at_a_time(
    yard: StatsYard,
) -> None:
    """A lazy iterable is read a piece at a time, so the points it makes die
    young; every point of it is still taken, in order."""
    drawn: list[int] = []

    def made() -> Iterator[DataPoint]:
        for i in range(1050):
            drawn.append(i)
            yield DataPoint("gen.made", "e", i, TS + i)

    yard.push_many(made())
    yard.flush(timeout=WAIT)
    assert drawn == list(range(1050))
    [stored] = yard.query("gen.made").values()
    assert [value for _, value in stored] == list(range(1050))


def test_a_busy_pusher_does_not_wake_the_linger_thread_for_every_batch(
    yard: StatsYard,
) -> None:
    """While batches keep going out, the pusher awaits its own pushes: the
    linger thread, waiting for its deadline, is not woken for each one."""
    for start in range(0, 5000, 100):  # 50 batches, one call each, as stress does
        yard.push_many([("busy", "e", i, TS + i) for i in range(start, start + 100)])
    yard.flush(timeout=WAIT)
    assert yard.counts().written == 5000
    assert yard._stage.wakeups <= 3
