"""Cost of the storage write path per point (run by hand; issue 5's speed goals).

1,000,000 points of 1,000 series (metric ``bench.metric{i % 50}``, entity
``host{i % 1000}``, value ``(i % 977) * 0.25``, timestamp ``T0 + i``) are
appended in batches of 5,000, as rows (4-tuples, as the pipeline hands them)
and as :class:`DataPoint` objects; once without automatic checkpoints (append
alone) and once with a checkpoint every 500,000 points (append + compaction).
Only the ``append`` calls are timed (building the batches is not), and the
final ``close``. Figures are medians over repeats, from one run. Usage::

    python benchmarks/storage_write.py [--repeats 5] [--points 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.datapoint import DataPoint
from statsyard.storage import Storage

T0 = 1_700_000_000_000
BATCH = 5_000
Row = tuple[str, str, int | float, int]
T = TypeVar("T")


def rows(n: int) -> list[Row]:
    """The benchmark's points as rows."""
    return [
        (f"bench.metric{i % 50}", f"host{i % 1000}", (i % 977) * 0.25, T0 + i)
        for i in range(n)
    ]


def batches_of(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` cut into batches of ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_once(
    batches: list[Sequence[Row]] | list[Sequence[DataPoint]],
    checkpoint_points: int | None,
) -> float:
    """Seconds per point to append every batch (and close) into a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage.open(Path(tmp) / "data", checkpoint_points=checkpoint_points)
        append = storage.append
        start = time.perf_counter()
        for batch in batches:
            append(batch)
        elapsed = time.perf_counter() - start
        storage.close()
        return elapsed / sum(map(len, batches))


def main() -> None:
    """Print medians of the per-point costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    row_list = rows(args.points)
    point_list = [DataPoint(m, e, v, t) for m, e, v, t in row_list]
    inputs: dict[str, list[Sequence[Row]] | list[Sequence[DataPoint]]] = {
        "rows": batches_of(row_list, BATCH),
        "DataPoints": batches_of(point_list, BATCH),
    }
    print(
        f"{args.points:,} points, {BATCH}-point batches, 1,000 series, "
        f"median of {args.repeats}"
    )
    for name, batches in inputs.items():
        costs: dict[str, float] = {}
        for label, every in (("append only", None), ("with checkpoints", 500_000)):
            times = [run_once(batches, every) for _ in range(args.repeats)]
            costs[label] = statistics.median(times)
            print(
                f"  {name:10} {label:17} {costs[label] * 1e6:6.3f} us/point "
                f"(min {min(times) * 1e6:.3f})"
            )
        compaction = costs["with checkpoints"] - costs["append only"]
        print(f"  {name:10} {'compaction':17} {compaction * 1e6:6.3f} us/point")


if __name__ == "__main__":
    main()
