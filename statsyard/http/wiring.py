"""Puts the HTTP application together from a StatsYard's parts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from statsyard.http.api import HttpApi
from statsyard.http.catalog import series_name

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
        options: the HTTP settings.
        storage: returns the live storage, waiting up to the given seconds.
        registry: the metrics registry ``/metrics`` exposes.
        ready: whether the tree is up and the storage open.
    """
    return HttpApi(
        storage=storage,
        registry=registry,
        ready=ready,
        series_name=functools.partial(_name, default_entity=options.default_entity),
    )


def _name(metric: str, entity: str, *, default_entity: str) -> str:
    return series_name(metric, entity, default_entity)
