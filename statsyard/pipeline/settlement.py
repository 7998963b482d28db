"""Settlement: how a StatsYard's tree ends, with every accepted point accounted for.

When the tree stops (it gave up, or ``stop()`` stopped it), every caller
parked on the queue is failed first, so no host thread stays blocked; then
what the queue still held is counted as lost (above the committed index),
then what the host's :class:`~statsyard.pipeline.staging.PushStage` still
held. Only then is the host told, once: ``counts()`` has nothing pending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from statsyard.exceptions import QueueClosedError
from statsyard.pipeline.blocking_queue import close_contents

if TYPE_CHECKING:
    from statsyard.pipeline.ledger import Ledger, QueueContents
    from statsyard.pipeline.staging import PushStage
    from statsyard.supervision import SupervisorExit

__all__ = ["Settlement"]

logger = logging.getLogger(__name__)


class Settlement:
    """The tree's exit, what it left unsettled, and telling the host once.

    Args:
        contents: the queue's contents (closed at the exit).
        ledger: where lost points are counted.
        stage: the host's staged pushes (settled after the contents).
        on_exit: the host's callback, called once every point is settled.
    """

    def __init__(
        self,
        *,
        contents: QueueContents,
        ledger: Ledger,
        stage: PushStage,
        on_exit: Callable[[SupervisorExit], None] | None,
    ) -> None:
        self._contents = contents
        self._ledger = ledger
        self._stage = stage
        self._on_exit = on_exit
        self.exit: SupervisorExit | None = None
        """Why the tree stopped, once it did (the first reason wins)."""
        self._settled = threading.Event()

    def tree_exited(self, exit_: SupervisorExit) -> None:
        """The tree stopped (supervisor's thread): release waiters, settle the queue.

        It takes no lock a host thread may hold while it waits: it first fails
        every parked caller (which releases pushers blocked in ``push()``),
        then counts what the queue still held. What the host itself holds
        (staged points, a push not yet answered) is settled by the linger
        thread or ``stop()`` (:meth:`settle`), which then tell the host.
        """
        if self.exit is None:
            self.exit = exit_
        if exit_.gave_up:
            logger.error("StatsYard's supervision tree stopped: %s", exit_.reason)
        self._stage.tree_exited(exit_.reason)
        self._close_contents(exit_.reason)

    def settle_after_exit(self) -> None:
        """The tree stopped by itself (linger thread): settle and tell the host."""
        if self.exit is not None:
            self.settle(self.exit, None)

    def settle(self, exit_: SupervisorExit, deadline: float | None) -> None:
        """Count what the host still holds as lost, then tell the host, once.

        Runs in the linger thread (the tree gave up) or in ``stop()``; the
        tree's own exit reason, if it had one, wins over ``exit_``.
        """
        exit_ = self.exit if self.exit is not None else exit_
        self._close_contents(exit_.reason)
        if not self._stage.settle(exit_.reason, deadline):
            return  # settled before, or a pusher still holds the stage (logged)
        self.exit = exit_
        self._settled.set()
        if self._on_exit is not None:
            try:
                self._on_exit(exit_)
            except Exception:  # deliberate: the host's callback must not break us
                logger.exception("on_exit callback failed")

    def wait(self, timeout: float | None) -> SupervisorExit | None:
        """Wait until every point is settled; return why the tree stopped, or None."""
        self._settled.wait(timeout)
        return self.exit

    def _close_contents(self, reason: str) -> None:
        """Fail every parked caller, then count what the queue held as lost."""
        lost = close_contents(
            self._contents,
            QueueClosedError(f"StatsYard stopped: {reason}"),
            committed=self._ledger.committed_upto,
        )
        if lost:
            self._ledger.lose(lost)
            logger.error("Lost %d accepted points: %s", lost, reason)
