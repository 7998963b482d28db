"""Helpers shared by the render tests: an in-memory SeriesSource and a runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from statsyard.render import RenderSettings, TimeSeries, evaluate
from statsyard.render.source import SeriesKey

Values = list[float | None]
"""One series' values in a test's data, slot by slot (None: no point there)."""

Key = TypeVar("Key", bound=SeriesKey | str)
"""A series in a test's data: ``(metric, entity)``, or a default-entity metric.

A TypeVar rather than the union itself, since ``Mapping`` is invariant in its
keys: a ``dict[str, ...]`` of plain names is then accepted as it is.
"""

B = 1_699_999_200
"""A base time (s) on a whole hour: slot ``i`` of a 60 s series is ``B + 60 * i``."""

FROM = B - 1
"""A ``from`` whose first whisper slot is ``B``."""

UNTIL = B + 540
"""An ``until`` whose last whisper slot is ``B + 540``: ten 60 s slots."""

NOW = B + 3600


class MemorySource:
    """A SeriesSource over a dict: ``(metric, entity)`` to ``[(ts_ms, value)]``."""

    def __init__(self, data: Mapping[SeriesKey, Sequence[tuple[int, float]]]) -> None:
        self.data = {
            key: sorted(points, key=lambda p: p[0]) for key, points in data.items()
        }
        self.fetches: list[tuple[str, str, int, int]] = []

    def series(self, pattern: str) -> list[SeriesKey]:
        return sorted(self.data)

    def fetch(
        self, metric: str, entity: str, start_ms: int, end_ms: int
    ) -> tuple[list[int], list[float]]:
        self.fetches.append((metric, entity, start_ms, end_ms))
        points = [
            p for p in self.data.get((metric, entity), []) if start_ms <= p[0] < end_ms
        ]
        return [t for t, _ in points], [v for _, v in points]


def slots_source(
    values: Mapping[Key, Sequence[float | None]], *, step: int = 60
) -> MemorySource:
    """A source whose series have ``values[i]`` at ``B + step * i`` (None: no point).

    A plain string key is a default-entity (``graphite``) metric.
    """
    data: dict[SeriesKey, list[tuple[int, float]]] = {}
    for key, series in values.items():
        full = (key, "graphite") if isinstance(key, str) else key
        data[full] = [
            ((B + step * i) * 1000, v) for i, v in enumerate(series) if v is not None
        ]
    return MemorySource(data)


def render(
    targets: str | Sequence[str],
    values: Mapping[Key, Sequence[float | None]],
    *,
    start: int = FROM,
    end: int = UNTIL,
    now: int = NOW,
    settings: RenderSettings | None = None,
    step: int = 60,
) -> list[TimeSeries]:
    """Evaluate ``targets`` over series laid out by :func:`slots_source`."""
    return evaluate(
        [targets] if isinstance(targets, str) else targets,
        start_ms=start * 1000,
        end_ms=end * 1000,
        now_ms=now * 1000,
        source=slots_source(values, step=step),
        settings=settings or RenderSettings(),
    )


def shown(series_list: Sequence[TimeSeries]) -> list[tuple[str, list[float | None]]]:
    """``(name, iterated values)`` of each series, for compact assertions."""
    return [(series.name, list(series)) for series in series_list]
