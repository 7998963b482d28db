"""Does serving /render slow ingest down? (run by hand; issue 11).

One StatsYard with its HTTP API holds a day of minutely points for 100
series. Then, alternately, fresh points are pushed for a few seconds and
flushed:

- alone, for ``--seconds``;
- while another process hammers ``/render`` with a few concurrent clients
  (a JSON render of ``servers.*.cpu`` over the last day and a PNG picture,
  in turn).

Reported: the ingest rate of each (median over repeats), their ratio, and
how many renders were served meanwhile (with their median latency). The
clients run in their own process so that their own work does not count
against ingest; the server's work does (it shares StatsYard's process, as
it does in the service). Usage::

    python benchmarks/http_render.py [--repeats 5] [--seconds 3] [--clients 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from statsyard.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.app import StatsYard

CLIENT = r"""
import sys, threading, time, urllib.request
base, clients = sys.argv[1], int(sys.argv[2])
urls = [
    base + "/render?target=servers.*.cpu&from=-1d&format=json",
    base + "/render?target=sumSeries(servers.*.cpu)&from=-1d&format=png",
]
stop = threading.Event()
latencies = []
def run(offset):
    n = offset
    while not stop.is_set():
        began = time.perf_counter()
        with urllib.request.urlopen(urls[n % len(urls)], timeout=60) as reply:
            reply.read()
        latencies.append(time.perf_counter() - began)
        n += 1
threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
for t in threads: t.start()
print("started", flush=True)
sys.stdin.readline()
stop.set()
for t in threads: t.join()
latencies.sort()
median = latencies[len(latencies) // 2] if latencies else 0.0
print(len(latencies), median, flush=True)
"""


def preload(yard: StatsYard, series: int, now_s: int) -> None:
    """A day of minutely points for ``series`` series."""
    start = now_s - 86_400
    for index in range(series):
        metric = f"servers.host{index:03d}.cpu"
        yard.push_many(
            (metric, "graphite", float(i % 100), (start + 60 * i) * 1000)
            for i in range(1440)
        )
    yard.flush()


def ingest(yard: StatsYard, seconds: float, round_: int) -> float:
    """Push fresh points for ``seconds``, then flush; return points per second."""
    now_ms = int(time.time()) * 1000
    batch = 50_000
    pushed = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        yard.push_many(
            (f"bench.r{round_}.m{i % 1000}", "graphite", float(i), now_ms + i)
            for i in range(pushed, pushed + batch)
        )
        pushed += batch
    yard.flush()
    return pushed / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--series", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        yard = StatsYard(
            Config.of(http={"enabled": True, "port": 0}),
            data_dir=Path(directory) / "data",
            ship_metrics=False,
        )
        with yard:
            preload(yard, args.series, int(time.time()))
            address = yard.http_address
            assert address is not None
            base = f"http://{address[0]}:{address[1]}"
            alone: list[float] = []
            loaded: list[float] = []
            served: list[tuple[int, float]] = []
            for round_ in range(args.repeats):
                alone.append(ingest(yard, args.seconds, 2 * round_))
                client = subprocess.Popen(
                    [sys.executable, "-c", CLIENT, base, str(args.clients)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert client.stdout is not None and client.stdin is not None
                assert client.stdout.readline().strip() == "started"
                began = time.perf_counter()
                loaded.append(ingest(yard, args.seconds, 2 * round_ + 1))
                elapsed = time.perf_counter() - began
                client.stdin.write("\n")
                client.stdin.flush()
                count, median = client.stdout.readline().split()
                client.wait(60)
                served.append((int(count), float(median)))
                print(
                    f"round {round_ + 1}: alone {alone[-1]:,.0f} points/s, "
                    f"with /render {loaded[-1]:,.0f} points/s "
                    f"({int(count)} renders in {elapsed:.2f} s, "
                    f"median {float(median) * 1000:.1f} ms)",
                    flush=True,
                )
    base_rate = statistics.median(alone)
    loaded_rate = statistics.median(loaded)
    renders = statistics.median(count for count, _ in served)
    latency = statistics.median(median for _, median in served)
    print()
    print(f"ingest alone:          {base_rate:,.0f} points/s (median)")
    print(f"ingest under /render:  {loaded_rate:,.0f} points/s (median)")
    print(f"ratio:                 {loaded_rate / base_rate:.2f}")
    print(
        f"renders per round:     {renders:.0f} "
        f"(median latency {latency * 1000:.1f} ms, {args.clients} clients)"
    )


if __name__ == "__main__":
    main()
