"""Shared helpers for the Graphite listener's tests: a real queue to push into,
an observer that tests can wait on, and a fixture that starts listeners."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from statsyard.datapoint import DataPoint
from statsyard.graphite.listener import GraphiteListener, ListenerObserver
from statsyard.pipeline.blocking_queue import BlockingQueue
from statsyard.pipeline.ledger import Ledger, QueueContents
from statsyard.pipeline.queue_client import BlockingQueueClient

TIMEOUT = 10.0


class NotifyingLedger(Ledger):
    """A ledger that wakes waiting tests whenever the queue accepts points."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def accept(self, n: int) -> int:
        first = super().accept(n)
        with self.changed:
            self.changed.notify_all()
        return first


class QueueSink:
    """A real BlockingQueue (no consumer) that tests fill, inspect and drain."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self.contents = QueueContents(capacity=capacity)
        self.ledger = NotifyingLedger()
        self.ref = BlockingQueue.start(contents=self.contents, ledger=self.ledger)
        self.client = BlockingQueueClient(self.ref)

    @property
    def received(self) -> int:
        """Points ever queued."""
        return self.ledger.counts().pushed

    def take(self) -> list[DataPoint]:
        """Pop everything queued now."""
        size = self.client.size()
        if not size:
            return []
        rows = self.client.pop_many(size, timeout=TIMEOUT)
        return [DataPoint(*row) for row in rows]

    def wait_received(self, count: int, timeout: float = TIMEOUT) -> bool:
        with self.ledger.changed:
            return self.ledger.changed.wait_for(lambda: self.received >= count, timeout)

    def wait_full(self, timeout: float = TIMEOUT) -> bool:
        with self.ledger.changed:
            return self.ledger.changed.wait_for(
                lambda: self.contents.size >= self.capacity, timeout
            )


class RecordingObserver(ListenerObserver):
    """Records every hook, and wakes tests waiting for a count."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.rejects: collections.Counter[str] = collections.Counter()
        self.changed = threading.Condition()

    def _add(self, key: str, n: int = 1) -> None:
        with self.changed:
            self.counts[key] += n
            self.changed.notify_all()

    def wait_for(self, key: str, count: int, timeout: float = TIMEOUT) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.counts[key] >= count, timeout)

    def queued(self, points: int) -> None:
        self._add("queued", points)

    def rejected(self, reason: str, lines: int) -> None:
        with self.changed:
            self.rejects[reason] += lines
        self._add("rejected", lines)
        self._add(reason, lines)

    def udp_dropped(self, points: int) -> None:
        self._add("udp_dropped", points)

    def lost(self, points: int) -> None:
        self._add("lost", points)

    def unconfirmed(self, points: int) -> None:
        self._add("unconfirmed", points)

    def connection_opened(self) -> None:
        self._add("opened")

    def connection_closed(self) -> None:
        self._add("closed")

    def connection_refused(self) -> None:
        self._add("refused")

    def connection_idle_closed(self) -> None:
        self._add("idle_closed")

    def connection_evicted(self) -> None:
        self._add("evicted")

    def accept_failed(self) -> None:
        self._add("accept_failed")


@pytest.fixture
def start_listener() -> Iterator[Callable[..., tuple[Any, QueueSink]]]:
    """Start listeners (each on its own real queue) on ephemeral ports."""
    refs: list[pykka.ActorRef[Any]] = []

    def start(sink: QueueSink | None = None, **kwargs: Any) -> tuple[Any, QueueSink]:
        sink = sink or QueueSink()
        refs.append(sink.ref)
        kwargs.setdefault("tcp_port", 0)
        kwargs.setdefault("udp_port", 0)
        ref = GraphiteListener.start(queue=sink.ref, **kwargs)
        refs.append(ref)
        try:
            return ref.proxy(), sink
        except pykka.ActorDeadError:  # it crashed in on_start (tests expect that)
            return None, sink

    yield start
    for ref in reversed(refs):
        ref.stop(timeout=TIMEOUT)
