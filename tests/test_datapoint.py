"""DataPoint and validation: the seed's validate/1, with reasons."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given, settings

from statsyard import datapoint
from statsyard._ratelimit import RateLimitedLogger
from statsyard.datapoint import (
    MAX_INT_VALUE,
    MAX_NAME_LENGTH,
    MIN_INT_VALUE,
    DataPoint,
    Invalid,
    Valid,
    now_ms,
    validate,
    validate_batch,
    validate_rows,
)
from tests._hostile import hostile_candidates, hostile_value

TS = 1_700_000_000_000


@pytest.fixture(autouse=True)
def _fresh_rejection_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no rejection logged yet (the limiter is global)."""
    monkeypatch.setattr(datapoint, "_rejections", RateLimitedLogger(datapoint.logger))


def test_a_data_point_is_frozen_and_defaults_its_timestamp_to_now() -> None:
    """DataPoint is immutable; the default timestamp is now, in milliseconds."""
    before = now_ms()
    point = DataPoint("cpu.load", "host1", 0.5)
    assert before <= point.timestamp <= now_ms()
    with pytest.raises(AttributeError):
        point.value = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "candidate",
    [
        DataPoint("cpu.load", "host1", 0.5, TS),
        ("cpu.load", "host1", 0.5, TS),
        {"metric": "cpu.load", "entity": "host1", "value": 0.5, "timestamp": TS},
    ],
)
def test_valid_candidates_become_the_same_point(candidate: object) -> None:
    """A DataPoint, a tuple and a mapping with the same fields validate alike."""
    assert validate(candidate) == Valid(DataPoint("cpu.load", "host1", 0.5, TS))


def test_a_tuple_without_timestamp_gets_now() -> None:
    """The timestamp is optional in tuples and mappings."""
    result = validate(("m", "e", 3))
    assert isinstance(result, Valid)
    assert abs(result.point.timestamp - now_ms()) < 60_000


@pytest.mark.parametrize(
    ("candidate", "reason_part"),
    [
        (("", "e", 1, TS), "metric must not be empty"),
        (("m", "", 1, TS), "entity must not be empty"),
        ((1, "e", 1, TS), "metric must be a str"),
        (("m", None, 1, TS), "entity must be a str"),
        (("cpu load", "e", 1, TS), "whitespace or control"),
        (("m", "host\x00", 1, TS), "whitespace or control"),
        (("m\t", "e", 1, TS), "whitespace or control"),
        (("m" * (MAX_NAME_LENGTH + 1), "e", 1, TS), "at most 255"),
        (("m", "e", True, TS), "not a bool"),
        (("m", "e", math.nan, TS), "finite"),
        (("m", "e", math.inf, TS), "finite"),
        (("m", "e", -math.inf, TS), "finite"),
        (("m", "e", "12", TS), "int or float"),
        (("m", "e", 1, 1.5e12), "timestamp must be an int"),
        (("m", "e", 1, 1_700_000_000), "seconds instead of milliseconds"),
        (("m", "e", 1, 10**15), "timestamp must be milliseconds"),
        (("m", "e"), "tuple must be"),
        ({"metric": "m", "entity": "e"}, "needs keys value"),
        (
            {"metric": "m", "entity": "e", "value": 1, "colour": "red"},
            "unexpected keys",
        ),
        (["m", "e", 1], "expected a DataPoint"),
        (DataPoint("m", "e", math.nan, TS), "finite"),
        (("m", ["unhashable"], 1, TS), "entity must be a str"),
    ],
)
def test_bad_candidates_are_rejected_with_a_reason_and_a_warning(
    candidate: object, reason_part: str, caplog: pytest.LogCaptureFixture
) -> None:
    """validate never raises on bad data: it says why, and logs it at WARNING."""
    with caplog.at_level(logging.WARNING, logger="statsyard.datapoint"):
        result = validate(candidate)
    assert isinstance(result, Invalid)
    assert result.candidate is candidate
    assert reason_part in result.reason
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert reason_part in caplog.records[0].getMessage()


def test_success_logs_at_debug_only_when_enabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A valid point is logged at DEBUG, and not at all at INFO."""
    with caplog.at_level(logging.INFO, logger="statsyard.datapoint"):
        validate(("m", "e", 1, TS))
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="statsyard.datapoint"):
        validate(("m", "e", 1, TS))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_validate_batch_keeps_order_and_splits_valid_from_invalid() -> None:
    """The hot-path batch check applies the same rules as validate."""
    good = [DataPoint("m", f"e{i}", i, TS + i) for i in range(5)]
    bad = ("m", "e", math.nan, TS)
    valid, invalid = validate_batch([good[0], bad, *good[1:], ("m", "e", 2, TS)])
    assert valid == [*good, DataPoint("m", "e", 2, TS)]
    assert [i.candidate for i in invalid] == [bad]


def test_batch_fast_path_still_rejects_bad_values_for_known_names() -> None:
    """Names seen before do not let a bad value or timestamp through."""
    validate_batch([("known.metric", "known.entity", 1, TS)])
    valid, invalid = validate_batch(
        [
            ("known.metric", "known.entity", math.inf, TS),
            ("known.metric", "known.entity", True, TS),
            ("known.metric", "known.entity", 1, 5),
            DataPoint("known.metric", "known.entity", 1, -1),
        ]
    )
    assert valid == []
    assert len(invalid) == 4


def test_validate_rows_passes_tuples_through_and_flattens_points() -> None:
    """The hot path returns plain rows: a valid 4-tuple is the same object."""
    row = ("rows.metric", "e", 1.5, TS)
    point = DataPoint("rows.metric", "e", 2, TS)
    valid, invalid = validate_rows(
        [row, point, ("rows.metric", "e", 3), ("x y", "e", 1)]
    )
    assert valid[0] is row
    assert valid[1] == ("rows.metric", "e", 2, TS)
    assert valid[2][:3] == ("rows.metric", "e", 3)
    assert [i.candidate for i in invalid] == [("x y", "e", 1)]


def test_the_package_exports_its_public_api() -> None:
    """Everything in statsyard.__all__ can be imported."""
    import statsyard

    for name in statsyard.__all__:
        assert hasattr(statsyard, name), name


def _plain(row: tuple[object, ...]) -> bool:
    metric, entity, value, timestamp = row
    return (
        type(metric) is str
        and type(entity) is str
        and (type(value) is int or type(value) is float)
        and type(timestamp) is int
    )


class Name(str):
    """A str subclass, as numpy.str_ is."""


class Number(float):
    """A float subclass whose own conversion lies."""

    def __float__(self) -> float:
        return 42.0


def test_accepted_points_are_made_of_exact_built_in_types() -> None:
    """Subclasses are copied into plain str, float and int values."""
    valid, invalid = validate_rows(
        [
            (Name("sub.metric"), Name("sub.entity"), Number(1.5), TS),
            DataPoint(Name("m"), "e", 7, TS),
            {"metric": Name("m"), "entity": "e", "value": Number(2.5)},
        ]
    )
    assert invalid == []
    assert all(_plain(row) for row in valid)
    assert valid[0] == ("sub.metric", "sub.entity", 1.5, TS)
    result = validate((Name("m"), Name("e"), Number(3.0), TS))
    assert isinstance(result, Valid)
    assert _plain(attrs_row(result.point))


def attrs_row(point: DataPoint) -> tuple[object, ...]:
    return (point.metric, point.entity, point.value, point.timestamp)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (MAX_INT_VALUE, True),
        (MIN_INT_VALUE, True),
        (MAX_INT_VALUE + 1, False),
        (MIN_INT_VALUE - 1, False),
        (10**5000, False),
    ],
    ids=["max", "min", "max+1", "min-1", "10**5000"],
)
def test_int_values_must_fit_in_64_bits(value: int, ok: bool) -> None:
    """Ints beyond a signed 64-bit range are rejected, on the fast path too."""
    validate_rows([("known", "known", 1, TS)])  # the names are cached now
    valid, invalid = validate_rows([("known", "known", value, TS)])
    assert (len(valid), len(invalid)) == ((1, 0) if ok else (0, 1))
    if not ok:
        assert "fits in 64 bits" in invalid[0].reason


def test_a_name_equal_to_a_known_one_but_of_a_subclass_is_copied() -> None:
    """The fast path never passes a caller's str subclass through."""
    validate_rows([("cached.m", "cached.e", 1, TS)])
    valid, _ = validate_rows([(Name("cached.m"), Name("cached.e"), 1, TS)])
    assert _plain(valid[0])


def test_a_flood_of_one_problem_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Invalid points are logged with rate limiting, not one line each."""
    with caplog.at_level(logging.WARNING, logger="statsyard.datapoint"):
        _, invalid = validate_rows([("m", "e", math.nan, TS)] * 1000)
        validate(("m", "e", "x", TS))
        validate(("", "e", 1, TS))
    assert len(invalid) == 1000
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "finite" in lines[0]
    assert "must not be empty" in lines[1]


@given(candidate=hostile_candidates())
@settings(max_examples=300, deadline=None)
def test_no_candidate_makes_validation_raise(candidate: object) -> None:
    """Whatever an object does when looked at, validation answers."""
    valid, invalid = validate_rows([candidate, ("m", "e", 1, TS)])
    assert len(valid) + len(invalid) == 2
    assert all(_plain(row) for row in valid)
    assert valid[-1] == ("m", "e", 1, TS)
    for row in valid:
        assert MIN_INT_VALUE <= row[2] <= MAX_INT_VALUE or math.isfinite(row[2])
    assert isinstance(validate(candidate), Valid | Invalid)


@given(value=hostile_value())
@settings(max_examples=200, deadline=None)
def test_no_value_reaches_a_row_unless_plain_and_storable(value: object) -> None:
    """Every accepted value is a 64-bit int or a finite float."""
    valid, _ = validate_rows([("m", "e", value, TS)])
    for _, _, number, _ in valid:
        if type(number) is int:
            assert MIN_INT_VALUE <= number <= MAX_INT_VALUE
        else:
            assert type(number) is float
            assert math.isfinite(number)
