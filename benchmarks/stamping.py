"""Cost of stamping points without a timestamp in push_many()'s staging step.

push_many() fills a batch with islice (C speed) and then gives each
``(metric, entity, value)`` tuple or timestamp-less dict the time it was
taken. This times that staging step alone, with and without the stamping
pass, on batches that need no stamp (DataPoints, 4-tuples) and on 3-tuples,
as medians over ``--repeat`` runs.

    python benchmarks/stamping.py [--points N] [--repeat R] [--batch-size B]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from statsyard.datapoint import DataPoint, now_ms
from statsyard.pipeline.staging import as_queued

BASE_TS = 1_700_000_000_000


def stage_plain(points: Sequence[Any], batch_size: int) -> None:
    """The staging step without stamping: islice into a batch, batch after batch."""
    remaining = iter(points)
    while True:
        staged: list[Any] = []
        staged.extend(islice(remaining, batch_size))
        if len(staged) < batch_size:
            return


def stage_stamped(points: Sequence[Any], batch_size: int) -> None:
    """The staging step as push_many() does it: one clock reading per batch."""
    remaining = iter(points)
    while True:
        staged: list[Any] = []
        staged.extend(as_queued(list(islice(remaining, batch_size)), now_ms()))
        if len(staged) < batch_size:
            return


def median_ns(
    stage: Callable[[Sequence[Any], int], None],
    points: Sequence[Any],
    batch_size: int,
    repeat: int,
) -> float:
    """Median nanoseconds per point of ``stage`` over ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        stage(points, batch_size)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) / len(points) * 1e9


def main() -> None:
    """Print ns/point for each kind of point, plain and stamped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    n = args.points
    kinds: dict[str, list[Any]] = {
        "DataPoints": [DataPoint("m", "e", i * 0.5, BASE_TS + i) for i in range(n)],
        "4-tuples": [("m", "e", i * 0.5, BASE_TS + i) for i in range(n)],
        "3-tuples": [("m", "e", i * 0.5) for i in range(n)],
    }
    for name, points in kinds.items():
        plain = median_ns(stage_plain, points, args.batch_size, args.repeat)
        stamped = median_ns(stage_stamped, points, args.batch_size, args.repeat)
        print(
            f"{name:10}  plain {plain:6.1f} ns/point  stamped {stamped:6.1f} ns/point"
        )


if __name__ == "__main__":
    main()
