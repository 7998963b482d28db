"""statsyard.timeparse: every from/until form graphite-web accepts, plus ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statsyard.cli.query import parse_time as cli_parse_time
from statsyard.exceptions import StatsYardError, TimeFormatError
from statsyard.timeparse import parse_offset_ms, parse_time

# Tuesday 2023-11-14 22:13:20 UTC.
NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
NOW_MS = 1_700_000_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> int:
    """Epoch ms of a UTC wall-clock time."""
    return _ms(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW_MS),
        ("-1h", NOW_MS - HOUR),
        ("-2d", NOW_MS - 2 * DAY),
        ("-1w", NOW_MS - 7 * DAY),
        ("-5min", NOW_MS - 5 * MINUTE),
        ("-5minutes", NOW_MS - 5 * MINUTE),
        ("-3mon", NOW_MS - 90 * DAY),
        ("-1y", NOW_MS - 365 * DAY),
        ("-30s", NOW_MS - 30_000),
        ("-10seconds", NOW_MS - 10_000),
        ("-1hours", NOW_MS - HOUR),
        ("now-1h", NOW_MS - HOUR),
        ("+1d", NOW_MS + DAY),
        ("-1h30min", NOW_MS - HOUR - 30 * MINUTE),
        ("-15m", NOW_MS - 15 * MINUTE),
        ("-500ms", NOW_MS - 500),
        ("1700000000", NOW_MS),
        ("1700000000.25", NOW_MS + 250),
        ("12345678", 12_345_678_000),
        ("20231131", 20_231_131_000),
        ("20231114", at(2023, 11, 14)),
        ("14:30_20231114", at(2023, 11, 14, 14, 30)),
        ("04:05_20200229", at(2020, 2, 29, 4, 5)),
        ("midnight", at(2023, 11, 14)),
        ("noon", at(2023, 11, 14, 12)),
        ("teatime", at(2023, 11, 14, 16)),
        ("noon+1d", at(2023, 11, 15, 12)),
        ("midnight_yesterday", at(2023, 11, 13)),
        ("noon tomorrow", at(2023, 11, 15, 12)),
        ("today", at(2023, 11, 14)),
        ("6am", at(2023, 11, 14, 6)),
        ("6pm", at(2023, 11, 14, 18)),
        ("3:15pm", at(2023, 11, 14, 15, 15)),
        ("11/14/23", at(2023, 11, 14)),
        ("01/02/1999", at(1999, 1, 2)),
        ("jan1", at(2023, 1, 1)),
        ("march 15", at(2023, 3, 15)),
        ("monday", at(2023, 11, 13)),
        ("tuesday", at(2023, 11, 14)),
        ("sunday", at(2023, 11, 12)),
        ("2023-11-14T22:13:20Z", NOW_MS),
        ("2023-11-14T23:13:20+01:00", NOW_MS),
        ("2023-11-14", at(2023, 11, 14)),
        ("  NOW-1H  ", NOW_MS - HOUR),
    ],
)
def test_every_form_parses_to_the_expected_instant(text: str, expected: int) -> None:
    """Each graphite-web form (and ours: ISO, ms, m, fractions) means what it says."""
    assert parse_time(text, now_ms=NOW_MS) == expected


def test_wall_clock_forms_are_read_in_the_given_zone() -> None:
    """``noon`` and ``YYYYMMDD`` are local to ``tz``; relative times are not."""
    paris = ZoneInfo("Europe/Paris")
    assert parse_time("noon", now_ms=NOW_MS, tz=paris) == at(2023, 11, 14, 11)
    assert parse_time("20231114", now_ms=NOW_MS, tz=paris) == at(2023, 11, 13, 23)
    assert parse_time("-1h", now_ms=NOW_MS, tz=paris) == NOW_MS - HOUR


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "bogus",
        "-1",
        "-1x",
        "-1mo",
        "now-",
        "25:00_20231114",
        "99999999999999999999",
        "feb",
        "13/01/2023",
        "1700000000.5.5",
        "x" * 300,
        "-99999999999y",
    ],
)
def test_a_bad_time_is_a_clear_error_naming_it(text: str) -> None:
    """Bad input raises TimeFormatError (a ValueError) naming the input."""
    with pytest.raises(TimeFormatError) as info:
        parse_time(text, now_ms=NOW_MS)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, StatsYardError)
    assert info.value.text == text
    assert "bad time" in str(info.value)
    assert repr(text[:40]) in str(info.value)


@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_only_time_format_error(text: str) -> None:
    """No input escapes with anything but our error."""
    try:
        result = parse_time(text, now_ms=NOW_MS)
    except TimeFormatError:
        return
    assert isinstance(result, int)


@given(
    st.integers(min_value=0, max_value=1_000),
    st.sampled_from(
        [
            ("s", 1000),
            ("sec", 1000),
            ("min", MINUTE),
            ("m", MINUTE),
            ("h", HOUR),
            ("d", DAY),
            ("days", DAY),
            ("w", 7 * DAY),
            ("mon", 30 * DAY),
            ("y", 365 * DAY),
            ("ms", 1),
        ]
    ),
    st.sampled_from(["", "now"]),
)
def test_relative_times_count_back_from_now(
    amount: int, unit: tuple[str, int], prefix: str
) -> None:
    """``[now]-N<unit>`` is now minus N units; ``+`` adds."""
    name, size = unit
    assert parse_time(f"{prefix}-{amount}{name}", now_ms=NOW_MS) == (
        NOW_MS - amount * size
    )
    assert parse_time(f"{prefix}+{amount}{name}", now_ms=NOW_MS) == (
        NOW_MS + amount * size
    )


@given(st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(9998, 1, 1)))
def test_dates_and_times_of_day_round_trip(moment: datetime) -> None:
    """``HH:MM_YYYYMMDD``, ``YYYYMMDD`` and ISO 8601 name that UTC minute/day."""
    minute = moment.replace(second=0, microsecond=0, tzinfo=UTC)
    day = minute.replace(hour=0, minute=0)
    text = minute.strftime("%H:%M_") + f"{minute.year:04d}{minute:%m%d}"
    assert parse_time(text, now_ms=NOW_MS) == _ms(minute)
    assert parse_time(f"{day.year:04d}{day:%m%d}", now_ms=NOW_MS) == _ms(day)
    exact = moment.replace(tzinfo=UTC)
    assert parse_time(exact.isoformat(), now_ms=NOW_MS) == _ms(exact)


@given(st.integers(min_value=0, max_value=253_000_000_000))
def test_epoch_seconds_round_trip_unless_they_read_as_a_date(seconds: int) -> None:
    """Digits are epoch seconds, except eight that are a date (graphite-web)."""
    text = str(seconds)
    result = parse_time(text, now_ms=NOW_MS)
    if len(text) == 8 and int(text[:4]) > 1900:
        try:
            date = datetime(int(text[:4]), int(text[4:6]), int(text[6:]), tzinfo=UTC)
        except ValueError:
            pass  # not a real date: epoch seconds
        else:
            assert result == _ms(date)
            return
    assert result == seconds * 1000


@given(
    st.one_of(
        st.sampled_from(["now", "2023-11-14", "2023-11-14T01:02:03Z"]),
        st.builds(
            lambda n, u: f"-{n}{u}",
            st.integers(min_value=0, max_value=999),
            st.sampled_from(["ms", "s", "m", "h", "d"]),
        ),
        st.integers(min_value=0, max_value=4_000_000_000).map(str),
    )
)
def test_keeps_every_form_the_cli_accepted(text: str) -> None:
    """What the CLI's own parser accepted still means the same instant.

    Except eight digits that are a date after 1900, read as graphite-web does.
    """
    ours = parse_time(text, now_ms=NOW_MS)
    if len(text) == 8 and text.isdigit() and ours != int(text) * 1000:
        # graphite-web's one exception: a date's eight digits are that date.
        date = datetime(int(text[:4]), int(text[4:6]), int(text[6:]), tzinfo=UTC)
        assert ours == _ms(date)
    else:
        assert ours == cli_parse_time(text, now_ms=NOW_MS)


def test_offsets_parse_alone() -> None:
    """``parse_offset_ms`` reads the intervals of timeShift and summarize."""
    assert parse_offset_ms("1h") == HOUR
    assert parse_offset_ms("-1d") == -DAY
    assert parse_offset_ms("+2w") == 14 * DAY
    assert parse_offset_ms("5min") == 5 * MINUTE
    with pytest.raises(TimeFormatError, match="bad time offset '1x'"):
        parse_offset_ms("1x")
    assert timedelta(milliseconds=parse_offset_ms("1y")) == timedelta(days=365)
