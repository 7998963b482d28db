"""graphite-web's text formats of a render result: json, csv and raw.

Each formatter writes exactly what graphite-web 1.1's ``render/views.py``
writes for the same series, including its quirks (``maxDataPoints``
consolidation nudging the start so bands stay put between refreshes, JSON
``NaN,`` written as ``null,``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

from statsyard.render.series import TimeSeries

__all__ = ["apply_max_data_points", "format_csv", "format_json", "format_raw"]


def apply_max_data_points(
    series_list: Sequence[TimeSeries], max_data_points: int
) -> None:
    """Consolidate each series to at most about ``max_data_points`` values.

    As graphite-web's JSON view: ``valuesPerPoint = ceil(points / max)``
    over the whole request's time range; the start moves to a multiple of
    the consolidated step so that the bands do not jitter between
    refreshes; ``1`` consolidates each series to a single value. The
    series' ``consolidation_func`` (``consolidateBy``) combines the values.
    """
    if not any(len(series) for series in series_list):
        return
    start = min(series.start for series in series_list)
    end = max(series.end for series in series_list)
    time_range = end - start
    for series in series_list:
        if max_data_points == 1:
            series.consolidate(len(series))
            continue
        count = time_range / series.step
        if max_data_points >= count:
            continue
        per_point = math.ceil(count / max_data_points)
        seconds_per_point = int(per_point * series.step)
        nudge = (
            seconds_per_point
            + series.start % series.step
            - series.start % seconds_per_point
        )
        series.start += nudge
        # graphite-web drops one value fewer than the nudge covers; so do we.
        lose = max(int(nudge / series.step) - 1, 0)
        del series.values[:lose]
        series.consolidate(per_point)


def format_json(
    series_list: Sequence[TimeSeries],
    *,
    max_data_points: int | None = None,
    no_null_points: bool = False,
) -> str:
    """``[{"target": name, "tags": {...}, "datapoints": [[value, ts], ...]}, ...]``.

    Args:
        series_list: the evaluated series (consolidated in place).
        max_data_points: graphite-web's ``maxDataPoints``.
        no_null_points: drop null (and NaN) points, and series left empty.
    """
    out = []
    if any(len(series) for series in series_list):
        if max_data_points is not None:
            apply_max_data_points(series_list, max_data_points)
        for series in series_list:
            datapoints = series.datapoints()
            if no_null_points:
                datapoints = [
                    point
                    for point in datapoints
                    if point[0] is not None and not math.isnan(point[0])
                ]
                if not datapoints:
                    continue
            out.append(
                {
                    "target": series.name,
                    "tags": dict(series.tags),
                    "datapoints": datapoints,
                }
            )
    text = json.dumps(out)
    return text.replace("NaN,", "null,").replace("Infinity,", "1e9999,")


def format_csv(series_list: Sequence[TimeSeries], *, tz: tzinfo = UTC) -> str:
    """One ``name,YYYY-MM-DD HH:MM:SS,value`` row per value (Excel dialect)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel")
    for series in series_list:
        for index, value in enumerate(series):
            moment = datetime.fromtimestamp(series.start + index * series.step, tz)
            writer.writerow((series.name, moment.strftime("%Y-%m-%d %H:%M:%S"), value))
    return buffer.getvalue()


def format_raw(series_list: Sequence[TimeSeries]) -> str:
    """``name,start,end,step|v1,v2,...`` per series (``None`` for no data)."""
    return "".join(
        f"{series.name},{series.start},{series.end},{series.step}|"
        + ",".join(map(repr, series))
        + "\n"
        for series in series_list
    )
