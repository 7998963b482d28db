"""The head: points appended since the last checkpoint, kept in memory.

``append`` is the ingest hot path, so the head keeps each column of every
batch in one growing :mod:`array` (series numbers, timestamps, values):
adding a batch is three ``memcpy``. Points are grouped by series later, in
bulk, when something needs it — a query (up to the points it must see, and
kept for the next one) or a checkpoint — at C speed: ``map(operator.call,
...)`` appends each point's position to its series' position array, with no
Python-level loop. A series' points are then picked from the columns by
position.

Arrays rather than lists of Python objects matter beyond their size: the
points of one series lie far apart in memory, and reading scattered objects
(a cache miss each) costs several times more than everything else a
checkpoint does per point.

A checkpoint that compacts in a worker process *freezes* the head: the
catalog's head becomes a new generation whose :attr:`Head.frozen` is the
old one, and appends go to the new generation while the frozen one's
columns are encoded elsewhere. A query reads both (:meth:`Head.piece`,
:meth:`Head.nonempty`). When the blocks are committed, the catalog's head
becomes :meth:`Head.unfrozen`: the same growing columns without the frozen
generation, so that a query sees each point once, in the blocks or in a
head, whichever side of the commit it took its snapshot.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Callable
from operator import call, itemgetter
from typing import Any, Final

from statsyard.storage._batch import Value, ValueColumn

GROUP_CHUNK: Final = 256
"""Points grouped (or picked, by a query) per step: between steps, a query
releases the head's lock and may step aside for ingest."""


def pick(
    timestamps: array[int], values: ValueColumn, positions: array[int]
) -> tuple[list[int], list[Value]]:
    """The timestamps and values at ``positions`` (C speed)."""
    if len(positions) == 1:
        at = positions[0]
        return [timestamps[at]], [values[at]]
    getter = itemgetter(*positions)  # faster than map(array.__getitem__, ...)
    return list(getter(timestamps)), list(getter(values))


class _Columns:
    """The growing columns of a head generation; shared by its frozen and
    unfrozen :class:`Head` objects, which group them each for themselves."""

    __slots__ = ("numbers", "points", "timestamps", "values")

    def __init__(self) -> None:
        self.points = 0
        self.numbers: array[int] = array("I")
        self.timestamps: array[int] = array("q")
        # array("d") while every value is a float, array("q") while every one
        # is an int64, else a list; only ever grows, or is replaced by a list
        # holding the same values and more.
        self.values: ValueColumn = array("d")


class Head:
    """One generation of the head (a checkpoint starts a new one).

    Only the writer thread calls :meth:`add`. Any thread may call
    :meth:`piece` and :meth:`nonempty`; they group the points added so far
    under a lock of this head's own, a chunk at a time, and the writer never
    takes that lock in :meth:`add`, so ingest never waits for a query.

    Args:
        frozen: the previous generation, being compacted: its points are
            this head's too until the compaction is committed.
    """

    __slots__ = (
        "_cols",
        "_grouped",
        "_lock",
        "_pos_appends",
        "_positions",
        "frozen",
    )

    def __init__(self, frozen: Head | None = None) -> None:
        """An empty head (over ``frozen``, if given)."""
        self.frozen = frozen
        """The generation being compacted, or None."""
        self._cols = _Columns()
        self._lock = threading.Lock()
        self._grouped = 0
        """Points whose positions are filed under their series."""
        self._positions: list[array[int]] = []
        """By series number: the positions of its points, in arrival order."""
        self._pos_appends: list[Callable[[int], None]] = []

    @property
    def points(self) -> int:
        """Points added to this generation (not counting :attr:`frozen`)."""
        return self._cols.points

    @property
    def pending(self) -> int:
        """Points not in blocks yet: this generation's and the frozen one's."""
        frozen = self.frozen
        return self._cols.points + (0 if frozen is None else frozen.points)

    def unfrozen(self) -> Head:
        """This generation without :attr:`frozen`, sharing its growing columns.

        The frozen points are in blocks now. Queries holding this object
        still read the frozen points (their snapshot has no blocks of them).
        """
        head = Head()
        head._cols = self._cols
        return head

    def columns(self) -> tuple[array[int], array[int], ValueColumn]:
        """The series numbers, timestamps and values (of a frozen head: final)."""
        cols = self._cols
        return cols.numbers, cols.timestamps, cols.values

    def add(
        self, numbers: array[int], timestamps: array[int], values: ValueColumn
    ) -> None:
        """Add a batch (the writer's thread); columns of equal length.

        The series numbers go last: a reader only looks at points whose
        number is there, so the other columns always hold them.
        """
        cols = self._cols
        column: Any = cols.values
        if type(column) is list or (
            type(values) is array and values.typecode == column.typecode
        ):
            column.extend(values)
        elif not column:
            cols.values = values[:]
        else:  # mixed kinds: a list from now on
            cols.values = [*column.tolist(), *values]
        cols.timestamps.extend(timestamps)
        cols.numbers.extend(numbers)
        cols.points += len(numbers)

    def _group_step(self, upto: int) -> bool:
        """File the positions of the next chunk of the first ``upto`` points.

        Returns:
            False when there was nothing left to file.
        """
        with self._lock:
            start = self._grouped
            if start >= upto:
                return False
            end = min(upto, start + GROUP_CHUNK)
            chunk = self._cols.numbers[start:end]
            for _ in range(len(self._positions), max(chunk) + 1):
                positions: array[int] = array("I")
                self._positions.append(positions)
                self._pos_appends.append(positions.append)
            deque(
                map(call, map(self._pos_appends.__getitem__, chunk), range(start, end)),
                0,
            )
            self._grouped = end
            return True

    def _group(self, pace: Callable[[], None] | None) -> None:
        """Group every point added before the call."""
        upto = len(self._cols.numbers)
        while self._group_step(upto):
            if pace is not None:
                pace()

    def piece(
        self, number: int, pace: Callable[[], None] | None = None
    ) -> tuple[list[int], list[Value]]:
        """Series ``number``'s timestamps and values, in arrival order.

        Holds every point added before the call (the frozen generation's
        first). ``pace`` is called between steps (to let ingest run).
        """
        if self.frozen is None:
            return self._own_piece(number, pace)
        timestamps, values = self.frozen.piece(number, pace)
        more_ts, more_values = self._own_piece(number, pace)
        return timestamps + more_ts, values + more_values

    def _own_piece(
        self, number: int, pace: Callable[[], None] | None
    ) -> tuple[list[int], list[Value]]:
        self._group(pace)
        with self._lock:
            if number >= len(self._positions):
                return [], []
            positions = self._positions[number][:]
            everything = len(positions) == self._grouped
        # Read after grouping: both hold every position filed.
        timestamps, values = self._cols.timestamps, self._cols.values
        if everything:  # the only series: take the columns as they are
            count = len(positions)
            if pace is not None:
                pace()
            return timestamps[:count].tolist(), list(values[:count])
        out_ts: list[int] = []
        out_values: list[Value] = []
        for at in range(0, len(positions), GROUP_CHUNK):
            some_ts, some_values = pick(
                timestamps, values, positions[at : at + GROUP_CHUNK]
            )
            out_ts += some_ts
            out_values += some_values
            if pace is not None:
                pace()
        return out_ts, out_values

    def nonempty(self) -> set[int]:
        """The numbers of the series holding points (frozen ones too)."""
        self._group(None)
        with self._lock:
            found = {number for number, pos in enumerate(self._positions) if pos}
        if self.frozen is not None:
            found |= self.frozen.nonempty()
        return found

    def value_kind(self) -> type | None:
        """``float`` or ``int`` if every value is of that type, else None."""
        column = self._cols.values
        if isinstance(column, list):
            return None
        return float if column.typecode == "d" else int

    def groups(self) -> list[tuple[int, list[int], list[Value]]]:
        """Every series' ``(number, timestamps, values)``, for a checkpoint.

        This generation's only (a frozen head's); nothing is added meanwhile.
        """
        self._group(None)
        with self._lock:
            series = [(n, pos) for n, pos in enumerate(self._positions) if pos]
        timestamps, values = self._cols.timestamps, self._cols.values
        if len(series) == 1:
            return [(series[0][0], timestamps.tolist(), list(values))]
        return [
            (number, *pick(timestamps, values, positions))
            for number, positions in series
        ]
