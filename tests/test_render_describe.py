"""statsyard.render.describe: graphite-web's /functions data for Grafana."""

from __future__ import annotations

import json

import pytest

from statsyard.render import FUNCTIONS
from statsyard.render.describe import GROUPS, function_info, function_list, to_json


def test_every_function_is_listed_with_a_group_signature_and_params() -> None:
    """One entry per function (and seriesByTag), each with graphite-web's keys."""
    listed = function_list()
    assert set(listed) == {*FUNCTIONS, "seriesByTag"}
    assert set(GROUPS) == set(listed)
    for name, info in listed.items():
        assert set(info) == {
            "name",
            "function",
            "description",
            "module",
            "group",
            "params",
        }
        assert info["name"] == name
        assert info["function"].startswith(name + "(")
        assert info["description"]
        assert info["group"] != "Ungrouped"


def test_a_function_is_described_as_graphite_web_describes_it() -> None:
    """Signature, parameter kinds, required, defaults and options."""
    info = function_info("summarize")
    assert info["function"] == (
        "summarize(seriesList, intervalString, func='sum', alignToFrom=False)"
    )
    assert info["group"] == "Transform"
    assert info["params"] == [
        {"name": "seriesList", "type": "seriesList", "required": True},
        {"name": "intervalString", "type": "interval", "required": True},
        {"name": "func", "type": "aggFunc", "default": "sum"},
        {"name": "alignToFrom", "type": "boolean", "default": False},
    ]
    assert function_info("sumSeries")["function"] == "sumSeries(*seriesLists)"
    assert function_info("sumSeries")["params"] == [
        {
            "name": "seriesLists",
            "type": "seriesList",
            "required": True,
            "multiple": True,
        }
    ]
    options = function_info("consolidateBy")["params"][1]["options"]
    assert "max" in options and "median" not in options
    assert function_info("seriesByTag")["group"] == "Special"
    with pytest.raises(KeyError):
        function_info("nosuch")


def test_groups_filter_and_nest_the_list() -> None:
    """?group=Alias and ?grouped=true, as graphite-web's /functions."""
    assert set(function_list(group="Alias")) == {
        "alias",
        "aliasByNode",
        "aliasByTags",
        "aliasSub",
        "aliasByMetric",
    }
    nested = function_list(grouped=True)
    assert set(nested["Filter Data"]) == {"removeAboveValue", "removeBelowValue"}


def test_json_writes_infinity_as_graphite_web_does() -> None:
    """keepLastValue's default limit is inf: 1e9999 in the JSON."""
    text = to_json({"keepLastValue": function_info("keepLastValue")})
    assert '"default": 1e9999}' in text
    assert json.loads(text)["keepLastValue"]["params"][1]["default"] == float("inf")
