"""HttpOptions: how a StatsYard serves its HTTP API (kept free of heavy imports)."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["HttpOptions"]


@attrs.frozen
class HttpOptions:
    """How an embedded StatsYard serves its HTTP API (``StatsYard(http=...)``).

    Attributes:
        host: address to listen on.
        port: TCP port; 0 picks a free one (``StatsYard.http_address``).
        threads: requests served at once.
        max_points: largest number of stored points one request may read.
        default_entity: the entity whose series are plain Graphite paths.
        render: the render engine's settings (``[render]``), or None for
            its defaults.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8
    max_points: int = 10_000_000
    default_entity: str = "graphite"
    render: Any = None
