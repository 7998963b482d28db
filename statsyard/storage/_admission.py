"""Series limits: how many series a storage holds, and how fast new ones come.

A point of a series the storage already holds is always admitted. A point
of a *new* series is refused when the storage holds ``max_series`` series,
or when more than ``max_new_series_per_minute`` new series came within the
last minute (a token bucket, as carbon's ``MAX_CREATES_PER_MINUTE``). Every
refused point is counted by reason and logged, rate limited; the writer
counts them as invalid, so the pipeline's accounting still balances.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from statsyard._ratelimit import RateLimitedLogger

logger = logging.getLogger("statsyard.storage")

MAX_SERIES: Final = "max_series"
NEW_SERIES_RATE: Final = "max_new_series_per_minute"
REASONS: Final = (MAX_SERIES, NEW_SERIES_RATE)
"""Why a point of a new series is refused."""


class SeriesLimits:
    """Decides whether a new series may be created now (the writer's thread).

    Args:
        max_series: most series the storage holds (None: no limit).
        max_new_per_minute: most new series a minute, on average, with a burst
            of as many at once (None: no limit).
        clock: monotonic seconds (a test may pass its own).
    """

    def __init__(
        self,
        max_series: int | None,
        max_new_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("max_series", max_series),
            ("max_new_series_per_minute", max_new_per_minute),
        ):
            if value is not None and (type(value) is not int or value <= 0):
                raise ValueError(
                    f"{name} must be a positive int or None, got {value!r}"
                )
        self._max_series = max_series
        self._rate = max_new_per_minute
        self._clock = clock
        self._tokens = float(max_new_per_minute or 0)
        self._filled_at = clock()
        self._log = RateLimitedLogger(logger, interval=10.0)
        self.refused: dict[str, int] = dict.fromkeys(REASONS, 0)
        """Points refused since the storage opened, by reason."""

    def admit(self, series_held: int) -> str | None:
        """Take a place for one new series; None if granted, else why not."""
        if self._max_series is not None and series_held >= self._max_series:
            return MAX_SERIES
        if self._rate is not None:
            now = self._clock()
            self._tokens = min(
                float(self._rate),
                self._tokens + (now - self._filled_at) * self._rate / 60.0,
            )
            self._filled_at = now
            if self._tokens < 1.0:
                return NEW_SERIES_RATE
            self._tokens -= 1.0
        return None

    def count_refused(
        self, reason: str, points: int, series: int, example: str
    ) -> None:
        """Count refused points and log them (at most one line per reason a while)."""
        self.refused[reason] += points
        limit = self._max_series if reason == MAX_SERIES else self._rate
        self._log.warning(
            reason,
            "Refused %d points of %d new series (e.g. %s): storage.%s = %d reached",
            points,
            series,
            example,
            reason,
            limit,
        )
