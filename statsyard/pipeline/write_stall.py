"""WriteStall: the writer's hold on a full disk, waiting writes out instead of failing.

When an append fails with ``ENOSPC``, ``EDQUOT`` or ``EIO`` the log is as it
was before the call, so the writer keeps the batch and tries it again on a
timer (no handler sleeps): first after :data:`RETRY_INITIAL_S`, then doubling
up to every :data:`RETRY_MAX_S`. Batches arriving meanwhile wait behind it,
in order. The stall is logged once at ERROR, then every
:data:`STALL_LOG_INTERVAL_S` with the retries and the points held, on the
writer's own log channel; its end at WARNING (docs/architecture.md, "A full
disk").
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from statsyard.exceptions import WriteError
from statsyard.pipeline.writer_messages import WriteBatch

__all__ = [
    "RETRY_INITIAL_S",
    "RETRY_MAX_S",
    "STALL_ERRNOS",
    "STALL_LOG_INTERVAL_S",
    "WriteStall",
]

STALL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
"""Write errors the writer waits out (holding the batch) instead of failing."""
RETRY_INITIAL_S = 0.05
"""First delay before a held batch is tried again; doubles at each failure."""
RETRY_MAX_S = 5.0
"""Longest delay between two tries of a held batch."""
STALL_LOG_INTERVAL_S = 30.0
"""While writes are stalled, how often the condition is logged again."""


class WriteStall:
    """The held batch, the batches behind it, the retry timer and its backoff.

    Used only in the writer's thread, except the timer, which only calls
    ``tell_retry`` (the writer then calls :meth:`take_held` and writes).

    Args:
        data_dir: the data directory, named in the log lines.
        log: the writer's logger: the stall is part of its story.
        tell_retry: called from the timer's thread when the held batch is due.
        on_stalled: told True when writes stop, False when they resume.
        on_retried: told of each failed retry.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str],
        log: logging.Logger,
        tell_retry: Callable[[], None],
        on_stalled: Callable[[bool], None],
        on_retried: Callable[[], None],
    ) -> None:
        self._data_dir = data_dir
        self._log = log
        self._tell_retry = tell_retry
        self._on_stalled = on_stalled
        self._on_retried = on_retried
        self._held: WriteBatch | None = None
        self._behind: deque[WriteBatch] = deque()
        self._timer: threading.Timer | None = None
        self._stalled = False
        self._delay = 0.0
        self._retries = 0
        self._since = 0.0
        self._logged = 0.0

    @property
    def holding(self) -> bool:
        """Whether a batch is held: new batches must wait behind it."""
        return self._held is not None

    def wait_behind(self, batch: WriteBatch) -> None:
        """Keep ``batch`` in order behind the held one."""
        self._behind.append(batch)

    def hold(self, batch: WriteBatch, error: WriteError) -> None:
        """Keep ``batch`` and schedule another try, backing off exponentially."""
        now = time.monotonic()
        if not self._stalled:
            self._stalled = True
            self._retries = 0
            self._since = self._logged = now
            self._delay = RETRY_INITIAL_S
            self._on_stalled(True)
            self._log.error(
                "Cannot write to %s (%s): holding %d points and retrying; "
                "ingest waits until the disk takes writes again",
                self._data_dir,
                error.strerror or error,
                len(batch.points),
            )
        else:
            self._retries += 1
            self._delay = min(self._delay * 2, RETRY_MAX_S)
            self._on_retried()
            if now - self._logged >= STALL_LOG_INTERVAL_S:
                self._logged = now
                self._log.error(
                    "Still cannot write to %s (%s): %d retries in %.0f s, "
                    "holding %d points, %d batches waiting behind them",
                    self._data_dir,
                    error.strerror or error,
                    self._retries,
                    now - self._since,
                    len(batch.points),
                    len(self._behind),
                )
        self._held = batch
        timer = threading.Timer(self._delay, self._tell_retry)
        timer.name = "statsyard-write-retry"
        timer.daemon = True
        self._timer = timer
        timer.start()

    def take_held(self) -> WriteBatch | None:
        """The held batch, now due for its retry (no longer held)."""
        self._timer = None
        batch, self._held = self._held, None
        return batch

    def resumed(self) -> None:
        """The held batch was written: the stall is over."""
        self._log.warning(
            "Writes to %s resumed after %d retries in %.1f s",
            self._data_dir,
            self._retries,
            time.monotonic() - self._since,
        )
        self._stalled = False
        self._on_stalled(False)

    def next_behind(self) -> WriteBatch | None:
        """The next batch that waited behind, unless one is held again."""
        if self._held is not None or not self._behind:
            return None
        return self._behind.popleft()

    def close(self) -> None:
        """Drop everything: the writer stops.

        A held batch was never committed: the queue still has its points in
        flight and redelivers them to the next writer.
        """
        if self._timer is not None:
            timer, self._timer = self._timer, None
            timer.cancel()
            timer.join(timeout=1.0)  # it only tells: done at once, no thread left
        self._held = None
        self._behind.clear()
        if self._stalled:
            self._stalled = False
            self._on_stalled(False)
