"""The Forwarder's guarantees under faults, against a recording remote write endpoint.

The endpoint decodes every request, so duplicates and losses are counted
exactly: at least once, in order, at most one batch repeated per crash.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from statsyard import StatsYard
from statsyard.config import Config
from statsyard.exceptions import ConfigError
from tests._peers import RecordingReceiver, receiver, wait_until

__all__ = ["receiver"]

WAIT = 30.0
TS = 1_700_000_000_000
NAME = "rec"


@pytest.fixture
def yards() -> Iterator[list[StatsYard]]:
    """StatsYards a test starts; stopped at teardown."""
    started: list[StatsYard] = []
    yield started
    for yard in started:
        yard.stop(timeout=WAIT)


def forward(url: str, **more: Any) -> dict[str, Any]:
    settings = {
        "name": NAME,
        "kind": "prometheus",
        "url": url,
        "start": "beginning",
        "max_samples": 200,
        "min_backoff": 0.01,
        "max_backoff": 0.05,
        "timeout": 2.0,
    }
    settings.update(more)
    return settings


def start(
    yards: list[StatsYard],
    data_dir: Path,
    *,
    forward: Sequence[Mapping[str, Any]] = (),
    storage: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
    http: Mapping[str, Any] | None = None,
    **options: Any,
) -> StatsYard:
    """Start a yard forwarding to ``forward`` (``[[forward]]`` tables)."""
    settings = Config.of(
        forward=list(forward),
        storage=dict(storage or {}),
        pipeline=dict(pipeline or {}),
        http=dict(http or {}),
    )
    options.setdefault("ship_metrics", False)
    options.setdefault("batch_size", 100)
    yard = StatsYard(settings, data_dir=data_dir, **options)
    yards.append(yard)
    return yard.start()


def rows(count: int, first: int = 0) -> list[tuple[str, str, float, int]]:
    return [
        ("cpu.load", f"web-{i % 3}", float(i), TS + i)
        for i in range(first, first + count)
    ]


def as_samples(
    points: list[tuple[str, str, float, int]],
) -> list[tuple[str, str, int, float]]:
    return [("cpu_load", entity, ts, value) for _m, entity, value, ts in points]


def counter(yard: StatsYard, name: str, **tags: str) -> int:
    return yard.registry.counter(name, tags={"forwarder": NAME, **tags}).value


def by_series(
    samples: list[tuple[str, str, int, float]],
) -> dict[str, list[tuple[int, float]]]:
    """Each series' samples in arrival order (a request groups them by series)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for _name, entity, ts, value in samples:
        out.setdefault(entity, []).append((ts, value))
    return out


def step_backs(received: list[tuple[str, str, int, float]]) -> int:
    """How often a series' timestamp goes back: only where a batch was resent."""
    by_series: dict[str, list[int]] = {}
    for _name, entity, ts, _value in received:
        by_series.setdefault(entity, []).append(ts)
    return sum(1 for stamps in by_series.values() for a, b in pairwise(stamps) if b < a)


def test_500s_then_200s_deliver_everything_in_order(
    receiver: RecordingReceiver, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """Answers 500 are retried with backoff until accepted; order is kept."""
    receiver.answers = {1: 500, 2: 503, 3: 500}
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    yard = start(
        yards,
        tmp_path / "data",
        forward=[
            forward(
                receiver.url,
                headers={"X-Scope-OrgID": "tenant-1"},
                bearer_token_file=str(token),
            )
        ],
    )
    points = rows(1000)
    yard.push_many(points)
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)
    # Exactly once, and each series in order:
    assert by_series(receiver.accepted()) == by_series(as_samples(points))
    assert counter(yard, "forward.batches_failed", reason="http_500") == 2
    assert counter(yard, "forward.batches_failed", reason="http_503") == 1
    assert counter(yard, "forward.retries") == 3
    assert counter(yard, "forward.samples_sent") == 1000
    headers = receiver.headers[-1]
    assert headers["content-encoding"] == "snappy"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-prometheus-remote-write-version"] == "0.1.0"
    assert headers["x-scope-orgid"] == "tenant-1"
    assert headers["authorization"] == "Bearer s3cret"


def test_a_batch_refused_with_400_is_dropped_counted_and_the_rest_goes_on(
    receiver: RecordingReceiver,
    tmp_path: Path,
    yards: list[StatsYard],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 400 drops that one batch (counted, logged); later batches are delivered."""
    receiver.answers = {2: 400}
    password = tmp_path / "password"
    password.write_text("pa:ss\n")
    yard = start(
        yards,
        tmp_path / "data",
        forward=[forward(receiver.url, username="me", password_file=str(password))],
    )
    points = rows(1000)
    yard.push_many(points)
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)
    (refused,) = receiver.refused  # the second request, whatever it held
    assert counter(yard, "forward.dropped", reason="http_400") == len(refused) > 0
    accepted = receiver.accepted()
    assert not set(accepted) & set(refused)
    assert sorted(accepted + refused) == sorted(as_samples(points))
    assert counter(yard, "forward.batches_failed", reason="http_400") == 1
    assert f"refused a batch of {len(refused)} samples for good (http_400)" in (
        caplog.text
    )
    assert receiver.headers[0]["authorization"] == "Basic bWU6cGE6c3M="  # me:pa:ss


def test_a_forwarder_crashed_50_times_mid_stream_loses_nothing(
    receiver: RecordingReceiver, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """Each crash resends at most the batch in flight; every point arrives."""
    yard = start(
        yards,
        tmp_path / "data",
        forward=[forward(receiver.url, max_samples=100)],
        pipeline={"max_restarts": 1000},
    )
    restarts = yard.registry.counter(
        "supervisor.restarts", tags={"child": "forward.rec"}
    )
    total = 20_000

    def push_all() -> None:
        for first in range(0, total, 500):
            yard.push_many(rows(500, first))

    def restarted(times: int) -> Callable[[], bool]:
        return lambda: restarts.value >= times

    pusher = threading.Thread(target=push_all)
    pusher.start()
    for crash in range(1, 51):
        receiver.wait_requests(crash * 2, WAIT)  # mid-stream: batches are flowing
        yard.child("forward.rec").tell("crash!")
        wait_until(restarted(crash), WAIT, "a restart")
    pusher.join(WAIT)
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)
    received = receiver.accepted()
    assert set(received) == set(as_samples(rows(total)))
    repeated = len(received) - total
    assert repeated <= 50 * 100, repeated
    assert step_backs(received) <= 50 * 3  # one per series per resend


def test_statsyard_stopped_and_restarted_resumes_from_its_cursor(
    receiver: RecordingReceiver, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """Points not yet sent at stop are sent after the restart; at most a batch twice."""
    data_dir = tmp_path / "data"
    receiver.delay = 0.01  # slow enough to stop mid-stream
    first = start(yards, data_dir, forward=[forward(receiver.url, flush_deadline=0)])
    first.push_many(rows(5000))
    first.flush(timeout=WAIT)
    receiver.wait_requests(3, WAIT)
    first.stop(timeout=WAIT)
    sent_before = len(receiver.accepted())
    assert 0 < sent_before < 5000  # stopped mid-stream

    receiver.delay = 0.0
    second = start(yards, data_dir, forward=[forward(receiver.url)])
    second.push_many(rows(1000, first=5000))
    second.flush(timeout=WAIT)
    assert second.wait_forwarded(timeout=WAIT)
    received = receiver.accepted()
    assert set(received) == set(as_samples(rows(6000)))
    assert len(received) - 6000 <= 200  # at most the batch in flight at stop


def test_a_first_start_from_now_sends_only_new_points(
    receiver: RecordingReceiver, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """start = 'now' (the default) skips history; 'beginning' would send it."""
    data_dir = tmp_path / "data"
    plain = start(yards, data_dir)
    plain.push_many(rows(300))
    plain.stop(timeout=WAIT)
    yard = start(yards, data_dir, forward=[forward(receiver.url, start="now")])
    yard.push_many(rows(100, first=300))
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)
    assert by_series(receiver.accepted()) == by_series(as_samples(rows(100, first=300)))


def test_a_hanging_destination_does_not_hold_up_stop(
    tmp_path: Path, yards: list[StatsYard]
) -> None:
    """A destination that accepts and never answers: stop still completes in time."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/write"
        server.settimeout(WAIT)
        yard = start(yards, tmp_path / "data", forward=[forward(url, timeout=1.0)])
        yard.push_many(rows(100))
        yard.flush(timeout=WAIT)
        connection, _address = server.accept()  # the forwarder is mid-request
        started = time.monotonic()
        yard.stop(timeout=WAIT)
        assert time.monotonic() - started < 1.0 + 5.0  # timeout + shutdown margin
        connection.close()
    assert not [t for t in threading.enumerate() if t.name == "statsyard-forward-rec"]


def test_a_malformed_destination_fails_before_anything_starts(tmp_path: Path) -> None:
    """A bad setting is a ConfigError naming it; nothing is created."""
    with pytest.raises(ConfigError, match=r"forward\[0\] 'x'\.url"):
        StatsYard(
            Config.of(forward=[{"name": "x", "kind": "prometheus", "url": "nope"}]),
            data_dir=tmp_path / "data",
        )
    assert not (tmp_path / "data").exists()


def test_an_unreachable_destination_is_not_a_start_up_failure(
    tmp_path: Path, yards: list[StatsYard], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listening: StatsYard runs, ingests, and counts the retries."""
    caplog.set_level(logging.WARNING)
    url = "http://127.0.0.1:9/write"  # discard port: nothing listens
    yard = start(yards, tmp_path / "data", forward=[forward(url)])
    yard.push_many(rows(10))
    yard.flush(timeout=WAIT)
    wait_until(
        lambda: counter(yard, "forward.batches_failed", reason="connection") >= 2,
        WAIT,
        "failed deliveries",
    )
    assert yard.counts().written == 10
    assert "cannot deliver to http://127.0.0.1:9/write (connection)" in caplog.text


KILLED_CHILD = textwrap.dedent(
    """
    import sys
    from statsyard import Config, StatsYard

    data_dir, url = sys.argv[1], sys.argv[2]
    forward = [{"name": "rec", "kind": "prometheus", "url": url,
                "start": "beginning", "max_samples": 200}]
    settings = Config.of(forward=forward)
    yard = StatsYard(settings, data_dir=data_dir, ship_metrics=False, batch_size=100)
    yard.start()
    i = 0
    while True:  # until killed
        yard.push_many(
            ("cpu.load", f"web-{j % 3}", float(j), 1_700_000_000_000 + j)
            for j in range(i, i + 100)
        )
        yard.flush()
        i += 100
    """
)


def test_statsyard_killed_with_sigkill_mid_stream_resumes_from_its_cursor(
    receiver: RecordingReceiver, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """After kill -9, a restart sends every stored point; at most a batch twice."""
    data_dir = tmp_path / "data"
    receiver.delay = 0.02  # the child ingests faster than it forwards
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(data_dir), receiver.url],
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    try:
        assert receiver.wait_requests(10, WAIT)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
    assert child.returncode == -signal.SIGKILL
    sent_before = len(receiver.accepted())

    receiver.delay = 0.0
    yard = start(yards, data_dir, forward=[forward(receiver.url)])
    stored = yard.query("cpu.load")
    assert yard.wait_forwarded(timeout=WAIT)
    expected = {
        ("cpu_load", entity, ts, value)
        for entity, points in stored.items()
        for ts, value in points
    }
    assert len(expected) > sent_before
    received = receiver.accepted()
    assert set(received) == expected
    duplicates = sum(n - 1 for n in Counter(received).values())
    assert duplicates <= 200  # the batch in flight when killed


def test_a_cursor_that_cannot_be_saved_is_logged_and_delivery_goes_on(
    receiver: RecordingReceiver,
    tmp_path: Path,
    yards: list[StatsYard],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No room for the cursor file: delivery continues, the problem is logged."""
    data_dir = tmp_path / "data"
    blocked = data_dir / "forward"
    data_dir.mkdir()
    (data_dir / "STATSYARD").write_bytes(b"StatsYard data directory\nformat 2\n")
    blocked.write_text("a file where the cursor directory should be")
    yard = start(yards, data_dir, forward=[forward(receiver.url)])
    yard.push_many(rows(500))
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)
    assert by_series(receiver.accepted()) == by_series(as_samples(rows(500)))
    assert "cannot save its cursor" in caplog.text


def test_a_damaged_cursor_means_resending_from_the_oldest_log_not_skipping(
    receiver: RecordingReceiver,
    tmp_path: Path,
    yards: list[StatsYard],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even with start = 'now', a cursor that fails its checksum is not trusted."""
    data_dir = tmp_path / "data"
    first = start(yards, data_dir, forward=[forward(receiver.url, start="now")])
    first.push_many(rows(300))
    first.flush(timeout=WAIT)
    assert first.wait_forwarded(timeout=WAIT)
    first.stop(timeout=WAIT)
    cursor = data_dir / "forward" / f"{NAME}.cursor"
    cursor.write_bytes(cursor.read_bytes().replace(b" 1 ", b" 7 ", 1))
    second = start(yards, data_dir, forward=[forward(receiver.url, start="now")])
    second.push_many(rows(100, first=300))
    second.flush(timeout=WAIT)
    assert second.wait_forwarded(timeout=WAIT)
    received = Counter(receiver.accepted())
    assert set(received) == set(as_samples(rows(400)))
    assert all(received[s] == 2 for s in as_samples(rows(300)))  # resent, not lost
    assert "Ignoring damaged cursor file" in caplog.text


def test_stop_lets_forwarders_deliver_what_is_left_within_their_deadline(
    receiver: RecordingReceiver, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """A slow destination still gets everything flushed before stop() returns."""
    receiver.delay = 0.005
    yard = start(yards, tmp_path / "data", forward=[forward(receiver.url)])
    yard.push_many(rows(3000))
    yard.stop(timeout=WAIT)
    assert by_series(receiver.accepted()) == by_series(as_samples(rows(3000)))


def test_forwarder_metrics_show_in_the_http_metrics_endpoint(
    receiver: RecordingReceiver, tmp_path: Path, yards: list[StatsYard]
) -> None:
    """forward.* metrics, tagged by forwarder, are in /metrics (Prometheus text)."""
    yard = start(
        yards,
        tmp_path / "data",
        forward=[forward(receiver.url)],
        http={"enabled": True, "port": 0},
    )
    yard.push_many(rows(300))
    yard.flush(timeout=WAIT)
    assert yard.wait_forwarded(timeout=WAIT)
    address = yard.http_address
    assert address is not None
    host, port = address
    text = urllib3.PoolManager().request("GET", f"http://{host}:{port}/metrics").data
    families = {f.name: f for f in text_string_to_metric_families(text.decode("utf-8"))}
    sent = families["statsyard_forward_samples_sent"].samples[0]
    assert (sent.labels, sent.value) == ({"forwarder": NAME}, 300.0)
    assert "statsyard_forward_lag_seconds" in families
    assert "statsyard_forward_pending_bytes" in families
