"""Read back what the pipeline stored, through the public read-only reader."""

from __future__ import annotations

from pathlib import Path

from statsyard.storage import Storage

Row = tuple[str, str, int, int | float]


def stored_points(data_dir: Path) -> list[Row]:
    """Every stored point as (metric, entity, timestamp, value)."""
    reader = Storage.open_readonly(data_dir)
    try:
        return [
            (metric, entity, ts, value)
            for metric, entity in reader.series("**")
            for ts, value in reader.query(metric, entity).get(entity, [])
        ]
    finally:
        reader.close()
