"""Pacing: queries step aside now and then while ingest is busy."""

from __future__ import annotations

import time
from typing import Final

QUERY_SLICE_S: Final = 0.00005
"""While ingest is active, a query works at most this long before yielding."""
QUERY_YIELD_S: Final = 0.0003
"""How long a query steps aside: long enough for the writer to take the GIL."""
INGEST_ACTIVE_S: Final = 0.01
"""Ingest counts as active for this long after an append."""


class Pacer:
    """Makes queries step aside for ingest now and then.

    Queries and ingest share one interpreter lock. The writer releases it at
    every ``write()``; a query thread then keeps it for the whole switch
    interval (5 ms), so without pacing, continuous queries would cut ingest to
    a fraction. While an append ran recently (:meth:`note_ingest`), queries
    sleep ``QUERY_YIELD_S`` after each ``QUERY_SLICE_S`` of work (counted
    across queries).
    """

    __slots__ = ("_last_ingest", "_since")

    def __init__(self) -> None:
        """A pacer that has seen no ingest yet."""
        self._since = 0.0
        self._last_ingest = -1.0

    def note_ingest(self) -> None:
        """The writer's thread: an append is running now."""
        self._last_ingest = time.monotonic()

    @property
    def ingest_active(self) -> bool:
        """Whether an append ran in the last ``INGEST_ACTIVE_S``."""
        return time.monotonic() - self._last_ingest < INGEST_ACTIVE_S

    def __call__(self) -> None:
        """Step aside if this query worked a slice while ingest is active."""
        now = time.monotonic()
        if (
            now - self._since >= QUERY_SLICE_S
            and now - self._last_ingest < INGEST_ACTIVE_S
        ):
            time.sleep(QUERY_YIELD_S)
            self._since = time.monotonic()
