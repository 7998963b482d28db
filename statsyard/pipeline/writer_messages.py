"""What the writer is asked and answers: WriteBatch and WriteAck.

The consumer sends a :class:`WriteBatch` to the
:class:`~statsyard.pipeline.timestamp_writer.TimestampWriter` and gets a
:class:`WriteAck` (or the error) back; both are frozen values, as every
message between actors.
"""

from __future__ import annotations

import bisect
from typing import Any

import attrs

from statsyard.datapoint import Row

__all__ = ["WriteAck", "WriteBatch"]


@attrs.frozen(slots=True)
class WriteAck:
    """A batch is written (and fsynced when ``synced``).

    ``end`` is the pipeline index just past the batch (0 outside the pipeline).
    """

    end: int
    written: int
    synced: bool
    duplicate: bool = False


@attrs.frozen(slots=True)
class WriteBatch:
    """The consumer's write: valid ``points`` covering indices [start, end).

    ``invalid`` rejected points in that range are committed with it, so that
    every point is accounted for exactly once; ``invalid_at`` are their
    pipeline indices (ascending), which lets the writer trim a batch that
    overlaps what is already committed (None: not known). ``reply`` gets a
    :class:`WriteAck` or the error.
    """

    start: int
    end: int
    points: tuple[Row, ...]
    invalid: int
    reply: Any
    invalid_at: tuple[int, ...] | None = None

    def above(self, committed: int) -> WriteBatch | None:
        """The part of this batch at or above index ``committed``; None if none.

        The ledger, not the sender, decides what is new: a restarted consumer
        may have trimmed its delivery against a committed index that a write
        still pending at the writer has since moved past.

        Raises:
            ValueError: the batch overlaps ``committed`` but does not say
                where its rejected points are, so it cannot be cut exactly.
        """
        if self.end <= committed:
            return None
        if self.start >= committed:
            return self
        rejected_below = 0
        if self.invalid:
            if self.invalid_at is None or len(self.invalid_at) != self.invalid:
                raise ValueError(
                    f"batch [{self.start}, {self.end}) overlaps the committed "
                    f"index {committed} but does not give the indices of its "
                    f"{self.invalid} rejected points; resend it from {committed}"
                )
            rejected_below = bisect.bisect_left(self.invalid_at, committed)
        drop = committed - self.start - rejected_below
        if not 0 <= drop <= len(self.points):
            raise ValueError(
                f"batch [{self.start}, {self.end}) holds {len(self.points)} "
                f"points and {self.invalid} rejections: inconsistent"
            )
        return attrs.evolve(
            self,
            start=committed,
            points=self.points[drop:],
            invalid=self.invalid - rejected_below,
            invalid_at=(
                None if self.invalid_at is None else self.invalid_at[rejected_below:]
            ),
        )
