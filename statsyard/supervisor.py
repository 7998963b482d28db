"""Supervisor: OTP's rest-for-one supervision, built on Pykka.

Children start in spec order and stop in reverse. When a child exits
abnormally (or normally, if it is ``permanent``), the supervisor stops every
child started after it, in reverse order, and starts the child and those
after it again, in order, so each restarted child gets fresh references to
its siblings. More than ``max_restarts`` restarts within ``max_seconds``
stops the whole tree in reverse order and reports why through ``on_exit``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import attrs
import pykka

from statsyard.child_actor import ChildActor, Link
from statsyard.exceptions import ChildStartError, ChildStopError, NotRunningError

__all__ = [
    "ChildInfo",
    "ChildSpec",
    "ChildTable",
    "StartContext",
    "Supervisor",
    "SupervisorExit",
    "ThreadTracker",
]

logger = logging.getLogger(__name__)

Restart = Literal["permanent", "transient", "temporary"]


@attrs.frozen(slots=True)
class StartContext:
    """What a child's start function gets: its link and its elder siblings."""

    link: Link
    siblings: Mapping[str, pykka.ActorRef[Any]]
    """Children started before this one, by id: fresh references."""


@attrs.frozen(slots=True)
class ChildSpec:
    """How to start and supervise one child (OTP's child specification).

    Attributes:
        id: unique name of the child.
        start: starts the actor and returns its ref.
        restart: ``permanent`` (always restarted), ``transient`` (restarted
            after a crash only) or ``temporary`` (never restarted).
        shutdown: seconds to wait for the child to stop. A child still
            running after that is never started again beside itself: the
            supervisor stops the tree instead.
        start_timeout: seconds to wait for the child's ``on_start``; ``None``
            waits as long as it takes (OTP's ``infinity``), for a child whose
            start does long legitimate work such as recovering a data directory.
    """

    id: str
    start: Callable[[StartContext], pykka.ActorRef[Any]]
    restart: Restart = attrs.field(
        default="permanent",
        validator=attrs.validators.in_(("permanent", "transient", "temporary")),
    )
    shutdown: float = 5.0
    start_timeout: float | None = 30.0


@attrs.frozen(slots=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`."""

    id: str
    ref: pykka.ActorRef[Any] | None
    alive: bool
    restarts: int
    restart: Restart


@attrs.frozen(slots=True)
class SupervisorExit:
    """Why a supervision tree stopped."""

    reason: str
    gave_up: bool
    """True when the restart intensity was exceeded."""
    child_id: str | None = None


@attrs.frozen(slots=True)
class ChildExited:
    """A child's link reporting its exit to the supervisor."""

    child_id: str
    incarnation: int
    crashed: bool
    error: str | None


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
        """The tree stopped: wake every waiter with :class:`NotRunningError`."""
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
            NotRunningError: the tree stopped, or no living child in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed is not None:
                    raise NotRunningError(f"StatsYard is not running: {self._closed}")
                ref = self._refs.get(child_id)
                if ref is not None and ref.is_alive():
                    return ref
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise NotRunningError(f"no living child {child_id!r}")
                # Wake up now and then: a child can die without the table hearing.
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))


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
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is threading.current_thread():
                continue
            remaining = (
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            thread.join(remaining)
        return [
            t for t in threads if t.is_alive() and t is not threading.current_thread()
        ]


class _ChildLink:
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


@attrs.define(slots=True)
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    link: _ChildLink | None = None
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
            raise ValueError(f"child ids must be unique, got {ids}")
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError(
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
            self._start_from(0)
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
            KeyError: no such child, or it is terminated.
        """
        child = self._find(child_id)
        if child.ref is None:
            raise KeyError(f"child {child_id!r} is terminated")
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
        fresh references to the restarted one.

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
        return super().on_receive(message)

    # -- mechanics ----------------------------------------------------------

    def _find(self, child_id: str) -> _Child:
        return self._children[self._index(child_id)]

    def _index(self, child_id: str) -> int:
        for index, child in enumerate(self._children):
            if child.spec.id == child_id:
                return index
        raise KeyError(f"no child named {child_id!r}")

    def _start_from(self, index: int) -> None:
        """Start the children from ``index`` on, each after the one before is up.

        Raises:
            ChildStartError: a child failed in ``on_start`` (the later ones are
                not started) or did not finish it in time.
        """
        siblings = {
            c.spec.id: c.ref for c in self._children[:index] if c.ref is not None
        }
        for child in self._children[index:]:
            child.incarnation += 1
            link = _ChildLink(
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
        deadline = time.monotonic() + child.spec.shutdown
        try:
            ref.stop(block=True, timeout=child.spec.shutdown)
        except pykka.Timeout:
            pass
        thread = None if link is None else link.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
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
        later = [c.spec.id for c in self._children[index + 1 :]]
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
        child.restarts += 1
        for later_child in self._children[index + 1 :]:
            later_child.restarts += 1
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
        if self._on_restart is not None:
            for restarted in self._children[index:]:
                self._on_restart(restarted.spec.id)

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

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, _StopSelf):
            self.stop()
            return None
        return super()._handle_receive(message)


@attrs.frozen(slots=True)
class _StopSelf:
    """Internal: stop after giving up (the children are already stopped)."""
