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
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from statsyard.cli import query as query_cli
from statsyard.cli.service import (
    EXIT_FAILED,
    EXIT_OK,
    SignalGate,
    run_service,
    tuned_gc_for_ingest,
)
from statsyard.exceptions import ConfigError

if TYPE_CHECKING:
    from statsyard.config import Config

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "SignalGate",
    "build_parser",
    "configure_logging",
    "main",
    "run_service",
]

logger = logging.getLogger(__name__)

EXIT_USAGE: Final = 2
"""Bad arguments or configuration: nothing was started."""

LOG_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"

_TOP_LEVEL: Final = frozenset({"-h", "--help", "--version"})


def version() -> str:
    """The installed StatsYard version."""
    from importlib import metadata  # some 15 ms, for --version only

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
            line, see :mod:`statsyard.cli._jsonlog`).

    The handler and the root level are restored afterwards, so that calling
    :func:`main` in-process (tests, embedding) leaves logging as it was.
    """
    from statsyard.cli._jsonlog import JsonFormatter

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
    from statsyard.config import flag_name, setting_names

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


class _VersionAction(argparse.Action):
    """``--version``, looking the version up only when asked (it costs 15 ms)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(f"statsyard {version()}")
        parser.exit()


def _add_run(commands: Any, common: _Parser) -> None:
    service = _settings_parent(_every_setting, "service settings")
    commands.add_parser(
        "run",
        parents=[common, service],
        help=_HELP["run"],
        description="Run the service until SIGINT or SIGTERM.",
    )


def _add_config(commands: Any, common: _Parser) -> None:
    service = _settings_parent(_every_setting, "service settings")
    commands.add_parser(
        "config",
        parents=[common, service],
        help=_HELP["config"],
        description="Print the effective configuration as TOML, with sources.",
    )


def _add_stress(commands: Any, common: _Parser) -> None:
    from statsyard.cli.stress import add_stress_arguments

    add_stress_arguments(
        commands.add_parser(
            "stress",
            parents=[common, _settings_parent(_stress_settings)],
            help=_HELP["stress"],
            description="Push N generated points through a full embedded "
            "pipeline and report the rate, latencies and bytes.",
        )
    )


def _add_query(commands: Any, common: _Parser) -> None:
    query_cli.add_query_arguments(
        commands.add_parser(
            "query",
            parents=[common],
            help=_HELP["query"],
            description="Print a metric's points from a data directory.",
        )
    )


def _add_series(commands: Any, common: _Parser) -> None:
    query_cli.add_series_arguments(
        commands.add_parser(
            "series",
            parents=[common],
            help=_HELP["series"],
            description="List the stored series of a data directory.",
        )
    )


def _add_check(commands: Any, common: _Parser) -> None:
    from statsyard.cli.check import add_check_arguments

    add_check_arguments(
        commands.add_parser(
            "check",
            parents=[common],
            help=_HELP["check"],
            description="Read a data directory without changing it and report "
            "its files, points, series, damaged records and compaction state. "
            "Exit status 1 if anything is damaged.",
        )
    )


def _add_plot(commands: Any, common: _Parser) -> None:
    from statsyard.cli.plot import add_plot_arguments

    add_plot_arguments(
        commands.add_parser(
            "plot",
            parents=[common],
            help=_HELP["plot"],
            description="Draw render targets from a data directory to PNG or SVG.",
        )
    )


_HELP: Final = {
    "run": "run the service in the foreground (default)",
    "config": "print the effective configuration and where each value came from",
    "stress": "push N generated points through a full pipeline and report",
    "query": "read points back",
    "series": "list stored series",
    "check": "report on a data directory (read-only); exit 1 on damage",
    "plot": "draw render targets to a PNG or SVG file",
}
"""Every subcommand, in the order ``--help`` lists them, with its line there."""

_ADD_COMMAND: Final[dict[str, Callable[[Any, _Parser], None]]] = {
    "run": _add_run,
    "config": _add_config,
    "stress": _add_stress,
    "query": _add_query,
    "series": _add_series,
    "check": _add_check,
    "plot": _add_plot,
}


def build_parser(command: str | None = None) -> _Parser:
    """The command-line parser (one subparser per command).

    Args:
        command: build only this subcommand's options; the others are
            listed bare (their name and help line). Building them all (a
            flag per setting for ``run``, ``config`` and ``stress``) costs
            a read command some 15 ms of its start. None builds every one.
    """
    common = _common_parent()
    parser = _Parser(
        prog="statsyard",
        description="StatsYard: a small supervised time-series engine. "
        "Without a command, runs the service. "
        "`statsyard COMMAND --help` lists a command's own options.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="show program's version number and exit",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = commands
    for name, add in _ADD_COMMAND.items():
        if command is None or name == command:
            add(commands, common)
        else:
            commands.add_parser(name, help=_HELP[name])
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
        import difflib  # only to suggest a command

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
    try:
        argv = prepare_argv(given, _HELP)
    except ConfigError as error:
        build_parser().print_usage(sys.stderr)
        print(f"statsyard: error: {error.problems[0]}", file=sys.stderr)
        return EXIT_USAGE
    # Only the command run needs its options built.
    command = argv[0] if argv and argv[0] in _HELP else None
    args = build_parser(command).parse_args(argv)
    if _reads_without_configuration(args):
        level, form = READ_LOGGING
        with configure_logging(level, form):
            if args.command == "query":
                return query_cli.run_query(args)
            return query_cli.run_series(args)
    from statsyard.config import load_config

    try:
        config = load_config(getattr(args, "config", None), flags=_flags(args))
    except ConfigError as error:
        print(f"statsyard: {error}", file=sys.stderr)
        return EXIT_USAGE
    with configure_logging(config.logging.level, config.logging.format):
        return _dispatch(args, config)


READ_LOGGING: Final = ("INFO", "text")
"""``[logging] level`` and ``format`` by default (``LoggingConfig``'s; a
test keeps them equal), for a read command that loads no configuration."""

_ENV_PREFIX: Final = "STATSYARD_"
"""What the configuration reads from the environment (``ENV_PREFIX``)."""


def _reads_without_configuration(args: argparse.Namespace) -> bool:
    """Whether a ``query`` or ``series`` needs no configuration loaded.

    So when ``--data-dir`` is given and nothing could set a value (no
    ``--config``, no setting flag, no ``STATSYARD_*`` variable): the
    configuration would be its defaults, and loading it (attrs classes for
    every section, the forwarding and Graphite schemas) costs a read some
    15 ms of its start. Anything given loads and checks it as before.
    """
    return (
        args.command in ("query", "series")
        and args.data_dir is not None
        and getattr(args, "config", None) is None
        and not _flags(args)
        and not any(name.upper().startswith(_ENV_PREFIX) for name in os.environ)
    )


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    command: str = args.command or "run"
    if command == "config":
        from statsyard.config import render_config

        sys.stdout.write(render_config(config))
        return 0
    if command == "stress":
        from statsyard.cli.stress import run_stress

        with tuned_gc_for_ingest():
            return run_stress(args, config)
    if command == "plot":
        from statsyard.cli.plot import run_plot

        return run_plot(args, config)
    if command in ("query", "series"):
        if args.data_dir is None:
            # No --data-dir: read where the service writes (--config, env, flags).
            args.data_dir = config.storage.data_dir
        if command == "query":
            return query_cli.run_query(args)
        return query_cli.run_series(args)
    if command == "check":
        from statsyard.cli.check import run_check

        return run_check(args, config.storage.data_dir)
    with tuned_gc_for_ingest():
        return run_service(config, debug=getattr(args, "debug", False))
