"""The render engine's :class:`TimeSeries`, shaped like graphite-web's.

A series covers ``[start, end)`` in whole seconds with one value per
``step``; a value is a float or None (no point in that slot). Like
graphite-web's, a series can be *consolidated* for display or for
combining with coarser series: after ``consolidate(n)`` iterating it yields
one value per ``n`` stored values, combined by ``consolidation_func``
(``average`` by default) and subject to ``x_files_factor`` (the share of
non-null values a group needs, 0 meaning any one will do).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

from statsyard.exceptions import BadArgumentError

__all__ = ["CONSOLIDATION_FUNCTIONS", "TimeSeries", "Value", "tags_of_name"]

Value = float | None
"""One slot of a series: a number, or None for no data."""


def _average(values: Sequence[float]) -> float:
    return sum(values) / len(values)


CONSOLIDATION_FUNCTIONS: Final[dict[str, Callable[[Sequence[float]], float]]] = {
    "sum": sum,
    "average": _average,
    "avg": _average,
    "avg_zero": _average,
    "max": max,
    "min": min,
    "first": lambda values: values[0],
    "last": lambda values: values[-1],
}
"""graphite-web's consolidation functions (``consolidateBy``), by name."""


class TimeSeries:
    """A named series of values at a fixed step, as graphite-web's TimeSeries.

    Attributes:
        name: the display name (``sumSeries(a.*)``, ``cpu;entity=web1``).
        path_expression: the expression the series was fetched with, or its
            name once a function renamed it.
        tags: Graphite tags; ``name`` is always present.
        start: first slot, epoch seconds.
        end: end of the range (exclusive), epoch seconds.
        step: seconds per slot.
        values: the stored values, one per slot.
        consolidation_func: how consolidated groups are combined.
        values_per_point: stored values per value when iterating.
        x_files_factor: least share of non-null values a group needs.
    """

    __slots__ = (
        "consolidation_func",
        "end",
        "name",
        "path_expression",
        "start",
        "step",
        "tags",
        "values",
        "values_per_point",
        "x_files_factor",
    )

    def __init__(
        self,
        name: str,
        start: int,
        end: int,
        step: int,
        values: Iterable[Value],
        *,
        consolidation_func: str = "average",
        tags: dict[str, str] | None = None,
        x_files_factor: float = 0.0,
        path_expression: str | None = None,
    ) -> None:
        self.name = name
        self.start = start
        self.end = end
        self.step = step
        self.values: list[Value] = list(values)
        self.consolidation_func = consolidation_func
        self.values_per_point = 1
        self.x_files_factor = x_files_factor
        self.path_expression = path_expression or name
        self.tags: dict[str, str] = dict(tags) if tags else tags_of_name(name)

    def __repr__(self) -> str:
        return (
            f"TimeSeries(name={self.name!r}, start={self.start}, end={self.end}, "
            f"step={self.step}, values_per_point={self.values_per_point}, "
            f"consolidation_func={self.consolidation_func!r})"
        )

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Value]:
        """The values, consolidated ``values_per_point`` at a time."""
        if self.values_per_point > 1:
            return iter(self._consolidated())
        return iter(self.values)

    def set_tag(self, key: str, value: object) -> None:
        """Set a tag the way graphite-web does: the value as ``str()``."""
        self.tags[key] = _tag_text(value)

    def consolidate(self, values_per_point: int) -> None:
        """Iterate ``values_per_point`` stored values as one from now on."""
        self.values_per_point = int(values_per_point)

    def _consolidated(self) -> list[Value]:
        function = CONSOLIDATION_FUNCTIONS.get(self.consolidation_func)
        if function is None:
            raise BadArgumentError(
                f"invalid consolidation function {self.consolidation_func!r}: "
                f"expected one of {', '.join(CONSOLIDATION_FUNCTIONS)}"
            )
        size = self.values_per_point
        zero_fill = self.consolidation_func == "avg_zero"
        out: list[Value] = []
        for low in range(0, len(self.values), size):
            group = self.values[low : low + size]
            usable = [v for v in group if v is not None]
            if usable and len(usable) / size >= self.x_files_factor:
                if zero_fill:
                    usable = [0.0 if v is None else v for v in group]
                out.append(function(usable))
            else:
                out.append(None)
        return out

    def datapoints(self) -> list[tuple[Value, int]]:
        """``(value, timestamp)`` pairs as graphite-web's JSON lists them."""
        stride = self.step * self.values_per_point
        return list(zip(self, range(self.start, self.end + 1, stride), strict=False))

    def copy(
        self,
        *,
        name: str | None = None,
        start: int | None = None,
        end: int | None = None,
        step: int | None = None,
        values: Iterable[Value] | None = None,
        consolidation_func: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> TimeSeries:
        """A new series like this one, with the given fields replaced.

        As in graphite-web, the copy's path expression is its (new) name and
        its values are *not* consolidated unless ``values`` says otherwise.
        """
        return TimeSeries(
            self.name if name is None else name,
            self.start if start is None else start,
            self.end if end is None else end,
            self.step if step is None else step,
            self.values if values is None else values,
            consolidation_func=consolidation_func or self.consolidation_func,
            tags=dict(self.tags if tags is None else tags),
            x_files_factor=self.x_files_factor,
        )


def _tag_text(value: object) -> str:
    return str(value)


_FUNCTION_LIKE: Final = re.compile(r"^[a-z]+[(].+[)]$", re.IGNORECASE)


def tags_of_name(name: str) -> dict[str, str]:
    """The tags graphite-web gives a new series called ``name``.

    ``a.b;k=v`` gives ``{"k": "v", "name": "a.b"}`` (graphite-web's order:
    the name last); a function-wrapped name such as ``sumSeries(a.*)`` is not
    parsed: ``{"name": name}``.
    """
    if _FUNCTION_LIKE.match(name) or ";" not in name:
        return {"name": name}
    metric, *pairs = name.split(";")
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return {"name": name}
        tags[key] = value
    tags["name"] = metric
    return tags
