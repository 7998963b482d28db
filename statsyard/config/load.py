"""Config and load_config: the effective settings from four sources, checked at once.

Values come from, each overriding the one before: the defaults of the
sections, a TOML file, settings given in code (``Config.of``), environment
variables ``STATSYARD_<SECTION>_<KEY>`` and command-line flags
``--<section>-<key>``. Every problem is collected and raised in one
:class:`~statsyard.exceptions.ConfigError`, with a "did you mean" for
unknown keys. The :class:`Config` remembers where each value came from.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from statsyard.config.sections import (
    SECTIONS,
    GraphiteConfig,
    HttpConfig,
    LoggingConfig,
    MetricsConfig,
    PipelineConfig,
    RenderConfig,
    StorageConfig,
    setting_names,
)
from statsyard.config.setting import BadValueError, Setting
from statsyard.exceptions import ConfigError
from statsyard.forward.settings import ForwardSettings, parse_forward_tables

__all__ = [
    "ENV_PREFIX",
    "Config",
    "env_name",
    "flag_name",
    "load_config",
    "with_shortcuts",
]

ENV_PREFIX: Final = "STATSYARD_"
"""Prefix of the environment variables that set configuration values."""


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
        except BadValueError as bad:
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
