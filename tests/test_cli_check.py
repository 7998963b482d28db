"""Tests of statsyard.cli.check: `statsyard check` on sound and damaged data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from statsyard.cli.check import check_directory
from statsyard.cli.main import main
from statsyard.datapoint import DataPoint
from statsyard.storage import Storage
from tests._storage_helpers import T0, points


def _data(directory: Path) -> None:
    """400 compacted points in one segment, then 3 in the log (2 series)."""
    with Storage.open(directory, checkpoint_points=None) as s:
        s.append([DataPoint("cpu.load", f"web-{i % 2}", i, T0 + i) for i in range(400)])
        s.checkpoint()
        for i in range(3):
            s.append(points("mem.used", "web-0", [i], start=T0 + 1000 + i))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_sound_directory_reports_everything_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files, points (compacted and in the log), series, range; nothing changed."""
    _data(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert _snapshot(tmp_path) == before
    assert re.search(r"files +1 log file\(s\), [\d,]+ bytes; 1 segment\(s\)", out)
    assert "points          403 (400 compacted in segments, 3 in the log)" in out
    assert "series          3 (2 metrics)" in out
    assert "time range      2023-11-14T22:13:20.000Z .. 2023-11-14T22:13:21.002Z" in out
    assert "damaged         0 record(s) skipped" in out
    assert out.rstrip().endswith("status          ok")


def test_a_damaged_directory_says_where_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flipped byte in a block and one in a log record: both found, status 1."""
    _data(tmp_path)
    (dat,) = tmp_path.glob("seg-*.dat")
    data = bytearray(dat.read_bytes())
    data[len(data) - 5] ^= 0x55  # inside the last block's payload
    dat.write_bytes(bytes(data))
    (log,) = tmp_path.glob("wal-*.log")
    data = bytearray(log.read_bytes())
    record = (len(data) - 16) // 3
    data[16 + record + record // 2] ^= 0xFF  # inside the second record
    log.write_bytes(bytes(data))
    before = _snapshot(tmp_path)

    assert main(["check", str(tmp_path), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert _snapshot(tmp_path) == before  # read-only, even when damaged
    assert report["ok"] is False
    assert report["damaged"] == 2
    assert report["points"] == 2 + 400 - 200  # one log record, one block lost
    problems = "\n".join(report["problems"])
    assert log.name in problems
    assert dat.name in problems
    # The text report names the damage even when the log level hides it.
    assert main(["check", str(tmp_path), "--log-level", "ERROR"]) == 1
    captured = capsys.readouterr()
    assert re.search(
        rf"problem +Skipped 1 damaged records? \(\d+ bytes\) in {re.escape(str(log))}",
        captured.out,
    )
    assert captured.out.rstrip().endswith("status          DAMAGED")
    assert captured.err == ""


def test_a_stranger_file_is_listed(tmp_path: Path) -> None:
    """Entries that are not StatsYard files are reported, not hidden."""
    _data(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "damaged").mkdir()
    report = check_directory(tmp_path)
    assert report.other_files == ["damaged/", "notes.txt"]
    assert report.ok
