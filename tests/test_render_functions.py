"""statsyard.render.functions: each function as graphite-web 1.1 defines it.

Series here have one value per 60 s slot from ``B`` (see tests/_render_helpers);
every expectation is worked out by hand from graphite-web's documented
behaviour and source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from statsyard.exceptions import BadArgumentError, RenderError, UnknownFunctionError
from statsyard.render import RenderSettings, SchemaRule, TimeSeries, evaluate
from statsyard.render.source import SeriesKey
from tests._render_helpers import (
    FROM,
    NOW,
    UNTIL,
    B,
    Key,
    MemorySource,
    Values,
    render,
    shown,
)

N = None
PAD = [N] * 6


def values(
    target: str, data: Mapping[Key, Sequence[float | None]], **options: Any
) -> list[float | None]:
    """The iterated values of the single series ``target`` renders."""
    (series,) = render(target, data, **options)
    return list(series)


# -- combining -----------------------------------------------------------------------

AB = {"a.b": [1, 2, N, 4], "a.c": [10, N, N, 40]}


@pytest.mark.parametrize(
    ("target", "name", "expected"),
    [
        ("sumSeries(a.*)", "sumSeries(a.*)", [11, 2, N, 44]),
        ("sum(a.*)", "sumSeries(a.*)", [11, 2, N, 44]),
        ("sumSeries(a.b, a.c)", "sumSeries(a.b,a.c)", [11, 2, N, 44]),
        ("averageSeries(a.*)", "averageSeries(a.*)", [5.5, 2, N, 22]),
        ("avg(a.*)", "averageSeries(a.*)", [5.5, 2, N, 22]),
        ("minSeries(a.*)", "minSeries(a.*)", [1, 2, N, 4]),
        ("maxSeries(a.*)", "maxSeries(a.*)", [10, 2, N, 40]),
        ("aggregate(a.*, 'sum')", "sumSeries(a.*)", [11, 2, N, 44]),
        ("aggregate(a.*, 'count')", "countSeries(a.*)", [2, 1, N, 2]),
        ("a.*|sumSeries()", "sumSeries(a.*)", [11, 2, N, 44]),
    ],
)
def test_combining_functions_skip_nulls_and_name_the_paths(
    target: str, name: str, expected: list[float | None]
) -> None:
    """Point by point over non-null values; all-null points stay null."""
    (series,) = render(target, AB)
    assert (series.name, list(series)) == (name, expected + PAD)
    assert series.tags["aggregatedBy"] == name.split("Series")[0]
    assert (series.start, series.end, series.step) == (B, B + 600, 60)


def test_aggregate_xfilesfactor_needs_that_share_of_non_null_values() -> None:
    """aggregate(..., xFilesFactor=0.6): a point needs 60% of series non-null."""
    assert values("aggregate(a.*, 'sum', 0.6)", AB) == [11, N, N, 44, *PAD]


def test_combined_series_keep_only_the_tags_they_share() -> None:
    """Tags common to every input survive; the name tag is kept when shared."""
    data = {("cpu", "web1"): [1.0], ("cpu", "web2"): [2.0]}
    (series,) = render("sumSeries(seriesByTag('name=cpu'))", data)
    assert series.name == "sumSeries(seriesByTag('name=cpu'))"
    assert series.tags == {"name": "cpu", "aggregatedBy": "sum"}
    assert next(iter(series)) == 3.0


def test_combining_series_of_different_steps_consolidates_to_their_lcm() -> None:
    """A 30 s and a 60 s series combine at 60 s; the 30 s one averaged in pairs."""
    fast = [((B + 30 * i) * 1000, float(i)) for i in range(19)]
    slow = [((B + 60 * i) * 1000, 100.0) for i in range(10)]
    source = MemorySource({("a.fast", "graphite"): fast, ("a.slow", "graphite"): slow})
    settings = RenderSettings(schema=(SchemaRule("fast", 30),))
    (series,) = evaluate(
        ["sumSeries(a.*)"],
        start_ms=FROM * 1000,
        end_ms=UNTIL * 1000,
        now_ms=NOW * 1000,
        source=source,
        settings=settings,
    )
    assert (series.start, series.end, series.step) == (B, B + 600, 60)
    assert list(series) == [
        100.5,
        102.5,
        104.5,
        106.5,
        108.5,
        110.5,
        112.5,
        114.5,
        116.5,
        118.0,
    ]


def test_as_percent_of_the_sum_a_number_a_series_or_matched_series() -> None:
    """Each variant of asPercent, named as graphite-web names them."""
    data = {"a.b": [1, 3], "a.c": [3, 1], "t.b": [2, 2], "t.c": [4, 0]}
    assert shown(render("asPercent(a.*)", data)) == [
        ("asPercent(a.b,sumSeries(a.*))", [25, 75] + [N] * 8),
        ("asPercent(a.c,sumSeries(a.*))", [75, 25] + [N] * 8),
    ]
    assert shown(render("asPercent(a.b, 4)", data)) == [
        ("asPercent(a.b,4)", [25, 75] + [N] * 8),
    ]
    assert shown(render("asPercent(a.*, t.b)", data)) == [
        ("asPercent(a.b,t.b)", [50, 150] + [N] * 8),
        ("asPercent(a.c,t.b)", [150, 50] + [N] * 8),
    ]
    assert shown(render("asPercent(a.*, t.*)", data)) == [
        ("asPercent(a.b,t.b)", [50, 150] + [N] * 8),
        ("asPercent(a.c,t.c)", [75, N] + [N] * 8),
    ]
    with pytest.raises(BadArgumentError, match="asPercent second argument"):
        render("asPercent(a.*, {a,t}.*)", data)


def test_as_percent_by_nodes_matches_series_to_totals() -> None:
    """With nodes, series and totals pair by key; unmatched ones are MISSING."""
    data = {"s1.used": [1], "s2.used": [3], "s1.total": [4], "s3.total": [8]}
    assert shown(render("asPercent(*.used, *.total, 0)", data)) == [
        ("asPercent(s1.used,s1.total)", [25.0] + [N] * 9),
        ("asPercent(s2.used,MISSING)", [N] * 10),
        ("asPercent(MISSING,s3.total)", [N] * 10),
    ]
    assert shown(render("asPercent(s*.used, None, 0)", data)) == [
        ("asPercent(s1.used,s1.used)", [100.0] + [N] * 9),
        ("asPercent(s2.used,s2.used)", [100.0] + [N] * 9),
    ]


def test_group_by_node_aggregates_each_group_and_names_it_by_the_key() -> None:
    """groupByNode(seriesList, node, callback): callback per distinct node value."""
    data: dict[str, Values] = {
        "dc1.web1.cpu": [1, 2],
        "dc1.web2.cpu": [3, 4],
        "dc2.web1.cpu": [5, N],
    }
    assert shown(render("groupByNode(*.*.cpu, 0, 'sum')", data)) == [
        ("dc1", [4, 6] + [N] * 8),
        ("dc2", [5, N] + [N] * 8),
    ]
    assert shown(render("groupByNode(*.*.cpu, 1)", data)) == [
        ("web1", [3, 2] + [N] * 8),
        ("web2", [3, 4] + [N] * 8),
    ]
    assert shown(render("groupByNode(*.*.cpu, 0, 'maxSeries')", data)) == [
        ("dc1", [3, 4] + [N] * 8),
        ("dc2", [5, N] + [N] * 8),
    ]
    assert shown(render("groupByNodes(*.*.cpu, 'sum', 0, 2)", data))[0][0] == "dc1.cpu"
    with pytest.raises(BadArgumentError, match="callback"):
        render("groupByNode(*.*.cpu, 0, 'alias')", data)


def test_group_by_tags_names_groups_by_their_tags() -> None:
    """groupByTags(seriesList, callback, *tags): key name;tag=value, tags parsed."""
    data = {("cpu", "web1"): [1], ("cpu", "web2"): [2], ("mem", "web1"): [4]}
    result = render("groupByTags(seriesByTag('entity=~web'), 'sum', 'entity')", data)
    assert shown(result) == [
        ("sum;entity=web1", [5] + [N] * 9),
        ("sum;entity=web2", [2] + [N] * 9),
    ]
    assert result[0].tags == {"name": "sum", "entity": "web1"}
    one_name = render("groupByTags(seriesByTag('name=cpu'), 'sum', 'entity')", data)
    assert [s.name for s in one_name] == ["cpu;entity=web1", "cpu;entity=web2"]
    by_name = render("groupByTags(seriesByTag('entity=web1'), 'max', 'name')", data)
    assert [s.name for s in by_name] == ["cpu", "mem"]
    with pytest.raises(BadArgumentError, match="tags"):
        render("groupByTags(seriesByTag('name=cpu'), 'sum')", data)


# -- aliases -------------------------------------------------------------------------


def test_alias_renames_and_keeps_tags() -> None:
    """alias sets the display name only."""
    (series,) = render("alias(a.b, 'Total')", {"a.b": [1]})
    assert series.name == "Total"
    assert series.tags == {"name": "a.b"}


def test_alias_by_node_takes_nodes_tags_and_the_first_path_of_a_function() -> None:
    """Nodes index the path (negative from the end); strings name tags."""
    data: dict[SeriesKey | str, Values] = {"a.b.c": [1], ("cpu", "web1"): [2]}
    assert [s.name for s in render("aliasByNode(a.b.c, 1)", data)] == ["b"]
    assert [s.name for s in render("aliasByNode(a.b.c, 0, -1)", data)] == ["a.c"]
    assert [s.name for s in render("aliasByNode(sumSeries(a.*.c), 1)", data)] == ["*"]
    assert [s.name for s in render("aliasByNode(scale(a.b.c, 2), 2)", data)] == ["c"]
    tagged = "seriesByTag('name=cpu')|aliasByNode('entity', 0)"
    assert [s.name for s in render(tagged, data)] == ["web1.cpu"]
    assert [
        s.name
        for s in render("aliasByTags(seriesByTag('name=cpu'), 'entity', 'name')", data)
    ] == ["web1.cpu"]
    assert [s.name for s in render("aliasByNode(a.b.c, 7)", data)] == [""]


# -- transforms ----------------------------------------------------------------------


def test_scale_offset_and_absolute_keep_nulls_and_name_with_g_format() -> None:
    """Names format the factor with %g; tags record it as graphite-web does."""
    data = {"a.b": [1, N, -3]}
    (scaled,) = render("scale(a.b, 10)", data)
    assert (scaled.name, list(scaled)[:3]) == ("scale(a.b,10)", [10.0, N, -30.0])
    assert scaled.tags == {"name": "a.b", "scale": "10.0"}
    assert render("scale(a.b, 0.5)", data)[0].name == "scale(a.b,0.5)"
    (shifted,) = render("offset(a.b, -1)", data)
    assert (shifted.name, list(shifted)[:3]) == ("offset(a.b,-1)", [0, N, -4])
    (positive,) = render("absolute(a.b)", data)
    assert (positive.name, list(positive)[:3]) == ("absolute(a.b)", [1, N, 3])
    assert positive.tags["absolute"] == "1"


def test_summarize_sums_into_aligned_buckets_by_default() -> None:
    """summarize(a.b, "2min"): buckets on multiples of 120 s from epoch."""
    (series,) = render('summarize(a.b, "2min")', {"a.b": range(1, 11)})
    assert series.name == 'summarize(a.b, "2min", "sum")'
    assert (series.start, series.end, series.step) == (B, B + 720, 120)
    assert series.datapoints() == [
        (3.0, B),
        (7.0, B + 120),
        (11.0, B + 240),
        (15.0, B + 360),
        (19.0, B + 480),
        (None, B + 600),
    ]
    assert series.tags["summarizeFunction"] == "sum"


def test_summarize_other_functions_and_align_to_from() -> None:
    """func picks the aggregation; alignToFrom starts buckets at the series start."""
    data = {"a.b": [1, 2, 3, N, 5, 6, 7, 8, 9, 10]}
    assert values('summarize(a.b, "2min", "avg")', data) == [1.5, 3, 5.5, 7.5, 9.5, N]
    assert values('summarize(a.b, "2min", "max")', data) == [2, 3, 6, 8, 10, N]
    assert values('summarize(a.b, "2min", "last")', data) == [2, 3, 6, 8, 10, N]
    start = B + 60
    (aligned,) = render('summarize(a.b, "2min", "sum", true)', data, start=start)
    assert aligned.name == 'summarize(a.b, "2min", "sum", true)'
    assert (aligned.start, aligned.step) == (B + 120, 120)
    assert list(aligned) == [3 + 0, 5 + 6, 7 + 8, 9 + 10]
    with pytest.raises(BadArgumentError, match="positive"):
        render('summarize(a.b, "0min")', data)


COUNTER = {"a.b": [0, 60, 120, 60, 180]}


def test_per_second_divides_non_negative_deltas_by_the_step() -> None:
    """A counter reset gives null, or the wrapped delta when maxValue is set."""
    (series,) = render("perSecond(a.b)", COUNTER)
    assert series.name == "perSecond(a.b)"
    assert list(series)[:5] == [N, 1.0, 1.0, N, 2.0]
    assert values("perSecond(a.b, 200)", COUNTER)[:5] == [N, 1.0, 1.0, 2.35, 2.0]
    # Above maxValue is null; the wrap is 150 + 1 + 60 - 120 = 91 (1.516667/s).
    assert values("perSecond(a.b, 150)", COUNTER)[:5] == [N, 1.0, 1.0, 1.516667, N]


def test_non_negative_derivative_and_derivative() -> None:
    """Deltas from the previous value; a null or a first value gives null."""
    assert values("nonNegativeDerivative(a.b)", COUNTER)[:5] == [N, 60, 60, N, 120]
    assert values("nonNegativeDerivative(a.b, 200)", COUNTER)[:5] == [
        N,
        60,
        60,
        141,
        120,
    ]
    # Below minValue (the 0) is null; a reset counts from minValue: 60 - 10.
    assert values("nonNegativeDerivative(a.b, None, 10)", COUNTER)[:5] == [
        N,
        N,
        60,
        50,
        120,
    ]
    data = {"a.b": [1, 3, N, 4, 8]}
    (series,) = render("derivative(a.b)", data)
    assert (series.name, list(series)[:5]) == ("derivative(a.b)", [N, 2, N, N, 4])


def test_integral_is_the_running_sum_with_nulls_kept() -> None:
    """integral: nulls stay null and do not reset the sum."""
    (series,) = render("integral(a.b)", {"a.b": [1, N, 2, 3]})
    assert (series.name, list(series)[:4]) == ("integral(a.b)", [1, N, 3, 6])


def _with_history(
    count: int = 10, before: int = 2
) -> dict[tuple[str, str], list[tuple[int, float]]]:
    return {
        ("a.b", "graphite"): [
            ((B + 60 * i) * 1000, float(i)) for i in range(-before, count)
        ]
    }


def _evaluate(
    target: str,
    data: Mapping[SeriesKey, Sequence[tuple[int, float]]],
    **options: Any,
) -> list[TimeSeries]:
    return evaluate(
        [target],
        start_ms=FROM * 1000,
        end_ms=UNTIL * 1000,
        now_ms=NOW * 1000,
        source=MemorySource(data),
        settings=RenderSettings(),
        **options,
    )


def test_moving_average_reads_the_window_before_from() -> None:
    """Each point averages the window ending at it, using points before from."""
    (series,) = _evaluate("movingAverage(a.b, 2)", _with_history())
    assert series.name == "movingAverage(a.b,2)"
    assert series.start == B
    assert list(series) == [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5]
    assert series.tags["movingAverage"] == "2"
    (by_time,) = _evaluate('movingAverage(a.b, "2min")', _with_history())
    assert by_time.name == 'movingAverage(a.b,"2min")'
    assert list(by_time) == list(series)
    (window,) = _evaluate("movingWindow(a.b, 3, 'max')", _with_history(before=3))
    assert window.name == "movingMax(a.b,3)"
    assert list(window)[:3] == [0.0, 1.0, 2.0]


def test_moving_average_xfilesfactor() -> None:
    """With xFilesFactor 1 a window with a null is null."""
    data = {
        ("a.b", "graphite"): [
            ((B + 60 * i) * 1000, 1.0) for i in range(-2, 10) if i != 3
        ]
    }
    assert list(_evaluate("movingAverage(a.b, 2, 1)", data)[0])[2:6] == [1.0, N, N, 1.0]
    assert list(_evaluate("movingAverage(a.b, 2)", data)[0])[2:6] == [
        1.0,
        1.0,
        1.0,
        1.0,
    ]


def test_keep_last_value_fills_gaps_up_to_the_limit() -> None:
    """Gaps (also at the end) take the last value; longer gaps stay with a limit."""
    data = {"a.b": [1, N, 3, N, N, 6]}
    (series,) = render("keepLastValue(a.b)", data)
    assert series.name == "keepLastValue(a.b)"
    assert list(series) == [1, 1, 3, 3, 3, 6, 6, 6, 6, 6]
    assert values("keepLastValue(a.b, 1)", data) == [1, 1, 3, N, N, 6, N, N, N, N]
    assert values("keepLastValue(a.b, 4)", data) == [1, 1, 3, 3, 3, 6, 6, 6, 6, 6]


def test_transform_null_replaces_nulls_optionally_where_a_reference_has_data() -> None:
    """transformNull(seriesList, default=0, referenceSeries=None)."""
    data = {"a.b": [1, N, N, 4], "r.x": [N, 5, N]}
    (series,) = render("transformNull(a.b)", data)
    assert (series.name, list(series)[:5]) == ("transformNull(a.b,0)", [1, 0, 0, 4, 0])
    assert series.tags["transformNull"] == "0"
    (minus,) = render("transformNull(a.b, -1)", data)
    assert (minus.name, minus.tags["transformNull"]) == (
        "transformNull(a.b,-1)",
        "-1.0",
    )
    (ref,) = render("transformNull(a.b, 0, r.x)", data)
    assert ref.name == "transformNull(a.b,0,referenceSeries)"
    assert list(ref)[:5] == [1, 0, N, 4, N]


def test_time_shift_reads_an_earlier_range_and_shows_it_now() -> None:
    """timeShift(a.b, "1min") means -1min: the value at t-60 is shown at t."""
    (series,) = _evaluate('timeShift(a.b, "1min")', _with_history())
    assert series.name == 'timeShift(a.b, "-1min")'
    assert (series.start, series.end) == (B, B + 600)
    assert list(series) == [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    (ahead,) = _evaluate('timeShift(a.b, "+1min")', _with_history(count=11))
    assert list(ahead) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert ahead.tags["timeShift"] == "+1min"


# -- filters and sorting -------------------------------------------------------------

RANK: dict[str, Values] = {
    "s.a": [1, 1, 9],
    "s.b": [5, 5, 2],
    "s.c": [N, 3, 3],
    "s.d": [N, N, N],
}


@pytest.mark.parametrize(
    ("target", "names"),
    [
        ("highestAverage(s.*, 2)", ["s.b", "s.a"]),
        ("highestCurrent(s.*, 2)", ["s.a", "s.c"]),
        ("highestMax(s.*, 1)", ["s.a"]),
        ("lowestAverage(s.*, 2)", ["s.d", "s.c"]),
        ("highest(s.*, 1, 'sum')", ["s.b"]),
        ("lowest(s.*, 1, 'max')", ["s.d"]),
        ("limit(s.*, 2)", ["s.a", "s.b"]),
        ("sortByMaxima(s.*)", ["s.a", "s.b", "s.c", "s.d"]),
        ("sortBy(s.*, 'average', true)", ["s.b", "s.a", "s.c", "s.d"]),
        ("sortByName(s.*, reverse=true)", ["s.d", "s.c", "s.b", "s.a"]),
    ],
)
def test_filters_and_sorting_pick_and_order_series(
    target: str, names: list[str]
) -> None:
    """Ranking uses the aggregate over the range; all-null ranks lowest."""
    assert [s.name for s in render(target, RANK)] == names


def test_sort_by_name_naturally() -> None:
    """natural=true sorts numbers in names by value."""
    data = {"h10": [1], "h2": [1], "h1": [1]}
    assert [s.name for s in render("sortByName(h*)", data)] == ["h1", "h10", "h2"]
    assert [s.name for s in render("sortByName(h*, true)", data)] == ["h1", "h2", "h10"]


def test_consolidate_by_sets_the_function_used_when_points_are_merged() -> None:
    """consolidateBy(a.b, 'max'): name, tag, and max when values are merged."""
    (series,) = render("consolidateBy(a.b, 'max')", {"a.b": [1, 5, 2, 3]})
    assert series.name == 'consolidateBy(a.b,"max")'
    assert series.tags["consolidateBy"] == "max"
    series.consolidate(2)
    assert list(series) == [5, 3, N, N, N]
    with pytest.raises(BadArgumentError, match="invalid option"):
        render("consolidateBy(a.b, 'median')", {"a.b": [1]})


# -- errors ----------------------------------------------------------------------------


def test_an_unknown_function_is_an_error_naming_it() -> None:
    """The HTTP layer turns this into a 400."""
    with pytest.raises(
        UnknownFunctionError, match=r"unknown function nosuchFunc\(\)"
    ) as info:
        render("sumSeries(nosuchFunc(a.b))", {"a.b": [1]})
    assert info.value.function == "nosuchFunc"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("scale(a.b, 'x')", 'invalid float for scale() parameter "factor"'),
        ("limit(a.b, 1.5)", 'invalid integer for limit() parameter "n"'),
        ("summarize(a.b, 'bogus')", "invalid interval for summarize()"),
        ("scale(a.b)", 'missing required parameter "factor"'),
        ("absolute(a.b, 1)", "too many arguments for absolute()"),
        ("scale(a.b, 2, x=1)", "too many arguments"),
        ("summarize(a.b, '1h', nosuch=1)", "unexpected keyword arguments"),
        ("scale('a.b', 2)", "expected a series list"),
        ("sumSeries()", 'missing required parameter "seriesLists"'),
        ("aggregate(a.b, 'bogus')", "invalid aggFunc"),
        ("seriesByTag('entity!=x')", "at least one tag expression"),
        ("seriesByTag(a.b)", "quoted tag expressions"),
        ("seriesByTag('novalue')", "bad seriesByTag expression"),
        ("seriesByTag('name=~(')", "bad regex"),
    ],
)
def test_bad_arguments_are_clear_errors(target: str, message: str) -> None:
    """Wrong kinds, counts and keywords are BadArgumentError, never a crash."""
    with pytest.raises(RenderError) as info:
        render(target, {"a.b": [1]})
    assert message in str(info.value)
    assert isinstance(info.value, BadArgumentError)


def test_keyword_arguments_bind_by_graphite_web_names() -> None:
    """Keywords use graphite-web's parameter names."""
    data = {"a.b": range(1, 11)}
    named = 'summarize(a.b, intervalString="2min", func="max", alignToFrom=false)'
    assert values(named, data)[:2] == [2, 4]
    assert values("keepLastValue(a.b, limit=1)", {"a.b": [1, N, 3]})[:3] == [1, 1, 3]


# -- the everyday extras ---------------------------------------------------------------


def test_diff_multiply_count_and_divide_series() -> None:
    """Combining by difference, product, count and quotient, named as graphite-web."""
    data: dict[str, Values] = {"a.b": [10, 4, N], "a.c": [3, N, 2], "d.x": [2, 0, 4]}
    assert shown(render("diffSeries(a.*)", data))[0] == (
        "diffSeries(a.*)",
        [7, 4, 2] + [N] * 7,
    )
    assert shown(render("multiplySeries(a.*)", data))[0] == (
        "multiplySeries(a.*)",
        [30.0, N, N] + [N] * 7,
    )
    assert shown(render("multiplySeries(a.b)", data)) == [("a.b", [10, 4, N] + [N] * 7)]
    assert shown(render("countSeries(a.*)", data)) == [("countSeries(a.*)", [2] * 10)]
    assert shown(render("divideSeries(a.*, d.x)", data)) == [
        ("divideSeries(a.b,d.x)", [5.0, N, N] + [N] * 7),
        ("divideSeries(a.c,d.x)", [1.5, N, 0.5] + [N] * 7),
    ]
    assert shown(render("divideSeries(a.b, nothing)", data)) == [
        ("divideSeries(a.b,MISSING)", [N] * 10)
    ]
    with pytest.raises(BadArgumentError, match="exactly 1 series"):
        render("divideSeries(d.x, a.*)", data)


def test_alias_sub_by_metric_and_substr() -> None:
    """Regex renames, the last node, and a slice of nodes."""
    data = {"ip.host1.TCP80": [1], "ip.host2.TCP443": [1]}
    assert names_of(r"aliasSub(ip.*.*, '^.*TCP(\d+)', '\1')", data) == ["80", "443"]
    assert names_of("aliasByMetric(ip.*.*)", data) == ["TCP80", "TCP443"]
    assert names_of("substr(ip.*.*, 1, 2)", data) == ["host1", "host2"]
    assert names_of("substr(scale(ip.host1.TCP80, 2), 1)", data) == ["host1.TCP80"]
    with pytest.raises(BadArgumentError, match="bad regex"):
        render("aliasSub(ip.*.*, '(', 'x')", data)


def names_of(target: str, data: Mapping[Key, Sequence[float | None]]) -> list[str]:
    return [series.name for series in render(target, data)]


def test_exclude_grep_and_remove_empty_series() -> None:
    """Regex filters on names; removeEmptySeries drops all-null series."""
    data: dict[str, Values] = {"s.web1": [1], "s.db1": [2], "s.web2": [N]}
    assert names_of("exclude(s.*, 'web')", data) == ["s.db1"]
    assert names_of("grep(s.*, 'web')", data) == ["s.web1", "s.web2"]
    assert names_of("removeEmptySeries(s.*)", data) == ["s.db1", "s.web1"]
    assert names_of("removeEmptySeries(s.*, 0.5)", data) == []


def test_remove_above_and_below_value() -> None:
    """Values beyond the bound become null; names use %g with a space."""
    data = {"a.b": [1, 5, N, 10]}
    (above,) = render("removeAboveValue(a.b, 5)", data)
    assert (above.name, list(above)[:4]) == ("removeAboveValue(a.b, 5)", [1, 5, N, N])
    (below,) = render("removeBelowValue(a.b, 5)", data)
    assert (below.name, list(below)[:4]) == ("removeBelowValue(a.b, 5)", [N, 5, N, 10])


def test_lowest_current_sort_by_minima_and_total() -> None:
    """More ranking and sorting, as graphite-web's."""
    assert names_of("lowestCurrent(s.*, 2)", RANK) == ["s.d", "s.b"]
    # sortByMinima drops series whose maximum is not above 0 (s.d).
    assert names_of("sortByMinima(s.*)", RANK) == ["s.a", "s.b", "s.c"]
    assert names_of("sortByTotal(s.*)", RANK) == ["s.b", "s.a", "s.c", "s.d"]
