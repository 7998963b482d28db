"""The schema: one frozen attrs class per section, each field a checked Setting.

Every section is what one table of the TOML file holds (``[storage]``,
``[pipeline]``, ...); :data:`SECTIONS` lists them in the example file's order.
Built by hand (``StorageConfig(fsync="always")``), a section checks its
values too, raising :class:`~statsyard.exceptions.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs

from statsyard.config.setting import Setting
from statsyard.config.setting import setting_field as _setting
from statsyard.graphite.templates import compile_templates

__all__ = [
    "MIB",
    "SECTIONS",
    "GraphiteConfig",
    "HttpConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PipelineConfig",
    "RenderConfig",
    "StorageConfig",
    "setting_names",
]

MIB: Final = 1024 * 1024


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
    checkpoint_after: float | None = _setting(
        60.0,
        Setting(
            "float",
            above=0,
            off_when_zero=True,
            help="Compact the head once it has held points this many seconds; "
            "0 compacts only by count and at a clean stop.",
        ),
    )
    compaction_worker: bool = _setting(
        True,
        Setting(
            "bool",
            help="Encode checkpoints' blocks in a worker process, on another core, "
            "while ingest goes on; false encodes them in the writer's thread.",
        ),
    )
    merge_after: float | None = _setting(
        300.0,
        Setting(
            "float",
            above=0,
            off_when_zero=True,
            help="Seal the segment being written once its points span this many "
            "seconds, and merge sealed segments of small blocks into large "
            "blocks in the background; 0 never merges.",
        ),
    )
    merge_block_points: int = _setting(
        4096,
        Setting(
            "int",
            above=0,
            help="Most points a block written by a merge holds.",
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
            "compaction_worker": self.compaction_worker,
            "merge_after_ms": (
                None if self.merge_after is None else round(self.merge_after * 1000)
            ),
            "merge_block_points": self.merge_block_points,
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
        Setting(
            "int",
            minimum=1,
            help="Concurrent TCP connections; a new one closes the longest idle.",
        ),
    )
    idle_timeout: float = _setting(
        120.0,
        Setting(
            "float",
            minimum=0,
            help="Seconds without data before a TCP connection is closed; 0: never.",
        ),
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
