"""BlockingQueue through its messages and its blocking client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka
import pytest

from statsyard.exceptions import QueueClosedError, QueueTimeout, UnknownMessageError
from statsyard.pipeline.blocking_queue import BlockingQueue
from statsyard.pipeline.ledger import Ledger, QueueContents
from statsyard.pipeline.queue_client import BlockingQueueClient
from statsyard.pipeline.queue_messages import (
    Ack,
    Close,
    Delivery,
    Fetch,
    Pop,
    Push,
    RequeueInFlight,
)
from tests.conftest import RecordingLink

WAIT = 5.0


@pytest.fixture
def queue_ref() -> Iterator[pykka.ActorRef[BlockingQueue]]:
    ref = BlockingQueue.start(capacity=4)
    yield ref
    ref.stop()


@pytest.fixture
def queue(queue_ref: pykka.ActorRef[BlockingQueue]) -> BlockingQueueClient:
    return BlockingQueueClient(queue_ref)


def test_points_come_out_in_the_order_they_went_in(queue: BlockingQueueClient) -> None:
    """FIFO across push, push_many, pop and pop_many."""
    queue.push("a")
    assert queue.push_many(["b", "c"]) == 2
    assert queue.size() == 3
    assert queue.capacity() == 4
    assert queue.pop(timeout=WAIT) == "a"
    assert queue.pop_many(10, timeout=WAIT) == ["b", "c"]
    assert queue.size() == 0


def test_pop_on_an_empty_queue_times_out_clearly(queue: BlockingQueueClient) -> None:
    """pop waits while empty and fails with QueueTimeout when its timeout passes."""
    with pytest.raises(QueueTimeout):
        queue.pop(timeout=0.05)
    with pytest.raises(QueueTimeout):
        queue.pop_many(3, timeout=0.05)


def test_push_on_a_full_queue_times_out_and_says_what_was_queued(
    queue: BlockingQueueClient,
) -> None:
    """A push that only partly fits queues the first points and reports how many."""
    queue.push_many(["a", "b", "c"])
    with pytest.raises(QueueTimeout) as excinfo:
        queue.push_many(["d", "e", "f"], timeout=0.05)
    assert excinfo.value.accepted == 1
    assert queue.pop_many(10, timeout=WAIT) == ["a", "b", "c", "d"]


def test_a_blocked_pusher_is_released_when_a_pop_makes_room(
    queue: BlockingQueueClient,
) -> None:
    """push blocks while full and completes once room appears."""
    queue.push_many(["a", "b", "c", "d"])
    with ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(queue.push, "e", timeout=WAIT)
        # The actor keeps serving while the pusher waits.
        assert queue.stats().size == 4
        assert queue.pop(timeout=WAIT) == "a"
        assert blocked.result(timeout=WAIT) is None
    assert queue.pop_many(10, timeout=WAIT) == ["b", "c", "d", "e"]


def test_a_blocked_popper_does_not_stall_other_callers(
    queue: BlockingQueueClient,
) -> None:
    """Several poppers wait on an empty queue while pushes are still served."""
    with ThreadPoolExecutor(3) as pool:
        poppers = [pool.submit(queue.pop, timeout=WAIT) for _ in range(3)]
        # Pushes and size queries are answered while three callers are parked.
        assert queue.stats().size == 0
        queue.push_many(["x", "y", "z"])
        results = sorted(p.result(timeout=WAIT) for p in poppers)
    assert results == ["x", "y", "z"]


def test_many_concurrent_pushers_and_poppers_lose_nothing(
    queue: BlockingQueueClient,
) -> None:
    """With capacity 4, 4 pushers x 200 points and 2 poppers move every point once."""

    def produce(worker: int) -> None:
        for i in range(0, 200, 5):
            queue.push_many([(worker, i + k) for k in range(5)], timeout=WAIT)

    def consume(count: int) -> list[Any]:
        got: list[Any] = []
        while len(got) < count:
            got.extend(queue.pop_many(count - len(got), timeout=WAIT))
        return got

    with ThreadPoolExecutor(6) as pool:
        consumers = [pool.submit(consume, 400) for _ in range(2)]
        producers = [pool.submit(produce, w) for w in range(4)]
        for producer in producers:
            producer.result(timeout=30)
        got = [p for c in consumers for p in c.result(timeout=30)]
    assert sorted(got) == sorted((w, i) for w in range(4) for i in range(200))
    for consumer in consumers:  # each consumer sees each producer's points in order
        for worker in range(4):
            mine = [i for (w, i) in consumer.result() if w == worker]
            assert mine == sorted(mine)


def test_pop_stream_is_lazy_and_ends_after_a_quiet_timeout(
    queue: BlockingQueueClient,
) -> None:
    """pop_stream yields points as they come and stops when none arrive in time."""
    queue.push_many([1, 2, 3])
    stream = queue.pop_stream(batch_size=2, timeout=0.05)
    assert next(stream) == 1
    queue.push(4)
    assert list(stream) == [2, 3, 4]


def test_raw_messages_park_the_reply_future(
    queue_ref: pykka.ActorRef[BlockingQueue],
) -> None:
    """Asked directly, Push and Pop reply at once with a future completed later."""
    parked = queue_ref.ask(Pop(), timeout=WAIT)
    assert isinstance(parked, pykka.Future)
    assert queue_ref.ask(Push(("p",)), timeout=WAIT).get(timeout=WAIT) == 1
    assert parked.get(timeout=WAIT) == "p"


def test_fetched_points_stay_in_flight_until_acknowledged(link: RecordingLink) -> None:
    """Fetch hands out a Delivery; RequeueInFlight puts unacked ones back first."""
    contents = QueueContents(capacity=10)
    ref = BlockingQueue.start(contents=contents, ledger=Ledger())
    client = BlockingQueueClient(ref)
    client.push_many(["a", "b", "c"])
    reply: pykka.Future[Delivery] = pykka.ThreadingFuture()
    ref.tell(Fetch(2, reply))
    delivery = reply.get(timeout=WAIT)
    assert delivery == Delivery(0, ("a", "b"))
    assert client.stats().in_flight == 2
    assert ref.ask(RequeueInFlight(), timeout=WAIT) == 2
    assert client.pop_many(10, timeout=WAIT) == ["a", "b", "c"]
    client.push("d")
    again: pykka.Future[Delivery] = pykka.ThreadingFuture()
    ref.tell(Fetch(5, again))
    assert again.get(timeout=WAIT).points == ("d",)
    ref.tell(Ack(4))
    assert client.stats().in_flight == 0


def test_contents_and_parked_callers_outlive_a_crash(link: RecordingLink) -> None:
    """A crashed queue's successor keeps its points and serves its parked callers."""
    contents = QueueContents(capacity=2)
    ledger = Ledger()
    first = BlockingQueue.start(contents=contents, ledger=ledger, link=link)
    client = BlockingQueueClient(first)
    client.push_many(["a", "b"])
    parked = first.ask(Push(("c",)), timeout=WAIT)  # waits: the queue is full

    first.tell("no such message")
    assert link.exited_event.wait(WAIT)
    crashed, error = link.exits[0]
    assert crashed
    assert isinstance(error, UnknownMessageError)

    second = BlockingQueue.start(contents=contents, ledger=ledger)
    successor = BlockingQueueClient(second)
    assert successor.pop(timeout=WAIT) == "a"
    assert parked.get(timeout=WAIT) == 1  # the parked pusher got its room
    assert successor.pop_many(5, timeout=WAIT) == ["b", "c"]
    second.stop()


def test_an_unknown_message_crashes_the_queue(
    queue_ref: pykka.ActorRef[BlockingQueue],
) -> None:
    """Asked, the error comes back; told, the actor dies (an OTP crash)."""
    with pytest.raises(UnknownMessageError):
        queue_ref.ask("hello", timeout=WAIT)
    assert queue_ref.is_alive()
    queue_ref.tell("hello")
    assert queue_ref.actor_stopped.wait(WAIT)
    assert not queue_ref.is_alive()


def test_offer_never_waits(queue: BlockingQueueClient) -> None:
    """offer_many queues what fits now and reports how many."""
    assert queue.offer_many(["a", "b", "c", "d", "e", "f"]) == 4
    assert queue.offer_many(["g"]) == 0
    assert queue.pop_many(10, timeout=WAIT) == ["a", "b", "c", "d"]


def test_closing_fails_parked_callers_and_refuses_new_points(
    queue_ref: pykka.ActorRef[BlockingQueue], queue: BlockingQueueClient
) -> None:
    """Close releases everyone waiting with QueueClosedError; pushes are refused."""
    parked = queue_ref.ask(Pop(), timeout=WAIT)
    queue_ref.ask(Close(), timeout=WAIT)
    with pytest.raises(QueueClosedError):
        parked.get(timeout=WAIT)
    with pytest.raises(QueueClosedError):
        queue.push("late")


def test_timed_out_means_not_queued_even_across_a_restart(
    link: RecordingLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client never reports a timeout of its own: a parked push left by a
    dead queue is decided by its successor, and the caller hears that answer."""
    monkeypatch.setattr("statsyard.pipeline.blocking_queue._GRACE", 0.05, raising=False)
    contents = QueueContents(capacity=1)
    ledger = Ledger()
    first = BlockingQueue.start(contents=contents, ledger=ledger, link=link)
    current = [first]
    client = BlockingQueueClient(lambda timeout: current[0])
    client.push("occupant")
    outcome: list[object] = []
    answered = threading.Event()

    def push_late() -> None:
        try:
            outcome.append(client.push_many(["late"], timeout=0.1))
        except QueueTimeout as exc:
            outcome.append(exc)
        answered.set()

    threading.Thread(target=push_late, daemon=True).start()
    for _ in range(1000):  # until the push is parked in the full queue
        if first.proxy().stats().get(timeout=WAIT).blocked_pushers:
            break
    first.stop(timeout=WAIT)  # no queue while the push's deadline passes
    assert not answered.wait(0.4), f"the client answered by itself: {outcome}"
    # A consumer took the occupant meanwhile: the successor has room at once.
    contents.chunks.clear()
    contents.size = 0
    second = BlockingQueue.start(contents=contents, ledger=ledger)
    current[0] = second
    assert answered.wait(WAIT)
    assert outcome == [1]
    assert BlockingQueueClient(second).pop(timeout=WAIT) == "late"
    second.stop()
