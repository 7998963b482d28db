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
