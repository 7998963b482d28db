"""Durable storage of data points: write-ahead log, compacted segments, queries.

The on-disk format is documented in ``docs/storage.md``.
"""

from __future__ import annotations

from statsyard.storage._log_watch import LogEnd, LogRetention
from statsyard.storage._storage import QueryResult, Storage

__all__ = ["LogEnd", "LogRetention", "QueryResult", "Storage"]
