"""Data points and their validation: the seed's ``%DataPoint{}`` and ``validate/1``.

``validate()`` never raises on bad data: it returns :class:`Valid` or
:class:`Invalid`, and logs every rejection at WARNING with its reason.
``validate_batch()`` is the same check for the hot path, without the
per-point wrapper objects.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_TIMESTAMP_MS",
    "MIN_TIMESTAMP_MS",
    "DataPoint",
    "Invalid",
    "Row",
    "Valid",
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

# Whitespace, C0/C1 control characters, DEL and the Unicode line/paragraph
# separators: none of them may appear in a name.
_BAD_NAME_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]")


def now_ms() -> int:
    """Milliseconds since the Unix epoch, from the wall clock."""
    return time.time_ns() // 1_000_000


@attrs.frozen(slots=True)
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
"""A valid point as a plain tuple: ``(metric, entity, value, timestamp)``."""
_INF: Final = math.inf

# Names repeat endlessly in a metrics stream, so a name that passed once is
# remembered. The cache is bounded; when full it is simply cleared.
_known_good_names: set[str] = set()
_NAME_CACHE_LIMIT: Final = 100_000


def _name_problem(field: str, name: object) -> str | None:
    if type(name) is str and name in _known_good_names:
        return None
    if not isinstance(name, str):
        return f"{field} must be a str, got {type(name).__name__} {name!r}"
    if not name:
        return f"{field} must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"{field} must be at most {MAX_NAME_LENGTH} characters, got {len(name)}"
    bad = _BAD_NAME_CHARS.search(name)
    if bad is not None:
        return (
            f"{field} must not contain whitespace or control characters, "
            f"got {bad.group()!r} at index {bad.start()} of {name!r}"
        )
    if len(_known_good_names) >= _NAME_CACHE_LIMIT:
        _known_good_names.clear()
    _known_good_names.add(name)
    return None


def _value_problem(value: object) -> str | None:
    kind = type(value)
    if kind is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return None
        return f"value must be a finite number, got {value!r}"
    if kind is int:
        return None
    if isinstance(value, bool):
        return f"value must be a number, not a bool, got {value!r}"
    if isinstance(value, int | float):  # subclasses, e.g. numpy scalars
        if math.isfinite(value):
            return None
        return f"value must be a finite number, got {value!r}"
    return f"value must be an int or float, got {type(value).__name__} {value!r}"


def _timestamp_problem(timestamp: object) -> str | None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        return (
            "timestamp must be an int of milliseconds since the epoch, "
            f"got {type(timestamp).__name__} {timestamp!r}"
        )
    if MIN_TIMESTAMP_MS <= timestamp < MAX_TIMESTAMP_MS:
        return None
    seconds = 0 < timestamp < MIN_TIMESTAMP_MS
    hint = " (seconds instead of milliseconds?)" if seconds else ""
    return (
        "timestamp must be milliseconds between 2000-01-01 and 2100-01-01 "
        f"({MIN_TIMESTAMP_MS} <= t < {MAX_TIMESTAMP_MS}), got {timestamp!r}{hint}"
    )


def _check(candidate: Any) -> DataPoint | str:
    """Return the normalised point, or the reason the candidate is bad."""
    if type(candidate) is DataPoint:
        point = candidate
        metric, entity, value, timestamp = (
            point.metric,
            point.entity,
            point.value,
            point.timestamp,
        )
    else:
        point = None
        if isinstance(candidate, tuple):
            if not 3 <= len(candidate) <= 4:
                return (
                    "a tuple must be (metric, entity, value[, timestamp]), "
                    f"got {len(candidate)} items"
                )
            metric, entity, value = candidate[0], candidate[1], candidate[2]
            timestamp = candidate[3] if len(candidate) == 4 else now_ms()
        elif isinstance(candidate, Mapping):
            missing = [f for f in _FIELDS[:3] if f not in candidate]
            if missing:
                return f"a mapping needs keys {', '.join(missing)}"
            extra = sorted(str(k) for k in candidate if k not in _FIELDS)
            if extra:
                return f"unexpected keys {', '.join(extra)}"
            metric, entity, value = (
                candidate["metric"],
                candidate["entity"],
                candidate["value"],
            )
            timestamp = candidate.get("timestamp", None)
            if timestamp is None:
                timestamp = now_ms()
        else:
            return (
                "expected a DataPoint, a (metric, entity, value[, timestamp]) "
                f"tuple or a mapping, got {type(candidate).__name__}"
            )
    problem = (
        _name_problem("metric", metric)
        or _name_problem("entity", entity)
        or _value_problem(value)
        or _timestamp_problem(timestamp)
    )
    if problem is not None:
        return problem
    if point is None:
        point = DataPoint(metric, entity, value, timestamp)
    return point


def _log_rejection(candidate: Any, reason: str) -> None:
    logger.warning("Rejected data point %.200r: %s", candidate, reason)


def validate(candidate: Any) -> Valid | Invalid:
    """Check one candidate point; never raises on bad data.

    Args:
        candidate: a :class:`DataPoint`, a ``(metric, entity, value[, timestamp])``
            tuple, or a mapping with those keys.

    Returns:
        ``Valid(point)`` with a normalised :class:`DataPoint`, or
        ``Invalid(candidate, reason)``; rejections are logged at WARNING.
    """
    result = _check(candidate)
    if type(result) is str:
        _log_rejection(candidate, result)
        return Invalid(candidate, result)
    assert isinstance(result, DataPoint)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("Valid data point %r", result)
    return Valid(result)


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
    tuple costs a tenth of a DataPoint to build, and a valid 4-tuple is
    passed through as it is.

    Returns:
        The valid rows (in input order) and the rejections.
    """
    valid: list[Row] = []
    invalid: list[Invalid] = []
    append_valid = valid.append
    debug = logger.isEnabledFor(logging.DEBUG)
    good = _known_good_names
    lowest, highest = MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS
    for candidate in candidates:
        # Fast path: a 4-tuple or DataPoint with names seen before, a plain
        # finite number and an in-range int timestamp. Anything else (or
        # anything odd, such as an unhashable name) takes the full check.
        kind = type(candidate)
        if kind is tuple and len(candidate) == 4:
            metric, entity, value, timestamp = candidate
        elif kind is DataPoint:
            metric, entity = candidate.metric, candidate.entity
            value, timestamp = candidate.value, candidate.timestamp
        else:
            metric = None
        if metric is not None:
            value_kind = type(value)
            try:
                fast = (
                    metric in good
                    and entity in good
                    and (
                        value_kind is int
                        or (value_kind is float and -_INF < value < _INF)
                    )
                    and type(timestamp) is int
                    and lowest <= timestamp < highest
                )
            except TypeError:
                fast = False
            if fast:
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
            point: DataPoint = result  # type: ignore[assignment]
            if kind is tuple and len(candidate) == 4:
                append_valid(candidate)
            else:
                append_valid((point.metric, point.entity, point.value, point.timestamp))
            if debug:
                logger.debug("Valid data point %r", point)
    return valid, invalid
