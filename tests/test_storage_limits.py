"""Series limits: storage.max_series and storage.max_new_series_per_minute."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from statsyard.app import StatsYard
from statsyard.config import Config, load_config
from statsyard.datapoint import DataPoint
from statsyard.exceptions import ConfigError
from statsyard.storage import Storage
from statsyard.storage._admission import SeriesLimits
from tests._storage_helpers import T0, points


def test_max_series_refuses_points_of_new_series_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond max_series, points of new series are refused (counted by reason,
    logged); stored series keep taking points, across a reopen too."""
    with caplog.at_level(logging.WARNING), Storage.open(tmp_path, max_series=2) as s:
        s.append([*points("a", "e", [1, 2]), *points("b", "e", [3])])
        s.append([*points("c", "e", [4, 5]), *points("a", "e", [6], start=T0 + 5000)])
        assert s.series() == [("a", "e"), ("b", "e")]
        assert s.refused_points == {"max_series": 2, "max_new_series_per_minute": 0}
        assert s.series_held == 2
        s.checkpoint()
    assert "Refused 2 points of 1 new series (e.g. c e): storage.max_series = 2" in (
        caplog.text
    )
    with Storage.open(tmp_path, max_series=2) as s:
        assert s.series_held == 2  # compacted series count
        assert s.append(points("d", "e", [7])) == 0
        s.append(points("b", "e", [8], start=T0 + 9000))
        assert s.refused_points["max_series"] == 1
        assert [v for _, v in s.query("b")["e"]] == [3, 8]


def test_new_series_per_minute_is_a_token_bucket() -> None:
    """A burst of the rate passes at once; then one new series per 60/rate s."""
    now = [0.0]
    limits = SeriesLimits(None, 3, clock=lambda: now[0])
    assert [limits.admit(0) for _ in range(4)] == [
        None,
        None,
        None,
        "max_new_series_per_minute",
    ]
    now[0] += 20.0  # a third of a minute: one token back
    assert [limits.admit(0) for _ in range(2)] == [None, "max_new_series_per_minute"]
    now[0] += 3600.0  # never more than the burst
    assert [limits.admit(0) for _ in range(4)].count(None) == 3


def test_the_rate_limit_applies_through_storage(tmp_path: Path) -> None:
    """Through Storage: the second new series of a batch over a rate of 1 is refused."""
    with Storage.open(tmp_path, max_new_series_per_minute=1) as s:
        s.append([*points("a", "e", [1]), *points("b", "e", [2, 3])])
        assert s.series() == [("a", "e")]
        assert s.refused_points == {"max_series": 0, "max_new_series_per_minute": 2}


def test_refused_points_are_invalid_in_the_pipeline_accounting(tmp_path: Path) -> None:
    """Through StatsYard: pushed == written + invalid + lost still holds; the
    refused points are the invalid ones."""
    yard = StatsYard(
        Config.of(storage={"max_series": 3}, metrics={"enabled": False}),
        data_dir=tmp_path / "data",
        batch_size=100,
    ).start()
    try:
        yard.push_many(
            DataPoint(f"m{i % 5}", "h", float(i), T0 + i * 1000) for i in range(50)
        )
        yard.flush(timeout=10)
        counts = yard.counts()
    finally:
        yard.stop(timeout=10)
    assert counts.pushed == 50
    assert counts.written == 30
    assert counts.invalid == 20
    assert counts.pushed == counts.written + counts.invalid + counts.lost


def test_the_limits_are_configured_in_storage_with_zero_for_unlimited(
    tmp_path: Path,
) -> None:
    """`[storage] max_series` and `max_new_series_per_minute`: 0 turns them off;
    the default caps new series at 10,000 a minute and leaves the total open."""
    default = load_config(None, environ={})
    assert default.storage.max_series is None
    assert default.storage.max_new_series_per_minute == 10_000
    path = tmp_path / "statsyard.toml"
    path.write_text("[storage]\nmax_series = 500\nmax_new_series_per_minute = 0\n")
    config = load_config(path, environ={})
    assert config.storage.max_series == 500
    assert config.storage.max_new_series_per_minute is None
    path.write_text("[storage]\nmax_series = -1\n")
    with pytest.raises(ConfigError, match="max_series"):
        load_config(path, environ={})
