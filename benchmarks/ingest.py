"""End-to-end ingest throughput against a bare build-and-validate loop.

Pushes N points (default 2,000,000) through a full StatsYard — push, queue,
validate, durable write, flush — and, in the same run, times a loop that only
builds and validates the same points. Prints both rates, their ratio, the
single-point ``push()`` rate, and peak RSS, as medians over ``--repeat`` runs.

    python benchmarks/ingest.py [--points N] [--repeat R] [--batch-size B]
                                [--checkpoint-points P]

``--checkpoint-points 0`` defers compaction (no checkpoint by count; the
clean stop after the timing still compacts): what is left of the per-point
cost once compaction runs off the ingest thread.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from statsyard import DataPoint, StatsYard
from statsyard.config import Config
from statsyard.datapoint import validate_rows

BASE_TS = 1_700_000_000_000


def generate(n: int, series: int = 1000) -> Iterator[DataPoint]:
    """N points over ``series`` series, built lazily (constant memory)."""
    metrics = [f"bench.metric{i % 50}" for i in range(series)]
    entities = [f"host{i}" for i in range(series)]
    for i in range(n):
        s = i % series
        yield DataPoint(metrics[s], entities[s], (i % 977) * 0.25, BASE_TS + i)


def bare_loop(n: int, batch_size: int) -> float:
    """Seconds to build and validate n points in batches, doing nothing else."""
    started = time.perf_counter()
    batch: list[DataPoint] = []
    for point in generate(n):
        batch.append(point)
        if len(batch) >= batch_size:
            validate_rows(batch)
            batch = []
    validate_rows(batch)
    return time.perf_counter() - started


def end_to_end(
    n: int,
    batch_size: int,
    *,
    single: bool,
    instrument: bool = True,
    checkpoint_points: int | None = None,
) -> tuple[float, int]:
    """Seconds to push n points and flush them durably; and bytes on disk.

    ``instrument=False`` turns off the pipeline's metrics and the shipper, to
    measure what instrumentation costs.
    """
    with tempfile.TemporaryDirectory() as data_dir:
        storage = (
            {}
            if checkpoint_points is None
            else {"checkpoint_points": checkpoint_points}
        )
        yard = StatsYard(
            Config.of(metrics={"instrument": instrument}, storage=storage),
            data_dir=data_dir,
            batch_size=batch_size,
            ship_metrics=instrument,
        ).start()
        try:
            started = time.perf_counter()
            if single:
                push = yard.push
                for point in generate(n):
                    push(point)
            else:
                yard.push_many(generate(n))
            yard.flush(timeout=600)
            elapsed = time.perf_counter() - started
            counts = yard.counts()
            assert counts.written == n, counts
        finally:
            yard.stop()
        size = sum(p.stat().st_size for p in Path(data_dir).rglob("*"))
    return elapsed, size


def main() -> None:
    """Run the benchmark and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--checkpoint-points",
        type=int,
        default=None,
        help="[storage] checkpoint_points (0: no checkpoint by count)",
    )
    args = parser.parse_args()
    n, size, cp = args.points, args.batch_size, args.checkpoint_points
    process = psutil.Process()

    bare, e2e, single, plain = [], [], [], []
    disk = 0
    for _ in range(args.repeat):
        gc.collect()
        bare.append(n / bare_loop(n, size))
        gc.collect()
        seconds, disk = end_to_end(n, size, single=False, checkpoint_points=cp)
        e2e.append(n / seconds)
        gc.collect()
        seconds, _ = end_to_end(
            n, size, single=False, instrument=False, checkpoint_points=cp
        )
        plain.append(n / seconds)
        gc.collect()
        seconds, _ = end_to_end(n, size, single=True, checkpoint_points=cp)
        single.append(n / seconds)
    rss = process.memory_info().rss
    peak = getattr(process.memory_info(), "peak_wset", None) or _peak_rss()

    bare_rate = statistics.median(bare)
    e2e_rate = statistics.median(e2e)
    single_rate = statistics.median(single)
    plain_rate = statistics.median(plain)
    print(f"points per run          {n:,} (batch size {size}, {args.repeat} runs)")
    print(f"bare build+validate     {bare_rate:12,.0f} points/s  {_spread(bare)}")
    print(f"end to end push_many    {e2e_rate:12,.0f} points/s  {_spread(e2e)}")
    print(f"end to end push()       {single_rate:12,.0f} points/s  {_spread(single)}")
    print(f"  ... uninstrumented    {plain_rate:12,.0f} points/s  {_spread(plain)}")
    print(f"ratio push_many / bare  {e2e_rate / bare_rate:12.2f}")
    print(f"ratio push() / bare     {single_rate / bare_rate:12.2f}")
    print(f"instrumented / not      {e2e_rate / plain_rate:12.2f}")
    print(f"bytes on disk per point {disk / n:12.2f}")
    print(f"RSS now / peak          {rss / 2**20:9.1f} MiB / {peak / 2**20:.1f} MiB")


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _spread(rates: list[float]) -> str:
    return f"(min {min(rates):,.0f}, max {max(rates):,.0f})"


if __name__ == "__main__":
    main()
