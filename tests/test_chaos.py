"""Chaos: every child crashes and stops hundreds of times mid-ingest; nothing is
lost, nothing is written twice, and the counts say exactly where every point went.

The harness is tests/_chaos.py (benchmarks/soak.py runs it longer). A failing
run prints its seed; replay it with::

    STATSYARD_CHAOS_SEED=<seed> .venv/bin/python -m pytest tests/test_chaos.py
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from statsyard import Config, StatsYard
from tests._chaos import CHILDREN, KINDS, ChaosPlan, ChaosReport, run_chaos


@pytest.fixture
def seed() -> int:
    """The seed from ``STATSYARD_CHAOS_SEED``, or a fresh one."""
    text = os.environ.get("STATSYARD_CHAOS_SEED")
    return int(text) if text else random.SystemRandom().randrange(1 << 32)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Log at INFO, not DEBUG: the pipeline logs every valid point at DEBUG,
    which would make the consumer the bottleneck. Pykka's traceback of every
    crash we cause is left out too (the supervisor logs each in one line)."""
    levels = {"statsyard": logging.INFO, "pykka": logging.CRITICAL}
    before = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


def check(report: ChaosReport, plan: ChaosPlan) -> None:
    """Assert that every promise held; the message carries the seed and figures."""
    replay = (
        f"replay: STATSYARD_CHAOS_SEED={plan.seed} "
        f".venv/bin/python -m pytest {__file__}"
    )
    print(report.summary())  # pytest shows it with a failure
    problems = report.problems()
    assert not problems, f"seed {plan.seed}: {problems}\n{report.summary()}\n{replay}"
    children = [c for c in plan.children if plan.graphite or c != "graphite"]
    for child in children:
        for kind in KINDS:
            assert report.kills[(child, kind)] > 0, f"no {kind} of {child}; {replay}"
    assert report.total_kills == plan.kills, replay
    sent = report.host_acked + report.host_invalid + report.host_failed
    assert sent == plan.host_points, f"host threads did not finish; {replay}"
    assert report.tcp_sent == plan.tcp_points, f"clients did not finish; {replay}"
    assert report.host_invalid > 0, replay


def test_the_service_tree_loses_nothing_and_writes_nothing_twice_under_chaos(
    tmp_path: Path, seed: int
) -> None:
    """520 random crashes, stops and restarts of queue, Graphite listener,
    writer, consumer and shipper while 3 host threads push 160,000 points in
    chunks of 1..7000 (batches of 1000, most chunks smaller) and 3 Graphite
    clients send 60,000 lines in connections of 1..7000 lines cut at random
    byte boundaries: counts balance, nothing is lost, every invalid point is
    counted, and every point is read back exactly once."""
    plan = ChaosPlan(seed=seed)
    assert plan.host_points + plan.tcp_points >= 200_000
    assert plan.kills >= 500 and set(plan.children) == set(CHILDREN)
    report = run_chaos(plan, tmp_path / "data")
    check(report, plan)
    assert report.tcp_clean > 0, "no Graphite connection was served cleanly"


def test_an_embedded_statsyard_loses_nothing_and_writes_nothing_twice_under_chaos(
    tmp_path: Path, seed: int
) -> None:
    """The embedded tree (queue, writer, consumer, shipper; no listener, so a
    consumer restarts within a millisecond, while a checkpoint may still hold
    its predecessor's last write at the writer): 1000 kills while 400,000
    points are pushed, mostly in chunks smaller than a batch."""
    plan = ChaosPlan(
        seed=seed,
        graphite=False,
        host_points=400_000,
        tcp_points=0,
        kills=1000,
    )
    report = run_chaos(plan, tmp_path / "data")
    check(report, plan)


def test_merges_under_chaos_lose_nothing_and_write_nothing_twice(
    tmp_path: Path, seed: int
) -> None:
    """The embedded tree merging all the time (a segment sealed every 2 s of
    data, a checkpoint every 2,000 points) while 500 kills land: a writer
    killed mid-merge, its worker and temporary files left behind, and every
    point still read back exactly once."""
    plan = ChaosPlan(
        seed=seed,
        graphite=False,
        host_points=200_000,
        tcp_points=0,
        kills=500,
        checkpoint_points=2000,
        merge_after=2.0,
    )
    report = run_chaos(plan, tmp_path / "data")
    check(report, plan)
    merged = [
        path
        for path in (tmp_path / "data").glob("seg-*.idx")
        if b"SYRC\x01\x04" in path.read_bytes()[16:22]
    ]
    assert merged, "no merged segment: the run did not exercise merges"


def test_flush_follows_a_writer_restart_instead_of_failing(tmp_path: Path) -> None:
    """Found by the chaos test: flush() asked a writer that a crash was about
    to restart to fsync, and raised NotRunningError although the tree ran on.
    A restart is not a stop: flush() must wait for the successor."""
    settings = Config.of(pipeline={"max_restarts": 1000, "max_seconds": 1.0})
    with StatsYard(settings, data_dir=tmp_path / "data", ship_metrics=False) as yard:
        for round_ in range(30):
            yard.push(("m", "e", round_, 1_700_000_000_000 + round_))
            yard.flush(timeout=10)  # nothing pending: flush goes straight to fsync
            yard.child("writer").tell(("crash", round_))
            yard.flush(timeout=10)
        assert yard.counts().written == 30
