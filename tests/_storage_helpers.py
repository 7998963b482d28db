"""Helpers shared by the storage tests: point builders and a child writer process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from statsyard.datapoint import DataPoint
from statsyard.storage import Storage

T0 = 1_700_000_000_000
"""A timestamp (ms) in 2023, a round base for test data."""

REPO = Path(__file__).resolve().parent.parent

Expected = dict[str, list[tuple[int, int | float]]]


def points(
    metric: str,
    entity: str,
    values: Iterable[int | float],
    *,
    start: int = T0,
    gap: int = 1000,
) -> list[DataPoint]:
    """One point per value, ``gap`` ms apart from ``start``."""
    return [
        DataPoint(metric, entity, value, start + i * gap)
        for i, value in enumerate(values)
    ]


def expected(batch: Iterable[DataPoint], metric: str) -> Expected:
    """What a raw query of ``metric`` returns for ``batch``: by entity, by time.

    A timestamp written more than once reads back once: the last write wins.
    """
    latest: dict[str, dict[int, int | float]] = {}
    for point in batch:
        if point.metric == metric:
            latest.setdefault(point.entity, {})[point.timestamp] = point.value
    return {entity: sorted(rows.items()) for entity, rows in latest.items()}


def reopened(data_dir: Path, **options: Any) -> Storage:
    """Open ``data_dir`` for writing (running recovery)."""
    return Storage.open(data_dir, **options)


CHILD_WRITER = r"""
import sys
from statsyard.datapoint import DataPoint
from statsyard.storage import Storage

data_dir, first, batch_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
storage = Storage.open(data_dir, segment_bytes=60_000, checkpoint_points=1_500)
batch = first
while True:
    storage.append([
        DataPoint("kill.test", f"e{i % 3}", batch * 1_000_000 + i,
                  1_700_000_000_000 + batch * 1000 + i)
        for i in range(batch_size)
    ])
    storage.sync()
    sys.stdout.write(f"{batch}\n")
    sys.stdout.flush()
    batch += 1
"""


def start_child_writer(
    data_dir: Path, first_batch: int, batch_size: int
) -> subprocess.Popen[str]:
    """A child process appending numbered, fsynced batches forever, printing each id."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_WRITER,
            str(data_dir),
            str(first_batch),
            str(batch_size),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
