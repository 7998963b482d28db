"""Worker processes that die with their parent, however the parent dies.

StatsYard's stages share one interpreter lock; work that needs none of the
parent's state (encoding blocks, parsing text) can run on another core in a
worker process. A worker must never outlive its parent: not after a clean
stop, a crash, or ``kill -9``. ``multiprocessing`` cannot promise that (a
spawned pool worker and its resource tracker outlive a SIGKILLed parent,
holding its standard streams), so a worker here is a plain
``python -m statsyard._child_process`` with two guards:

* **``PR_SET_PDEATHSIG``** (Linux): the kernel sends the worker SIGKILL when
  the parent *thread* that started it ends, which includes the parent
  process dying by any signal. The worker sets it on itself first thing,
  then checks that its parent is still the process that started it (the
  parent may have died before the flag was set), and exits if not. Start a
  worker from the thread that owns it (an actor's thread): when that thread
  ends, so does the worker.
* **Pipe end of file**: the worker reads its requests from a pipe whose only
  writer is the parent; when the parent closes it or dies, the worker reads
  end of file and exits. This also covers platforms without ``prctl``.

Workers ignore SIGINT and SIGTERM: a Ctrl-C or a service manager signals the
whole process group, and the parent, which takes those signals to drain,
decides when its workers stop (by closing their pipes). The starting thread
blocks both signals while it forks, so the worker is born with them blocked
(a signal mask survives ``exec``) and cannot be killed by one before it has
set them to be ignored.

Messages are frames on the pipes: ``u32`` length, ``u8`` kind (0 = reply,
1 = error), then the payload. The payload is whatever bytes the handler
takes and returns; a handler is ``module:function`` taking and returning
``bytes``. An exception in the handler is sent back as an error frame
(:class:`WorkerError` in the parent) and the worker serves on.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from statsyard.exceptions import StatsYardError

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["WorkerError", "WorkerGoneError", "WorkerProcess"]

_FRAME = struct.Struct("<IB")
_REPLY = 0
_ERROR = 1
_PR_SET_PDEATHSIG = 1
#: The package's parent directory, so a worker imports the same code as us.
_IMPORT_ROOT = str(Path(__file__).resolve().parent.parent)


class WorkerError(StatsYardError):
    """The worker's handler raised; the message is its ``repr``."""


class WorkerGoneError(StatsYardError):
    """The worker exited, was killed, or its pipe broke."""


class WorkerProcess:
    """One worker process, spoken to with one request in flight at a time.

    Not thread-safe: one thread sends and receives (the owner's).

    Args:
        handler: ``"package.module:function"``, the function serving requests.
        name: a short name for logs and the process title.
    """

    def __init__(self, handler: str, *, name: str = "worker") -> None:
        self.name = name
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_IMPORT_ROOT, env.get("PYTHONPATH", "")) if p
        )
        drained = {signal.SIGINT, signal.SIGTERM}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, drained)
        try:
            self._process = self._spawn(handler, env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._to_worker = self._process.stdin.fileno()
        self._from_worker = self._process.stdout.fileno()
        self._closed = False

    @staticmethod
    def _spawn(handler: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "statsyard._child_process",
                str(os.getpid()),
                handler,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._process.pid

    def send(self, payload: bytes) -> None:
        """Send one request (blocks while the pipe is full).

        Raises:
            WorkerGoneError: the worker is gone or was closed.
        """
        self.send_parts([payload])

    def send_parts(self, parts: Sequence[Buffer]) -> None:
        """Send one request made of ``parts`` (any buffers), copying none of them.

        Raises:
            WorkerGoneError: the worker is gone or was closed.
        """
        if self._closed:
            raise WorkerGoneError(f"{self.name} worker is closed")
        try:
            _write_parts(self._to_worker, _REPLY, parts)
        except OSError as exc:
            raise WorkerGoneError(f"{self.name} worker is gone: {exc}") from exc

    def ready(self, timeout: float | None = 0.0) -> bool:
        """Whether a reply (or end of file) can be read without blocking."""
        if self._closed:
            return False
        readable, _, _ = select.select([self._from_worker], [], [], timeout)
        return bool(readable)

    def receive(self, timeout: float | None = None) -> bytes:
        """Wait for the reply to the request sent last.

        Raises:
            TimeoutError: no reply began within ``timeout`` seconds.
            WorkerError: the handler raised.
            WorkerGoneError: the worker exited or was killed.
        """
        if self._closed:
            raise WorkerGoneError(f"{self.name} worker is closed")
        if timeout is not None and not self.ready(timeout):
            raise TimeoutError(f"{self.name} worker did not reply in {timeout} s")
        frame = _read_frame(self._from_worker)
        if frame is None:
            code = self._process.poll()
            raise WorkerGoneError(f"{self.name} worker is gone (exit status {code})")
        kind, payload = frame
        if kind == _ERROR:
            raise WorkerError(payload.decode("utf-8", "replace"))
        return payload

    def request(self, payload: bytes, *, timeout: float | None = None) -> bytes:
        """Send one request and wait for its reply (see :meth:`receive`)."""
        self.send(payload)
        return self.receive(timeout)

    def close(self, timeout: float = 5.0) -> int | None:
        """Close the worker's pipe so it exits; kill it after ``timeout`` s.

        Idempotent. Returns its exit status (negative: the signal).
        """
        if not self._closed:
            self._closed = True
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()

    def kill(self) -> None:
        """SIGKILL the worker (its reply, if any, is lost) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self.close()


def _write_parts(fd: int, kind: int, parts: Sequence[Buffer]) -> None:
    views = [memoryview(part).cast("B") for part in parts]
    views.insert(0, memoryview(_FRAME.pack(sum(map(len, views)), kind)))
    for view in views:
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> tuple[int, bytes] | None:
    header = _read_exactly(fd, _FRAME.size)
    if header is None:
        return None
    length, kind = _FRAME.unpack(header)
    payload = _read_exactly(fd, length) if length else b""
    if payload is None:
        return None
    return kind, payload


# -- the worker's side ---------------------------------------------------------


def die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel to SIGKILL us when our parent dies; False if it already has.

    Without ``prctl`` (not Linux) only the pipe's end of file stops a worker.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
    return os.getppid() == parent_pid


def _load_handler(spec: str) -> Callable[[bytes], bytes]:
    module_name, _, function = spec.partition(":")
    handler: Callable[[bytes], bytes] = getattr(
        importlib.import_module(module_name), function
    )
    return handler


def serve(parent_pid: int, handler_spec: str) -> int:
    """The worker's loop: one request in, one reply out, until end of file."""
    drained = {signal.SIGINT, signal.SIGTERM}
    for signum in drained:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, drained)
    if not die_with_parent(parent_pid):
        return 0
    requests, replies = 0, os.dup(1)
    # Anything the handler prints goes to stderr, never into the reply pipe.
    os.dup2(2, 1)
    handler = _load_handler(handler_spec)
    while True:
        frame = _read_frame(requests)
        if frame is None:
            return 0
        try:
            reply, kind = handler(frame[1]), _REPLY
        except Exception as exc:  # noqa: BLE001 - sent back to the parent
            reply, kind = repr(exc).encode("utf-8", "replace"), _ERROR
        try:
            _write_parts(replies, kind, [reply])
        except BrokenPipeError:
            return 0


def _watch_parent(parent_pid: int) -> None:
    """Without prctl: exit once the parent is gone, even mid-request."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    _parent = int(sys.argv[1])
    if not sys.platform.startswith("linux"):
        threading.Thread(target=_watch_parent, args=(_parent,), daemon=True).start()
    sys.exit(serve(_parent, sys.argv[2]))
