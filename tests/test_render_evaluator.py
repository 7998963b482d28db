"""statsyard.render.evaluate: naming, globs, seriesByTag, the point budget, storage."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.datapoint import DataPoint
from statsyard.exceptions import BadArgumentError, RenderError, TooManyPointsError
from statsyard.render import (
    FUNCTIONS,
    RenderSettings,
    StorageSource,
    evaluate,
    format_csv,
    format_json,
    format_raw,
)
from statsyard.render.source import SeriesKey
from statsyard.storage import Storage
from tests._render_helpers import FROM, NOW, B, render, shown

N = None

MIXED: dict[SeriesKey | str, list[float]] = {
    "cpu.user": [1.0],
    "cpu.system": [2.0],
    "cpu.idle.total": [3.0],
    "mem.free": [4.0],
    ("cpu.user", "web1"): [10.0],
    ("cpu.user", "web2"): [20.0],
}


def names(
    target: str,
    data: Mapping[SeriesKey | str, Sequence[float | None]] = MIXED,
    **options: Any,
) -> list[str]:
    return [series.name for series in render(target, data, **options)]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("cpu.*", ["cpu.system", "cpu.user"]),
        ("cpu.user", ["cpu.user"]),
        ("*.free", ["mem.free"]),
        ("cpu.{user,idle}", ["cpu.user"]),
        ("cpu.{user,idle}.total", ["cpu.idle.total"]),
        ("cpu.?ser", ["cpu.user"]),
        ("cpu.[su]*", ["cpu.system", "cpu.user"]),
        ("cpu.[!s]*", ["cpu.user"]),
        ("{cpu,mem}.*", ["cpu.system", "cpu.user", "mem.free"]),
        ("*", []),
        ("cpu.user;entity=web1", ["cpu.user;entity=web1"]),
        ("cpu.user;entity=graphite", ["cpu.user"]),
        ("cpu.user;entity=nope", []),
        ("cpu.user;entity=web1;dc=x", []),
        ("nothing.here", []),
    ],
)
def test_plain_globs_match_only_default_entity_series_node_by_node(
    target: str, expected: list[str]
) -> None:
    """Globs never cross a dot; other entities need seriesByTag or a tagged name."""
    assert names(target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "seriesByTag('name=cpu.user')",
            ["cpu.user", "cpu.user;entity=web1", "cpu.user;entity=web2"],
        ),
        ("seriesByTag('entity=web1')", ["cpu.user;entity=web1"]),
        (
            "seriesByTag('entity=~web')",
            ["cpu.user;entity=web1", "cpu.user;entity=web2"],
        ),
        ("seriesByTag('entity=~eb')", []),
        (
            "seriesByTag('name=cpu.user', 'entity!=web1')",
            ["cpu.user", "cpu.user;entity=web2"],
        ),
        (
            "seriesByTag('name=~^cpu', 'entity!=~web')",
            ["cpu.idle.total", "cpu.system", "cpu.user"],
        ),
        ("seriesByTag('name=~mem', 'entity=')", ["mem.free"]),
    ],
)
def test_series_by_tag_reaches_tagged_and_default_entity_series(
    target: str, expected: list[str]
) -> None:
    """Tagged series are metric;entity=E; default-entity ones have only a name tag."""
    assert names(target) == expected


def test_series_carry_graphite_names_tags_and_path_expressions() -> None:
    """Plain series: {name}; tagged: {name, entity}; pathExpression is the query."""
    plain, tagged_1, tagged_2 = render("seriesByTag('name=cpu.user')", MIXED)
    assert plain.tags == {"name": "cpu.user"}
    assert tagged_1.tags == {"name": "cpu.user", "entity": "web1"}
    assert tagged_2.path_expression == "seriesByTag('name=cpu.user')"
    (glob,) = render("cpu.u*", MIXED)
    assert glob.path_expression == "cpu.u*"


def test_default_entity_comes_from_the_settings() -> None:
    """With default_entity web1, web1's series are the plain paths."""
    settings = RenderSettings(default_entity="web1")
    assert names("cpu.*", settings=settings) == ["cpu.user"]
    assert render("cpu.*", MIXED, settings=settings)[0].datapoints()[0] == (10.0, B)
    assert names("seriesByTag('name=cpu.user')", settings=settings) == [
        "cpu.user",
        "cpu.user;entity=graphite",
        "cpu.user;entity=web2",
    ]


def test_targets_come_back_in_order_and_blank_ones_are_skipped() -> None:
    """One result list, target after target (graphite-web's evaluateTarget)."""
    result = render(["mem.free", " ", "cpu.user"], MIXED)
    assert shown(result) == [
        ("mem.free", [4.0] + [N] * 9),
        ("cpu.user", [1.0] + [N] * 9),
    ]


def test_an_empty_or_reversed_range_is_an_error() -> None:
    """from must be before until (the HTTP layer swaps them as graphite-web)."""
    with pytest.raises(BadArgumentError, match="before until"):
        render("cpu.user", MIXED, start=B, end=B)


def test_the_point_budget_refuses_before_reading() -> None:
    """Slots beyond max_points are refused before any fetch."""
    settings = RenderSettings(max_points=15)
    with pytest.raises(
        TooManyPointsError, match=r"more than 15 slots \(render.max_points\)"
    ) as info:
        render("cpu.*", MIXED, settings=settings)
    assert info.value.limit == 15
    assert names("cpu.user", settings=settings) == ["cpu.user"]


def test_the_point_budget_counts_raw_points_read() -> None:
    """Dense raw data beyond max_points stops the request with a clear error."""
    dense = {"a.b": [1.0] * 20}  # 20 points in one 60 s slot: 10 slots
    with pytest.raises(TooManyPointsError, match="more than 12 points"):
        render("a.b", dense, settings=RenderSettings(max_points=12), step=1)


def test_summarize_buckets_count_against_the_budget() -> None:
    """A tiny summarize interval over a long range cannot build millions of buckets."""
    settings = RenderSettings(max_points=100)
    with pytest.raises(TooManyPointsError, match="summarize"):
        render('summarize(a.b, "1s")', {"a.b": [1.0]}, settings=settings)


def _stored(tmp_path: Path) -> Storage:
    storage = Storage.open(tmp_path, checkpoint_points=None)
    storage.append(
        [
            DataPoint("cpu.user", "graphite", 1, (B + 5) * 1000),
            DataPoint("cpu.user", "graphite", 2, (B + 30) * 1000),
            DataPoint("cpu.user", "graphite", 3, (B + 60) * 1000),
            DataPoint("cpu.user", "web1", 7.5, (B + 120) * 1000),
            DataPoint("cpu.system", "graphite", 4, (B + 180) * 1000),
        ]
    )
    return storage


def _render_storage(storage: Storage, target: str) -> str:
    series = evaluate(
        [target],
        start_ms=FROM * 1000,
        end_ms=(B + 239) * 1000,
        now_ms=NOW * 1000,
        source=StorageSource(storage),
        settings=RenderSettings(),
    )
    return format_json(series)


EXPECTED_JSON = (
    '[{"target": "cpu.user", "tags": {"name": "cpu.user"}, "datapoints": '
    f"[[2.0, {B}], [3.0, {B + 60}], [null, {B + 120}], [null, {B + 180}]]}}, "
    '{"target": "cpu.user;entity=web1", "tags": {"entity": "web1", "name": '
    f'"cpu.user"}}, "datapoints": [[null, {B}], [null, {B + 60}], [7.5, {B + 120}], '
    f"[null, {B + 180}]]}}]"
)


def test_renders_from_a_live_storage_handle(tmp_path: Path) -> None:
    """StorageSource reads the writer's own handle, points in blocks and head."""
    storage = _stored(tmp_path)
    try:
        target = "seriesByTag('name=cpu.user')"
        assert _render_storage(storage, target) == EXPECTED_JSON
        storage.checkpoint()
        assert _render_storage(storage, target) == EXPECTED_JSON
    finally:
        storage.close()


def test_renders_from_a_read_only_storage(tmp_path: Path) -> None:
    """The same through Storage.open_readonly (the CLI's handle)."""
    _stored(tmp_path).close()
    reader = Storage.open_readonly(tmp_path)
    try:
        assert _render_storage(reader, "seriesByTag('name=cpu.user')") == EXPECTED_JSON
        assert '"target": "sumSeries(cpu.*)"' in _render_storage(reader, "sum(cpu.*)")
    finally:
        reader.close()


_PATHS = st.sampled_from(
    ["cpu.*", "cpu.user", "*.free", "nothing", "cpu.user;entity=web1"]
)
_KIND_VALUES: dict[str, list[str]] = {
    "float": ["2", "-1.5", "0", "inf", "1e3"],
    "integer": ["0", "1", "2", "-1", "12"],
    "intOrInf": ["1", "3", "inf"],
    "interval": ["'1min'", "'-2min'", "'2h'", "'0s'", "'3m'"],
    "intOrInterval": ["1", "3", "0", "'2min'", "'1h'"],
    "boolean": ["true", "false"],
    "string": ["'x'", "'max'", "'sum'", "'average'", "'last'"],
    "aggFunc": ["'sum'", "'avg'", "'max'", "'median'", "'count'", "'last'"],
    "aggOrSeriesFunc": ["'sum'", "'average'", "'sumSeries'", "'maxSeries'"],
    "nodeOrTag": ["0", "1", "-1", "'entity'", "'name'", "5"],
    "tag": ["'entity'", "'name'", "'dc'"],
    "any": ["None", "2", "cpu.user"],
}
_WRONG = st.sampled_from(["'bogus'", "1.5", "None", "cpu.*", "true", "-7"])


def _argument(kind: str, series: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    if kind == "seriesList":
        return series
    valid = st.sampled_from(_KIND_VALUES[kind])
    return st.one_of(valid, valid, valid, _WRONG)


def _call(name: str, series: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    if name == "seriesByTag":
        exprs = st.sampled_from(
            [
                "'name=cpu.user'",
                "'entity=~web'",
                "'entity!='",
                "'name=~^cpu'",
                "'dc!=x'",
            ]
        )
        return st.lists(exprs, min_size=1, max_size=3).map(
            lambda args: f"seriesByTag({','.join(args)})"
        )
    parts: list[st.SearchStrategy[list[str]]] = []
    for param in FUNCTIONS[name].params:
        one = _argument(param.kind, series)
        if param.multiple:
            parts.append(st.lists(one, min_size=0, max_size=2))
        elif param.required:
            parts.append(one.map(lambda value: [value]))
        else:
            parts.append(st.one_of(st.just([]), one.map(lambda value: [value])))

    def join(chunks: list[list[str]]) -> str:
        args: list[str] = []
        for chunk in chunks:
            if not chunk:
                break  # optional parameters are given in order
            args += chunk
        return f"{name}({','.join(args)})"

    return st.tuples(*parts).map(lambda chunks: join(list(chunks)))


def _targets(depth: int = 2) -> st.SearchStrategy[str]:
    if depth == 0:
        return _PATHS
    inner = _targets(depth - 1)
    names = st.sampled_from([*sorted(FUNCTIONS), "seriesByTag"])
    return st.one_of(_PATHS, names.flatmap(lambda name: _call(name, inner)))


@settings(max_examples=200, deadline=None)
@given(_targets(), st.integers(min_value=1, max_value=50))
def test_any_call_of_any_function_renders_or_raises_only_a_render_error(
    target: str, max_data_points: int
) -> None:
    """Random calls with random arguments never escape with anything else."""
    try:
        result = render(target, MIXED, settings=RenderSettings(max_points=10_000))
    except RenderError:
        return
    json.loads(format_json(result, max_data_points=max_data_points))
    format_csv(result)
    format_raw(result)
