"""The writer's lock on a data directory: one writer at a time, however it dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from statsyard.exceptions import DataDirectoryInUseError
from statsyard.storage._files import MARKER_NAME


def lock_directory(directory: Path) -> int:
    """Take the writer's exclusive lock (``flock`` on the marker file).

    The kernel drops it when the process dies, however it dies, or when the
    returned descriptor is closed.

    Returns:
        The descriptor holding the lock.

    Raises:
        DataDirectoryInUseError: another writer holds it.
    """
    fd = os.open(directory / MARKER_NAME, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirectoryInUseError(
            f"{directory} is already open for writing (by another process or "
            "Storage); read it with Storage.open_readonly()",
            path=str(directory),
        ) from None
    return fd
