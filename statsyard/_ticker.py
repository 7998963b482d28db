"""A thread that tells an actor a message on a fixed, non-drifting schedule."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import pykka

from statsyard.exceptions import InvalidArgumentError

__all__ = ["Ticker", "next_due"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT: Final = 5.0


def next_due(due: float, now: float, interval: float) -> tuple[float, int]:
    """The next tick of a fixed grid, skipping the ticks already missed.

    Args:
        due: the tick just handled.
        now: the current monotonic time.
        interval: seconds between ticks.

    Returns:
        ``(next_due, missed)``: ``due + interval`` when on time; when ``now``
        is already past that, the first grid point after ``now`` and how many
        grid points were skipped to reach it.
    """
    following = due + interval
    if now < following:
        return following, 0
    missed = int((now - following) // interval) + 1
    return following + missed * interval, missed


class Ticker(threading.Thread):
    """Tells ``ref`` the message ``make(due)`` at every point of a monotonic grid.

    Ticks fall on ``start + k * interval`` whatever the actor's handling time;
    ticks that come too late are skipped (not bunched) and reported to
    ``on_missed``. Stops by itself when the actor is gone.
    """

    def __init__(
        self,
        ref: pykka.ActorRef[Any],
        make: Callable[[float], Any],
        interval: float,
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        on_missed: Callable[[int], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise InvalidArgumentError(
                f"interval must be > 0 seconds, got {interval}", value=interval
            )
        super().__init__(name=name, daemon=True)
        self._ref = ref
        self._make = make
        self._interval = interval
        self._clock = clock
        self._on_missed = on_missed
        self._stopping = threading.Event()

    def run(self) -> None:
        """Tick until stopped (the ticker's own thread)."""
        due = self._clock() + self._interval
        while not self._stopping.wait(max(0.0, due - self._clock())):
            try:
                self._ref.tell(self._make(due))
            except pykka.ActorDeadError:
                return
            due, missed = next_due(due, self._clock(), self._interval)
            if missed and self._on_missed is not None:
                self._on_missed(missed)

    def stop(self) -> None:
        """Stop ticking and join the thread (unless called from it)."""
        self._stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=_JOIN_TIMEOUT)
            if self.is_alive():
                logger.error("Ticker %s did not stop in %ss", self.name, _JOIN_TIMEOUT)
