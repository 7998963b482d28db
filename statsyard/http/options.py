"""HttpOptions: how a StatsYard serves its HTTP API (kept free of heavy imports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from statsyard.render import RenderSettings

__all__ = ["HttpOptions"]


@attrs.frozen
class HttpOptions:
    """How an embedded StatsYard serves its HTTP API (``StatsYard(http=...)``).

    Attributes:
        host: address to listen on.
        port: TCP port; 0 picks a free one (``StatsYard.http_address``).
        threads: requests served at once.
        default_entity: the entity whose series are plain Graphite paths.
        render: the render engine's settings (``[render]``: steps and the
            point budget), or None for its defaults with ``default_entity``.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8
    default_entity: str = "graphite"
    render: RenderSettings | None = None
