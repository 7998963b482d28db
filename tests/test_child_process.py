"""Worker processes: replies, errors, and dying with their parent however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from statsyard._child_process import WorkerError, WorkerGoneError, WorkerProcess
from tests._processes import ends

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _handlers_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))


@pytest.fixture
def echo_worker() -> Iterator[WorkerProcess]:
    worker = WorkerProcess("_worker_handlers:echo", name="echo")
    yield worker
    worker.close()


def test_a_worker_answers_each_request(echo_worker: WorkerProcess) -> None:
    """Requests of every size, up to megabytes, come back through the handler."""
    for size in (0, 1, 5, 65_536, 3 * 2**20 + 7):
        payload = os.urandom(size)
        assert echo_worker.request(payload, timeout=30) == payload[::-1]


def test_a_handler_error_comes_back_and_the_worker_serves_on() -> None:
    worker = WorkerProcess("_worker_handlers:fail")
    try:
        with pytest.raises(WorkerError, match="cannot handle b'bad'"):
            worker.request(b"bad", timeout=30)
        with pytest.raises(WorkerError, match="cannot handle b'again'"):
            worker.request(b"again", timeout=30)
    finally:
        assert worker.close() == 0


def test_printing_in_a_handler_does_not_corrupt_the_replies() -> None:
    worker = WorkerProcess("_worker_handlers:chatty")
    try:
        assert worker.request(b"one", timeout=30) == b"one"
        assert worker.request(b"two", timeout=30) == b"two"
    finally:
        worker.close()


def test_closing_the_pipe_ends_the_worker(echo_worker: WorkerProcess) -> None:
    """End of file on its requests is a clean exit; the worker is reaped."""
    echo_worker.request(b"x", timeout=30)
    assert echo_worker.close(timeout=30) == 0
    assert not psutil.pid_exists(echo_worker.pid)
    with pytest.raises(WorkerGoneError):
        echo_worker.send(b"late")


def test_a_killed_worker_is_reported_gone(echo_worker: WorkerProcess) -> None:
    os.kill(echo_worker.pid, signal.SIGKILL)
    with pytest.raises(WorkerGoneError):
        echo_worker.request(b"x", timeout=30)


def test_a_worker_ignores_the_signals_its_parent_drains_on(
    echo_worker: WorkerProcess,
) -> None:
    """Ctrl-C or a service manager signal the whole group: the parent decides."""
    os.kill(echo_worker.pid, signal.SIGINT)  # even before it has started up
    os.kill(echo_worker.pid, signal.SIGTERM)
    assert echo_worker.request(b"still here", timeout=30) == b"ereh llits"


def test_a_receive_that_times_out_says_so(tmp_path: Path) -> None:
    worker = WorkerProcess("_worker_handlers:block")
    try:
        worker.send(b"x")
        assert not worker.ready(0.05)
        with pytest.raises(TimeoutError):
            worker.receive(timeout=0.05)
    finally:
        worker.kill()


def _start_parent(mode: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen(
        [sys.executable, str(TESTS / "_worker_parent.py"), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line, "the parent printed no worker pid"
    return parent, int(line)


@pytest.mark.parametrize("mode", ["idle", "busy"])
def test_a_worker_dies_with_a_sigkilled_parent(mode: str) -> None:
    """kill -9 of the parent, its worker idle or mid-request: no orphan is left."""
    parent, worker_pid = _start_parent(mode)
    worker = psutil.Process(worker_pid)
    assert worker.ppid() == parent.pid
    parent.kill()
    parent.wait(timeout=30)
    assert ends(worker_pid), f"worker {worker_pid} outlived its SIGKILLed parent"


def test_a_worker_dies_with_the_thread_that_started_it() -> None:
    """PR_SET_PDEATHSIG follows the starting thread: start workers from their owner."""
    parent, worker_pid = _start_parent("thread")
    try:
        assert ends(worker_pid)
    finally:
        parent.kill()
        parent.wait(timeout=30)
