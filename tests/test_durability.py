"""A StatsYard killed with SIGKILL keeps every point that flush() acknowledged."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

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
