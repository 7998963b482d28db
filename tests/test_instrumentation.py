"""The pipeline's self-metrics, shipped by the supervised StatShipper."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from statsyard import DataPoint, StatsYard
from statsyard.testing import DogStatsdCapture, StatsdLine

WAIT = 10.0
TS = 1_700_000_000_000


@pytest.fixture
def agent() -> Iterator[DogStatsdCapture]:
    capture = DogStatsdCapture()
    yield capture
    capture.close()


@pytest.fixture
def yard(tmp_path: Path, agent: DogStatsdCapture) -> Iterator[StatsYard]:
    instance = StatsYard(
        tmp_path / "data",
        batch_size=100,
        statsd_port=agent.port,
        ship_interval=0.05,
        metrics_tags={"env": "test"},
    ).start()
    yield instance
    instance.stop(timeout=WAIT)


def latest(lines: Sequence[StatsdLine], name: str) -> float | None:
    values = [line.value for line in lines if line.name == name]
    return values[-1] if values else None


def test_pipeline_metrics_arrive_as_tagged_namespaced_gauges(
    yard: StatsYard, agent: DogStatsdCapture
) -> None:
    """Ledger totals, histograms and queue gauges reach the agent as gauges."""
    yard.push_many(DataPoint("m", "e", i, TS + i) for i in range(1000))
    yard.push(("m", "e", float("inf"), TS))
    yard.flush(timeout=WAIT)
    expected = {
        "statsyard.ingest.pushed",
        "statsyard.ingest.lost",
        "statsyard.ingest.validate_us.count",
        "statsyard.ingest.validate_us.p99",
        "statsyard.ingest.rate.m1_rate",
        "statsyard.writer.batch_size.max",
        "statsyard.writer.write_us.p50",
        "statsyard.queue.size",
        "statsyard.queue.capacity",
        "statsyard.queue.blocked_pushers",
        "statsyard.vm.memory.rss",
        "statsyard.vm.threads",
    }
    # A shipment spans several datagrams: wait for all the names, not one.
    lines = agent.wait_for(
        lambda ls: (
            latest(ls, "statsyard.ingest.written") == 1000
            and latest(ls, "statsyard.ingest.invalid") == 1
            and expected <= {line.name for line in ls}
        ),
        timeout=WAIT,
    )
    assert {line.type for line in lines} == {"g"}
    assert all(line.tag_map.get("env") == "test" for line in lines)
    # Every point is validated once; histograms drain each interval, so the
    # counts add up across shipments.
    agent.wait_for(
        lambda ls: (
            sum(
                line.value
                for line in ls
                if line.name == "statsyard.ingest.validate_us.count"
            )
            == 1001
        ),
        timeout=WAIT,
    )
    assert latest(lines, "statsyard.queue.capacity") == yard.queue_capacity


def test_a_crashed_shipper_is_restarted_and_the_registry_survives(
    yard: StatsYard, agent: DogStatsdCapture
) -> None:
    """Crash the shipper: only it restarts, and the numbers carry on."""
    yard.push_many(DataPoint("m", "e", i, TS + i) for i in range(300))
    yard.flush(timeout=WAIT)
    agent.wait_for(lambda ls: latest(ls, "statsyard.ingest.written") == 300, WAIT)
    before = {c.id: c.ref for c in yard.supervisor.which_children().get(timeout=WAIT)}
    yard.child("shipper").tell("crash")
    restarts = "statsyard.supervisor.restarts"
    lines = agent.wait_for(
        lambda ls: any(
            line.name == restarts
            and line.tag_map.get("child") == "shipper"
            and line.value == 1  # it ships from the start, at 0
            for line in ls
        ),
        timeout=WAIT,
    )
    assert latest(lines, "statsyard.ingest.written") == 300
    after = {c.id: c.ref for c in yard.supervisor.which_children().get(timeout=WAIT)}
    assert [k for k in before if before[k] is not after[k]] == ["shipper"]


def test_mailboxes_of_every_child_are_reported(
    yard: StatsYard, agent: DogStatsdCapture
) -> None:
    """vm.mailbox.<child> gauges name every supervised child."""
    lines = agent.wait_for(
        lambda ls: (
            {"queue", "writer", "consumer", "shipper"}
            <= {
                line.name.rsplit(".", 1)[-1]
                for line in ls
                if line.name.startswith("statsyard.vm.mailbox")
            }
        ),
        timeout=WAIT,
    )
    assert all(
        line.value >= 0
        for line in lines
        if line.name.startswith("statsyard.vm.mailbox")
    )
