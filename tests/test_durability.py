"""A StatsYard killed with SIGKILL keeps every point that flush() acknowledged."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

from tests._processes import ends
from tests._stored import stored_points

WAIT = 30.0

CHILD = textwrap.dedent(
    """
    import sys
    from statsyard import StatsYard

    data_dir, seed = sys.argv[1], int(sys.argv[2])
    yard = StatsYard(data_dir=data_dir, batch_size=500, ship_metrics=False).start()
    base = 1_700_000_000_000 + seed * 10_000_000
    sent = 0
    while True:
        yard.push_many(
            ("kill.test", f"host{i % 5}", i, base + i) for i in range(sent, sent + 2000)
        )
        sent += 2000
        yard.flush(timeout=30)
        print(sent, flush=True)  # every point before `sent` is durable
    """
)


def test_points_acknowledged_by_flush_survive_sigkill(tmp_path: Path) -> None:
    """Kill the whole pipeline mid-stream, several times: no acknowledged point
    is lost, none is stored twice, and the directory reopens every time."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(7)
    acknowledged: dict[int, int] = {}
    for seed in range(4):
        child = subprocess.Popen(
            [sys.executable, str(script), str(data_dir), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        last = 0
        for _ in range(rng.randint(2, 6)):  # let a few flushes be acknowledged
            line = child.stdout.readline()
            assert line, "the child died before acknowledging a flush"
            last = int(line)
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        child.stdout.close()
        acknowledged[seed] = last
        stored = stored_points(data_dir)
        assert len(stored) == len(set(stored)), "a point was stored twice"
        for run, acked in acknowledged.items():
            base = 1_700_000_000_000 + run * 10_000_000
            offsets = {ts - base for (_, _, ts, _) in stored if 0 <= ts - base < 10**7}
            missing = set(range(acked)) - offsets
            assert not missing, f"run {run}: {len(missing)} acknowledged points lost"


THREADED_CHILD = textwrap.dedent(
    """
    import random, sys, threading
    from statsyard import StatsYard
    from statsyard.config import Config
    import attrs

    data_dir, seed = sys.argv[1], int(sys.argv[2])
    base = Config()
    config = attrs.evolve(
        base,
        pipeline=attrs.evolve(base.pipeline, batch_size=1000, queue_capacity=20_000),
        graphite=attrs.evolve(base.graphite, tcp_port=0, udp_port=0),
        metrics=attrs.evolve(base.metrics, enabled=False),
        storage=attrs.evolve(base.storage, checkpoint_points=7000),
        http=attrs.evolve(base.http, port=0),
    )
    yard = StatsYard(config, data_dir=data_dir).start()
    base_ms = 1_700_000_000_000 + seed * 10_000_000
    say = threading.Lock()

    def pusher(thread):
        rng = random.Random(seed * 100 + thread)
        entity = f"t{thread}"
        # Even threads push through StatsYard's staging, odd ones straight to
        # the queue, so the queue holds chunks of every size.
        push_many = yard.queue.push_many if thread % 2 else yard.push_many
        sent = 0
        while True:
            size = min(7000, int(7000 ** rng.random()))
            chunk = range(sent, sent + size)
            push_many([("kill.threads", entity, i, base_ms + i) for i in chunk])
            sent += size
            if rng.random() < 0.3:
                yard.flush(timeout=30)
                with say:  # every point of this thread before `sent` is durable
                    print(thread, sent, flush=True)

    for thread in range(3):
        threading.Thread(target=pusher, args=(thread,), daemon=True).start()
    threading.Event().wait()
    """
)


def test_acknowledged_points_survive_sigkill_under_unaligned_load_from_threads(
    tmp_path: Path,
) -> None:
    """Three threads push chunks of random sizes (through StatsYard and straight
    to its queue, across checkpoints) into the service's tree and each says
    when a flush returned; SIGKILL mid-stream, several times: every point a
    flush acknowledged is read back exactly once, and nothing is stored twice."""
    script = tmp_path / "child.py"
    script.write_text(THREADED_CHILD)
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(11)
    acknowledged: dict[tuple[int, int], int] = {}
    for seed in range(4):
        child = subprocess.Popen(
            [sys.executable, str(script), str(data_dir), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        for _ in range(rng.randint(3, 12)):  # let a few flushes be acknowledged
            line = child.stdout.readline()
            assert line, "the child died before acknowledging a flush"
            thread, sent = (int(field) for field in line.split())
            acknowledged[(seed, thread)] = sent
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        child.stdout.close()
        stored = stored_points(data_dir)
        keys = [(entity, ts) for (_, entity, ts, _) in stored]
        assert len(keys) == len(set(keys)), "a point was stored twice"
        present = set(keys)
        for (run, thread), acked in acknowledged.items():
            base = 1_700_000_000_000 + run * 10_000_000
            missing = [
                i for i in range(acked) if (f"t{thread}", base + i) not in present
            ]
            assert not missing, (
                f"run {run} thread {thread}: {len(missing)} of {acked} "
                f"acknowledged points lost, first {missing[:5]}"
            )


COMPACTING_CHILD = textwrap.dedent(
    """
    import sys
    import attrs
    from statsyard import StatsYard
    from statsyard.config import Config

    data_dir = sys.argv[1]
    base = Config()
    config = attrs.evolve(
        base,
        graphite=attrs.evolve(base.graphite, tcp_port=0, udp_port=0),
        metrics=attrs.evolve(base.metrics, enabled=False),
        storage=attrs.evolve(base.storage, checkpoint_points=5000),
        http=attrs.evolve(base.http, port=0),
    )
    yard = StatsYard(config, data_dir=data_dir).start()
    sent = 0
    while True:
        yard.push_many(
            ("kill.compact", f"host{i % 5}", i, 1_700_000_000_000 + i)
            for i in range(sent, sent + 1000)
        )
        sent += 1000
        yard.flush(timeout=300)
        print(sent, flush=True)  # every point before `sent` is durable
    """
)


class _Lines:
    """Lines of a child's stdout, each awaited with a timeout."""

    def __init__(self, stream: Any) -> None:
        self._fd = stream.fileno()
        self._buffer = b""

    def next(self, timeout: float) -> str | None:
        """The next line, or None if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                return None
            chunk = os.read(self._fd, 65536)
            assert chunk, "the child died"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


def _compaction_worker_of(pid: int) -> psutil.Process | None:
    for child in psutil.Process(pid).children():
        if "statsyard.storage._compaction:handle" in child.cmdline():
            return child
    return None


def test_sigkill_mid_compaction_leaves_no_worker_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """The service's compaction worker is held mid-request (SIGSTOP) until the
    writer waits for it; SIGKILL the service: the worker dies with it, and
    every acknowledged point reads back once from the reopened directory."""
    script = tmp_path / "child.py"
    script.write_text(COMPACTING_CHILD)
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, str(script), str(data_dir)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    try:
        lines = _Lines(child.stdout)
        acked = 0
        worker = None
        for _ in range(500):  # a checkpoint is due every 5 lines
            line = lines.next(WAIT)
            assert line, "the child stopped acknowledging flushes"
            acked = int(line)
            # Once a segment exists the worker has served a request, so it
            # is past setting PR_SET_PDEATHSIG (stopped before that, it could
            # not act on its parent's death until continued).
            if any(data_dir.glob("seg-*.idx")):
                worker = _compaction_worker_of(child.pid)
                if worker is not None:
                    break
        assert worker is not None, "no compaction worker started"
        worker.suspend()  # SIGSTOP: the next compaction stays in flight
        for _ in range(500):
            line = lines.next(3.0)
            if line is None:  # the writer waits for the stopped worker
                break
            acked = int(line)
        else:
            raise AssertionError("the writer never waited for the stopped worker")
        assert worker.status() == psutil.STATUS_STOPPED
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        assert ends(worker.pid, WAIT), f"worker {worker.pid} outlived the service"
    finally:
        child.kill()
        child.wait(WAIT)
        child.stdout.close()
    stored = stored_points(data_dir)
    assert len(stored) == len(set(stored)), "a point was stored twice"
    offsets = {ts - 1_700_000_000_000 for (_, _, ts, _) in stored}
    assert set(range(acked)) <= offsets, "acknowledged points were lost"
    assert offsets <= set(range(acked + 100_000))
