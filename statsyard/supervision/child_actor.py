"""The base class of every supervised StatsYard actor: an OTP process in Pykka.

Pykka has no links: :class:`ChildActor` builds one. However the actor ends —
a crash in a ``tell`` handler, a failure in ``on_start`` or ``on_stop``, a
plain ``stop()`` — it reports the exit exactly once through its
:class:`Link`, so the supervisor notices every way a child can die.

It also keeps a ``BaseException`` (``SystemExit``, ``KeyboardInterrupt`` raised
in a handler or in a lifecycle hook) from reaching Pykka, which would
otherwise stop *every* actor in the process, the host application's
included, or end the actor's thread without stopping the actor.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from statsyard.supervision._pykka_compat import GuardedActor
from statsyard.supervision.errors import ChildCrashError, UnknownMessageError
from statsyard.supervision.link import Link

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["ChildActor"]

logger = logging.getLogger(__name__)


class ChildActor(GuardedActor):
    """A Pykka actor that reports its exit to a link and crashes like OTP.

    Subclasses override :meth:`on_child_start`, :meth:`on_child_stop` and
    :meth:`on_child_failure` instead of Pykka's hooks. An unknown message
    raises :class:`UnknownMessageError`: sent with ``tell`` it crashes the
    actor, which is how tests and users provoke a crash.
    """

    def __init__(self, *, link: Link | None = None) -> None:
        super().__init__()
        self._link = link
        self._exit_reported = False

    # -- hooks for subclasses (all run in the actor's own thread) ----------

    def on_child_start(self) -> None:
        """Acquire resources; an exception here counts as a crash."""

    def on_child_stop(self) -> None:
        """Release resources after a normal stop."""

    def on_child_failure(self, error: BaseException | None) -> None:
        """Release resources after a crash (``on_child_stop`` is not called)."""

    # -- Pykka's hooks -----------------------------------------------------

    def on_start(self) -> None:
        """Run :meth:`on_child_start`; report the start, or a crash if it fails."""
        if self._link is not None:
            self._link.adopt(threading.current_thread())
        try:
            self._contained(self.on_child_start)
        except Exception as error:
            self._report_exit(crashed=True, error=error)
            raise
        if self._link is not None and not self._exit_reported:
            self._link.started()  # (a start that reported its own failure is not)

    def on_stop(self) -> None:
        """Run :meth:`on_child_stop`, then report a normal (or failed) exit."""
        error: BaseException | None = None
        try:
            self._contained(self.on_child_stop)
        except Exception as exc:
            error = exc
            raise
        finally:
            self._report_exit(crashed=error is not None, error=error)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Run :meth:`on_child_failure`, then report the crash."""
        try:
            self._contained(self.on_child_failure, exception_value)
        finally:
            self._report_exit(crashed=True, error=exception_value)

    def on_receive(self, message: Any) -> Any:
        """Crash on anything this actor does not understand."""
        raise UnknownMessageError(type(self).__name__, message)

    def _contained(self, hook: Callable[..., None], *args: Any) -> None:
        """Run a lifecycle hook; a ``BaseException`` from it becomes a crash.

        Pykka catches only ``Exception`` around ``on_start``, ``on_stop`` and
        ``on_failure``: a ``SystemExit`` there would end the thread without
        stopping the actor (``on_start``), skip the exit report, or break the
        caller's ``stop()``. As :class:`ChildCrashError` it is this actor's
        own failure, reported through the link like any other.
        """
        try:
            hook(*args)
        except Exception:
            raise
        except BaseException as exc:
            raise ChildCrashError(
                f"{type(exc).__name__} raised in {type(self).__name__}."
                f"{hook.__name__}: {exc!r}"
            ) from exc

    def _report_exit(self, *, crashed: bool, error: BaseException | None) -> None:
        if self._exit_reported:
            return
        self._exit_reported = True
        if self._link is None:
            return
        try:
            self._link.exited(crashed=crashed, error=error)
        except Exception:  # deliberate: a broken link must not hide the exit
            logger.exception("Could not report the exit of %s", self)
