"""What a series costs: memory (RSS) in the head and after a checkpoint, disk, reopen.

Usage: python benchmarks/storage_series.py [--series 100000] [--points 1]

Each phase runs in a fresh process so RSS deltas are its own: appending N
series (one point each unless --points) through Storage.append in batches of
5,000, checkpointing, then reopening the directory (recovery loads every
index) and reopening read-only.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = 1_700_000_000_000


def rss_bytes() -> int:
    """Resident set size of this process, from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def phase(name: str, data_dir: str, series: int, points: int) -> dict[str, float]:
    from statsyard.storage import Storage

    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    if name == "write":
        with Storage.open(data_dir, checkpoint_points=None) as s:
            rows = [
                (
                    f"servers.host{i // 100:05d}.metric{i % 100:03d}",
                    "default",
                    1.5,
                    T0 + p,
                )
                for p in range(points)
                for i in range(series)
            ]
            written = time.perf_counter()
            for at in range(0, len(rows), 5000):
                s.append(rows[at : at + 5000])
            del rows
            gc.collect()
            head = rss_bytes()
            s.checkpoint()
            gc.collect()
            return {
                "append_s": time.perf_counter() - written,
                "head_rss": head - before,
                "after_checkpoint_rss": rss_bytes() - before,
            }
    opener = Storage.open if name == "reopen" else Storage.open_readonly
    storage = opener(data_dir)
    elapsed = time.perf_counter() - started
    gc.collect()
    result = {"open_s": elapsed, "rss": rss_bytes() - before}
    storage.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1)
    parser.add_argument("--phase")
    parser.add_argument("--dir")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.dir, args.series, args.points)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data")
        report = {}
        for name in ("write", "reopen", "readonly"):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--phase",
                    name,
                    "--dir",
                    data,
                    "--series",
                    str(args.series),
                    "--points",
                    str(args.points),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            report[name] = json.loads(done.stdout)
        disk = sum(p.stat().st_size for p in Path(data).iterdir() if p.is_file())
    n = args.series
    print(f"{n:,} series, {args.points} point(s) each")
    w = report["write"]
    print(f"head:            {w['head_rss'] / n:8.0f} B RSS per series")
    print(f"after checkpoint:{w['after_checkpoint_rss'] / n:8.0f} B RSS per series")
    print(
        f"reopen (writer): {report['reopen']['rss'] / n:8.0f} B RSS per series, "
        f"{report['reopen']['open_s']:.2f} s"
    )
    print(
        f"open_readonly:   {report['readonly']['rss'] / n:8.0f} B RSS per series, "
        f"{report['readonly']['open_s']:.2f} s"
    )
    print(f"disk:            {disk / n:8.1f} B per series")


if __name__ == "__main__":
    main()
