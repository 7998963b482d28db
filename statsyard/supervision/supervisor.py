"""Supervisor: OTP's rest-for-one supervision, built on Pykka.

Children start in spec order and stop in reverse. When a child exits
abnormally (or normally, if it is ``permanent``), the supervisor stops every
child started after it, in reverse order, and starts the child and those
after it again, in order, so each restarted child gets fresh references to
its siblings (a ``temporary`` child is never started again, as in OTP).
More than ``max_restarts`` restarts within ``max_seconds`` stops the whole
tree in reverse order and reports why through ``on_exit``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pykka

from statsyard.supervision.child_actor import ChildActor
from statsyard.supervision.child_spec import (
    ChildInfo,
    ChildSpec,
    StartContext,
    SupervisorExit,
)
from statsyard.supervision.child_table import ChildTable
from statsyard.supervision.deadline import deadline_after, remaining
from statsyard.supervision.errors import (
    BadSpecError,
    ChildStartError,
    ChildStopError,
    NoSuchChildError,
)
from statsyard.supervision.link import ChildExited, ChildLink, Link
from statsyard.supervision.thread_tracker import ThreadTracker

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)


@attrs.define(slots=True)
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    link: ChildLink | None = None
    incarnation: int = 0
    restarts: int = 0


class Supervisor(ChildActor):
    """Starts and supervises children with the rest-for-one strategy.

    Args:
        specs: the children, in start order; a child may depend only on
            children before it.
        max_restarts: restarts allowed within ``max_seconds`` (OTP: 3 in 5 s).
        max_seconds: the intensity period.
        table: published refs of the living children, for outside callers.
        on_exit: called once, from the supervisor's thread, when the tree stops.
        on_restart: called with a child id each time that child is restarted.
    """

    def __init__(
        self,
        *,
        specs: Sequence[ChildSpec],
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        table: ChildTable | None = None,
        threads: ThreadTracker | None = None,
        on_exit: Callable[[SupervisorExit], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        link: Link | None = None,
    ) -> None:
        super().__init__(link=link)
        ids = [spec.id for spec in specs]
        if len(set(ids)) != len(ids):
            raise BadSpecError(f"child ids must be unique, got {ids}")
        if max_restarts < 0 or max_seconds <= 0:
            raise BadSpecError(
                "max_restarts must be >= 0 and max_seconds > 0, "
                f"got {max_restarts} and {max_seconds}"
            )
        self._children = [_Child(spec) for spec in specs]
        self._max_restarts = max_restarts
        self._max_seconds = max_seconds
        self._restart_times: deque[float] = deque()
        self.table = table if table is not None else ChildTable()
        self.threads = threads if threads is not None else ThreadTracker()
        self._on_exit = on_exit
        self._on_restart = on_restart
        self._exit: SupervisorExit | None = None

    # -- lifecycle ----------------------------------------------------------

    def on_child_start(self) -> None:
        """Start every child in order; if one cannot start, undo and fail at once.

        OTP's rule: a child that fails while the tree is *starting* is not
        restarted. The children already started stop in reverse order, the
        supervisor reports :class:`ChildStartError` (whose cause is the
        child's own error) through its link as its exit, and stops.
        """
        try:
            self._start_from(0, initial=True)
        except ChildStartError as exc:
            self._exit = SupervisorExit(str(exc), gave_up=True, child_id=exc.child_id)
            self._stop_from(0)
            self.table.close(str(exc))
            logger.error("Supervisor could not start: %s", exc)
            self._report_exit(crashed=True, error=exc)
            self.stop()
            return
        logger.info(
            "Supervisor started %s", ", ".join(c.spec.id for c in self._children)
        )

    def on_child_stop(self) -> None:
        """Stop every child in reverse order (each drains what it holds)."""
        stragglers = self._stop_from(0)
        reason = "stopped"
        if stragglers:
            reason += f"; still running: {', '.join(stragglers)}"
        self._finish(SupervisorExit(reason, gave_up=False))

    def on_child_failure(self, error: BaseException | None) -> None:
        """Never leave children behind, even if the supervisor itself crashed."""
        self._stop_from(0)
        self._finish(SupervisorExit(f"supervisor crashed: {error!r}", gave_up=False))

    # -- proxy API ----------------------------------------------------------

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order, with its ref, liveness and restart count."""
        return [
            ChildInfo(
                id=c.spec.id,
                ref=c.ref,
                alive=c.ref is not None and c.ref.is_alive(),
                restarts=c.restarts,
                restart=c.spec.restart,
            )
            for c in self._children
        ]

    def child(self, child_id: str) -> pykka.ActorRef[Any]:
        """The child's current ref.

        Raises:
            NoSuchChildError: no such child, or it is terminated.
        """
        child = self._find(child_id)
        if child.ref is None:
            raise NoSuchChildError(
                f"child {child_id!r} is terminated", child_id=child_id
            )
        return child.ref

    def terminate_child(self, child_id: str) -> None:
        """Stop a child and keep it stopped (its spec stays; see restart_child).

        Raises:
            ChildStopError: it did not stop in time; the tree is stopping.
        """
        child = self._find(child_id)
        if not self._stop_child(child):
            self._escalate(child)
        logger.info("Terminated child %s", child_id)

    def restart_child(self, child_id: str) -> None:
        """(Re)start a child and, as rest-for-one does, every child after it.

        Unlike OTP, the later children are restarted too, so that they hold
        fresh references to the restarted one (later temporary children are
        not: they stay stopped). A temporary child itself may be restarted
        this way, by request.

        Raises:
            ChildStopError: a child did not stop in time; the tree is stopping.
            ChildStartError: the child could not start (it is then handled
                as a crash: restarted within the restart intensity).
        """
        index = self._index(child_id)
        stragglers = self._stop_from(index)
        if stragglers:
            self._escalate(self._find(stragglers[0]))
        self._start_from(index)
        logger.info("Restarted child %s by request", child_id)

    def on_receive(self, message: Any) -> Any:
        """Handle child exits; anything else crashes the supervisor."""
        if isinstance(message, ChildExited):
            self._on_child_exited(message)
            return None
        if isinstance(message, _StopSelf):
            self.stop()
            return None
        return super().on_receive(message)

    # -- mechanics ----------------------------------------------------------

    def _find(self, child_id: str) -> _Child:
        return self._children[self._index(child_id)]

    def _index(self, child_id: str) -> int:
        for index, child in enumerate(self._children):
            if child.spec.id == child_id:
                return index
        raise NoSuchChildError(f"no child named {child_id!r}", child_id=child_id)

    def _restart_group(self, index: int) -> list[_Child]:
        """The children a restart from ``index`` starts again, in order.

        That child and every later one, except temporary ones: as in OTP, a
        temporary child is never restarted, not even as the bystander of an
        elder's restart (it stays stopped, its spec kept for restart_child).
        """
        first, *later = self._children[index:]
        return [first, *(c for c in later if c.spec.restart != "temporary")]

    def _start_from(self, index: int, *, initial: bool = False) -> None:
        """Start the children from ``index`` on, each after the one before is up.

        ``initial`` is the tree's own start, which starts every child; a
        restart starts :meth:`_restart_group`.

        Raises:
            ChildStartError: a child failed in ``on_start`` (the later ones are
                not started) or did not finish it in time.
        """
        siblings = {
            c.spec.id: c.ref for c in self._children[:index] if c.ref is not None
        }
        group = self._children[index:] if initial else self._restart_group(index)
        for child in group:
            child.incarnation += 1
            link = ChildLink(
                self.actor_ref, child.spec.id, child.incarnation, self.threads
            )
            child.link = link
            try:
                ref = child.spec.start(StartContext(link=link, siblings=dict(siblings)))
            except Exception as exc:  # deliberate: any failure to start is reported
                raise ChildStartError(
                    f"child {child.spec.id} could not start: {exc}",
                    child_id=child.spec.id,
                ) from exc
            child.ref = ref
            try:
                error = link.wait_started(child.spec.start_timeout)
            except TimeoutError as exc:
                raise ChildStartError(
                    f"child {child.spec.id} {exc}", child_id=child.spec.id
                ) from exc
            if error is not None:
                raise ChildStartError(
                    f"child {child.spec.id} could not start: {error}",
                    child_id=child.spec.id,
                ) from error
            siblings[child.spec.id] = ref
            self.table.set(child.spec.id, ref)
            logger.debug("Started child %s (%s)", child.spec.id, ref)

    def _stop_from(self, index: int) -> list[str]:
        """Stop the children from ``index`` on, in reverse; return any still running."""
        return [
            child.spec.id
            for child in reversed(self._children[index:])
            if not self._stop_child(child)
        ]

    def _stop_child(self, child: _Child) -> bool:
        """Stop a child within its shutdown deadline; False if it is still running.

        The child counts as stopped once its thread has ended: Pykka marks an
        actor dead before its ``on_stop`` runs, so liveness alone would miss
        a child stuck there.
        """
        ref, child.ref = child.ref, None
        link, child.link = child.link, None
        child.incarnation += 1  # its exit report is now expected: ignore it
        self.table.remove(child.spec.id)
        if ref is None:
            return True
        deadline = deadline_after(child.spec.shutdown)
        try:
            ref.stop(block=True, timeout=child.spec.shutdown)
        except pykka.Timeout:
            pass
        thread = None if link is None else link.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(remaining(deadline))
            stopped = not thread.is_alive()
        else:
            stopped = not ref.is_alive()
        if not stopped:
            logger.error(
                "Child %s did not stop within %.1f s; it may still be running",
                child.spec.id,
                child.spec.shutdown,
            )
        return stopped

    def _escalate(self, child: _Child) -> None:
        """A child would not stop: never start another beside it; stop the tree.

        Raises:
            ChildStopError: always, for a caller of the proxy API.
        """
        reason = (
            f"child {child.spec.id} did not stop within {child.spec.shutdown:g} s; "
            "a second one must not run beside it"
        )
        self._give_up(reason, child.spec.id)
        raise ChildStopError(reason, child_id=child.spec.id)

    def _give_up(self, reason: str, child_id: str) -> None:
        """Stop every child in reverse order, report why, and stop the supervisor."""
        logger.error("Supervisor gives up and stops the tree: %s", reason)
        stragglers = self._stop_from(0)
        if stragglers:
            reason += f"; still running: {', '.join(stragglers)}"
        self._finish(SupervisorExit(reason, gave_up=True, child_id=child_id))
        self.actor_ref.tell(_StopSelf())

    def _on_child_exited(self, message: ChildExited) -> None:
        if self._exit is not None:
            return
        index = self._index(message.child_id)
        child = self._children[index]
        if message.incarnation != child.incarnation:
            return  # an exit we caused, or an older incarnation's
        how = f"crashed ({message.error})" if message.crashed else "stopped"
        restart = child.spec.restart == "permanent" or (
            child.spec.restart == "transient" and message.crashed
        )
        if not restart:
            logger.info(
                "Child %s %s; not restarted (%s)",
                child.spec.id,
                how,
                child.spec.restart,
            )
            child.ref = None
            self.table.remove(child.spec.id)
            return
        now = time.monotonic()
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] <= now - self._max_seconds:
            self._restart_times.popleft()
        if len(self._restart_times) > self._max_restarts:
            self._stop_child(child)
            self._give_up(
                f"child {child.spec.id} {how}: more than {self._max_restarts} "
                f"restarts within {self._max_seconds:g} s",
                child.spec.id,
            )
            return
        group = self._restart_group(index)
        later = [c.spec.id for c in group[1:]]
        logger.error(
            "Child %s %s; restarting it%s",
            child.spec.id,
            how,
            f" and {', '.join(later)}" if later else "",
        )
        # The crashed child and every later one must be gone (their threads
        # ended) before any of them starts again.
        stragglers = self._stop_from(index)
        if stragglers:
            straggler = self._find(stragglers[0])
            self._give_up(
                f"child {straggler.spec.id} did not stop within "
                f"{straggler.spec.shutdown:g} s; a second one must not run beside it",
                straggler.spec.id,
            )
            return
        for restarting in group:
            restarting.restarts += 1
        try:
            self._start_from(index)
        except ChildStartError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                # It never finished on_start: it cannot be stopped either.
                self._give_up(str(exc), exc.child_id)
                return
            # Its own exit report follows and counts against the intensity.
            logger.error("%s", exc)
            return
        restarted_ids = [c.spec.id for c in group]
        if self._on_restart is not None:
            for restarted_id in restarted_ids:
                self._on_restart(restarted_id)
        logger.info(
            "Restarted %s after %s %s",
            ", ".join(restarted_ids),
            child.spec.id,
            how,
            extra={"child": child.spec.id, "reason": how, "restarted": restarted_ids},
        )

    def _finish(self, exit_: SupervisorExit) -> None:
        if self._exit is not None:
            return
        self._exit = exit_
        self.table.close(exit_.reason)
        if self._on_exit is not None:
            try:
                self._on_exit(exit_)
            except Exception:  # deliberate: the host's callback must not break shutdown
                logger.exception("on_exit callback failed")


@attrs.frozen(slots=True)
class _StopSelf:
    """Internal: stop after giving up (the children are already stopped)."""
