"""Raw points to whisper-like slots: which step, which range, which value.

StatsYard stores raw points; ``/render`` answers at a step chosen like
carbon's ``storage-schemas.conf``: the first :class:`SchemaRule` whose
``pattern`` (a regex, searched in the metric name) matches gives the step,
else :attr:`RenderSettings.default_step` (60 s, carbon's default).

The range and timestamps are those of whisper's ``fetch`` for the same
``from``/``until``/``now`` (whole seconds): until is clamped to now, and

    fromInterval  = from  - from  % step + step
    untilInterval = until - until % step + step   (+ step more if equal)

and the values are the slots ``fromInterval, fromInterval + step, ...``
before ``untilInterval``. A point at ``t`` ms belongs to the slot
``s - s % step`` with ``s = t // 1000`` (whisper truncates the timestamp);
within a slot the last point wins, and a slot with no point is None.
A range that starts after now has no data (whisper returns nothing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import attrs

from statsyard.exceptions import BadArgumentError
from statsyard.timeparse import parse_duration_s

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from statsyard.config import Config

__all__ = [
    "DEFAULT_MAX_POINTS",
    "DEFAULT_STEP",
    "RenderSettings",
    "SchemaRule",
    "Slots",
    "bucket",
    "parse_step",
    "slots",
]

DEFAULT_STEP: Final = 60
"""Seconds per slot when no schema rule matches (carbon's default)."""

DEFAULT_MAX_POINTS: Final = 2_000_000
"""Points one render may read before it is refused."""


@attrs.frozen
class SchemaRule:
    """``[[render.schema]]``: metrics matching ``pattern`` get ``step`` seconds."""

    pattern: str
    step: int
    regex: re.Pattern[str] = attrs.field(eq=False, repr=False)

    @regex.default
    def _compile(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


@attrs.frozen
class RenderSettings:
    """What the render engine needs from the configuration.

    Attributes:
        default_entity: the entity shown as plain Graphite paths.
        default_step: seconds per slot when no rule matches.
        schema: rules tried in order; the first match gives the step.
        max_points: raw points (and output slots) one render may read.
        x_files_factor: graphite-web's ``DEFAULT_XFILES_FACTOR``.
    """

    default_entity: str = "graphite"
    default_step: int = DEFAULT_STEP
    schema: tuple[SchemaRule, ...] = ()
    max_points: int = DEFAULT_MAX_POINTS
    x_files_factor: float = 0.0

    def step_for(self, metric: str) -> int:
        """Seconds per slot of ``metric``: the first matching rule's step."""
        for rule in self.schema:
            if rule.regex.search(metric):
                return rule.step
        return self.default_step

    @classmethod
    def from_config(cls, config: Config) -> RenderSettings:
        """The render settings of a loaded configuration."""
        render = config.render
        return cls(
            default_entity=config.graphite.default_entity,
            default_step=render.default_step,
            schema=tuple(SchemaRule(p, s) for p, s in render.schema),
            max_points=render.max_points,
        )


@attrs.frozen
class Slots:
    """The slots whisper's fetch returns: ``[start, end)`` every ``step`` s."""

    start: int
    end: int
    step: int

    @property
    def count(self) -> int:
        """Number of slots."""
        return (self.end - self.start) // self.step


def slots(from_s: int, until_s: int, now_s: int, step: int) -> Slots | None:
    """The slots of a fetch, exactly as whisper's ``__archive_fetch`` aligns them.

    Returns:
        None when the range starts after ``now`` (whisper has no data).

    Raises:
        BadArgumentError: ``from_s`` is after ``until_s``.
    """
    if from_s > until_s:
        raise BadArgumentError(
            f"invalid time range: from ({from_s}) is after until ({until_s})"
        )
    if from_s > now_s:
        return None
    until_s = min(until_s, now_s)
    first = from_s - from_s % step + step
    stop = until_s - until_s % step + step
    if first == stop:
        stop += step
    return Slots(first, stop, step)


def bucket(
    timestamps: Sequence[int] | NDArray[np.int64],
    values: Sequence[float] | NDArray[np.float64],
    window: Slots,
) -> list[float | None]:
    """Values per slot of time-ordered points: the last point of a slot wins.

    Slot ``k`` holds the points in ``[start + k * step, start + (k + 1) * step)``
    seconds; as ``start`` is a multiple of ``step``, that is whisper's
    ``s - s % step`` for ``s = t // 1000``. Works on whole columns (numpy),
    as a render may read millions of points.
    """
    import numpy as np  # lazily: start-up does not need it

    count = window.count
    stamps = np.asarray(timestamps, np.int64)
    if not len(stamps):
        return [None] * count
    floats = np.asarray(values, np.float64)
    index = (stamps - window.start * 1000) // (window.step * 1000)
    inside = (index >= 0) & (index < count)
    if not inside.all():
        index, floats = index[inside], floats[inside]
    slotted: NDArray[np.object_] = np.full(count, None, dtype=object)
    if len(index):
        # Time order: the last point of each run of equal slots wins.
        last = np.flatnonzero(np.append(index[1:] != index[:-1], True))
        slotted[index[last]] = floats[last]
    out: list[float | None] = slotted.tolist()
    return out


def parse_step(text: str | int) -> int:
    """A step as carbon writes it (``10s``, ``1m``, ``1h``, ``1d``) or an int
    of seconds, in seconds.

    Raises:
        BadArgumentError: not one of these forms, or not positive.
    """
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise BadArgumentError(str(exc)) from None
