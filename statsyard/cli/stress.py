"""IngestStress: push N generated points through a full embedded pipeline and report.

The seed's ``IngestStress.run(2_000_000)`` as ``python -m statsyard stress N``.
Points are generated lazily, a batch at a time, so memory stays flat
whatever N. The report gives the end-to-end rate (from the first push until
every point is durable), validation time percentiles from an HDR histogram,
peak RSS, bytes written per point and the accounting
``pushed == written + invalid + lost``.
"""

from __future__ import annotations

import argparse
import contextlib
import decimal
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from itertools import chain, cycle, islice, repeat
from itertools import count as count_from
from operator import mul
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import attrs

from statsyard.config import Config
from statsyard.pipeline.ingest_observer import IngestObserver
from statsyard.storage import (
    DEFAULT_CHECKPOINT_POINTS,
    INDEX_PATTERN,
    SEGMENT_PATTERN,
    WAL_PATTERN,
)

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

__all__ = [
    "IngestStress",
    "StressReport",
    "ValidationTimes",
    "add_stress_arguments",
    "generate_points",
    "run_stress",
    "write_percentile_distribution",
]

PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
_BASE_MS: Final = 1_700_000_000_000
_HIGHEST_NS: Final = 60 * 1_000_000_000


def generate_points(
    count: int, *, metrics: int = 100, entities: int = 10, invalid_share: float = 0.0
) -> Iterator[tuple[str, str, float, int]]:
    """Yield ``count`` ``(metric, entity, value, timestamp)`` tuples, lazily.

    Point ``i`` is ``(metric i % metrics, entity (i // metrics) % entities,
    (i % 1000) * 0.5, base + i)``. Exactly ``floor(count * invalid_share)``
    of them are invalid (a NaN value), spread evenly through the stream.
    The columns are zipped at C speed (every value a fresh float, every
    timestamp a fresh int, as a real producer's), so that the run measures
    the pipeline rather than a Python loop building tuples.
    """
    if not 0.0 <= invalid_share <= 1.0:
        raise ValueError(f"invalid_share must be within 0..1, got {invalid_share!r}")
    metric_names = [f"stress.metric{m}" for m in range(metrics)]
    entity_names = [f"host-{e:04d}" for e in range(entities)]
    each_entity = chain.from_iterable(map(repeat, cycle(entity_names), repeat(metrics)))
    values: Iterator[float] = map(mul, cycle(range(1000)), repeat(0.5))
    if invalid_share:
        values = _with_invalid(values, invalid_share)
    return islice(
        zip(cycle(metric_names), each_entity, values, count_from(_BASE_MS)), count
    )


def _with_invalid(values: Iterator[float], share: float) -> Iterator[float]:
    """``values`` with a NaN at each index ``i`` where ``floor((i+1)*share)``
    steps up."""
    nan = float("nan")
    for index, value in enumerate(values):
        yield nan if int((index + 1) * share) > int(index * share) else value


class ValidationTimes(IngestObserver):
    """Records the consumer's validation time per point in an HDR histogram (ns).

    The consumer times whole batches; each point of a batch is recorded with
    the batch's mean time per point.
    """

    def __init__(self) -> None:
        from hdrh.histogram import HdrHistogram

        self.histogram = HdrHistogram(1, _HIGHEST_NS, 3)
        self._lock = threading.Lock()

    def validated(self, points: int, invalid: int, seconds: float) -> None:
        """Record ``points`` values of ``seconds / points``."""
        if points <= 0:
            return
        per_point = min(_HIGHEST_NS, max(1, round(seconds * 1e9 / points)))
        with self._lock:
            self.histogram.record_value(per_point, points)


@attrs.frozen
class StressReport:
    """What a stress run measured."""

    points: int
    """Points generated and pushed."""
    seconds: float
    """From the first push until every point was durable (flush returned)."""
    points_per_second: float
    validation_us: dict[str, float]
    """Validation time per point, microseconds: p50, p90, p99, p99.9, max."""
    peak_rss_bytes: int
    peak_worker_rss_bytes: int
    """Largest peak RSS of a worker process (the compaction worker), 0 if none."""
    bytes_written: int
    """Size of the data directory after the run (logs and segments)."""
    bytes_per_point: float
    """``bytes_written`` per written point."""
    log_bytes: int
    """Of which write-ahead log files: points not compacted (none after a stop)."""
    segment_bytes: int
    """Of which compacted segments (data and index files)."""
    checkpoint_points: int
    """The writer compacts the log into a segment every this many points."""
    pushed: int
    written: int
    invalid: int
    lost: int

    @property
    def balanced(self) -> bool:
        """Whether ``pushed == written + invalid + lost`` holds."""
        return self.pushed == self.written + self.invalid + self.lost

    def _storage_note(self) -> str:
        if self.segment_bytes == 0:
            return "nothing compacted: the checkpoint at the stop failed (see the log)"
        if self.log_bytes > self.segment_bytes:
            return "mostly log: the checkpoint at the stop failed (see the log)"
        return (
            f"compacted every {self.checkpoint_points:,} points and at the clean "
            "stop, so the log is empty (generated values repeat, so segments "
            "compress them far better than real data)"
        )

    def to_json(self) -> str:
        """The report as a JSON object."""
        data = attrs.asdict(self)
        data["balanced"] = self.balanced
        return json.dumps(data, indent=2)

    def to_text(self) -> str:
        """The report as aligned lines for a terminal."""
        v = self.validation_us
        mark = "ok" if self.balanced else "MISMATCH"
        return "\n".join(
            [
                f"points          {self.points:,} in {self.seconds:.2f} s",
                f"end to end      {self.points_per_second:,.0f} points/s "
                "(push -> queue -> validate -> durable write)",
                "validation/pt   "
                + ", ".join(
                    f"{k} {v[k]:.2f}" for k in ("p50", "p90", "p99", "p99.9", "max")
                )
                + " us",
                f"peak RSS        {self.peak_rss_bytes / 2**20:,.1f} MiB"
                + (
                    f" (compaction worker {self.peak_worker_rss_bytes / 2**20:,.1f}"
                    " MiB)"
                    if self.peak_worker_rss_bytes
                    else ""
                ),
                f"written         {self.bytes_written:,} bytes, "
                f"{self.bytes_per_point:.1f} bytes/point: "
                f"{self.log_bytes:,} in the log, {self.segment_bytes:,} in segments",
                f"                {self._storage_note()}",
                f"accounting      pushed {self.pushed:,} = written {self.written:,} + "
                f"invalid {self.invalid:,} + lost {self.lost:,}  [{mark}]",
            ]
        )


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class _ChildPeaks:
    """Watches the peak RSS of this process' children (the compaction worker).

    ``RUSAGE_CHILDREN`` would count a child's forked copy of this process
    before it ran its own program; the kernel's high-water mark of the
    child's own memory (``VmHWM``, Linux) does not, and only grows, so
    reading it every 50 ms misses at most the last moments of a child.
    """

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="statsyard-stress-rss", daemon=True
        )

    def start(self) -> None:
        """Start watching (Linux only; elsewhere the peak stays 0)."""
        if sys.platform.startswith("linux"):
            self._thread.start()

    def stop(self) -> None:
        """Take a last look and stop."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        import psutil  # only a run needs it

        me = psutil.Process()
        while True:
            for child in me.children():
                self.peak_bytes = max(self.peak_bytes, _high_water_bytes(child.pid))
            if self._stopped.wait(0.05):
                return


def _high_water_bytes(pid: int) -> int:
    """A process' peak resident set size, from ``/proc``; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _file_bytes(path: Path) -> tuple[int, int, int]:
    """``(all, log, segment)`` bytes of the files of a data directory."""
    total = log = segment = 0
    for entry in os.scandir(path):
        if not entry.is_file(follow_symlinks=False):
            continue
        size = entry.stat(follow_symlinks=False).st_size
        total += size
        if WAL_PATTERN.match(entry.name):
            log += size
        elif SEGMENT_PATTERN.match(entry.name) or INDEX_PATTERN.match(entry.name):
            segment += size
    return total, log, segment


class IngestStress:
    """Pushes generated points through a full embedded pipeline.

    Args:
        config: pipeline and storage settings (``data_dir`` is ignored:
            see ``data_dir``).
        metrics: distinct metric names.
        entities: distinct entities.
        invalid_share: share of invalid points, 0..1.
        batch_size: points per push (default: the pipeline's batch size).
        data_dir: where to write; None for a temporary directory removed
            afterwards.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        metrics: int = 100,
        entities: int = 10,
        invalid_share: float = 0.0,
        batch_size: int | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        if metrics < 1 or entities < 1:
            raise ValueError("metrics and entities must be at least 1")
        if not 0.0 <= invalid_share <= 1.0:
            raise ValueError(
                f"invalid_share must be within 0..1, got {invalid_share!r}"
            )
        self.config = config or Config()
        self.metrics = metrics
        self.entities = entities
        self.invalid_share = invalid_share
        self.batch_size = batch_size or self.config.pipeline.batch_size
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.validation = ValidationTimes()

    def run(
        self, count: int, *, progress: Callable[[int], object] | None = None
    ) -> StressReport:
        """Push ``count`` points, wait until they are durable, stop, and report.

        Args:
            count: points to push.
            progress: called with the number of points pushed by each push.
        """

        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        temporary = self.data_dir is None
        directory = (
            Path(tempfile.mkdtemp(prefix="statsyard-stress-"))
            if self.data_dir is None
            else self.data_dir
        )
        quiet = attrs.evolve(
            self.config,
            graphite=attrs.evolve(self.config.graphite, enabled=False),
            metrics=attrs.evolve(self.config.metrics, enabled=False),
            http=attrs.evolve(self.config.http, enabled=False),
            forward=(),
        )
        from statsyard.app import StatsYard  # only the run needs the tree

        workers = _ChildPeaks()
        try:
            yard = StatsYard(quiet, data_dir=directory, ingest_observer=self.validation)
            yard.start()
            workers.start()
            try:
                points = generate_points(
                    count,
                    metrics=self.metrics,
                    entities=self.entities,
                    invalid_share=self.invalid_share,
                )
                size = self.batch_size
                started = time.perf_counter()
                done = 0
                while done < count:
                    chunk = list(islice(points, min(size, count - done)))
                    yard.push_many(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                yard.flush(timeout=None)
                seconds = time.perf_counter() - started
            finally:
                counts = yard.stop()
                workers.stop()
            written_bytes, log_bytes, segment_bytes = _file_bytes(directory)
        finally:
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)
        histogram = self.validation.histogram
        validation = {
            ("p" + f"{p:g}"): histogram.get_value_at_percentile(p) / 1000.0
            for p in PERCENTILES
        }
        validation["max"] = histogram.get_max_value() / 1000.0
        return StressReport(
            points=count,
            seconds=seconds,
            points_per_second=count / seconds if seconds > 0 else 0.0,
            validation_us=validation,
            peak_rss_bytes=_peak_rss_bytes(),
            peak_worker_rss_bytes=workers.peak_bytes,
            bytes_written=written_bytes,
            bytes_per_point=written_bytes / counts.written if counts.written else 0.0,
            log_bytes=log_bytes,
            segment_bytes=segment_bytes,
            checkpoint_points=DEFAULT_CHECKPOINT_POINTS,
            pushed=counts.pushed,
            written=counts.written,
            invalid=counts.invalid,
            lost=counts.lost,
        )

    def write_hgrm(self, out: IO[bytes]) -> None:
        """Write the validation times (µs) in HdrHistogram's percentile format."""
        write_percentile_distribution(self.validation.histogram, out, 1000.0)


def write_percentile_distribution(
    histogram: HdrHistogram,
    out: IO[bytes],
    scaling_ratio: float,
    ticks_per_half_distance: int = 5,
) -> None:
    """Write ``histogram`` as HdrHistogram's ``outputPercentileDistribution`` does.

    The ``hdrh`` package has a writer of its own, but it differs from the
    Java original that HdrHistogram's plotters are written against: its
    percentile steps do not floor the half-distance exponent (other rows),
    its footer says ``TotalCount`` as a float and does not scale the
    standard deviation. This follows HdrHistogram 2.1's Java code: the
    ``PercentileIterator`` steps, ``Locale.US`` formats rounded half up, and
    the ``#[Mean ...]``, ``#[Max ...]``, ``#[Buckets ...]`` footer with every
    value divided by ``scaling_ratio``. A test compares it with the output
    of HdrHistogram 2.1.11 itself.
    """
    digits = int(histogram.significant_figures)
    out.write(
        b"%12s %14s %10s %14s\n\n"
        % (b"Value", b"Percentile", b"TotalCount", b"1/(1-Percentile)")
    )
    total = int(histogram.get_total_count())
    rows: list[str] = []
    if total:
        level = 0.0
        so_far = 0
        last_value = 0
        for item in histogram.get_recorded_iterator():
            count = int(item.count_at_value_iterated_to)
            if count == 0:
                continue
            so_far += count
            last_value = int(item.value_iterated_to)
            while 100.0 * so_far / total >= level:
                rows.append(
                    f"{_fixed(last_value / scaling_ratio, digits, 12)} "
                    f"{_fixed(level / 100.0, 12, 2)} {so_far:10d} "
                    f"{_fixed(1.0 / (1.0 - level / 100.0), 2, 14)}\n"
                )
                # Java: ticks * (long) pow(2, (long) log2(100 / (100 - level)) + 1)
                exponent = int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1
                level += 100.0 / (ticks_per_half_distance * int(2.0**exponent))
                if so_far >= total:
                    break  # the iterator has no next value: only the 100% row
            if so_far >= total:
                break
        rows.append(
            f"{_fixed(last_value / scaling_ratio, digits, 12)} "
            f"{_fixed(1.0, 12, 2)} {total:10d}\n"
        )
    mean = histogram.get_mean_value() / scaling_ratio
    stddev = histogram.get_stddev() / scaling_ratio
    top = histogram.get_max_value() / scaling_ratio
    rows.append(
        f"#[Mean    = {_fixed(mean, digits, 12)}, "
        f"StdDeviation   = {_fixed(stddev, digits, 12)}]\n"
        f"#[Max     = {_fixed(top, digits, 12)}, Total count    = {total:12d}]\n"
        f"#[Buckets = {int(histogram.bucket_count):12d}, "
        f"SubBuckets     = {int(histogram.sub_bucket_count):12d}]\n"
    )
    out.write("".join(rows).encode("ascii"))


def _fixed(value: float, places: int, width: int) -> str:
    """Java's ``%<width>.<places>f``: the shortest decimal, rounded half up."""
    if not math.isfinite(value):
        return f"{'Infinity' if value > 0 else 'NaN':>{width}}"
    exact = decimal.Decimal(repr(value)).quantize(
        decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP
    )
    return f"{exact:>{width}.{places}f}"


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number 0..1, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number 0..1, got {text!r}")
    return value


def add_stress_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``stress`` subcommand's own arguments."""
    parser.add_argument(
        "count", type=_count, metavar="N", help="points to push, e.g. 2_000_000"
    )
    parser.add_argument(
        "--metrics", type=_positive, default=100, help="distinct metrics (100)"
    )
    parser.add_argument(
        "--entities", type=_positive, default=10, help="distinct entities (10)"
    )
    parser.add_argument(
        "--invalid-share",
        type=_share,
        default=0.0,
        help="share of invalid points, 0..1 (0)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=None,
        help="points per push (pipeline.batch_size)",
    )
    parser.add_argument(
        "--data-dir",
        dest="stress_data_dir",
        default=None,
        help="write here (default: a temporary directory, removed afterwards)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--hgrm",
        metavar="PATH",
        default=None,
        help="write the validation times' percentile distribution (µs) in "
        "HdrHistogram's .hgrm format, as its plotters read it",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar with rate and ETA on stderr (auto: when stderr is a "
        "terminal); log lines print above it",
    )


def run_stress(args: argparse.Namespace, config: Config) -> int:
    """Run ``stress`` from parsed arguments, print the report; return the status.

    The ``--hgrm`` file is opened before the run, so that a path that cannot
    be written is a usage error (status 2) rather than a lost run.
    """
    # Imported here: the CLI builds this command's parser for every command.
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    stress = IngestStress(
        config,
        metrics=args.metrics,
        entities=args.entities,
        invalid_share=args.invalid_share,
        batch_size=args.batch_size,
        data_dir=args.stress_data_dir,
    )
    show = args.progress == "always" or (
        args.progress == "auto" and sys.stderr.isatty()
    )
    with contextlib.ExitStack() as stack:
        hgrm: IO[bytes] | None = None
        if args.hgrm:
            try:
                hgrm = stack.enter_context(Path(args.hgrm).open("wb"))
            except OSError as error:
                print(
                    f"statsyard stress: error: cannot write --hgrm {args.hgrm}: "
                    f"{error.strerror or error}",
                    file=sys.stderr,
                )
                return 2
        bar = stack.enter_context(
            tqdm(
                total=args.count,
                disable=not show,
                file=sys.stderr,
                unit="pt",
                unit_scale=True,
                dynamic_ncols=True,
                mininterval=0.2,
            )
        )
        if show:
            # Log lines go through tqdm.write, above the bar, not over it.
            stack.enter_context(logging_redirect_tqdm())
        report = stress.run(args.count, progress=bar.update if show else None)
        bar.close()
        if hgrm is not None:
            stress.write_hgrm(hgrm)
    sys.stdout.write((report.to_json() if args.json else report.to_text()) + "\n")
    return 0 if report.balanced else 1
