"""Graphite plaintext ingest, end to end, beside carbon-cache in the same run.

Streams N plaintext lines (default 1,000,000) over ``--connections`` TCP
connections on loopback, one sender process per connection, into a running
StatsYard (in this process: pipeline + Graphite listener), and measures from
the first byte sent until every point is durably written (flush: written and
fsynced). Each sender shuts its side down after its last byte and waits for
the server to close the connection: that moment is "received" (the server
has read and parsed every line).

Beside it, in the same run and interleaved repeat by repeat, the same lines
go to Debian's carbon-cache (``graphite-carbon``, started here on free ports
with whisper files at 1-second resolution, as ``tests/_peers.py`` does):
received the same way, and "whisper done" once the last point of every
series is in its whisper file. And the bare rates of loops over the same
lines that only split them, and that parse them (``GraphiteParser``).

Each connection sends its own 100 series (``servers.c<k>host<h>.cpu.load<l>``),
1,000 lines per second of data ending a few seconds ago (whisper keeps one day).

Run by hand:
    python benchmarks/graphite_ingest.py [--lines N] [--connections C]
        [--repeats R] [--no-carbon] [--checkpoint-points P] [--fsync F]
        [--gc service|default]
Prints medians over the repeats (this machine is noisy).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statsyard.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LINES_PER_SECOND = 1000


def make_lines(count: int, connection: int, connections: int, base: int) -> bytes:
    """The lines connection ``connection`` of ``connections`` sends."""
    share = count // connections + (connection < count % connections)
    return b"".join(
        b"servers.c%dhost%02d.cpu.load%d %d.%d %d\n"
        % (
            connection,
            i % 50,
            i % 20,
            i,
            i % 7,
            base + i // LINES_PER_SECOND,
        )
        for i in range(share)
    )


def last_points(
    count: int, connections: int, base: int
) -> dict[str, tuple[int, float]]:
    """Each series' last (second, value): what carbon's whisper must end with."""
    last: dict[str, tuple[int, float]] = {}
    for connection in range(connections):
        share = count // connections + (connection < count % connections)
        for i in range(max(0, share - 100), share):
            path = f"servers.c{connection}host{i % 50:02d}.cpu.load{i % 20}"
            last[path] = (base + i // LINES_PER_SECOND, float(f"{i}.{i % 7}"))
    return last


# -- the sender processes ---------------------------------------------------------


def client(port: int, count: int, connection: int, connections: int, base: int) -> int:
    """A sender process: build its lines, wait for "go", send, wait for the close."""
    data = make_lines(count, connection, connections, base)
    sock = socket.create_connection(("127.0.0.1", port))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    start = time.monotonic()
    sock.sendall(data)
    sent = time.monotonic()
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(4096):  # the server closes once it has read every line
        pass
    received = time.monotonic()
    sock.close()
    print(start, sent, received, data.count(b"\n"), flush=True)
    return 0


def send(port: int, count: int, connections: int, base: int) -> tuple[float, float]:
    """Run the senders; returns (first byte sent, last connection closed)."""
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                *(str(n) for n in (port, count, k, connections, base)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(connections)
    ]
    for process in clients:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    for process in clients:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    starts, ends, total = [], [], 0
    for process in clients:
        assert process.stdout is not None
        start, _sent, received, lines = process.stdout.readline().split()
        starts.append(float(start))
        ends.append(float(received))
        total += int(lines)
        process.wait(60)
    assert total == count, (total, count)
    return min(starts), max(ends)


# -- the two servers --------------------------------------------------------------


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
    from statsyard.graphite.protocol import GraphiteParser

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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _collector(service_gc: bool) -> contextlib.AbstractContextManager[None]:
    """The garbage collector as `statsyard run` sets it, or Python's."""
    if not service_gc:
        return contextlib.nullcontext()
    from statsyard.cli.service import tuned_gc_for_ingest

    return tuned_gc_for_ingest()


def statsyard_run(
    config: Config, count: int, connections: int, base: int, *, service_gc: bool
) -> tuple[float, float, float]:
    """StatsYard: lines/s first byte -> received and -> durable, and the CPU
    time this process (the service) spent per line in between, in µs."""
    from statsyard import StatsYard

    with (
        tempfile.TemporaryDirectory(prefix="statsyard-bench-") as directory,
        _collector(service_gc),
    ):
        yard = StatsYard(config, data_dir=directory)
        yard.start()
        try:
            listener = yard.child("graphite").proxy()
            (_, port), _ = listener.addresses().get(timeout=10)
            cpu = _cpu()
            start, received = send(port, count, connections, base)
            while listener.stats().get(timeout=10).lines_accepted < count:
                time.sleep(0.001)  # benchmark only: poll until every line is queued
            yard.flush(timeout=None)
            durable = time.monotonic()
            cpu = _cpu() - cpu
        finally:
            counts = yard.stop()
    if counts.written != count:
        raise SystemExit(f"ERROR: {counts.written} of {count} lines written")
    return count / (received - start), count / (durable - start), cpu * 1e6 / count


def carbon_run(
    workdir: Path, count: int, connections: int, base: int
) -> tuple[float, float]:
    """carbon-cache: (lines/s first byte -> received, seconds to whisper done)."""
    import whisper

    from tests._peers import CarbonCache

    carbon = CarbonCache(workdir).start()
    try:
        start, received = send(carbon.port, count, connections, base)
        waiting = last_points(count, connections, base)
        pause = threading.Event()
        deadline = time.monotonic() + 600
        while waiting and time.monotonic() < deadline:
            for path, (second, value) in list(waiting.items()):
                file = carbon.whisper_file(path)
                if not file.exists():
                    continue
                try:
                    fetched = whisper.fetch(str(file), second - 1, second + 1)
                except whisper.CorruptWhisperFile:  # being created right now
                    continue
                if fetched is not None and value in fetched[1]:
                    del waiting[path]
            if waiting:
                pause.wait(0.02)
        done = time.monotonic()
    finally:
        carbon.stop()
    if waiting:
        raise SystemExit(f"ERROR: carbon never wrote {len(waiting)} series")
    return count / (received - start), done - start


def _runs(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fsync", default="interval", choices=("always", "interval", "never")
    )
    parser.add_argument(
        "--checkpoint-points",
        type=int,
        default=None,
        help="[storage] checkpoint_points (0: never compact by count)",
    )
    parser.add_argument("--no-carbon", action="store_true", help="StatsYard only")
    parser.add_argument(
        "--gc",
        choices=("service", "default"),
        default="service",
        help="the collector as `statsyard run` tunes it (default), or Python's",
    )
    parser.add_argument("--client", nargs=5, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client(*args.client)

    import attrs

    from statsyard.config import load_config

    logging.basicConfig(level=logging.WARNING)
    base_config = load_config(environ={})
    storage = attrs.evolve(base_config.storage, fsync=args.fsync)
    if args.checkpoint_points is not None:
        storage = attrs.evolve(
            storage, checkpoint_points=args.checkpoint_points or None
        )
    config = attrs.evolve(
        base_config,
        storage=storage,
        graphite=attrs.evolve(base_config.graphite, tcp_port=0, udp_port=0),
        metrics=attrs.evolve(base_config.metrics, enabled=False),
        http=attrs.evolve(base_config.http, enabled=False),
    )
    count, connections = args.lines, args.connections
    splits, parses, received, durable, cpus = [], [], [], [], []
    carbon_received, carbon_done = [], []
    with tempfile.TemporaryDirectory(prefix="statsyard-carbon-") as work:
        for repeat in range(args.repeats):
            base = int(time.time()) - count // LINES_PER_SECOND - 5
            data = make_lines(count, 0, 1, base)
            splits.append(bare_split(data))
            parses.append(bare_parse(data))
            del data
            got, done, cpu = statsyard_run(
                config, count, connections, base, service_gc=args.gc == "service"
            )
            received.append(got)
            durable.append(done)
            cpus.append(cpu)
            if not args.no_carbon:
                got, seconds = carbon_run(
                    Path(work) / f"carbon{repeat}", count, connections, base
                )
                carbon_received.append(got)
                carbon_done.append(seconds)
    median = statistics.median
    rate = median(durable)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"lines: {count:,} over {connections} TCP connection(s), "
        f"{args.repeats} repeats, fsync {args.fsync}, checkpoint_points "
        f"{config.storage.checkpoint_points}, gc {args.gc}"
    )
    print(f"bare split loop          {median(splits):>10,.0f} lines/s")
    print(f"bare parse loop          {median(parses):>10,.0f} lines/s")
    print(
        f"StatsYard received       {median(received):>10,.0f} lines/s "
        f"(runs: {_runs(received)})"
    )
    print(
        f"StatsYard durable        {rate:>10,.0f} lines/s (runs: {_runs(durable)}), "
        f"durable in {count / rate:.2f} s"
    )
    print(
        f"StatsYard CPU per line   {median(cpus):>10.2f} µs in the service process"
        f" (runs: {_runs(cpus, '{:.2f}')})"
    )
    if carbon_received:
        carbon_rate = median(carbon_received)
        print(
            f"carbon-cache received    {carbon_rate:>10,.0f} lines/s "
            f"(runs: {_runs(carbon_received)})"
        )
        print(
            f"carbon-cache whisper done {median(carbon_done):>9.2f} s "
            f"(runs: {_runs(carbon_done, '{:.2f}')})"
        )
        print(
            f"ratio StatsYard durable / carbon received: {rate / carbon_rate:.2f}; "
            f"time to durable, carbon / StatsYard: "
            f"{median(carbon_done) / (count / rate):.2f}"
        )
    print(f"peak RSS of this process (incl. the test data): {rss:,.0f} MiB")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    goal = 650_000 if connections == 1 else 1_000_000
    print(
        f"goal >= {goal:,} lines/s durable over {connections} connection(s): "
        f"{'met' if rate >= goal else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
