"""The errors of the supervision part; all derive from :class:`SupervisionError`.

This package imports nothing else from its host application, so its errors
stand on their own. An application may derive its own errors from them
(StatsYard's ``ChildStartError`` and ``NotRunningError`` do) and translate
at its boundary.
"""

from __future__ import annotations

__all__ = [
    "BadSpecError",
    "ChildCrashError",
    "ChildStartError",
    "ChildStopError",
    "NoSuchChildError",
    "SupervisionError",
    "TreeStoppedError",
    "UnknownMessageError",
]


class SupervisionError(Exception):
    """Base class of every error the supervision part raises."""


class UnknownMessageError(SupervisionError, TypeError):
    """An actor received a message it does not understand.

    Raised inside the actor, this crashes it, exactly as an unexpected message
    crashes an OTP process; the supervisor then restarts it.
    """

    def __init__(self, actor: str, message: object) -> None:
        super().__init__(f"{actor} received an unknown message: {message!r}")
        self.message = message


class ChildCrashError(SupervisionError):
    """A ``BaseException`` (e.g. ``SystemExit``) escaped a supervised actor.

    It is converted to this ordinary exception so that only the offending
    actor crashes, instead of Pykka stopping every actor in the process.
    """


class ChildStartError(SupervisionError):
    """A supervised child could not start; ``__cause__`` is its own error.

    Attributes:
        child_id: the child that failed.
    """

    def __init__(self, message: str, *, child_id: str) -> None:
        super().__init__(message)
        self.child_id = child_id


class ChildStopError(SupervisionError):
    """A supervised child did not stop within its shutdown deadline.

    Python cannot kill a thread, so the child may still be running: the
    supervisor starts no second incarnation beside it and stops the tree.

    Attributes:
        child_id: the child that would not stop.
    """

    def __init__(self, message: str, *, child_id: str) -> None:
        super().__init__(message)
        self.child_id = child_id


class TreeStoppedError(SupervisionError, RuntimeError):
    """The tree has stopped, or no living child answered in time."""


class BadSpecError(SupervisionError, ValueError):
    """Two child specs share an id, or the restart intensity is malformed."""


class NoSuchChildError(SupervisionError, KeyError):
    """No child has that id, or it is terminated.

    Attributes:
        child_id: the id asked for.
    """

    def __init__(self, message: str, *, child_id: str) -> None:
        super().__init__(message)
        self.child_id = child_id

    def __str__(self) -> str:
        """The message itself (a KeyError would show its repr)."""
        return str(self.args[0])
