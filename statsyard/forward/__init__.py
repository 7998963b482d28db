"""Forwarding to distributed time-series stores: Prometheus remote write, Graphite.

Each configured destination gets a supervised :class:`Forwarder` that ships
what the writer acknowledged, in order, at least once, resuming from a cursor
saved in the data directory. See ``docs/forwarding.md``.
"""

from __future__ import annotations

from statsyard.forward.children import Forwarding
from statsyard.forward.cursor import Cursor
from statsyard.forward.forwarder import Forwarder
from statsyard.forward.settings import ForwardSettings, parse_forward_tables

__all__ = [
    "Cursor",
    "ForwardSettings",
    "Forwarder",
    "Forwarding",
    "parse_forward_tables",
]
