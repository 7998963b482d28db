"""Tests of statsyard.metrics.registry: the registry and every metric kind."""

from __future__ import annotations

import logging
import math
import random
import threading
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from statsyard.exceptions import MetricError
from statsyard.metrics import (
    HISTOGRAM_STATS,
    METER_STATS,
    Registry,
    Sample,
    ShippableStats,
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def by_name(samples: list[Sample]) -> dict[str, float]:
    return {s.name: s.value for s in samples}


# -- registry ------------------------------------------------------------------


def test_same_name_and_tags_give_the_same_metric_other_tags_another() -> None:
    """A metric is identified by its name and its tags."""
    registry = Registry()
    a = registry.counter("ingest.lost", tags={"why": "full"})
    assert registry.counter("ingest.lost", tags={"why": "full"}) is a
    b = registry.counter("ingest.lost", tags={"why": "closed"})
    assert b is not a
    a.inc(2)
    b.inc(5)
    samples = registry.collect()
    assert Sample("ingest.lost", 2.0, (("why", "full"),)) in samples
    assert Sample("ingest.lost", 5.0, (("why", "closed"),)) in samples


def test_two_registries_never_mix_numbers() -> None:
    """Each StatsYard instance has its own registry: nothing is global."""
    one, two = Registry(), Registry()
    one.counter("ingest.written").inc(7)
    assert two.counter("ingest.written").value == 0


def test_a_name_used_by_another_kind_is_refused() -> None:
    """Asking for a counter's name as a histogram raises a MetricError."""
    registry = Registry()
    registry.counter("writer.batch_size")
    with pytest.raises(MetricError, match="is a counter, not a histogram"):
        registry.histogram("writer.batch_size")


@pytest.mark.parametrize("name", ["", "1abc", "a..b", "a b", "a|b", "a:b", "a.", 3])
def test_bad_names_are_refused(name: object) -> None:
    """Names are dotted words; anything else is a clear MetricError."""
    with pytest.raises(MetricError, match="metric name must be"):
        Registry().counter(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tags", [{"k": "a|b"}, {"k": "a,b"}, {"k": ""}, {"k:x": "v"}, {"": "v"}, {"k": 1}]
)
def test_bad_tags_are_refused(tags: dict[str, object]) -> None:
    """Tags that would break the DogStatsD line are refused."""
    with pytest.raises(MetricError, match="tag"):
        Registry().counter("a", tags=tags)  # type: ignore[arg-type]


def test_a_histogram_asked_for_with_other_parameters_is_refused() -> None:
    """The range of a histogram is fixed at creation."""
    registry = Registry()
    registry.histogram("h", highest=1000)
    assert registry.histogram("h", highest=1000) is registry.histogram(
        "h", highest=1000
    )
    with pytest.raises(MetricError, match="exists with"):
        registry.histogram("h", highest=2000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lowest": 0}, "lowest must be"),
        ({"highest": 1}, "highest must be"),
        ({"significant_figures": 6}, "significant_figures must be"),
    ],
)
def test_bad_histogram_ranges_are_refused(kwargs: dict[str, Any], message: str) -> None:
    """Histogram parameters are checked with a message naming the bad one."""
    with pytest.raises(MetricError, match=message):
        Registry().histogram("h", **kwargs)


# -- counter and gauge ---------------------------------------------------------


def test_counters_are_cumulative_across_collections() -> None:
    """A counter goes up and down and is never reset by collecting."""
    registry = Registry()
    counter = registry.counter("ingest.pushed")
    counter.inc()
    counter.inc(9)
    counter.dec(3)
    assert counter.value == 7
    assert by_name(registry.collect())["ingest.pushed"] == 7.0
    counter.inc(2)
    assert by_name(registry.collect())["ingest.pushed"] == 9.0


def test_counters_are_thread_safe() -> None:
    """Concurrent increments are all counted."""
    counter = Registry().counter("c")

    def work() -> None:
        for _ in range(20_000):
            counter.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert counter.value == 80_000


def test_a_gauge_ships_what_was_set_and_nothing_before() -> None:
    """A gauge never set has no value to ship; a set one ships its value."""
    registry = Registry()
    gauge = registry.gauge("queue.capacity")
    assert "queue.capacity" not in by_name(registry.collect())
    gauge.set(10_000)
    assert by_name(registry.collect())["queue.capacity"] == 10_000.0
    assert gauge.value == 10_000.0


def test_a_gauge_reader_is_called_at_collection_and_can_be_rebound() -> None:
    """A reader gives the value at collection time; asking again rebinds it."""
    registry = Registry()
    sizes = iter([3, 4])
    registry.gauge("queue.size", lambda: next(sizes))
    assert by_name(registry.collect())["queue.size"] == 3.0
    assert by_name(registry.collect())["queue.size"] == 4.0
    registry.gauge("queue.size", lambda: 42)
    assert by_name(registry.collect())["queue.size"] == 42.0


def test_a_failing_gauge_reader_is_skipped_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken reader never breaks the collection of the other metrics."""
    registry = Registry()
    registry.gauge("queue.size", lambda: 1 / 0)
    registry.gauge("queue.nan", lambda: math.nan)
    registry.counter("ingest.valid").inc()
    with caplog.at_level(logging.WARNING, logger="statsyard.metrics.registry"):
        registry.collect()
        samples = registry.collect()
    values = {(s.name, s.tags): s.value for s in samples}
    assert ("queue.size", ()) not in values
    assert ("queue.nan", ()) not in values
    assert values[("ingest.valid", ())] == 1.0
    assert values[("metrics.gauge_errors", (("gauge", "queue.size"),))] == 2.0
    assert values[("metrics.gauge_errors", (("gauge", "queue.nan"),))] == 2.0
    warnings = [r for r in caplog.records if "queue.size" in r.getMessage()]
    assert len(warnings) == 1
    assert "ZeroDivisionError" in warnings[0].getMessage()


# -- meter -----------------------------------------------------------------------


def test_meter_rates_follow_dropwizard_ewma() -> None:
    """Dropwizard's EWMATest figures: 3 events, then each minute of silence.

    One 5 s tick sets every rate to 3 / 5 = 0.6/s; each further minute (12
    ticks) decays it by (1 - alpha)^12, alpha = 1 - exp(-5 / 60 / minutes).
    """
    clock = FakeClock()
    meter = Registry(clock=clock).meter("ingest.rate")
    meter.mark(3)
    clock.advance(5.000_001)
    assert meter.one_minute_rate == pytest.approx(0.6)
    assert meter.five_minute_rate == pytest.approx(0.6)
    assert meter.fifteen_minute_rate == pytest.approx(0.6)
    clock.advance(60)
    assert meter.one_minute_rate == pytest.approx(0.22072766, rel=1e-6)
    assert meter.five_minute_rate == pytest.approx(0.49123845, rel=1e-6)
    assert meter.fifteen_minute_rate == pytest.approx(0.56130419, rel=1e-6)
    clock.advance(60)
    assert meter.one_minute_rate == pytest.approx(0.08120117, rel=1e-6)
    assert meter.five_minute_rate == pytest.approx(0.40219203, rel=1e-6)
    assert meter.fifteen_minute_rate == pytest.approx(0.52510399, rel=1e-6)


def test_meter_ticks_lazily_the_same_as_tick_by_tick() -> None:
    """Reading after a long gap equals reading at every 5 s tick."""
    clock_a, clock_b = FakeClock(), FakeClock()
    lazy = Registry(clock=clock_a).meter("m")
    eager = Registry(clock=clock_b).meter("m")
    for meter, clock in ((lazy, clock_a), (eager, clock_b)):
        meter.mark(120)
        clock.advance(7)
        meter.mark(30)
    clock_a.advance(100)
    for _ in range(20):
        clock_b.advance(5)
        eager.snapshot()
    assert lazy.snapshot() == pytest.approx(eager.snapshot())


def test_meter_count_and_mean_rate() -> None:
    """Count is cumulative; the mean rate is count over time since creation."""
    clock = FakeClock()
    registry = Registry(clock=clock)
    meter = registry.meter("ingest.rate")
    assert meter.mean_rate == 0.0
    meter.mark(100)
    clock.advance(4)
    meter.mark(100)
    assert meter.count == 200
    assert meter.mean_rate == pytest.approx(50.0)
    first = by_name(registry.collect())
    clock.advance(6)
    second = by_name(registry.collect())
    assert first["ingest.rate.count"] == second["ingest.rate.count"] == 200.0
    assert second["ingest.rate.mean_rate"] == pytest.approx(20.0)
    assert set(first) == {f"ingest.rate.{stat}" for stat in METER_STATS}


# -- histogram ------------------------------------------------------------------


def test_histogram_stats_describe_the_interval_then_reset() -> None:
    """Percentiles match the recorded values; the next interval starts empty."""
    registry = Registry()
    histogram = registry.histogram("writer.write_us")
    for value in range(1, 1001):
        histogram.record(value)
    stats = by_name(registry.collect())
    assert stats["writer.write_us.count"] == 1000
    assert stats["writer.write_us.min"] == 1
    assert stats["writer.write_us.max"] == 1000
    assert stats["writer.write_us.mean"] == pytest.approx(500.5)
    assert stats["writer.write_us.stddev"] == pytest.approx(288.675, rel=1e-4)
    assert stats["writer.write_us.p50"] == 500
    assert stats["writer.write_us.p75"] == 750
    assert stats["writer.write_us.p90"] == 900
    assert stats["writer.write_us.p95"] == 950
    assert stats["writer.write_us.p99"] == 990
    assert stats["writer.write_us.p999"] == 999
    after = [s for s in registry.collect() if s.name.startswith("writer.write_us")]
    # An idle interval ships every stat as 0, not only the count (docs/metrics.md).
    assert after == [Sample(f"writer.write_us.{s}", 0.0) for s in HISTOGRAM_STATS]
    histogram.record(7, count=3)
    again = by_name(registry.collect())
    assert again["writer.write_us.count"] == 3
    assert again["writer.write_us.p99"] == 7


def test_histogram_stats_equal_hdrhistograms_own() -> None:
    """The fast drain computes exactly what HdrHistogram's methods compute."""
    rng = random.Random(7)
    registry = Registry()
    histogram = registry.histogram("h", highest=10_000_000, significant_figures=2)
    reference = HdrHistogram(1, 10_000_000, 2)
    for _ in range(3000):
        value = int(rng.lognormvariate(8, 2)) % 10_000_000
        count = rng.randint(1, 5)
        histogram.record(value, count=count)
        reference.record_value(value, count)
    stats = histogram.drain()
    assert stats["count"] == reference.get_total_count()
    assert stats["min"] == reference.get_min_value()
    assert stats["max"] == reference.get_max_value()
    assert stats["mean"] == pytest.approx(reference.get_mean_value())
    assert stats["stddev"] == pytest.approx(reference.get_stddev())
    for stat, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        assert stats[stat] == reference.get_value_at_percentile(pct), stat


@pytest.mark.parametrize(
    ("value", "count", "recorded"),
    [
        (-5, 1, 0.0),
        (2_000, 1, 1000.0),
        (math.inf, 1, 1000.0),
        (-math.inf, 1, 0.0),
        (math.nan, 1, None),
        ("12", 1, None),
        (5, 0, None),
    ],
)
def test_histogram_record_clamps_and_counts_and_never_raises(
    value: float, count: int, recorded: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Out-of-range values are clamped, non-numbers dropped, both counted."""
    registry = Registry()
    histogram = registry.histogram("h", highest=1000)
    with caplog.at_level(logging.WARNING, logger="statsyard.metrics.registry"):
        histogram.record(value, count=count)
        histogram.record(value, count=count)
    stats = {(s.name, s.tags): s.value for s in registry.collect()}
    assert stats[("metrics.clamped", (("metric", "h"),))] == 2.0
    assert histogram.clamped == 2
    if recorded is None:
        assert stats[("h.count", ())] == 0
    else:
        assert stats[("h.count", ())] == 2
        assert stats[("h.max", ())] == pytest.approx(recorded, rel=1e-3)
    assert len([r for r in caplog.records if "Histogram h got" in r.getMessage()]) == 1


def test_histogram_drain_loses_no_concurrent_record() -> None:
    """Values recorded while another thread drains land in some interval."""
    registry = Registry()
    histogram = registry.histogram("h")

    def work() -> None:
        for i in range(3000):
            histogram.record(i % 500 + 1)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for worker in workers:
        worker.start()
    drained = 0.0
    while any(w.is_alive() for w in workers):
        drained += histogram.drain()["count"]
    for worker in workers:
        worker.join(timeout=30)
    drained += histogram.drain()["count"]
    assert drained == 9000


# -- timed -------------------------------------------------------------------------


def test_timed_records_microseconds_as_decorator_and_context_manager() -> None:
    """Durations go into the histogram of that name, in µs, even on errors."""
    clock = FakeClock()
    registry = Registry(clock=clock)
    timer = registry.timed("ingest.validate_us")
    assert registry.timed("ingest.validate_us") is timer

    @registry.timed("ingest.validate_us")
    def work(seconds: float) -> str:
        clock.advance(seconds)
        return "done"

    assert work(0.002) == "done"
    with timer:
        clock.advance(0.000_5)
        with timer:  # nested use of the same timer
            clock.advance(0.000_1)
    with pytest.raises(ZeroDivisionError), timer:
        clock.advance(0.01)
        _ = 1 / 0
    stats = registry.histogram("ingest.validate_us").drain()
    assert stats["count"] == 4
    assert stats["min"] == 100
    assert stats["max"] == pytest.approx(10_000, rel=1e-3)
    assert stats["p50"] == pytest.approx(600, rel=1e-3)


# -- shippable stats ----------------------------------------------------------------


def test_shippable_stats_choose_what_is_collected() -> None:
    """Only the chosen histogram and meter stats are emitted."""
    registry = Registry()
    registry.histogram("h").record(5)
    registry.meter("m").mark()
    names = {
        s.name
        for s in registry.collect(
            shippable=ShippableStats(histogram=("count", "p99"), meter=("m1_rate",))
        )
    }
    assert names == {"h.count", "h.p99", "m.m1_rate", "metrics.clamped"}
    assert len(HISTOGRAM_STATS) == 11


def test_shippable_stats_reject_unknown_names_listing_the_allowed() -> None:
    """A typo gives an error naming every allowed stat."""
    with pytest.raises(MetricError, match=r"unknown histogram stats \['p98'\].*p999"):
        ShippableStats(histogram=("p50", "p98"))
    with pytest.raises(MetricError, match=r"unknown meter stats.*m15_rate"):
        ShippableStats(meter=("m2_rate",))
    with pytest.raises(MetricError, match="string"):
        ShippableStats(meter="count")


def test_each_reader_drains_only_its_own_histogram_intervals() -> None:
    """A second reader never takes the shipper's values: every reader sees
    every value once, in its own intervals; snapshot() ends no interval."""
    registry = Registry()
    histogram = registry.histogram("writer.write_us")
    histogram.record(5)
    histogram.record(7)
    assert (
        by_name([sample for _kind, sample in registry.snapshot()])[
            "writer.write_us.count"
        ]
        == 2
    )
    other = by_name(registry.collect(reader="other"))
    assert other["writer.write_us.count"] == 2
    histogram.record(9)
    shipper = by_name(registry.collect(reader="shipper"))
    assert shipper["writer.write_us.count"] == 3  # nothing taken by "other"
    assert shipper["writer.write_us.max"] == 9
    assert by_name(registry.collect(reader="other"))["writer.write_us.count"] == 1
    assert by_name(registry.collect(reader="shipper"))["writer.write_us.count"] == 0
    assert (
        by_name([sample for _kind, sample in registry.snapshot()])[
            "writer.write_us.count"
        ]
        == 3
    )
