"""Replies delivered as messages: how one actor waits on another without blocking."""

from __future__ import annotations

from typing import Any

import attrs
import pykka

__all__ = ["Replied", "TellReply"]


@attrs.frozen(slots=True)
class Replied:
    """The answer to a request, told back to the actor that asked.

    ``tag`` says which request it answers; exactly one of ``value`` and
    ``error`` is meaningful.
    """

    tag: str
    value: Any = None
    error: BaseException | None = None


class TellReply:
    """A reply slot that ``tell``s the answer to an actor instead of waking a thread.

    It quacks like the Pykka future a handler would otherwise complete, so a
    parked request can be answered the same way whoever is waiting.
    """

    __slots__ = ("_ref", "_tag")

    def __init__(self, ref: pykka.ActorRef[Any], tag: str) -> None:
        self._ref = ref
        self._tag = tag

    def set(self, value: Any = None) -> None:
        """Tell the value; raises ActorDeadError if the asker is gone."""
        self._ref.tell(Replied(self._tag, value=value))

    def set_exception(self, exc_info: Any = None) -> None:
        """Tell the failure (``exc_info`` is ``(type, value, traceback)``)."""
        error = exc_info[1] if exc_info is not None else None
        self._ref.tell(Replied(self._tag, error=error))
