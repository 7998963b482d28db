"""StatsYard when its tree gives up or stops: nobody hangs, nothing leaks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from statsyard import StatsYard, StatsYardError
from statsyard.ingest_consumer import IngestObserver
from statsyard.supervisor import SupervisorExit

WAIT = 10.0
TS = 1_700_000_000_000


def call_with_deadline(fn: object, seconds: float) -> bool:
    """Run ``fn()`` in a daemon thread; True if it returned within ``seconds``."""
    done = threading.Event()

    def run() -> None:
        fn()  # type: ignore[operator]
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


@pytest.fixture
def bystander() -> Iterator[pykka.ActorRef[pykka.ThreadingActor]]:
    """A Pykka actor of the host's own, which StatsYard must leave alone."""
    ref = pykka.ThreadingActor.start()
    yield ref
    ref.stop(timeout=WAIT)


def test_giving_up_while_pushers_block_on_a_full_queue_releases_them_all(
    tmp_path: Path, bystander: pykka.ActorRef[pykka.ThreadingActor]
) -> None:
    """The restart limit is passed while host threads wait in push() on a full
    queue: each gets an error within a second, the host is told, stop()
    returns, no thread of ours is left and the host's own actor still answers."""
    before = set(threading.enumerate())
    told: list[SupervisorExit] = []
    told_event = threading.Event()

    def on_exit(exit_: SupervisorExit) -> None:
        told.append(exit_)
        told_event.set()

    yard = StatsYard(
        tmp_path / "data",
        queue_capacity=100,
        batch_size=10,
        max_restarts=0,
        ship_metrics=False,
        on_exit=on_exit,
    ).start()
    yard.supervisor.terminate_child("consumer").get(timeout=WAIT)  # nothing drains
    yard.push_many(("m", "e", i, TS + i) for i in range(110))  # full, one push parked
    assert yard.queue.stats().blocked_pushers == 1
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def pusher(n: int) -> None:
        started.wait(WAIT)
        try:
            yard.push_many(("m", f"e{n}", i, TS + i) for i in range(1000))
        except StatsYardError as exc:
            errors.append(exc)

    pushers = [
        threading.Thread(target=pusher, args=(n,), daemon=True) for n in range(4)
    ]
    for thread in pushers:
        thread.start()
    started.wait(WAIT)
    for _ in range(1000):  # until one pusher holds the staging lock, waiting
        if yard._stage_lock.locked():
            break
        threading.Event().wait(0.001)
    yard.child("queue").tell("crash")  # max_restarts=0: the tree gives up

    assert told_event.wait(1.0), "the host was never told"
    for thread in pushers:
        thread.join(1.0)
    assert [t for t in pushers if t.is_alive()] == []
    assert len(errors) == 4
    assert yard.wait_stopped(1.0) == told[0]
    assert told[0].gave_up
    assert call_with_deadline(lambda: yard.stop(timeout=5.0), 6.0), "stop() hung"
    counts = yard.counts()
    assert counts.pending == 0
    assert counts.pushed == counts.written + counts.invalid + counts.lost
    assert set(threading.enumerate()) - before == set()
    assert pykka.ActorRegistry.get_all() == [bystander]
    assert bystander.ask("ping", timeout=1.0) is None


class GatedObserver(IngestObserver):
    """Holds the consumer inside its second validation until ``gate`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()

    def validated(self, points: int, invalid: int, seconds: float) -> None:
        self.calls += 1
        if self.calls == 2:
            self.entered.set()
            self.gate.wait(WAIT)


def test_points_committed_but_not_acknowledged_are_not_counted_lost(
    tmp_path: Path,
) -> None:
    """The tree gives up after the writer committed batches whose acks never
    reached the queue: those points are written, so none of them is lost."""
    observer = GatedObserver()
    yard = StatsYard(
        tmp_path / "data",
        batch_size=100,
        max_restarts=0,
        ship_metrics=False,
        ingest_observer=observer,
    ).start()
    try:
        yard.push_many(("m", "e", i, TS + i) for i in range(200))
        assert observer.entered.wait(WAIT)  # batch 2 in validation, write 1 sent
        yard.child("writer").proxy().sync().get(timeout=WAIT)  # write 1 committed
        queue = yard.child("queue")
        queue.tell("crash")  # the ack of write 1 will find no queue
        assert queue.actor_stopped.wait(WAIT)
        observer.gate.set()
        assert yard.wait_stopped(WAIT) is not None
        counts = yard.counts()
        # write 1 was committed before the crash; the consumer still sends
        # write 2 (its ack finds no queue either) before it is stopped
        assert (counts.pushed, counts.written, counts.lost) == (200, 200, 0)
        assert counts.pending == 0
    finally:
        observer.gate.set()
        yard.stop(timeout=WAIT)
