"""Hostile points pushed into a running StatsYard: rejected one by one, never a crash.

Each example pushes valid points mixed with objects built to fail when
looked at. Afterwards the accounts balance, nothing is lost, no child was
restarted, and every valid point reads back exactly once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statsyard import StatsYard
from statsyard.config import Config
from tests._hostile import hostile_candidates

WAIT = 10.0
TS = 1_700_000_000_000


@pytest.fixture
def yard(tmp_path: Path) -> Iterator[StatsYard]:
    """One running StatsYard for every example of a test (a restart would hide
    crashes: the test checks that no child ever restarted)."""
    running = StatsYard(
        Config.of(
            storage={"fsync": "never"},
            pipeline={"max_restarts": 1000, "max_seconds": 1.0},
        ),
        data_dir=tmp_path / "data",
        batch_size=16,
        ship_metrics=False,
    ).start()
    yield running
    running.stop(timeout=WAIT)


_example = itertools.count()


@given(
    good=st.integers(0, 20),
    bad=st.lists(hostile_candidates(), min_size=1, max_size=20),
    seed=st.integers(0, 2**32),
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_hostile_points_through_push_are_rejected_and_nothing_else_is_hurt(
    yard: StatsYard, good: int, bad: list[object], seed: int
) -> None:
    """pushed == written + invalid + lost, lost == 0, no restart, valid read once."""
    n = next(_example)
    entity = f"ok{n}"
    valid = [("hostile.valid", entity, float(i), TS + i) for i in range(good)]
    mixed: list[object] = [*valid, *bad]
    random.Random(seed).shuffle(mixed)
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


class RaisingFloat(float):
    def __float__(self) -> float:
        raise ValueError("no float for you")


class RaisingInt(int):
    def __int__(self) -> int:
        raise ValueError("no int for you")

    def __index__(self) -> int:
        raise ValueError("no index for you")


class RaisingName(str):
    def __hash__(self) -> int:
        raise RuntimeError("no hash for you")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq for you")


class RaisingMapping(dict[str, object]):
    def __getitem__(self, key: object) -> object:
        raise KeyError("no item for you")


def test_the_issue_examples_are_rejected_and_the_pipeline_goes_on(
    yard: StatsYard,
) -> None:
    """Each value named in issue 8 is counted invalid; the valid ones around land."""
    before = yard.counts()
    fields = {"metric": "m", "entity": "e", "value": 1.0}
    hostile: list[object] = [
        ("issue.m", "e", 10**5000, TS),
        ("issue.m", "e", RaisingFloat("nan"), TS),
        ("issue.m", "e", RaisingInt(2**70), TS),
        RaisingMapping(fields),
    ]
    for i, candidate in enumerate(hostile):
        yard.push(("issue.m", "ok", float(i), TS + i))
        yard.push(candidate)
    # A str subclass whose __hash__ and __eq__ raise is read through str's own
    # slots: stored as the plain name it holds, never hashed itself.
    yard.push((RaisingName("issue.m"), "named", 7.0, TS))
    yard.flush(timeout=WAIT)
    after = yard.counts()
    assert after.invalid - before.invalid == len(hostile)
    assert after.written - before.written == len(hostile) + 1
    assert after.lost == 0
    children = yard.supervisor.which_children().get(timeout=WAIT)
    assert [c.restarts for c in children] == [0] * len(children)
    stored = yard.query("issue.m", "ok")["ok"]
    assert [v for _, v in stored] == [0.0, 1.0, 2.0, 3.0]
    assert yard.query("issue.m", "named")["named"] == [(TS, 7.0)]
