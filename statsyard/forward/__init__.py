"""Forwarding to distributed time-series stores: Prometheus remote write, Graphite.

Each configured destination gets a supervised :class:`Forwarder` that ships
what the writer acknowledged, in order, at least once, resuming from a cursor
saved in the data directory. See ``docs/forwarding.md``.

Names are imported on first use (PEP 562): the configuration needs only
:mod:`statsyard.forward.settings`, not the forwarders and their HTTP and
protobuf clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statsyard.forward.children import Forwarding
    from statsyard.forward.cursor import Cursor
    from statsyard.forward.forwarder import Forwarder
    from statsyard.forward.settings import ForwardSettings, parse_forward_tables

_LOCATIONS: dict[str, str] = {
    "Cursor": "statsyard.forward.cursor",
    "ForwardSettings": "statsyard.forward.settings",
    "Forwarder": "statsyard.forward.forwarder",
    "Forwarding": "statsyard.forward.children",
    "parse_forward_tables": "statsyard.forward.settings",
}

__all__ = [
    "Cursor",
    "ForwardSettings",
    "Forwarder",
    "Forwarding",
    "parse_forward_tables",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines the public ``name`` on first use."""
    try:
        module = _LOCATIONS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
