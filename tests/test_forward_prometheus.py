"""Forwarding to a real Prometheus (remote write receiver), read back via its API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from statsyard import StatsYard
from tests._peers import (
    Prometheus,
    free_port,
    prometheus,
    start_forwarding,
    wait_until,
    yards,
)

__all__ = ["prometheus", "yards"]

WAIT = 30.0


def start(yards: list[StatsYard], data_dir: Path, **options: Any) -> StatsYard:
    """A forwarding yard with this module's batch size."""
    return start_forwarding(yards, data_dir, batch_size=500, **options)


def expected_by_series(
    rows: list[tuple[str, str, float | int, int]], test: str
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    names = {"web.requests-total": "web_requests_total", "cpu.load": "cpu_load"}
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for metric, entity, value, ts in rows:
        labels = (
            ("__name__", names[metric]),
            ("instance", entity),
            ("job", "statsyard"),
            ("test", test),
        )
        out.setdefault(labels, []).append((ts, float(value)))
    return {key: sorted(points) for key, points in out.items()}


def rows_for(now_ms: int, count: int) -> list[tuple[str, str, float | int, int]]:
    """Points of 4 series, one per second each, ints and floats."""
    rows: list[tuple[str, str, float | int, int]] = []
    for i in range(count):
        ts = now_ms - (count - i) * 1000
        rows.append(("cpu.load", "web-1", i * 0.25, ts))
        rows.append(("cpu.load", "web-2", -i * 1.5, ts))
        rows.append(("web.requests-total", "web-1", i * 7, ts))
        rows.append(("web.requests-total", "web-2", 2**40 + i, ts + 123))
    return rows


def forward_to(url: str, test: str, **more: Any) -> dict[str, Any]:
    return {
        "name": "prom",
        "kind": "prometheus",
        "url": url,
        "entity_label": "instance",
        "extra_labels": {"job": "statsyard", "test": test},
        "start": "beginning",
        **more,
    }


def test_points_read_back_from_prometheus_have_the_same_series_labels_and_values(
    prometheus: Prometheus, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """Series, labels, timestamps and values in Prometheus match what was pushed."""
    test = "same_series"
    yard = start(
        yards, tmp_path / "data", forward=[forward_to(prometheus.write_url, test)]
    )
    now = (int(time.time()) - 5) * 1000
    rows = rows_for(now, 120)
    yard.push_many(rows)
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)

    expected = expected_by_series(rows, test)
    series = prometheus.api("/api/v1/series", **{"match[]": f'{{test="{test}"}}'})
    assert sorted(tuple(sorted(s.items())) for s in series) == sorted(expected)
    got = prometheus.samples(f'{{test="{test}"}}[1h]', at=time.time())
    assert got == expected

    # query_range evaluates at whole seconds: every step lands on a sample.
    first, last = now - 120 * 1000, now - 1000
    data = prometheus.api(
        "/api/v1/query_range",
        query=f'cpu_load{{test="{test}",instance="web-1"}}',
        start=str(first / 1000),
        end=str(last / 1000),
        step="1",
    )
    (result,) = data["result"]
    values = [(round(float(t) * 1000), float(v)) for t, v in result["values"]]
    web1 = dict(
        expected[
            (
                ("__name__", "cpu_load"),
                ("instance", "web-1"),
                ("job", "statsyard"),
                ("test", test),
            )
        ]
    )
    assert values == sorted(web1.items())
    assert yard.registry.counter(
        "forward.samples_sent", tags={"forwarder": "prom"}
    ).value == len(rows)


def test_a_destination_down_for_a_while_gets_the_whole_backlog_once_back(
    tmp_path: Path, yards: list[StatsYard]
) -> None:
    """While Prometheus is down, checkpoints keep the logs; nothing is lost."""
    test = "down_and_back"
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/write"
    data_dir = tmp_path / "data"
    yard = start(
        yards,
        data_dir,
        forward=[forward_to(url, test, max_backoff=0.3, max_samples=700)],
        storage={"checkpoint_points": 1000},
    )
    failed = yard.registry.counter(
        "forward.batches_failed", tags={"forwarder": "prom", "reason": "connection"}
    )
    now = (int(time.time()) - 5) * 1000
    rows = rows_for(now, 1000)
    for start_at in range(0, len(rows), 500):
        yard.push_many(rows[start_at : start_at + 500])
        yard.flush(timeout=WAIT)
    wait_until(lambda: failed.value >= 3, WAIT, "failed deliveries to be counted")
    kept_logs = len(list(data_dir.glob("wal-*.log")))
    assert kept_logs > 2  # checkpoints ran, the logs the forwarder needs stayed

    peer = Prometheus(tmp_path / "prometheus", port=port).start()
    try:
        assert yard.wait_forwarded(timeout=WAIT)
        got = peer.samples(f'{{test="{test}"}}[1h]', at=time.time())
        assert got == expected_by_series(rows, test)
        assert (
            yard.registry.counter("forward.retries", tags={"forwarder": "prom"}).value
            >= 3
        )
        # Sent: the next checkpoint deletes the logs kept for the forwarder.
        later = [("cpu.load", "web-3", float(i), now + i) for i in range(1000)]
        yard.push_many(later)
        yard.flush(timeout=WAIT)
        # The checkpoint commits once the compaction worker is done.
        wait_until(
            lambda: len(list(data_dir.glob("wal-*.log"))) < kept_logs,
            WAIT,
            "the next checkpoint to delete the logs kept",
        )
    finally:
        peer.stop()
