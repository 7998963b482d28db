"""``python -m statsyard``: the service, its configuration, stress runs, queries.

Subcommands: ``run`` (the default), ``config``, ``stress N``, ``query``,
``series``, ``check`` and ``plot``. Each takes ``--config PATH``, ``--log-level``,
``--log-format`` and ``--debug``, plus the settings (``--<section>-<key>``,
see ``docs/service.md``) that apply to it. Options are never abbreviated.

Exit status: 0 success; 1 the command ran and failed (the service could not
start or stopped by itself, an unknown metric, a damaged data directory, an
unbalanced stress run, an unexpected error); 2 a usage or configuration
error; 128 + N after a second signal N. No traceback reaches stderr unless
``--debug`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
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
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "SignalGate",
    "build_parser",
    "build_yard",
    "configure_logging",
    "main",
    "run_service",
]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
"""The command did what was asked."""
EXIT_FAILED: Final = 1
"""The command ran and failed (or found damage); the message says why."""
EXIT_USAGE: Final = 2
"""Bad arguments or configuration: nothing was started."""

GRAPHITE: Final = "graphite"
LOG_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
STOP_SIGNALS: Final = frozenset({signal.SIGINT, signal.SIGTERM})

_TOP_LEVEL: Final = frozenset({"-h", "--help", "--version"})


def version() -> str:
    """The installed StatsYard version."""
    try:
        return metadata.version("statsyard")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


@contextlib.contextmanager
def configure_logging(level: str, form: str = "text") -> Iterator[None]:
    """Send logs to stderr, one line per event, for the ``with`` block.

    Args:
        level: the lowest level logged.
        form: ``text`` (a readable line) or ``json`` (one JSON object per
            line, see :mod:`statsyard._jsonlog`).

    The handler and the root level are restored afterwards, so that calling
    :func:`main` in-process (tests, embedding) leaves logging as it was.
    """
    from statsyard._jsonlog import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if form == "json" else logging.Formatter(LOG_FORMAT)
    )
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


class _Parser(argparse.ArgumentParser):
    """argparse with abbreviations off; every subcommand parser inherits it.

    ``--form`` is not ``--format``: an abbreviation silently reads a typo as
    another option.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.commands: argparse.Action | None = None
        """The subcommands' action, once :func:`build_parser` has made it."""

    @property
    def command_names(self) -> list[str]:
        """Every subcommand added so far."""
        if self.commands is None or self.commands.choices is None:
            return []
        return [str(name) for name in self.commands.choices]


def _common_parent() -> _Parser:
    """Options of every subcommand: config file, logging, --debug."""
    parent = _Parser(add_help=False)
    general = parent.add_argument_group("general")
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
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (logging.level)",
    )
    general.add_argument(
        "--log-format",
        dest="set:logging.format",
        metavar="FORMAT",
        default=argparse.SUPPRESS,
        help="text, or json: one JSON object per line (logging.format)",
    )
    general.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an unexpected error",
    )
    return parent


def _settings_parent(
    keep: Callable[[str, str], bool], title: str = "settings"
) -> _Parser:
    """One flag per setting that ``keep(section, key)`` selects."""
    parent = _Parser(add_help=False)
    settings = parent.add_argument_group(
        title, "each overrides the file and STATSYARD_<SECTION>_<KEY>"
    )
    for section, key, setting in setting_names():
        if keep(section, key) and section != "logging":  # in _common_parent
            settings.add_argument(
                flag_name(section, key),
                dest=f"set:{section}.{key}",
                metavar=key.upper(),
                default=argparse.SUPPRESS,
                help=setting.help,
            )
    return parent


def _every_setting(section: str, key: str) -> bool:
    return True


def _stress_settings(section: str, key: str) -> bool:
    # The stress run writes to its own directory, without listener or shipper.
    return section == "pipeline" or (section == "storage" and key != "data_dir")


def build_parser() -> _Parser:
    """The full command-line parser (one subparser per command)."""
    common = _common_parent()
    service = _settings_parent(_every_setting, "service settings")
    parser = _Parser(
        prog="statsyard",
        description="StatsYard: a small supervised time-series engine. "
        "Without a command, runs the service. "
        "`statsyard COMMAND --help` lists a command's own options.",
    )
    parser.add_argument("--version", action="version", version=f"statsyard {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = commands
    commands.add_parser(
        "run",
        parents=[common, service],
        help="run the service in the foreground (default)",
        description="Run the service until SIGINT or SIGTERM.",
    )
    commands.add_parser(
        "config",
        parents=[common, service],
        help="print the effective configuration and where each value came from",
        description="Print the effective configuration as TOML, with sources.",
    )
    from statsyard.stress import add_stress_arguments

    add_stress_arguments(
        commands.add_parser(
            "stress",
            parents=[common, _settings_parent(_stress_settings)],
            help="push N generated points through a full pipeline and report",
            description="Push N generated points through a full embedded "
            "pipeline and report the rate, latencies and bytes.",
        )
    )
    query_cli.add_query_arguments(
        commands.add_parser(
            "query",
            parents=[common],
            help="read points back",
            description="Print a metric's points from a data directory.",
        )
    )
    query_cli.add_series_arguments(
        commands.add_parser(
            "series",
            parents=[common],
            help="list stored series",
            description="List the stored series of a data directory.",
        )
    )
    from statsyard.check import add_check_arguments

    add_check_arguments(
        commands.add_parser(
            "check",
            parents=[common],
            help="report on a data directory (read-only); exit 1 on damage",
            description="Read a data directory without changing it and report "
            "its files, points, series, damaged records and compaction state. "
            "Exit status 1 if anything is damaged.",
        )
    )
    from statsyard.plot_cli import add_plot_arguments

    add_plot_arguments(
        commands.add_parser(
            "plot",
            parents=[common],
            help="draw render targets to a PNG or SVG file",
            description="Draw render targets from a data directory to PNG or SVG.",
        )
    )
    return parser


def prepare_argv(argv: Sequence[str], commands: Iterable[str]) -> list[str]:
    """The arguments as argparse should see them.

    - no command (``statsyard --graphite-tcp-port 0``) means ``run``;
    - an unknown command is a usage error with a "did you mean";
    - ``--from -1w`` becomes ``--from=-1w`` (:func:`query_cli.join_dash_values`).

    Raises:
        ConfigError: the command is unknown.
    """
    args = list(argv)
    names = list(commands)
    if not args or (args[0].startswith("-") and args[0] not in _TOP_LEVEL):
        args.insert(0, "run")
    elif not args[0].startswith("-") and args[0] not in names:
        close = difflib.get_close_matches(args[0], names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            [f"unknown command {args[0]!r}{hint}; commands: {', '.join(names)}"]
        )
    return query_cli.join_dash_values(args)


def _flags(args: argparse.Namespace) -> dict[str, str]:
    return {
        dest[len("set:") :]: value
        for dest, value in vars(args).items()
        if dest.startswith("set:")
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    given = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in given
    try:
        status = _main(given)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``statsyard query ... | head``). As Python's
        # documentation of SIGPIPE advises: point stdout at devnull so that
        # the interpreter's final flush does not fail again, exit with 1.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        if debug:
            raise
        print("statsyard: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as error:  # deliberate: one line for the user, not a traceback
        if debug:
            raise
        print(
            f"statsyard: error: {type(error).__name__}: {error} "
            "(--debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return status


def _main(given: list[str]) -> int:
    parser = build_parser()
    try:
        argv = prepare_argv(given, parser.command_names)
    except ConfigError as error:
        parser.print_usage(sys.stderr)
        print(f"statsyard: error: {error.problems[0]}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None), flags=_flags(args))
    except ConfigError as error:
        print(f"statsyard: {error}", file=sys.stderr)
        return EXIT_USAGE
    with configure_logging(config.logging.level, config.logging.format):
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
    if command == "plot":
        from statsyard.plot_cli import run_plot

        return run_plot(args, config)
    if command in ("query", "series"):
        if args.data_dir is None:
            # No --data-dir: read where the service writes (--config, env, flags).
            args.data_dir = config.storage.data_dir
        if command == "query":
            return query_cli.run_query(args)
        return query_cli.run_series(args)
    if command == "check":
        from statsyard.check import run_check

        return run_check(args, config.storage.data_dir)
    with tuned_gc_for_ingest():
        return run_service(config, debug=getattr(args, "debug", False))


# -- the service ---------------------------------------------------------------


def storage_options(config: Config) -> dict[str, Any]:
    """The Storage.open() options of a configuration."""
    age = config.storage.retention_max_age
    return {
        "segment_bytes": config.storage.segment_bytes,
        "retention_max_age_ms": None if age is None else round(age * 1000),
        "retention_max_bytes": config.storage.retention_max_bytes,
        "max_series": config.storage.max_series,
        "max_new_series_per_minute": config.storage.max_new_series_per_minute,
    }


def _http_options(config: Config) -> Any:
    """The HTTP API's options, or False when ``[http] enabled`` is off."""
    if not config.http.enabled:
        return False
    from statsyard.http import HttpOptions
    from statsyard.render import RenderSettings

    return HttpOptions(
        host=config.http.host,
        port=config.http.port,
        threads=config.http.threads,
        default_entity=config.graphite.default_entity,
        render=RenderSettings.from_config(config),
    )


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
        "forward": config.forward,
        "http": _http_options(config),
    }
    options.update(overrides)
    data_dir = options.pop("data_dir", config.storage.data_dir)
    return StatsYard(data_dir, **options)


class SignalGate:
    """What the service does with SIGINT/SIGTERM: the first stops, the second exits now.

    Signals are not handled by Python handlers (which run only when the main
    thread runs bytecode, and the kernel may deliver a process signal to any
    thread): :func:`run_service` blocks them in every thread and takes them
    with :func:`signal.sigtimedwait`, then calls the gate.

    Args:
        hard_exit: called with ``128 + signal`` on the second signal
            (default :func:`os._exit`: no cleanup, no draining).
    """

    def __init__(self, hard_exit: Callable[[int], object] = os._exit) -> None:
        self.stop = threading.Event()
        self.received: list[int] = []
        self._hard_exit = hard_exit

    def __call__(self, signum: int) -> None:
        """Handle one signal."""
        if self.received:
            os.write(2, b"statsyard: second signal, exiting now without draining\n")
            self._hard_exit(128 + signum)
            return
        self.received.append(signum)
        self.stop.set()


_WAIT_SLICE_S: Final = 1.0
"""How long the main thread waits for a signal before looking at the tree."""
_SECOND_SLICE_S: Final = 0.1
"""The same for the thread that takes a second signal while the tree stops."""


def _take_signals(gate: SignalGate, until: threading.Event, slice_s: float) -> None:
    """Wait for blocked stop signals and hand them to ``gate`` until ``until``."""
    while not until.is_set():
        info = signal.sigtimedwait(STOP_SIGNALS, slice_s)
        if info is not None:
            gate(info.si_signo)


def _start_failure(error: BaseException, config: Config) -> str:
    """One line saying why the service could not start, naming the port or path."""
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.strerror or error}: {error.filename}"
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    failed = cause if isinstance(cause, OSError) else error
    if (
        getattr(error, "child_id", None) == GRAPHITE
        and isinstance(failed, OSError)
        and config.graphite.enabled
    ):
        graphite = config.graphite
        text += (
            f" (the Graphite listener binds tcp {graphite.host}:{graphite.tcp_port} "
            f"and udp {graphite.host}:{graphite.udp_port}; "
            "graphite.tcp_port, graphite.udp_port)"
        )
    return text


class _HoldErrors(logging.Filter):
    """Holds back ERROR records while the tree starts.

    A child that fails to start is reported by Pykka (with a traceback) and
    by the supervisor, then raised by :meth:`StatsYard.start`; the service
    reports it once, in one line. If the start succeeds, the held records
    are logged after all; with ``--debug`` they always are.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.held.append(record)
            return False
        return True

    @contextlib.contextmanager
    def on_root_handlers(self) -> Iterator[None]:
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:
            handler.addFilter(self)
        try:
            yield
        finally:
            for handler in handlers:
                handler.removeFilter(self)

    def release(self) -> None:
        held, self.held = self.held, []
        for record in held:
            logging.getLogger(record.name).handle(record)


def run_service(config: Config, *, debug: bool = False) -> int:
    """Run StatsYard in the foreground until SIGINT or SIGTERM; returns the exit status.

    The first signal stops input, drains the queue, writes and fsyncs
    everything accepted, ships a last round of metrics and stops the tree in
    reverse order. A second signal exits at once with status 128 + signal.

    SIGINT and SIGTERM are blocked before any thread starts, so every thread
    the tree starts inherits the mask and the kernel keeps them pending until
    this (main) thread takes them with :func:`signal.sigtimedwait`: a signal
    is never delivered to a worker thread where no handler would run. While
    the tree stops, a small thread takes a second signal the same way.

    A start-up failure (a busy port, a data directory in use or not a
    directory) is one CRITICAL line and exit status 1; ``debug`` also shows
    the errors and tracebacks the children logged on the way.
    """
    from statsyard.exceptions import StatsYardError

    gate = SignalGate()
    stop = gate.stop
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        hold = _HoldErrors()
        try:
            with hold.on_root_handlers():
                yard = build_yard(config, on_exit=lambda _exit: stop.set())
                yard.start()
        except (StatsYardError, OSError) as error:
            if debug:
                hold.release()
            logger.critical(
                "StatsYard could not start: %s", _start_failure(error, config)
            )
            return EXIT_FAILED
        except BaseException:
            hold.release()
            raise
        hold.release()
        logger.info(
            "StatsYard running (data in %s); SIGINT or SIGTERM stops it",
            config.storage.data_dir,
        )
        _take_signals(gate, stop, _WAIT_SLICE_S)
        gave_up = yard.wait_stopped(0)
        stopped = threading.Event()
        second = threading.Thread(
            target=_take_signals,
            args=(gate, stopped, _SECOND_SLICE_S),
            name="statsyard-second-signal",
            daemon=True,
        )
        second.start()
        try:
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
        finally:
            stopped.set()
            second.join(_SECOND_SLICE_S + 1.0)
        logger.info(
            "Summary: %d points accepted, %d written, %d invalid, %d lost",
            counts.pushed,
            counts.written,
            counts.invalid,
            counts.lost,
        )
        if gave_up is not None and gave_up.gave_up:
            logger.critical("StatsYard stopped by itself: %s", gave_up.reason)
            return EXIT_FAILED
        return EXIT_OK
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
