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
import json
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Final

import attrs
from hdrh.histogram import HdrHistogram

from statsyard.config import Config
from statsyard.ingest_consumer import IngestObserver

__all__ = [
    "IngestStress",
    "StressReport",
    "ValidationTimes",
    "add_stress_arguments",
    "generate_points",
    "run_stress",
]

PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
_BASE_MS: Final = 1_700_000_000_000
_HIGHEST_NS: Final = 60 * 1_000_000_000


def generate_points(
    count: int, *, metrics: int = 100, entities: int = 10, invalid_share: float = 0.0
) -> Iterator[tuple[str, str, float, int]]:
    """Yield ``count`` ``(metric, entity, value, timestamp)`` tuples, lazily.

    Exactly ``floor(count * invalid_share)`` of them are invalid (a NaN
    value), spread evenly through the stream.
    """
    if not 0.0 <= invalid_share <= 1.0:
        raise ValueError(f"invalid_share must be within 0..1, got {invalid_share!r}")
    metric_names = [f"stress.metric{m}" for m in range(metrics)]
    entity_names = [f"host-{e:04d}" for e in range(entities)]
    nan = float("nan")
    share = invalid_share
    for index in range(count):
        bad = share and int((index + 1) * share) > int(index * share)
        yield (
            metric_names[index % metrics],
            entity_names[(index // metrics) % entities],
            nan if bad else (index % 1000) * 0.5,
            _BASE_MS + index,
        )


class ValidationTimes(IngestObserver):
    """Records the consumer's validation time per point in an HDR histogram (ns).

    The consumer times whole batches; each point of a batch is recorded with
    the batch's mean time per point.
    """

    def __init__(self) -> None:
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
    bytes_written: int
    """Size of the data directory after the run."""
    bytes_per_point: float
    """``bytes_written`` per written point."""
    pushed: int
    written: int
    invalid: int
    lost: int

    @property
    def balanced(self) -> bool:
        """Whether ``pushed == written + invalid + lost`` holds."""
        return self.pushed == self.written + self.invalid + self.lost

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
                f"peak RSS        {self.peak_rss_bytes / 2**20:,.1f} MiB",
                f"written         {self.bytes_written:,} bytes, "
                f"{self.bytes_per_point:.1f} bytes/point",
                f"accounting      pushed {self.pushed:,} = written {self.written:,} + "
                f"invalid {self.invalid:,} + lost {self.lost:,}  [{mark}]",
            ]
        )


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class _Progress:
    """A one-line progress bar with the rate, redrawn at most 5 times a second."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self._total = max(total, 1)
        self._stream = stream
        self._started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.2:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        share = done / self._total
        bar = "#" * int(share * 30)
        self._stream.write(
            f"\r[{bar:<30}] {share:6.1%} {done:>12,} points {done / elapsed:>12,.0f}/s"
        )
        if final:
            self._stream.write("\n")
        self._stream.flush()


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
        self, count: int, *, progress: Callable[..., None] | None = None
    ) -> StressReport:
        """Push ``count`` points, wait until they are durable, stop, and report."""
        from statsyard.cli import build_yard

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
        )
        try:
            yard = build_yard(
                quiet, data_dir=directory, ingest_observer=self.validation
            )
            yard.start()
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
                        progress(done)
                yard.flush(timeout=None)
                seconds = time.perf_counter() - started
                if progress is not None:
                    progress(done, final=True)
            finally:
                counts = yard.stop()
            written_bytes = _directory_size(directory)
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
            bytes_written=written_bytes,
            bytes_per_point=written_bytes / counts.written if counts.written else 0.0,
            pushed=counts.pushed,
            written=counts.written,
            invalid=counts.invalid,
            lost=counts.lost,
        )

    def write_hgrm(self, path: str | Path) -> None:
        """Write the validation times (µs) in HdrHistogram's percentile format."""
        with Path(path).open("wb") as handle:
            self.validation.histogram.output_percentile_distribution(handle, 1000.0)


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
        help="write the HDR percentile distribution",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="live progress bar on stderr (auto: when stderr is a terminal)",
    )


def run_stress(args: argparse.Namespace, config: Config) -> int:
    """Run ``stress`` from parsed arguments, print the report; return the status."""
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
    report = stress.run(
        args.count, progress=_Progress(args.count, sys.stderr) if show else None
    )
    if args.hgrm:
        stress.write_hgrm(args.hgrm)
    sys.stdout.write((report.to_json() if args.json else report.to_text()) + "\n")
    return 0 if report.balanced else 1
