"""``python -m statsyard``: the service, its configuration, the stress run and queries.

Subcommands: ``run`` (the default), ``config``, ``stress N``, ``query`` and
``series``. Every subcommand takes ``--config PATH``, ``--log-level`` and a
flag for every setting (``--<section>-<key>``, see ``docs/service.md``).
A configuration error exits with status 2 and names every bad setting.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from statsyard import query_cli
from statsyard.config import (
    Config,
    flag_name,
    load_config,
    render_config,
    setting_names,
)
from statsyard.exceptions import ConfigError

if TYPE_CHECKING:
    from statsyard.app import StatsYard

__all__ = [
    "SignalGate",
    "build_parser",
    "build_yard",
    "configure_logging",
    "main",
    "run_service",
]

logger = logging.getLogger(__name__)

GRAPHITE: Final = "graphite"
LOG_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"


@contextlib.contextmanager
def configure_logging(level: str) -> Iterator[None]:
    """Send logs to stderr in a readable one-line format, for the ``with`` block.

    The handler and the root level are restored afterwards, so that calling
    :func:`main` in-process (tests, embedding) leaves logging as it was.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def _settings_parent() -> argparse.ArgumentParser:
    """Options shared by every subcommand: config file, log level, one per setting."""
    parent = argparse.ArgumentParser(add_help=False)
    general = parent.add_argument_group("configuration")
    general.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="TOML configuration file (see etc/statsyard.toml)",
    )
    general.add_argument(
        "--log-level",
        dest="set:logging.level",
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (same as --logging-level)",
    )
    settings = parent.add_argument_group(
        "settings", "each overrides the file and STATSYARD_<SECTION>_<KEY>"
    )
    for section, key, setting in setting_names():
        settings.add_argument(
            flag_name(section, key),
            dest=f"set:{section}.{key}",
            metavar=key.upper(),
            default=argparse.SUPPRESS,
            help=setting.help,
        )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    parent = _settings_parent()
    parser = argparse.ArgumentParser(
        prog="statsyard",
        usage="statsyard [COMMAND] [--config PATH] [--log-level LEVEL] "
        "[--SECTION-KEY VALUE ...]",
        description="StatsYard: a small supervised time-series engine.",
        parents=[parent],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "run", parents=[parent], help="run the service in the foreground (default)"
    )
    commands.add_parser(
        "config",
        parents=[parent],
        help="print the effective configuration and where each value came from",
    )
    from statsyard.stress import add_stress_arguments

    add_stress_arguments(
        commands.add_parser(
            "stress",
            parents=[parent],
            help="push N generated points through a full pipeline and report",
        )
    )
    query_cli.add_query_arguments(
        commands.add_parser("query", parents=[parent], help="read points back")
    )
    query_cli.add_series_arguments(
        commands.add_parser("series", parents=[parent], help="list stored series")
    )
    return parser


def _flags(args: argparse.Namespace) -> dict[str, str]:
    return {
        dest[len("set:") :]: value
        for dest, value in vars(args).items()
        if dest.startswith("set:")
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        config = load_config(getattr(args, "config", None), flags=_flags(args))
    except ConfigError as error:
        print(f"statsyard: {error}", file=sys.stderr)
        return 2
    with configure_logging(config.logging.level):
        return _dispatch(args, config)


@contextlib.contextmanager
def tuned_gc_for_ingest() -> Iterator[None]:
    """Make the cyclic garbage collector cheaper while this process ingests.

    Every point in flight is a freshly allocated object, so the default
    threshold (a collection every 700 allocations) spends a large share of
    ingest time scanning objects that are never garbage. The service and the
    stress run own their process, so they collect less often and freeze what
    start-up allocated. An embedding host decides this for itself. The
    previous settings come back on exit.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    command: str = args.command or "run"
    if command == "config":
        sys.stdout.write(render_config(config))
        return 0
    if command == "stress":
        from statsyard.stress import run_stress

        with tuned_gc_for_ingest():
            return run_stress(args, config)
    if command in ("query", "series"):
        if args.data_dir is None:
            # No --data-dir: read where the service writes (--config, env, flags).
            args.data_dir = config.storage.data_dir
        if command == "query":
            return query_cli.run_query(args)
        return query_cli.run_series(args)
    with tuned_gc_for_ingest():
        return run_service(config)


# -- the service ---------------------------------------------------------------


def storage_options(config: Config) -> dict[str, Any]:
    """The Storage.open() options of a configuration."""
    age = config.storage.retention_max_age
    return {
        "segment_bytes": config.storage.segment_bytes,
        "retention_max_age_ms": None if age is None else round(age * 1000),
        "retention_max_bytes": config.storage.retention_max_bytes,
    }


def build_yard(config: Config, **overrides: Any) -> StatsYard:
    """A StatsYard (not started) configured from ``config``, with its children."""
    from statsyard.app import StatsYard

    options: dict[str, Any] = {
        "queue_capacity": config.pipeline.queue_capacity,
        "batch_size": config.pipeline.batch_size,
        "fsync": config.storage.fsync,
        "fsync_interval": config.storage.fsync_interval,
        "max_restarts": config.pipeline.max_restarts,
        "max_seconds": config.pipeline.max_seconds,
        "storage_options": storage_options(config),
        "graphite": config.graphite,
        "ship_metrics": config.metrics.enabled,
        "statsd_host": config.metrics.host,
        "statsd_port": config.metrics.port,
        "metrics_namespace": config.metrics.namespace,
        "metrics_tags": config.metrics.tags,
        "ship_interval": config.metrics.interval,
        "process_stats": config.metrics.process_stats,
    }
    options.update(overrides)
    data_dir = options.pop("data_dir", config.storage.data_dir)
    return StatsYard(data_dir, **options)


class SignalGate:
    """The service's SIGINT/SIGTERM handler: the first stops, the second exits now.

    Args:
        hard_exit: called with ``128 + signal`` on the second signal
            (default :func:`os._exit`: no cleanup, no draining).
    """

    def __init__(self, hard_exit: Callable[[int], object] = os._exit) -> None:
        self.stop = threading.Event()
        self.received: list[int] = []
        self._hard_exit = hard_exit

    def __call__(self, signum: int, frame: FrameType | None = None) -> None:
        """Handle one signal (runs in the main thread)."""
        if self.received:
            os.write(2, b"statsyard: second signal, exiting now without draining\n")
            self._hard_exit(128 + signum)
            return
        self.received.append(signum)
        self.stop.set()


def run_service(config: Config) -> int:
    """Run StatsYard in the foreground until SIGINT or SIGTERM; returns the exit status.

    The first signal stops input, drains the queue, writes and fsyncs
    everything accepted, ships a last round of metrics and stops the tree in
    reverse order. A second signal exits at once with status 128 + signal.
    """
    gate = SignalGate()
    stop = gate.stop
    previous = {
        sig: signal.signal(sig, gate) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            yard = build_yard(config, on_exit=lambda _exit: stop.set())
            yard.start()
        except Exception as error:  # noqa: BLE001 (deliberate: a failed start in one line)
            logger.critical("StatsYard could not start: %s", error)
            return 1
        logger.info(
            "StatsYard running (data in %s); SIGINT or SIGTERM stops it",
            config.storage.data_dir,
        )
        stop.wait()
        gave_up = yard.wait_stopped(0)
        if gate.received:
            logger.info(
                "Received %s: stopping input, draining the queue",
                signal.Signals(gate.received[0]).name,
            )
            if config.graphite.enabled and gave_up is None:
                try:
                    yard.supervisor.terminate_child(GRAPHITE).get(timeout=15.0)
                except Exception as error:  # noqa: BLE001 (deliberate: drain regardless)
                    logger.error("Could not stop the Graphite listener: %s", error)
        counts = yard.stop()
        logger.info(
            "Summary: %d points accepted, %d written, %d invalid, %d lost",
            counts.pushed,
            counts.written,
            counts.invalid,
            counts.lost,
        )
        if gave_up is not None and gave_up.gave_up:
            logger.critical("StatsYard stopped by itself: %s", gave_up.reason)
            return 1
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
