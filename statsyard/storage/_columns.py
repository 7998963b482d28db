"""Step aggregation over whole numpy columns (the scan's hot path).

:func:`downsample_columns` gives exactly what :func:`._query.downsample`
gives for the same points (its plain-Python reference): ints stay Python
ints and their sums exact, float sums add in the same order with the same
rounding as the interpreter's ``sum()``, ``min``/``max`` keep the first of
equal values. Only the results become Python objects (``tolist()``).

This module imports numpy: import it only when a scan needs it, so that
``import statsyard`` and a command's start-up do not load numpy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from statsyard.storage._batch import Value

if TYPE_CHECKING:
    from numpy.typing import NDArray

Column = Any
"""An int64 or float64 numpy array (or, for the generic encoding, a list)."""
ColumnPiece = tuple[Column, Column]
"""Timestamps (int64 array) and values of part of a series."""
FloatColumns = tuple["NDArray[np.int64]", "NDArray[np.float64]"]
"""Timestamps (ms) and values as floats, one per point."""

_SHORT: Final = 256
"""Buckets up to this long add their floats position by position across all
buckets at once; longer ones (few, then) with the interpreter's ``sum()``."""
_NEUMAIER: Final = sys.version_info >= (3, 12)
"""Python 3.12's ``sum()`` of floats compensates rounding (Neumaier)."""
_EXACT_FLOAT_INT: Final = 2**53


def as_columns(pieces: list[ColumnPiece]) -> ColumnPiece | None:
    """All ``pieces`` (in arrival order) as one int64/float64 column pair.

    Values given as lists (the head's, the generic encoding's) are converted
    when all are ints or all floats. Returns None when the values are not of
    one kind (mixed ints and floats), which the plain-Python path handles.
    """
    stamps: list[NDArray[np.int64]] = []
    columns: list[Any] = []
    kinds: set[str] = set()
    for timestamps, values in pieces:
        if not len(timestamps):
            continue
        if isinstance(values, list):
            kind = set(map(type, values))
            if kind == {int}:
                values = np.array(values, np.int64)
            elif kind == {float}:
                values = np.array(values, np.float64)
            else:
                return None
        stamps.append(np.asarray(timestamps, np.int64))
        columns.append(values)
        kinds.add(values.dtype.kind)
    if len(kinds) > 1:
        return None
    if not stamps:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if len(stamps) == 1:
        return stamps[0], columns[0]
    return np.concatenate(stamps), np.concatenate(columns)


def float_columns(pieces: list[ColumnPiece]) -> FloatColumns:
    """All ``pieces`` (in arrival order) as int64 timestamps and float64 values.

    Ints become the nearest float, as ``float()`` rounds them: for readers
    that compute in floats anyway (the render engine), whatever the kinds.
    """
    stamps = [np.asarray(ts, np.int64) for ts, _ in pieces if len(ts)]
    values = [np.asarray(vs, np.float64) for ts, vs in pieces if len(ts)]
    if not stamps:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if len(stamps) == 1:
        return stamps[0], values[0]
    return np.concatenate(stamps), np.concatenate(values)


def merge_columns(piece: ColumnPiece) -> ColumnPiece:
    """Sort by time, stably (ties keep arrival order), keeping the last of
    equal timestamps: :func:`._query.merge` on columns."""
    timestamps, values = piece
    if len(timestamps) < 2:
        return piece
    if (timestamps[1:] < timestamps[:-1]).any():
        order = np.argsort(timestamps, kind="stable")
        timestamps = timestamps[order]
        values = values[order]
    distinct = timestamps[1:] != timestamps[:-1]
    if not distinct.all():
        keep = np.append(distinct, True)
        timestamps = timestamps[keep]
        values = values[keep]
    return timestamps, values


def select_columns(
    piece: ColumnPiece, start: int | None, end: int | None
) -> ColumnPiece:
    """The points of a time-ordered piece in ``[start, end)``."""
    timestamps, values = piece
    low = 0 if start is None else int(np.searchsorted(timestamps, _clip(start)))
    high = (
        len(timestamps) if end is None else int(np.searchsorted(timestamps, _clip(end)))
    )
    return timestamps[low:high], values[low:high]


def _clip(bound: int) -> int:
    """A query bound as an int64 (timestamps lie far inside that range)."""
    return max(-(2**63), min(bound, 2**63 - 1))


def downsample_columns(
    piece: ColumnPiece, step: int, agg: str, pace: Callable[[], None] | None = None
) -> list[tuple[int, Value]]:
    """:func:`._query.downsample` over a time-ordered column pair.

    Args:
        piece: int64 timestamps, sorted, one per point; int64 or float64 values.
        step: bucket width in ms (positive; at most ``2**62``).
        agg: one of ``avg``, ``min``, ``max``, ``sum``, ``count``, ``last``.
        pace: called between stages (to let ingest run).
    """
    timestamps, values = piece
    n = len(timestamps)
    if not n:
        return []
    buckets = timestamps - timestamps % step
    starts = np.flatnonzero(buckets[1:] != buckets[:-1]) + 1
    starts = np.concatenate(([0], starts))
    ends = np.append(starts[1:], n)
    lengths = ends - starts
    if pace is not None:
        pace()
    result: list[Value]
    if agg == "count":
        result = lengths.tolist()
    elif agg == "last":
        result = values[ends - 1].tolist()
    elif agg in ("min", "max"):
        result = _extremes(values, starts, ends, agg)
    elif values.dtype.kind == "i":
        sums = _int_sums(values, starts, ends, lengths)
        result = [*sums] if agg == "sum" else _int_means(sums, lengths)
    else:
        float_sums = _float_sums(values, starts, ends, lengths)
        if agg == "sum":
            result = float_sums.tolist()
        else:
            result = (float_sums / lengths.astype(np.float64)).tolist()
    return list(zip(buckets[starts].tolist(), result, strict=True))


def _extremes(values: Column, starts: Column, ends: Column, agg: str) -> list[Value]:
    """Per-bucket ``min`` or ``max``, as the builtins give them."""
    ufunc = np.minimum if agg == "min" else np.maximum
    found = ufunc.reduceat(values, starts)
    out: list[Value] = found.tolist()
    if values.dtype.kind == "f":
        # The builtins keep the first of 0.0 and -0.0 (equal); numpy may
        # not: redo buckets whose answer is a zero.
        builtin = min if agg == "min" else max
        for at in np.flatnonzero(found == 0).tolist():
            out[at] = builtin(values[starts[at] : ends[at]].tolist())
    return out


def _int_sums(
    values: Column, starts: Column, ends: Column, lengths: Column
) -> list[int]:
    """Exact per-bucket sums of int64 values (int64 when it cannot overflow)."""
    biggest = max(int(values.max()), -int(values.min()))
    if biggest * int(lengths.max()) < 2**63:
        sums: list[int] = np.add.reduceat(values, starts).tolist()
        return sums
    return [
        sum(values[low:high].tolist())
        for low, high in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def _int_means(sums: list[int], lengths: Column) -> list[Value]:
    """``sum / count`` as Python's int division rounds it (correctly)."""
    if max(map(abs, sums)) <= _EXACT_FLOAT_INT:  # both convert exactly
        means: list[Value] = (np.array(sums, np.float64) / lengths).tolist()
        return means
    return [s / c for s, c in zip(sums, lengths.tolist(), strict=True)]


def _float_sums(
    values: Column, starts: Column, ends: Column, lengths: Column
) -> NDArray[np.float64]:
    """Per-bucket ``sum()`` of floats, bit for bit as the interpreter adds.

    Short buckets add position by position, all buckets at once (the k-th
    value of each bucket in one vectorised step); long ones use ``sum()``.
    """
    sums = np.empty(len(starts), np.float64)
    long = np.flatnonzero(lengths > _SHORT)
    for at in long.tolist():
        sums[at] = sum(values[starts[at] : ends[at]].tolist())
    short = np.flatnonzero(lengths <= _SHORT)
    if not len(short):
        return sums
    # Longest first, so the buckets still adding at position k are a prefix.
    order = short[np.argsort(-lengths[short], kind="stable")]
    first = starts[order]
    counts = lengths[order]
    total = values[first] + 0.0  # sum() starts from the int 0
    compensation = np.zeros(len(order), np.float64)
    descending = -counts
    for k in range(1, int(counts[0])):
        active = int(np.searchsorted(descending, -k))  # buckets longer than k
        x = values[first[:active] + k]
        f = total[:active]
        t = f + x
        if _NEUMAIER:
            compensation[:active] += np.where(
                np.abs(f) >= np.abs(x), (f - t) + x, (x - t) + f
            )
        total[:active] = t
    if _NEUMAIER:
        fix = (compensation != 0) & np.isfinite(compensation)
        total[fix] += compensation[fix]
    sums[order] = total
    return sums
