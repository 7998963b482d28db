"""Parsing Graphite lines in a worker process: same answers, nothing lost, no orphan."""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.graphite._parse_worker import (
    ParseWorker,
    parse_request,
    settings_of,
)
from statsyard.graphite.protocol import GraphiteParser, Reject
from tests._graphite import RecordingObserver, start_listener

__all__ = ["start_listener"]  # the fixture, imported from tests._graphite

TIMEOUT = 10.0
ROOT = Path(__file__).resolve().parent.parent
WORKER_MODULE = "statsyard._child_process"
NOW = 1_750_000_000_000

_line = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda path, value, stamp: b"%s %s %s" % (path, value, stamp),
        st.sampled_from(
            [b"a.b", b"c;entity=e;x=1", b"d;=", b"e\x01", b"\xc3\xa9t\xc3\xa9"]
        ),
        st.sampled_from([b"1", b"-2.5", b"nan", b"1e400", b"x", b"1_0"]),
        st.sampled_from([b"1700000000", b"N", b"-1", b"1700000000.5", b"99", b"t"]),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_line, max_size=20))
def test_the_worker_answers_exactly_what_the_listener_would(lines: list[bytes]) -> None:
    """Rows and rejects come back through marshal unchanged, for any lines."""
    import marshal

    chunk = b"".join(line + b"\n" for line in lines)
    parser = GraphiteParser(max_line_length=64)
    rows, rejects, _ = parser.parse_lines(chunk, final=True, now_ms=NOW)
    payload = marshal.dumps((settings_of(parser), NOW, [chunk, b""]))
    ((their_rows, their_rejects), empty) = marshal.loads(parse_request(payload))
    assert their_rows == rows
    assert [Reject(*r) for r in their_rejects] == rejects
    assert empty == ([], [])


def test_a_parse_worker_parses_a_batch_of_chunks() -> None:
    """One request, one chunk per connection, answered in order."""
    parser = GraphiteParser(default_entity="dflt", templates=["a.* metric.entity"])
    worker = ParseWorker(parser)
    try:
        worker.submit([b"a.h1 1 1700000000\n", b"bad\nb 2 N\n"], NOW)
        first, second = worker.collect()
    finally:
        worker.close()
    assert first == ([("a", "h1", 1.0, 1_700_000_000_000)], [])
    assert second[0] == [("b", "dflt", 2.0, NOW)]
    assert [r.reason for r in second[1]] == ["fields"]


def _lines(count: int, start: int = 0) -> bytes:
    return b"".join(
        b"w.m%d;entity=e%d %d 1700000000\n" % (i % 10, i % 3, i)
        for i in range(start, start + count)
    )


def test_the_listener_parses_in_its_worker_and_counts_bad_lines(
    start_listener: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Good lines arrive in order, bad ones are counted and logged by the listener."""
    observer = RecordingObserver()
    proxy, sink = start_listener(parse_worker=True, observer=observer)
    assert proxy.parse_worker_pid().get(timeout=TIMEOUT) is not None
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    with caplog.at_level(logging.WARNING, logger="statsyard.graphite.listener"):
        with socket.create_connection(tcp, timeout=TIMEOUT) as sock:
            sock.sendall(_lines(3000) + b"bad line here x\n" + _lines(3000, 3000))
        assert sink.wait_received(6000)
        assert observer.wait_for("rejected", 1)
    assert [p.value for p in sink.take()] == [float(i) for i in range(6000)]
    stats = proxy.stats().get(timeout=TIMEOUT)
    assert stats.lines_accepted == 6000
    assert stats.rejected["fields"] == 1
    assert any("Rejected" in r.getMessage() for r in caplog.records)


def test_a_killed_worker_loses_no_line_and_the_listener_parses_on(
    start_listener: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL of the worker mid-stream: its lines are parsed by the listener."""
    proxy, sink = start_listener(parse_worker=True)
    pid = proxy.parse_worker_pid().get(timeout=TIMEOUT)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    sent = 0
    with socket.create_connection(tcp, timeout=TIMEOUT) as sock:
        for round_ in range(40):
            if round_ == 10:
                os.kill(pid, signal.SIGKILL)
            sock.sendall(_lines(1000, sent))
            sent += 1000
        assert sink.wait_received(sent)
    assert sorted(p.value for p in sink.take()) == [float(i) for i in range(sent)]
    stats = proxy.stats().get(timeout=TIMEOUT)
    assert stats.lines_accepted == sent
    assert stats.points_lost_at_stop == 0
    assert proxy.parse_worker_pid().get(timeout=TIMEOUT) is None
    assert any(
        "parse worker" in r.getMessage() and r.levelno == logging.ERROR
        for r in caplog.records
    )


def test_a_stopped_listener_leaves_no_worker(start_listener: Any) -> None:
    """Stopping the listener closes its worker (and reaps it)."""
    proxy, _ = start_listener(parse_worker=True)
    pid = proxy.parse_worker_pid().get(timeout=TIMEOUT)
    proxy.actor_ref.stop(timeout=TIMEOUT)
    assert not psutil.pid_exists(pid) or (
        psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    try:
        process = psutil.Process(pid)
        while time.monotonic() < deadline:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
            psutil.wait_procs([process], timeout=0.05)
    except psutil.NoSuchProcess:
        return True
    return False


def test_no_parse_worker_outlives_a_sigkilled_service(tmp_path: Path) -> None:
    """`statsyard run` with parse_worker, kill -9 mid-ingest: its worker dies too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATSYARD_")}
    env["PYTHONPATH"] = str(ROOT)
    service = subprocess.Popen(
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
            "--graphite-parse-worker",
            "true",
            "--http-enabled",
            "false",
            "--metrics-enabled",
            "false",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=_read_lines, args=(service.stderr, lines), daemon=True
    ).start()
    try:
        while True:
            found = re.search(
                r"Graphite listener on tcp 127\.0\.0\.1:(\d+)",
                lines.get(timeout=TIMEOUT),
            )
            if found:
                break
        workers = [
            child
            for child in psutil.Process(service.pid).children()
            if WORKER_MODULE in child.cmdline()
        ]
        assert len(workers) == 1
        with socket.create_connection(
            ("127.0.0.1", int(found.group(1))), TIMEOUT
        ) as sock:
            sock.sendall(_lines(20_000))
            service.kill()
        service.wait(TIMEOUT)
        assert _gone(workers[0].pid, 30), "the parse worker outlived the service"
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(TIMEOUT)
