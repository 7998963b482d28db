"""The Graphite listener as a child of the tree: wired from settings, beside its queue.

It talks only to the queue it was started with, parks one push at a time on
it (no polling), is not starved by embedded pushers, and when its queue dies
it stops at once so that rest-for-one restarts the tree promptly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from statsyard import StatsYard
from statsyard.config import Config, load_config
from tests._graphite import QueueSink, RecordingObserver, start_listener
from tests._stored import stored_points

__all__ = ["start_listener"]  # the fixture, imported from tests._graphite

WAIT = 10.0
TS = 1_700_000_000


def free_tcp_port() -> int:
    """A TCP port free now (the listener binds it with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_config(tcp_port: int = 0, **pipeline: Any) -> Config:
    base = load_config(environ={})
    return attrs.evolve(
        base,
        pipeline=attrs.evolve(base.pipeline, **pipeline),
        storage=attrs.evolve(base.storage, fsync="never"),
        graphite=attrs.evolve(base.graphite, tcp_port=tcp_port, udp_port=0),
        metrics=attrs.evolve(base.metrics, enabled=False),
        http=attrs.evolve(base.http, port=0),
    )


@pytest.fixture
def yards() -> Iterator[list[StatsYard]]:
    """StatsYards a test started; all stopped at the end."""
    started: list[StatsYard] = []
    yield started
    for yard in started:
        yard.stop(timeout=WAIT)


def test_the_listener_is_the_child_right_after_the_queue(
    tmp_path: Path, yards: list[StatsYard]
) -> None:
    """Enabled by its settings, the listener is built with the other children."""
    yard = StatsYard(service_config(), data_dir=tmp_path)
    yards.append(yard.start())
    children = yard.supervisor.which_children().get(timeout=WAIT)
    assert [c.id for c in children] == [
        "queue",
        "graphite",
        "writer",
        "consumer",
        "http",
    ]
    listener = yard.child("graphite").proxy()
    (_, port), _ = listener.addresses().get(timeout=WAIT)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"wired.m 1 1700000000\nwired.m 2 1700000001\n")
    # Graphite has no acknowledgement: ask the listener until it has read them.
    deadline = time.monotonic() + WAIT
    while listener.stats().get(timeout=WAIT).lines_accepted < 2:
        assert time.monotonic() < deadline
    counts = yard.stop(timeout=WAIT)  # stops the listener first, then drains
    assert counts.written == 2
    assert stored_points(tmp_path) == [
        ("wired.m", "graphite", 1_700_000_000_000, 1.0),
        ("wired.m", "graphite", 1_700_000_001_000, 2.0),
    ]


class Sender(threading.Thread):
    """Sends numbered lines over TCP until told to stop, reconnecting as needed."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.metric = name
        self.stop = threading.Event()
        self.chunks = 0
        self.progress = threading.Condition()
        self.next = 0

    def run(self) -> None:
        sock: socket.socket | None = None
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), 2)
                lines = b"".join(
                    b"%s %d %d\n" % (self.metric.encode(), i, TS + i)
                    for i in range(self.next, self.next + 200)
                )
                self.next += 200
                sock.sendall(lines)
            except OSError:
                if sock is not None:
                    sock.close()
                sock = None
                self.stop.wait(0.01)  # the listener is restarting: retry soon
                continue
            with self.progress:
                self.chunks += 1
                self.progress.notify_all()
        if sock is not None:
            sock.close()

    def wait_chunks(self, count: int) -> bool:
        with self.progress:
            return self.progress.wait_for(lambda: self.chunks >= count, WAIT)


def test_a_queue_crash_under_graphite_load_restarts_the_tree_promptly(
    tmp_path: Path, yards: list[StatsYard]
) -> None:
    """The listener stops at once when its queue dies: no 10 s freeze; exact counts.

    Graphite has no acknowledgement, so lines read but not queued when the
    listener stops are gone; what matters is that every point that reached
    the queue is written exactly once and the accounts balance.
    """
    port = free_tcp_port()
    yard = StatsYard(
        service_config(tcp_port=port, queue_capacity=2000, batch_size=500),
        data_dir=tmp_path,
    )
    yards.append(yard.start())
    senders = [Sender(port, f"load.c{k}") for k in range(3)]
    for sender in senders:
        sender.start()
    try:
        for sender in senders:
            assert sender.wait_chunks(20)
        for crash in range(3):
            queue = yard.child("queue")
            listener = yard.child("graphite")
            crashed_at = time.monotonic()
            queue.tell(("crash", crash))
            assert queue.actor_stopped.wait(3.0)
            assert listener.actor_stopped.wait(3.0)
            successor = yard.child("graphite", timeout=3.0)
            assert successor is not listener
            assert time.monotonic() - crashed_at < 3.0, crash
            for sender in senders:
                assert sender.wait_chunks(sender.chunks + 20)  # load flows again
    finally:
        for sender in senders:
            sender.stop.set()
        for sender in senders:
            sender.join(WAIT)
    counts = yard.stop(timeout=WAIT)
    assert counts.pushed == counts.written + counts.invalid + counts.lost
    assert counts.lost == 0
    assert counts.invalid == 0
    stored = stored_points(tmp_path)
    keys = Counter((metric, entity, ts) for metric, entity, ts, _ in stored)
    assert [key for key, seen in keys.items() if seen > 1] == []
    assert len(stored) == counts.written > 0
    for _, _, ts, value in stored:
        assert ts == (TS + int(value)) * 1000  # each line stored as it was sent


def test_a_listener_held_back_by_a_full_queue_does_not_poll(
    start_listener: Any,
) -> None:
    """Under back-pressure one push waits in the queue; the I/O thread sleeps."""
    observer = RecordingObserver()
    proxy, sink = start_listener(QueueSink(capacity=100), observer=observer)
    tcp, _ = proxy.addresses().get(timeout=WAIT)
    total = 5000
    with socket.create_connection(tcp, timeout=WAIT) as sock:
        sock.sendall(b"".join(b"bp %d %d\n" % (i, TS + i) for i in range(total)))
        assert sink.wait_full()
        before = proxy.stats().get(timeout=WAIT).pushes
        threading.Event().wait(0.5)  # a measuring window, not a wait for an actor
        after = proxy.stats().get(timeout=WAIT).pushes
        # The old listener re-offered every pending point 200 times a second.
        assert after - before <= 1
        drained: list[Any] = []
        while len(drained) < total:
            assert sink.wait_received(len(drained) + 1)
            drained.extend(sink.take())
    assert [p.value for p in drained] == [float(i) for i in range(total)]
    assert observer.wait_for("queued", total)
    assert proxy.stats().get(timeout=WAIT).pushes < 50


def test_steady_embedded_pushers_do_not_starve_the_listener(
    tmp_path: Path, yards: list[StatsYard]
) -> None:
    """The listener's push waits in the same FIFO as embedded pushes."""
    yard = StatsYard(
        service_config(queue_capacity=200, batch_size=50), data_dir=tmp_path
    )
    yards.append(yard.start())
    listener = yard.child("graphite").proxy()
    (_, port), _ = listener.addresses().get(timeout=WAIT)
    lines = 2000
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"".join(b"starve.m %d %d\n" % (i, TS + i) for i in range(lines)))
    # Keep the queue full from this thread until every line is queued.
    deadline = time.monotonic() + 20
    pushed = 0
    while listener.stats().get(timeout=WAIT).lines_accepted < lines:
        assert time.monotonic() < deadline, "the listener was starved"
        yard.push_many(
            ("embedded.m", "e", 1.0, TS * 1000 + pushed + i) for i in range(50)
        )
        pushed += 50
    counts = yard.stop(timeout=WAIT)
    assert counts.lost == 0
    assert counts.written == lines + pushed
