"""Read back what the pipeline stored, for assertions."""

from __future__ import annotations

from pathlib import Path

from statsyard.storage._batch import decode_batch
from statsyard.storage._framing import FILE_HEADER_SIZE, scan_records

Row = tuple[str, str, int, int | float]


def stored_points(data_dir: Path) -> list[Row]:
    """Every stored point as (metric, entity, timestamp, value)."""
    rows: list[Row] = []
    for path in sorted(data_dir.glob("wal-*.log")):
        data = path.read_bytes()
        for _offset, _kind, payload in scan_records(data, FILE_HEADER_SIZE).records:
            for metric, entity, stamps, values in decode_batch(payload):
                rows.extend(
                    (metric, entity, t, v) for t, v in zip(stamps, values, strict=True)
                )
    return rows
