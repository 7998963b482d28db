"""Chaos harness: crash and stop every child while points pour in, then audit.

A StatsYard service tree (queue, Graphite listener, writer, consumer,
shipper; built by ``StatsYard(config)`` as the service builds it)
takes unique points from host threads (``push_many`` in chunks of random
sizes, deliberately not aligned with the batch size, a few invalid ones
among them) and from Graphite TCP clients (one connection per chunk, the
bytes split at random boundaries). Meanwhile a crasher thread crashes
(``ref.tell(...)``), stops (``ref.stop()``) or restarts by request
(``restart_child``) a random child, again and again. Afterwards the data
directory is read back through :meth:`Storage.open_readonly` and every point
is accounted for.

Every point is unique: its key is ``(metric, entity, timestamp)`` and its
value is its id, so duplicates and missing points are found exactly.

What must hold (see :meth:`ChaosReport.problems`):

- ``counts()`` balances: ``pushed == written + invalid + lost``, nothing pending;
- nothing is lost (``lost == 0``) and ``invalid`` equals the invalid points pushed;
- every host point whose ``push_many`` returned is stored exactly once;
- every stored point is one that was sent, stored once, with its own value;
- ``stop()`` returns and leaves no thread of StatsYard's behind;
- every point the queue accepted from Graphite is stored (``pushed`` minus
  the host points equals the Graphite points stored);
- every line of a Graphite connection that the *same* listener incarnation
  served from connect to a clean end of stream is stored, or counted in
  ``graphite.points.lost`` or ``.unconfirmed`` (the listener closes a
  connection once its lines are handed to the queue, which may die before
  taking them). Carbon's
  plaintext protocol has no acknowledgement: lines a listener had read when
  it was crashed or stopped cannot be told apart by the client from lines
  it never read, so connections cut by a restart are checked only for
  duplicates and strays.

The load keeps to a schedule of ``duration`` seconds: the crasher spreads
its kills evenly over it (with jitter), and each pusher pushes in bursts at
full speed whenever it falls behind its share of the schedule and rests
while it is ahead. Bursts keep the queue busy and deliveries of every size
in flight while kills land at unrelated moments; a lock-step between kills
and pushes would make every kill land on an idle pipeline. The pauses are
the load's shape, not waits for an actor: every wait for the pipeline is on
a future, an event or a socket, with a deadline.

The run is replayable: every random choice comes from generators seeded
with :attr:`ChaosPlan.seed` (thread interleaving is of course not).
"""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pykka

from statsyard.app import StatsYard
from statsyard.config import Config
from statsyard.storage import Storage
from statsyard.testing import DogStatsdCapture

logger = logging.getLogger(__name__)

BASE_MS = 1_700_000_000_000
HOST_METRIC = "chaos.host"
TCP_METRIC = "chaos.tcp"
CHILDREN = ("queue", "writer", "consumer", "graphite", "http", "shipper")
KINDS = ("crash", "stop", "restart")

Key = tuple[str, str, int]


@attrs.frozen
class ChaosPlan:
    """How much load and how many kills; everything random derives from ``seed``."""

    seed: int
    host_points: int = 160_000
    """Points pushed by the host threads together (invalid ones included)."""
    host_threads: int = 3
    tcp_points: int = 60_000
    """Lines sent over Graphite TCP by the clients together."""
    tcp_clients: int = 3
    kills: int = 520
    """Crashes, stops and requested restarts of random children."""
    graphite: bool = True
    """Run the service's tree (with the Graphite listener), or the embedded one."""
    children: tuple[str, ...] = CHILDREN
    """The children to kill, chosen uniformly (the listener only if it runs)."""
    kind_weights: tuple[int, int, int] = (6, 2, 2)
    """Relative weights of crash, stop and restart_child."""
    storm_share: float = 0.1
    """Share of the crasher's picks that start a storm of 2 to 20 kills."""
    max_chunk: int = 7000
    """Largest push_many chunk and largest Graphite connection, in points."""
    small_chunks: float = 0.7
    """Share of chunks smaller than a batch (the rest: log-uniform sizes)."""
    max_piece: int = 9000
    """Largest piece of bytes a Graphite client sends at once."""
    batch_size: int = 1000
    queue_capacity: int = 20_000
    fsync: str = "interval"
    """The storage's fsync policy."""
    fsync_interval: float = 0.01
    """Seconds between fsyncs under ``interval`` (short: the writer is often busy)."""
    checkpoint_points: int = 5000
    """The storage compacts its head this often (a slow write now and then)."""
    merge_after: float | None = None
    """``[storage] merge_after`` in seconds of data (None: the default, which
    a run's few minutes of data never reach; small: merges all the time)."""
    invalid_per_chunk: float = 0.05
    """Probability that a host chunk carries one invalid point."""
    duration: float = 4.0
    """Seconds over which the kills and the points are spread."""
    lead: float = 0.05
    """A pusher rests once this share of its quota ahead of the schedule."""
    trickle_pause: float = 0.001
    """Mean pause between chunks of a pusher ahead of the schedule, seconds."""
    deadline: float = 50.0
    """Seconds for the load phase; past it the run is reported as hung."""
    settle_timeout: float = 30.0
    """Seconds for the final flush and for stop()."""

    def __attrs_post_init__(self) -> None:
        if self.tcp_points and not self.graphite:
            raise ValueError("tcp_points need the Graphite listener (graphite=True)")


@attrs.define
class TcpConnection:
    """One Graphite connection: which lines it carried and how it ended."""

    entity: str
    first: int
    count: int
    outcome: str
    """``clean`` (same listener from connect to end of stream) or why not."""


@attrs.define
class ChaosReport:
    """What happened and what was found; :meth:`problems` says what is wrong."""

    plan: ChaosPlan
    seconds: float = 0.0
    load_seconds: float = 0.0
    kills: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    restarts: dict[str, int] = attrs.field(factory=dict)
    pushed: int = 0
    written: int = 0
    invalid: int = 0
    lost: int = 0
    pending: int = 0
    host_acked: int = 0
    host_invalid: int = 0
    host_failed: int = 0
    tcp_sent: int = 0
    tcp_clean: int = 0
    tcp_connections: Counter[str] = attrs.field(factory=Counter)
    stored: int = 0
    duplicates: int = 0
    missing_host: int = 0
    missing_tcp_clean: int = 0
    tcp_stored: int = 0
    tcp_lost: int = 0
    """Points the listener read but did not queue (``graphite.points.lost``)."""
    tcp_unconfirmed: int = 0
    """Points the listener read and is not sure it queued
    (``graphite.points.unconfirmed``)."""

    @property
    def tcp_lost_counted(self) -> int:
        """Points the listener read but did not queue or is not sure it did."""
        return self.tcp_lost + self.tcp_unconfirmed

    strays: int = 0
    wrong_values: int = 0
    errors: list[str] = attrs.field(factory=list)
    hung: list[str] = attrs.field(factory=list)

    @property
    def total_kills(self) -> int:
        """Crashes, stops and restarts done."""
        return sum(self.kills.values())

    def problems(self) -> list[str]:
        """Every broken promise, one line each; empty when all holds."""
        found = [f"hung: {what}" for what in self.hung]
        plan = self.plan
        host_sent = self.host_acked + self.host_invalid + self.host_failed
        if (host_sent, self.tcp_sent, self.total_kills) != (
            plan.host_points,
            plan.tcp_points,
            plan.kills,
        ):
            found.append(
                f"the load did not finish in {plan.deadline:g} s: host points "
                f"{host_sent}/{plan.host_points}, Graphite lines "
                f"{self.tcp_sent}/{plan.tcp_points}, kills "
                f"{self.total_kills}/{plan.kills}"
            )
        found += [f"error: {error}" for error in self.errors[:10]]
        balance = self.written + self.invalid + self.lost
        if self.pushed != balance or self.pending != 0:
            found.append(
                f"counts do not balance: pushed {self.pushed} != written "
                f"{self.written} + invalid {self.invalid} + lost {self.lost} "
                f"(pending {self.pending})"
            )
        if self.lost:
            found.append(f"{self.lost} points counted as lost")
        if self.invalid != self.host_invalid and not self.host_failed:
            found.append(
                f"invalid {self.invalid} != {self.host_invalid} invalid points pushed"
            )
        if self.duplicates:
            found.append(f"{self.duplicates} points stored more than once")
        if self.missing_host:
            found.append(f"{self.missing_host} acknowledged host points missing")
        if self.missing_tcp_clean > self.tcp_lost_counted:
            found.append(
                f"{self.missing_tcp_clean} points of cleanly served Graphite "
                f"connections missing, only {self.tcp_lost_counted} counted as "
                "lost or unconfirmed by the listener"
            )
        if self.strays:
            found.append(f"{self.strays} stored points were never sent")
        if self.wrong_values:
            found.append(f"{self.wrong_values} stored points carry a wrong value")
        if self.stored != self.written:
            found.append(f"{self.stored} points stored but written says {self.written}")
        tcp_queued = self.pushed - self.host_acked - self.host_invalid
        if not self.host_failed and tcp_queued != self.tcp_stored:
            found.append(
                f"{tcp_queued} Graphite points queued but {self.tcp_stored} stored"
            )
        return found

    def summary(self) -> str:
        """The figures, on a few lines."""
        by_child = Counter(child for child, _ in self.kills.elements())
        by_kind = Counter(kind for _, kind in self.kills.elements())
        rate = self.pushed / self.load_seconds if self.load_seconds else 0.0
        return "\n".join(
            [
                f"seed            {self.plan.seed}",
                f"duration        {self.seconds:.1f} s "
                f"(load {self.load_seconds:.1f} s)",
                f"points          {self.pushed:,} accepted, "
                f"{rate:,.0f} points/s under chaos",
                f"kills           {self.total_kills} ({_listed(by_kind)}; "
                f"{_listed(by_child)})",
                f"restarts        {sum(self.restarts.values())} "
                f"({_listed(self.restarts)})",
                f"counts          pushed {self.pushed:,} = written {self.written:,} "
                f"+ invalid {self.invalid:,} + lost {self.lost:,} "
                f"(pending {self.pending:,})",
                f"host            {self.host_acked + self.host_invalid:,} pushed "
                f"({self.host_invalid} invalid), {self.host_failed} in failed pushes",
                f"graphite tcp    {self.tcp_sent:,} lines sent, "
                f"{self.tcp_stored:,} stored, {self.tcp_lost:,} counted lost "
                f"and {self.tcp_unconfirmed:,} unconfirmed by the listener; "
                f"connections {_listed(self.tcp_connections)}",
                f"read back       {self.stored:,} stored, {self.duplicates} "
                f"duplicates, {self.missing_host} host missing, "
                f"{self.missing_tcp_clean} clean graphite missing, "
                f"{self.strays} strays, {self.wrong_values} wrong values",
            ]
        )


def _listed(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counts.items()))


def free_tcp_port(rng: random.Random) -> int:
    """A free TCP port below the ephemeral range.

    The listener is restarted hundreds of times on one fixed port, as the
    service is; a port outside the ephemeral range cannot be taken meanwhile
    as the source port of one of our own client connections.
    """
    for _ in range(200):
        port = rng.randint(20_000, 32_000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port found in 20000..32000")


def chaos_config(plan: ChaosPlan, *, tcp_port: int, statsd_port: int) -> Config:
    """The service configuration of a chaos run: high restart limit, small batches."""
    base = Config()
    return attrs.evolve(
        base,
        storage=attrs.evolve(
            base.storage, fsync=plan.fsync, fsync_interval=plan.fsync_interval
        ),
        pipeline=attrs.evolve(
            base.pipeline,
            queue_capacity=plan.queue_capacity,
            batch_size=plan.batch_size,
            max_restarts=1_000_000,
            max_seconds=1.0,
        ),
        graphite=attrs.evolve(
            base.graphite, enabled=plan.graphite, tcp_port=tcp_port, udp_port=0
        ),
        metrics=attrs.evolve(
            base.metrics, port=statsd_port, interval=0.05, process_stats=True
        ),
        http=attrs.evolve(base.http, port=0),
    )


class _Run:
    """One chaos run's threads and bookkeeping."""

    def __init__(self, plan: ChaosPlan, yard: Any, tcp_port: int) -> None:
        self.plan = plan
        self.yard = yard
        self.tcp_port = tcp_port
        self.aborted = threading.Event()
        self.started = time.monotonic()
        self.deadline = self.started + plan.deadline
        self.lock = threading.Lock()
        self.report = ChaosReport(plan)
        self.quotas: dict[tuple[str, str], int] = {}
        self.host_acked: dict[str, list[tuple[int, int]]] = {}
        self.host_failed: dict[str, list[tuple[int, int]]] = {}
        self.host_invalid_keys: set[Key] = set()
        self.connections: list[TcpConnection] = []

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def going(self) -> bool:
        return not self.aborted.is_set() and time.monotonic() < self.deadline

    def schedule_share(self) -> float:
        """How much of the schedule has passed, 0.0 to 1.0."""
        return min(1.0, (time.monotonic() - self.started) / self.plan.duration)

    def keep_to_schedule(self, done: int, quota: int, rng: random.Random) -> bool:
        """Pause as the load's shape demands; True if resting (push nothing now).

        Far ahead of the schedule: rest. Behind it: burst (no pause). In
        between: trickle, a short pause after each chunk, so the queue runs
        short and deliveries of every size are in flight. These pauses shape
        the load; they are not waits for an actor.
        """
        ahead = done / quota - self.schedule_share()
        if ahead > self.plan.lead:
            time.sleep(rng.uniform(0.005, 0.05))  # the load's shape: rest
            return True
        if ahead > 0:
            time.sleep(rng.uniform(0.0, 2 * self.plan.trickle_pause))  # trickle
        return False

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.report.errors.append(f"{where}: {type(exc).__name__}: {exc}")

    # -- the crasher -----------------------------------------------------------

    def crasher(self) -> None:
        """Kill random children on schedule; now and then a storm of one child.

        A storm (a crash loop) kills the same child several times back to
        back, each time as soon as its successor is up, so kills also land
        on a child that has barely started and while slow writes are pending.
        """
        plan = self.plan
        rng = random.Random(f"{plan.seed}-crasher")
        children = [c for c in plan.children if plan.graphite or c != "graphite"]
        done = 0
        failures = 0
        while done < plan.kills and self.going() and failures < 100:
            # The next kill is due somewhere in its slot of the schedule.
            due = self.started + plan.duration * (done + rng.random()) / plan.kills
            if due > time.monotonic():
                time.sleep(due - time.monotonic())  # the load's shape
            child = rng.choice(children)
            storm = 1 if rng.random() > plan.storm_share else rng.randint(2, 20)
            for _ in range(min(storm, plan.kills - done)):
                (kind,) = rng.choices(KINDS, plan.kind_weights)
                try:
                    if not self._kill(child, kind, done):
                        continue
                except Exception as exc:  # noqa: BLE001 (deliberate: recorded, run goes on)
                    self.error(f"crasher ({kind} {child})", exc)
                    failures += 1
                    continue
                done += 1
                with self.lock:
                    self.report.kills[(child, kind)] += 1

    def _kill(self, child: str, kind: str, n: int) -> bool:
        """Crash, stop or restart ``child``; False if it died before we got to it."""
        timeout = min(10.0, self.remaining() + 0.1)
        if kind == "restart":
            self.yard.supervisor.restart_child(child).get(timeout=timeout)
            return True
        ref = self.yard.child(child, timeout=timeout)
        try:
            if kind == "crash":
                ref.tell(("chaos", n))
            else:
                if not ref.is_alive():
                    return False
                ref.stop(block=False)
        except pykka.ActorDeadError:
            return False
        return True

    # -- host pushers ------------------------------------------------------------

    def host_pusher(self, thread: int, quota: int) -> None:
        plan = self.plan
        rng = random.Random(f"{plan.seed}-host-{thread}")
        entity = f"t{thread}"
        # Even threads push through StatsYard (staged into batch_size messages);
        # odd ones through its queue client, so the queue holds chunks of any size.
        push_many = self.yard.queue.push_many if thread % 2 else self.yard.push_many
        acked: list[tuple[int, int]] = []
        failed: list[tuple[int, int]] = []
        with self.lock:
            self.quotas[(HOST_METRIC, entity)] = quota
            self.host_acked[entity] = acked
            self.host_failed[entity] = failed
        sent = 0
        while sent < quota and self.going():
            if self.keep_to_schedule(sent, quota, rng):
                continue
            size = min(_chunk_size(rng, plan), quota - sent)
            chunk: list[Any] = [
                (HOST_METRIC, entity, i, BASE_MS + i) for i in range(sent, sent + size)
            ]
            bad: Key | None = None
            if rng.random() < plan.invalid_per_chunk:
                at = rng.randrange(size)
                i = sent + at
                value = rng.choice([math.nan, math.inf, "not a number", None])
                chunk[at] = (HOST_METRIC, entity, value, BASE_MS + i)
                bad = (HOST_METRIC, entity, BASE_MS + i)
            try:
                push_many(chunk)
            except Exception as exc:  # noqa: BLE001 (deliberate: recorded as a failure)
                self.error(f"push_many by host thread {thread}", exc)
                with self.lock:
                    self.report.host_failed += size
                failed.append((sent, sent + size))
            else:
                acked.append((sent, sent + size))
                if bad is not None:
                    with self.lock:
                        self.host_invalid_keys.add(bad)
            sent += size

    # -- Graphite clients ----------------------------------------------------------

    def tcp_client(self, client: int, quota: int) -> None:
        plan = self.plan
        rng = random.Random(f"{plan.seed}-tcp-{client}")
        entity = f"g{client}"
        with self.lock:
            self.quotas[(TCP_METRIC, entity)] = quota
        sent = 0
        while sent < quota and self.going():
            if self.keep_to_schedule(sent, quota, rng):
                continue
            size = min(_chunk_size(rng, plan), quota - sent)
            data = b"".join(
                b"%s;entity=%s %d %d.%03d\n"
                % (
                    TCP_METRIC.encode(),
                    entity.encode(),
                    i,
                    (BASE_MS + i) // 1000,
                    (BASE_MS + i) % 1000,
                )
                for i in range(sent, sent + size)
            )
            pieces = _split(data, rng, plan.max_piece)
            try:
                outcome = self._send_connection(pieces)
            except Exception as exc:  # noqa: BLE001 (deliberate: recorded as a failure)
                self.error(f"Graphite client {client}", exc)
                outcome = "error"
            with self.lock:
                self.connections.append(TcpConnection(entity, sent, size, outcome))
                self.report.tcp_connections[outcome] += 1
            if outcome == "refused":
                continue  # nothing was sent: send the same lines again
            sent += size

    def _send_connection(self, pieces: list[bytes]) -> str:
        """Send one connection's bytes; say how it ended.

        ``clean``: the listener incarnation that was serving before we
        connected closed the stream after our end of stream, and is still
        alive after that, so it read and queued every line.
        """
        timeout = min(10.0, self.remaining() + 0.1)
        ref = self.yard.child("graphite", timeout=timeout)
        try:
            # Answered once on_start has bound the port: a wait on a future.
            ref.proxy().addresses().get(timeout=timeout)
        except pykka.ActorDeadError:
            return "refused"
        try:
            sock = socket.create_connection(
                ("127.0.0.1", self.tcp_port), timeout=self.remaining() + 0.1
            )
        except (ConnectionRefusedError, ConnectionResetError):
            return "refused"  # the listener went away: nothing was sent
        with sock:
            try:
                for piece in pieces:
                    sock.sendall(piece)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):
                    pass
            except TimeoutError:
                return "timeout"
            except OSError:  # reset, broken pipe, not connected: cut by the listener
                return "reset"
        return "clean" if ref.is_alive() else "cut"

    # -- the audit --------------------------------------------------------------

    def audit(self, data_dir: Path) -> None:
        """Read every series back and compare each point with what was sent."""
        report = self.report
        marks = self._expected()
        report.host_acked = sum(
            m.count(_MUST) for (metric, _), m in marks.items() if metric == HOST_METRIC
        )
        report.host_invalid = len(self.host_invalid_keys)
        report.tcp_clean = sum(
            m.count(_MUST) for (metric, _), m in marks.items() if metric == TCP_METRIC
        )
        seen_series: set[tuple[str, str]] = set()
        reader = Storage.open_readonly(data_dir)
        try:
            for metric, entity in reader.series("**"):
                seen_series.add((metric, entity))
                rows = reader.query(metric, entity).get(entity, [])
                self._check_series(metric, marks.get((metric, entity)), rows)
        finally:
            reader.close()
        for (metric, _), expected in marks.items():
            if (metric, _) not in seen_series:
                self._check_series(metric, expected, [])

    def _expected(self) -> dict[tuple[str, str], bytearray]:
        """Per series, what each point id must be: _MUST, _MAY, _INVALID or unsent."""
        marks: dict[tuple[str, str], bytearray] = {}
        for (metric, entity), quota in self.quotas.items():
            marks[(metric, entity)] = bytearray(quota)
        for entity, ranges in self.host_acked.items():
            for first, end in ranges:
                marks[(HOST_METRIC, entity)][first:end] = _MUST_BYTES * (end - first)
        for entity, ranges in self.host_failed.items():
            for first, end in ranges:
                marks[(HOST_METRIC, entity)][first:end] = _MAY_BYTES * (end - first)
        for _, entity, ts in self.host_invalid_keys:
            marks[(HOST_METRIC, entity)][ts - BASE_MS] = _INVALID
        for connection in self.connections:
            if connection.outcome == "refused":
                continue
            self.report.tcp_sent += connection.count
            mark = _MUST_BYTES if connection.outcome == "clean" else _MAY_BYTES
            first, end = connection.first, connection.first + connection.count
            marks[(TCP_METRIC, connection.entity)][first:end] = mark * (end - first)
        return marks

    def _check_series(
        self,
        metric: str,
        expected: bytearray | None,
        rows: list[tuple[int, int | float]],
    ) -> None:
        report = self.report
        size = 0 if expected is None else len(expected)
        seen = bytearray(size)
        for ts, value in rows:
            report.stored += 1
            i = ts - BASE_MS
            if expected is None or not 0 <= i < size or expected[i] in _NEVER:
                report.strays += 1
                continue
            if value != i:
                report.wrong_values += 1
            if seen[i]:
                report.duplicates += 1
                continue
            seen[i] = 1
            if metric == TCP_METRIC:
                report.tcp_stored += 1
        if expected is None:
            return
        missing = sum(
            1
            for must, got in zip(expected, seen, strict=True)
            if must == _MUST and not got
        )
        if metric == HOST_METRIC:
            report.missing_host += missing
        else:
            report.missing_tcp_clean += missing


_UNSENT, _MAY, _MUST, _INVALID = 0, 1, 2, 3
_MAY_BYTES, _MUST_BYTES = bytes([_MAY]), bytes([_MUST])
_NEVER = (_UNSENT, _INVALID)
"""Point ids that must not be stored: never sent, or sent invalid."""


def _chunk_size(rng: random.Random, plan: ChaosPlan) -> int:
    """A chunk size: mostly below the batch size, else up to ``max_chunk``.

    Chunks smaller than a batch, pushed straight to the queue, make the
    consumer's deliveries straddle them: what a restarted consumer gets
    back then overlaps its predecessor's pending write. Larger ones are
    drawn log-uniformly from 1 to ``max_chunk``.
    """
    if rng.random() < plan.small_chunks:
        return rng.randint(1, max(1, plan.batch_size - 1))
    return min(plan.max_chunk, int(plan.max_chunk ** rng.random()))


def _split(data: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    """Cut ``data`` at random byte boundaries (lines split mid-way included)."""
    pieces = []
    at = 0
    while at < len(data):
        size = rng.randint(1, max_piece)
        pieces.append(data[at : at + size])
        at += size
    return pieces


def _start_threads(
    targets: list[tuple[str, Callable[[], None]]],
) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=target, name=f"chaos-{name}", daemon=True)
        for name, target in targets
    ]
    for thread in threads:
        thread.start()
    return threads


def _bounded(call: Callable[[], Any], timeout: float) -> tuple[bool, Any]:
    """Run ``call`` in a daemon thread; (finished, result or exception)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(call())
        except Exception as exc:  # noqa: BLE001 (deliberate: handed to the caller)
            box.append(exc)

    thread = threading.Thread(target=run, name="chaos-bounded", daemon=True)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive(), box[0] if box else None)


def _share(total: int, parts: int) -> Iterator[int]:
    for part in range(parts):
        yield total // parts + (1 if part < total % parts else 0)


def run_chaos(plan: ChaosPlan, data_dir: Path) -> ChaosReport:
    """Run the plan against a fresh service tree in ``data_dir``; audit; report."""
    started = time.monotonic()
    tcp_port = free_tcp_port(random.Random())
    with DogStatsdCapture() as agent:
        config = chaos_config(plan, tcp_port=tcp_port, statsd_port=agent.port)
        config = attrs.evolve(
            config,
            storage=attrs.evolve(
                config.storage,
                checkpoint_points=plan.checkpoint_points,
                merge_after=(
                    config.storage.merge_after
                    if plan.merge_after is None
                    else plan.merge_after
                ),
            ),
        )
        yard = StatsYard(config, data_dir=data_dir)
        before = set(threading.enumerate())
        yard.start()
        run = _Run(plan, yard, tcp_port)
        report = run.report
        try:
            workers = _start_threads(
                [
                    *(
                        (f"host-{t}", _bind_args(run.host_pusher, t, quota))
                        for t, quota in enumerate(
                            _share(plan.host_points, plan.host_threads)
                        )
                    ),
                    *(
                        (f"tcp-{c}", _bind_args(run.tcp_client, c, quota))
                        for c, quota in enumerate(
                            _share(plan.tcp_points, plan.tcp_clients)
                        )
                    ),
                ]
            )
            (crasher,) = _start_threads([("crasher", run.crasher)])
            for thread in workers:
                thread.join(run.remaining() + 1.0)
            crasher.join(run.remaining() + 10.0)
            report.load_seconds = time.monotonic() - started
            stuck = [t.name for t in (*workers, crasher) if t.is_alive()]
            if stuck:
                report.hung.append(f"threads still busy at the deadline: {stuck}")
                run.aborted.set()
            else:
                finished, result = _bounded(
                    lambda: yard.flush(timeout=plan.settle_timeout),
                    plan.settle_timeout + 5.0,
                )
                if not finished:
                    report.hung.append("flush() did not return")
                elif isinstance(result, Exception):
                    report.errors.append(f"flush: {type(result).__name__}: {result}")
            finished, result = _bounded(
                lambda: yard.supervisor.which_children().get(timeout=10.0), 15.0
            )
            if finished and isinstance(result, list):
                report.restarts = {info.id: info.restarts for info in result}
        finally:
            finished, result = _bounded(
                lambda: yard.stop(timeout=plan.settle_timeout),
                plan.settle_timeout + 10.0,
            )
        if not finished:
            report.hung.append("stop() did not return")
            counts = yard.counts()
        elif isinstance(result, Exception):
            report.errors.append(f"stop: {type(result).__name__}: {result}")
            counts = yard.counts()
        else:
            counts = result
    # Read by the listener, then not queued (lost) or not known to be (unconfirmed).
    report.tcp_lost = yard.registry.counter("graphite.points.lost").value
    report.tcp_unconfirmed = yard.registry.counter("graphite.points.unconfirmed").value
    report.pushed = counts.pushed
    report.written = counts.written
    report.invalid = counts.invalid
    report.lost = counts.lost
    report.pending = counts.pending
    if finished:
        left = [
            t.name
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith("chaos-")
        ]
        if left:
            report.hung.append(f"threads left running after stop(): {left}")
        run.audit(data_dir)
    else:
        report.hung.append("the data directory was not audited (still open)")
    report.seconds = time.monotonic() - started
    return report


def _bind_args(
    function: Callable[[int, int], None], first: int, second: int
) -> Callable[[], None]:
    def call() -> None:
        function(first, second)

    return call
