"""Append rate while a merge runs, in the worker process or in a thread (run by hand).

Builds 1,000 series x 1,200 s of points in 60-point checkpoints, then for
each mode appends one point a series a batch for 1.5 s, once with a merge of
those 1,200,000 points started just before (``merge_after_ms``) and once
without. Usage::

    python benchmarks/merge_ingest.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.storage import Storage

T0 = 1_700_000_000_000
SERIES = 1000
SECONDS = 1200
RUN_S = 1.5


def batch(second: int) -> list[tuple[str, str, float, int]]:
    """One point a series at ``second``."""
    return [
        (
            f"host.{i // 100}.load",
            f"s{i}",
            round((second * 7 + i) % 97 * 0.01, 2),
            T0 + second * 1000,
        )
        for i in range(SERIES)
    ]


def rate(template: Path, work: Path, *, worker: bool, merge: bool) -> str:
    """Points/s appended for RUN_S seconds, with a merge started or not."""
    directory = work / f"run-{worker}-{merge}"
    shutil.copytree(template, directory)
    storage = Storage.open(
        directory,
        checkpoint_points=None,
        compaction_worker=worker,
        merge_after_ms=60_000 if merge else None,
    )
    storage.append(batch(SECONDS))
    storage.checkpoint()  # seals the segment (60 s of span) and starts a merge
    started = storage.merging
    points, second = 0, SECONDS + 1
    began = time.perf_counter()
    while time.perf_counter() - began < RUN_S:
        storage.append(batch(second))
        second += 1
        points += SERIES
    elapsed = time.perf_counter() - began
    running = storage.merging
    storage.close()
    return (
        f"{points / elapsed:12,.0f} points/s "
        f"(merging at start: {started}, still at the end: {running})"
    )


def main() -> None:
    """Build the segments, print the rates."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = work / "template"
        with Storage.open(template, checkpoint_points=None) as storage:
            for second in range(SECONDS):
                storage.append(batch(second))
                if second % 60 == 59:
                    storage.checkpoint()
        for worker in (True, False):
            where = "worker process" if worker else "thread"
            for merge in (False, True):
                label = f"merge in a {where}" if merge else f"no merge ({where} mode)"
                print(f"{label:28} {rate(template, work, worker=worker, merge=merge)}")


if __name__ == "__main__":
    main()
