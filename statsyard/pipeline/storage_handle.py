"""StorageHandle: where the living writer publishes its open storage.

Queries (``StatsYard.query()``, the HTTP API) and forwarders read the
storage through it in their own threads, never through the writer's mailbox.
"""

from __future__ import annotations

import threading

from statsyard.exceptions import NotRunningError
from statsyard.storage import Storage

__all__ = ["StorageHandle"]


class StorageHandle:
    """Where the living writer publishes its open storage, for queries elsewhere.

    Queries run in the caller's thread against the writer's
    :class:`~statsyard.storage.Storage` (which is safe for that), never
    inside the writer's message handler, so a long scan does not stall ingest.
    A restarted writer publishes its new storage here.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._storage: Storage | None = None

    def publish(self, storage: Storage | None) -> None:
        """Set (or clear) the current storage."""
        with self._cond:
            self._storage = storage
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Storage:
        """The current storage, waiting up to ``timeout`` s for a writer to open one.

        Raises:
            NotRunningError: no writer has its storage open in time.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._storage is not None, timeout):
                raise NotRunningError("no writer has the data directory open")
            assert self._storage is not None
            return self._storage
