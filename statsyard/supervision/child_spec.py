"""Child specifications: how a supervisor starts a child, and what it reports.

OTP's vocabulary: a :class:`ChildSpec` (id, start, restart, shutdown), the
:class:`StartContext` a start function gets (its link and elder siblings),
a row of ``which_children`` (:class:`ChildInfo`), and why a tree stopped
(:class:`SupervisorExit`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import pykka

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
