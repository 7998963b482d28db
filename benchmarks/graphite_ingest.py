"""Graphite plaintext ingest, end to end: TCP bytes in, durable points out.

Streams N plaintext lines (default 1,000,000) over ONE TCP connection on
loopback into a running StatsYard (in this process: pipeline + Graphite
listener) from a separate client process, and measures from the first byte
sent until every point is durably written (flush: written and fsynced).
Beside it, in the same run, the bare rates of loops over the same lines that
only split them, and that parse them into DataPoints.

Run by hand:  python benchmarks/graphite_ingest.py [--lines N] [--repeats R]
Prints medians over the repeats (this machine is noisy).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

from statsyard import StatsYard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.config import Config, load_config
from statsyard.graphite.protocol import GraphiteParser

CLIENT = r"""
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
data = b"".join(
    b"servers.host%02d.cpu.load%d %d.%d %d\n"
    % (i % 50, i % 20, i, i % 7, 1700000000 + i // 1000)
    for i in range(count)
)
sock = socket.create_connection(("127.0.0.1", port))
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
start = time.monotonic()
sock.sendall(data)
sent = time.monotonic()
sock.close()
print(start, sent, len(data))
"""


def make_lines(count: int) -> bytes:
    return b"".join(
        b"servers.host%02d.cpu.load%d %d.%d %d\n"
        % (i % 50, i % 20, i, i % 7, 1700000000 + i // 1000)
        for i in range(count)
    )


def bare_split(data: bytes) -> float:
    """Lines/s of a loop that only decodes and splits each line into fields."""
    started = time.perf_counter()
    count = 0
    for line in data.decode().split("\n"):
        if len(line.split()) == 3:
            count += 1
    return count / (time.perf_counter() - started)


def bare_parse(data: bytes) -> float:
    """Lines/s of GraphiteParser alone, fed 256 KiB chunks as the listener is."""
    parser = GraphiteParser()
    started = time.perf_counter()
    remainder = b""
    count = 0
    for offset in range(0, len(data), 256 * 1024):
        points, _, remainder = parser.parse_lines(
            remainder + data[offset : offset + 256 * 1024]
        )
        count += len(points)
    return count / (time.perf_counter() - started)


def end_to_end(config: Config, count: int) -> tuple[float, float, int]:
    """(lines/s first byte -> durable, lines/s of sending alone, written)."""
    with tempfile.TemporaryDirectory(prefix="statsyard-bench-") as directory:
        yard = StatsYard(config, data_dir=directory)
        yard.start()
        try:
            listener = yard.child("graphite").proxy()
            (_, port), _ = listener.addresses().get(timeout=10)
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT, str(port), str(count)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert client.stdout is not None and client.stdin is not None
            assert client.stdout.readline().strip() == "ready"
            client.stdin.write("go\n")
            client.stdin.flush()
            start_text, sent_text, _ = client.stdout.readline().split()
            client.wait(60)
            start, sent = float(start_text), float(sent_text)
            while listener.stats().get(timeout=10).lines_accepted < count:
                time.sleep(0.001)  # benchmark only: poll until every line is queued
            yard.flush(timeout=None)
            durable = time.monotonic()
        finally:
            counts = yard.stop()
    return count / (durable - start), count / (sent - start), counts.written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fsync", default="interval", choices=("always", "interval", "never")
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = load_config(environ={})
    config = attrs.evolve(
        base,
        storage=attrs.evolve(base.storage, fsync=args.fsync),
        graphite=attrs.evolve(base.graphite, tcp_port=0, udp_port=0),
        metrics=attrs.evolve(base.metrics, enabled=False),
    )
    data = make_lines(args.lines)
    splits, parses, e2e, sends = [], [], [], []
    for _ in range(args.repeats):
        splits.append(bare_split(data))
        parses.append(bare_parse(data))
        rate, send_rate, written = end_to_end(config, args.lines)
        if written != args.lines:
            print(f"ERROR: {written} of {args.lines} lines written", file=sys.stderr)
            return 1
        e2e.append(rate)
        sends.append(send_rate)
    split, parse, rate = (statistics.median(x) for x in (splits, parses, e2e))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"lines: {args.lines:,} over one TCP connection, "
        f"{args.repeats} repeats, fsync {args.fsync}"
    )
    print(f"bare split loop     {split:>12,.0f} lines/s (median)")
    print(f"bare parse loop     {parse:>12,.0f} lines/s (median)")
    print(
        f"end to end, durable {rate:>12,.0f} lines/s (median; runs: "
        + ", ".join(f"{r:,.0f}" for r in e2e)
        + ")"
    )
    print(
        f"client send done    {statistics.median(sends):>12,.0f} lines/s "
        "(first to last byte)"
    )
    print(
        f"ratios              end to end / parse = {rate / parse:.2f}, "
        f"end to end / split = {rate / split:.2f}"
    )
    print(f"peak RSS of the server process (incl. the test data): {rss:,.0f} MiB")
    print(
        f"goal >= 500,000 lines/s end to end: {'met' if rate >= 500_000 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
