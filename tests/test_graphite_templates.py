"""Tests of statsyard.graphite.templates: entities taken out of Graphite paths."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statsyard.app import StatsYard
from statsyard.config import Config, GraphiteConfig, load_config
from statsyard.exceptions import ConfigError
from statsyard.graphite.protocol import GraphiteParser
from statsyard.graphite.templates import compile_templates

TIMEOUT = 10.0
COLLECTD = "collectd.* metric.entity.metric*"


def test_the_collectd_rule_takes_the_host_as_entity() -> None:
    """The issue's example: the second part is the entity, the rest the metric."""
    rules = compile_templates([COLLECTD])
    assert rules.resolve("collectd.web1.cpu-0.cpu-idle") == (
        "collectd.cpu-0.cpu-idle",
        "web1",
    )
    assert rules.resolve("diamond.web1.cpu") is None


def test_the_first_matching_filter_wins_and_empty_parts_are_dropped() -> None:
    """Rules are tried in order; an empty template part drops that path part."""
    rules = compile_templates(
        [
            "servers.*.cpu .entity.metric.metric",
            "servers.* .entity.metric*",
            "metric",
        ]
    )
    assert rules.resolve("servers.db1.cpu.idle.extra") == ("cpu.idle", "db1")
    assert rules.resolve("servers.db1.mem.free") == ("mem.free", "db1")
    assert rules.resolve("other.thing") == ("other", "")


def test_several_entity_parts_are_joined_with_dots() -> None:
    """Two entity parts make one dotted entity."""
    rules = compile_templates(["dc.* .entity.entity.metric*"])
    assert rules.resolve("dc.eu.web1.load") == ("load", "eu.web1")


def test_bad_rules_are_reported_together_with_their_index() -> None:
    """Every bad rule is named, with what is wrong with it."""
    with pytest.raises(ConfigError) as caught:
        compile_templates(
            ["a.* metric.host", "a b c", "x metric*.metric", "a..b metric", "y entity"]
        )
    problems = caught.value.problems
    assert len(problems) == 5
    assert problems[0].startswith("graphite.templates[0] 'a.* metric.host': 'host'")
    assert "got 3 fields" in problems[1]
    assert "'metric*' is only last" in problems[2]
    assert "empty part" in problems[3]
    assert "names no 'metric' part" in problems[4]


def test_bad_templates_stop_the_configuration_with_every_other_problem() -> None:
    """load_config reports a bad template beside other bad settings."""
    with pytest.raises(ConfigError) as caught:
        load_config(
            environ={
                "STATSYARD_GRAPHITE_TEMPLATES": "collectd.* metric.bogus",
                "STATSYARD_HTTP_PORT": "-1",
            }
        )
    text = str(caught.value)
    assert "graphite.templates[0]" in text
    assert "http.port (from STATSYARD_HTTP_PORT)" in text


def test_templates_and_entity_tag_come_from_a_file(tmp_path: Path) -> None:
    """The TOML list and the entity tag load and render back."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'[graphite]\ntemplates = ["{COLLECTD}"]\nentity_tag = "host"\n',
        encoding="utf-8",
    )
    config = load_config(path, environ={})
    assert config.graphite.templates == (COLLECTD,)
    assert config.graphite.entity_tag == "host"


_PART = st.text(alphabet="abcxyz019-_", min_size=1, max_size=6)


@given(st.lists(_PART, min_size=2, max_size=8))
def test_metric_and_entity_parts_reassemble_the_path(parts: list[str]) -> None:
    """With 'metric.entity.metric*' nothing but the entity leaves the metric."""
    rules = compile_templates(["metric.entity.metric*"])
    metric, entity = rules.resolve(".".join(parts)) or ("", "")
    assert entity == parts[1]
    assert metric.split(".") == [parts[0], *parts[2:]]


def test_the_parser_prefers_the_entity_tag_over_a_template() -> None:
    """entity_tag names the tag; an explicit tag wins over the template."""
    parser = GraphiteParser(templates=[COLLECTD], entity_tag="host")
    points, rejects, _ = parser.parse_lines(
        b"collectd.web1.load 1 1700000000\n"
        b"collectd.web1.load;host=web9 2 1700000000\n"
        b"cpu;host=web2;dc=eu 3 1700000000\n"
        b"plain.path 4 1700000000\n"
    )
    assert rejects == []
    assert [(m, e) for m, e, _, _ in points] == [
        ("collectd.load", "web1"),
        ("collectd.load", "web9"),
        ("cpu;dc=eu", "web2"),
        ("plain.path", "graphite"),
    ]


def test_collectd_lines_over_tcp_are_stored_under_their_host(tmp_path: Path) -> None:
    """collectd-style lines sent over TCP are stored with the host as entity."""
    lines = [
        b"collectd.web1.cpu-0.cpu-idle 97 1700000000",
        b"collectd.web2.cpu-0.cpu-idle 88 1700000000",
        b"collectd.web1.memory.memory-used 1024 1700000010",
        b"other.metric 5 1700000000",
    ]
    graphite = GraphiteConfig(
        tcp_port=0, udp_port=0, templates=(COLLECTD,), enabled=True
    )
    yard = StatsYard(
        Config(graphite=graphite), data_dir=tmp_path / "data", ship_metrics=False
    )
    with yard:
        listener = yard.child("graphite").proxy()
        (tcp, _udp) = listener.addresses().get(timeout=TIMEOUT)
        with socket.create_connection(tcp, TIMEOUT) as sock:
            sock.sendall(b"\n".join(lines) + b"\n")
        deadline = time.monotonic() + TIMEOUT
        while yard.counts().pushed < len(lines):  # the listener queued them all
            assert time.monotonic() < deadline, yard.counts()
            threading.Event().wait(0.01)
        yard.flush()
        assert yard.series("collectd.**") == [
            ("collectd.cpu-0.cpu-idle", "web1"),
            ("collectd.cpu-0.cpu-idle", "web2"),
            ("collectd.memory.memory-used", "web1"),
        ]
        assert yard.query("collectd.cpu-0.cpu-idle", "web2") == {
            "web2": [(1_700_000_000_000, 88.0)]
        }
        assert yard.series("other.*") == [("other.metric", "graphite")]
