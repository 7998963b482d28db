"""graphite-web's aggregation functions (its ``safe.py`` and ``aggfuncs.py``).

Each combines a row or window of values, skipping nulls: ``None`` when
nothing is left (``count`` gives 0; ``avg_zero`` counts nulls as 0;
``multiply`` is null if any value is). ``aggregate()``, ``summarize()``,
``movingWindow()``, ``highest()``, ``sortBy()`` and the ``groupBy`` callbacks
take them by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import reduce
from typing import Final

from statsyard.exceptions import BadArgumentError
from statsyard.render.series import Value

__all__ = [
    "AGGREGATION_FUNCTIONS",
    "AggregationFunction",
    "aggregation_function",
    "safe_div",
    "safe_last",
    "safe_max",
    "safe_min",
    "safe_mul",
    "safe_sum",
    "usable",
]


def usable(values: Sequence[Value]) -> list[float]:
    """The non-null values, in order."""
    return [v for v in values if v is not None]


def safe_sum(values: Sequence[Value]) -> float | None:
    """Sum of the non-null values, None if there are none."""
    present = usable(values)
    return sum(present) if present else None


def _safe_average(values: Sequence[Value]) -> float | None:
    present = usable(values)
    return sum(present) / len(present) if present else None


def _safe_average_zero(values: Sequence[Value]) -> float | None:
    if not values:
        return None
    return sum(0 if v is None else v for v in values) / len(values)


def _safe_median(values: Sequence[Value]) -> float | None:
    present = sorted(usable(values))
    if not present:
        return None
    mid = len(present) // 2
    if len(present) % 2 == 0:
        return float(present[mid - 1] + present[mid]) / 2
    return present[mid]


def safe_min(values: Sequence[Value]) -> float | None:
    """Least non-null value, None if there are none."""
    present = usable(values)
    return min(present) if present else None


def safe_max(values: Sequence[Value]) -> float | None:
    """Greatest non-null value, None if there are none."""
    present = usable(values)
    return max(present) if present else None


def _safe_diff(values: Sequence[Value]) -> float | None:
    present = usable(values)
    if not present:
        return None
    return present[0] + sum(-x for x in present[1:])


def _safe_stddev(values: Sequence[Value]) -> float | None:
    present = usable(values)
    if not present:
        return None
    average = sum(present) / len(present)
    return math.sqrt(sum((v - average) * (v - average) for v in present) / len(present))


def _safe_count(values: Sequence[Value]) -> float | None:
    return len(usable(values))


def _safe_range(values: Sequence[Value]) -> float | None:
    high, low = safe_max(values), safe_min(values)
    if high is None or low is None:
        return None
    return float(high) - float(low)


def _safe_multiply(values: Sequence[Value]) -> float | None:
    if None in values:
        return None
    return reduce(lambda x, y: x * y, [float(v) for v in values if v is not None])


def safe_last(values: Sequence[Value]) -> float | None:
    """Last non-null value, None if there is none."""
    for value in reversed(values):
        if value is not None:
            return value
    return None


def safe_mul(a: Value, b: Value) -> Value:
    """``a * b`` as floats, None if either is None."""
    if a is None or b is None:
        return None
    return float(a) * float(b)


def safe_div(a: Value, b: Value) -> Value:
    """``a / b``, None if ``a`` is None or ``b`` is 0 or None."""
    if a is None or b is None or b == 0:
        return None
    return a / b


AggregationFunction = Callable[[Sequence[Value]], float | None]

AGGREGATION_FUNCTIONS: Final[dict[str, AggregationFunction]] = {
    "average": _safe_average,
    "avg_zero": _safe_average_zero,
    "median": _safe_median,
    "sum": safe_sum,
    "min": safe_min,
    "max": safe_max,
    "diff": _safe_diff,
    "stddev": _safe_stddev,
    "count": _safe_count,
    "range": _safe_range,
    "multiply": _safe_multiply,
    "last": safe_last,
    "rangeOf": _safe_range,
    "avg": _safe_average,
    "total": safe_sum,
    "current": safe_last,
}
"""graphite-web's aggregation functions (``aggregate``, ``summarize``, ...), by name."""


def aggregation_function(name: str, raw: str | None = None) -> AggregationFunction:
    """The aggregation function called ``name``.

    Raises:
        BadArgumentError: no such function.
    """
    found = AGGREGATION_FUNCTIONS.get(name)
    if found is None:
        raise BadArgumentError(
            f"unsupported aggregation function {raw or name!r}: expected one of "
            + ", ".join(AGGREGATION_FUNCTIONS)
        )
    return found
