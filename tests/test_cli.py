"""Tests of statsyard.cli.main: subcommands, configuration errors, signals."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from statsyard.cli.main import main
from statsyard.cli.service import SignalGate
from statsyard.storage import Storage

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
    assert re.search(r'level = "DEBUG" +# flag --log-level', capsys.readouterr().out)


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
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --data-dir, `series` and `query` read the configured data_dir."""
    from statsyard import StatsYard

    data_dir = tmp_path / "configured"
    with StatsYard(data_dir=data_dir, ship_metrics=False) as yard:
        yard.push(("disk.free", "db-1", 42, 1_700_000_000_000))
    monkeypatch.setenv("STATSYARD_STORAGE_DATA_DIR", str(data_dir))
    assert main(["series"]) == 0
    assert capsys.readouterr().out.split() == ["disk.free", "db-1"]
    status = main(["query", "disk.free", "--format", "csv"])
    assert status == 0
    assert "disk.free,db-1,1700000000000" in capsys.readouterr().out
    assert main(["series", "--data-dir", str(tmp_path / "elsewhere")]) == 2


def test_a_read_with_its_directory_given_still_checks_any_configuration(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`query --data-dir` loads no configuration when nothing sets one, and
    its defaults are the configuration's; a variable, file or flag given is
    loaded and checked as before."""
    from statsyard.cli.main import _ENV_PREFIX, READ_LOGGING
    from statsyard.config import ENV_PREFIX, LoggingConfig

    assert (LoggingConfig().level, LoggingConfig().format) == READ_LOGGING
    assert _ENV_PREFIX == ENV_PREFIX
    for name in [n for n in os.environ if n.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    with Storage.open(data_dir) as storage:
        storage.append([("disk.free", "db-1", 42, 1_700_000_000_000)])
    read = ["query", "disk.free", "--data-dir", str(data_dir), "--format", "csv"]
    assert main(read) == 0
    assert "disk.free,db-1,1700000000000" in capsys.readouterr().out
    monkeypatch.setenv("statsyard_pipeline_queue_capacity", "0")
    assert main(read) == 2
    assert "pipeline.queue_capacity" in capsys.readouterr().err
    monkeypatch.delenv("statsyard_pipeline_queue_capacity")
    assert main([*read, "--log-level", "LOUD"]) == 2
    assert "logging.level" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nfsync = 3\n")
    assert main([*read, "--config", str(bad)]) == 2
    assert "storage.fsync" in capsys.readouterr().err


def test_second_signal_exits_at_once() -> None:
    """The first signal asks for a graceful stop; the second exits with 128 + signal."""
    exits: list[int] = []
    gate = SignalGate(hard_exit=exits.append)
    gate(signal.SIGTERM)
    assert gate.stop.is_set()
    assert exits == []
    gate(signal.SIGINT)
    assert exits == [128 + signal.SIGINT]


def _read_lines(stream: Iterable[str], lines: queue.Queue[str]) -> None:
    for line in stream:
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
    received = r"INFO +statsyard\.cli\.service: Received SIG"
    assert any(re.search(received, line) for line in seen)


def test_ingest_commands_tune_the_collector_and_restore_it() -> None:
    """run and stress collect less often while they ingest, then put it back."""
    import gc

    from statsyard.cli.service import tuned_gc_for_ingest

    before = gc.get_threshold()
    with tuned_gc_for_ingest():
        assert gc.get_threshold()[0] == 50_000
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _service(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    """Start `python -m statsyard` (ports 0, no shipping) with stderr piped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATSYARD_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "statsyard",
            "--graphite-tcp-port",
            "0",
            "--graphite-udp-port",
            "0",
            "--http-port",
            "0",
            "--metrics-enabled",
            "false",
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_signal_run(tmp_path: Path, signum: int, delay: float) -> tuple[int, str]:
    process = _service(tmp_path, "--storage-data-dir", str(tmp_path / "data"))
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=_read_lines, args=(process.stderr, lines), daemon=True
    )
    reader.start()
    seen: list[str] = []
    try:
        _wait_for(lines, r"StatsYard running", seen)
        # A random moment after start-up, while every thread runs: the signal
        # may be delivered to any of them. (Not a wait for an actor.)
        time.sleep(delay)
        process.send_signal(signum)
        status = process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
    reader.join(TIMEOUT)
    while not lines.empty():
        seen.append(lines.get_nowait())
    return status, "".join(seen)


def test_every_stop_signal_is_taken_and_drains(tmp_path: Path) -> None:
    """30 runs, SIGTERM or SIGINT at a random moment: each drains and exits 0.

    Issue 8 defect 7: a signal delivered to a worker thread was never handled.
    Three services run at a time to keep the test short.
    """
    rng = random.Random(14)
    runs = [
        (tmp_path / f"run{i}", rng.choice([signal.SIGTERM, signal.SIGINT]))
        for i in range(30)
    ]
    for directory, _ in runs:
        directory.mkdir()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda run: _stop_signal_run(run[0], run[1], rng.uniform(0, 0.3)),
                runs,
            )
        )
    for (_, signum), (status, err) in zip(runs, results, strict=True):
        name = signal.Signals(signum).name
        assert status == 0, err
        assert f"Received {name}: stopping input, draining the queue" in err
        assert "Summary: 0 points accepted" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("what", ["busy port", "locked directory", "file"])
def test_start_up_failure_is_one_line_and_status_1(tmp_path: Path, what: str) -> None:
    """Busy port, data directory in use, a file: one line naming it, exit 1.

    No traceback and no "running" line (issue 8 defect 11).
    """
    from statsyard.storage import Storage

    data_dir = tmp_path / "data"
    with contextlib.ExitStack() as stack:
        extra = ["--storage-data-dir", str(data_dir)]
        if what == "busy port":
            busy = stack.enter_context(socket.socket())
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            extra += ["--graphite-tcp-port", str(port)]
            named = f"127.0.0.1:{port}"
        elif what == "locked directory":
            stack.enter_context(Storage.open(data_dir))
            named = str(data_dir)
        else:
            data_dir.write_text("not a directory")
            named = str(data_dir)
        process = _service(tmp_path, *extra)
        _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert "StatsYard running" not in err
    critical = [line for line in err.splitlines() if "CRITICAL" in line]
    assert len(critical) == 1, err
    assert "could not start" in critical[0]
    assert named in critical[0]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """main(argv) in-process: (exit status, stderr), argparse's exits included."""
    try:
        status = main(argv)
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else 1
    return status, capsys.readouterr().err


def _mistakes(tmp_path: Path) -> list[tuple[list[str], int, str]]:
    """(arguments, exit status, what stderr must say) for common mistakes."""
    from statsyard import StatsYard

    good = tmp_path / "good"
    with StatsYard(data_dir=good, ship_metrics=False) as yard:
        yard.push(("cpu.load", "web-1", 1.0, 1_700_000_000_000))
    junk = tmp_path / "junk.toml"
    junk.write_bytes(bytes(range(256)) * 4)
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    missing = str(tmp_path / "missing")
    d = ["--data-dir", str(good)]
    m = ["query", "cpu.load", *d]
    return [
        (["qeury"], 2, "unknown command 'qeury' (did you mean 'query'?)"),
        (["sereis"], 2, "did you mean 'series'?"),
        (
            [*m, "--form", "csv"],
            2,
            "unrecognized arguments: --form",
        ),
        ([*m, "--ent", "x"], 2, "unrecognized arguments: --ent"),
        ([*m, "--from", "-1x"], 2, "bad time '-1x'"),
        ([*m, "--from", "yesterdays"], 2, "bad time 'yesterdays'"),
        (
            [*m, "--until", "2023-13-45"],
            2,
            "bad time '2023-13-45'",
        ),
        ([*m, "--step", "5x"], 2, "bad step '5x'"),
        ([*m, "--agg", "mean"], 2, "invalid choice: 'mean'"),
        (["query", "nope", *d], 1, "unknown metric 'nope'"),
        (["query", "cpu.load", "--data-dir", missing], 2, "does not exist"),
        (["query", "cpu.load", "--data-dir", str(a_file)], 2, "not a directory"),
        (["query"], 2, "the following arguments are required: metric"),
        (["series", "--data-dir", missing], 2, "does not exist"),
        (["check", missing], 2, "does not exist"),
        (["check", str(a_file)], 2, "not a directory"),
        (["config", "--config", str(junk)], 2, "not a TOML text file"),
        (["run", "--config", str(deep)], 2, "nested too deeply"),
        (["config", "--config", missing], 2, "cannot read it"),
        (["config", "--config", str(tmp_path)], 2, "cannot read it"),
        (["run", "--graphite-tcp-prot", "1"], 2, "unrecognized arguments"),
        (["run", "--graphite-tcp-port", "http"], 2, "graphite.tcp_port"),
        (["config", "--metrics-tags", '{ env = "prod" }'], 2, "metrics.tags"),
        (["config", "--metrics-tags", "env=a|b"], 2, "metrics.tags"),
        (["config", "--log-level", "loud"], 2, "logging.level"),
        (["config", "--log-format", "xml"], 2, "logging.format"),
        (["stress"], 2, "the following arguments are required: N"),
        (["stress", "lots"], 2, "expected a whole number, got 'lots'"),
        (["stress", "-5"], 2, "expected a number >= 0, got '-5'"),
        (["stress", "10", "--graphite-tcp-port", "0"], 2, "unrecognized arguments"),
        (["stress", "10", "--invalid-share", "2"], 2, "expected a number 0..1"),
        (["stress", "10", "--hgrm", "/nonexistent/dir/file"], 2, "cannot write --hgrm"),
    ]


def test_common_mistakes_get_one_clear_line_and_a_documented_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every subcommand, fed common mistakes: the status of docs/service.md,
    a message naming the mistake, and never a traceback."""
    for argv, want_status, want_text in _mistakes(tmp_path):
        status, err = _run(argv, capsys)
        assert (status, want_text in err) == (want_status, True), (argv, err)
        assert "Traceback" not in err, argv


def test_unexpected_errors_are_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception: one line and status 1; --debug lets it through."""
    from statsyard.cli import query as query_cli

    def explode(args: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(query_cli, "run_series", explode)
    assert main(["series"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "statsyard: error: RuntimeError: disk on fire (--debug shows the traceback)\n"
    )
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["series", "--debug"])


def test_each_command_help_lists_its_own_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each command's --help: its own options, the settings only where they apply."""
    helps = {}
    for command in ("run", "config", "stress", "query", "series", "check"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        helps[command] = capsys.readouterr().out
    for command in ("run", "config"):
        assert "--graphite-tcp-port" in helps[command]
        assert "--metrics-tags" in helps[command]
    assert "--pipeline-queue-capacity" in helps["stress"]
    assert "--graphite-tcp-port" not in helps["stress"]
    for command in ("query", "series", "check"):
        assert "--pipeline" not in helps[command]
        assert "--graphite" not in helps[command]
        assert "--log-format" in helps[command]
    assert "--from" in helps["query"] and "--from" not in helps["series"]
    assert len(helps["query"].splitlines()) < 45


def test_version_flag_prints_the_installed_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`statsyard --version` prints the package version and exits 0."""
    from statsyard.cli.main import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"statsyard {version()}\n"


def test_query_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`statsyard query ... | head -1`: no BrokenPipeError traceback, status 1."""
    from statsyard import StatsYard

    with StatsYard(data_dir=tmp_path / "d", ship_metrics=False) as yard:
        yard.push_many(("m", "e", i, 1_700_000_000_000 + i) for i in range(20_000))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATSYARD_")}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "statsyard", "query", "m", "--data-dir", "d"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"ENTITY")
    process.stdout.close()  # what `head -1` does after its line
    err = process.stderr.read().decode()
    assert process.wait(TIMEOUT) == 1
    assert err == ""
