"""Deadlines: ``time.monotonic()`` instants, or None for "wait for ever".

The one place the arithmetic of timeouts and deadlines is written. It lives
in the supervision part, the bottom layer that imports nothing else of
StatsYard, so every layer above uses it too (the pipeline, the facade, the
forwarders).
"""

from __future__ import annotations

import time

__all__ = ["deadline_after", "lock_timeout", "remaining"]


def deadline_after(timeout: float | None) -> float | None:
    """The deadline ``timeout`` seconds from now; None for no timeout."""
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative), or None for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def lock_timeout(deadline: float | None) -> float:
    """``Lock.acquire``'s ``timeout`` for a deadline (-1 waits for ever)."""
    left = remaining(deadline)
    return -1 if left is None else left
