"""One rate-limited WARNING logger for every path that rejects input or fails.

A flood of bad input must not become a flood of log lines: each kind of
rejection (a *key*) logs at most once per interval, and the next line that
does get through says how many were held back since the last one. With an
infinite interval (:func:`warn_once`) each key logs once, ever: what the
metrics registry, the process statistics and the shipper use for a problem
they also count.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import Final

__all__ = ["RateLimitedLogger", "warn_once"]

DEFAULT_INTERVAL: Final = 1.0
"""Seconds between two WARNING lines of the same key."""


class RateLimitedLogger:
    """Logs at most one WARNING per key per ``interval``; counts what it held back.

    Thread-safe: validation (the consumer's thread) and the Graphite I/O
    thread may share one.

    Args:
        logger: where the lines go.
        interval: seconds between two lines of the same key.
        clock: monotonic seconds (a test may pass its own).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` logged within the interval.

        Returns:
            True if the line was logged, False if it was held back (counted).
        """
        if not self._logger.isEnabledFor(logging.WARNING):
            return False
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            self._logger.warning(message + " (%d more suppressed)", *args, held)
        else:
            self._logger.warning(message, *args)
        return True

    def suppressed(self) -> dict[Hashable, int]:
        """Lines held back since each key last logged, by key."""
        with self._lock:
            return dict(self._held)


def warn_once(logger: logging.Logger) -> RateLimitedLogger:
    """A :class:`RateLimitedLogger` that logs each key once, ever (then counts)."""
    return RateLimitedLogger(logger, interval=math.inf)
