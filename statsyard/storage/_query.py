"""Query helpers: merging a series' pieces, range selection, downsampling."""

from __future__ import annotations

import itertools
import operator
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Final

from statsyard.storage._batch import Value
from statsyard.storage._blocks import is_sorted

Piece = tuple[list[int], list[Value]]
"""Timestamps (ms) and values of part of a series."""


def _avg(values: Sequence[Value]) -> Value:
    return sum(values) / len(values)


def _count(values: Sequence[Value]) -> Value:
    return len(values)


def _last(values: Sequence[Value]) -> Value:
    return values[-1]


AGGREGATES: Final[dict[str, Callable[[Sequence[Value]], Value]]] = {
    "avg": _avg,
    "min": min,
    "max": max,
    "sum": sum,
    "count": _count,
    "last": _last,
}
"""The downsampling functions, by name."""


def check_agg(agg: str) -> Callable[[Sequence[Value]], Value]:
    """The aggregate function called ``agg``.

    Raises:
        ValueError: ``agg`` is not one of :data:`AGGREGATES`.
    """
    try:
        return AGGREGATES[agg]
    except (KeyError, TypeError):
        raise ValueError(
            f"agg must be one of {', '.join(AGGREGATES)}, got {agg!r}"
        ) from None


def merge(pieces: list[Piece]) -> Piece:
    """One time-ordered series from pieces (blocks, then the head), stably.

    ``pieces`` come in arrival order, and so do the points within each.
    Points with equal timestamps are the same point written again (a client
    retrying, a replay): only the last written is kept.
    """
    pieces = [piece for piece in pieces if piece[0]]
    if not pieces:
        return [], []
    in_order = all(is_sorted(ts) for ts, _ in pieces) and all(
        earlier[0][-1] <= later[0][0] for earlier, later in itertools.pairwise(pieces)
    )
    if len(pieces) == 1 and in_order:
        return last_write_wins(pieces[0])
    timestamps: list[int] = []
    values: list[Value] = []
    for ts, vs in pieces:
        timestamps += ts
        values += vs
    if not in_order:
        order = sorted(range(len(timestamps)), key=timestamps.__getitem__)
        timestamps = list(map(timestamps.__getitem__, order))
        values = list(map(values.__getitem__, order))
    return last_write_wins((timestamps, values))


def last_write_wins(piece: Piece) -> Piece:
    """A time-ordered piece with one point per timestamp: the last of equals.

    Ties must be in arrival order (a stable sort keeps them so). Checks at C
    speed and copies nothing when there is no duplicate (the usual case).
    """
    timestamps, values = piece
    following = itertools.islice(timestamps, 1, None)
    if not any(map(operator.eq, timestamps, following)):
        return piece
    keep = [*map(operator.ne, timestamps, itertools.islice(timestamps, 1, None)), True]
    return (
        list(itertools.compress(timestamps, keep)),
        list(itertools.compress(values, keep)),
    )


def select(piece: Piece, start: int | None, end: int | None) -> Piece:
    """The points of a time-ordered piece in ``[start, end)``."""
    timestamps, values = piece
    low = 0 if start is None else bisect_left(timestamps, start)
    high = len(timestamps) if end is None else bisect_left(timestamps, end)
    if low == 0 and high == len(timestamps):
        return piece
    return timestamps[low:high], values[low:high]


def downsample(
    piece: Piece,
    step: int,
    aggregate: Callable[[Sequence[Value]], Value],
    pace: Callable[[], None] | None = None,
) -> list[tuple[int, Value]]:
    """Aggregate a time-ordered piece into buckets of ``step`` ms.

    Buckets start at multiples of ``step`` (Unix epoch aligned); each output
    point is ``(bucket start, aggregate of the bucket's values)``; empty
    buckets are left out. ``pace`` is called every few hundred buckets (to
    let ingest run).
    """
    timestamps, values = piece
    out: list[tuple[int, Value]] = []
    append = out.append
    i = 0
    n = len(timestamps)
    while i < n:
        bucket = timestamps[i] - timestamps[i] % step
        j = bisect_left(timestamps, bucket + step, i)
        append((bucket, aggregate(values[i:j])))
        i = j
        if pace is not None and not len(out) % 64:
            pace()
    return out
