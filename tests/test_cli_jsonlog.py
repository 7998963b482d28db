"""Tests of statsyard.cli._jsonlog: one JSON object per log line."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from statsyard.cli._jsonlog import JsonFormatter
from statsyard.cli.main import main

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _record(**kwargs: object) -> logging.LogRecord:
    logger = logging.getLogger("statsyard.test")
    return logger.makeRecord(
        "statsyard.test",
        logging.WARNING,
        __file__,
        1,
        "Rejected %d line(s)\nfrom %s",
        (3, "10.0.0.1"),
        None,
        extra=kwargs or None,
    )


def test_a_record_is_one_line_of_json_with_its_extra_fields() -> None:
    """time, level, logger, message (args merged), thread, and extra={...}."""
    line = JsonFormatter().format(
        _record(reason="fields", count=3, peer=("10.0.0.1", 5))
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert TIME.match(entry["time"])
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "statsyard.test"
    assert entry["message"] == "Rejected 3 line(s)\nfrom 10.0.0.1"
    assert entry["extra"] == {"reason": "fields", "count": 3, "peer": ["10.0.0.1", 5]}


def test_exceptions_and_odd_values_stay_on_one_line() -> None:
    """A traceback becomes a field; values JSON cannot hold are repr()'d."""
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        info = sys.exc_info()
    record = _record(path=Path("/x"), surrogate="\udcff")
    record.exc_info = info
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad\nvalue" in entry["exception"]
    assert entry["extra"] == {"path": "PosixPath('/x')", "surrogate": "\udcff"}
    assert "extra" not in json.loads(JsonFormatter().format(_record()))


@pytest.mark.parametrize("how", ["flag", "file"])
def test_every_line_of_a_run_is_a_json_object(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--log-format json (or [logging] format = "json"): each stderr line parses."""
    if how == "flag":
        extra = ["--log-format", "json"]
    else:
        path = tmp_path / "s.toml"
        path.write_text('[logging]\nformat = "json"\nlevel = "DEBUG"\n')
        extra = ["--config", str(path)]
    assert main(["stress", "1000", "--progress", "never", *extra]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 4
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message", "thread"} <= set(entry)
        assert TIME.match(entry["time"])
    assert any(
        e["logger"] == "statsyard.app" and e["message"].startswith("StatsYard stopped")
        for e in entries
    )
