"""ChildTable: the living children by id, for callers outside the tree."""

from __future__ import annotations

import queue
import threading
from typing import Any, cast

import pykka

from statsyard.supervision.deadline import deadline_after, remaining
from statsyard.supervision.errors import TreeStoppedError

__all__ = ["ChildTable"]


class ChildTable:
    """Thread-safe lookup of the living children by id, for callers outside the tree.

    A restarted child appears under the same id with a new ref; :meth:`get`
    waits through a restart instead of handing out a dead ref.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._closed: str | None = None

    def set(self, child_id: str, ref: pykka.ActorRef[Any]) -> None:
        """Publish a (re)started child."""
        with self._cond:
            self._refs[child_id] = ref
            self._cond.notify_all()

    def remove(self, child_id: str) -> None:
        """Forget a terminated child."""
        with self._cond:
            self._refs.pop(child_id, None)

    def close(self, reason: str) -> None:
        """The tree stopped: wake every waiter with :class:`TreeStoppedError`."""
        with self._cond:
            self._closed = reason
            self._refs.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once the tree has stopped."""
        with self._cond:
            return self._closed is not None

    def mailboxes(self) -> dict[str, int]:
        """Messages waiting in each living child's mailbox, by child id."""
        with self._cond:
            refs = dict(self._refs)
        return {
            child_id: cast("queue.Queue[Any]", ref.actor_inbox).qsize()
            for child_id, ref in refs.items()
        }

    def get(self, child_id: str, timeout: float | None = None) -> pykka.ActorRef[Any]:
        """Return the living child, waiting up to ``timeout`` s through a restart.

        Raises:
            TreeStoppedError: the tree stopped, or no living child in time.
        """
        deadline = deadline_after(timeout)
        with self._cond:
            while True:
                if self._closed is not None:
                    raise TreeStoppedError(f"the tree has stopped: {self._closed}")
                ref = self._refs.get(child_id)
                if ref is not None and ref.is_alive():
                    return ref
                left = remaining(deadline)
                if left is not None and left <= 0:
                    raise TreeStoppedError(f"no living child {child_id!r}")
                # Wake up now and then: a child can die without the table hearing.
                self._cond.wait(0.05 if left is None else min(left, 0.05))
