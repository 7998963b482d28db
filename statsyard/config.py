"""StatsYard's configuration: one typed schema, four sources, every problem at once.

Each section is a frozen attrs class whose fields carry a :class:`Setting`
validator (type, range or choice). Values come from, each overriding the one
before:

1. the defaults in this module,
2. a TOML file (``--config PATH``),
3. environment variables ``STATSYARD_<SECTION>_<KEY>``
   (e.g. ``STATSYARD_PIPELINE_QUEUE_CAPACITY=50000``),
4. command-line flags ``--<section>-<key>`` (e.g. ``--pipeline-queue-capacity``).

:func:`load_config` checks every value before anything starts and raises one
:class:`~statsyard.exceptions.ConfigError` listing all the bad settings, each
with the value given and what is expected, and a "did you mean" for unknown
keys. The returned :class:`Config` remembers where each value came from
(:meth:`Config.source`), which ``python -m statsyard config`` prints.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from statsyard.exceptions import ConfigError
from statsyard.forward.settings import ForwardSettings, parse_forward_tables
from statsyard.graphite.templates import compile_templates
from statsyard.timeparse import parse_duration_s

__all__ = [
    "ENV_PREFIX",
    "SECTIONS",
    "Config",
    "GraphiteConfig",
    "HttpConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PipelineConfig",
    "RenderConfig",
    "Setting",
    "StorageConfig",
    "env_name",
    "flag_name",
    "load_config",
    "render_config",
    "setting_names",
    "with_shortcuts",
]

ENV_PREFIX: Final = "STATSYARD_"
"""Prefix of the environment variables that set configuration values."""

MIB: Final = 1024 * 1024

# DogStatsD's tag syntax (the same rule as statsyard.metrics): a key may not
# hold a colon, and | , # and whitespace separate fields and lines.
_TAG_KEY: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]*")
_TAG_VALUE: Final = re.compile(r"[^|,#\s]+")

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class _BadValueError(Exception):
    """Internal: a value does not fit a setting; ``str()`` is what is expected."""


@attrs.frozen
class Setting:
    """What one setting accepts: its kind, range or choices.

    An instance is the field's attrs validator (so building a section by hand
    checks it too) and also parses text from the environment or a flag.

    Attributes:
        kind: one of ``str``, ``int``, ``float``, ``bool``, ``choice``,
            ``table`` (str to str), ``tags`` (a table of DogStatsD tags),
            ``list`` (of non-empty strings; from the
            environment or a flag, comma-separated), ``duration`` (seconds,
            from an int or ``"10s"``/``"1m"``/``"1h"``/``"1d"``), ``schema`` (a
            list of ``{pattern = REGEX, step = DURATION}`` tables).
        minimum: smallest allowed number (inclusive), if any.
        maximum: largest allowed number (inclusive), if any.
        above: numbers must be strictly greater than this, if set.
        choices: the allowed strings for ``choice``.
        off_when_zero: ``0`` (or an empty env value) means "off" and becomes None.
        help: one line for ``--help`` and the example file.
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()
    off_when_zero: bool = False
    help: str = ""

    # -- description ------------------------------------------------------

    def expected(self) -> str:
        """Describe the accepted values, for error messages."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "table":
            return "a table of strings to strings"
        if self.kind == "tags":
            return (
                'tags: in a file a table like { env = "prod" }, in a flag or '
                "environment variable env=prod,team=ops; a key is a letter then "
                "letters, digits or _.-/, a value has no | , # or whitespace"
            )
        if self.kind == "list":
            return "a list of non-empty strings"
        if self.kind == "duration":
            return 'a positive duration: seconds, or e.g. "10s", "1m", "1h", "1d"'
        if self.kind == "schema":
            return (
                'a list of tables { pattern = "REGEX", step = "10s" } '
                "(from the environment: REGEX=STEP;REGEX=STEP)"
            )
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a non-empty string"
        noun = "an integer" if self.kind == "int" else "a number"
        bounds = []
        if self.minimum is not None and self.maximum is not None:
            bounds.append(f"from {_fmt(self.minimum)} to {_fmt(self.maximum)}")
        elif self.above is not None:
            bounds.append(f"> {_fmt(self.above)}")
        elif self.minimum is not None:
            bounds.append(f">= {_fmt(self.minimum)}")
        elif self.maximum is not None:
            bounds.append(f"<= {_fmt(self.maximum)}")
        text = noun + (" " + bounds[0] if bounds else "")
        if self.off_when_zero:
            text += " (or 0 for off)"
        return text

    # -- checking ---------------------------------------------------------

    def check(self, value: Any) -> Any:
        """Return ``value`` normalised for this setting (from TOML or code).

        Raises:
            _BadValueError: the value does not fit.
        """
        kind = self.kind
        if kind == "str":
            if not isinstance(value, str) or not value:
                raise _BadValueError(self.expected())
            return value
        if kind == "choice":
            if not isinstance(value, str):
                raise _BadValueError(self.expected())
            for choice in self.choices:
                if value.lower() == choice.lower():
                    return choice
            raise _BadValueError(self.expected())
        if kind == "bool":
            if not isinstance(value, bool):
                raise _BadValueError(self.expected())
            return value
        if kind in ("table", "tags"):
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and k and isinstance(v, str)
                for k, v in value.items()
            ):
                raise _BadValueError(self.expected())
            if kind == "tags" and not all(
                _TAG_KEY.fullmatch(k) and _TAG_VALUE.fullmatch(v)
                for k, v in value.items()
            ):
                raise _BadValueError(self.expected())
            return dict(sorted(value.items()))
        if kind == "list":
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise _BadValueError(self.expected())
            if not all(isinstance(item, str) and item.strip() for item in value):
                raise _BadValueError(self.expected())
            return tuple(item.strip() for item in value)
        if kind == "duration":
            return _duration(value, self.expected())
        if kind == "schema":
            return _schema(value, self.expected())
        if value is None and self.off_when_zero:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _BadValueError(self.expected())
        if kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise _BadValueError(self.expected())
                value = int(value)
        else:
            if not math.isfinite(value):
                raise _BadValueError(self.expected())
            value = float(value)
        if self.off_when_zero and value == 0:
            return None
        if (
            (self.above is not None and not value > self.above)
            or (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            raise _BadValueError(self.expected())
        return value

    def parse(self, text: str) -> Any:
        """Turn text from an environment variable or a flag into a checked value.

        Raises:
            _BadValueError: the text does not parse or the value does not fit.
        """
        kind = self.kind
        stripped = text.strip()
        if kind in ("str", "choice"):
            return self.check(stripped)
        if kind == "bool":
            lowered = stripped.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise _BadValueError(self.expected() + " (or 1/0, yes/no, on/off)")
        if kind in ("table", "tags"):
            table: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in stripped.split(","))):
                key, sep, val = item.partition("=")
                if not sep or not key.strip():
                    raise _BadValueError(
                        self.expected()
                        if kind == "tags"
                        else "comma-separated key=value pairs"
                    )
                table[key.strip()] = val.strip()
            return self.check(table)
        if kind == "list":
            return self.check([p.strip() for p in stripped.split(",") if p.strip()])
        if kind == "duration":
            return self.check(int(stripped) if stripped.isdigit() else stripped)
        if kind == "schema":
            rules = []
            for item in filter(None, (part.strip() for part in stripped.split(";"))):
                pattern, sep, step = item.rpartition("=")
                if not sep or not pattern:
                    raise _BadValueError(self.expected())
                rules.append({"pattern": pattern, "step": step})
            return self.check(rules)
        if self.off_when_zero and stripped.lower() in ("", "off", "none", "null"):
            return None
        try:
            number: float = (
                int(stripped.replace("_", ""), 10) if kind == "int" else float(stripped)
            )
        except ValueError:
            raise _BadValueError(self.expected()) from None
        return self.check(number)

    def convert(self, value: Any, field: attrs.Attribute[Any]) -> Any:
        """attrs converter: normalise a value built by hand, or refuse it."""
        try:
            return self.check(value)
        except _BadValueError as bad:
            raise ConfigError(
                [f"{field.name}: expected {bad}, got {value!r}"]
            ) from None


def _duration(value: Any, expected: str) -> int:
    """Seconds of a duration setting (an int, or text such as ``"1m"``)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _BadValueError(expected)
    try:
        seconds = parse_duration_s(value)
    except ValueError:
        raise _BadValueError(expected) from None
    return seconds


def _schema(value: Any, expected: str) -> tuple[tuple[str, int], ...]:
    """``(pattern, step seconds)`` rules of a schema setting, checked."""
    if isinstance(value, tuple):
        value = [{"pattern": p, "step": s} for p, s in value]
    if not isinstance(value, list):
        raise _BadValueError(expected)
    rules = []
    for rule in value:
        if not isinstance(rule, Mapping) or set(rule) != {"pattern", "step"}:
            raise _BadValueError(expected)
        pattern = rule["pattern"]
        if not isinstance(pattern, str) or not pattern:
            raise _BadValueError(expected)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _BadValueError(f"{expected}; bad regex {pattern!r}: {exc}") from None
        rules.append((pattern, _duration(rule["step"], expected)))
    return tuple(rules)


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _setting(default: Any, setting: Setting) -> Any:
    """An attrs field that ``setting`` normalises and checks."""
    converter = attrs.Converter(setting.convert, takes_field=True)
    if isinstance(default, dict | list):
        return attrs.field(
            factory=lambda: type(default)(default),
            converter=converter,
            metadata={"setting": setting},
        )
    return attrs.field(
        default=default, converter=converter, metadata={"setting": setting}
    )


# -- the schema ---------------------------------------------------------------


@attrs.frozen
class StorageConfig:
    """``[storage]``: where and how points are written."""

    data_dir: str = _setting(
        "./statsyard-data", Setting("str", help="Directory of the data files.")
    )
    fsync: str = _setting(
        "interval",
        Setting(
            "choice",
            choices=("always", "interval", "never"),
            help="When writes are fsynced: each batch, every fsync_interval, or never.",
        ),
    )
    fsync_interval: float = _setting(
        1.0,
        Setting("float", above=0, help="Seconds between fsyncs when fsync = interval."),
    )
    segment_bytes: int = _setting(
        64 * MIB,
        Setting(
            "int",
            minimum=MIB,
            maximum=512 * MIB,
            help="Size at which a data file is closed and a new one started.",
        ),
    )
    retention_max_age: float | None = _setting(
        None,
        Setting(
            "float",
            above=0,
            off_when_zero=True,
            help="Delete segments older than this many seconds; 0 keeps them forever.",
        ),
    )
    retention_max_bytes: int | None = _setting(
        None,
        Setting(
            "int",
            above=0,
            off_when_zero=True,
            help="Delete the oldest segments beyond this many bytes; 0 means no limit.",
        ),
    )
    checkpoint_points: int | None = _setting(
        500_000,
        Setting(
            "int",
            above=0,
            off_when_zero=True,
            help="Compact the in-memory head into a segment at this many points; "
            "0 never compacts by count.",
        ),
    )
    max_series: int | None = _setting(
        None,
        Setting(
            "int",
            above=0,
            off_when_zero=True,
            help="Refuse points of new series once this many are stored; 0: no limit.",
        ),
    )
    max_new_series_per_minute: int | None = _setting(
        10_000,
        Setting(
            "int",
            above=0,
            off_when_zero=True,
            help="Refuse points of new series beyond this many a minute; 0: no limit.",
        ),
    )

    def open_options(self) -> dict[str, Any]:
        """The ``Storage.open()`` keyword arguments these settings ask for."""
        age = self.retention_max_age
        return {
            "segment_bytes": self.segment_bytes,
            "retention_max_age_ms": None if age is None else round(age * 1000),
            "retention_max_bytes": self.retention_max_bytes,
            "checkpoint_points": self.checkpoint_points,
            "max_series": self.max_series,
            "max_new_series_per_minute": self.max_new_series_per_minute,
        }


@attrs.frozen
class PipelineConfig:
    """``[pipeline]``: the queue, the consumer batches and the supervisor."""

    queue_capacity: int = _setting(
        100_000,
        Setting("int", minimum=1, help="Points the queue holds before push blocks."),
    )
    batch_size: int = _setting(
        5000,
        Setting(
            "int",
            minimum=1,
            maximum=1_000_000,
            help="Points the consumer validates and writes at once.",
        ),
    )
    max_restarts: int = _setting(
        3,
        Setting(
            "int",
            minimum=0,
            help="Restarts allowed within max_seconds before the tree stops.",
        ),
    )
    max_seconds: float = _setting(
        5.0, Setting("float", above=0, help="The window of max_restarts, in seconds.")
    )
    linger: float = _setting(
        0.05,
        Setting(
            "float",
            above=0,
            help="Seconds a partial batch of pushed points may wait before it is sent.",
        ),
    )


@attrs.frozen
class GraphiteConfig:
    """``[graphite]``: the Carbon plaintext listener (TCP and UDP)."""

    enabled: bool = _setting(
        True, Setting("bool", help="Run the Graphite plaintext listener.")
    )
    host: str = _setting(
        "127.0.0.1", Setting("str", help="Address to listen on (0.0.0.0 for all).")
    )
    tcp_port: int = _setting(
        2003,
        Setting("int", minimum=0, maximum=65535, help="TCP port; 0 picks a free port."),
    )
    udp_port: int = _setting(
        2003,
        Setting("int", minimum=0, maximum=65535, help="UDP port; 0 picks a free port."),
    )
    default_entity: str = _setting(
        "graphite", Setting("str", help="Entity of points that have no entity tag.")
    )
    max_line_length: int = _setting(
        4096, Setting("int", minimum=64, help="Longest accepted line, in bytes.")
    )
    max_connections: int = _setting(
        1000,
        Setting("int", minimum=1, help="Concurrent TCP connections; more are refused."),
    )
    entity_tag: str = _setting(
        "entity",
        Setting("str", help="The Graphite tag that becomes the entity (e.g. host)."),
    )
    templates: tuple[str, ...] = _setting(
        [],
        Setting(
            "list",
            help='"FILTER TEMPLATE" rules mapping plain paths to metric and entity.',
        ),
    )

    def __attrs_post_init__(self) -> None:
        """Check the templates, so that a bad one stops start-up with the rest."""
        compile_templates(self.templates)


@attrs.frozen
class HttpConfig:
    """``[http]``: the Graphite-compatible HTTP API, pictures and the web page."""

    enabled: bool = _setting(
        True, Setting("bool", help="Serve the HTTP API (graphite-web compatible).")
    )
    host: str = _setting(
        "127.0.0.1", Setting("str", help="Address to listen on (0.0.0.0 for all).")
    )
    port: int = _setting(
        8080,
        Setting("int", minimum=0, maximum=65535, help="TCP port; 0 picks a free port."),
    )
    threads: int = _setting(
        8,
        Setting("int", minimum=1, maximum=256, help="Requests served at once."),
    )


@attrs.frozen
class MetricsConfig:
    """``[metrics]``: StatsYard's own metrics, shipped to a DogStatsD agent."""

    enabled: bool = _setting(True, Setting("bool", help="Ship self-metrics."))
    host: str = _setting("127.0.0.1", Setting("str", help="DogStatsD agent host."))
    port: int = _setting(
        8125, Setting("int", minimum=1, maximum=65535, help="DogStatsD agent UDP port.")
    )
    namespace: str = _setting(
        "statsyard", Setting("str", help="Prefix of every metric name.")
    )
    tags: dict[str, str] = _setting(  # noqa: RUF009 (attrs, not a dataclass)
        {},
        Setting(
            "tags",
            help="Tags added to every metric: env=prod,team=ops "
            '(in the file: { env = "prod", team = "ops" }).',
        ),
    )
    interval: float = _setting(
        1.0, Setting("float", above=0, help="Seconds between shipments.")
    )
    process_stats: bool = _setting(
        True, Setting("bool", help="Also ship CPU, memory, threads and open files.")
    )
    instrument: bool = _setting(
        True,
        Setting("bool", help="Record the pipeline's own metrics (docs/metrics.md)."),
    )


@attrs.frozen
class RenderConfig:
    """``[render]``: how ``/render`` turns raw points into Graphite series."""

    default_step: int = _setting(
        60,
        Setting(
            "duration",
            help="Seconds per point when no [[render.schema]] rule matches.",
        ),
    )
    max_points: int = _setting(
        2_000_000,
        Setting("int", minimum=1, help="Points one render request may read."),
    )
    schema: tuple[tuple[str, int], ...] = _setting(
        (),
        Setting(
            "schema",
            help="Step per metric: [[render.schema]] pattern (regex), step; "
            "the first match wins.",
        ),
    )


@attrs.frozen
class LoggingConfig:
    """``[logging]``: what goes to stderr."""

    level: str = _setting(
        "INFO",
        Setting(
            "choice",
            choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
            help="Lowest level logged.",
        ),
    )
    format: str = _setting(
        "text",
        Setting(
            "choice",
            choices=("text", "json"),
            help="text: one readable line per event; json: one JSON object per "
            "line (time, level, logger, message, extra) for log shippers.",
        ),
    )


SECTIONS: Final[Mapping[str, type[Any]]] = {
    "storage": StorageConfig,
    "pipeline": PipelineConfig,
    "graphite": GraphiteConfig,
    "http": HttpConfig,
    "metrics": MetricsConfig,
    "render": RenderConfig,
    "logging": LoggingConfig,
}
"""Section name to its attrs class, in the order of the example file."""


def setting_names() -> Iterator[tuple[str, str, Setting]]:
    """Yield ``(section, key, setting)`` for every setting, in schema order."""
    for section, cls in SECTIONS.items():
        for field in attrs.fields(cls):
            yield section, field.name, field.metadata["setting"]


def env_name(section: str, key: str) -> str:
    """The environment variable of a setting, e.g. ``STATSYARD_PIPELINE_BATCH_SIZE``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def flag_name(section: str, key: str) -> str:
    """The command-line flag of a setting, e.g. ``--pipeline-batch-size``.

    The ``[logging]`` settings are ``--log-level`` and ``--log-format``.
    """
    if section == "logging":
        return f"--log-{key}".replace("_", "-")
    return f"--{section}-{key}".replace("_", "-")


@attrs.frozen
class Config:
    """The effective configuration, and where each value came from."""

    storage: StorageConfig = attrs.field(factory=StorageConfig)
    pipeline: PipelineConfig = attrs.field(factory=PipelineConfig)
    graphite: GraphiteConfig = attrs.field(factory=GraphiteConfig)
    http: HttpConfig = attrs.field(factory=HttpConfig)
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    render: RenderConfig = attrs.field(factory=RenderConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    forward: tuple[ForwardSettings, ...] = ()
    """``[[forward]]`` destinations (file only: no environment or flags)."""
    sources: Mapping[str, str] = attrs.field(factory=dict)
    """``"section.key"`` to its source; a key that is absent is a default."""

    def source(self, section: str, key: str) -> str:
        """Where a value came from: ``default``, ``file P``, ``env V``, ``flag --F``."""
        return self.sources.get(f"{section}.{key}", "default")

    def value(self, section: str, key: str) -> Any:
        """The effective value of ``section.key``."""
        return getattr(getattr(self, section), key)

    @classmethod
    def of(cls, **sections: Any) -> Config:
        """Settings for embedding, given as a TOML file would give them.

        ``Config.of(storage={"data_dir": "d"}, pipeline={"batch_size": 100})``;
        ``forward`` takes a list of ``[[forward]]`` tables. Values are checked
        as the service checks its file; the environment is not read. Unlike
        the service's defaults, an embedded StatsYard opens no port unless
        asked: ``[graphite]`` and ``[http]`` are off unless given
        ``enabled = true``.

        Raises:
            ConfigError: listing every unknown key and bad value.
        """
        given = dict(sections)
        for section in ("graphite", "http"):
            table = given.get(section, {})
            if isinstance(table, Mapping):
                given[section] = {"enabled": False, **table}
        return load_config(None, environ={}, given=given)


def with_shortcuts(
    config: Config,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    queue_capacity: int | None = None,
    batch_size: int | None = None,
    ship_metrics: bool | None = None,
) -> Config:
    """``config`` with the values of :class:`~statsyard.app.StatsYard`'s keyword
    shortcuts that were given (None leaves a setting as it is).

    Raises:
        ConfigError: a value is invalid; it names the setting.
    """
    storage: dict[str, Any] = {}
    pipeline: dict[str, Any] = {}
    if data_dir is not None:
        storage["data_dir"] = os.fspath(data_dir)
    if queue_capacity is not None:
        pipeline["queue_capacity"] = queue_capacity
    if batch_size is not None:
        pipeline["batch_size"] = batch_size
    changes: dict[str, Any] = {}
    if storage:
        changes["storage"] = attrs.evolve(config.storage, **storage)
    if pipeline:
        changes["pipeline"] = attrs.evolve(config.pipeline, **pipeline)
    if ship_metrics is not None:
        changes["metrics"] = attrs.evolve(config.metrics, enabled=ship_metrics)
    return attrs.evolve(config, **changes) if changes else config


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
    given: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective configuration from defaults, file, environment, flags.

    Args:
        path: a TOML file, or None for none.
        given: settings as a TOML file would give them (section to a
            mapping of key to value; ``forward`` to a list of tables), taken
            after the file and before the environment.
        environ: environment variables (default :data:`os.environ`); only
            those starting with ``STATSYARD_`` are read.
        flags: ``"section.key"`` to the text given on the command line.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: listing every unknown key, unreadable file and bad value.
    """
    problems: list[str] = []
    forward: tuple[ForwardSettings, ...] = ()
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    sources: dict[str, str] = {}
    all_keys = {s: [f.name for f in attrs.fields(c)] for s, c in SECTIONS.items()}

    def take(
        section: str, key: str, source: str, label: str, raw: Any, parse: bool
    ) -> None:
        setting: Setting = attrs.fields_dict(SECTIONS[section])[key].metadata["setting"]
        try:
            value = setting.parse(raw) if parse else setting.check(raw)
        except _BadValueError as bad:
            problems.append(f"{label}: expected {bad}, got {raw!r}")
            return
        values[section][key] = value
        sources[f"{section}.{key}"] = source

    def take_document(document: Mapping[str, Any], label: str, source: str) -> None:
        nonlocal forward
        for section, table in document.items():
            if section == "forward":  # [[forward]]: an array of tables
                forward, more = parse_forward_tables(table, label)
                problems.extend(more)
                sources["forward"] = source
                continue
            if section not in SECTIONS:
                problems.append(
                    f"{label}: unknown section [{section}]"
                    f"{_suggest(section, list(SECTIONS))}; expected one of "
                    + ", ".join(f"[{s}]" for s in SECTIONS)
                )
                continue
            if not isinstance(table, Mapping):
                problems.append(
                    f"{label}: {section} must be a table [{section}], got {table!r}"
                )
                continue
            for key, raw in table.items():
                if key not in all_keys[section]:
                    problems.append(
                        f"{label}: unknown setting {section}.{key}"
                        f"{_suggest(key, all_keys[section])}"
                    )
                    continue
                take(
                    section,
                    key,
                    source,
                    f"{section}.{key} (in {label})",
                    raw,
                    False,
                )

    if path is not None:
        file_label = os.fspath(path)
        try:
            with Path(path).open("rb") as handle:
                document = tomllib.load(handle)
        except OSError as error:
            raise ConfigError(
                [
                    f"config file {file_label}: "
                    f"cannot read it ({error.strerror or error})"
                ]
            ) from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(
                [f"config file {file_label}: not valid TOML ({error})"]
            ) from error
        except UnicodeDecodeError as error:
            raise ConfigError(
                [
                    f"config file {file_label}: not a TOML text file (not UTF-8 at "
                    f"byte {error.start})"
                ]
            ) from None
        except RecursionError:
            # tomllib parses nested arrays and inline tables recursively.
            raise ConfigError(
                [f"config file {file_label}: not valid TOML (nested too deeply)"]
            ) from None
        take_document(document, file_label, f"file {file_label}")

    if given is not None:
        take_document(given, "the given settings", "given")

    env = os.environ if environ is None else environ
    known_env = {env_name(s, k): (s, k) for s, k, _ in setting_names()}
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        target = known_env.get(name.upper())
        if target is None:
            problems.append(
                f"unknown environment variable {name}"
                f"{_suggest(name.upper(), list(known_env))}"
            )
            continue
        section, key = target
        take(
            section,
            key,
            f"env {name}",
            f"{section}.{key} (from {name})",
            env[name],
            True,
        )

    known_flags = {f"{s}.{k}" for s, k, _ in setting_names()}
    for dotted, text in (flags or {}).items():
        if dotted not in known_flags:
            problems.append(
                f"unknown setting {dotted}{_suggest(dotted, sorted(known_flags))}"
            )
            continue
        section, key = dotted.split(".", 1)
        flag = flag_name(section, key)
        take(section, key, f"flag {flag}", f"{section}.{key} (from {flag})", text, True)

    sections: dict[str, Any] = {}
    for name in SECTIONS:
        try:
            sections[name] = SECTIONS[name](**values[name])
        except ConfigError as error:  # a check across keys (graphite.templates)
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return Config(**sections, forward=forward, sources=sources)


def _toml_value(value: Any) -> str:
    if value is None:
        return "0"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list) and all(isinstance(i, str) for i in value):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
        )
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, tuple):  # schema rules: (pattern, step seconds)
        rules = ", ".join(
            f"{{ pattern = {_toml_value(p)}, step = {_toml_value(s)} }}"
            for p, s in value
        )
        return f"[{rules}]"
    return repr(value)


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _toml_value(key)


def render_config(
    config: Config, *, annotate: Callable[[str, str], str] | None = None
) -> str:
    """Render the configuration as TOML, each value followed by its source.

    The output loads back with :func:`load_config` to the same values.

    Args:
        config: what to render.
        annotate: ``(section, key) -> comment``; defaults to the value's source.
    """
    note = annotate or config.source
    lines: list[str] = []
    for section in SECTIONS:
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        rows = []
        for field in attrs.fields(SECTIONS[section]):
            value = config.value(section, field.name)
            text = f"{field.name} = {_toml_value(value)}"
            comment = note(section, field.name)
            if value is None:
                comment += "; 0 = off"
            rows.append((text, comment))
        width = max(len(text) for text, _ in rows)
        lines.extend(f"{text.ljust(width)}  # {comment}" for text, comment in rows)
    for settings in config.forward:
        lines.extend(["", "[[forward]]"])
        source = config.sources.get("forward", "default")
        defaults = {f.name: f.default for f in attrs.fields(ForwardSettings)}
        rows = [
            (f"{k} = {_toml_value(v)}", "default" if defaults[k] == v else source)
            for k, v in settings.rows()
        ]
        width = max(len(text) for text, _ in rows)
        lines.extend(f"{text.ljust(width)}  # {comment}" for text, comment in rows)
    return "\n".join(lines) + "\n"
