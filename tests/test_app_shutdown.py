"""StatsYard when its tree gives up or stops: nobody hangs, nothing leaks."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from statsyard import StatsYard, StatsYardError
from statsyard.config import Config
from statsyard.exceptions import (
    ChildStartError,
    DataDirectoryInUseError,
    NotADataDirectoryError,
)
from statsyard.pipeline.ingest_consumer import IngestObserver
from statsyard.storage import Storage
from statsyard.supervision import (
    ChildActor,
    ChildSpec,
    Link,
    StartContext,
    SupervisorExit,
)

WAIT = 10.0
TS = 1_700_000_000_000


def call_with_deadline(fn: Callable[[], object], seconds: float) -> bool:
    """Run ``fn()`` in a daemon thread; True if it returned within ``seconds``."""
    done = threading.Event()

    def run() -> None:
        fn()
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
        Config.of(pipeline={"max_restarts": 0}),
        data_dir=tmp_path / "data",
        queue_capacity=100,
        batch_size=10,
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
        if yard._stage.lock.locked():
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
        Config.of(pipeline={"max_restarts": 0}),
        data_dir=tmp_path / "data",
        batch_size=100,
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


def start_fails_promptly(
    yard: StatsYard, caplog: pytest.LogCaptureFixture
) -> StatsYardError:
    """Start ``yard``, expecting it to fail; check no restart and no thread left."""
    before = set(threading.enumerate())
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(StatsYardError) as excinfo:
        yard.start()
    assert time.monotonic() - started < 5.0
    assert not [r for r in caplog.records if "restarting" in r.getMessage()]
    assert set(threading.enumerate()) - before == set()
    return excinfo.value


def test_a_data_directory_locked_by_another_writer_fails_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """OTP's rule: a child failing while the tree starts fails the start at
    once with its own error, naming the directory; nothing is restarted."""
    storage = Storage.open(tmp_path / "data")
    try:
        error = start_fails_promptly(
            StatsYard(data_dir=tmp_path / "data", ship_metrics=False), caplog
        )
    finally:
        storage.close()
    assert isinstance(error, DataDirectoryInUseError)
    assert str(tmp_path / "data") in str(error)


def test_a_data_directory_that_is_a_file_fails_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file where the data directory should be: the start fails, naming it."""
    (tmp_path / "data").write_text("not a directory")
    error = start_fails_promptly(
        StatsYard(data_dir=tmp_path / "data", ship_metrics=False), caplog
    )
    assert isinstance(error, NotADataDirectoryError)
    assert str(tmp_path / "data") in str(error)


class PortHolder(ChildActor):
    """A test child that listens on a TCP port, like the Graphite listener."""

    def __init__(self, *, port: int, link: Link) -> None:
        super().__init__(link=link)
        self._port = port
        self._sock: socket.socket | None = None

    def on_child_start(self) -> None:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", self._port))
        except OSError:
            sock.close()
            raise
        self._sock = sock

    def on_child_stop(self) -> None:
        if self._sock is not None:
            self._sock.close()


def test_a_child_on_a_busy_port_fails_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A busy port: ChildStartError names the child, its cause is the OSError,
    and the children already started are stopped in reverse order."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]

        def start(ctx: StartContext) -> pykka.ActorRef[Any]:
            return PortHolder.start(port=port, link=ctx.link)

        yard = StatsYard(
            Config.of(pipeline={"max_restarts": 100}),
            data_dir=tmp_path / "data",
            extra_children=[ChildSpec("listener", start)],
        )
        error = start_fails_promptly(yard, caplog)
    assert isinstance(error, ChildStartError)
    assert error.child_id == "listener"
    assert isinstance(error.__cause__, OSError)
    assert error.__cause__.errno == errno.EADDRINUSE
    assert "listener could not start" in str(error)
    stopped = [
        r.getMessage().split()[1]
        for r in caplog.records
        if r.name == "pykka" and r.getMessage().startswith("Stopped ")
    ]
    assert stopped[:3] == ["IngestConsumer", "TimestampWriter", "BlockingQueue"]


def test_the_host_hears_of_the_exit_only_once_every_point_is_settled(
    tmp_path: Path,
) -> None:
    """on_exit and wait_stopped() come after the accounting is final: nothing
    is pending any more when the host is told."""
    seen: list[tuple[int, SupervisorExit | None]] = []

    def on_exit(exit_: SupervisorExit) -> None:
        seen.append((yard.counts().pending, yard.wait_stopped(0)))

    yard = StatsYard(
        data_dir=tmp_path / "data", batch_size=100, ship_metrics=False, on_exit=on_exit
    ).start()
    yard.supervisor.terminate_child("consumer").get(timeout=WAIT)  # nothing drains
    yard.push_many(("m", "e", i, TS + i) for i in range(250))  # 200 queued, 50 staged
    counts = yard.stop(timeout=0.5)
    assert (counts.pushed, counts.lost, counts.pending) == (250, 250, 0)
    assert len(seen) == 1
    pending, exit_ = seen[0]
    assert pending == 0
    assert exit_ is not None
    assert not exit_.gave_up


def test_an_idle_statsyard_does_not_wake_up(tmp_path: Path) -> None:
    """The linger thread sleeps while nothing is staged: no polling."""
    yard = StatsYard(
        Config.of(pipeline={"linger": 0.01}),
        data_dir=tmp_path / "data",
        ship_metrics=False,
    ).start()
    try:
        yard.push(("m", "e", 1, TS))  # goes out after the linger, on its own
        assert yard.queue.await_committed(1, timeout=WAIT) >= 1
        wakeups = yard._stage.wakeups
        threading.Event().wait(0.3)  # an idle window: 30 lingers long
        assert yard._stage.wakeups == wakeups
        assert wakeups <= 3
    finally:
        yard.stop(timeout=WAIT)


class StuckOnStop(ChildActor):
    """A test child whose stop blocks until ``release`` is set."""

    def __init__(self, *, release: threading.Event, link: Link) -> None:
        super().__init__(link=link)
        self._release = release

    def on_child_stop(self) -> None:
        self._release.wait(WAIT)


def test_stop_honours_its_timeout_in_total_even_when_a_child_will_not_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One deadline for every step of stop(): it returns in time and says
    which threads were still running, instead of waiting on each in turn."""
    release = threading.Event()

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return StuckOnStop.start(release=release, link=ctx.link)

    yard = StatsYard(
        data_dir=tmp_path / "data",
        ship_metrics=False,
        extra_children=[ChildSpec("stuck", start, shutdown=5.0)],
    ).start()
    try:
        yard.push_many(("m", "e", i, TS + i) for i in range(100))
        started = time.monotonic()
        counts = yard.stop(timeout=0.5)
        assert time.monotonic() - started < 1.5
        assert counts.pushed == 100
        assert "Threads still running after stop" in caplog.text
    finally:
        release.set()


def test_stop_returns_in_time_while_a_pusher_waits_on_a_full_queue(
    tmp_path: Path,
) -> None:
    """A pusher holds the staging lock while it waits for room that never
    comes: stop(timeout) still returns in time, and the pusher is released."""
    yard = StatsYard(
        data_dir=tmp_path / "data", queue_capacity=10, batch_size=10, ship_metrics=False
    ).start()
    yard.supervisor.terminate_child("consumer").get(timeout=WAIT)  # nothing drains
    errors: list[BaseException] = []

    def pusher() -> None:
        try:
            yard.push_many(("m", "e", i, TS + i) for i in range(40))
        except StatsYardError as exc:
            errors.append(exc)

    thread = threading.Thread(target=pusher, daemon=True)
    thread.start()
    for _ in range(1000):  # until the pusher waits for room
        if yard.queue.stats().blocked_pushers:
            break
    started = time.monotonic()
    assert call_with_deadline(lambda: yard.stop(timeout=1.0), 3.0), "stop() hung"
    assert time.monotonic() - started < 2.0
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(errors) == 1
    counts = yard.counts()
    assert counts.pending == 0
    assert counts.pushed == counts.written + counts.invalid + counts.lost


def test_stop_returns_in_time_while_the_linger_thread_waits_on_a_full_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The linger thread sent a partial batch that waits for room that never
    comes: stop() does not spend its whole timeout on the drain, so the tree
    still stops and every point is settled in time."""
    yard = StatsYard(
        Config.of(pipeline={"linger": 0.01}),
        data_dir=tmp_path / "data",
        queue_capacity=10,
        batch_size=100,
        ship_metrics=False,
    ).start()
    yard.supervisor.terminate_child("consumer").get(timeout=WAIT)  # nothing drains
    yard.queue.push_many([("m", "e", i, TS + i) for i in range(10)])  # full
    yard.push(("m", "e", 10, TS + 10))  # the linger thread sends it, and waits
    for _ in range(1000):
        if yard.queue.stats().blocked_pushers:
            break
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        counts = yard.stop(timeout=1.0)
    assert time.monotonic() - started < 1.5
    assert (counts.pushed, counts.lost, counts.pending) == (11, 11, 0)
    assert "did not stop" not in caplog.text  # the tree had time to stop
    assert "still running" not in caplog.text
    assert yard.wait_stopped(0) is not None
