"""Evaluate render targets against a :class:`SeriesSource`, as graphite-web does.

:func:`evaluate` parses each target, fetches the series its path
expressions and ``seriesByTag()`` calls name (whisper-aligned, see
:mod:`statsyard.render.resolution`), applies the functions, and returns the
series in target order. Before reading a series it checks the request stays
within ``max_points`` output slots, and it stops as soon as more than
``max_points`` raw points were read, with a
:class:`~statsyard.exceptions.TooManyPointsError` either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from statsyard.exceptions import (
    BadArgumentError,
    TooManyPointsError,
    UnknownFunctionError,
)
from statsyard.render.functions import FUNCTIONS, Context, EmptyResultError
from statsyard.render.grammar import Call, Literal, Node, PathExpression, parse_target
from statsyard.render.params import bind_arguments
from statsyard.render.resolution import RenderSettings, bucket, slots
from statsyard.render.series import TimeSeries
from statsyard.render.source import (
    SeriesKey,
    SeriesSource,
    compile_path_glob,
    parse_series_name,
    parse_tag_expression,
    series_name,
    series_tags,
)

__all__ = ["evaluate"]

logger = logging.getLogger(__name__)

_AGGREGATORS: Final = frozenset(
    name for name, function in FUNCTIONS.items() if function.aggregator
)
"""Series functions an ``aggOrSeriesFunc`` parameter accepts by name."""

_GLOB_CHARS = frozenset("*?[]{}")


def evaluate(
    targets: Sequence[str],
    *,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    source: SeriesSource,
    settings: RenderSettings,
    x_files_factor: float | None = None,
) -> list[TimeSeries]:
    """The series of every target over ``[start_ms, end_ms]``, in target order.

    Args:
        targets: graphite-web targets; blank ones are skipped, as there.
        start_ms: the request's ``from`` (ms; whole seconds are used).
        end_ms: the request's ``until`` (ms), after ``start_ms``.
        now_ms: the request's ``now``: ranges are clamped to it as whisper does.
        source: where series are listed and read.
        settings: steps, naming and the point budget.
        x_files_factor: the request's ``xFilesFactor`` (default: the setting's).

    Raises:
        TargetSyntaxError: a target does not parse.
        UnknownFunctionError: a target calls a function we do not have.
        BadArgumentError: a function got bad arguments, or the range is empty.
        TooManyPointsError: the request would read more than ``max_points``.
    """
    run = _Evaluation(
        source=source,
        settings=settings,
        now=now_ms // 1000,
        x_files_factor=(
            settings.x_files_factor if x_files_factor is None else x_files_factor
        ),
    )
    start, end = start_ms // 1000, end_ms // 1000
    if start >= end:
        raise BadArgumentError(
            f"invalid time range: from ({start}) must be before until ({end})"
        )
    results: list[TimeSeries] = []
    for target in targets:
        if not target.strip():
            continue
        results.extend(run.node(parse_target(target), start, end))
    return results


class _Evaluation:
    """One request's evaluation: its source, settings and point budget."""

    def __init__(
        self,
        *,
        source: SeriesSource,
        settings: RenderSettings,
        now: int,
        x_files_factor: float,
    ) -> None:
        self.source = source
        self.settings = settings
        self.now = now
        self.x_files_factor = x_files_factor
        self.slots_planned = 0
        self.points_read = 0

    def node(self, node: Node, start: int, end: int) -> Any:
        """A node's value: a series list, or a literal's value."""
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, PathExpression):
            return self.fetch_path(node.text, start, end)
        return self.call(node, start, end)

    def call(self, call: Call, start: int, end: int) -> list[TimeSeries]:
        if call.name == "seriesByTag":
            return self.fetch_tagged(call, start, end)
        function = FUNCTIONS.get(call.name)
        if function is None:
            raise UnknownFunctionError(
                f"unknown function {call.name}() in target {call.raw!r}",
                function=call.name,
            )
        args = [self.node(arg, start, end) for arg in call.args]
        kwargs = {key: self.node(value, start, end) for key, value in call.kwargs}
        args, kwargs = bind_arguments(function, args, kwargs, aggregators=_AGGREGATORS)
        context = Context(
            start=start,
            end=end,
            now=self.now,
            x_files_factor=self.x_files_factor,
            max_points=self.settings.max_points,
            evaluate=self.node,
            raw_args=call.args,
        )
        try:
            return function.impl(context, *args, **kwargs)
        except EmptyResultError:
            return []

    # -- fetching -------------------------------------------------------------------

    def fetch_path(self, pattern: str, start: int, end: int) -> list[TimeSeries]:
        """The default-entity series a plain glob names (or one tagged series)."""
        default = self.settings.default_entity
        if ";" in pattern:
            tags = parse_series_name(pattern)
            entity = tags.pop("entity", default)
            metric = tags.pop("name")
            if tags:
                return []  # StatsYard series carry no other tag
            keys = [
                key for key in self.source.series(metric) if key == (metric, entity)
            ]
        else:
            regex = compile_path_glob(pattern)
            keys = [
                (metric, entity)
                for metric, entity in self.source.series(pattern)
                if entity == default and regex.fullmatch(metric)
            ]
        return self.read(sorted(set(keys)), pattern, start, end)

    def fetch_tagged(self, call: Call, start: int, end: int) -> list[TimeSeries]:
        """The series ``seriesByTag('tag=value', ...)`` selects, by name."""
        texts = []
        for arg in call.args:
            if not isinstance(arg, Literal) or not isinstance(arg.value, str):
                raise BadArgumentError(
                    f"seriesByTag() takes quoted tag expressions, got {call.raw!r}"
                )
            texts.append(arg.value)
        if not texts or call.kwargs:
            raise BadArgumentError(
                f"seriesByTag() needs at least one tag expression, got {call.raw!r}"
            )
        expressions = [parse_tag_expression(text) for text in texts]
        if all(expression.matches_empty() for expression in expressions):
            raise BadArgumentError(
                f"{call.raw}: at least one tag expression must require a non-empty "
                "value"
            )
        pattern = "*"
        for expression in expressions:
            exact = expression.tag == "name" and expression.operator == "="
            if exact and not _GLOB_CHARS.intersection(expression.value):
                pattern = expression.value
        default = self.settings.default_entity
        keys = [
            (metric, entity)
            for metric, entity in self.source.series(pattern)
            if all(
                expression.matches(series_tags(metric, entity, default))
                for expression in expressions
            )
        ]
        return self.read(sorted(set(keys)), call.raw, start, end)

    def read(
        self, keys: list[SeriesKey], path_expression: str, start: int, end: int
    ) -> list[TimeSeries]:
        """Fetch each series at its step; sorted by Graphite name as graphite-web."""
        settings = self.settings
        default = settings.default_entity
        planned = []
        for metric, entity in keys:
            step = settings.step_for(metric)
            window = slots(start, end, self.now, step)
            if window is not None:
                planned.append((metric, entity, window))
        self.slots_planned += sum(window.count for _, _, window in planned)
        self.check_budget(self.slots_planned, "slots")
        found = []
        for metric, entity, window in planned:
            timestamps, values = self.source.fetch(
                metric, entity, window.start * 1000, window.end * 1000
            )
            self.points_read += len(timestamps)
            self.check_budget(self.points_read, "points")
            name = series_name(metric, entity, default)
            found.append(
                TimeSeries(
                    name,
                    window.start,
                    window.end,
                    window.step,
                    bucket(timestamps, values, window),
                    tags=series_tags(metric, entity, default),
                    x_files_factor=self.x_files_factor,
                    path_expression=path_expression,
                )
            )
        found.sort(key=lambda series: series.name)
        return found

    def check_budget(self, count: int, what: str) -> None:
        limit = self.settings.max_points
        if count > limit:
            raise TooManyPointsError(
                f"request would read more than {limit} {what} (render.max_points); "
                "narrow the targets or the time range",
                limit=limit,
            )
