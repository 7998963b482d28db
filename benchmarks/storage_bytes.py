"""Bytes per point on disk, and the cost of writing them (run by hand).

Workload (issue 5): 1,000 series, one point per series per second, slowly
varying values (a random walk rounded to 2 decimals), for one hour: 3,600,000
points, appended as one batch per second (1,000 points, one per series).

Prints bytes/point with the write-ahead log included (the directory just
before a checkpoint) and excluded (segments only, after a checkpoint), plus
append and checkpoint costs. Usage::

    python benchmarks/storage_bytes.py [--series 1000] [--seconds 3600] [--jitter-ms 0]

``--encode`` prints the block encoders' cost (us) and bytes per point,
format 2 and 3 interleaved in one process (each block with the same names).

``--at-rest`` instead prints issue 13's rows: bytes per point of the whole
data directory for 1,000 series x 300 s and x 3,600 s of slow gauges, after
a clean stop of a running :class:`StatsYard` (which checkpoints on stop), and
while running with the head compacted once its data is a minute old (the
``checkpoint_after = 60`` timer, modelled by a checkpoint every 60 s of data),
and in real time: a checkpoint every 60 s of data with the merges the
service runs (``[storage] merge_after``; each given the time the next
minute of real time leaves it, i.e. waited for), then a clean stop.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.datapoint import DataPoint
from statsyard.storage import Storage

T0 = 1_700_000_000_000


def directory_bytes(directory: Path, pattern: str) -> int:
    """Total size of the files matching ``pattern``."""
    return sum(p.stat().st_size for p in directory.glob(pattern))


def slow_gauges(series: int, seconds: int) -> list[list[tuple[str, str, float, int]]]:
    """One batch a second of ``series`` random walks rounded to 2 decimals."""
    rng = random.Random(42)
    walks = [rng.uniform(0, 100) for _ in range(series)]
    offsets = [rng.randrange(1000) for _ in range(series)]
    names = [(f"host.{i // 100}.cpu.load", f"server-{i:05d}") for i in range(series)]
    batches = []
    for second in range(seconds):
        batch = []
        for i, (metric, entity) in enumerate(names):
            walks[i] = round(walks[i] + rng.gauss(0, 0.3), 2)
            batch.append((metric, entity, walks[i], T0 + second * 1000 + offsets[i]))
        batches.append(batch)
    return batches


GAUGE_KINDS: Final = (
    # metric, start range, step sigma, digits, chance of a change each second
    ("load.1m", (0.0, 4.0), 0.05, 2, 0.16),
    ("memory.used_mib", (500.0, 16_000.0), 4.0, 0, 0.12),
    ("queue.depth", (0.0, 20.0), 2.0, 0, 0.08),
    ("disk.used_pct", (10.0, 90.0), 0.1, 1, 0.04),
)
"""Kinds of host gauges of the ``repeating`` workload, a quarter of the series
each: a load average, memory in MiB, a queue depth, a disk's fill level."""


def repeating_gauges(
    series: int, seconds: int
) -> list[list[tuple[str, str, float | int, int]]]:
    """One batch a second of host gauges that mostly keep their value.

    Each second a gauge changes with its kind's chance (4-16%) by a step drawn
    from a normal distribution and rounded to its digits (ints for memory and
    queue depth; at least one unit, kept non-negative), else repeats: what a
    1 s scrape of load averages, memory, queue depths and disk fill sees.
    """
    rng = random.Random(42)
    kinds = [GAUGE_KINDS[i % len(GAUGE_KINDS)] for i in range(series)]
    values: list[float | int] = []
    for _name, (low, high), _sigma, digits, _chance in kinds:
        start = round(rng.uniform(low, high), digits)
        values.append(int(start) if digits == 0 else start)
    offsets = [rng.randrange(1000) for _ in range(series)]
    names = [
        (f"host.{i // 100}.{kind[0]}", f"server-{i:05d}")
        for i, kind in enumerate(kinds)
    ]
    batches = []
    for second in range(seconds):
        batch = []
        for i, (metric, entity) in enumerate(names):
            _name, _range, sigma, digits, chance = kinds[i]
            if rng.random() < chance:
                unit = 10.0**-digits
                step = round(rng.gauss(0, sigma), digits) or unit
                moved = round(max(0.0, values[i] + step), digits)
                values[i] = int(moved) if digits == 0 else moved
            batch.append((metric, entity, values[i], T0 + second * 1000 + offsets[i]))
        batches.append(batch)
    return batches


WORKLOADS: Final = {"random-walk": slow_gauges, "repeating": repeating_gauges}


def prometheus_bytes(
    batches: list[list[tuple[str, str, float | int, int]]], tmp: Path
) -> int | None:
    """Bytes of the Prometheus block ``promtool`` makes of the same points
    (written as OpenMetrics text), or None without ``promtool``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    by_series: dict[tuple[str, str], list[str]] = {}
    for batch in batches:
        for metric, entity, value, stamp in batch:
            by_series.setdefault((metric, entity), []).append(
                f"{value} {stamp // 1000}.{stamp % 1000:03d}"
            )
    source = tmp / "points.om"
    with open(source, "w") as f:
        families: dict[str, list[tuple[str, list[str]]]] = {}
        for (metric, entity), samples in by_series.items():
            name = metric.replace(".", "_")
            families.setdefault(name, []).append((entity, samples))
        for name, members in families.items():
            f.write(f"# TYPE {name} gauge\n")
            for entity, samples in members:
                prefix = f'{name}{{entity="{entity}"}} '
                f.writelines(prefix + sample + "\n" for sample in samples)
        f.write("# EOF\n")
    out = tmp / "prometheus"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(out)],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    source.unlink()
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def at_rest(series: int, seconds: int, workload: str) -> None:
    """Print bytes/point: log only, after a clean stop, and while running,
    with Prometheus' block of the same points and the ratios."""
    from statsyard import Config, StatsYard

    batches = WORKLOADS[workload](series, seconds)
    total = series * seconds
    with tempfile.TemporaryDirectory() as tmp:
        # Before issue 13: compacted only every checkpoint_points (500,000).
        directory = Path(tmp) / "log-only"
        with Storage.open(directory) as storage:
            for batch in batches:
                storage.append(batch)
        log_only = directory_bytes(directory, "*")
        shutil.rmtree(directory)
        # A running StatsYard, stopped cleanly.
        directory = Path(tmp) / "stopped"
        config = Config.of(storage={"data_dir": str(directory)})
        with StatsYard(config) as yard:
            for batch in batches:
                yard.push_many(batch)
            yard.flush(timeout=600)
        stopped = directory_bytes(directory, "*")
        stopped_index = directory_bytes(directory, "*.idx")
        reader = Storage.open_readonly(directory)
        stored = sum(
            len(rows) for m in reader.metrics() for rows in reader.query(m).values()
        )
        left_in_log = reader.head_points
        reader.close()
        assert stored == total, f"read back {stored} of {total}"
        # Running, compacted every 60 s of data (the checkpoint_after timer).
        directory = Path(tmp) / "running"
        storage = Storage.open(directory)
        for second, batch in enumerate(batches, 1):
            storage.append(batch)
            if second % 60 == 0:
                storage.checkpoint()
        storage.sync()
        running = directory_bytes(directory, "*")
        storage.close()
        # Real time: the same checkpoints, and the merges the service runs
        # (each has the rest of a real minute to finish), then a clean stop.
        settings = Config().storage
        directory = Path(tmp) / "real-time"
        storage = Storage.open(directory, **settings.open_options())
        for second, batch in enumerate(batches, 1):
            storage.append(batch)
            if second % 60 == 0:
                storage.checkpoint()
                storage.merge()  # waits for the merge the checkpoint started
        storage.close(compact=True)
        real_time = directory_bytes(directory, "*")
        reader = Storage.open_readonly(directory)
        stored = sum(
            len(rows) for m in reader.metrics() for rows in reader.query(m).values()
        )
        reader.close()
        assert stored == total, f"read back {stored} of {total}"
        peer = prometheus_bytes(batches, Path(tmp))
    print(f"{series:,} series x {seconds:,} s = {total:,} points, workload {workload}")
    print(f"  Storage, count checkpoints only {log_only / total:6.2f} bytes/point")
    print(
        f"  after a clean stop (StatsYard)  {stopped / total:6.2f} bytes/point "
        f"(index {stopped_index / total:.2f}; {left_in_log} points left in the log)"
    )
    print(f"  running, compacted each minute  {running / total:6.2f} bytes/point")
    print(
        f"  real time, merged, clean stop   {real_time / total:6.2f} bytes/point "
        "(a checkpoint every 60 s of data, merges as the service runs them)"
    )
    if peer is None:
        print("  Prometheus: promtool not found")
        return
    print(
        f"  Prometheus block (promtool)     {peer / total:6.2f} bytes/point; "
        f"StatsYard / Prometheus: stopped {stopped / peer:.2f}, "
        f"running {running / peer:.2f}, real time {real_time / peer:.2f}"
    )


def encode_costs(repeats: int) -> None:
    """Print the block encoders' cost and bytes per point, format 2 and 3
    interleaved in one process, for 1,000 series of each workload cut into
    blocks of 60, 500 and 3,600 points (a checkpoint a minute, every
    500,000 points, at the end of an hour)."""
    from statsyard.storage._blocks import encode_block, encode_block_v2

    for seconds in (60, 500, 3600):
        for workload, make in WORKLOADS.items():
            batches = make(1000, seconds)
            series = [
                (
                    [batch[i][3] for batch in batches],
                    [batch[i][2] for batch in batches],
                )
                for i in range(1000)
            ]
            total = 1000 * seconds
            times: dict[str, list[float]] = {"2": [], "3": []}
            sizes: dict[str, int] = {}
            for _ in range(repeats):
                for version, encode in (("2", encode_block_v2), ("3", encode_block)):
                    started = time.perf_counter()
                    size = 0
                    for stamps, values in series:
                        kind = (
                            type(values[0])
                            if len(set(map(type, values))) == 1
                            else None
                        )
                        size += len(
                            encode(
                                "host.1.cpu.load", "server-00001", stamps, values, kind
                            )[0]
                        )
                    times[version].append(time.perf_counter() - started)
                    sizes[version] = size
            cost = {v: statistics.median(t) / total * 1e6 for v, t in times.items()}
            per_point = {v: sizes[v] / total for v in sizes}
            print(
                f"{seconds:5} points/block {workload:12} "
                f"format 2: {cost['2']:.2f} us {per_point['2']:.2f} B | "
                f"format 3: {cost['3']:.2f} us {per_point['3']:.2f} B "
                f"(a point; cost ratio {cost['3'] / cost['2']:.2f})"
            )


def main() -> None:
    """Write the workload, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument(
        "--jitter-ms",
        type=int,
        default=0,
        help="random +-ms added to each timestamp (0: exact ticks)",
    )
    parser.add_argument(
        "--checkpoint-points",
        type=int,
        default=500_000,
        help="automatic checkpoint interval (0: one checkpoint at the end)",
    )
    parser.add_argument(
        "--at-rest",
        action="store_true",
        help="issue 13's rows: 1,000 series x 300 s and x 3,600 s, stopped",
    )
    parser.add_argument(
        "--encode",
        action="store_true",
        help="the block encoders' cost per point, format 2 and 3, in one process",
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=list(WORKLOADS),
        help="with --at-rest: the workload (repeatable; default: all)",
    )
    parser.add_argument(
        "--at-rest-seconds",
        action="append",
        type=int,
        help="with --at-rest: seconds of data (repeatable; default: 300 and 3600)",
    )
    args = parser.parse_args()
    if args.encode:
        encode_costs(5)
        return
    if args.at_rest:
        for workload in args.workload or list(WORKLOADS):
            for seconds in args.at_rest_seconds or [300, 3600]:
                at_rest(args.series, seconds, workload)
        return
    rng = random.Random(42)
    walks = [rng.uniform(0, 100) for _ in range(args.series)]
    offsets = [rng.randrange(1000) for _ in range(args.series)]
    names = [
        (f"host.{i // 100}.cpu.load", f"server-{i:05d}") for i in range(args.series)
    ]
    total = args.series * args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        storage = Storage.open(
            directory, checkpoint_points=args.checkpoint_points or None
        )
        append_time = 0.0
        for second in range(args.seconds):
            batch = []
            for i, (metric, entity) in enumerate(names):
                walks[i] = round(walks[i] + rng.gauss(0, 0.3), 2)
                jitter = (
                    rng.randint(-args.jitter_ms, args.jitter_ms)
                    if args.jitter_ms
                    else 0
                )
                batch.append(
                    DataPoint(
                        metric,
                        entity,
                        walks[i],
                        T0 + second * 1000 + offsets[i] + jitter,
                    )
                )
            started = time.perf_counter()
            storage.append(batch)
            append_time += time.perf_counter() - started
        storage.sync()
        wal = directory_bytes(directory, "wal-*.log")
        before = directory_bytes(directory, "seg-*")
        in_head = storage.head_points
        started = time.perf_counter()
        storage.checkpoint()
        checkpoint_time = time.perf_counter() - started
        segments = directory_bytes(directory, "seg-*")
        data_only = directory_bytes(directory, "seg-*.dat")
        storage.close()
        check = Storage.open_readonly(directory)
        stored = sum(
            len(rows)
            for metric in check.metrics()
            for rows in check.query(metric).values()
        )
        assert stored == total, f"read back {stored} points of {total}"
    print(f"points                    {total:>9,}")
    print(f"checkpoint every          {args.checkpoint_points or total:>9,} points")
    print(f"write-ahead log at the end {wal:>11,} bytes")
    print(f"log + segments at the end {(wal + before) / total:>9.2f} bytes/point")
    print(f"segments (blocks + index) {segments / total:>9.2f} bytes/point (goal <= 4)")
    print(f"  of which data files     {data_only / total:>9.2f} bytes/point")
    print(
        f"  of which index files    {(segments - data_only) / total:>9.2f} bytes/point"
    )
    print(
        f"append (with checkpoints) {total / append_time:>9,.0f} points/s "
        f"({append_time / total * 1e6:.2f} us/point)"
    )
    print(
        f"final checkpoint          {in_head / checkpoint_time:>9,.0f} points/s "
        f"({checkpoint_time / in_head * 1e6:.2f} us/point, {in_head:,} points)"
    )


if __name__ == "__main__":
    main()
