"""Every error StatsYard raises derives from :class:`StatsYardError`.

What an embedding caller catches:

- :class:`NotRunningError` (and its :class:`QueueClosedError`): the yard is
  not running; points not yet queued are counted as lost.
- :class:`StatsYardTimeoutError`, a :class:`TimeoutError`: a wait ran out.
  :class:`QueueTimeout` is final ("not queued"), :class:`FlushTimeout` is not
  ("not durable yet"; nothing is given up).
- :class:`ChildStartError`, :class:`DataDirectoryInUseError`,
  :class:`NotADataDirectoryError`: ``StatsYard.start()`` failed.

The supervision part (:mod:`statsyard.supervision`) imports nothing of
StatsYard, so its own errors derive from
:class:`~statsyard.supervision.SupervisionError`; they are re-exported here.
Those that reach an embedding caller are translated at StatsYard's boundary
into StatsYard errors that derive from both (:class:`ChildStartError`,
:class:`NotRunningError`).
"""

from __future__ import annotations

from statsyard.supervision import errors as supervision_errors
from statsyard.supervision.errors import (
    ChildCrashError,
    ChildStopError,
    SupervisionError,
    UnknownMessageError,
)

__all__ = [
    "BadArgumentError",
    "ChildCrashError",
    "ChildStartError",
    "ChildStopError",
    "ConfigError",
    "CorruptRecordError",
    "DataDirectoryInUseError",
    "FlushTimeout",
    "ForwardError",
    "HttpBindError",
    "InvalidArgumentError",
    "ListenerError",
    "MetricError",
    "NotADataDirectoryError",
    "NotRunningError",
    "QueueClosedError",
    "QueueTimeout",
    "RejectedBatchError",
    "RenderError",
    "RetryableSendError",
    "StatsYardError",
    "StatsYardTimeoutError",
    "SupervisionError",
    "TargetSyntaxError",
    "TimeFormatError",
    "TooManyPointsError",
    "UnknownFunctionError",
    "UnknownMessageError",
    "WriteError",
]


class StatsYardError(Exception):
    """Base class of all StatsYard errors."""


class StatsYardTimeoutError(StatsYardError, TimeoutError):
    """A StatsYard call gave up waiting; the subclass says what that means."""


class QueueTimeout(StatsYardTimeoutError):  # noqa: N818 (name fixed by the spec)
    """A blocked push or pop waited longer than its timeout: the queue says so.

    Only the queue raises it, so it is final: the points it does not count
    as ``accepted`` were not queued and never will be (for a pop, nothing
    was taken).

    Attributes:
        accepted: how many points of a ``push_many`` were queued before the
            timeout passed (the rest were not); 0 for a pop.
    """

    def __init__(self, message: str, *, accepted: int = 0) -> None:
        super().__init__(message)
        self.accepted = accepted


class FlushTimeout(StatsYardTimeoutError):  # noqa: N818 (pairs with QueueTimeout)
    """``flush()`` (or ``await_committed()``) did not finish within its timeout.

    Nothing is lost or given up by it: the points are still on their way and
    a later ``flush()`` waits for them again.
    """


class NotRunningError(StatsYardError, supervision_errors.TreeStoppedError):
    """The StatsYard instance is not started, or its supervision tree has stopped.

    What a caller of ``push()``, ``flush()`` or ``query()`` catches to learn
    that the yard is not running, whatever part of it noticed first.
    """


class QueueClosedError(NotRunningError):
    """The queue was shut down while the caller waited, or before it asked.

    A kind of :class:`NotRunningError`: a closed queue takes no more points.

    Attributes:
        accepted: how many points of a waiting push were queued before it.
    """

    def __init__(self, message: str, *, accepted: int = 0) -> None:
        super().__init__(message)
        self.accepted = accepted


class ChildStartError(StatsYardError, supervision_errors.ChildStartError):
    """A supervised child could not start; ``__cause__`` is its own error.

    StatsYard's form of :class:`statsyard.supervision.ChildStartError`
    (catching either works), raised by ``StatsYard.start()``.

    Attributes:
        child_id: the child that failed.
    """


class InvalidArgumentError(StatsYardError, ValueError):
    """A StatsYard call got an argument it cannot take (a port out of range,
    a batch size of 0, a message of two lines).

    It says which argument, what was expected and what was given.

    Attributes:
        value: the value given.
    """

    def __init__(self, message: str, *, value: object) -> None:
        super().__init__(message)
        self.value = value


class WriteError(StatsYardError, OSError):
    """A batch could not be written to the data directory."""


class CorruptRecordError(StatsYardError, ValueError):
    """A record or file in the data directory failed its checksum or header check."""


# --- Storage errors (issue 5) ----------------------------------------------------


class NotADataDirectoryError(StatsYardError, ValueError):
    """A path given as a data directory is not a StatsYard data directory.

    Attributes:
        path: the offending path.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


# -- Self-metrics (statsyard.metrics, statsyard.metrics.stat_shipper) ---------------


class MetricError(StatsYardError, ValueError):
    """A metric was declared with a bad name, tags or parameters.

    Also raised when a name and tags already belong to a metric of another
    kind (a counter cannot later be asked for as a histogram).
    """


# -- Configuration and the Graphite listener -----------------------------------


class ConfigError(StatsYardError, ValueError):
    """One or more settings are unknown or invalid; nothing was started.

    Attributes:
        problems: one line per bad setting, naming it, the value given and
            what is expected.
    """

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        head = "invalid configuration"
        if count > 1:
            head += f" ({count} problems)"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class ListenerError(StatsYardError):
    """A network listener's I/O thread failed; the listener actor crashes with it."""


class DataDirectoryInUseError(StatsYardError, RuntimeError):
    """Another writer (process or object) already has the data directory open.

    Attributes:
        path: the data directory.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


# -- Forwarding (statsyard.forward) ---------------------------------------------


class ForwardError(StatsYardError):
    """A forwarder could not deliver a batch.

    Attributes:
        reason: short, metric-tag-safe cause (``connection``, ``timeout``,
            ``http_503``, ``http_400``, ...).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RetryableSendError(ForwardError):
    """Delivery failed in a way worth retrying (connection, timeout, 5xx, 429)."""


class RejectedBatchError(ForwardError):
    """The destination refused the batch for good (a 4xx): it is dropped, counted."""


# -- Reading back: time arguments and the render engine (issue 11) -------------


class TimeFormatError(StatsYardError, ValueError):
    """A time argument (``from``, ``until``, an offset) is in no accepted form.

    Attributes:
        text: the argument as given.
    """

    def __init__(self, message: str, *, text: str) -> None:
        super().__init__(message)
        self.text = text


class RenderError(StatsYardError, ValueError):
    """A render request cannot be answered as asked (the HTTP layer's 400).

    Base of the render engine's errors; the message is one line for the user.
    """


class TargetSyntaxError(RenderError):
    """A render target is not valid graphite-web target syntax.

    Attributes:
        target: the target as given.
        position: index in ``target`` where parsing stopped.
    """

    def __init__(self, message: str, *, target: str, position: int) -> None:
        super().__init__(message)
        self.target = target
        self.position = position


class UnknownFunctionError(RenderError):
    """A render target calls a function the engine does not have.

    Attributes:
        function: the function's name as written.
    """

    def __init__(self, message: str, *, function: str) -> None:
        super().__init__(message)
        self.function = function


class BadArgumentError(RenderError):
    """A render function got an argument of the wrong kind, or too many or few."""


class TooManyPointsError(RenderError):
    """A render request would read more points than ``render.max_points`` allows.

    Attributes:
        limit: the configured limit.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


# -- The HTTP API --------------------------------------------------------------


class HttpBindError(StatsYardError, OSError):
    """The HTTP API could not listen on its address (port taken, bad host).

    Attributes:
        host: the address it was asked to listen on.
        port: the port it was asked for.
    """

    def __init__(self, message: str, *, host: str, port: int) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class PatternError(StatsYardError, ValueError):
    """A series pattern (glob) is malformed, too long or nested too deep.

    Attributes:
        pattern: the pattern as given.
    """

    def __init__(self, message: str, *, pattern: str) -> None:
        super().__init__(message)
        self.pattern = pattern
