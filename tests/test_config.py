"""Tests of statsyard.config: the typed schema, its sources and its errors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import attrs
import pytest

from statsyard.config import (
    SECTIONS,
    Config,
    GraphiteConfig,
    StorageConfig,
    env_name,
    flag_name,
    load_config,
    render_config,
    setting_names,
)
from statsyard.exceptions import ConfigError, StatsYardError

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "statsyard.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "statsyard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_issue() -> None:
    """With no file, environment or flags every setting has its documented default."""
    config = load_config(environ={})
    assert config.storage.data_dir == "./statsyard-data"
    assert config.storage.fsync == "interval"
    assert config.storage.fsync_interval == 1.0
    assert config.storage.segment_bytes == 64 * 1024 * 1024
    assert config.storage.retention_max_age is None
    assert config.storage.retention_max_bytes is None
    assert config.storage.checkpoint_points == 500_000
    assert config.pipeline == attrs.evolve(
        config.pipeline,
        queue_capacity=100_000,
        batch_size=5000,
        max_restarts=3,
        max_seconds=5.0,
        linger=0.05,
    )
    assert config.metrics.instrument is True
    assert (
        config.graphite.host,
        config.graphite.tcp_port,
        config.graphite.udp_port,
    ) == (
        "127.0.0.1",
        2003,
        2003,
    )
    assert config.graphite.max_line_length == 4096
    assert (config.metrics.host, config.metrics.port, config.metrics.tags) == (
        "127.0.0.1",
        8125,
        {},
    )
    assert config.logging.level == "INFO"
    assert all(config.source(s, k) == "default" for s, k, _ in setting_names())


def test_example_file_loads_to_the_defaults() -> None:
    """etc/statsyard.toml sets every value to its default."""
    config = load_config(EXAMPLE, environ={})
    assert attrs.evolve(config, sources={}) == Config()
    assert config.source("pipeline", "batch_size") == f"file {EXAMPLE}"


def test_example_file_shows_every_setting_with_a_comment() -> None:
    """Every schema field appears in the example, under its section, after a comment."""
    document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for section, key, _ in setting_names():
        assert key in document[section], f"{section}.{key} missing from the example"
        index = next(i for i, line in enumerate(lines) if re.match(rf"{key}\s*=", line))
        above = [line for line in lines[:index] if line.strip()]
        assert above[-1].startswith("#") or re.match(r"\w+\s*=", above[-1])
    assert set(document) == set(SECTIONS)


def test_each_source_overrides_the_one_before(tmp_path: Path) -> None:
    """File over defaults, env over file, flag over env; each source is recorded."""
    path = write(
        tmp_path,
        "[pipeline]\nqueue_capacity = 10\nbatch_size = 20\nmax_restarts = 7\n"
        '[storage]\nfsync = "always"\n',
    )
    config = load_config(
        path,
        environ={
            "STATSYARD_PIPELINE_BATCH_SIZE": "30",
            "STATSYARD_PIPELINE_MAX_RESTARTS": "8",
            "HOME": "/ignored",
        },
        flags={"pipeline.max_restarts": "9"},
    )
    assert config.pipeline.queue_capacity == 10
    assert config.pipeline.batch_size == 30
    assert config.pipeline.max_restarts == 9
    assert config.storage.fsync == "always"
    assert config.source("pipeline", "queue_capacity") == f"file {path}"
    assert (
        config.source("pipeline", "batch_size") == "env STATSYARD_PIPELINE_BATCH_SIZE"
    )
    assert config.source("pipeline", "max_restarts") == "flag --pipeline-max-restarts"
    assert config.source("pipeline", "max_seconds") == "default"


def test_environment_text_is_parsed_by_the_setting_type() -> None:
    """Env values become ints, floats, bools, choices, tables and 'off'."""
    config = load_config(
        environ={
            "STATSYARD_STORAGE_FSYNC_INTERVAL": "0.25",
            "STATSYARD_STORAGE_SEGMENT_BYTES": "2_097_152",
            "STATSYARD_STORAGE_RETENTION_MAX_AGE": "off",
            "STATSYARD_STORAGE_RETENTION_MAX_BYTES": "1000000",
            "STATSYARD_GRAPHITE_ENABLED": "no",
            "STATSYARD_METRICS_PROCESS_STATS": "0",
            "STATSYARD_METRICS_TAGS": "env=prod, region = eu",
            "STATSYARD_LOGGING_LEVEL": "debug",
        }
    )
    assert config.storage.fsync_interval == 0.25
    assert config.storage.segment_bytes == 2 * 1024 * 1024
    assert config.storage.retention_max_age is None
    assert config.storage.retention_max_bytes == 1_000_000
    assert config.graphite.enabled is False
    assert config.metrics.process_stats is False
    assert config.metrics.tags == {"env": "prod", "region": "eu"}
    assert config.logging.level == "DEBUG"


def test_zero_retention_means_off(tmp_path: Path) -> None:
    """0 in the file turns retention off (None), and renders back as 0."""
    config = load_config(
        write(tmp_path, "[storage]\nretention_max_age = 0\n"), environ={}
    )
    assert config.storage.retention_max_age is None
    assert "retention_max_age = 0" in render_config(config)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Unknown keys, wrong types, out-of-range values from all sources: one error."""
    path = write(
        tmp_path,
        "[pipeline]\nqueue_capacty = 5\nbatch_size = 0\n"
        '[graphite]\ntcp_port = "2003"\n'
        "[grafite]\nx = 1\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(
            path,
            environ={
                "STATSYARD_STORAGE_FSYNC": "sometimes",
                "STATSYARD_STORAGE_FSYNC_INTRVAL": "1",
            },
            flags={"metrics.interval": "-1"},
        )
    error = caught.value
    assert isinstance(error, StatsYardError)
    assert isinstance(error, ValueError)
    problems = "\n".join(error.problems)
    assert len(error.problems) == 7, problems
    assert (
        "unknown setting pipeline.queue_capacty (did you mean 'queue_capacity'?)"
        in problems
    )
    assert "pipeline.batch_size (in " in problems
    assert "expected an integer from 1 to 1000000, got 0" in problems
    assert "graphite.tcp_port" in problems
    assert "expected an integer from 0 to 65535, got '2003'" in problems
    assert "unknown section [grafite] (did you mean 'graphite'?)" in problems
    assert (
        "storage.fsync (from STATSYARD_STORAGE_FSYNC): expected one of 'always'"
        in problems
    )
    assert "got 'sometimes'" in problems
    assert (
        "unknown environment variable STATSYARD_STORAGE_FSYNC_INTRVAL "
        "(did you mean 'STATSYARD_STORAGE_FSYNC_INTERVAL'?)" in problems
    )
    assert (
        "metrics.interval (from --metrics-interval): expected a number > 0, got '-1'"
        in problems
    )
    assert str(error).startswith("invalid configuration (7 problems):")


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[storage]\nfsync_interval = 0\n", "expected a number > 0, got 0"),
        (
            "[storage]\nsegment_bytes = 1000\n",
            "expected an integer from 1048576 to 536870912, got 1000",
        ),
        ("[storage]\ndata_dir = 3\n", "expected a non-empty string, got 3"),
        ("[pipeline]\nmax_restarts = -1\n", "expected an integer >= 0, got -1"),
        ("[pipeline]\nqueue_capacity = 1.5\n", "expected an integer >= 1, got 1.5"),
        ("[graphite]\nenabled = 1\n", "expected true or false, got 1"),
        ("[graphite]\nmax_line_length = 10\n", "expected an integer >= 64, got 10"),
        ("[metrics]\ntags = { env = 1 }\n", "expected tags: in a file a table"),
        ('[logging]\nlevel = "LOUD"\n', "expected one of 'DEBUG', 'INFO'"),
        ("[storage]\nretention_max_bytes = -5\n", "integer > 0 (or 0 for off), got -5"),
        ("storage = 1\n", "storage must be a table"),
    ],
)
def test_bad_values_name_setting_value_and_expectation(
    tmp_path: Path, toml: str, fragment: str
) -> None:
    """Each kind of bad value is reported with what was expected."""
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(write(tmp_path, toml), environ={})


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    """A missing file or broken TOML is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[storage\n"), environ={})


def test_unknown_flag_setting_is_reported() -> None:
    """A flag naming no setting gets a suggestion."""
    with pytest.raises(
        ConfigError, match=r"unknown setting graphite\.tcpport \(did you mean"
    ):
        load_config(environ={}, flags={"graphite.tcpport": "1"})


def test_sections_built_by_hand_are_checked_too() -> None:
    """The schema's validators also guard code that builds a section directly."""
    with pytest.raises(
        ConfigError, match=r"tcp_port: expected an integer from 0 to 65535"
    ):
        GraphiteConfig(tcp_port=70_000)
    assert StorageConfig(retention_max_age=0).retention_max_age is None
    assert StorageConfig(fsync="ALWAYS").fsync == "always"


def test_render_round_trips_through_load(tmp_path: Path) -> None:
    """The printed configuration is TOML that loads back to the same values."""
    config = load_config(
        environ={"STATSYARD_METRICS_TAGS": "env=prod,team/a=x.y"},
        flags={"storage.data_dir": 'C:\\data "x"', "storage.retention_max_age": "3600"},
    )
    text = render_config(config)
    assert "# flag --storage-data-dir" in text
    assert "# env STATSYARD_METRICS_TAGS" in text
    again = load_config(write(tmp_path, text), environ={})
    assert attrs.evolve(again, sources={}) == attrs.evolve(config, sources={})


def test_names_of_env_variables_and_flags() -> None:
    """The naming helpers follow the documented pattern."""
    assert env_name("pipeline", "queue_capacity") == "STATSYARD_PIPELINE_QUEUE_CAPACITY"
    assert flag_name("graphite", "tcp_port") == "--graphite-tcp-port"
