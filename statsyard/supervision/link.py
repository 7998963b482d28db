"""Links: how a child reports its start and exit to whoever supervises it.

Pykka has no links; :class:`Link` is the protocol a
:class:`~statsyard.supervision.child_actor.ChildActor` calls from its own
thread, and :class:`ChildLink` the supervisor's implementation, which turns
an exit into a :class:`ChildExited` message to the supervisor.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import attrs
import pykka

from statsyard.supervision.thread_tracker import ThreadTracker

__all__ = ["ChildExited", "ChildLink", "Link"]


class Link(Protocol):
    """What a child calls, from its own thread, when it starts and exits."""

    def adopt(self, thread: threading.Thread) -> None:
        """Record the child's thread, so its owner can join it at shutdown."""

    def started(self) -> None:
        """The child's start succeeded (a failed start calls ``exited`` instead)."""

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        """Report the child's exit; ``crashed`` is False for a normal stop."""


@attrs.frozen(slots=True)
class ChildExited:
    """A child's link reporting its exit to the supervisor."""

    child_id: str
    incarnation: int
    crashed: bool
    error: str | None


class ChildLink:
    """The link a child reports through: its thread, its start, its exit."""

    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        child_id: str,
        incarnation: int,
        threads: ThreadTracker,
    ) -> None:
        self._supervisor = supervisor
        self._child_id = child_id
        self._incarnation = incarnation
        self._threads = threads
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def adopt(self, thread: threading.Thread) -> None:
        self.thread = thread
        self._threads.add(thread)

    def started(self) -> None:
        self._ready.set()

    def wait_started(self, timeout: float | None) -> BaseException | None:
        """Wait for the child's ``on_start``; return its error, or None.

        Raises:
            TimeoutError: ``on_start`` did not finish within ``timeout`` s.
        """
        if not self._ready.wait(timeout):
            raise TimeoutError(f"did not start within {timeout} s")
        return self._start_error

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        if not self._ready.is_set():
            self._start_error = error or RuntimeError("stopped while starting")
            self._ready.set()
        try:
            self._supervisor.tell(
                ChildExited(
                    self._child_id,
                    self._incarnation,
                    crashed,
                    None if error is None else f"{type(error).__name__}: {error}",
                )
            )
        except pykka.ActorDeadError:
            pass  # the supervisor is gone; nobody to restart us
