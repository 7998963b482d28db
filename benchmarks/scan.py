"""A scan of one 1,000,000-point series, 60 s averages: StatsYard beside Prometheus.

Issue 13's scan row, side by side in one run (run by hand). The same
1,000,000 points (one a second, a random walk rounded to 2 decimals, as
``benchmarks/query.py`` writes them) go

- into a StatsYard data directory, compacted into blocks (a checkpoint), and
- into a Prometheus TSDB made by ``promtool tsdb create-blocks-from
  openmetrics`` from the same points, served by Debian's ``prometheus``.

Then each side is asked for the series' 60-second averages over the whole
range, warm (the first answer is not timed), ``--repeats`` times:

- StatsYard, in process: ``Storage.query(metric, step=60_000, agg="avg")``;
- StatsYard over HTTP: graphite-web's ``/render`` API,
  ``summarize(big.series, "1min", "avg")`` as JSON, the request Grafana
  sends (a StatsYard serving its HTTP API on the directory);
- Prometheus over HTTP: ``/api/v1/query_range`` of
  ``avg_over_time(big_series[1m])`` at a 60 s step, as JSON. Prometheus
  refuses more than 11,000 steps a query, so the range is asked in two
  halves and their times are added.

Prints the medians in ms, points scanned per second and the ratios. Usage::

    python benchmarks/scan.py [--repeats 5] [--points 1000000] [--gc service|default]

``--gc service`` (the default) sets the garbage collector as ``statsyard
run`` sets it (start-up frozen, a collection every 50,000 allocations);
``default`` leaves Python's, as an embedding host may.

Prometheus 2.x windows are closed at both ends (61 points per 1-minute
window at one a second), graphite's and StatsYard's buckets hold 60: the
work differs by a point in 60.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3

from statsyard import Config, StatsYard
from statsyard.cli.service import tuned_gc_for_ingest
from statsyard.datapoint import DataPoint
from statsyard.storage import Storage
from tests._peers import Prometheus

T0 = 1_700_000_000_000
"""The first point's time (ms): 2023-11-14, a round second."""
STEP = 60_000
METRIC = "big.series"
ENTITY = "one"


def walk(points: int) -> list[tuple[int, float]]:
    """(ms, value) a second apart: a random walk rounded to 2 decimals."""
    rng = random.Random(7)
    value = 50.0
    out = []
    for i in range(points):
        value = round(value + rng.gauss(0, 0.3), 2)
        out.append((T0 + i * 1000, value))
    return out


def timed_ms(run: Callable[[], None]) -> float:
    """Wall time of one ``run``, in ms."""
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def build_statsyard(directory: Path, samples: list[tuple[int, float]]) -> None:
    """Append the samples and compact them into blocks."""
    storage = Storage.open(directory, checkpoint_points=None)
    for start in range(0, len(samples), 10_000):
        storage.append(
            [
                DataPoint(METRIC, ENTITY, value, stamp)
                for stamp, value in samples[start : start + 10_000]
            ]
        )
    storage.checkpoint()
    storage.close()


def build_prometheus(data: Path, samples: list[tuple[int, float]], work: Path) -> None:
    """The same samples as a Prometheus TSDB, made by ``promtool``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise SystemExit("promtool not found: apt-get install prometheus")
    source = work / "points.om"
    with open(source, "w") as f:
        f.write("# TYPE big_series gauge\n")
        f.writelines(
            f'big_series{{entity="{ENTITY}"}} {value} {stamp // 1000}\n'
            for stamp, value in samples
        )
        f.write("# EOF\n")
    # Blocks of up to 16 days (Prometheus' own compactor makes them that
    # big): the layout Prometheus would have after compacting on its own.
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=384h",
            str(source),
            str(data),
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    source.unlink()


def prometheus_scan(prometheus: Prometheus, first: int, last: int) -> Callable[[], int]:
    """A scan of [first, last] (ms) in query_range calls of at most 10,000 steps."""
    http = urllib3.PoolManager(retries=False, timeout=60.0)
    step_s = STEP // 1000
    start_s = first // 1000 + step_s
    end_s = last // 1000 + step_s
    per_call = 10_000 * step_s

    def run() -> int:
        buckets = 0
        at = start_s
        while at <= end_s:
            upto = min(at + per_call - step_s, end_s)
            response = http.request(
                "GET",
                f"{prometheus.base}/api/v1/query_range",
                fields={
                    "query": f"avg_over_time(big_series[{step_s}s])",
                    "start": str(at),
                    "end": str(upto),
                    "step": str(step_s),
                },
            )
            body = json.loads(response.data)
            assert body["status"] == "success", body
            buckets += len(body["data"]["result"][0]["values"])
            at = upto + step_s
        return buckets

    return run


def statsyard_render(base: str, first: int, last: int) -> Callable[[], int]:
    """graphite-web's ``/render`` of the 1-minute averages, as JSON."""
    http = urllib3.PoolManager(retries=False, timeout=60.0)
    fields = {
        "target": (
            f"summarize(seriesByTag('name={METRIC}','entity={ENTITY}'),"
            '"1min","avg")'
        ),
        "from": str(first // 1000),
        "until": str(last // 1000 + 1),
        "format": "json",
    }

    def run() -> int:
        response = http.request("GET", f"{base}/render", fields=fields)
        assert response.status == 200, response.data[:500]
        return len(json.loads(response.data)[0]["datapoints"])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--gc", choices=("service", "default"), default="service")
    args = parser.parse_args()
    n = args.points
    samples = walk(n)
    first, last = samples[0][0], samples[-1][0]
    buckets = -(-n // 60)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        directory = work / "statsyard"
        build_statsyard(directory, samples)
        prometheus = Prometheus(work / "prometheus")
        build_prometheus(work / "prometheus" / "data", samples, work)
        del samples
        collector = (
            tuned_gc_for_ingest() if args.gc == "service" else contextlib.nullcontext()
        )
        collector.__enter__()

        reader = Storage.open_readonly(directory)

        def in_process() -> None:
            rows = reader.query(METRIC, step=STEP, agg="avg")[ENTITY]
            assert len(rows) == buckets, len(rows)

        settings = Config.of(
            http={"enabled": True, "port": 0},
            render={"max_points": 10 * n},
            storage={"data_dir": str(directory)},
        )
        yard = StatsYard(settings).start()
        try:
            assert yard.http_address is not None
            host, port = yard.http_address
            render = statsyard_render(f"http://{host}:{port}", first, last)

            def over_http() -> None:
                got = render()
                assert got >= buckets, got

            prometheus.start()
            try:
                scan = prometheus_scan(prometheus, first, last)

                def peer() -> None:
                    got = scan()
                    assert abs(got - buckets) <= 1, got

                runs = (in_process, over_http, peer)
                for run in runs:  # warm: caches filled, files mapped
                    run()
                # Interleaved, so that the machine's mood falls on all three.
                own: list[float] = []
                http_ms: list[float] = []
                peer_ms: list[float] = []
                for _ in range(args.repeats):
                    for run, times in zip(runs, (own, http_ms, peer_ms), strict=True):
                        times.append(round(timed_ms(run), 1))
            finally:
                prometheus.stop()
        finally:
            yard.stop()
            reader.close()
            collector.__exit__(None, None, None)
    ours, served, theirs = (statistics.median(x) for x in (own, http_ms, peer_ms))
    print(
        f"one series of {n:,} points (1 s apart), {buckets:,} averages of 60 s, "
        f"gc {args.gc}, medians of {args.repeats}"
    )
    for name, ms in (
        ("StatsYard Storage.query (in process)", ours),
        ("StatsYard /render summarize, HTTP+JSON", served),
        ("Prometheus query_range, HTTP+JSON", theirs),
    ):
        print(f"  {name:40} {ms:8.1f} ms  {n / ms * 1000:13,.0f} points/s")
    print(f"ratio Prometheus / StatsYard in process: {theirs / ours:.2f}")
    print(f"ratio Prometheus / StatsYard over HTTP:  {theirs / served:.2f}")
    print(f"runs (ms): in process {own}, HTTP {http_ms}, Prometheus {peer_ms}")


if __name__ == "__main__":
    main()
