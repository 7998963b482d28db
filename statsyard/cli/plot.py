"""The ``plot`` command: draw render targets from a data directory to a file.

``statsyard plot TARGET... -o FILE.png [--from -1d] [--until now]`` evaluates
graphite-web targets with the render engine over the directory opened
read-only (a running service may be writing it) and draws them as
``/render?format=png`` does (:mod:`statsyard.render.plot`). The format
follows the file's suffix (``.png`` or ``.svg``) unless ``--format`` says.
Errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from statsyard.datapoint import now_ms as current_ms
from statsyard.exceptions import StatsYardError

if TYPE_CHECKING:
    from statsyard.config import Config

__all__ = ["add_plot_arguments", "run_plot"]


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``plot TARGET... -o FILE`` to ``parser``.

    ``--from -1h`` reaches argparse as ``--from=-1h``
    (:func:`statsyard.cli.query.join_dash_values`), argparse's public form
    for a value that starts with ``-``.
    """
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="render targets")
    parser.add_argument(
        "-o", "--output", required=True, help="the picture to write (.png or .svg)"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the data directory (default: storage.data_dir of the configuration)",
    )
    parser.add_argument("--from", dest="start", default="-1d", help="default -1d")
    parser.add_argument("--until", dest="end", default="now", help="default now")
    parser.add_argument("--format", choices=("png", "svg"), default=None)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=400)
    parser.add_argument("--title", default="")
    parser.add_argument("--vtitle", default="")
    parser.add_argument("--y-min", type=float, default=None)
    parser.add_argument("--y-max", type=float, default=None)
    parser.add_argument("--line-width", type=float, default=1.2)
    parser.add_argument(
        "--area-mode", choices=("none", "first", "all", "stacked"), default="none"
    )


def run_plot(args: argparse.Namespace, config: Config) -> int:
    """Evaluate the targets and write the picture; returns the exit status."""
    from statsyard.render import RenderSettings, StorageSource, evaluate
    from statsyard.render.plot import PlotOptions, draw
    from statsyard.storage import Storage
    from statsyard.timeparse import parse_time

    output = Path(args.output)
    fmt = args.format or output.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg"):
        print(
            f"statsyard plot: cannot tell the format of {output}: "
            "use a .png or .svg name, or --format",
            file=sys.stderr,
        )
        return 2
    data_dir = args.data_dir or config.storage.data_dir
    now = current_ms()
    try:
        start_ms = parse_time(args.start, now_ms=now)
        end_ms = parse_time(args.end, now_ms=now)
        options = PlotOptions(
            width=args.width,
            height=args.height,
            title=args.title,
            vtitle=args.vtitle,
            start=start_ms // 1000,
            end=end_ms // 1000,
            y_min=args.y_min,
            y_max=args.y_max,
            line_width=args.line_width,
            area_mode=args.area_mode,
        )
        with Storage.open_readonly(data_dir) as storage:
            series = evaluate(
                args.targets,
                start_ms=start_ms,
                end_ms=end_ms,
                now_ms=now,
                source=StorageSource(storage),
                settings=RenderSettings.from_config(config),
            )
        picture = draw(series, options, fmt=fmt)
    except (StatsYardError, ValueError) as error:
        print(f"statsyard plot: {error}", file=sys.stderr)
        return 2
    try:
        output.write_bytes(picture)
    except OSError as error:
        print(f"statsyard plot: cannot write {output}: {error}", file=sys.stderr)
        return 2
    print(f"{output}: {len(series)} series, {len(picture)} bytes", file=sys.stderr)
    return 0
