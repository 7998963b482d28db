"""Validation throughput: ``validate_rows`` on the shapes the pipeline sees.

Times ``validate_rows`` over batches of 5,000 float 4-tuples, int 4-tuples
and DataPoints (names already seen, the hot path), and in the same run a bare
loop that only unpacks each tuple, as the yardstick. Prints medians of
``--repeat`` runs and the ratio to the bare loop.

    python benchmarks/validate.py [--repeat R]

To compare two versions, run it with ``PYTHONPATH`` pointing at each tree.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from statsyard import DataPoint
from statsyard.datapoint import validate_rows

TS = 1_700_000_000_000
BATCH = 5000


def bare(rows: Sequence[Any]) -> None:
    """Unpack every row and nothing else: the floor of any validation loop."""
    for row in rows:
        _metric, _entity, _value, _timestamp = row


def rate(work: Callable[[], object], repeat: int) -> float:
    """Median points per second of ``work`` on one batch."""
    work()  # warm the name cache
    runs = [min(timeit.repeat(work, number=20, repeat=3)) / 20 for _ in range(repeat)]
    return BATCH / statistics.median(runs)


def main() -> None:
    """Run the benchmark and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    floats = [
        (f"bench.metric{i % 50}", f"host{i % 1000}", (i % 977) * 0.25, TS + i)
        for i in range(BATCH)
    ]
    ints = [(m, e, i, t) for i, (m, e, _, t) in enumerate(floats)]
    points = [DataPoint(*row) for row in floats]
    floor = rate(lambda: bare(floats), args.repeat)
    print(f"bare unpack loop      {floor:12,.0f} points/s")
    for name, batch in (("float tuples", floats), ("int tuples", ints)):
        measured = rate(functools.partial(validate_rows, batch), args.repeat)
        print(f"{name:20s}  {measured:12,.0f} points/s  ratio {measured / floor:.2f}")
    measured = rate(lambda: validate_rows(points), args.repeat)
    print(
        f"{'DataPoints':20s}  {measured:12,.0f} points/s  ratio {measured / floor:.2f}"
    )


if __name__ == "__main__":
    main()
