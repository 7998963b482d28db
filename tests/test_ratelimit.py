"""The one rate-limited WARNING logger shared by every rejecting path."""

from __future__ import annotations

import logging

import pytest

from statsyard._ratelimit import RateLimitedLogger, warn_once

logger = logging.getLogger("tests.ratelimit")


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger.name]


def test_one_line_per_key_per_interval_then_the_count_of_those_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flood logs once, and the next line says how many it held back."""
    clock = FakeClock()
    limited = RateLimitedLogger(logger, interval=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert limited.warning("bad", "rejected %s", "a")
        for _ in range(4):
            clock.now += 0.2
            assert not limited.warning("bad", "rejected %s", "b")
        assert limited.suppressed() == {"bad": 4}
        clock.now += 0.2
        assert limited.warning("bad", "rejected %s", "c")
    assert messages(caplog) == ["rejected a", "rejected c (4 more suppressed)"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert limited.suppressed() == {}


def test_keys_are_limited_independently(caplog: pytest.LogCaptureFixture) -> None:
    """One kind of problem flooding does not hide another."""
    clock = FakeClock()
    limited = RateLimitedLogger(logger, interval=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        limited.warning("value", "value %d", 1)
        limited.warning("value", "value %d", 2)
        limited.warning("metric", "metric %d", 3)
    assert messages(caplog) == ["value 1", "metric 3"]
    assert limited.suppressed() == {"value": 1}


def test_nothing_is_counted_when_warnings_are_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With WARNING disabled the logger neither logs nor does any work."""
    limited = RateLimitedLogger(logger, interval=1.0, clock=FakeClock())
    with caplog.at_level(logging.ERROR, logger=logger.name):
        assert not limited.warning("k", "x")
        assert not limited.warning("k", "x")
    assert messages(caplog) == []
    assert limited.suppressed() == {}


def test_warn_once_logs_each_key_once_ever_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The registry's, process statistics' and shipper's warn-once logger: one
    line per key however much time passes; the rest are counted."""
    once = warn_once(logger)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert once.warning(("gauge", "m", ()), "first %s", 1)
        assert not once.warning(("gauge", "m", ()), "again %s", 2)
        assert once.warning("other", "other %s", 3)
        assert not once.warning("other", "other %s", 4)
        assert not once.warning("other", "other %s", 5)
    assert messages(caplog) == ["first 1", "other 3"]
    assert once.suppressed() == {("gauge", "m", ()): 1, "other": 2}
