"""Forwarding to a real carbon-cache over Graphite plaintext, read from whisper."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from statsyard import StatsYard
from tests._peers import (
    CarbonCache,
    carbon,
    free_port,
    start_forwarding,
    wait_until,
    yards,
)

__all__ = ["carbon", "yards"]

WAIT = 30.0


def start(yards: list[StatsYard], data_dir: Path, **options: Any) -> StatsYard:
    """A forwarding yard with this module's batch size."""
    return start_forwarding(yards, data_dir, batch_size=200, **options)


def test_whisper_files_hold_every_point_with_tags_and_with_a_prefix(
    carbon: CarbonCache, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """Tagged paths and entity-prefixed paths both reach carbon, point for point."""
    common = {"kind": "graphite", "address": carbon.address, "start": "beginning"}
    yard = start(
        yards,
        tmp_path / "data",
        forward=[
            {"name": "tagged", **common, "max_samples": 150},
            {"name": "prefixed", **common, "entity_as": "prefix"},
        ],
    )
    now = int(time.time()) - 2
    count = 300
    rows = [
        (metric, entity, float(i) / 4 if metric == "gr.load" else i, (now - i) * 1000)
        for i in range(count)
        for metric in ("gr.load", "gr.requests")
        for entity in ("web-1", "web-2")
    ]
    yard.push_many(rows)
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)

    expected: dict[str, dict[int, float]] = {}
    for metric, entity, value, ts in rows:
        for path in (f"{metric};entity={entity}", f"{entity}.{metric}"):
            expected.setdefault(path, {})[ts // 1000] = float(value)
    first, last = now - count, now + 1

    def all_written() -> bool:
        return all(
            carbon.fetch(path, first, last) == points
            for path, points in expected.items()
        )

    wait_until(all_written, WAIT, "carbon to write every point to whisper")
    sent = yard.registry.counter("forward.samples_sent", tags={"forwarder": "tagged"})
    assert sent.value == len(rows)


def test_a_receiver_down_then_up_gets_the_backlog_over_a_new_connection(
    tmp_path: Path, yards: list[StatsYard]
) -> None:
    """Refused connections are retried; once carbon listens, every point lands."""
    port = free_port()
    yard = start(
        yards,
        tmp_path / "data",
        forward=[
            {
                "name": "late",
                "kind": "graphite",
                "address": f"127.0.0.1:{port}",
                "start": "beginning",
                "max_backoff": 0.2,
            }
        ],
    )
    failed = yard.registry.counter(
        "forward.batches_failed", tags={"forwarder": "late", "reason": "connection"}
    )
    now = int(time.time()) - 2
    rows = [("gr.late", "web-1", float(i), (now - i) * 1000) for i in range(200)]
    yard.push_many(rows)
    yard.flush(timeout=WAIT)
    wait_until(lambda: failed.value >= 2, WAIT, "refused deliveries to be counted")
    peer = CarbonCache(tmp_path / "carbon", port=port).start()
    try:
        assert yard.wait_forwarded(timeout=WAIT)
        expected = {ts // 1000: value for _m, _e, value, ts in rows}
        wait_until(
            lambda: peer.fetch("gr.late;entity=web-1", now - 200, now + 1) == expected,
            WAIT,
            "carbon to write the backlog",
        )
    finally:
        peer.stop()
