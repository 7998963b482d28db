"""The query and series commands, called as the service's CLI will call them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from statsyard.cli.query import (
    add_query_arguments,
    add_series_arguments,
    main,
    parse_step,
    parse_time,
    run_query,
    run_series,
)
from statsyard.datapoint import DataPoint
from statsyard.storage import Storage
from tests._storage_helpers import REPO, T0, points

NOW = 1_700_000_000_000


def _query_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_query_arguments(parser)
    return parser.parse_args(list(argv))


def _series_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_series_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with cpu.load for two hosts and mem.free for one."""
    directory = tmp_path / "data"
    with Storage.open(directory, checkpoint_points=None) as s:
        s.append(points("cpu.load", "h1", [1.5, 2.5, 3.5]))
        s.checkpoint()
        s.append(points("cpu.load", "h2", [10, 20]) + points("mem.free", "h1", [7]))
    return directory


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", NOW),
        ("-1h", NOW - 3_600_000),
        ("-15m", NOW - 900_000),
        ("-30s", NOW - 30_000),
        ("-2d", NOW - 2 * 86_400_000),
        ("now-1h", NOW - 3_600_000),
        ("1700000000", 1_700_000_000_000),
        ("1700000000.25", 1_700_000_000_250),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000_000),
        ("2023-11-14", 1_699_920_000_000),
        ("-1w", NOW - 7 * 86_400_000),
        ("20231114", 1_699_920_000_000),
        ("22:13_20231114", 1_699_999_980_000),
    ],
)
def test_parse_time_accepts_epoch_iso_and_relative_forms(text: str, want: int) -> None:
    """Every documented time form gives the right ms."""
    assert parse_time(text, now_ms=NOW) == want


@pytest.mark.parametrize("text", ["1h", "", "2023-13-45", "banana"])
def test_parse_time_rejects_other_text_clearly(text: str) -> None:
    """Bad time: ValueError that names it and shows the accepted forms."""
    with pytest.raises(ValueError, match=r"bad time .*expected now, a relative time"):
        parse_time(text, now_ms=NOW)


def test_parse_step_accepts_units_and_ms() -> None:
    """60s, 5m, 5min, 1h, 1d, 1w, 500ms and plain ms; nothing else."""
    steps = ("60s", "5m", "5min", "1h", "1d", "1w", "500ms", "250")
    assert [parse_step(s) for s in steps] == [
        60_000,
        300_000,
        300_000,
        3_600_000,
        86_400_000,
        7 * 86_400_000,
        500,
        250,
    ]
    for bad in ("0", "5x", "-5s", "1.5s"):
        with pytest.raises(ValueError, match="bad step"):
            parse_step(bad)


def test_query_prints_a_table(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default format is a table with every entity's points by time."""
    assert run_query(_query_args("cpu.load", "--data-dir", str(data_dir))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ENTITY", "TIME", "VALUE"]
    assert lines[1].split() == ["h1", "2023-11-14T22:13:20.000Z", "1.5"]
    assert [line.split()[2] for line in lines[1:]] == ["1.5", "2.5", "3.5", "10", "20"]


def test_query_json_with_range_entity_and_step(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--entity, --from/--until and --step/--agg reach the query; JSON is parseable."""
    args = _query_args(
        "cpu.load",
        "--data-dir",
        str(data_dir),
        "--entity",
        "h1",
        "--from",
        str((T0 + 1000) / 1000),
        "--until",
        "2023-11-14T22:13:23Z",
        "--step",
        "2s",
        "--agg",
        "max",
        "--format",
        "json",
    )
    assert run_query(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "metric": "cpu.load",
        "series": {"h1": [[T0, 2.5], [T0 + 2000, 3.5]]},
    }


def test_query_csv(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CSV has a header and one row per point."""
    args = _query_args("mem.free", "--data-dir", str(data_dir), "--format", "csv")
    assert run_query(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        "metric,entity,timestamp_ms,time,value",
        f"mem.free,h1,{T0},2023-11-14T22:13:20.000Z,7",
    ]


def test_bad_time_exits_2_with_the_reason(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --from: message on stderr, nothing on stdout, status 2."""
    assert (
        run_query(
            _query_args("cpu.load", "--data-dir", str(data_dir), "--from", "soon")
        )
        == 2
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bad time 'soon'" in captured.err


def test_not_a_data_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pointing at some other directory is a clear error, for both commands."""
    (tmp_path / "other.txt").write_text("x")
    assert run_query(_query_args("cpu.load", "--data-dir", str(tmp_path))) == 2
    assert "is not a StatsYard data directory" in capsys.readouterr().err
    assert run_series(_series_args("--data-dir", str(tmp_path / "nope"))) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_metric_exits_1_naming_it(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown metric is reported (with a hint), not printed as empty."""
    assert run_query(_query_args("cpu.lod", "--data-dir", str(data_dir))) == 1
    assert "unknown metric 'cpu.lod'" in capsys.readouterr().err


def test_an_unknown_entity_of_a_known_metric_prints_no_points(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The query opens only the series asked for; a metric stored under other
    entities is still known: an empty table, status 0, as before."""
    args = _query_args("cpu.load", "--data-dir", str(data_dir), "--entity", "h9")
    assert run_query(args) == 0
    assert capsys.readouterr().out.split() == ["ENTITY", "TIME", "VALUE"]
    args = _query_args("cpu.lod", "--data-dir", str(data_dir), "--entity", "h1")
    assert run_query(args) == 1
    assert "unknown metric 'cpu.lod'" in capsys.readouterr().err


def test_series_lists_matching_pairs(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """series [PATTERN] prints metric<TAB>entity lines; a bad pattern exits 2."""
    assert run_series(_series_args("--data-dir", str(data_dir))) == 0
    assert capsys.readouterr().out == "cpu.load\th1\ncpu.load\th2\nmem.free\th1\n"
    assert run_series(_series_args("cpu.*", "--data-dir", str(data_dir))) == 0
    assert capsys.readouterr().out == "cpu.load\th1\ncpu.load\th2\n"
    assert run_series(_series_args("cpu.[x", "--data-dir", str(data_dir))) == 2
    assert "unbalanced" in capsys.readouterr().err


def test_module_runs_as_a_program_while_a_writer_holds_the_directory(
    tmp_path: Path,
) -> None:
    """python -m statsyard.cli.query reads a directory a live writer has open."""
    with Storage.open(tmp_path) as writer:
        writer.append([DataPoint("disk.used", "h9", 42, T0)])
        writer.sync()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "statsyard.cli.query",
                "query",
                "disk.used",
                "--data-dir",
                str(tmp_path),
                "--format",
                "csv",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()[1] == f"disk.used,h9,{T0},2023-11-14T22:13:20.000Z,42"
    )


def test_relative_times_can_follow_the_option_as_written_in_the_docs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--from -15m`` and ``--from -1w`` (separate arguments starting with '-')."""
    from statsyard.datapoint import now_ms

    now = now_ms()
    week = 7 * 86_400_000
    with Storage.open(tmp_path) as s:
        s.append(
            [
                DataPoint("m", "e", 0, now - 2 * week),
                DataPoint("m", "e", 1, now - 3_600_000),
                DataPoint("m", "e", 2, now),
            ]
        )
    for since, want in (("-15m", ["2"]), ("-1w", ["1", "2"])):
        argv = ["query", "m", "--data-dir", str(tmp_path), "--from", since]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert [line.split()[2] for line in out.splitlines()[1:]] == want
