"""Forwarding throughput to a local Prometheus and carbon-cache; ingest with it on/off.

Three measurements, in one run (medians over ``--repeat``):

1. **Prometheus drain**: N points are ingested with no forwarder; then a
   StatsYard with a remote write forwarder (``start = "beginning"``) opens the
   same data directory and the time until ``wait_forwarded()`` returns gives
   the forwarding rate (samples/s), Prometheus' own ingestion included.
2. **carbon drain**: the same with a Graphite forwarder to carbon-cache
   (fewer points: carbon's Python line receiver is the slow side).
3. **Ingest with forwarding on vs off**: push + flush ``--ingest-points``
   into a fresh StatsYard without a forwarder, then into one forwarding to
   Prometheus while ingesting; the median ratio over ``--pairs`` pairs, run
   first while Prometheus is idle.
4. **Keeping up**: points pushed at a steady ``--rate`` (default 200,000/s)
   for ``--seconds`` into a StatsYard forwarding to Prometheus; the ingest
   rate reached, and how long after the last flush forwarding was done.

Prometheus and carbon-cache are Debian's (``prometheus``, ``graphite-carbon``),
started here on free ports with temporary storage.

    python benchmarks/forward.py [--points N] [--carbon-points N] [--repeat R]
        [--pairs P] [--ingest-points N] [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from statsyard.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard import StatsYard
from tests._peers import CarbonCache, Prometheus

SERIES = 1000
KEEP_LOGS = {"checkpoint_points": 0}  # 0: never compact by count
"""The drains start from the oldest log: no checkpoint may remove it first."""


def rows(n: int, run: int) -> Iterator[tuple[str, str, float, int]]:
    """N points over 1000 series, one per series per second, ending now."""
    metrics = [f"bench.run{run}.m{i % 10}" for i in range(SERIES)]
    entities = [f"host{i // 10}" for i in range(SERIES)]
    steps = n // SERIES + 1
    start = (int(time.time()) - steps) * 1000
    for i in range(n):
        s = i % SERIES
        yield (metrics[s], entities[s], (i % 977) * 0.25, start + (i // SERIES) * 1000)


def ingest(
    data_dir: Path,
    n: int,
    run: int,
    *,
    forward: Sequence[Mapping[str, Any]] = (),
    storage: Mapping[str, Any] | None = None,
) -> float:
    """Seconds to push and flush n points (the yard forwards if told to)."""
    settings = Config.of(forward=list(forward), storage=dict(storage or {}))
    yard = StatsYard(settings, data_dir=data_dir, ship_metrics=False).start()
    try:
        started = time.perf_counter()
        yard.push_many(rows(n, run))
        yard.flush(timeout=600)
        return time.perf_counter() - started
    finally:
        yard.stop(timeout=600)


def steady(
    data_dir: Path, rate: int, seconds: float, run: int, forward: dict[str, Any]
) -> tuple[float, float, float]:
    """Push at ``rate`` points/s; return (rate reached, behind at end (s), lag)."""
    yard = StatsYard(
        Config.of(forward=[forward]), data_dir=data_dir, ship_metrics=False
    ).start()
    try:
        total = int(rate * seconds)
        batch = 5000
        source = rows(total, run)
        started = time.perf_counter()
        for k in range(0, total, batch):
            due = started + k / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            yard.push_many(next(source) for _ in range(min(batch, total - k)))
        yard.flush(timeout=600)
        ingested = time.perf_counter()
        lag = yard.registry.gauge(
            "forward.lag_seconds", tags={"forwarder": forward["name"]}
        ).value
        assert yard.wait_forwarded(timeout=900), "forwarding did not finish"
        done = time.perf_counter()
        return total / (ingested - started), done - ingested, lag or 0.0
    finally:
        yard.stop(timeout=60)


def drain(data_dir: Path, forward: dict[str, Any]) -> tuple[float, int]:
    """Seconds for a forwarder starting at the beginning to send everything."""
    yard = StatsYard(
        Config.of(forward=[forward]), data_dir=data_dir, ship_metrics=False
    ).start()
    try:
        started = time.perf_counter()
        assert yard.wait_forwarded(timeout=900), "forwarding did not finish"
        elapsed = time.perf_counter() - started
        sent = yard.registry.counter(
            "forward.samples_sent", tags={"forwarder": forward["name"]}
        ).value
        dropped = sum(
            s.value for s in yard.registry.collect() if s.name == "forward.dropped"
        )
        assert dropped == 0, f"{dropped} samples dropped"
        return elapsed, sent
    finally:
        yard.stop(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--carbon-points", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--ingest-points", type=int, default=400_000)
    parser.add_argument("--max-samples", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prometheus = Prometheus(work / "prometheus").start()
        carbon = CarbonCache(work / "carbon").start()
        try:
            prom_rates: list[float] = []
            carbon_rates: list[float] = []
            ratios: list[float] = []
            off_rates: list[float] = []
            on_rates: list[float] = []
            steady_rates: list[float] = []
            behind: list[float] = []
            run = 0
            live = {
                "name": "prom",
                "kind": "prometheus",
                "url": prometheus.write_url,
                "max_samples": args.max_samples,
                "flush_deadline": 0,
            }
            for pair in range(args.pairs):  # first, while Prometheus is fresh
                run += 1
                off = ingest(work / f"off{pair}", args.ingest_points, run)
                run += 1
                on = ingest(work / f"on{pair}", args.ingest_points, run, forward=[live])
                off_rates.append(args.ingest_points / off)
                on_rates.append(args.ingest_points / on)
                ratios.append(off / on)
                print(
                    f"pair {pair + 1}: ingest off {off_rates[-1]:,.0f}/s, "
                    f"on {on_rates[-1]:,.0f}/s ({ratios[-1]:.1%})",
                    flush=True,
                )
            for repeat in range(args.repeat):
                run += 1
                data = work / f"prom{repeat}"
                ingest(data, args.points, run, storage=KEEP_LOGS)
                seconds, sent = drain(data, {**live, "start": "beginning"})
                assert sent == args.points, sent
                prom_rates.append(sent / seconds)

                run += 1
                data = work / f"carbon{repeat}"
                ingest(data, args.carbon_points, run, storage=KEEP_LOGS)
                seconds, sent = drain(
                    data,
                    {
                        "name": "carbon",
                        "kind": "graphite",
                        "address": carbon.address,
                        "start": "beginning",
                        "max_samples": args.max_samples,
                    },
                )
                assert sent == args.carbon_points, sent
                carbon_rates.append(sent / seconds)

                run += 1
                reached, after, _lag = steady(
                    work / f"steady{repeat}", args.rate, args.seconds, run, live
                )
                steady_rates.append(reached)
                behind.append(after)
                print(
                    f"repeat {repeat + 1}: prometheus {prom_rates[-1]:,.0f}/s, "
                    f"carbon {carbon_rates[-1]:,.0f}/s, steady "
                    f"{steady_rates[-1]:,.0f}/s done {behind[-1]:.2f}s after",
                    flush=True,
                )
        finally:
            prometheus.stop()
            carbon.stop()

    median = statistics.median
    print(f"points                    {args.points:,} ({SERIES} series)")
    print(f"forward -> Prometheus     {median(prom_rates):,.0f} samples/s (median)")
    print(
        f"forward -> carbon-cache   {median(carbon_rates):,.0f} samples/s "
        f"({args.carbon_points:,} points)"
    )
    print(f"ingest points             {args.ingest_points:,} x {args.pairs} pairs")
    print(f"ingest, forwarding off    {median(off_rates):,.0f} points/s")
    print(f"ingest, forwarding on     {median(on_rates):,.0f} points/s")
    print(f"ingest on / off           {median(ratios):.1%}")
    print(
        f"steady {args.rate:,}/s for {args.seconds}s: reached "
        f"{median(steady_rates):,.0f} points/s, forwarding done "
        f"{median(behind):.2f} s after the last flush"
    )


if __name__ == "__main__":
    main()
