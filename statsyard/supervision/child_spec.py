"""Child specifications: how a supervisor starts a child, and what it reports.

OTP's vocabulary: a :class:`ChildSpec` (id, start, restart, shutdown), the
:class:`StartContext` a start function gets (its link and elder siblings),
a row of ``which_children`` (:class:`ChildInfo`), and why a tree stopped
(:class:`SupervisorExit`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import pykka

from statsyard.supervision.errors import BadSpecError

if TYPE_CHECKING:
    from statsyard.supervision.link import Link

__all__ = ["ChildInfo", "ChildSpec", "Restart", "StartContext", "SupervisorExit"]

Restart = Literal["permanent", "transient", "temporary"]


@attrs.frozen(slots=True)
class StartContext:
    """What a child's start function gets: its link and its elder siblings."""

    link: Link
    siblings: Mapping[str, pykka.ActorRef[Any]]
    """Children started before this one, by id: fresh references."""


def _seconds(spec: ChildSpec, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A deadline is a finite number of seconds above zero (None where allowed).

    Python cannot kill a thread, so there is no ``brutal_kill`` (0) and no
    ``infinity`` for ``shutdown``: the supervisor must always learn, in
    bounded time, whether a child stopped.
    """
    if value is None and attribute.name == "start_timeout":
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf
    ):
        raise BadSpecError(
            f"child {spec.id!r}: {attribute.name} must be a finite number of "
            f"seconds > 0, got {value!r}"
        )


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

    Raises:
        BadSpecError: an unknown restart type, or a ``shutdown`` or
            ``start_timeout`` that is not a finite number of seconds > 0.
    """

    id: str
    start: Callable[[StartContext], pykka.ActorRef[Any]]
    restart: Restart = attrs.field(default="permanent")
    shutdown: float = attrs.field(default=5.0, validator=_seconds)
    start_timeout: float | None = attrs.field(default=30.0, validator=_seconds)

    @restart.validator
    def _known_restart(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in ("permanent", "transient", "temporary"):
            raise BadSpecError(
                f"child {self.id!r}: restart must be permanent, transient or "
                f"temporary, got {value!r}"
            )


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
