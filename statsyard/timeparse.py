"""Time arguments as graphite-web reads ``from``/``until``, plus ISO 8601.

One parser for every place a user types a time (``/render``'s ``from`` and
``until``, the CLI's ``--from``/``--until``). It accepts what graphite-web
1.1's ``parseATTime`` accepts, and what our CLI accepted before it:

- ``now``; relative times ``-1h``, ``-2d``, ``-1w``, ``-5min``, ``-3mon``,
  ``-1y``, ``-30s`` (also ``now-1h``, ``+1d`` and sums like ``-1h30min``);
  as in graphite-web a month is 30 days and a year 365. Our own additions:
  ``m`` is minutes and ``ms`` milliseconds (graphite-web rejects both).
- epoch seconds ``1700000000`` (our addition: with a fraction), except that
  eight digits that are a date after 1900 are ``YYYYMMDD``, as in graphite-web;
- ``HH:MM_YYYYMMDD``, ``YYYYMMDD``, ``MM/DD/YY[YY]``, ``midnight``, ``noon``,
  ``teatime``, ``6am``, ``yesterday``/``today``/``tomorrow``, a month name and
  day (``jan1``), a weekday (``monday``), each optionally followed by an
  offset (``noon+1d``, ``midnight_yesterday``);
- ISO 8601 (``2023-11-14T22:13:20Z``, ``2023-11-14``).

Wall-clock forms are read in ``tz`` (UTC unless given; graphite-web uses its
``TIME_ZONE`` setting). Offsets are added to the instant, not the wall clock,
as pytz does in graphite-web. Anything else raises :class:`TimeFormatError`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from statsyard.exceptions import TimeFormatError

__all__ = ["parse_duration_s", "parse_offset_ms", "parse_time"]

_MONTHS: Final = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_SECOND_MS: Final = 1000
_MINUTE_MS: Final = 60 * _SECOND_MS
_HOUR_MS: Final = 60 * _MINUTE_MS
_DAY_MS: Final = 24 * _HOUR_MS

_MAX_TEXT: Final = 200
"""Longer arguments are refused outright (no time needs more)."""

_MIN_MS: Final = round((datetime(1, 1, 2, tzinfo=UTC).timestamp()) * 1000)
_MAX_MS: Final = round((datetime(9999, 12, 30, tzinfo=UTC).timestamp()) * 1000)

_EPOCH: Final = re.compile(r"^\d+(\.\d+)?$")
_ISO: Final = re.compile(r"^\d{4}-\d{2}(-\d{2})?([ T].*)?$")
_OFFSET_PART: Final = re.compile(r"(\d+)([a-z]+)")

_EXPECTED: Final = (
    "expected now, a relative time (-1h, -15min, -2d, -1w, -3mon, -1y, "
    "now-30s), epoch seconds, HH:MM_YYYYMMDD, YYYYMMDD, midnight/noon/teatime, "
    "or ISO 8601 (2023-11-14T22:13:20Z)"
)


def _unit_ms(unit: str) -> int:
    """Milliseconds in one ``unit``, by graphite-web's prefix rules (+ ms, m)."""
    if unit == "ms":
        return 1
    if unit == "m":
        return _MINUTE_MS
    if unit.startswith("s"):
        return _SECOND_MS
    if unit.startswith("min"):
        return _MINUTE_MS
    if unit.startswith("h"):
        return _HOUR_MS
    if unit.startswith("d"):
        return _DAY_MS
    if unit.startswith("w"):
        return 7 * _DAY_MS
    if unit.startswith("mon"):
        return 30 * _DAY_MS
    if unit.startswith("y"):
        return 365 * _DAY_MS
    raise ValueError(f"unknown unit {unit!r}")


def parse_offset_ms(text: str) -> int:
    """A signed offset such as ``-1h``, ``+30min`` or ``1d12h`` in milliseconds.

    Also the form of ``timeShift``'s and ``summarize``'s intervals. A leading
    sign applies to every part; no sign means ``+``.

    Raises:
        TimeFormatError: not a sequence of NUMBER UNIT parts.
    """
    raw = text
    value = text.strip().lower()
    try:
        if len(value) > _MAX_TEXT:
            raise ValueError("too long")
        return _offset_ms(value)
    except ValueError as exc:
        raise TimeFormatError(
            f"bad time offset {_shown(raw)} ({exc}): expected e.g. -1h, 30min, 2d, 1w",
            text=raw,
        ) from None


def parse_duration_s(value: str | int) -> int:
    """A positive whole number of seconds: an int, or ``"10s"``, ``"1m"``,
    ``"5min"``, ``"1h"``, ``"1d"``, ``"1w"``, ``"1y"`` (a carbon retention step).

    Raises:
        TimeFormatError: not such a duration, signed, not positive, or not
            whole seconds.
    """
    text = str(value)
    expected = "expected e.g. 10s, 1m, 1h, 1d or an int of seconds"
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value)
    elif isinstance(value, str) and value.strip()[:1].isdigit():
        try:
            milliseconds = _offset_ms(value.strip().lower())
        except ValueError as exc:
            raise TimeFormatError(
                f"bad duration {_shown(text)} ({exc}): {expected}", text=text
            ) from None
        if milliseconds % 1000:
            raise TimeFormatError(
                f"bad duration {_shown(text)}: not whole seconds", text=text
            )
        seconds = milliseconds // 1000
    else:
        raise TimeFormatError(f"bad duration {_shown(text)}: {expected}", text=text)
    if seconds <= 0:
        raise TimeFormatError(
            f"bad duration {_shown(text)}: must be positive", text=text
        )
    return seconds


def _offset_ms(value: str) -> int:
    if not value:
        return 0
    sign = 1
    if value[0] in "+-":
        sign = -1 if value[0] == "-" else 1
        value = value[1:]
    if not value:
        raise ValueError("no amount after the sign")
    total = 0
    position = 0
    while position < len(value):
        part = _OFFSET_PART.match(value, position)
        if part is None:
            raise ValueError(f"expected NUMBER UNIT at {value[position:]!r}")
        total += int(part.group(1)) * _unit_ms(part.group(2))
        position = part.end()
    return sign * total


def parse_time(text: str, *, now_ms: int, tz: tzinfo = UTC) -> int:
    """A ``from``/``until`` argument as milliseconds since the epoch.

    Args:
        text: the argument, in any form listed in this module's docstring.
        now_ms: what ``now`` is, in ms (tests pass a fixed instant).
        tz: the zone wall-clock forms (``noon``, ``YYYYMMDD``, ISO without a
            zone) are read in.

    Raises:
        TimeFormatError: (a ``ValueError``) the text is none of these forms;
            the message names it and lists the forms.
    """
    try:
        result = _parse(text, now_ms=now_ms, tz=tz)
    except (ValueError, OverflowError, OSError) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise TimeFormatError(
            f"bad time {_shown(text)}{detail}: {_EXPECTED}", text=text
        ) from None
    if not _MIN_MS <= result <= _MAX_MS:
        raise TimeFormatError(
            f"bad time {_shown(text)}: out of range (years 1 to 9999)", text=text
        )
    return result


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short if it is long."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def _parse(text: str, *, now_ms: int, tz: tzinfo) -> int:
    if len(text) > _MAX_TEXT:
        raise ValueError(f"longer than {_MAX_TEXT} characters")
    stripped = text.strip()
    if _ISO.match(stripped):
        moment = datetime.fromisoformat(stripped)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        return round(moment.timestamp() * 1000)
    value = stripped.lower().replace("_", "").replace(",", "").replace(" ", "")
    if not value:
        raise ValueError("empty")
    if _EPOCH.match(value) and not _is_yyyymmdd(value):
        return round(float(value) * 1000)
    if "+" in value:
        reference, sign, offset = value.partition("+")
    else:
        reference, sign, offset = value.partition("-")
    return _reference_ms(reference, now_ms=now_ms, tz=tz) + _offset_ms(sign + offset)


def _is_yyyymmdd(value: str) -> bool:
    """Eight digits that are a date after 1900 are ``YYYYMMDD`` (graphite-web).

    Unlike graphite-web, which then fails on ``20231131``, digits that are not
    a real date stay epoch seconds, as our CLI always read them.
    """
    if len(value) != 8 or not value.isdigit() or int(value[:4]) <= 1900:
        return False
    try:
        datetime(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return False
    return True


def _reference_ms(reference: str, *, now_ms: int, tz: tzinfo) -> int:
    """The instant a graphite-web time reference (``noon``, ``20240101``) names."""
    if reference in ("", "now"):
        return now_ms
    now = datetime.fromtimestamp(now_ms / 1000, tz=tz)
    ref = reference
    hour, minute = 0, 0
    colon = ref.find(":")
    if 0 < colon < 3:
        hour = int(ref[:colon])
        minute = int(ref[colon + 1 : colon + 3])
        ref = ref[colon + 3 :]
        if ref[:2] == "am":
            ref = ref[2:]
        elif ref[:2] == "pm":
            hour = (hour + 12) % 24
            ref = ref[2:]
    meridiem = ref.find("am")
    if 0 < meridiem < 3:
        hour = int(ref[:meridiem])
        ref = ref[meridiem + 2 :]
    meridiem = ref.find("pm")
    if 0 < meridiem < 3:
        hour = (int(ref[:meridiem]) + 12) % 24
        ref = ref[meridiem + 2 :]
    for word, word_hour in (("noon", 12), ("midnight", 0), ("teatime", 16)):
        if ref.startswith(word):
            hour, minute = word_hour, 0
            ref = ref[len(word) :]
            break
    day = now.replace(tzinfo=None, hour=hour, minute=minute, second=0, microsecond=0)
    day = _day_reference(ref, day, reference)
    return round(day.replace(tzinfo=tz).timestamp() * 1000)


def _day_reference(ref: str, day: datetime, reference: str) -> datetime:
    """``day`` moved to the date ``ref`` names (keeping its hour and minute)."""
    if ref == "" or ref == "today":
        return day
    if ref == "yesterday":
        return day - timedelta(days=1)
    if ref == "tomorrow":
        return day + timedelta(days=1)
    if ref.count("/") == 2:
        month, dom, year = (int(part) for part in ref.split("/"))
        if year < 1900:
            year += 1900
        if year < 1970:
            year += 100
        return day.replace(year=year, month=month, day=dom)
    if len(ref) == 8 and ref.isdigit():
        return day.replace(year=int(ref[:4]), month=int(ref[4:6]), day=int(ref[6:]))
    if ref[:3] in _MONTHS:
        digits = ref[-2:] if ref[-2:].isdigit() else ref[-1:]
        if not digits.isdigit():
            raise ValueError("day of month required after month name")
        return day.replace(month=_MONTHS.index(ref[:3]) + 1, day=int(digits))
    if ref[:3] in _WEEKDAYS:
        back = (day.weekday() - _WEEKDAYS.index(ref[:3])) % 7
        return day - timedelta(days=back)
    raise ValueError(f"unknown day reference {reference!r}")
