"""The ``query`` and ``series`` commands: read a data directory directly.

The service's argument parser calls :func:`add_query_arguments` /
:func:`run_query` and :func:`add_series_arguments` / :func:`run_series`;
``python -m statsyard.query_cli query|series ...`` runs them standalone. Both
open the directory read-only, so they work whether or not a service is
writing to it. Results go to stdout; errors go to stderr with exit status 2
(bad arguments, not a data directory) or 1 (unknown metric).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import UTC, datetime
from typing import Final

from statsyard.datapoint import now_ms as current_ms
from statsyard.exceptions import CorruptRecordError, NotADataDirectoryError
from statsyard.storage import Storage
from statsyard.storage._query import AGGREGATES

__all__ = [
    "add_query_arguments",
    "add_series_arguments",
    "main",
    "parse_step",
    "parse_time",
    "run_query",
    "run_series",
]

DEFAULT_DATA_DIR: Final = "./statsyard-data"
"""The data directory used when ``--data-dir`` is not given (the service's default)."""

_UNITS_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION: Final = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_RELATIVE: Final = re.compile(r"^(?:now)?-(\d+)(ms|s|m|h|d)$")
_EPOCH: Final = re.compile(r"^\d+(\.\d+)?$")


def parse_time(text: str, *, now_ms: int) -> int:
    """A time argument as milliseconds since the epoch.

    Accepts ``now``; relative times ``-30s``, ``-15m``, ``-1h``, ``-2d`` (also
    ``now-1h``); epoch seconds (``1700000000`` or with a fraction); ISO 8601
    (``2023-11-14T22:13:20Z``, ``2023-11-14``; no zone means UTC).

    Args:
        text: the argument.
        now_ms: what ``now`` is, in ms.

    Raises:
        ValueError: the text is none of these forms.
    """
    value = text.strip()
    if value == "now":
        return now_ms
    relative = _RELATIVE.match(value)
    if relative is not None:
        return now_ms - int(relative.group(1)) * _UNITS_MS[relative.group(2)]
    if _EPOCH.match(value):
        return round(float(value) * 1000)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: expected epoch seconds, ISO 8601 "
            "(2023-11-14T22:13:20Z), 'now' or a relative time like -1h, -15m, "
            "-30s, -2d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def parse_step(text: str) -> int:
    """A step argument in ms: ``60s``, ``5m``, ``1h``, ``1d``, ``500ms`` or plain ms.

    Raises:
        ValueError: not one of these forms, or not positive.
    """
    value = text.strip()
    duration = _DURATION.match(value)
    if duration is not None:
        step = int(duration.group(1)) * _UNITS_MS[duration.group(2)]
    elif value.isdigit():
        step = int(value)
    else:
        raise ValueError(
            f"bad step {text!r}: expected e.g. 60s, 5m, 1h, 1d, 500ms or an int of ms"
        )
    if step <= 0:
        raise ValueError(f"bad step {text!r}: must be positive")
    return step


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"the StatsYard data directory (default: {DEFAULT_DATA_DIR}, or "
        "storage.data_dir from the configuration under `statsyard`)",
    )


_NEGATIVE_LOOKING: Final = re.compile(r"^-\d+(ms|s|m|h|d)?$|^-\d*\.\d+$")


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``query METRIC ...`` to ``parser``.

    Also teaches ``parser`` that ``-1h`` is a value, not an option, so that
    ``--from -1h`` works (argparse only knows that of negative numbers).
    """
    if hasattr(parser, "_negative_number_matcher"):
        parser._negative_number_matcher = _NEGATIVE_LOOKING
    parser.add_argument("metric", help="the metric name, e.g. cpu.load")
    _add_data_dir(parser)
    parser.add_argument("--entity", help="only this entity (default: all)")
    parser.add_argument(
        "--from",
        dest="from_",
        metavar="T",
        help="start, included: epoch seconds, ISO 8601, now, or -1h/-15m/-30s/-2d",
    )
    parser.add_argument("--until", metavar="T", help="end, excluded (same forms)")
    parser.add_argument(
        "--step", metavar="S", help="downsample into buckets: 60s, 5m, 1h or ms"
    )
    parser.add_argument(
        "--agg",
        default="avg",
        choices=list(AGGREGATES),
        help="how to aggregate a bucket (default: avg)",
    )
    parser.add_argument(
        "--format",
        default="table",
        choices=["table", "csv", "json"],
        help="output format (default: table)",
    )


def add_series_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``series [PATTERN]`` to ``parser``."""
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="Graphite-style glob on metric names: cpu.*, *.load, {a,b}, ** "
        "(default: everything)",
    )
    _add_data_dir(parser)


def _error(command: str, message: str) -> None:
    print(f"statsyard {command}: error: {message}", file=sys.stderr)


def _open(command: str, data_dir: str) -> Storage | None:
    try:
        return Storage.open_readonly(data_dir)
    except (NotADataDirectoryError, CorruptRecordError, OSError) as exc:
        _error(command, str(exc))
        return None


def _iso(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_query(args: argparse.Namespace) -> int:
    """Run ``query``: print the metric's points; return the exit status."""
    now = current_ms()
    try:
        start = None if args.from_ is None else parse_time(args.from_, now_ms=now)
        end = None if args.until is None else parse_time(args.until, now_ms=now)
        step = None if args.step is None else parse_step(args.step)
    except ValueError as exc:
        _error("query", str(exc))
        return 2
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    storage = _open("query", data_dir)
    if storage is None:
        return 2
    try:
        if args.metric not in storage.metrics():
            _error(
                "query",
                f"unknown metric {args.metric!r} in {data_dir} "
                "(list them with: statsyard series)",
            )
            return 1
        result = storage.query(
            args.metric,
            entity=args.entity,
            start=start,
            end=end,
            step=step,
            agg=args.agg,
        )
    except ValueError as exc:
        _error("query", str(exc))
        return 2
    finally:
        storage.close()
    _print_result(args.metric, result, args.format)
    return 0


def _print_result(
    metric: str, result: dict[str, list[tuple[int, int | float]]], form: str
) -> None:
    out = sys.stdout
    if form == "json":
        json.dump(
            {
                "metric": metric,
                "series": {e: [list(p) for p in v] for e, v in result.items()},
            },
            out,
        )
        out.write("\n")
        return
    rows = [
        (entity, timestamp, value)
        for entity in sorted(result)
        for timestamp, value in result[entity]
    ]
    if form == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["metric", "entity", "timestamp_ms", "time", "value"])
        for entity, timestamp, value in rows:
            writer.writerow([metric, entity, timestamp, _iso(timestamp), repr(value)])
        return
    width = max([len("ENTITY"), *(len(entity) for entity, _, _ in rows)])
    out.write(f"{'ENTITY':<{width}}  {'TIME':<24}  VALUE\n")
    for entity, timestamp, value in rows:
        out.write(f"{entity:<{width}}  {_iso(timestamp):<24}  {value!r}\n")


def run_series(args: argparse.Namespace) -> int:
    """Run ``series``: print ``metric<TAB>entity`` per matching series."""
    storage = _open("series", args.data_dir or DEFAULT_DATA_DIR)
    if storage is None:
        return 2
    try:
        found = storage.series(args.pattern)
    except ValueError as exc:
        _error("series", str(exc))
        return 2
    finally:
        storage.close()
    for metric, entity in found:
        sys.stdout.write(f"{metric}\t{entity}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m statsyard.query_cli query|series ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m statsyard.query_cli",
        description="Read a StatsYard data directory.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_query_arguments(commands.add_parser("query", help="print a metric's points"))
    add_series_arguments(commands.add_parser("series", help="list stored series"))
    args = parser.parse_args(argv)
    if args.command == "query":
        return run_query(args)
    return run_series(args)


if __name__ == "__main__":
    sys.exit(main())
