"""Query speed and its effect on ingest (run by hand; issue 5's speed goals).

1. Selectivity: with 10,000 series stored, the share of the data files' bytes
   that a query for one series reads (goal <= 5%), for a live storage (index
   in memory) and for a fresh read-only open (which also reads the indexes).
2. Scan rate: a query over one series of 1,000,000 points with a 60 s step,
   in points scanned per second (goal >= 2,000,000/s).
3. Interference: ``Storage.append`` throughput while another thread queries
   continuously, against append alone (goal >= 80%); and while another
   process (as the ``query`` command does) queries the same directory.

Figures are medians over repeats, all from one run. Usage::

    python benchmarks/query.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.datapoint import DataPoint
from statsyard.storage import Storage

T0 = 1_700_000_000_000
REPO = Path(__file__).resolve().parent.parent

READER = r"""
import random, sys
from statsyard.storage import Storage
reader = Storage.open_readonly(sys.argv[1])
series = reader.series()
print("ready", flush=True)
rng = random.Random(3)
for n in range(10**9):
    metric, entity = rng.choice(series)
    reader.query(metric, entity, step=60_000, agg="max")
    if n % 100 == 99:
        reader.refresh()
"""


def data_bytes(directory: Path) -> int:
    """Size of every data file (logs, segment data and index files)."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.name != "STATSYARD")


def median_of(repeats: int, run: Callable[[], float]) -> float:
    """Median of ``repeats`` results of ``run``."""
    return statistics.median(run() for _ in range(repeats))


def walk_batches(
    series: list[tuple[str, str]], seconds: int, rng: random.Random, start: int = T0
) -> list[list[DataPoint]]:
    """One batch per second, one random-walk point per series in each."""
    walks = [rng.uniform(0, 100) for _ in series]
    batches = []
    for second in range(seconds):
        batch = []
        for i, (metric, entity) in enumerate(series):
            walks[i] = round(walks[i] + rng.gauss(0, 0.3), 2)
            batch.append(DataPoint(metric, entity, walks[i], start + second * 1000))
        batches.append(batch)
    return batches


def selectivity(tmp: Path, rng: random.Random, repeats: int) -> None:
    """Share of the data bytes a single-series query reads, with 10,000 series."""
    series = [(f"app.{i // 1000}.latency", f"node-{i:05d}") for i in range(10_000)]
    directory = tmp / "selectivity"
    storage = Storage.open(directory)  # checkpoints every 500,000 points
    for batch in walk_batches(series, 240, rng):
        storage.append(batch)
    storage.checkpoint()
    total = data_bytes(directory)
    points = 10_000 * 240
    picks = [rng.choice(series) for _ in range(repeats)]
    live_shares = []
    for metric, entity in picks:
        before = storage.bytes_read
        rows = storage.query(metric, entity)[entity]
        assert len(rows) == 240
        live_shares.append((storage.bytes_read - before) / total)
    storage.close()
    fresh_shares = []
    open_shares = []
    for metric, entity in picks:
        reader = Storage.open_readonly(directory)
        opened = reader.bytes_read
        reader.query(metric, entity)
        open_shares.append(opened / total)
        fresh_shares.append(reader.bytes_read / total)
    print(
        f"10,000 series x 240 points = {points:,} points in {total:,} bytes "
        f"({total / points:.2f} bytes/point)"
    )
    print(
        f"  one-series query, live storage: {statistics.median(live_shares):8.4%}"
        " of the data bytes read (goal <= 5%)"
    )
    print(f"  read-only open (loads indexes): {statistics.median(open_shares):8.4%}")
    print(f"  open + one-series query:        {statistics.median(fresh_shares):8.4%}")


def scan_rate(tmp: Path, rng: random.Random, repeats: int) -> None:
    """Points/s scanned by a 60 s step query over a 1,000,000-point series."""
    directory = tmp / "scan"
    storage = Storage.open(directory, checkpoint_points=None)
    n = 1_000_000
    value = 50.0
    chunk = []
    for i in range(n):
        value = round(value + rng.gauss(0, 0.3), 2)
        chunk.append(DataPoint("big.series", "one", value, T0 + i * 1000))
        if len(chunk) == 10_000:
            storage.append(chunk)
            chunk = []
    storage.checkpoint()  # one compacted block

    def step_query(target: Storage) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            rows = target.query("big.series", step=60_000, agg="avg")["one"]
            elapsed = time.perf_counter() - started
            assert len(rows) == -(-n // 60)
            return n / elapsed

        return run

    compacted = median_of(repeats, step_query(storage))
    storage.close()
    head_dir = tmp / "scan-head"
    head = Storage.open(head_dir, checkpoint_points=None)
    for start in range(0, n, 10_000):
        head.append(
            [
                DataPoint("big.series", "one", float(i % 977), T0 + i * 1000)
                for i in range(start, start + 10_000)
            ]
        )
    in_head = median_of(repeats, step_query(head))
    head.close()
    raw = Storage.open_readonly(directory)
    started = time.perf_counter()
    raw_rows = raw.query("big.series")["one"]
    raw_rate = len(raw_rows) / (time.perf_counter() - started)
    print(
        f"1,000,000-point series, step 60 s, avg: {compacted:13,.0f} points/s "
        "scanned from blocks (goal >= 2,000,000)"
    )
    print(
        f"                                        {in_head:13,.0f} points/s "
        "scanned from the head (not yet compacted)"
    )
    print(f"  same series, raw points:              {raw_rate:13,.0f} points/s")


def interference(tmp: Path, rng: random.Random, repeats: int) -> None:
    """append() throughput alone, with a thread querying, with a process querying.

    Every run starts from a fresh directory holding the same 10 minutes of
    history for 1,000 series, then times appending 5 more minutes; no
    automatic checkpoints (one landing in some runs and not others would swamp
    the difference; storage_bytes.py measures their cost).
    """
    series = [(f"svc.{i // 100}.requests", f"pod-{i:04d}") for i in range(1000)]
    history = walk_batches(series, 600, rng, start=T0 - 600_000)
    batches = walk_batches(series, 300, rng)
    queries: list[int] = []

    def timed(mode: str) -> float:
        directory = Path(tempfile.mkdtemp(dir=tmp))
        storage = Storage.open(directory, checkpoint_points=None)
        for batch in history:
            storage.append(batch)
        storage.sync()
        stop = threading.Event()
        count = [0]

        def query_forever() -> None:
            while not stop.is_set():
                metric, entity = rng.choice(series)
                storage.query(metric, entity, step=60_000, agg="max")
                count[0] += 1

        thread = threading.Thread(target=query_forever)
        child = None
        if mode == "thread":
            thread.start()
        elif mode == "process":
            child = subprocess.Popen(
                [sys.executable, "-c", READER, str(directory)],
                stdout=subprocess.PIPE,
                text=True,
                env=dict(os.environ, PYTHONPATH=str(REPO)),
            )
            assert child.stdout is not None
            child.stdout.readline()  # "ready": its snapshot is loaded
        try:
            started = time.perf_counter()
            for batch in batches:
                storage.append(batch)
            storage.sync()
            return len(batches) * len(series) / (time.perf_counter() - started)
        finally:
            stop.set()
            if mode == "thread":
                thread.join()
                queries.append(count[0])
            if child is not None:
                child.kill()
                child.wait()
                assert child.stdout is not None
                child.stdout.close()
            storage.close()

    results: dict[str, list[float]] = {"alone": [], "thread": [], "process": []}
    for repeat in range(repeats):  # alternate the order: the machine is noisy
        modes = list(results)
        if repeat % 2:
            modes.reverse()
        for mode in modes:
            results[mode].append(timed(mode))
    a, b, c = (statistics.median(results[m]) for m in ("alone", "thread", "process"))
    print(f"append alone                      {a:12,.0f} points/s")
    print(
        f"append, a thread querying         {b:12,.0f} points/s "
        f"(ratio {b / a:.0%}, goal >= 80%; {statistics.median(queries):,.0f} "
        "queries per run)"
    )
    print(f"append, another process querying  {c:12,.0f} points/s (ratio {c / a:.0%})")


def main() -> None:
    """Run the three measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        selectivity(Path(tmp), rng, args.repeats)
        scan_rate(Path(tmp), rng, args.repeats)
        interference(Path(tmp), rng, args.repeats)


if __name__ == "__main__":
    main()
