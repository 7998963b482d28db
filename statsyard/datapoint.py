"""Data points and their validation: the seed's ``%DataPoint{}`` and ``validate/1``.

``validate()`` never raises on bad data: it returns :class:`Valid` or
:class:`Invalid`, and logs rejections at WARNING with their reason (at most
once a second per kind of problem, with a count of those held back). An
accepted point is made of plain built-in values only; any exception raised
while looking at a candidate rejects that candidate, never its caller.
``validate_batch()`` is the same check for the hot path, without the
per-point wrapper objects.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from statsyard._ratelimit import RateLimitedLogger

__all__ = [
    "MAX_INT_VALUE",
    "MAX_NAME_LENGTH",
    "MAX_TIMESTAMP_MS",
    "MIN_INT_VALUE",
    "MIN_TIMESTAMP_MS",
    "DataPoint",
    "Invalid",
    "Row",
    "Valid",
    "forbidden_char_index",
    "now_ms",
    "validate",
    "validate_batch",
    "validate_rows",
]

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH: Final = 255
"""Longest metric or entity name, in characters."""

MIN_TIMESTAMP_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z. Anything earlier is almost always seconds, not ms."""

MAX_TIMESTAMP_MS: Final = 4_102_444_800_000
"""2100-01-01T00:00:00Z."""

_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
"""Unicode categories no name may contain: control, format (e.g. U+200B),
surrogate (a lone surrogate cannot be encoded as UTF-8), and every space and
separator (all whitespace is in Cc, Zs, Zl or Zp)."""

_BAD_ASCII = re.compile(r"[\x00-\x20\x7f]")


def forbidden_char_index(name: str) -> int | None:
    """Index of the first character no name may contain, or None: THE rule.

    Validation (:func:`validate`) and the Graphite parser both use it, so a
    name one accepts the other accepts too.
    """
    if name.isascii():
        bad = _BAD_ASCII.search(name)
        return None if bad is None else bad.start()
    for index, char in enumerate(name):
        if char < "\x80":
            if char <= " " or char == "\x7f":
                return index
        elif unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return index
    return None


def now_ms() -> int:
    """Milliseconds since the Unix epoch, from the wall clock."""
    return time.time_ns() // 1_000_000


_NOW: Final[Any] = attrs.NOTHING
"""DataPoint's default timestamp: read the clock (attrs' own marker)."""


@attrs.frozen(slots=True, init=False)
class DataPoint:
    """One measurement: ``value`` of ``metric`` for ``entity`` at ``timestamp``.

    Construction does not validate (that is :func:`validate`'s job, so that a
    bad point can be counted and logged rather than raise in the producer).
    """

    metric: str
    """Dotted metric name, e.g. ``cpu.load``."""
    entity: str
    """What the metric is about, e.g. a host name."""
    value: int | float
    """The measured number."""
    timestamp: int = attrs.field(factory=now_ms)
    """Milliseconds since the Unix epoch; defaults to now."""

    def __init__(
        self,
        metric: str,
        entity: str,
        value: int | float,
        timestamp: int = _NOW,
    ) -> None:
        # What attrs would generate, minus its per-field trip through
        # object.__setattr__: each slot's own descriptor stores the field
        # (which a frozen class's __setattr__ would refuse). A producer
        # builds one of these per point, so this is on the hot path.
        _set_metric(self, metric)
        _set_entity(self, entity)
        _set_value(self, value)
        _set_timestamp(self, now_ms() if timestamp is _NOW else timestamp)


_set_metric: Final[Any] = DataPoint.__dict__["metric"].__set__
_set_entity: Final[Any] = DataPoint.__dict__["entity"].__set__
_set_value: Final[Any] = DataPoint.__dict__["value"].__set__
_set_timestamp: Final[Any] = DataPoint.__dict__["timestamp"].__set__


@attrs.frozen(slots=True)
class Valid:
    """Outcome of :func:`validate` for an acceptable candidate."""

    point: DataPoint


@attrs.frozen(slots=True)
class Invalid:
    """Outcome of :func:`validate` for a rejected candidate, with the reason."""

    candidate: Any
    reason: str


_FIELDS: Final = ("metric", "entity", "value", "timestamp")

Row = tuple[str, str, int | float, int]
"""A valid point as a plain tuple: ``(metric, entity, value, timestamp)``.

Every item is of the exact built-in type (``str``, ``int`` or ``float``,
``int``), whatever subclass the candidate carried, so nothing downstream of
validation ever runs code of the caller's objects.
"""

MIN_INT_VALUE: Final = -(2**63)
"""Smallest int value stored: values are signed 64-bit integers or floats."""
MAX_INT_VALUE: Final = 2**63 - 1
"""Largest int value stored."""

_INF: Final = math.inf
# type.__name__'s own descriptor: a metaclass cannot make reading it run code.
_TYPE_NAME: Final[Any] = type.__dict__["__name__"]
_REPR_LIMIT: Final = 200

# Names repeat endlessly in a metrics stream, so a name that passed once is
# remembered. The cache is bounded; when full it is simply cleared. Only
# exact ``str`` objects go in, so looking one up runs no caller code.
_known_good_names: set[str] = set()
_NAME_CACHE_LIMIT: Final = 100_000

_rejections = RateLimitedLogger(logger)


class _Rejected(Exception):  # noqa: N818 (internal control flow, never escapes)
    """Why a candidate is not a valid point (raised and caught in this module)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _safe_repr(value: object) -> str:
    """``repr(value)``, cut to 200 characters, never raising."""
    try:
        text = repr(value)
        if type(text) is not str:
            raise TypeError("__repr__ returned a non-str")
    except BaseException as error:  # noqa: BLE001 (deliberate: any object may fail)
        _reraise_interrupt(error)
        return f"<{_type_name(value)} whose repr() failed>"
    if len(text) > _REPR_LIMIT:
        return text[:_REPR_LIMIT] + "..."
    return text


def _reraise_interrupt(error: BaseException) -> None:
    """Re-raise a real Ctrl-C in the main thread; swallow anything else.

    A caller's ``__hash__`` or ``__repr__`` may raise anything, even
    ``SystemExit``; in an actor that would stop every actor of the process.
    """
    if isinstance(error, KeyboardInterrupt) and (
        threading.current_thread() is threading.main_thread()
    ):
        raise error


def _type_name(value: object) -> str:
    name = _TYPE_NAME.__get__(type(value), type)
    return name if type(name) is str else "object"


def _describe(value: object) -> str:
    return f"{_type_name(value)} {_safe_repr(value)}"


def _name(field: str, name: object) -> str:
    """The name as an exact ``str``, or raise :class:`_Rejected`."""
    if type(name) is str:
        if name in _known_good_names:
            return name
        text = name
    elif isinstance(name, str):
        text = str.__str__(name)  # an exact copy, whatever the subclass overrides
    else:
        raise _Rejected(f"{field} must be a str, got {_describe(name)}")
    if not text:
        raise _Rejected(f"{field} must not be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise _Rejected(
            f"{field} must be at most {MAX_NAME_LENGTH} characters, got {len(text)}"
        )
    bad = forbidden_char_index(text)
    if bad is not None:
        raise _Rejected(
            f"{field} must not contain whitespace or control characters, "
            f"got {text[bad]!r} at index {bad} of {_safe_repr(text)}"
        )
    if len(_known_good_names) >= _NAME_CACHE_LIMIT:
        _known_good_names.clear()
    _known_good_names.add(text)
    return text


def _int_in_range(value: int) -> int:
    if MIN_INT_VALUE <= value <= MAX_INT_VALUE:
        return value
    raise _Rejected(
        "value must be an int that fits in 64 bits "
        f"({MIN_INT_VALUE} <= value <= {MAX_INT_VALUE}), "
        f"got an int of {value.bit_length()} bits"
    )


def _finite(value: float) -> float:
    if math.isfinite(value):
        return value
    raise _Rejected(f"value must be a finite number, got {value!r}")


def _number(value: object) -> int | float:
    """The value as an exact ``int`` (64-bit) or finite ``float``, or raise."""
    kind = type(value)
    if kind is float:
        return _finite(value)  # type: ignore[arg-type]
    if kind is int:
        return _int_in_range(value)  # type: ignore[arg-type]
    if isinstance(value, bool):
        raise _Rejected(f"value must be a number, not a bool, got {value!r}")
    # Subclasses (e.g. numpy.float64): read through the base type's own slot,
    # so an overridden __float__/__int__ is never called.
    if isinstance(value, float):
        return _finite(float.__float__(value))
    if isinstance(value, int):
        return _int_in_range(int.__int__(value))
    raise _Rejected(f"value must be an int or float, got {_describe(value)}")


def _timestamp(timestamp: object) -> int:
    """The timestamp as an exact ``int`` of ms in range, or raise."""
    if type(timestamp) is int:
        stamp: int = timestamp
    elif isinstance(timestamp, int) and not isinstance(timestamp, bool):
        stamp = int.__int__(timestamp)
    else:
        raise _Rejected(
            "timestamp must be an int of milliseconds since the epoch, "
            f"got {_describe(timestamp)}"
        )
    if MIN_TIMESTAMP_MS <= stamp < MAX_TIMESTAMP_MS:
        return stamp
    seconds = 0 < stamp < MIN_TIMESTAMP_MS
    hint = " (seconds instead of milliseconds?)" if seconds else ""
    shown = (
        stamp if -(10**30) < stamp < 10**30 else f"an int of {stamp.bit_length()} bits"
    )
    raise _Rejected(
        "timestamp must be milliseconds between 2000-01-01 and 2100-01-01 "
        f"({MIN_TIMESTAMP_MS} <= t < {MAX_TIMESTAMP_MS}), got {shown}{hint}"
    )


def _fields(candidate: Any) -> tuple[object, object, object, object]:
    """The four raw fields of a candidate of any accepted shape, or raise."""
    if type(candidate) is DataPoint:
        return candidate.metric, candidate.entity, candidate.value, candidate.timestamp
    if isinstance(candidate, tuple):
        size = len(candidate)
        if not 3 <= size <= 4:
            raise _Rejected(
                "a tuple must be (metric, entity, value[, timestamp]), "
                f"got {size} items"
            )
        timestamp = candidate[3] if size == 4 else now_ms()
        return candidate[0], candidate[1], candidate[2], timestamp
    if isinstance(candidate, Mapping):
        missing = [f for f in _FIELDS[:3] if f not in candidate]
        if missing:
            raise _Rejected(f"a mapping needs keys {', '.join(missing)}")
        extra = sorted(_safe_repr(k) for k in candidate if k not in _FIELDS)
        if extra:
            raise _Rejected(f"unexpected keys {', '.join(extra)}")
        timestamp = candidate.get("timestamp", None)
        if timestamp is None:
            timestamp = now_ms()
        return candidate["metric"], candidate["entity"], candidate["value"], timestamp
    raise _Rejected(
        "expected a DataPoint, a (metric, entity, value[, timestamp]) "
        f"tuple or a mapping, got {_type_name(candidate)}"
    )


def _check(candidate: Any) -> Row | str:
    """The candidate as a plain :data:`Row`, or the reason it is rejected.

    Never raises: whatever a caller's object does when it is looked at
    (a ``__hash__``, ``__eq__``, ``__getitem__`` or ``__len__`` that raises,
    even ``SystemExit``) rejects that one point and nothing else.
    """
    try:
        metric, entity, value, timestamp = _fields(candidate)
        return (
            _name("metric", metric),
            _name("entity", entity),
            _number(value),
            _timestamp(timestamp),
        )
    except _Rejected as rejected:
        return rejected.reason
    except BaseException as error:  # noqa: BLE001 (deliberate: nothing may crash us)
        _reraise_interrupt(error)
        return f"reading the point raised {_describe(error)}"


class _Shown:
    """Formats a candidate for the log only if the line is actually written."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def __str__(self) -> str:
        return _safe_repr(self._value)


def _log_rejection(candidate: Any, reason: str) -> None:
    # One key per kind of problem (the reason's first word: metric, entity,
    # value, timestamp, a tuple, a mapping, ...), so a flood of one kind
    # logs once a second with a count and another kind still shows up.
    _rejections.warning(
        reason.split(" ", 1)[0], "Rejected data point %s: %s", _Shown(candidate), reason
    )


def validate(candidate: Any) -> Valid | Invalid:
    """Check one candidate point; never raises on bad data.

    Args:
        candidate: a :class:`DataPoint`, a ``(metric, entity, value[, timestamp])``
            tuple, or a mapping with those keys.

    Returns:
        ``Valid(point)`` with a :class:`DataPoint` of plain built-in values,
        or ``Invalid(candidate, reason)``; rejections are logged at WARNING,
        at most once a second per kind of problem.
    """
    result = _check(candidate)
    if type(result) is str:
        _log_rejection(candidate, result)
        return Invalid(candidate, result)
    point = DataPoint(*result)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("Valid data point %r", point)
    return Valid(point)


def validate_batch(
    candidates: Iterable[Any],
) -> tuple[list[DataPoint], list[Invalid]]:
    """Validate many candidates at once, returning DataPoints.

    Same rules and logging as :func:`validate`, without a wrapper per point.

    Returns:
        The valid points (in input order) and the rejections.
    """
    rows, invalid = validate_rows(candidates)
    return [DataPoint(*row) for row in rows], invalid


def validate_rows(candidates: Iterable[Any]) -> tuple[list[Row], list[Invalid]]:
    """Validate many candidates at once: the pipeline's hot path.

    Same rules and logging as :func:`validate`, but each valid point comes
    back as a plain :data:`Row` ``(metric, entity, value, timestamp)``: a
    tuple costs a tenth of a DataPoint to build, and a 4-tuple of exact
    built-in values is passed through as it is. Never raises on a bad
    candidate: any exception while looking at one rejects that one.

    Returns:
        The valid rows (in input order) and the rejections.
    """
    valid: list[Row] = []
    invalid: list[Invalid] = []
    append_valid = valid.append
    debug = logger.isEnabledFor(logging.DEBUG)
    good = _known_good_names
    lowest, highest = MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS
    smallest, largest = MIN_INT_VALUE, MAX_INT_VALUE
    for candidate in candidates:
        # Fast path: a 4-tuple or DataPoint of exact built-in types, names
        # seen before, a finite float or 64-bit int and an in-range
        # timestamp. Every test here is on exact types, so none can run a
        # caller's code or raise; anything else takes the full check.
        kind = type(candidate)
        if kind is tuple and len(candidate) == 4:
            metric, entity, value, timestamp = candidate
        elif kind is DataPoint:
            metric, entity = candidate.metric, candidate.entity
            value, timestamp = candidate.value, candidate.timestamp
        else:
            metric = None
        if (
            type(metric) is str
            and type(entity) is str
            and type(timestamp) is int
            and metric in good
            and entity in good
            and lowest <= timestamp < highest
        ):
            value_kind = type(value)
            if (value_kind is float and -_INF < value < _INF) or (
                value_kind is int and smallest <= value <= largest
            ):
                row = candidate if kind is tuple else (metric, entity, value, timestamp)
                append_valid(row)
                if debug:
                    logger.debug("Valid data point %r", row)
                continue
        result = _check(candidate)
        if type(result) is str:
            _log_rejection(candidate, result)
            invalid.append(Invalid(candidate, result))
        else:
            if kind is tuple and len(candidate) == 4:
                # Pass the caller's tuple through if nothing had to be copied.
                first, second, third, fourth = result  # type: ignore[str-unpack]
                if (
                    first is candidate[0]
                    and second is candidate[1]
                    and third is candidate[2]
                    and fourth is candidate[3]
                ):
                    result = candidate
            append_valid(result)  # type: ignore[arg-type]
            if debug:
                logger.debug("Valid data point %r", result)
    return valid, invalid
