"""Puts the HTTP application together from a StatsYard's parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from statsyard.http.api import HttpApi
from statsyard.http.render_view import RenderView
from statsyard.render import RenderSettings

if TYPE_CHECKING:
    from statsyard.http.options import HttpOptions
    from statsyard.metrics import Registry
    from statsyard.storage import Storage

__all__ = ["build_api"]


def build_api(
    options: HttpOptions,
    *,
    storage: Callable[[float], Storage],
    registry: Registry,
    ready: Callable[[], bool],
) -> HttpApi:
    """The WSGI application serving ``options`` over the live ``storage``.

    Args:
        options: the HTTP settings (and the render engine's).
        storage: returns the live storage, waiting up to the given seconds.
        registry: the metrics registry ``/metrics`` exposes.
        ready: whether the tree is up and the storage open.
    """
    settings = options.render or RenderSettings(default_entity=options.default_entity)
    return HttpApi(
        storage=storage,
        registry=registry,
        ready=ready,
        default_entity=settings.default_entity,
        render=RenderView(storage=storage, settings=settings),
    )
