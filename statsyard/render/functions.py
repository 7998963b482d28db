"""The render functions, named and behaving as graphite-web 1.1's.

Each function follows graphite-web's ``webapp/graphite/render/functions.py``
(its docs and code are the specification): result names (``sumSeries(a.*)``,
``scale(a.b,10)``, ``timeShift(a.b, "-1d")``), ``None`` handling, the
``xFilesFactor`` default (0), the tags it sets, and how series of different
steps are combined (normalised to the least common multiple of the steps,
each consolidated by its consolidation function). Arguments are checked by
kind as graphite-web's ``params`` do; a bad one is a
:class:`~statsyard.exceptions.BadArgumentError` (graphite-web's
``InputParameterError``), never a crash.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from functools import reduce
from itertools import zip_longest
from typing import Any, Final

import attrs

from statsyard.exceptions import BadArgumentError, TooManyPointsError
from statsyard.render.aggregation import (
    AggregationFunction,
    aggregation_function,
    safe_div,
    safe_max,
    safe_min,
    safe_mul,
    safe_sum,
    usable,
)
from statsyard.render.grammar import Call, Node, PathExpression, parse_target
from statsyard.render.params import Function, Param
from statsyard.render.series import (
    CONSOLIDATION_FUNCTIONS,
    TimeSeries,
    Value,
    tags_of_name,
)
from statsyard.timeparse import parse_offset_ms

__all__ = [
    "FUNCTIONS",
    "SPECIAL_FUNCTIONS",
    "Context",
    "EmptyResultError",
    "normalize",
]

INF: Final = float("inf")

SeriesList = list[TimeSeries]


class EmptyResultError(Exception):
    """Internal: normalising found no series; the call yields ``[]`` (graphite-web)."""


@attrs.define
class Context:
    """What a function may need beyond its arguments (graphite-web's requestContext).

    Attributes:
        start: the request's ``from``, epoch seconds.
        end: the request's ``until``, epoch seconds.
        now: the request's ``now``, epoch seconds.
        x_files_factor: the request's default xFilesFactor.
        max_points: the most slots or points one request may produce.
        raw_args: the current call's arguments as parsed (unevaluated).
        evaluate: evaluates a node over another ``(start, end)`` range.
    """

    start: int
    end: int
    now: int
    x_files_factor: float
    max_points: int
    evaluate: Callable[[Node, int, int], SeriesList]
    raw_args: tuple[Node, ...] = ()


# -- shared machinery -------------------------------------------------------------


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def normalize(
    series_lists: Sequence[Sequence[TimeSeries]],
) -> tuple[SeriesList, int, int, int]:
    """Consolidate series to a common step (the LCM) as graphite-web's ``normalize``.

    Returns:
        The series (consolidated in place), start, end and step.

    Raises:
        EmptyResultError: no series at all.
    """
    flat = [series for series_list in series_lists for series in series_list]
    if not flat:
        raise EmptyResultError
    step = reduce(_lcm, [series.step for series in flat])
    for series in flat:
        series.consolidate(step // series.step)
    start = min(series.start for series in flat)
    end = max(series.end for series in flat)
    end -= (end - start) % step
    return flat, start, end, step


def _xff(non_null: int, total: float, x_files_factor: float) -> bool:
    if not non_null or not total:
        return False
    return non_null / total >= x_files_factor


def _xff_values(values: Sequence[Value], x_files_factor: float) -> bool:
    if not values:
        return False
    return _xff(len(usable(values)), len(values), x_files_factor)


def format_path_expressions(series_list: Sequence[TimeSeries]) -> str:
    """The distinct path expressions of ``series_list``, comma-joined in order."""
    seen: list[str] = []
    for series in series_list:
        if series.path_expression not in seen:
            seen.append(series.path_expression)
    return ",".join(seen)


def _first_path_expression(name: str) -> str | None:
    """The first metric path in a function-wrapped name (graphite-web's helper)."""
    try:
        node: Node = parse_target(name)
    except ValueError:
        return None
    while True:
        if isinstance(node, PathExpression):
            return node.text
        if isinstance(node, Call) and node.args:
            node = node.args[0]
            continue
        return None


def _node_or_tag(series: TimeSeries, node: int | str, path: str | None) -> str:
    if (
        isinstance(node, int | float)
        and not isinstance(node, bool)
        and node == int(node)
    ):
        try:
            return (path or series.name).split(";", 2)[0].split(".")[int(node)]
        except IndexError:
            pass
    return series.tags.get(str(node), "")


def _aggregation_key(series: TimeSeries, nodes: Sequence[int | str]) -> str:
    path = None
    if series.name.endswith(")"):
        path = _first_path_expression(series.name)
    return ".".join(_node_or_tag(series, node, path) for node in nodes)


def _aggregate(
    context: Context,
    series_lists: Sequence[Sequence[TimeSeries]],
    func: str,
    x_files_factor: float | None = None,
) -> SeriesList:
    """graphite-web's ``aggregate``: one series combining all, point by point."""
    raw = func
    if func.endswith("Series"):
        func = func[: -len("Series")]
    combine = aggregation_function(func, raw)
    if not series_lists or not any(series_lists):
        return []
    try:
        flat, start, end, step = normalize(series_lists)
    except EmptyResultError:
        return []
    xff = context.x_files_factor if x_files_factor is None else x_files_factor
    name = f"{func}Series({format_path_expressions(flat)})"
    values = [
        combine(row) if _xff_values(row, xff) else None for row in zip_longest(*flat)
    ]
    tags = dict(flat[0].tags)
    for series in flat:
        tags = {k: v for k, v in tags.items() if series.tags.get(k) == v}
    tags.setdefault("name", name)
    tags["aggregatedBy"] = func
    return [TimeSeries(name, start, end, step, values, tags=tags, x_files_factor=xff)]


def _fmt_g(number: float) -> str:
    """``"%g" % number``, as graphite-web formats numbers in names."""
    return "%g" % float(number)  # noqa: UP031 (printf-style %g is the spec)


# -- the functions ------------------------------------------------------------------


def aggregate(
    context: Context,
    series_list: SeriesList,
    func: str,
    x_files_factor: float | None = None,
) -> SeriesList:
    """``aggregate(seriesList, func, xFilesFactor=None)``: combine with ``func``."""
    return _aggregate(context, [series_list], func, x_files_factor)


def sum_series(context: Context, *series_lists: SeriesList) -> SeriesList:
    """``sumSeries(*seriesLists)``: the sum at each point."""
    return _aggregate(context, series_lists, "sum")


def average_series(context: Context, *series_lists: SeriesList) -> SeriesList:
    """``averageSeries(*seriesLists)``: the average at each point."""
    return _aggregate(context, series_lists, "average")


def min_series(context: Context, *series_lists: SeriesList) -> SeriesList:
    """``minSeries(*seriesLists)``: the least value at each point."""
    return _aggregate(context, series_lists, "min")


def max_series(context: Context, *series_lists: SeriesList) -> SeriesList:
    """``maxSeries(*seriesLists)``: the greatest value at each point."""
    return _aggregate(context, series_lists, "max")


def alias(context: Context, series_list: SeriesList, new_name: str) -> SeriesList:
    """``alias(seriesList, newName)``: rename every series."""
    for series in series_list:
        series.name = new_name
    return series_list


def alias_by_node(
    context: Context, series_list: SeriesList, *nodes: int | str
) -> SeriesList:
    """``aliasByNode(seriesList, *nodes)``: name from path nodes or tags."""
    for series in series_list:
        series.name = _aggregation_key(series, nodes)
    return series_list


def alias_by_tags(
    context: Context, series_list: SeriesList, *tags: int | str
) -> SeriesList:
    """``aliasByTags(seriesList, *tags)``: as aliasByNode."""
    return alias_by_node(context, series_list, *tags)


def scale(context: Context, series_list: SeriesList, factor: float) -> SeriesList:
    """``scale(seriesList, factor)``: multiply every value."""
    for series in series_list:
        series.set_tag("scale", factor)
        series.name = f"scale({series.name},{_fmt_g(factor)})"
        series.path_expression = series.name
        series.values = [safe_mul(value, factor) for value in series]
    return series_list


def offset(context: Context, series_list: SeriesList, factor: float) -> SeriesList:
    """``offset(seriesList, factor)``: add a constant to every value."""
    for series in series_list:
        series.set_tag("offset", factor)
        series.name = f"offset({series.name},{_fmt_g(factor)})"
        series.path_expression = series.name
        series.values = [None if v is None else v + factor for v in series]
    return series_list


def absolute(context: Context, series_list: SeriesList) -> SeriesList:
    """``absolute(seriesList)``: the absolute value of every value."""
    for series in series_list:
        series.set_tag("absolute", 1)
        series.name = f"absolute({series.name})"
        series.path_expression = series.name
        series.values = [None if v is None else abs(v) for v in series]
    return series_list


def _check_bucket_count(context: Context, count: int, what: str) -> None:
    if count > context.max_points:
        raise TooManyPointsError(
            f"{what} would make {count} points, more than render.max_points "
            f"({context.max_points})",
            limit=context.max_points,
        )


def _summarize_values(
    context: Context,
    series: TimeSeries,
    func: str,
    interval: int,
    new_start: int,
    new_end: int,
) -> tuple[list[Value], int]:
    if interval <= 0:
        raise BadArgumentError(f"summarize interval must be positive, got {interval} s")
    _check_bucket_count(context, (new_end - new_start) // interval, "summarize()")
    combine = aggregation_function(func)
    timestamps = list(range(series.start, series.end, series.step))
    datapoints = list(series)
    interval_points = interval / series.step
    count = min(len(timestamps), len(datapoints))
    values: list[Value] = []
    i = 0
    bucket = new_start
    while bucket < new_end:
        low = i
        non_null = 0
        while i < count and timestamps[i] < bucket + interval:
            if timestamps[i] <= bucket:
                low = i
            if timestamps[i] >= bucket and datapoints[i] is not None:
                non_null += 1
            i += 1
        if _xff(non_null, interval_points, series.x_files_factor):
            values.append(combine(datapoints[low:i]))
        else:
            values.append(None)
        bucket += interval
    return values, bucket


def _interval_seconds(text: str) -> int:
    return parse_offset_ms(text) // 1000


def summarize(
    context: Context,
    series_list: SeriesList,
    interval_string: str,
    func: str = "sum",
    align_to_from: bool = False,
) -> SeriesList:
    """``summarize(seriesList, intervalString, func='sum', alignToFrom=False)``.

    Aggregates the values into interval buckets aligned on the epoch (or on
    the series' start with ``alignToFrom``).
    """
    interval = _interval_seconds(interval_string)
    if interval <= 0:
        raise BadArgumentError(
            f"summarize interval must be positive, got {interval_string!r}"
        )
    results = []
    for series in series_list:
        if align_to_from:
            new_start, new_end = series.start, series.end
        else:
            new_start = series.start - series.start % interval
            new_end = series.end - series.end % interval + interval
        values, aligned_end = _summarize_values(
            context, series, func, interval, new_start, new_end
        )
        if align_to_from:
            new_end = aligned_end
        series.set_tag("summarize", interval_string)
        series.set_tag("summarizeFunction", func)
        suffix = ", true" if align_to_from else ""
        name = f'summarize({series.name}, "{interval_string}", "{func}"{suffix})'
        results.append(
            series.copy(
                name=name, start=new_start, end=new_end, step=interval, values=values
            )
        )
    return results


def _non_negative_delta(
    value: Value, previous: Value, max_value: float | None, min_value: float | None
) -> tuple[Value, Value]:
    if value is None:
        return None, None
    if max_value is not None and value > max_value:
        return None, None
    if min_value is not None and value < min_value:
        return None, None
    if previous is None:
        return None, value
    if value >= previous:
        return value - previous, value
    if max_value is not None:
        return max_value + 1 + value - previous - (min_value or 0), value
    if min_value is not None:
        return value - min_value, value
    return None, value


def per_second(
    context: Context,
    series_list: SeriesList,
    max_value: float | None = None,
    min_value: float | None = None,
) -> SeriesList:
    """``perSecond(seriesList, maxValue=None, minValue=None)``.

    The non-negative change per second of a counter; a wrap counts up to
    ``maxValue`` (from ``minValue``), a reset without them is null.
    """
    results = []
    for series in series_list:
        values: list[Value] = []
        previous: Value = None
        for value in series:
            delta, previous = _non_negative_delta(value, previous, max_value, min_value)
            values.append(None if delta is None else round(delta / series.step, 6))
        series.set_tag("perSecond", 1)
        results.append(series.copy(name=f"perSecond({series.name})", values=values))
    return results


def non_negative_derivative(
    context: Context,
    series_list: SeriesList,
    max_value: float | None = None,
    min_value: float | None = None,
) -> SeriesList:
    """``nonNegativeDerivative(seriesList, maxValue=None, minValue=None)``.

    The change from the previous value, null where a counter went down
    (unless ``maxValue``/``minValue`` say how it wrapped).
    """
    results = []
    for series in series_list:
        values: list[Value] = []
        previous: Value = None
        for value in series:
            delta, previous = _non_negative_delta(value, previous, max_value, min_value)
            values.append(delta)
        series.set_tag("nonNegativeDerivative", 1)
        name = f"nonNegativeDerivative({series.name})"
        results.append(series.copy(name=name, values=values))
    return results


def derivative(context: Context, series_list: SeriesList) -> SeriesList:
    """``derivative(seriesList)``: the change from the previous value."""
    results = []
    for series in series_list:
        values: list[Value] = []
        previous: Value = None
        for value in series:
            if previous is None or value is None:
                values.append(None)
            else:
                values.append(value - previous)
            previous = value
        series.set_tag("derivative", 1)
        results.append(series.copy(name=f"derivative({series.name})", values=values))
    return results


def integral(context: Context, series_list: SeriesList) -> SeriesList:
    """``integral(seriesList)``: the running sum (None stays None)."""
    results = []
    for series in series_list:
        values: list[Value] = []
        current = 0.0
        for value in series:
            if value is None:
                values.append(None)
            else:
                current += value
                values.append(current)
        series.set_tag("integral", 1)
        results.append(series.copy(name=f"integral({series.name})", values=values))
    return results


def moving_window(
    context: Context,
    series_list: SeriesList,
    window_size: int | str,
    func: str = "average",
    x_files_factor: float | None = None,
) -> SeriesList:
    """``movingWindow(seriesList, windowSize, func='average', xFilesFactor=None)``.

    As graphite-web, it fetches its first argument again from ``windowSize``
    earlier, so the first points have a full window.
    """
    if not series_list:
        return []
    if isinstance(window_size, str):
        preview = abs(parse_offset_ms(window_size)) // 1000
    else:
        preview = max(series.step for series in series_list) * int(window_size)
    combine = aggregation_function(func)
    previews = context.evaluate(
        context.raw_args[0], context.start - preview, context.end
    )
    tag_name = "moving" + func.capitalize()
    results = []
    for series in previews:
        if isinstance(window_size, str):
            name = f'{tag_name}({series.name},"{window_size}")'
            window = preview // series.step
        else:
            name = f"{tag_name}({series.name},{window_size})"
            window = int(window_size)
        series.set_tag(tag_name, window_size)
        xff = series.x_files_factor if x_files_factor is None else x_files_factor
        values: list[Value] = []
        raw = series.values
        for i in range(window + 1, len(raw) + 1):
            present = usable(raw[i - window : i])
            if present and _xff(len(present), window, xff):
                values.append(combine(present))
            else:
                values.append(None)
        results.append(
            series.copy(name=name, start=series.start + preview, values=values)
        )
    return results


def moving_average(
    context: Context,
    series_list: SeriesList,
    window_size: int | str,
    x_files_factor: float | None = None,
) -> SeriesList:
    """``movingAverage(seriesList, windowSize, xFilesFactor=None)``.

    The average of the ``windowSize`` points (or the interval) ending at each
    point, reading that window before ``from`` too.
    """
    return moving_window(context, series_list, window_size, "average", x_files_factor)


def keep_last_value(
    context: Context, series_list: SeriesList, limit: float = INF
) -> SeriesList:
    """``keepLastValue(seriesList, limit=inf)``: fill gaps of at most ``limit``."""
    for series in series_list:
        series.name = f"keepLastValue({series.name})"
        series.path_expression = series.name
        nones = 0
        last: Value = None
        values = list(series)
        out = series.values
        for i, value in enumerate(values):
            if value is None:
                nones += 1
                continue
            if 0 < nones <= limit and last is not None:
                for index in range(i - nones, i):
                    out[index] = last
            nones = 0
            last = value
        if 0 < nones <= limit and last is not None:
            for index in range(len(out) - nones, len(out)):
                out[index] = last
    return series_list


def transform_null(
    context: Context,
    series_list: SeriesList,
    default: float = 0,
    reference_series: SeriesList | None = None,
) -> SeriesList:
    """``transformNull(seriesList, default=0, referenceSeries=None)``.

    Replaces nulls with ``default`` (only where a reference series has data).
    """
    defaults: list[Value] | None = None
    if reference_series:
        defaults = [
            default if any(v is not None for v in row) else None
            for row in zip_longest(*reference_series)
        ]
    for series in series_list:
        series.set_tag("transformNull", default)
        if reference_series:
            series.set_tag("referenceSeries", 1)
            series.name = (
                f"transformNull({series.name},{_fmt_g(default)},referenceSeries)"
            )
        else:
            series.name = f"transformNull({series.name},{_fmt_g(default)})"
        series.path_expression = series.name
        if defaults:
            series.values = [
                fill if value is None else value
                for value, fill in zip_longest(series, defaults)
            ]
        else:
            series.values = [default if value is None else value for value in series]
    return series_list


def time_shift(
    context: Context,
    series_list: SeriesList,
    time_shift: str,
    reset_end: bool = True,
    align_dst: bool = False,
) -> SeriesList:
    """``timeShift(seriesList, timeShift, resetEnd=True, alignDST=False)``.

    ``alignDST`` is accepted and has no effect: StatsYard renders in UTC.
    """
    if time_shift[:1].isdigit():
        time_shift = "-" + time_shift
    delta = parse_offset_ms(time_shift) // 1000
    if not series_list:
        return []
    first = series_list[0]
    results = []
    shifted_list = context.evaluate(
        context.raw_args[0], context.start + delta, context.end + delta
    )
    for shifted in shifted_list:
        shifted.set_tag("timeShift", time_shift)
        shifted.name = f'timeShift({shifted.name}, "{time_shift}")'
        if reset_end:
            shifted.end = first.end
        else:
            shifted.end = shifted.end - shifted.start + first.start
        shifted.start = first.start
        results.append(shifted)
    return results


def as_percent(
    context: Context,
    series_list: SeriesList,
    total: Any = None,
    *nodes: int | str,
) -> SeriesList:
    """``asPercent(seriesList, total=None, *nodes)``.

    Each series as a percentage of the total of all, of a number, of a
    series, of matching series, or of its node group.
    """
    normalize([series_list])
    xff = context.x_files_factor
    if nodes:
        return _as_percent_by_nodes(context, series_list, total, nodes)
    total_values: Sequence[Value] | TimeSeries
    total_text: str | None
    if total is None:
        total_values = [safe_sum(row) for row in zip_longest(*series_list)]
        total_text = f"sumSeries({format_path_expressions(series_list)})"
    elif isinstance(total, list):
        if len(total) not in (1, len(series_list)):
            raise BadArgumentError(
                "asPercent second argument must be missing, a single digit, "
                "reference exactly 1 series or reference the same number of "
                "series as the first argument"
            )
        total_values, total_text = [], None
        if len(total) == 1:
            normalize([series_list, total])
            total_values = total[0]
            total_text = total[0].name
    elif isinstance(total, int | float) and not isinstance(total, bool):
        total_values = [total] * len(series_list[0])
        total_text = str(total)
    else:
        raise BadArgumentError(
            f"asPercent total must be a number, a series list or None, got {total!r}"
        )
    results = []
    if isinstance(total, list) and len(total) == len(series_list):
        pairs = zip(
            sorted(series_list, key=lambda s: s.name),
            sorted(total, key=lambda s: s.name),
            strict=True,
        )
        for series, divisor in pairs:
            name = f"asPercent({series.name},{divisor.name})"
            _, start, end, step = normalize([(series, divisor)])
            values = [
                safe_mul(safe_div(a, b), 100.0) for a, b in zip_longest(series, divisor)
            ]
            results.append(
                TimeSeries(name, start, end, step, values, x_files_factor=xff)
            )
        return results
    for series in series_list:
        values = [
            safe_mul(safe_div(a, b), 100.0)
            for a, b in zip_longest(series, total_values)
        ]
        name = f"asPercent({series.name},{total_text or series.path_expression})"
        results.append(
            TimeSeries(
                name, series.start, series.end, series.step, values, x_files_factor=xff
            )
        )
    return results


def _sum_group(context: Context, group: SeriesList) -> TimeSeries:
    if len(group) == 1:
        return group[0]
    name = f"sumSeries({format_path_expressions(group)})"
    _, start, end, step = normalize([group])
    values = [safe_sum(row) for row in zip_longest(*group)]
    return TimeSeries(
        name, start, end, step, values, x_files_factor=context.x_files_factor
    )


def _as_percent_by_nodes(
    context: Context, series_list: SeriesList, total: Any, nodes: Sequence[int | str]
) -> SeriesList:
    xff = context.x_files_factor
    keys: list[str] = []
    groups: dict[str, SeriesList] = {}
    for series in series_list:
        key = _aggregation_key(series, nodes)
        if key not in groups:
            groups[key] = []
            keys.append(key)
        groups[key].append(series)
    totals: dict[str, TimeSeries] = {}
    if total is None:
        for key in keys:
            totals[key] = _sum_group(context, groups[key])
    elif isinstance(total, list):
        total_groups: dict[str, SeriesList] = {}
        for series in total:
            key = _aggregation_key(series, nodes)
            if key not in total_groups:
                total_groups[key] = []
                if key not in keys:
                    keys.append(key)
            total_groups[key].append(series)
        for key, group in total_groups.items():
            totals[key] = _sum_group(context, group)
    else:
        raise BadArgumentError(
            "asPercent total must be None or a seriesList with nodes"
        )
    results = []
    for key in keys:
        if key not in groups:
            divisor = totals[key]
            results.append(
                TimeSeries(
                    f"asPercent(MISSING,{divisor.name})",
                    divisor.start,
                    divisor.end,
                    divisor.step,
                    [None for _ in divisor],
                    x_files_factor=xff,
                )
            )
            continue
        for series in groups[key]:
            if key not in totals:
                name = f"asPercent({series.name},MISSING)"
                start, end, step = series.start, series.end, series.step
                values: list[Value] = [None for _ in series]
            else:
                divisor = totals[key]
                name = f"asPercent({series.name},{divisor.name})"
                _, start, end, step = normalize([(series, divisor)])
                values = [
                    safe_mul(safe_div(a, b), 100.0)
                    for a, b in zip_longest(series, divisor)
                ]
            results.append(
                TimeSeries(name, start, end, step, values, x_files_factor=xff)
            )
    return results


def _sort_key(function: AggregationFunction) -> Callable[[TimeSeries], float]:
    def key(series: TimeSeries) -> float:
        value = function(list(series))
        return -INF if value is None else value

    return key


def highest(
    context: Context, series_list: SeriesList, n: int = 1, func: str = "average"
) -> SeriesList:
    """``highest(seriesList, n=1, func='average')``: the n greatest by ``func``."""
    series_list.sort(key=_sort_key(aggregation_function(func)), reverse=True)
    return series_list[: int(n)]


def lowest(
    context: Context, series_list: SeriesList, n: int = 1, func: str = "average"
) -> SeriesList:
    """``lowest(seriesList, n=1, func='average')``: the n least by ``func``."""
    series_list.sort(key=_sort_key(aggregation_function(func)))
    return series_list[: int(n)]


def highest_average(context: Context, series_list: SeriesList, n: int) -> SeriesList:
    """``highestAverage(seriesList, n)``: the n series of greatest average."""
    return highest(context, series_list, n, "average")


def highest_current(context: Context, series_list: SeriesList, n: int) -> SeriesList:
    """``highestCurrent(seriesList, n)``: by last non-null value."""
    return highest(context, series_list, n, "current")


def highest_max(context: Context, series_list: SeriesList, n: int) -> SeriesList:
    """``highestMax(seriesList, n)``: the n series of greatest maximum."""
    return highest(context, series_list, n, "max")


def lowest_average(context: Context, series_list: SeriesList, n: int) -> SeriesList:
    """``lowestAverage(seriesList, n)``: the n series of least average."""
    return lowest(context, series_list, n, "average")


def limit(context: Context, series_list: SeriesList, n: int) -> SeriesList:
    """``limit(seriesList, n)``: the first n series."""
    return series_list[0:n]


def sort_by(
    context: Context,
    series_list: SeriesList,
    func: str = "average",
    reverse: bool = False,
) -> SeriesList:
    """``sortBy(seriesList, func='average', reverse=False)``: by an aggregate."""
    series_list.sort(key=_sort_key(aggregation_function(func)), reverse=reverse)
    return series_list


def sort_by_name(
    context: Context,
    series_list: SeriesList,
    natural: bool = False,
    reverse: bool = False,
) -> SeriesList:
    """``sortByName(seriesList, natural=False, reverse=False)``: by name."""
    if natural:

        def natural_key(series: TimeSeries) -> str:
            return re.sub(r"(\d+)", lambda m: f"{int(m.group(0)):010}", series.name)

        series_list.sort(key=natural_key, reverse=reverse)
    else:
        series_list.sort(key=lambda series: series.name, reverse=reverse)
    return series_list


def sort_by_maxima(context: Context, series_list: SeriesList) -> SeriesList:
    """``sortByMaxima(seriesList)``: by greatest value, descending."""
    series_list.sort(key=_sort_key(safe_max), reverse=True)
    return series_list


def _apply_callback(context: Context, group: SeriesList, callback: str) -> TimeSeries:
    function = FUNCTIONS.get(callback)
    if function is not None:
        return function.impl(context, group)[0]
    return _aggregate(context, [group], callback)[0]


def group_by_nodes(
    context: Context, series_list: SeriesList, callback: str, *nodes: int | str
) -> SeriesList:
    """``groupByNodes(seriesList, callback, *nodes)``: combine per node values."""
    keys: list[str] = []
    groups: dict[str, SeriesList] = {}
    for series in series_list:
        key = _aggregation_key(series, nodes)
        if key not in groups:
            groups[key] = []
            keys.append(key)
        groups[key].append(series)
    results = []
    for key in keys:
        combined = _apply_callback(context, groups[key], callback)
        combined.name = key
        results.append(combined)
    return results


def group_by_node(
    context: Context,
    series_list: SeriesList,
    node_num: int | str,
    callback: str = "average",
) -> SeriesList:
    """``groupByNode(seriesList, nodeNum, callback='average')``: combine per node."""
    return group_by_nodes(context, series_list, callback, node_num)


def group_by_tags(
    context: Context, series_list: SeriesList, callback: str, *tags: str
) -> SeriesList:
    """``groupByTags(seriesList, callback, *tags)``: combine per tag values."""
    if not tags:
        raise BadArgumentError("groupByTags(): no tags specified")
    name = callback
    if "name" not in tags:
        names = {series.tags["name"] for series in series_list}
        name = next(iter(names)) if len(names) == 1 else callback
    keys: list[str] = []
    groups: dict[str, SeriesList] = {}
    for series in series_list:
        if "name" not in tags:
            parts = sorted(f"{tag}={series.tags.get(tag, '')}" for tag in tags)
            key = ";".join([name, *parts])
        else:
            parts = sorted(
                f"{tag}={series.tags.get(tag, '')}" for tag in tags if tag != "name"
            )
            key = ";".join([series.tags["name"], *parts])
        if key not in groups:
            groups[key] = []
            keys.append(key)
        groups[key].append(series)
    results = []
    for key in keys:
        combined = _apply_callback(context, groups[key], callback)
        combined.name = key
        combined.path_expression = key
        combined.tags = tags_of_name(key)
        results.append(combined)
    return results


def consolidate_by(
    context: Context, series_list: SeriesList, consolidation_func: str
) -> SeriesList:
    """``consolidateBy(seriesList, consolidationFunc)``.

    How values are merged when points are consolidated (``maxDataPoints``,
    combining series of different steps): sum, average, min, max, first, last.
    """
    for series in series_list:
        series.consolidation_func = consolidation_func
        series.set_tag("consolidateBy", consolidation_func)
        series.name = f'consolidateBy({series.name},"{consolidation_func}")'
        series.path_expression = series.name
    return series_list


# -- more of graphite-web's everyday functions ------------------------------------


def _regex(function: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise BadArgumentError(
            f"bad regex {pattern!r} for {function}(): {exc}"
        ) from None


def diff_series(context: Context, *series_lists: SeriesList) -> SeriesList:
    """``diffSeries(*seriesLists)``: the first series minus the others."""
    return _aggregate(context, series_lists, "diff")


def multiply_series(context: Context, *series_lists: SeriesList) -> SeriesList:
    """``multiplySeries(*seriesLists)``: the product at each point."""
    if len(series_lists) == 1 and len(series_lists[0]) == 1:
        return series_lists[0]
    return _aggregate(context, series_lists, "multiply")


def count_series(context: Context, *series_lists: SeriesList) -> SeriesList:
    """``countSeries(*seriesLists)``: how many series there are, at each point."""
    if not series_lists:
        raise BadArgumentError("countSeries() of nothing is not supported")
    flat, start, end, step = normalize(series_lists)
    name = f"countSeries({format_path_expressions(flat)})"
    values = [len(row) for row in zip_longest(*flat)]
    return [
        TimeSeries(
            name, start, end, step, values, x_files_factor=context.x_files_factor
        )
    ]


def divide_series(
    context: Context, dividend_series_list: SeriesList, divisor_series: SeriesList
) -> SeriesList:
    """``divideSeries(dividendSeriesList, divisorSeries)``: by one series."""
    if not divisor_series:
        for series in dividend_series_list:
            series.name = f"divideSeries({series.name},MISSING)"
            series.path_expression = series.name
            series.values = [None] * len(series.values)
        return dividend_series_list
    if len(divisor_series) > 1:
        raise BadArgumentError(
            "divideSeries second argument must reference exactly 1 series "
            f"(got {len(divisor_series)})"
        )
    divisor = divisor_series[0]
    results = []
    for dividend in dividend_series_list:
        name = f"divideSeries({dividend.name},{divisor.name})"
        _, start, end, step = normalize([(dividend, divisor)])
        values = [safe_div(a, b) for a, b in zip_longest(dividend, divisor)]
        results.append(
            TimeSeries(
                name, start, end, step, values, x_files_factor=context.x_files_factor
            )
        )
    return results


def alias_sub(
    context: Context, series_list: SeriesList, search: str, replace: str
) -> SeriesList:
    """``aliasSub(seriesList, search, replace)``: regex substitution on names."""
    regex = _regex("aliasSub", search)
    try:
        for series in series_list:
            series.name = regex.sub(replace, series.name)
    except (re.error, IndexError) as exc:
        raise BadArgumentError(
            f"bad replacement {replace!r} for aliasSub(): {exc}"
        ) from None
    return series_list


def substr(
    context: Context, series_list: SeriesList, start: int = 0, stop: int = 0
) -> SeriesList:
    """``substr(seriesList, start=0, stop=0)``: keep nodes start to stop of names."""
    for series in series_list:
        left = series.name.rfind("(") + 1
        right = series.name.find(")")
        if right < 0:
            right = len(series.name) + 1
        nodes = series.name[left:right].split(".")
        kept = nodes[int(start) :] if int(stop) == 0 else nodes[int(start) : int(stop)]
        series.name = re.sub(",.*$", "", ".".join(kept))
    return series_list


def alias_by_metric(context: Context, series_list: SeriesList) -> SeriesList:
    """``aliasByMetric(seriesList)``: the last node of each name."""
    return substr(context, series_list, -1, 0)


def exclude(context: Context, series_list: SeriesList, pattern: str) -> SeriesList:
    """``exclude(seriesList, pattern)``: drop series whose name matches a regex."""
    regex = _regex("exclude", pattern)
    return [series for series in series_list if not regex.search(series.name)]


def grep(context: Context, series_list: SeriesList, pattern: str) -> SeriesList:
    """``grep(seriesList, pattern)``: keep series whose name matches a regex."""
    regex = _regex("grep", pattern)
    return [series for series in series_list if regex.search(series.name)]


def remove_empty_series(
    context: Context, series_list: SeriesList, x_files_factor: float | None = None
) -> SeriesList:
    """``removeEmptySeries(seriesList, xFilesFactor=None)``: drop all-null series."""
    xff = 0.0 if x_files_factor is None else x_files_factor
    return [series for series in series_list if _xff_values(list(series), xff)]


def remove_above_value(
    context: Context, series_list: SeriesList, n: float
) -> SeriesList:
    """``removeAboveValue(seriesList, n)``: values above n become null."""
    for series in series_list:
        series.name = f"removeAboveValue({series.name}, {_fmt_g(n)})"
        series.path_expression = series.name
        series.values = [None if v is not None and v > n else v for v in series]
    return series_list


def remove_below_value(
    context: Context, series_list: SeriesList, n: float
) -> SeriesList:
    """``removeBelowValue(seriesList, n)``: values below n become null."""
    for series in series_list:
        series.name = f"removeBelowValue({series.name}, {_fmt_g(n)})"
        series.path_expression = series.name
        series.values = [None if v is None or v < n else v for v in series]
    return series_list


def lowest_current(context: Context, series_list: SeriesList, n: int) -> SeriesList:
    """``lowestCurrent(seriesList, n)``: the n series of least last value."""
    return lowest(context, series_list, n, "current")


def sort_by_minima(context: Context, series_list: SeriesList) -> SeriesList:
    """``sortByMinima(seriesList)``: by least value; series never above 0 dropped."""
    kept = [series for series in series_list if (safe_max(list(series)) or 0) > 0]
    kept.sort(key=_sort_key(safe_min))
    return kept


def sort_by_total(context: Context, series_list: SeriesList) -> SeriesList:
    """``sortByTotal(seriesList)``: by sum, descending."""
    return sort_by(context, series_list, "sum", reverse=True)


# -- the registry ----------------------------------------------------------------------


def _p(
    name: str,
    kind: str,
    *,
    required: bool = False,
    multiple: bool = False,
    options: tuple[str, ...] = (),
) -> Param:
    return Param(name, kind, required, multiple, options)


_SERIES = _p("seriesList", "seriesList", required=True)
_SERIES_LISTS = _p("seriesLists", "seriesList", required=True, multiple=True)
_N = _p("n", "integer", required=True)
_CONSOLIDATIONS = tuple(CONSOLIDATION_FUNCTIONS)


def _function(
    name: str, impl: Callable[..., SeriesList], *params: Param, aggregator: bool = False
) -> Function:
    signature = list(inspect.signature(impl).parameters.values())[1:]
    defaults = tuple(
        None if p.default is inspect.Parameter.empty else p.default for p in signature
    )
    defaults += (None,) * (len(params) - len(defaults))
    keywords = tuple(p.name for p in signature)
    return Function(name, impl, params, aggregator, defaults, keywords)


_ALL: Final = (
    _function(
        "aggregate",
        aggregate,
        _SERIES,
        _p("func", "aggFunc", required=True),
        _p("xFilesFactor", "float"),
    ),
    _function("sumSeries", sum_series, _SERIES_LISTS, aggregator=True),
    _function("sum", sum_series, _SERIES_LISTS, aggregator=True),
    _function("averageSeries", average_series, _SERIES_LISTS, aggregator=True),
    _function("avg", average_series, _SERIES_LISTS, aggregator=True),
    _function("minSeries", min_series, _SERIES_LISTS, aggregator=True),
    _function("maxSeries", max_series, _SERIES_LISTS, aggregator=True),
    _function("alias", alias, _SERIES, _p("newName", "string", required=True)),
    _function(
        "aliasByNode",
        alias_by_node,
        _SERIES,
        _p("nodes", "nodeOrTag", required=True, multiple=True),
    ),
    _function(
        "aliasByTags",
        alias_by_tags,
        _SERIES,
        _p("tags", "nodeOrTag", required=True, multiple=True),
    ),
    _function("scale", scale, _SERIES, _p("factor", "float", required=True)),
    _function("offset", offset, _SERIES, _p("factor", "float", required=True)),
    _function("absolute", absolute, _SERIES),
    _function(
        "summarize",
        summarize,
        _SERIES,
        _p("intervalString", "interval", required=True),
        _p("func", "aggFunc"),
        _p("alignToFrom", "boolean"),
    ),
    _function(
        "perSecond",
        per_second,
        _SERIES,
        _p("maxValue", "float"),
        _p("minValue", "float"),
    ),
    _function(
        "nonNegativeDerivative",
        non_negative_derivative,
        _SERIES,
        _p("maxValue", "float"),
        _p("minValue", "float"),
    ),
    _function("derivative", derivative, _SERIES),
    _function("integral", integral, _SERIES),
    _function(
        "movingWindow",
        moving_window,
        _SERIES,
        _p("windowSize", "intOrInterval", required=True),
        _p("func", "aggFunc"),
        _p("xFilesFactor", "float"),
    ),
    _function(
        "movingAverage",
        moving_average,
        _SERIES,
        _p("windowSize", "intOrInterval", required=True),
        _p("xFilesFactor", "float"),
    ),
    _function("keepLastValue", keep_last_value, _SERIES, _p("limit", "intOrInf")),
    _function(
        "transformNull",
        transform_null,
        _SERIES,
        _p("default", "float"),
        _p("referenceSeries", "seriesList"),
    ),
    _function(
        "timeShift",
        time_shift,
        _SERIES,
        _p("timeShift", "interval", required=True),
        _p("resetEnd", "boolean"),
        _p("alignDst", "boolean"),
    ),
    _function(
        "asPercent",
        as_percent,
        _SERIES,
        _p("total", "any"),
        _p("nodes", "nodeOrTag", multiple=True),
        aggregator=True,
    ),
    _function(
        "pct",
        as_percent,
        _SERIES,
        _p("total", "any"),
        _p("nodes", "nodeOrTag", multiple=True),
        aggregator=True,
    ),
    _function("highest", highest, _SERIES, _p("n", "integer"), _p("func", "aggFunc")),
    _function("lowest", lowest, _SERIES, _p("n", "integer"), _p("func", "aggFunc")),
    _function("highestAverage", highest_average, _SERIES, _N),
    _function("highestCurrent", highest_current, _SERIES, _N),
    _function("highestMax", highest_max, _SERIES, _N),
    _function("lowestAverage", lowest_average, _SERIES, _N),
    _function("limit", limit, _SERIES, _N),
    _function(
        "sortBy", sort_by, _SERIES, _p("func", "aggFunc"), _p("reverse", "boolean")
    ),
    _function(
        "sortByName",
        sort_by_name,
        _SERIES,
        _p("natural", "boolean"),
        _p("reverse", "boolean"),
    ),
    _function("sortByMaxima", sort_by_maxima, _SERIES),
    _function(
        "groupByNode",
        group_by_node,
        _SERIES,
        _p("nodeNum", "nodeOrTag", required=True),
        _p("callback", "aggOrSeriesFunc"),
    ),
    _function(
        "groupByNodes",
        group_by_nodes,
        _SERIES,
        _p("callback", "aggOrSeriesFunc", required=True),
        _p("nodes", "nodeOrTag", multiple=True),
    ),
    _function(
        "groupByTags",
        group_by_tags,
        _SERIES,
        _p("callback", "aggOrSeriesFunc", required=True),
        _p("tags", "tag", required=True, multiple=True),
    ),
    _function(
        "consolidateBy",
        consolidate_by,
        _SERIES,
        _p("consolidationFunc", "string", required=True, options=_CONSOLIDATIONS),
    ),
)

_MORE: Final = (
    _function("diffSeries", diff_series, _SERIES_LISTS, aggregator=True),
    _function("multiplySeries", multiply_series, _SERIES_LISTS, aggregator=True),
    _function(
        "countSeries",
        count_series,
        _p("seriesLists", "seriesList", multiple=True),
        aggregator=True,
    ),
    _function(
        "divideSeries",
        divide_series,
        _p("dividendSeriesList", "seriesList", required=True),
        _p("divisorSeries", "seriesList", required=True),
    ),
    _function(
        "aliasSub",
        alias_sub,
        _SERIES,
        _p("search", "string", required=True),
        _p("replace", "string", required=True),
    ),
    _function("substr", substr, _SERIES, _p("start", "integer"), _p("stop", "integer")),
    _function("aliasByMetric", alias_by_metric, _SERIES),
    _function("exclude", exclude, _SERIES, _p("pattern", "string", required=True)),
    _function("grep", grep, _SERIES, _p("pattern", "string", required=True)),
    _function(
        "removeEmptySeries", remove_empty_series, _SERIES, _p("xFilesFactor", "float")
    ),
    _function(
        "removeAboveValue", remove_above_value, _SERIES, _p("n", "float", required=True)
    ),
    _function(
        "removeBelowValue", remove_below_value, _SERIES, _p("n", "float", required=True)
    ),
    _function("lowestCurrent", lowest_current, _SERIES, _N),
    _function("sortByMinima", sort_by_minima, _SERIES),
    _function("sortByTotal", sort_by_total, _SERIES),
)

FUNCTIONS: Final[dict[str, Function]] = {
    function.name: function for function in (*_ALL, *_MORE)
}
"""Every render function but ``seriesByTag`` (the evaluator fetches that), by name."""

SPECIAL_FUNCTIONS: Final = frozenset({"seriesByTag"})
"""Functions the evaluator handles itself."""
