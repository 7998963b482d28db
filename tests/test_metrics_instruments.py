"""The pipeline's self-metrics, shipped by the supervised StatShipper."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from statsyard import DataPoint, StatsYard
from statsyard.config import Config
from statsyard.graphite.protocol import REASONS
from statsyard.metrics.instruments import udp_socket_drops
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
        Config.of(
            metrics={"port": agent.port, "interval": 0.05, "tags": {"env": "test"}}
        ),
        data_dir=tmp_path / "data",
        batch_size=100,
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


# -- the Graphite listener's metrics -------------------------------------------

LISTENER_COUNTERS = (
    "graphite.lines.accepted",
    "graphite.udp.dropped",
    "graphite.points.lost",
    "graphite.points.unconfirmed",
    "graphite.connections.opened",
    "graphite.connections.closed",
    "graphite.connections.refused",
    "graphite.connections.idle_closed",
    "graphite.connections.evicted",
    "graphite.accept.failures",
)


def shipped(lines: Sequence[StatsdLine], name: str, **tags: str) -> float | None:
    """The latest value of ``statsyard.<name>`` with these tags, if any."""
    values = [
        line.value
        for line in lines
        if line.name == f"statsyard.{name}"
        and all(line.tag_map.get(k) == v for k, v in tags.items())
    ]
    return values[-1] if values else None


def ship_now(yard: StatsYard) -> None:
    yard.child("shipper").proxy().ship_now().get(timeout=WAIT)


def every_listener_metric(lines: Sequence[StatsdLine]) -> bool:
    """True once one whole shipment of the listener's metrics has arrived."""
    names = [*LISTENER_COUNTERS, "graphite.connections.open"]
    if Path("/proc/net/udp").exists():
        names.append("graphite.udp.kernel_drops")
    return all(shipped(lines, name) is not None for name in names) and all(
        shipped(lines, "graphite.lines.rejected", reason=r) is not None for r in REASONS
    )


def test_the_listener_ships_every_documented_metric_from_the_first_interval(
    tmp_path: Path, agent: DogStatsdCapture
) -> None:
    """Idle: every listener name ships, at 0. Busy: lines, rejects, connections."""
    yard = StatsYard(
        Config.of(
            metrics={"port": agent.port, "interval": 3600, "process_stats": False},
            graphite={"enabled": True, "tcp_port": 0, "udp_port": 0},
        ),
        data_dir=tmp_path / "data",
    ).start()
    try:
        ship_now(yard)
        idle = agent.wait_for(every_listener_metric)
        for name in (*LISTENER_COUNTERS, "graphite.connections.open"):
            assert shipped(idle, name) == 0, name
        for reason in REASONS:
            assert shipped(idle, "graphite.lines.rejected", reason=reason) == 0
        assert shipped(idle, "graphite.udp.kernel_drops") in (0, None)

        listener = yard.child("graphite").proxy()
        (_, tcp_port), (_, udp_port) = listener.addresses().get(timeout=WAIT)
        with socket.create_connection(("127.0.0.1", tcp_port), WAIT) as sock:
            sock.sendall(b"g.m 1 1700000000\nbad\ng.m 2 1700000001\nx nan 1700000000\n")
        kept_open = socket.create_connection(("127.0.0.1", tcp_port), WAIT)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"g.u 3 1700000000\n", ("127.0.0.1", udp_port))
        try:
            deadline = time.monotonic() + WAIT
            while True:  # Graphite has no acknowledgement: ask until it is read
                stats = listener.stats().get(timeout=WAIT)
                if (
                    stats.lines_accepted == 3
                    and stats.connections_total == 2
                    and stats.connections_open == 1
                ):
                    break
                assert time.monotonic() < deadline, stats
            agent.clear()
            ship_now(yard)
            busy = agent.wait_for(every_listener_metric)
        finally:
            kept_open.close()
        assert shipped(busy, "graphite.lines.accepted") == 3
        assert shipped(busy, "graphite.lines.rejected", reason="fields") == 1
        assert shipped(busy, "graphite.lines.rejected", reason="not_finite") == 1
        assert shipped(busy, "graphite.connections.opened") == 2
        assert shipped(busy, "graphite.connections.closed") == 1
        assert shipped(busy, "graphite.connections.open") == 1
        assert shipped(busy, "graphite.points.lost") == 0
        assert all(line.type == "g" for line in busy)
    finally:
        yard.stop(timeout=WAIT)


def test_kernel_udp_drops_are_read_for_one_socket() -> None:
    """A UDP socket nobody reads, with a tiny buffer: Linux counts its drops."""
    if not Path("/proc/net/udp").exists():
        pytest.skip("no /proc/net/udp on this system")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as source,
    ):
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sink.bind(("127.0.0.1", 0))
        inode = os.fstat(sink.fileno()).st_ino
        assert udp_socket_drops(inode) == 0
        for _ in range(200):
            source.sendto(b"x" * 1000, sink.getsockname())
        drops = udp_socket_drops(inode)
        assert drops is not None and 0 < drops < 200
    assert udp_socket_drops(inode) is None  # closed: no longer listed
