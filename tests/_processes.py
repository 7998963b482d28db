"""Waiting for a process to end, for tests that kill a parent and check its workers."""

from __future__ import annotations

import time

import psutil


def ends(pid: int, timeout: float = 30.0) -> bool:
    """Whether process ``pid`` dies within ``timeout`` seconds.

    A zombie counts as dead: it has ended, and its new parent (init, after a
    kill -9 of ours) may not have reaped it yet.
    """
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
