"""The ``query`` and ``series`` commands: read a data directory directly.

The service's argument parser calls :func:`add_query_arguments` /
:func:`run_query` and :func:`add_series_arguments` / :func:`run_series`;
``python -m statsyard.cli.query query|series ...`` runs them standalone. Both
open the directory read-only, so they work whether or not a service is
writing to it. Results go to stdout; errors go to stderr with exit status 2
(bad arguments, not a data directory) or 1 (unknown metric).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from statsyard.datapoint import now_ms as current_ms
from statsyard.exceptions import CorruptRecordError, NotADataDirectoryError
from statsyard.storage import AGGREGATES, Storage
from statsyard.timeparse import parse_offset_ms, parse_time

__all__ = [
    "add_query_arguments",
    "add_series_arguments",
    "join_dash_values",
    "main",
    "parse_step",
    "parse_time",
    "run_query",
    "run_series",
]

DEFAULT_DATA_DIR: Final = "./statsyard-data"
"""The data directory used when ``--data-dir`` is not given (the service's default)."""

DASH_VALUE_OPTIONS: Final = frozenset({"--from", "--until"})
"""Options whose value may start with ``-`` (``--from -1w``)."""


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--from -1w`` as ``--from=-1w``, argparse's own form for such values.

    argparse reads a token like ``-1w`` as an unknown option, so a time
    option and a following value that starts with ``-`` are joined first.
    """
    joined: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if (
            token in DASH_VALUE_OPTIONS
            and index + 1 < len(argv)
            and argv[index + 1].startswith("-")
        ):
            joined.append(f"{token}={argv[index + 1]}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


def parse_step(text: str) -> int:
    """A step in ms: ``60s``, ``5min`` or ``5m``, ``1h``, ``1d``, ``1w``, ``500ms``.

    Raises:
        ValueError: not one of these forms, or not positive.
    """
    value = text.strip()
    if value.isdigit():
        step = int(value)
    else:
        try:
            step = parse_offset_ms(value)
        except ValueError:
            raise ValueError(
                f"bad step {text!r}: expected e.g. 60s, 5min, 1h, 1d, 1w, 500ms "
                "or an int of ms"
            ) from None
    if step <= 0:
        raise ValueError(f"bad step {text!r}: must be positive")
    return step


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the data directory (default: storage.data_dir of the "
        "configuration, from --config or STATSYARD_STORAGE_DATA_DIR; else "
        f"{DEFAULT_DATA_DIR})",
    )


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``query METRIC ...`` to ``parser``.

    ``--from -1w`` needs :func:`join_dash_values` on the arguments first.
    """
    parser.add_argument("metric", help="the metric name, e.g. cpu.load")
    _add_data_dir(parser)
    parser.add_argument("--entity", help="only this entity (default: all)")
    parser.add_argument(
        "--from",
        dest="from_",
        metavar="T",
        help="start, included: graphite-web's forms (-1w, -2d, -1h, now-30min, "
        "HH:MM_YYYYMMDD, YYYYMMDD, midnight, yesterday), epoch seconds or "
        "ISO 8601; default: the first point",
    )
    parser.add_argument(
        "--until", metavar="T", help="end, excluded (same forms); default: the last"
    )
    parser.add_argument(
        "--step", metavar="S", help="downsample into buckets: 60s, 5min, 1h, 1d or ms"
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


def _open(
    command: str, data_dir: str, series: list[tuple[str, str | None]] | None = None
) -> Storage | None:
    try:
        return Storage.open_readonly(data_dir, series=series)
    except (NotADataDirectoryError, CorruptRecordError, OSError) as exc:
        _error(command, str(exc))
        return None


def _metric_known(
    storage: Storage, data_dir: str, metric: str, entity: str | None
) -> bool:
    """Whether ``metric`` is stored, with any entity.

    ``storage`` holds only the series asked for: when that is one entity of
    the metric and it is absent, the metric may still have others.
    """
    if metric in storage.metrics():
        return True
    if entity is None:
        return False
    every = Storage.open_readonly(data_dir, series=[(metric, None)])
    try:
        return metric in every.metrics()
    finally:
        every.close()


def _iso(timestamp_ms: int) -> str:
    try:  # storage range-checks what it reads; this only guards the display
        moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp_ms} ms"
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
    # Only the series asked for: their blocks and points, not every index's.
    storage = _open("query", data_dir, [(args.metric, args.entity)])
    if storage is None:
        return 2
    try:
        if not _metric_known(storage, data_dir, args.metric, args.entity):
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
        import json  # each format's module only when asked for

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
        import csv

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
    """Standalone entry: ``python -m statsyard.cli.query query|series ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m statsyard.cli.query",
        description="Read a StatsYard data directory.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_query_arguments(commands.add_parser("query", help="print a metric's points"))
    add_series_arguments(commands.add_parser("series", help="list stored series"))
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    if args.command == "query":
        return run_query(args)
    return run_series(args)


if __name__ == "__main__":
    sys.exit(main())
