"""ThreadTracker: the threads a tree's actors ran on, for shutdown to join."""

from __future__ import annotations

import threading

from statsyard.supervision.deadline import deadline_after, remaining

__all__ = ["ThreadTracker"]


class ThreadTracker:
    """The threads a tree's actors ran on, so that shutdown can join them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def add(self, thread: threading.Thread) -> None:
        """Remember a thread (called from that thread)."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def join(self, timeout: float | None = None) -> list[threading.Thread]:
        """Join every remembered thread; return those still alive after ``timeout``."""
        deadline = deadline_after(timeout)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(remaining(deadline))
        return [
            t for t in threads if t.is_alive() and t is not threading.current_thread()
        ]
