"""/render through real HTTP: formats, times, consolidation, pictures, errors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from matplotlib import image

from tests._http_helpers import T0, Client, serving_yard

WEB1 = "servers.web1.cpu"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    """A serving StatsYard holding the test points."""
    with serving_yard(tmp_path / "data") as (_yard, http):
        yield http


def render(client: Client, **params: str) -> list[dict[str, Any]]:
    """The parsed JSON of a /render request (graphite-web's series list)."""
    reply = client.get("/render", {"format": "json", **params})
    assert reply.status == 200, reply.text
    assert reply.content_type == "application/json"
    result: list[dict[str, Any]] = reply.json()
    return result


def test_json_follows_whisper_slots(client: Client) -> None:
    """Each minute slot after ``from`` up to ``until``, as whisper fetches them."""
    result = render(client, target=WEB1, **{"from": str(T0), "until": str(T0 + 300)})
    assert result == [
        {
            "target": WEB1,
            "tags": {"name": WEB1},
            "datapoints": [[float(i), T0 + 60 * i] for i in range(1, 6)],
        }
    ]


def test_repeated_targets_globs_and_functions(client: Client) -> None:
    """target repeats; globs expand; functions from the render engine apply."""
    result = render(
        client,
        **{"from": str(T0), "until": str(T0 + 120)},
        target="sumSeries(servers.*.cpu)",
    )
    assert result[0]["target"] == "sumSeries(servers.*.cpu)"
    assert result[0]["datapoints"] == [[3.0, T0 + 60], [6.0, T0 + 120]]
    reply = client.get(
        "/render",
        [
            ("target", "servers.db1.cpu"),
            ("target", "alias(servers.web1.mem,'memory')"),
            ("from", str(T0)),
            ("until", str(T0 + 60)),
            ("format", "json"),
        ],
    )
    assert [s["target"] for s in reply.json()] == ["servers.db1.cpu", "memory"]


def test_tagged_series_come_from_series_by_tag(client: Client) -> None:
    """Other entities are metric;entity=E, reached with seriesByTag."""
    result = render(
        client,
        target="seriesByTag('name=disk.used','entity=web2')",
        **{"from": str(T0), "until": str(T0 + 60)},
    )
    assert result == [
        {
            "target": "disk.used;entity=web2",
            "tags": {"name": "disk.used", "entity": "web2"},
            "datapoints": [[21.0, T0 + 60]],
        }
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (str(T0), str(T0 + 120)),
        ("22:13_20231114", "22:15_20231114"),
        ("-10min", "-8min"),
        ("now-10min", "now-8min"),
    ],
)
def test_time_forms_select_the_same_slots(client: Client, start: str, end: str) -> None:
    """Epoch, HH:MM_YYYYMMDD and relative times (with now=) agree."""
    now = str(T0 + 600)
    result = render(client, target=WEB1, **{"from": start, "until": end, "now": now})
    assert result[0]["datapoints"] == [[1.0, T0 + 60], [2.0, T0 + 120]]


def test_a_day_form_and_the_default_range(client: Client) -> None:
    """YYYYMMDD is midnight (UTC); without from/until the last day is read."""
    day = datetime.fromtimestamp(T0, UTC).strftime("%Y%m%d")
    result = render(client, target=WEB1, **{"from": day, "until": str(T0 + 60)})
    assert result[0]["datapoints"][-2:] == [[0.0, T0], [1.0, T0 + 60]]
    recent = render(client, target=WEB1, now=str(T0 + 3600))
    values = [v for v, _ in recent[0]["datapoints"] if v is not None]
    assert values == [float(i) for i in range(10)]


def test_max_data_points_and_no_null_points(client: Client) -> None:
    """maxDataPoints consolidates as consolidateBy says; noNullPoints drops nulls."""
    span = {"from": str(T0), "until": str(T0 + 600)}
    averaged = render(client, target=WEB1, maxDataPoints="3", **span)
    assert averaged[0]["datapoints"] == [
        [3.5, T0 + 180],
        [7.5, T0 + 420],
        [None, T0 + 660],
    ]
    maxima = render(
        client, target=f"consolidateBy({WEB1},'max')", maxDataPoints="3", **span
    )
    assert [v for v, _ in maxima[0]["datapoints"]] == [5.0, 9.0, None]
    kept = render(client, target=WEB1, maxDataPoints="3", noNullPoints="true", **span)
    assert kept[0]["datapoints"] == [[3.5, T0 + 180], [7.5, T0 + 420]]


def test_csv_and_raw_formats(client: Client) -> None:
    """csv: name,time,value rows; raw: name,start,end,step|values."""
    span = {"from": str(T0), "until": str(T0 + 120), "target": WEB1}
    csv_reply = client.get("/render", {**span, "format": "csv"})
    assert csv_reply.content_type.startswith("text/csv")
    assert csv_reply.text == (
        f"{WEB1},2023-11-14 22:14:00,1.0\r\n{WEB1},2023-11-14 22:15:00,2.0\r\n"
    )
    raw = client.get("/render", {**span, "format": "raw"})
    assert raw.text == f"{WEB1},{T0 + 60},{T0 + 180},60|1.0,2.0\n"


def test_png_is_the_default_format_and_has_the_asked_size(client: Client) -> None:
    """Without format, /render draws a PNG of width x height pixels."""
    reply = client.get(
        "/render",
        {
            "target": "servers.*.cpu",
            "from": str(T0),
            "until": str(T0 + 600),
            "width": "500",
            "height": "240",
            "title": "CPU",
            "areaMode": "stacked",
            "yMin": "0",
            "lineWidth": "2",
        },
    )
    assert reply.status == 200
    assert reply.content_type == "image/png"
    pixels = image.imread(io.BytesIO(reply.body), format="png")
    assert pixels.shape[:2] == (240, 500)


def test_svg_names_its_series(client: Client) -> None:
    """format=svg is an SVG document with the legend's names."""
    reply = client.get(
        "/render",
        {"target": WEB1, "from": str(T0), "until": str(T0 + 600), "format": "svg"},
    )
    assert reply.content_type == "image/svg+xml"
    assert WEB1 in reply.text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"target": "nosuch(a.b)"}, "unknown function nosuch()"),
        ({"target": "sumSeries(a.b"}, "bad target 'sumSeries(a.b'"),
        ({"target": "a.b", "from": "yesterdayish"}, "from: bad time 'yesterdayish'"),
        ({"target": "a.b", "format": "xml"}, "format must be one of"),
        ({"target": "a.b", "maxDataPoints": "0"}, "maxDataPoints must be a positive"),
        ({"target": "a.b", "tz": "Mars/Base"}, "unknown time zone"),
        (
            {"target": "a.b", "from": str(T0 + 60), "until": str(T0)},
            f"from ({T0 + 60}) must be before until",
        ),
        ({"target": "a.b", "format": "png", "areaMode": "up"}, "area_mode"),
        ({"target": "a.b", "format": "png", "bgcolor": "nocolour"}, "not a colour"),
    ],
)
def test_bad_requests_get_400_and_one_line(
    client: Client, params: dict[str, str], expected: str
) -> None:
    """A user's mistake is a 400 with one line saying what was wrong."""
    reply = client.get("/render", {"format": "json", **params})
    assert reply.status == 400
    assert reply.text.startswith("Invalid parameters (")
    assert expected in reply.text
    assert reply.text.count("\n") == 1


def test_a_request_reading_too_many_points_is_refused(tmp_path: Path) -> None:
    """More stored points than render.max_points: a 400 naming the limit."""
    with serving_yard(tmp_path / "data", render={"max_points": 5}) as (_yard, client):
        reply = client.get(
            "/render",
            {"target": "servers.*.cpu", "from": str(T0), "until": str(T0 + 600)},
        )
    assert reply.status == 400
    assert "5" in reply.text
    assert reply.text.count("\n") == 1


def test_concurrent_renders_take_turns_and_all_succeed(client: Client) -> None:
    """Renders wait for their turn (one computes at a time); none is lost."""
    import concurrent.futures

    params = {"target": "servers.*.cpu", "from": str(T0), "until": str(T0 + 600)}
    params["format"] = "json"
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: client.get("/render", params), range(12)))
    assert {reply.status for reply in replies} == {200}
    assert len({reply.body for reply in replies}) == 1
