"""Tests of statsyard.graphite.listener with real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from statsyard.datapoint import DataPoint
from statsyard.exceptions import ListenerError, QueueClosedError
from statsyard.graphite.listener import (
    ListenerObserver,
    ListenerStats,
)
from statsyard.pipeline.queue_messages import Close, Push
from tests._graphite import QueueSink, RecordingObserver, start_listener

__all__ = ["start_listener"]  # the fixture, imported from tests._graphite

TIMEOUT = 10.0
TS = 1_700_000_000


def tcp_send(address: tuple[str, int], data: bytes) -> None:
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(data)


def stats_of(proxy: Any) -> ListenerStats:
    stats: ListenerStats = proxy.stats().get(timeout=TIMEOUT)
    return stats


def test_addresses_resolve_ephemeral_ports(start_listener: Any) -> None:
    """Port 0 binds a free port, reported by addresses()."""
    proxy, _ = start_listener()
    (tcp_host, tcp_port), (udp_host, udp_port) = proxy.addresses().get(timeout=TIMEOUT)
    assert tcp_host == udp_host == "127.0.0.1"
    assert tcp_port > 0
    assert udp_port > 0


def test_concurrent_tcp_burst_with_bad_lines_is_counted_exactly(
    start_listener: Any,
) -> None:
    """Five clients at once: every good line arrives, every bad one is counted."""
    observer = RecordingObserver()
    proxy, sink = start_listener(observer=observer, default_entity="dflt")
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    bad_lines = [
        b"no-value",
        b"x nan 1700000000",
        b"x 1 yesterday",
        b"x\xff 1 1700000000",
    ]
    clients, per_client = 5, 2000

    def payload(client: int) -> bytes:
        lines = []
        for i in range(per_client):
            if i % 10 == 5:
                lines.append(bad_lines[(i // 10) % 4])
            lines.append(b"c%d.m%d;entity=e%d 1.5 %d" % (client, i % 7, client, TS + i))
        return b"\n".join(lines) + b"\n"

    threads = [
        threading.Thread(target=tcp_send, args=(tcp, payload(c)))
        for c in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    good = clients * per_client
    assert sink.wait_received(good)
    assert observer.wait_for("queued", good)
    stats = stats_of(proxy)
    assert stats.lines_accepted == good == sink.received
    assert stats.lines_rejected == clients * per_client // 10
    assert stats.rejected["fields"] == stats.rejected["not_finite"] == 250
    assert stats.rejected["timestamp"] == stats.rejected["utf8"] == 250
    assert stats.connections_total == clients
    points = sink.take()
    for client in range(clients):
        mine = [p for p in points if p.entity == f"e{client}"]
        assert [p.timestamp for p in mine] == [
            (TS + i) * 1000 for i in range(per_client)
        ]
    assert sum(observer.rejects.values()) == 1000


def test_bad_lines_are_logged_at_most_once_a_second_per_reason(
    start_listener: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A flood of bad lines gives one WARNING per reason, naming the reason."""
    proxy, sink = start_listener()
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    with caplog.at_level(logging.WARNING, logger="statsyard.graphite.listener"):
        with socket.create_connection(tcp, timeout=TIMEOUT) as sock:
            for _ in range(50):
                sock.sendall(b"bad line here x\nok 1 1700000000\n")
                # Each good line proves the chunk before it was processed.
            assert sink.wait_received(50)
        stats_of(proxy)
    warnings = [r for r in caplog.records if "Rejected" in r.getMessage()]
    assert 1 <= len(warnings) < 10
    assert "expected 3 fields" in warnings[0].getMessage()
    assert "from 127.0.0.1:" in warnings[0].getMessage()


def test_partial_line_at_disconnect_is_the_only_loss(start_listener: Any) -> None:
    """A client that hangs up mid-line loses that line and nothing else."""
    observer = RecordingObserver()
    proxy, sink = start_listener(observer=observer)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    tcp_send(tcp, b"a 1 1700000000\nb 2 1700000001\nc 3 17000")
    assert observer.wait_for("partial", 1)
    assert observer.wait_for("queued", 2)
    assert [p.metric for p in sink.take()] == ["a", "b"]
    stats = stats_of(proxy)
    assert stats.rejected["partial"] == 1
    assert stats.lines_accepted == 2


def test_udp_datagrams_are_parsed_as_whole_lines(start_listener: Any) -> None:
    """Each datagram is a batch of lines; the last needs no newline."""
    proxy, sink = start_listener()
    _, udp = proxy.addresses().get(timeout=TIMEOUT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"u.a 1 1700000000\nu.b;entity=host9 2 1700000000", udp)
        sock.sendto(b"u.c 3 N\nbroken\n", udp)
    assert sink.wait_received(3)
    points = sink.take()
    assert [(p.metric, p.entity) for p in points] == [
        ("u.a", "graphite"),
        ("u.b", "host9"),
        ("u.c", "graphite"),
    ]
    stats = stats_of(proxy)
    assert stats.udp_datagrams == 2
    assert stats.rejected["fields"] == 1


def test_udp_points_beyond_what_can_wait_are_dropped_and_counted(
    start_listener: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """UDP cannot wait: points beyond udp_pending are dropped and said so."""
    observer = RecordingObserver()
    proxy, sink = start_listener(
        QueueSink(capacity=10), observer=observer, udp_pending=20
    )
    _, udp = proxy.addresses().get(timeout=TIMEOUT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"".join(b"d%d 1 1700000000\n" % i for i in range(25)), udp)
    assert observer.wait_for("udp_dropped", 5)
    assert sink.wait_full()
    assert stats_of(proxy).udp_points_dropped == 5
    assert any(
        "Dropped 5 Graphite UDP points" in r.getMessage() for r in caplog.records
    )
    # The 20 held points went in one push, which waits for room and then
    # completes: nothing else is lost.
    assert [p.metric for p in sink.take()] == [f"d{i}" for i in range(10)]
    assert observer.wait_for("queued", 20)
    assert [p.metric for p in sink.take()] == [f"d{i}" for i in range(10, 20)]
    stats = stats_of(proxy)
    assert stats.lines_accepted == 20
    assert stats.points_lost_at_stop == 0


def test_a_full_sink_blocks_tcp_senders_and_loses_nothing(start_listener: Any) -> None:
    """Back-pressure: the sender stalls while the sink is full, then all arrives."""
    observer = RecordingObserver()
    proxy, sink = start_listener(
        QueueSink(capacity=1000), observer=observer, recv_buffer_bytes=16_384
    )
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    total = 200_000
    data = b"".join(b"bp.m%d 1 %d\n" % (i % 10, TS + i) for i in range(total))
    sock = socket.create_connection(tcp, timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16_384)
    sender = threading.Thread(target=sock.sendall, args=(data,))
    sender.start()
    try:
        assert sink.wait_full()
        sender.join(0.5)
        assert sender.is_alive(), "the sender should be held back by the full sink"
        assert sink.received == 1000
        assert stats_of(proxy).lines_rejected == 0
        drained: list[DataPoint] = []
        while len(drained) < total:
            sink.wait_received(len(drained) + 1)
            drained.extend(sink.take())
        sender.join(TIMEOUT)
        assert not sender.is_alive()
    finally:
        sock.close()
    assert [p.timestamp for p in drained] == [(TS + i) * 1000 for i in range(total)]
    assert observer.wait_for("queued", total)
    assert stats_of(proxy).lines_accepted == total


def wait_stats(proxy: Any, done: Any, timeout: float = TIMEOUT) -> ListenerStats:
    """Ask stats() until ``done(stats)`` holds (Graphite has no acknowledgement)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = stats_of(proxy)
        if done(stats) or time.monotonic() > deadline:
            return stats


def test_idle_connections_filling_the_table_make_room_for_a_new_client(
    start_listener: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """40 idle clients against max_connections=20: a new client's lines arrive.

    Each client beyond the limit closes the longest-idle one (counted, logged
    rate-limited) instead of being refused.
    """
    observer = RecordingObserver()
    proxy, sink = start_listener(max_connections=20, observer=observer)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    idle = [socket.create_connection(tcp, timeout=TIMEOUT) for _ in range(40)]
    try:
        assert observer.wait_for("opened", 40)
        assert observer.wait_for("evicted", 20)
        tcp_send(tcp, b"fresh 1 1700000000\nfresh 2 1700000001\n")
        assert sink.wait_received(2)
        assert [p.value for p in sink.take()] == [1.0, 2.0]
        stats = wait_stats(proxy, lambda s: s.connections_closed["client"] == 1)
        assert stats.connections_refused == 0
        assert stats.connections_closed["evicted"] == 21
        assert stats.connections_open == 19  # 20, less the fresh one gone
        # The first 21 clients were the longest idle: the server hung up on them.
        assert idle[0].recv(16) == b""
        idle[39].setblocking(False)
        with pytest.raises(BlockingIOError):  # still open, nothing to read
            idle[39].recv(16)
    finally:
        for sock in idle:
            sock.close()
    evictions = [r for r in caplog.records if "longest-idle" in r.getMessage()]
    assert 1 <= len(evictions) < 10


def test_an_idle_client_that_spoke_last_is_not_the_one_evicted(
    start_listener: Any,
) -> None:
    """The connection evicted is the longest idle, not the oldest."""
    observer = RecordingObserver()
    proxy, sink = start_listener(max_connections=2, observer=observer)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    first = socket.create_connection(tcp, timeout=TIMEOUT)
    second = socket.create_connection(tcp, timeout=TIMEOUT)
    try:
        assert observer.wait_for("opened", 2)
        first.sendall(b"one 1 1700000000\n")  # first is now the most recent
        assert sink.wait_received(1)
        with socket.create_connection(tcp, timeout=TIMEOUT) as third:
            third.sendall(b"three 3 1700000000\n")
            assert sink.wait_received(2)
            assert second.recv(16) == b""  # evicted
            first.sendall(b"one 2 1700000001\n")
            assert sink.wait_received(3)
        assert [p.metric for p in sink.take()] == ["one", "three", "one"]
    finally:
        first.close()
        second.close()


def test_connections_over_the_limit_are_refused_when_all_are_busy(
    start_listener: Any,
) -> None:
    """With every open connection's points waiting for a full queue, a new
    client is closed at once and counted: nothing busy is evicted."""
    observer = RecordingObserver()
    proxy, sink = start_listener(
        QueueSink(capacity=1), max_connections=2, observer=observer
    )
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    first = socket.create_connection(tcp, timeout=TIMEOUT)
    second = socket.create_connection(tcp, timeout=TIMEOUT)
    try:
        first.sendall(b"one 1 1700000000\none 2 1700000001\n")
        assert sink.wait_full()  # that push waits in the queue for room
        first.sendall(b"one 3 1700000002\n")
        second.sendall(b"two 1 1700000000\n")
        # These wait for the next push (a candidate for eviction is read
        # first, so they are seen even if the loop has not read them yet).
        with socket.create_connection(tcp, timeout=TIMEOUT) as third:
            assert observer.wait_for("refused", 1)
            assert third.recv(16) == b""
        stats = stats_of(proxy)
        assert stats.connections_refused == 1
        assert stats.connections_closed["evicted"] == 0
        received: list[DataPoint] = []
        while len(received) < 4:
            assert sink.wait_received(len(received) + 1)
            received.extend(sink.take())
        assert sorted(p.value for p in received if p.metric == "one") == [1, 2, 3]
        assert [p.metric for p in received].count("two") == 1
    finally:
        first.close()
        second.close()


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    start_listener: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No data for idle_timeout seconds: the server hangs up, counts and logs
    it; the half line the client left is counted as partial."""
    observer = RecordingObserver()
    proxy, sink = start_listener(idle_timeout=0.2, observer=observer)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    with socket.create_connection(tcp, timeout=TIMEOUT) as sock:
        sock.sendall(b"before 1 1700000000\nhalf a li")
        assert sink.wait_received(1)
        assert observer.wait_for("idle_closed", 1)
        assert sock.recv(16) == b""
    stats = stats_of(proxy)
    assert stats.connections_closed["idle"] == 1
    assert stats.connections_open == 0
    assert stats.rejected["partial"] == 1
    assert any("idle Graphite connection" in r.getMessage() for r in caplog.records)


def test_an_idle_timeout_of_zero_never_closes_a_connection(
    start_listener: Any,
) -> None:
    """idle_timeout=0 is off: the I/O thread has no deadline and sleeps."""
    proxy, sink = start_listener(idle_timeout=0)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    with socket.create_connection(tcp, timeout=TIMEOUT) as sock:
        sock.sendall(b"a 1 1700000000\n")
        assert sink.wait_received(1)
        woke = stats_of(proxy).wakeups
        threading.Event().wait(0.3)  # a window in which nothing may happen
        sock.sendall(b"b 2 1700000000\n")
        assert sink.wait_received(2)
        stats = stats_of(proxy)
    assert stats.connections_closed["idle"] == 0
    assert stats.wakeups - woke < 10


def test_slow_clients_trickling_bytes_do_not_hold_up_others(
    start_listener: Any,
) -> None:
    """Slowloris: 30 clients sending a never-ending line a byte at a time
    cost nothing to a normal client, whose 5,000 lines all arrive."""
    proxy, sink = start_listener(max_line_length=64)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    slow = [socket.create_connection(tcp, timeout=TIMEOUT) for _ in range(30)]
    try:
        for _ in range(100):  # 3,000 one-byte sends, over too_long at 64
            for sock in slow:
                sock.send(b"x")
        tcp_send(tcp, b"".join(b"n %d %d\n" % (i, TS + i) for i in range(5000)))
        assert sink.wait_received(5000)
        stats = wait_stats(
            proxy,
            lambda s: s.rejected["too_long"] == 30 and s.connections_open == 30,
        )
        assert stats.rejected["too_long"] == 30
        assert stats.connections_open == 30  # the slow ones, still served
    finally:
        for sock in slow:
            sock.close()


def test_stop_queues_what_was_read_and_leaves_no_thread(start_listener: Any) -> None:
    """Stopping drains points already read into the sink, then joins the I/O thread."""
    proxy, sink = start_listener()
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    client = socket.create_connection(tcp, timeout=TIMEOUT)
    client.sendall(b"s 1 1700000000\n")
    assert sink.wait_received(1)
    proxy.actor_ref.stop(timeout=TIMEOUT)
    assert client.recv(16) == b""  # the server closed the connection
    client.close()
    assert not [t for t in threading.enumerate() if t.name == "statsyard-graphite-io"]


def test_a_dying_io_thread_crashes_the_actor(start_listener: Any, link: Any) -> None:
    """An error in the I/O thread (here: its observer fails) crashes the actor."""

    class BrokenObserver(ListenerObserver):
        def rejected(self, reason: str, lines: int) -> None:
            raise RuntimeError("observer exploded")

    proxy, _ = start_listener(observer=BrokenObserver(), link=link)
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    tcp_send(tcp, b"bad\n")
    assert link.exited_event.wait(TIMEOUT)
    crashed, error = link.exits[0]
    assert crashed is True
    assert isinstance(error, ListenerError)
    assert "observer exploded" in str(error)
    assert any(t.name == "statsyard-graphite-io" for t in link.threads)
    assert not proxy.actor_ref.is_alive()


def test_a_taken_port_crashes_the_start(start_listener: Any, link: Any) -> None:
    """Binding a port in use is a crash at start, reported to the link."""
    proxy, _ = start_listener()
    (_, port), _ = proxy.addresses().get(timeout=TIMEOUT)
    start_listener(tcp_port=port, link=link)
    assert link.exited_event.wait(TIMEOUT)
    crashed, error = link.exits[0]
    assert crashed is True
    assert isinstance(error, OSError)


class ToldReply:
    """A reply slot like the listener's: records the answer, sets an event."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any = None) -> None:
        self.value = value
        self.done.set()

    def set_exception(self, exc_info: Any = None) -> None:
        self.error = exc_info[1]
        self.done.set()


def test_a_told_push_is_answered_through_its_reply_once_there_is_room() -> None:
    """Push(reply=...) parks like an asked push and is answered, never blocking."""
    sink = QueueSink(capacity=2)
    reply = ToldReply()
    sink.ref.tell(Push(("a", "b", "c"), reply=reply))
    assert sink.wait_full()
    assert not reply.done.is_set()  # one point waits for room
    assert sink.client.pop_many(2, timeout=TIMEOUT) == ["a", "b"]
    assert reply.done.wait(TIMEOUT)
    assert reply.value == 3
    assert sink.client.pop(timeout=TIMEOUT) == "c"
    sink.ref.stop()


def test_a_told_push_to_a_closed_queue_fails_its_reply_not_the_queue() -> None:
    """A closed queue fails the reply; raising would have crashed the queue."""
    sink = QueueSink()
    sink.ref.ask(Close())
    reply = ToldReply()
    sink.ref.tell(Push(("a",), reply=reply))
    assert reply.done.wait(TIMEOUT)
    assert isinstance(reply.error, QueueClosedError)
    assert sink.ref.is_alive()
    sink.ref.stop()


def test_stopping_beside_a_stalled_pipeline_does_not_wait_the_drain_timeout(
    start_listener: Any,
) -> None:
    """A tree stopping by itself (nothing drains the queue) stops the listener fast.

    Its push waits for room that will never come; the listener notices that
    the pipeline stands still and stops within about half a second rather
    than the whole drain_timeout, counting the push as unconfirmed.
    """
    observer = RecordingObserver()
    proxy, sink = start_listener(
        QueueSink(capacity=10),
        observer=observer,
        drain_timeout=30.0,
        progress=lambda: 0,
    )
    tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
    with socket.create_connection(tcp, timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(b"st %d 1700000000\n" % i for i in range(100)))
        assert sink.wait_full()
        started = time.monotonic()
        proxy.actor_ref.stop(timeout=TIMEOUT)
        assert time.monotonic() - started < 3.0
    # The whole push is unconfirmed, though the queue took its first 10.
    assert observer.wait_for("unconfirmed", 100)
    assert sink.received == 10
    assert observer.counts["lost"] == 0


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning() -> None:
    """accept() failing with EMFILE (RLIMIT_NOFILE lowered, in a subprocess):
    the I/O thread wakes a handful of times a second, not thousands, and
    serves the waiting client once descriptors are free again."""
    child = Path(__file__).with_name("_emfile_child.py")
    done = subprocess.run(
        [sys.executable, str(child)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failed"] is True
    assert report["opened_while_starved"] == 3
    # Pauses of 0.02 s doubling to 1 s: about 6 in the window; a busy loop
    # would wake tens of thousands of times.
    assert report["wakeups_in_window"] < 40
    assert 1 <= report["accept_failures_in_window"] < 20
    assert report["resumed"] is True
    assert report["stored"] is True
