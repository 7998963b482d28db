"""The HTTP API's graphite-web endpoints, through real HTTP on an ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from statsyard.app import StatsYard
from statsyard.config import Config
from statsyard.exceptions import NotRunningError, StatsYardError
from statsyard.http import HttpOptions
from tests._http_helpers import POINTS, Client, serving_yard


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    """A serving StatsYard holding the test points (actors stop after each test)."""
    with serving_yard(tmp_path / "data") as (_yard, http):
        yield http


BRANCH = {"allowChildren": 1, "expandable": 1, "leaf": 0}
LEAF = {"allowChildren": 0, "expandable": 0, "leaf": 1}


def test_find_answers_treejson_by_default_branches_before_leaves(
    client: Client,
) -> None:
    """A node that is both a series and a prefix appears once, as graphite-web does."""
    reply = client.get("/metrics/find", {"query": "servers.*"})
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.headers["Cache-Control"] == "no-cache"
    assert reply.json() == [
        {"text": "db1", "id": "servers.db1", **BRANCH},
        {"text": "web1", "id": "servers.web1", **BRANCH},
    ]
    leaves = client.get("/metrics/find", {"query": "servers.web1.*"}).json()
    assert leaves == [
        {"text": "cpu", "id": "servers.web1.cpu", **LEAF},
        {"text": "mem", "id": "servers.web1.mem", **LEAF},
    ]


def test_find_lists_only_plain_paths_at_the_root(client: Client) -> None:
    """Tagged series (other entities) are not in the path tree."""
    reply = client.get("/metrics/find", {"query": "*"})
    assert [node["id"] for node in reply.json()] == ["servers"]


def test_find_takes_a_posted_form_and_globs(client: Client) -> None:
    """POST works like GET; {a,b} and [..] globs select nodes.

    As in graphite-web, treejson's ids keep the query's glob and nodes of the
    same name appear once; format=json gives the full paths.
    """
    query = "servers.{db1,web1}.c[p]u"
    reply = client.request("/metrics/find", {"query": query}, method="POST")
    assert reply.json() == [{"text": "cpu", "id": "servers.{db1,web1}.cpu", **LEAF}]
    paths = client.get("/metrics/find", {"query": query, "format": "json"}).json()
    assert [n["path"] for n in paths] == ["servers.db1.cpu", "servers.web1.cpu"]


def test_find_completer_and_json_formats(client: Client) -> None:
    """format=completer appends '*' and marks branches with a trailing dot."""
    reply = client.get("/metrics/find", {"query": "servers.d", "format": "completer"})
    assert reply.json() == {
        "metrics": [
            {"path": "servers.db1.", "name": "db1", "is_leaf": "0"},
            {"path": "servers.db1", "name": "db1", "is_leaf": "1"},
        ]
    }
    nodes = client.get("/metrics/find", {"query": "servers.web1.*", "format": "json"})
    assert nodes.json() == [
        {"path": "servers.web1.cpu", "is_leaf": True, "intervals": []},
        {"path": "servers.web1.mem", "is_leaf": True, "intervals": []},
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Invalid parameters (Missing required parameter 'query')"),
        ({"query": ""}, "Invalid parameters (Required parameter 'query' is empty)"),
        ({"query": "a", "format": "xml"}, "Invalid value for 'format' parameter"),
        (
            {"query": "a", "leavesOnly": "yes"},
            "Invalid parameters (Invalid int value 'yes' for param leavesOnly)",
        ),
        ({"query": "a.{b"}, "Invalid parameters (unbalanced"),
    ],
)
def test_find_refuses_bad_requests_with_400_and_one_line(
    client: Client, params: dict[str, str], message: str
) -> None:
    """Each user mistake is a 400 with graphite-web's one-line message."""
    reply = client.get("/metrics/find", params)
    assert reply.status == 400
    assert reply.text.startswith(message)
    assert reply.text.count("\n") == 1


def test_expand_unions_or_groups_the_matches(client: Client) -> None:
    """/metrics/expand: sorted union, or per query with groupByExpr=1."""
    params = [("query", "servers.*.cpu"), ("query", "servers.web1.m*")]
    union = client.get("/metrics/expand", params).json()
    assert union == {
        "results": ["servers.db1.cpu", "servers.web1.cpu", "servers.web1.mem"]
    }
    grouped = client.get("/metrics/expand", [*params, ("groupByExpr", "1")]).json()
    assert grouped == {
        "results": {
            "servers.*.cpu": ["servers.db1.cpu", "servers.web1.cpu"],
            "servers.web1.m*": ["servers.web1.mem"],
        }
    }
    branches = client.get("/metrics/expand", {"query": "servers.*"}).json()
    assert branches == {"results": ["servers.db1", "servers.web1"]}


def test_index_json_lists_every_series_name(client: Client) -> None:
    """/metrics/index.json: plain paths and tagged names, sorted."""
    assert client.get("/metrics/index.json").json() == [
        "cpu;dc=eu;entity=web1",
        "disk.used;entity=web1",
        "disk.used;entity=web2",
        "servers.db1",
        "servers.db1.cpu",
        "servers.web1.cpu",
        "servers.web1.mem",
    ]


def test_tags_lists_the_tags_series_by_tag_matches(client: Client) -> None:
    """/tags lists name and entity; its filter is an anchored regex."""
    assert client.get("/tags").json() == [{"tag": "entity"}, {"tag": "name"}]
    assert client.get("/tags", {"filter": "na"}).json() == [{"tag": "name"}]
    assert client.get("/tags", {"limit": "1"}).json() == [{"tag": "entity"}]


def test_tag_details_count_series_per_value(client: Client) -> None:
    """/tags/<tag> gives each value with its number of series; unknown is null.

    ``name`` covers every series, as seriesByTag('name=...') finds plain
    paths too.
    """
    assert client.get("/tags/entity").json() == {
        "tag": "entity",
        "values": [{"value": "web1", "count": 2}, {"value": "web2", "count": 1}],
    }
    assert client.get("/tags/name", {"filter": "disk"}).json() == {
        "tag": "name",
        "values": [{"value": "disk.used", "count": 2}],
    }
    assert client.get("/tags/nosuch").json() is None


def test_autocomplete_tags_with_and_without_expressions(client: Client) -> None:
    """Grafana's tag editor: tags by prefix, or of the series matching exprs."""
    assert client.get("/tags/autoComplete/tags").json() == ["entity", "name"]
    assert client.get("/tags/autoComplete/tags", {"tagPrefix": "e"}).json() == [
        "entity"
    ]
    reply = client.get("/tags/autoComplete/tags", {"expr": "name=disk.used"})
    assert reply.json() == ["entity"]
    plain = client.get("/tags/autoComplete/tags", {"expr": "name=servers.db1"})
    assert plain.json() == []


def test_autocomplete_values_with_and_without_expressions(client: Client) -> None:
    """Values of a tag, optionally among the series matching exprs."""
    get = client.get
    assert get("/tags/autoComplete/values", {"tag": "entity"}).json() == [
        "web1",
        "web2",
    ]
    assert get(
        "/tags/autoComplete/values", {"tag": "entity", "valuePrefix": "web2"}
    ).json() == ["web2"]
    assert get(
        "/tags/autoComplete/values", [("tag", "name"), ("expr", "entity=~web1")]
    ).json() == ["cpu;dc=eu", "disk.used"]
    missing = get("/tags/autoComplete/values")
    assert (missing.status, missing.json()) == (400, {"error": "no tag specified"})


def test_find_series_matches_tag_expressions(client: Client) -> None:
    """/tags/findSeries applies graphite-web's four operators."""
    find = client.get
    assert find("/tags/findSeries", {"expr": "entity=web1"}).json() == [
        "cpu;dc=eu;entity=web1",
        "disk.used;entity=web1",
    ]
    assert find(
        "/tags/findSeries", [("expr", "name=disk.used"), ("expr", "entity!=web1")]
    ).json() == ["disk.used;entity=web2"]
    bad = find("/tags/findSeries", {"expr": "entity"})
    assert bad.status == 400
    assert bad.json()["error"].startswith("bad seriesByTag expression 'entity'")
    empty = find("/tags/findSeries", {"expr": "entity!=web1"})
    assert empty.status == 400
    assert "must require a non-empty value" in empty.json()["error"]


def test_metrics_exposes_the_registry_in_prometheus_format(tmp_path: Path) -> None:
    """/metrics parses as Prometheus text: gauges, counters with tags, stats."""
    with serving_yard(tmp_path / "data") as (yard, client):
        yard.registry.counter("http.test_hits", tags={"route": "find"}).inc(3)
        yard.registry.histogram("http.test_us").record(250)
        reply = client.get("/metrics")
    assert reply.status == 200
    assert reply.content_type.startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    written = families["statsyard_ingest_written"]
    assert (written.type, written.samples[0].value) == ("gauge", len(POINTS))
    hits = families["statsyard_http_test_hits"]
    assert hits.type == "counter"
    assert hits.samples[0].labels == {"route": "find"}
    assert hits.samples[0].value == 3.0
    assert families["statsyard_http_test_us_max"].samples[0].value == 250.0
    # Reading /metrics does not drain what the DogStatsD shipper will send.
    shipped = {s.name: s.value for s in yard.registry.collect()}
    assert shipped["http.test_us.count"] == 1.0


def test_health_and_readiness(client: Client) -> None:
    """/-/healthy and /-/ready answer 200 while the tree runs."""
    assert client.get("/-/healthy").status == 200
    ready = client.get("/-/ready")
    assert (ready.status, ready.text) == (200, "StatsYard is Ready.\n")


def test_unknown_paths_and_methods_are_refused(client: Client) -> None:
    """404 for an unknown path, 405 for a method an endpoint does not take."""
    assert client.get("/nosuch").status == 404
    assert client.get("/static/../api.py").status == 404
    posted = client.request("/tags", {"filter": "x"}, method="POST")
    assert posted.status == 405
    assert posted.json() == {"error": "method POST not allowed; use GET"}


def test_requests_are_served_concurrently(client: Client) -> None:
    """Many clients at once all get their answers."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(
                lambda _: client.get("/metrics/find", {"query": "servers.*"}).status,
                range(40),
            )
        )
    assert replies == [200] * 40


def test_readiness_is_false_before_start_and_after_stop(tmp_path: Path) -> None:
    """ready() (behind /-/ready) needs a running tree with its storage open."""
    yard = StatsYard(data_dir=tmp_path / "data", ship_metrics=False)
    assert yard.ready() is False
    with yard:
        yard.flush()  # the writer opens the storage in its own thread
        assert yard.ready() is True
        assert yard.http_address is None  # not asked for
    assert yard.ready() is False


def test_a_taken_port_fails_the_start_with_one_clear_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second StatsYard on the same port does not start; the log says why."""
    with serving_yard(tmp_path / "one") as (first, _client):
        address = first.http_address
        assert address is not None
        second = StatsYard(
            Config.of(http={"enabled": True, "port": address[1]}),
            data_dir=tmp_path / "two",
            ship_metrics=False,
        )
        try:
            second.start()
        except StatsYardError:
            pass  # the start fails with the child's error
        else:  # or the supervisor gives up on the child at once
            stopped = second.wait_stopped(timeout=30.0)
            assert stopped is not None
            assert "the port is already in use" in stopped.reason
        second.stop()
    expected = (
        f"cannot serve the HTTP API on http://127.0.0.1:{address[1]}: "
        "the port is already in use"
    )
    assert any(expected in record.getMessage() for record in caplog.records)


def test_the_listening_address_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once it listens, the server logs its URL."""
    with serving_yard(tmp_path / "data") as (yard, _client):
        address = yard.http_address
    assert address is not None
    assert f"HTTP API on http://127.0.0.1:{address[1]}" in caplog.messages


def test_functions_describe_the_render_functions_for_grafana(client: Client) -> None:
    """/functions lists every function (optionally by group); unknown is a 404."""
    every = client.get("/functions").json()
    assert {"sumSeries", "seriesByTag", "aliasByNode"} <= set(every)
    assert every["sumSeries"]["group"] == "Combine"
    grouped = client.get("/functions", {"grouped": "true"}).json()
    assert "sumSeries" in grouped["Combine"]
    only = client.get("/functions", {"group": "Combine"}).json()
    assert {info["group"] for info in only.values()} == {"Combine"}
    one = client.get("/functions/summarize").json()
    assert one["name"] == "summarize"
    assert [p["name"] for p in one["params"]][:2] == ["seriesList", "intervalString"]
    missing = client.get("/functions/nosuch")
    assert (missing.status, missing.json()) == (
        404,
        {"error": "Function not found: nosuch"},
    )


def test_ready_is_503_until_the_tree_is_up(link: Any) -> None:
    """/-/ready answers 503 while ready() is false, served by a bare HttpServer."""
    from statsyard.http.http_server import HttpServer
    from statsyard.http.wiring import build_api
    from statsyard.metrics import Registry

    def no_storage(timeout: float) -> Any:
        raise NotRunningError("no writer has the data directory open")

    api = build_api(
        HttpOptions(), storage=no_storage, registry=Registry(), ready=lambda: False
    )
    server = HttpServer.start(app=api, port=0, link=link)
    try:
        client = Client(server.proxy().address().get(timeout=10))
        ready = client.get("/-/ready")
        assert (ready.status, ready.text) == (503, "StatsYard is not ready.\n")
        assert client.get("/-/healthy").status == 200
        find = client.get("/metrics/find", {"query": "*"})
        assert find.status == 503
        assert find.text.startswith("storage is not open")
    finally:
        server.stop(timeout=10)
    assert link.exits == [(False, None)]
