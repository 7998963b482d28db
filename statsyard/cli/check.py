"""``statsyard check DATA_DIR``: a read-only report on a data directory.

Like ``promtool tsdb analyze`` or ``whisper-info``: it opens the directory
read-only (never changing a file, whether or not a service writes to it),
reads every block of every series back, and reports the files, points,
series, time range, damaged records and compaction state. The exit status
is 0 for a sound directory, 1 if anything is damaged, 2 if the path is not a
StatsYard data directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs

from statsyard.exceptions import CorruptRecordError, NotADataDirectoryError
from statsyard.storage import (
    DEFAULT_CHECKPOINT_POINTS,
    INDEX_PATTERN,
    MARKER_NAME,
    SEGMENT_PATTERN,
    WAL_PATTERN,
    Storage,
)

__all__ = ["CheckReport", "add_check_arguments", "check_directory", "run_check"]

_STORAGE_LOGGER: Final = "statsyard.storage"


@attrs.frozen
class CheckReport:
    """What :func:`check_directory` found."""

    directory: str
    log_files: int
    log_bytes: int
    segments: int
    segment_bytes: int
    """Data and index files of the compacted segments together."""
    other_files: list[str]
    """Entries that are none of the above (e.g. quarantined files)."""
    points: int
    """Points read back, segments and log together."""
    points_in_log: int
    """Points in the log not yet compacted into a segment."""
    series: int
    metrics: int
    first_ms: int | None
    last_ms: int | None
    damaged: int
    """Damaged records, blocks or stretches skipped while reading."""
    problems: list[str]
    """What the reader said about each damage (file and offset)."""

    @property
    def ok(self) -> bool:
        """No damage found."""
        return self.damaged == 0 and not self.problems

    def to_json(self) -> str:
        """The report as one JSON object."""
        data = attrs.asdict(self)
        data["ok"] = self.ok
        return json.dumps(data, indent=2)

    def to_text(self) -> str:
        """The report as aligned lines."""
        span = (
            "no points"
            if self.first_ms is None or self.last_ms is None
            else f"{_iso(self.first_ms)} .. {_iso(self.last_ms)}"
        )
        lines = [
            f"data directory  {self.directory}",
            f"files           {self.log_files} log file(s), {self.log_bytes:,} bytes; "
            f"{self.segments} segment(s), {self.segment_bytes:,} bytes"
            + (f"; {len(self.other_files)} other" if self.other_files else ""),
            f"points          {self.points:,} "
            f"({self.points - self.points_in_log:,} compacted in segments, "
            f"{self.points_in_log:,} in the log)",
            f"series          {self.series:,} ({self.metrics:,} metrics)",
            f"time range      {span}",
            f"compaction      {self.points_in_log:,} point(s) in the log wait "
            "for the next "
            f"checkpoint (the writer compacts every "
            f"{DEFAULT_CHECKPOINT_POINTS:,} points in the log into a segment)",
            f"damaged         {self.damaged} record(s) skipped",
        ]
        lines.extend(f"other file      {name}" for name in self.other_files)
        lines.extend(f"problem         {text}" for text in self.problems)
        lines.append(f"status          {'ok' if self.ok else 'DAMAGED'}")
        return "\n".join(lines)


def _iso(timestamp_ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp_ms} ms"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Collect(logging.Handler):
    """Keeps the storage's WARNING messages (damage, with file and offset)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_directory(data_dir: str | os.PathLike[str]) -> CheckReport:
    """Read every file and block of ``data_dir`` and report; changes nothing.

    Raises:
        NotADataDirectoryError: ``data_dir`` is not a StatsYard data directory.
        CorruptRecordError: a file named as a StatsYard file is not one.
        OSError: a file cannot be read.
    """
    directory = Path(data_dir)
    collect = _Collect()
    storage_logger = logging.getLogger(_STORAGE_LOGGER)
    level, propagate = storage_logger.level, storage_logger.propagate
    if storage_logger.getEffectiveLevel() > logging.WARNING:
        # The report lists the damage even when the log shows less.
        storage_logger.setLevel(logging.WARNING)
        storage_logger.propagate = False
    storage_logger.addHandler(collect)
    try:
        storage = Storage.open_readonly(directory)
        try:
            points = 0
            first: int | None = None
            last: int | None = None
            all_series = storage.series("**")
            for metric in storage.metrics():
                for timeline in storage.query(metric).values():
                    if not timeline:
                        continue
                    points += len(timeline)
                    low, high = timeline[0][0], timeline[-1][0]
                    first = low if first is None else min(first, low)
                    last = high if last is None else max(last, high)
            report = _files(directory)
            return CheckReport(
                directory=str(directory),
                points=points,
                points_in_log=storage.head_points,
                series=len(all_series),
                metrics=len(storage.metrics()),
                first_ms=first,
                last_ms=last,
                damaged=storage.skipped_records,
                problems=collect.messages,
                **report,
            )
        finally:
            storage.close()
    finally:
        storage_logger.removeHandler(collect)
        storage_logger.setLevel(level)
        storage_logger.propagate = propagate


def _files(directory: Path) -> dict[str, Any]:
    logs = segments = log_bytes = segment_bytes = 0
    other: list[str] = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = entry.name
        size = entry.stat(follow_symlinks=False).st_size
        if name == MARKER_NAME:
            continue
        if WAL_PATTERN.match(name) and entry.is_file(follow_symlinks=False):
            logs += 1
            log_bytes += size
        elif SEGMENT_PATTERN.match(name) and entry.is_file(follow_symlinks=False):
            segments += 1
            segment_bytes += size
        elif INDEX_PATTERN.match(name) and entry.is_file(follow_symlinks=False):
            segment_bytes += size
        else:
            other.append(name + ("/" if entry.is_dir() else ""))
    return {
        "log_files": logs,
        "log_bytes": log_bytes,
        "segments": segments,
        "segment_bytes": segment_bytes,
        "other_files": other,
    }


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` subcommand's own arguments."""
    parser.add_argument(
        "data_dir",
        nargs="?",
        metavar="DATA_DIR",
        default=None,
        help="the data directory (default: storage.data_dir of the configuration)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="output format (default: text)",
    )


def run_check(args: argparse.Namespace, default_dir: str) -> int:
    """Run ``check``: print the report; 0 sound, 1 damaged, 2 not a data directory."""
    data_dir = args.data_dir or default_dir
    try:
        report = check_directory(data_dir)
    except (NotADataDirectoryError, CorruptRecordError, OSError) as error:
        print(f"statsyard check: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, NotADataDirectoryError) else 1
    sys.stdout.write(
        (report.to_json() if args.format == "json" else report.to_text()) + "\n"
    )
    return 0 if report.ok else 1
