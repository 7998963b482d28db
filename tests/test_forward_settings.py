"""[[forward]] tables: every problem reported at once, defaults per kind."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statsyard.exceptions import ConfigError
from statsyard.forward.settings import ForwardSettings, parse_forward_tables


def test_a_minimal_table_of_each_kind_gets_the_defaults() -> None:
    """name, kind and the destination are enough."""
    found, problems = parse_forward_tables(
        [
            {"name": "mimir", "kind": "prometheus", "url": "https://m:443/api/v1/push"},
            {"name": "relay", "kind": "graphite", "address": "[::1]:2003"},
        ]
    )
    assert problems == []
    mimir, relay = found
    assert (mimir.entity_label, mimir.start, mimir.tls_verify) == (
        "entity",
        "now",
        True,
    )
    assert (relay.entity_as, relay.max_samples) == ("tag", 5000)
    assert mimir.child_id == "forward.mimir"
    assert "address" not in dict(mimir.rows()) and "url" in dict(mimir.rows())


def test_every_problem_is_reported_at_once() -> None:
    """Unknown keys (with hints), bad values and duplicates, all named."""
    _found, problems = parse_forward_tables(
        [
            {"name": "a", "kind": "prometheus", "url": "ftp://x", "entity_lable": "i"},
            {"name": "b", "kind": "graphite", "address": "h", "url": "http://x"},
            {"name": "c", "kind": "prometheus", "url": "http://x", "username": "u"},
            {"name": "a", "kind": "graphite", "address": "h:1", "max_samples": 0},
            {"name": "bad name", "kind": "kafka"},
            {"name": "d", "kind": "prometheus", "url": "http://x", "min_backoff": 9},
            {
                "name": "e",
                "kind": "prometheus",
                "url": "http://x",
                "extra_labels": {"9": "x"},
            },
        ],
        "f.toml",
    )
    assert problems == [
        "f.toml: forward[0] 'a': unknown setting 'entity_lable' (did you mean 'entity_label'?)",  # noqa: E501
        "f.toml: forward[0] 'a'.url: expected an http:// or https:// URL with a host, got 'ftp://x'",  # noqa: E501
        "f.toml: forward[1] 'b': unknown setting 'url' (only for kind = 'prometheus')",
        "f.toml: forward[1] 'b'.address: expected host:port with a port in 1..65535, got 'h'",  # noqa: E501
        "f.toml: forward[2] 'c': username and password_file go together",
        "f.toml: forward[3] 'a'.max_samples: expected an integer >= 1, got 0",
        "f.toml: forward[4] 'bad name'.kind: expected one of 'prometheus', 'graphite', got 'kafka'",  # noqa: E501
        "f.toml: forward[4] 'bad name'.name: expected 1 to 64 letters, digits, '_', '.' or '-' (starting with a letter or digit), got 'bad name'",  # noqa: E501
        "f.toml: forward[5] 'd': min_backoff (9) is above max_backoff (5.0)",
        "f.toml: forward[6] 'e'.extra_labels: expected a table of label names to non-empty strings, got {'9': 'x'}",  # noqa: E501
    ]


def test_a_name_used_twice_is_a_problem() -> None:
    """Names key cursor files and metrics: they must be unique."""
    _found, problems = parse_forward_tables(
        [{"name": "x", "kind": "graphite", "address": "h:1"}] * 2
    )
    assert problems == ["forward: forward[1]: name 'x' is used twice"]


def test_from_mapping_raises_config_error() -> None:
    """The embedded path raises ConfigError with the same messages."""
    with pytest.raises(ConfigError, match="required for kind = 'prometheus'"):
        ForwardSettings.from_mapping({"name": "x", "kind": "prometheus"})


def test_forward_must_be_an_array_of_tables() -> None:
    """[forward] (a single table) is not [[forward]]."""
    _found, problems = parse_forward_tables({"name": "x"}, "f.toml")
    assert problems == [
        "f.toml: forward must be an array of tables [[forward]], got {'name': 'x'}"
    ]


_KEYS = [
    "name",
    "kind",
    "url",
    "address",
    "start",
    "max_samples",
    "timeout",
    "extra_labels",
    "headers",
    "entity_as",
    "username",
    "tls_verify",
    "flush_deadline",
    "bogus",
]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["prometheus", "graphite", "http://h:1/w", "h:1", "now"]),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    st.lists(st.integers(), max_size=2),
)


@given(st.lists(st.dictionaries(st.sampled_from(_KEYS), _VALUES), max_size=3))
def test_any_table_gives_settings_or_named_problems_never_an_exception(
    tables: list[dict[str, object]],
) -> None:
    """Validation reports; it never raises, and every problem names its table."""
    found, problems = parse_forward_tables(tables, "f.toml")
    assert all(p.startswith("f.toml: forward") for p in problems)
    if not problems:
        assert len(found) == len(tables)
    for settings in found:
        table = next(t for t in tables if t.get("name") == settings.name)
        assert ForwardSettings.from_mapping(table) == settings
