"""A thread that tells an actor a message at a fixed, non-drifting interval."""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

__all__ = ["Ticker"]


class Ticker:
    """Tells ``message`` to ``ref`` every ``interval`` seconds until stopped.

    Ticks are scheduled on ``time.monotonic()`` (next = previous + interval),
    so they do not drift with how long the actor takes; missed ticks are
    skipped, not bunched.
    """

    def __init__(
        self, ref: pykka.ActorRef[Any], message: Any, interval: float, *, name: str
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        self._ref = ref
        self._message = message
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.skipped = 0
        """Ticks that were due while the previous one was still late."""

    def start(self) -> Ticker:
        """Start ticking."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking and join the thread (unless called from it)."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        due = time.monotonic() + self._interval
        while not self._stopped.wait(max(0.0, due - time.monotonic())):
            try:
                self._ref.tell(self._message)
            except pykka.ActorDeadError:
                return
            due += self._interval
            now = time.monotonic()
            if due < now:
                missed = int((now - due) // self._interval) + 1
                self.skipped += missed
                due += missed * self._interval
