"""Hostile points pushed into a running StatsYard: rejected one by one, never a crash.

Each example pushes valid points mixed with objects built to fail when
looked at. Afterwards the accounts balance, nothing is lost, no child was
restarted, and every valid point reads back exactly once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statsyard import StatsYard
from tests._hostile import hostile_candidates

WAIT = 10.0
TS = 1_700_000_000_000


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatsYard]:
    """One running StatsYard for every example (a restart would hide crashes)."""
    data_dir: Path = tmp_path_factory.mktemp("hostile")
    running = StatsYard(
        data_dir,
        batch_size=16,
        fsync="never",
        max_restarts=1000,
        max_seconds=1.0,
        ship_metrics=False,
    ).start()
    yield running
    running.stop(timeout=WAIT)


_example = itertools.count()


@given(
    good=st.integers(0, 20),
    bad=st.lists(hostile_candidates(), min_size=1, max_size=20),
    order=st.randoms(use_true_random=False),
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_hostile_points_through_push_are_rejected_and_nothing_else_is_hurt(
    yard: StatsYard, good: int, bad: list[object], order: object
) -> None:
    """pushed == written + invalid + lost, lost == 0, no restart, valid read once."""
    n = next(_example)
    entity = f"ok{n}"
    valid = [("hostile.valid", entity, float(i), TS + i) for i in range(good)]
    mixed: list[object] = [*valid, *bad]
    order.shuffle(mixed)  # type: ignore[attr-defined]
    for candidate in mixed[: len(mixed) // 2]:
        yard.push(candidate)
    yard.push_many(mixed[len(mixed) // 2 :])
    yard.flush(timeout=WAIT)

    counts = yard.counts()
    assert counts.pushed == counts.written + counts.invalid + counts.lost
    assert counts.lost == 0
    assert counts.pending == 0
    children = yard.supervisor.which_children().get(timeout=WAIT)
    assert [c.restarts for c in children] == [0] * len(children)
    stored = yard.query("hostile.valid", entity).get(entity, [])
    assert sorted(stored) == [(ts, value) for _, _, value, ts in valid]
