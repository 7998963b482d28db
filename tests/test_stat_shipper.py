"""Tests of the StatShipper actor, through its messages and a real UDP socket."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pykka
import pytest

from statsyard._ticker import Ticker, next_due
from statsyard.config import Config
from statsyard.exceptions import InvalidArgumentError, UnknownMessageError
from statsyard.metrics import (
    HISTOGRAM_STATS,
    M1_ALPHA,
    Registry,
    ShippableStats,
    stat_shipper,
)
from statsyard.metrics._dogstatsd_compat import CountingSocket
from statsyard.metrics.process_stats import ProcessStats
from statsyard.metrics.stat_shipper import (
    ERROR_KINDS,
    TICKER_THREAD_NAME,
    StatShipper,
    StatShipperProxy,
)
from statsyard.testing import DogStatsdCapture, StatsdLine
from tests.conftest import RecordingLink

TIMEOUT = 5.0
NEVER = 3600.0  # an interval long enough that only ship_now() ships


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def agent() -> Iterator[DogStatsdCapture]:
    with DogStatsdCapture() as capture:
        yield capture


@pytest.fixture
def start_shipper() -> Iterator[Callable[..., pykka.ActorRef[StatShipper]]]:
    """Start shippers; stop every one still alive at the end, even on failure."""
    started: list[pykka.ActorRef[StatShipper]] = []

    def start(**kwargs: Any) -> pykka.ActorRef[StatShipper]:
        kwargs.setdefault("interval", NEVER)
        ref = StatShipper.start(**kwargs)
        started.append(ref)
        return ref

    yield start
    for ref in started:
        ref.stop(block=True, timeout=TIMEOUT)


def proxy(ref: pykka.ActorRef[StatShipper]) -> StatShipperProxy:
    return cast(StatShipperProxy, ref.proxy())


def ticker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == TICKER_THREAD_NAME]


def has(name: str) -> Callable[[Sequence[StatsdLine]], bool]:
    return lambda lines: any(line.name == name for line in lines)


def last(lines: Sequence[StatsdLine], name: str) -> StatsdLine:
    return [line for line in lines if line.name == name][-1]


def test_every_kind_arrives_as_a_namespaced_tagged_gauge(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """Counters, gauges, meters and histograms all ship as ``g`` lines."""
    registry = Registry()
    registry.counter("ingest.written", tags={"shard": "a"}).inc(5)
    registry.gauge("queue.capacity").set(100)
    registry.meter("ingest.rate").mark(10)
    registry.histogram("writer.write_us").record(250)
    ref = start_shipper(
        registry=registry,
        port=agent.port,
        namespace="yard",
        constant_tags={"env": "test"},
        process_stats=ProcessStats(),
    )
    sent = proxy(ref).ship_now().get(timeout=TIMEOUT)
    lines = agent.wait_for(lambda lines: len(lines) >= sent, TIMEOUT)
    assert len(lines) == sent
    assert {line.type for line in lines} == {"g"}
    assert all(line.name.startswith("yard.") for line in lines)
    assert all("env:test" in line.tags for line in lines)
    written = last(lines, "yard.ingest.written")
    assert written.value == 5
    assert written.tag_map == {"shard": "a", "env": "test"}
    assert last(lines, "yard.queue.capacity").value == 100
    assert last(lines, "yard.ingest.rate.count").value == 10
    assert last(lines, "yard.writer.write_us.p99").value == 250
    assert last(lines, "yard.vm.memory.rss").value > 0
    assert last(lines, "yard.vm.threads").value >= 1


def test_histograms_ship_the_interval_then_reset(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """Each shipment's percentiles describe only that interval's values."""
    registry = Registry()
    histogram = registry.histogram("writer.batch_size")
    for value in range(1, 101):
        histogram.record(value)
    shipper = proxy(start_shipper(registry=registry, port=agent.port))
    shipper.ship_now().get(timeout=TIMEOUT)
    lines = agent.wait_for(has("statsyard.writer.batch_size.p999"), TIMEOUT)
    shipped = {line.name: line.value for line in lines}
    assert shipped["statsyard.writer.batch_size.count"] == 100
    assert shipped["statsyard.writer.batch_size.p50"] == 50
    assert shipped["statsyard.writer.batch_size.p90"] == 90
    assert shipped["statsyard.writer.batch_size.max"] == 100
    agent.clear()
    shipper.ship_now().get(timeout=TIMEOUT)
    lines = agent.wait_for(has("statsyard.writer.batch_size.p999"), TIMEOUT)
    # Idle: every stat again, each 0, so no agent keeps showing the old p99.
    idle = {
        line.name: line.value
        for line in lines
        if line.name.startswith("statsyard.writer.batch_size.")
    }
    assert idle == {f"statsyard.writer.batch_size.{s}": 0 for s in HISTOGRAM_STATS}
    agent.clear()
    histogram.record(4000, count=2)
    shipper.ship_now().get(timeout=TIMEOUT)
    lines = agent.wait_for(has("statsyard.writer.batch_size.p50"), TIMEOUT)
    assert last(lines, "statsyard.writer.batch_size.count").value == 2
    assert last(lines, "statsyard.writer.batch_size.p50").value == pytest.approx(
        4000, rel=1e-3
    )


def test_counters_and_meters_keep_their_meaning_across_intervals(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """Counters and meter counts are cumulative; rates follow the clock."""
    clock = FakeClock()
    registry = Registry(clock=clock)
    counter = registry.counter("ingest.pushed")
    meter = registry.meter("ingest.rate")
    shipper = proxy(start_shipper(registry=registry, port=agent.port))
    counter.inc(5)
    meter.mark(50)
    clock.now += 10
    shipper.ship_now().get(timeout=TIMEOUT)
    first = agent.wait_for(has("statsyard.ingest.rate.m1_rate"), TIMEOUT)
    assert last(first, "statsyard.ingest.pushed").value == 5
    assert last(first, "statsyard.ingest.rate.count").value == 50
    assert last(first, "statsyard.ingest.rate.mean_rate").value == pytest.approx(5)
    agent.clear()
    counter.inc(3)
    clock.now += 10
    shipper.ship_now().get(timeout=TIMEOUT)
    second = agent.wait_for(has("statsyard.ingest.rate.m1_rate"), TIMEOUT)
    assert last(second, "statsyard.ingest.pushed").value == 8
    assert last(second, "statsyard.ingest.rate.count").value == 50
    assert last(second, "statsyard.ingest.rate.mean_rate").value == pytest.approx(2.5)
    m1_first = last(first, "statsyard.ingest.rate.m1_rate").value
    m1_second = last(second, "statsyard.ingest.rate.m1_rate").value
    # 10 s = two ticks: the first sets 50 / 5 s, the silent second decays it.
    assert m1_first == pytest.approx(10.0 * (1 - M1_ALPHA))
    assert 0 < m1_second < m1_first  # silent ticks decay it


def test_shippable_stats_limit_what_ships(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """Only the configured histogram and meter stats go out."""
    registry = Registry()
    registry.histogram("h").record(3)
    registry.meter("m").mark()
    shipper = proxy(
        start_shipper(
            registry=registry,
            port=agent.port,
            shippable=ShippableStats(histogram=("p99",), meter=("count",)),
        )
    )
    sent = shipper.ship_now().get(timeout=TIMEOUT)
    lines = agent.wait_for(lambda lines: len(lines) >= sent, TIMEOUT)
    names = {line.name for line in lines}
    assert {"statsyard.h.p99", "statsyard.m.count"} <= names
    assert not names & {"statsyard.h.count", "statsyard.h.p50", "statsyard.m.m1_rate"}


def test_lines_share_datagrams_under_the_udp_payload_size(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """Many samples go out in few datagrams, none above 1432 bytes."""
    registry = Registry()
    for i in range(300):
        registry.counter(f"many.counter_{i:03d}").inc(i)
    shipper = proxy(start_shipper(registry=registry, port=agent.port))
    sent = shipper.ship_now().get(timeout=TIMEOUT)
    lines = agent.wait_for(lambda lines: len(lines) >= sent, TIMEOUT)
    # and shipper.ticks_missed, shipper.errors of each kind
    assert sent == len(lines) == 301 + len(ERROR_KINDS)
    assert 1 < len(agent.datagrams) < sent / 10
    assert max(len(d) for d in agent.datagrams) <= 1432


def test_the_ticker_ships_every_interval_and_stops_with_the_actor(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """Shipments come by themselves; stopping joins the timer thread."""
    registry = Registry()
    registry.counter("ticks.seen").inc()
    ref = start_shipper(registry=registry, port=agent.port, interval=0.02)
    agent.wait_for(
        lambda lines: sum(line.name == "statsyard.ticks.seen" for line in lines) >= 3,
        TIMEOUT,
    )
    assert ticker_threads()
    ref.stop(timeout=TIMEOUT)
    assert not ticker_threads()


def test_a_clean_stop_makes_a_final_shipment(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """What was recorded since the last tick still goes out on stop."""
    registry = Registry()
    ref = start_shipper(registry=registry, port=agent.port)
    proxy(ref).ship_now().get(timeout=TIMEOUT)
    registry.counter("ingest.lost").inc(4)
    ref.stop(timeout=TIMEOUT)
    lines = agent.wait_for(has("statsyard.ingest.lost"), TIMEOUT)
    assert last(lines, "statsyard.ingest.lost").value == 4


def test_an_unknown_message_crashes_it_and_stops_the_ticker(
    start_shipper: Callable[..., pykka.ActorRef[StatShipper]], link: RecordingLink
) -> None:
    """A crash is reported through the link, with no thread left behind."""
    ref = start_shipper(registry=Registry(), link=link, interval=0.05)
    ref.tell("garbage")
    assert link.exited_event.wait(timeout=TIMEOUT)
    [(crashed, error)] = link.exits
    assert crashed is True
    assert isinstance(error, UnknownMessageError)
    assert not ticker_threads()


def test_a_restarted_shipper_continues_from_the_registry(
    agent: DogStatsdCapture, start_shipper: Callable[..., pykka.ActorRef[StatShipper]]
) -> None:
    """State lives in the registry: a new shipper carries on counting."""
    registry = Registry()
    counter = registry.counter("supervisor.restarts", tags={"child": "writer"})
    counter.inc()
    first = start_shipper(registry=registry, port=agent.port)
    first.tell("crash")
    counter.inc()
    second = proxy(start_shipper(registry=registry, port=agent.port))
    second.ship_now().get(timeout=TIMEOUT)
    lines = agent.wait_for(has("statsyard.supervisor.restarts"), TIMEOUT)
    assert last(lines, "statsyard.supervisor.restarts").value == 2


def test_it_survives_a_closed_port_counts_and_logs_once(
    start_shipper: Callable[..., pykka.ActorRef[StatShipper]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listening: errors are counted by kind, logged once, never raised."""
    with DogStatsdCapture() as gone:
        port = gone.port  # now closed: nothing listens there
    registry = Registry()
    shipper = proxy(start_shipper(registry=registry, port=port))
    with caplog.at_level(logging.WARNING, logger="statsyard.metrics.stat_shipper"):
        for _ in range(6):
            assert shipper.ship_now().get(timeout=TIMEOUT) >= 0
    errors = registry.counter("shipper.errors", tags={"kind": "econnrefused"})
    assert errors.value >= 2
    warnings = [r for r in caplog.records if "econnrefused" in r.getMessage()]
    assert len(warnings) == 1


def test_it_survives_an_agent_that_goes_away_and_comes_back(
    start_shipper: Callable[..., pykka.ActorRef[StatShipper]],
) -> None:
    """Shipping resumes when the agent listens again."""
    registry = Registry()
    agent = DogStatsdCapture()
    port = agent.port
    shipper = proxy(start_shipper(registry=registry, port=port))
    try:
        shipper.ship_now().get(timeout=TIMEOUT)
        agent.wait_for(has("statsyard.shipper.ticks_missed"), TIMEOUT)
    finally:
        agent.close()
    for _ in range(4):
        shipper.ship_now().get(timeout=TIMEOUT)
    assert registry.counter("shipper.errors", tags={"kind": "econnrefused"}).value >= 1
    with DogStatsdCapture(port=port) as back:  # UDP ports are free again at once
        registry.counter("back.again").inc()
        shipper.ship_now().get(timeout=TIMEOUT)
        back.wait_for(has("statsyard.back.again"), TIMEOUT)


def test_it_survives_an_unresolvable_agent(
    start_shipper: Callable[..., pykka.ActorRef[StatShipper]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A host name that does not resolve is a counted 'resolve' error."""
    registry = Registry()
    registry.counter("x").inc()
    with caplog.at_level(logging.WARNING, logger="statsyard.metrics.stat_shipper"):
        shipper = proxy(start_shipper(registry=registry, host="agent.invalid"))
        assert shipper.ship_now().get(timeout=TIMEOUT) == 0
        assert shipper.ship_now().get(timeout=TIMEOUT) == 0
    assert registry.counter("shipper.errors", tags={"kind": "resolve"}).value == 3
    assert len([r for r in caplog.records if "(resolve)" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "interval must be > 0"),
        ({"interval": float("nan")}, "interval must be > 0"),
        ({"interval": "1"}, "interval must be a number"),
        ({"port": 0}, "port must be"),
        ({"port": 70000}, "port must be"),
    ],
)
def test_bad_settings_are_refused_before_start(
    kwargs: dict[str, Any], message: str
) -> None:
    """A bad interval or port is an InvalidArgumentError in the caller, naming
    the value given (not a MetricError: no metric is wrong)."""
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        StatShipper.start(registry=Registry(), **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(caught.value)


def test_the_schedule_does_not_drift_and_skips_missed_ticks() -> None:
    """Ticks stay on the grid whatever the send time; late ones are skipped."""
    assert next_due(10.0, 10.3, 1.0) == (11.0, 0)  # slow send: still 11.0
    assert next_due(10.0, 10.999, 1.0) == (11.0, 0)
    assert next_due(10.0, 11.0, 1.0) == (12.0, 1)
    assert next_due(10.0, 13.5, 1.0) == (14.0, 3)


def test_a_shipper_whose_start_fails_closes_its_socket(
    agent: DogStatsdCapture, monkeypatch: pytest.MonkeyPatch, link: RecordingLink
) -> None:
    """Issue 8's defect 10: a failed start must not leak the UDP socket it opened."""
    opened: list[socket.socket] = []
    real_socket = CountingSocket

    def recording_socket(*args: Any, **kwargs: Any) -> socket.socket:
        sock = real_socket(*args, **kwargs)
        opened.append(sock)
        return sock

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(stat_shipper, "CountingSocket", recording_socket)
    monkeypatch.setattr(Ticker, "start", no_thread)
    StatShipper.start(registry=Registry(), port=agent.port, interval=NEVER, link=link)
    assert link.exited_event.wait(TIMEOUT)
    assert link.exits[0][0]  # crashed
    assert len(opened) == 1
    assert opened[0].fileno() == -1  # closed


def test_every_counter_ships_at_zero_before_its_first_event(
    agent: DogStatsdCapture, tmp_path: Path
) -> None:
    """An idle StatsYard's only shipment already holds every counter, at 0.

    Alerts on supervisor.restarts or shipper.errors then see 0, not "no
    data"; every histogram ships every stat (all 0 while idle).
    """
    from statsyard import StatsYard

    yard = StatsYard(
        Config.of(metrics={"port": agent.port, "interval": 3600.0}),
        data_dir=tmp_path / "data",
    ).start()
    yard.stop()  # the shipper's final shipment is the only one
    lines = agent.wait_for(has("statsyard.ingest.validate_us.p999"), TIMEOUT)
    shipped = {(line.name, line.tags): line.value for line in lines}
    counters = [
        *(
            ("statsyard.supervisor.restarts", (f"child:{child}",))
            for child in ("queue", "writer", "consumer", "shipper")
        ),
        *(("statsyard.shipper.errors", (f"kind:{kind}",)) for kind in ERROR_KINDS),
        ("statsyard.shipper.ticks_missed", ()),
        *(
            ("statsyard.metrics.clamped", (f"metric:{name}",))
            for name in (
                "ingest.validate_us",
                "writer.batch_size",
                "writer.write_us",
                "writer.fsync_us",
            )
        ),
    ]
    for key in counters:
        assert shipped.get(key) == 0, key
    for name in ("ingest.validate_us", "writer.write_us"):
        for stat in HISTOGRAM_STATS:
            assert shipped[(f"statsyard.{name}.{stat}", ())] == 0
