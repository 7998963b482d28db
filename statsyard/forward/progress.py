"""Each forwarder's progress, kept by the host so it outlives actor restarts.

:class:`ForwardProgress` holds the cursor a forwarder has delivered up to,
the cursor saved on disk (what the log retention must keep logs for), and
lets callers wait until a position has been delivered
(:meth:`StatsYard.wait_forwarded`).
"""

from __future__ import annotations

import threading

from statsyard.forward.cursor import Cursor

__all__ = ["ForwardProgress"]


class ForwardProgress:
    """Thread-safe progress of one forwarder."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._sent: Cursor | None = None
        self._saved: Cursor | None = None
        self._loaded = False
        self._failing = False

    def delivered(self, cursor: Cursor) -> None:
        """Everything before ``cursor`` is delivered (or dropped and counted)."""
        with self._cond:
            self._sent = cursor
            self._cond.notify_all()

    def failing(self, failing: bool) -> None:
        """The last delivery attempt failed (True) or succeeded (False)."""
        with self._cond:
            self._failing = failing
            self._cond.notify_all()

    def saved(self, cursor: Cursor) -> None:
        """``cursor`` is now the one on disk."""
        with self._cond:
            self._saved = cursor
            self._loaded = True

    def saved_cursor(self) -> tuple[bool, Cursor | None]:
        """``(known, cursor)``: whether a forwarder has loaded or saved one yet."""
        with self._cond:
            return self._loaded, self._saved

    @property
    def cursor(self) -> Cursor | None:
        """Where delivery stands (None before the forwarder first started)."""
        return self._sent

    def wait_for(
        self, target: Cursor, timeout: float | None, *, unless_failing: bool = False
    ) -> bool:
        """Wait until delivery reaches ``target``; False on timeout.

        With ``unless_failing``, also give up (False) as soon as a delivery
        attempt fails: the destination is down, waiting longer is pointless.
        """

        def done() -> bool:
            return self._sent is not None and self._sent >= target

        with self._cond:
            self._cond.wait_for(
                lambda: done() or (unless_failing and self._failing), timeout
            )
            return done()
