"""StatsYard's configuration: one typed schema, four sources, every problem at once.

Each section is a frozen attrs class whose fields carry a :class:`Setting`
validator (type, range or choice). Values come from, each overriding the one
before:

1. the defaults of the sections (:mod:`~statsyard.config.sections`),
2. a TOML file (``--config PATH``),
3. environment variables ``STATSYARD_<SECTION>_<KEY>``
   (e.g. ``STATSYARD_PIPELINE_QUEUE_CAPACITY=50000``),
4. command-line flags ``--<section>-<key>`` (e.g. ``--pipeline-queue-capacity``).

:func:`load_config` checks every value before anything starts and raises one
:class:`~statsyard.exceptions.ConfigError` listing all the bad settings, each
with the value given and what is expected, and a "did you mean" for unknown
keys. The returned :class:`Config` remembers where each value came from
(:meth:`Config.source`), which ``python -m statsyard config`` prints.

The package, one concern per module:

- :mod:`~statsyard.config.setting`: :class:`Setting`, one setting's kind,
  range or choices, and how text parses into it;
- :mod:`~statsyard.config.sections`: the schema, one attrs class per section;
- :mod:`~statsyard.config.load`: :class:`Config` and :func:`load_config`,
  the four sources, every problem at once, "did you mean";
- :mod:`~statsyard.config.rendering`: :func:`render_config` for
  ``statsyard config``.
"""

from __future__ import annotations

from statsyard.config.load import (
    ENV_PREFIX,
    Config,
    env_name,
    flag_name,
    load_config,
    with_shortcuts,
)
from statsyard.config.rendering import render_config
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
from statsyard.config.setting import Setting

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
