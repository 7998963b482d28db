"""statsyard.render.output: graphite-web's json, csv and raw, maxDataPoints."""

from __future__ import annotations

import json

from statsyard.render import TimeSeries, format_csv, format_json, format_raw
from tests._render_helpers import B, render

N = None


def series(
    values: list[float | None], *, name: str = "a.b", step: int = 60
) -> TimeSeries:
    return TimeSeries(name, B, B + step * len(values), step, values)


def test_json_is_graphite_webs_list_of_targets_tags_and_datapoints() -> None:
    """[{"target", "tags", "datapoints": [[value, ts], ...]}], nulls as null."""
    text = format_json([series([1.0, N, 2.5])])
    assert text == (
        '[{"target": "a.b", "tags": {"name": "a.b"}, "datapoints": '
        f"[[1.0, {B}], [null, {B + 60}], [2.5, {B + 120}]]}}]"
    )


def test_json_writes_nan_as_null_and_infinity_as_1e9999_like_graphite_web() -> None:
    """graphite-web's textual replacements (only before a comma)."""
    text = format_json([series([float("nan"), float("inf"), 1.0])])
    assert f"[null, {B}], [1e9999, {B + 60}]" in text


def test_no_null_points_drops_nulls_and_empty_series() -> None:
    """noNullPoints keeps only real values, and drops series left with none."""
    text = format_json(
        [series([1.0, N]), series([N, N], name="x")], no_null_points=True
    )
    assert json.loads(text) == [
        {"target": "a.b", "tags": {"name": "a.b"}, "datapoints": [[1.0, B]]}
    ]
    assert format_json([]) == "[]"


def test_max_data_points_consolidates_with_the_series_function() -> None:
    """ceil(points / max) values per point, start nudged to a band boundary."""
    values: list[float | None] = [float(i) for i in range(12)]
    (result,) = json.loads(format_json([series(values)], max_data_points=4))
    # 12 points at most 4: 3 per point, 180 s bands. B % 180 == 0, so the start
    # moves one band on (nudge 180 s) and graphite-web drops nudge/step - 1 = 2.
    assert result["datapoints"] == [
        [3.0, B + 180],
        [6.0, B + 360],
        [9.0, B + 540],
        [11.0, B + 720],
    ]
    (summed,) = render("consolidateBy(a.b, 'sum')", {"a.b": [1.0] * 10})
    (out,) = json.loads(format_json([summed], max_data_points=5))
    assert [value for value, _ in out["datapoints"]][:4] == [2.0, 2.0, 2.0, 2.0]


def test_max_data_points_of_one_gives_one_value_per_series() -> None:
    """maxDataPoints=1 consolidates the whole series."""
    (result,) = json.loads(format_json([series([1.0, 2.0, N, 3.0])], max_data_points=1))
    assert result["datapoints"] == [[2.0, B]]


def test_max_data_points_above_the_count_changes_nothing() -> None:
    """Fewer points than maxDataPoints are returned as they are."""
    (result,) = json.loads(format_json([series([1.0, 2.0])], max_data_points=10))
    assert result["datapoints"] == [[1.0, B], [2.0, B + 60]]


def test_csv_has_a_row_per_value_with_utc_times() -> None:
    """name,YYYY-MM-DD HH:MM:SS,value; empty for null; CRLF rows (Excel dialect)."""
    assert format_csv([series([1.0, N])]) == (
        "a.b,2023-11-14 22:00:00,1.0\r\na.b,2023-11-14 22:01:00,\r\n"
    )


def test_raw_is_name_start_end_step_then_values() -> None:
    """graphite-web's rawData line, None for no data."""
    assert format_raw([series([1.0, N])]) == f"a.b,{B},{B + 120},60|1.0,None\n"
