"""Tests of statsyard.cli: subcommands, configuration errors, signals."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from statsyard.cli import SignalGate, main

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0


def test_config_prints_values_and_their_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config` shows every setting with default, file, env or flag as its source."""
    path = tmp_path / "s.toml"
    path.write_text("[pipeline]\nqueue_capacity = 10\n", encoding="utf-8")
    monkeypatch.setenv("STATSYARD_STORAGE_FSYNC", "always")
    status = main(["config", "--config", str(path), "--pipeline-batch-size", "7"])
    out = capsys.readouterr().out
    assert status == 0
    assert re.search(rf"queue_capacity = 10 +# file {re.escape(str(path))}", out)
    assert re.search(r'fsync = "always" +# env STATSYARD_STORAGE_FSYNC', out)
    assert re.search(r"batch_size = 7 +# flag --pipeline-batch-size", out)
    assert re.search(r"max_restarts = 3 +# default", out)


def test_log_level_flag_is_a_setting(capsys: pytest.CaptureFixture[str]) -> None:
    """--log-level sets logging.level and is shown as a flag source."""
    assert main(["config", "--log-level", "debug"]) == 0
    assert re.search(
        r'level = "DEBUG" +# flag --logging-level', capsys.readouterr().out
    )


def test_config_errors_exit_with_status_2_and_name_every_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad settings stop start-up before anything runs, all reported together."""
    monkeypatch.setenv("STATSYARD_GRAPHITE_TCP_PORT", "http")
    status = main(["run", "--pipeline-queue-capacity", "0"])
    err = capsys.readouterr().err
    assert status == 2
    assert "invalid configuration (2 problems)" in err
    assert "graphite.tcp_port (from STATSYARD_GRAPHITE_TCP_PORT)" in err
    assert "got 'http'" in err
    assert "pipeline.queue_capacity (from --pipeline-queue-capacity)" in err


def test_query_and_series_read_the_configured_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --data-dir, `series` and `query` read the configured data_dir."""
    from statsyard import StatsYard

    data_dir = tmp_path / "configured"
    with StatsYard(data_dir, ship_metrics=False) as yard:
        yard.push(("disk.free", "db-1", 42, 1_700_000_000_000))
    assert main(["series", "--storage-data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.split() == ["disk.free", "db-1"]
    status = main(
        ["query", "disk.free", "--format", "csv", "--storage-data-dir", str(data_dir)]
    )
    assert status == 0
    assert "disk.free,db-1,1700000000000" in capsys.readouterr().out
    assert main(["series", "--data-dir", str(tmp_path / "elsewhere")]) == 2


def test_second_signal_exits_at_once() -> None:
    """The first signal asks for a graceful stop; the second exits with 128 + signal."""
    exits: list[int] = []
    gate = SignalGate(hard_exit=exits.append)
    gate(signal.SIGTERM)
    assert gate.stop.is_set()
    assert exits == []
    gate(signal.SIGINT)
    assert exits == [128 + signal.SIGINT]


def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


def _wait_for(lines: queue.Queue[str], pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        line = lines.get(timeout=TIMEOUT)
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_graphite_and_drains_on_a_signal(
    tmp_path: Path, signum: int
) -> None:
    """`run` ingests Graphite; a signal drains, writes, exits 0 with a summary."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("STATSYARD_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "statsyard",
            "--storage-data-dir",
            str(tmp_path / "data"),
            "--graphite-tcp-port",
            "0",
            "--graphite-udp-port",
            "0",
            "--metrics-enabled",
            "false",
            "--http-port",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=_read_lines, args=(process.stderr, lines), daemon=True
    )
    reader.start()
    seen: list[str] = []
    try:
        found = _wait_for(lines, r"Graphite listener on tcp 127\.0\.0\.1:(\d+)", seen)
        _wait_for(lines, r"HTTP API on http://127\.0\.0\.1:\d+$", seen)
        with socket.create_connection(
            ("127.0.0.1", int(found.group(1))), TIMEOUT
        ) as sock:
            sock.sendall(
                b"a.b 1 1700000000\nbad line\nc;entity=x 2 N\nd 3 1700000001\n"
            )
        _wait_for(lines, r"Rejected 1 Graphite line", seen)
        process.send_signal(signum)
        summary = _wait_for(lines, r"Summary: .*", seen)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
    assert (
        summary.group(0) == "Summary: 3 points accepted, 3 written, 0 invalid, 0 lost"
    )
    assert any(re.search(r"INFO +statsyard\.cli: Received SIG", line) for line in seen)


def test_ingest_commands_tune_the_collector_and_restore_it() -> None:
    """run and stress collect less often while they ingest, then put it back."""
    import gc

    from statsyard.cli import tuned_gc_for_ingest

    before = gc.get_threshold()
    with tuned_gc_for_ingest():
        assert gc.get_threshold()[0] == 50_000
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
