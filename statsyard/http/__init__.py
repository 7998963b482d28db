"""The HTTP API: graphite-web 1.1 compatible reads, pictures, a page, /metrics.

:class:`~statsyard.http.http_server.HttpServer` is the supervised child that
serves :class:`~statsyard.http.api.HttpApi` (a WSGI application) with
cheroot; :func:`~statsyard.http.wiring.build_api` puts the application
together. Only :class:`HttpOptions` is imported here, so that embedding
StatsYard without HTTP loads neither cheroot nor prometheus_client. See
``docs/http.md``.
"""

from __future__ import annotations

from statsyard.http.options import HttpOptions

__all__ = ["HttpOptions"]
