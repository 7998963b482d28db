"""What recording and shipping self-metrics cost, per call.

Run by hand, from the repository root:

    PYTHONPATH=. /work/venv/bin/python benchmarks/metrics_overhead.py

Prints the median (over repeats) of the cost of one call of each recording
method, the instrumentation the pipeline adds per batch, and the off-path
costs (a collection, a shipment). Figures, not assertions: this is a noisy
2-core machine, so compare ratios measured in one run.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable

from statsyard.metrics import Registry
from statsyard.metrics.process_stats import ProcessStats
from statsyard.metrics.stat_shipper import StatShipper
from statsyard.testing import DogStatsdCapture

REPEATS = 9


def per_call_ns(stmt: Callable[[], object], number: int) -> float:
    """Median over REPEATS of the cost of one call, in nanoseconds."""
    runs = timeit.repeat(stmt, number=number, repeat=REPEATS)
    return statistics.median(runs) / number * 1e9


def pipeline_registry() -> Registry:
    """A registry holding what the pipeline registers (docs/metrics.md)."""
    registry = Registry()
    for name in ("pushed", "valid", "invalid", "written", "lost"):
        registry.counter(f"ingest.{name}")
    registry.meter("ingest.rate")
    for name in (
        "ingest.validate_us",
        "writer.batch_size",
        "writer.write_us",
        "writer.fsync_us",
    ):
        registry.histogram(name)
    for name in ("size", "capacity", "blocked_pushers", "blocked_poppers"):
        registry.gauge(f"queue.{name}", lambda: 1.0)
    for child in ("queue", "consumer", "writer", "shipper"):
        registry.counter("supervisor.restarts", tags={"child": child})
    return registry


def main() -> None:
    registry = pipeline_registry()
    counter = registry.counter("ingest.written")
    meter = registry.meter("ingest.rate")
    histogram = registry.histogram("writer.write_us")
    gauge = registry.gauge("bench.gauge")
    timer = registry.timed("bench.timed_us")

    @registry.timed("bench.decorated_us")
    def decorated() -> None:
        return None

    def bare() -> None:
        return None

    def with_timer() -> None:
        with timer:
            pass

    def batch() -> None:
        # What the pipeline adds per batch of points.
        counter.inc(500)
        counter.inc(500)
        meter.mark(500)
        histogram.record(1234.5, count=500)
        histogram.record(500)

    n = 200_000
    base = per_call_ns(bare, n)
    rows = [
        ("empty function call (baseline)", base),
        ("Counter.inc(n)", per_call_ns(lambda: counter.inc(500), n)),
        ("Gauge.set(v)", per_call_ns(lambda: gauge.set(3.0), n)),
        ("Meter.mark(n)", per_call_ns(lambda: meter.mark(500), n)),
        (
            "Histogram.record(v, count=n)",
            per_call_ns(lambda: histogram.record(1234.5, count=500), n // 4),
        ),
        ("with registry.timed(...) (reused)", per_call_ns(with_timer, n // 4)),
        ("@registry.timed call overhead", per_call_ns(decorated, n // 4) - base),
        ("per-batch instrumentation (5 calls)", per_call_ns(batch, n // 10)),
    ]
    print(f"Recording, per call (median of {REPEATS} repeats):")
    for label, ns in rows:
        print(f"  {label:<40} {ns:9.0f} ns  ({ns / base:5.1f}x empty call)")
    per_batch = rows[-1][1]
    for points in (100, 500, 1000):
        print(
            f"  per point, batches of {points:<4}"
            f"                  {per_batch / points:9.1f} ns"
        )

    # Off the data path: one collection with the pipeline's metrics, each
    # histogram having seen a spread of values, and one full shipment.
    def fill() -> None:
        for name in ("ingest.validate_us", "writer.write_us", "writer.fsync_us"):
            h = registry.histogram(name)
            for value in range(1, 20_000, 7):
                h.record(value)

    collect_runs = []
    for _ in range(REPEATS):
        fill()
        collect_runs.append(timeit.timeit(registry.collect, number=1))
    print(
        f"Registry.collect(), 3 busy histograms: "
        f"{statistics.median(collect_runs) * 1e3:8.2f} ms (median)"
    )
    empty_collect = per_call_ns(registry.collect, 50) / 1e6
    print(f"Registry.collect(), idle histograms:   {empty_collect:8.2f} ms (median)")
    stats = ProcessStats()
    vm_ms = per_call_ns(stats.samples, 200) / 1e6
    print(f"ProcessStats.samples():               {vm_ms:8.2f} ms")

    with DogStatsdCapture() as agent:
        ref = StatShipper.start(
            registry=registry,
            port=agent.port,
            interval=3600,
            process_stats=stats,
        )
        try:
            shipper = ref.proxy()
            runs = []
            sent = 0
            for _ in range(REPEATS):
                fill()
                start = timeit.default_timer()
                sent = shipper.ship_now().get(timeout=10)
                runs.append(timeit.default_timer() - start)
                agent.clear()
            print(
                f"StatShipper.ship_now(), {sent} samples: "
                f"{statistics.median(runs) * 1e3:8.2f} ms (median, in the actor)"
            )
        finally:
            ref.stop(timeout=10)


if __name__ == "__main__":
    main()
