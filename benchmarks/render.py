"""Render engine speed against the bare storage read it is built on (run by hand).

100 series (``host{i}.cpu``, default entity) of one point every 10 s for a
day (864,000 points), compacted. Measures, each as a median of repeats in one
run:

1. ``Storage.query()`` of every series over the day, raw (the floor: reading
   the points at all);
2. ``evaluate(["host*.cpu"])`` at the default 60 s step (listing, reading,
   bucketing into whisper slots), and its JSON;
3. ``evaluate(["sumSeries(host*.cpu)"])`` and
   ``evaluate(["movingAverage(host*.cpu, 10)"])``.

Usage::

    python benchmarks/render.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from statsyard.render import TimeSeries

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.render import RenderSettings, StorageSource, evaluate, format_json
from statsyard.storage import Storage

DAY = 86_400
START = 1_700_006_400  # a whole day in seconds since the epoch
SERIES = 100
EVERY = 10


def timed(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` runs of ``run``."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory() as directory:
        storage = Storage.open(directory, checkpoint_points=None)
        rows = [
            (f"host{i}.cpu", "graphite", float(t % 97), (START + t) * 1000)
            for t in range(0, DAY, EVERY)
            for i in range(SERIES)
        ]
        for at in range(0, len(rows), 50_000):
            storage.append(rows[at : at + 50_000])
        storage.checkpoint()
        points = len(rows)
        del rows
        source = StorageSource(storage)
        settings = RenderSettings(max_points=10_000_000)

        def render(target: str) -> list[TimeSeries]:
            return evaluate(
                [target],
                start_ms=START * 1000,
                end_ms=(START + DAY) * 1000,
                now_ms=(START + DAY) * 1000,
                source=source,
                settings=settings,
            )

        def bare() -> None:
            for metric, entity in storage.series("host*.cpu"):
                storage.query(
                    metric, entity, start=START * 1000, end=(START + DAY) * 1000
                )

        floor = timed(bare, repeats)
        print(f"{SERIES} series x {DAY // EVERY} points = {points:,} points, 60 s step")
        print(
            f"  Storage.query() raw, every series     {floor * 1000:8.1f} ms  "
            f"{points / floor:12,.0f} points/s"
        )
        for target in (
            "host*.cpu",
            "sumSeries(host*.cpu)",
            "movingAverage(host*.cpu, 10)",
        ):
            seconds = timed(functools.partial(render, target), repeats)
            print(
                f"  evaluate({target!r:32}) {seconds * 1000:8.1f} ms  "
                f"{points / seconds:12,.0f} points/s  "
                f"({seconds / floor:.2f}x the raw read)"
            )
        series = render("host*.cpu")
        seconds = timed(functools.partial(format_json, series), repeats)
        print(f"  format_json of host*.cpu (144,000 values) {seconds * 1000:8.1f} ms")
        storage.close()


if __name__ == "__main__":
    main()
