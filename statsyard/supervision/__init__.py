"""OTP supervision for Pykka: supervised actors, child specs, rest-for-one.

A self-contained part: it imports nothing else from StatsYard, so any Pykka
application can use it unchanged. The pieces, one per module:

- :mod:`~statsyard.supervision.child_actor`: :class:`ChildActor`, the base
  of a supervised actor (reports every exit through its link, turns a
  ``BaseException`` into a crash of that actor only).
- :mod:`~statsyard.supervision.link`: the :class:`Link` protocol a child
  reports through.
- :mod:`~statsyard.supervision.child_spec`: :class:`ChildSpec`,
  :class:`StartContext`, :class:`ChildInfo`, :class:`SupervisorExit`.
- :mod:`~statsyard.supervision.supervisor`: :class:`Supervisor`
  (rest-for-one, OTP restart intensity).
- :mod:`~statsyard.supervision.child_table`: :class:`ChildTable`, living
  children by id for callers outside the tree.
- :mod:`~statsyard.supervision.thread_tracker`: :class:`ThreadTracker`.
- :mod:`~statsyard.supervision.deadline`: deadline arithmetic.
- :mod:`~statsyard.supervision.errors`: :class:`SupervisionError` and kin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statsyard.supervision.child_actor import ChildActor
    from statsyard.supervision.child_spec import (
        ChildInfo,
        ChildSpec,
        Restart,
        StartContext,
        SupervisorExit,
    )
    from statsyard.supervision.child_table import ChildTable
    from statsyard.supervision.errors import (
        BadSpecError,
        ChildCrashError,
        ChildStartError,
        ChildStopError,
        NoSuchChildError,
        SupervisionError,
        TreeStoppedError,
        UnknownMessageError,
    )
    from statsyard.supervision.link import Link
    from statsyard.supervision.supervisor import Supervisor
    from statsyard.supervision.thread_tracker import ThreadTracker

# Names are imported on first use (PEP 562): the errors need no Pykka.
_LOCATIONS: dict[str, str] = {
    "BadSpecError": "statsyard.supervision.errors",
    "ChildActor": "statsyard.supervision.child_actor",
    "ChildCrashError": "statsyard.supervision.errors",
    "ChildInfo": "statsyard.supervision.child_spec",
    "ChildSpec": "statsyard.supervision.child_spec",
    "ChildStartError": "statsyard.supervision.errors",
    "ChildStopError": "statsyard.supervision.errors",
    "ChildTable": "statsyard.supervision.child_table",
    "Link": "statsyard.supervision.link",
    "NoSuchChildError": "statsyard.supervision.errors",
    "Restart": "statsyard.supervision.child_spec",
    "StartContext": "statsyard.supervision.child_spec",
    "SupervisionError": "statsyard.supervision.errors",
    "Supervisor": "statsyard.supervision.supervisor",
    "SupervisorExit": "statsyard.supervision.child_spec",
    "ThreadTracker": "statsyard.supervision.thread_tracker",
    "TreeStoppedError": "statsyard.supervision.errors",
    "UnknownMessageError": "statsyard.supervision.errors",
}

__all__ = [
    "BadSpecError",
    "ChildActor",
    "ChildCrashError",
    "ChildInfo",
    "ChildSpec",
    "ChildStartError",
    "ChildStopError",
    "ChildTable",
    "Link",
    "NoSuchChildError",
    "Restart",
    "StartContext",
    "SupervisionError",
    "Supervisor",
    "SupervisorExit",
    "ThreadTracker",
    "TreeStoppedError",
    "UnknownMessageError",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines the public ``name`` on first use."""
    try:
        module = _LOCATIONS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
