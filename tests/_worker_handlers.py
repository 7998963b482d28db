"""Handlers that tests/test_child_process.py runs in worker processes."""

from __future__ import annotations

import os
import sys
import threading


def echo(payload: bytes) -> bytes:
    """Return the request reversed, so a reply is visibly the worker's."""
    return payload[::-1]


def fail(payload: bytes) -> bytes:
    """Raise, as a handler meeting bad input would."""
    raise ValueError(f"cannot handle {payload!r}")


def chatty(payload: bytes) -> bytes:
    """Print to stdout, which must not reach the reply pipe."""
    print("noise on stdout")
    sys.stdout.flush()
    return payload


def pid(payload: bytes) -> bytes:
    """The worker's own pid and its parent's."""
    return f"{os.getpid()} {os.getppid()}".encode()


def block(payload: bytes) -> bytes:
    """Never return: a worker busy with a request when its parent dies."""
    threading.Event().wait()
    return b""
