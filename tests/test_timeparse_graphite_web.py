"""statsyard.timeparse against graphite-web's own parseATTime.

Thousands of generated time arguments (references such as ``noon``,
``14:30_20231114``, ``jan1``, ``monday``, ``6pm``, epoch seconds, each with
or without offsets such as ``-1h30min`` or ``+3mon``) go through Debian's
graphite-web ``parseATTime`` and ours: wherever graphite-web accepts one, we
must give the same instant. (We accept more: ISO 8601, ``-15m``, ``-500ms``,
fractional epochs.)
"""

from __future__ import annotations

import json
import random
import subprocess
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from statsyard.exceptions import TimeFormatError
from statsyard.timeparse import parse_time

SYSTEM_PYTHON = "/usr/bin/python3"
NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)

ORACLE = r"""
import json, sys
import pytz
from graphite.render.attime import parseATTime
job = json.load(sys.stdin)
zone = pytz.timezone(job["zone"])
now = pytz.utc.localize(__import__("datetime").datetime.utcfromtimestamp(job["now"]))
out = []
for text in job["texts"]:
    try:
        out.append(parseATTime(text, zone, now).timestamp())
    except Exception:
        out.append(None)
json.dump(out, sys.stdout)
"""


def _graphite(texts: list[str], zone: str) -> list[float | None]:
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", ORACLE],
        input=json.dumps({"texts": texts, "zone": zone, "now": NOW.timestamp()}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 and "No module named 'graphite'" in done.stderr:
        pytest.skip("needs Debian's graphite-web (apt-get install graphite-web)")
    assert done.returncode == 0, done.stderr[-2000:]
    instants: list[float | None] = json.loads(done.stdout)
    return instants


def _texts(count: int) -> list[str]:
    rng = random.Random(7)
    months = ["jan", "february", "mar", "apr", "may", "june", "jul", "aug", "sep"]
    days = ["monday", "tue", "wednesday", "thu", "fri", "saturday", "sun"]

    def reference() -> str:
        hour, minute = rng.randrange(24), rng.randrange(60)
        year, month, day = (
            rng.randrange(1995, 2030),
            rng.randrange(1, 13),
            rng.randrange(1, 29),
        )
        return rng.choice(
            [
                "",
                "now",
                "noon",
                "midnight",
                "teatime",
                "today",
                "yesterday",
                "tomorrow",
                f"{hour:02d}:{minute:02d}_{year}{month:02d}{day:02d}",
                f"{year}{month:02d}{day:02d}",
                f"{hour % 12 + 1}am",
                f"{hour % 12 + 1}pm",
                f"{hour % 12 + 1}:{minute:02d}pm",
                f"{month}/{day}/{year % 100:02d}",
                f"{month}/{day}/{year}",
                f"{rng.choice(months)}{day}",
                rng.choice(days),
                f"midnight {rng.choice(['yesterday', 'tomorrow', 'today'])}",
                f"noon_{year}{month:02d}{day:02d}",
                str(rng.randrange(10**9, 2 * 10**9)),
            ]
        )

    def offset() -> str:
        units = [
            "s",
            "sec",
            "seconds",
            "min",
            "minutes",
            "h",
            "hours",
            "d",
            "days",
            "w",
            "weeks",
            "mon",
            "months",
            "y",
            "years",
        ]
        parts = "".join(
            f"{rng.randrange(0, 100)}{rng.choice(units)}"
            for _ in range(rng.randrange(1, 3))
        )
        return rng.choice(["", "", "-", "+"]) + parts if rng.random() < 0.7 else ""

    out = []
    for _ in range(count):
        text = reference() + offset()
        out.append(text if text else "-1h")
    return out


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo"])
def test_every_form_graphite_web_accepts_means_the_same_instant(zone: str) -> None:
    """Same instant (ms) as graphite-web for every argument it accepts."""
    texts = _texts(3000)
    expected = _graphite(texts, zone)
    now_ms = round(NOW.timestamp() * 1000)
    accepted = 0
    for text, seconds in zip(texts, expected, strict=True):
        if seconds is None:
            continue
        accepted += 1
        try:
            ours = parse_time(text, now_ms=now_ms, tz=ZoneInfo(zone))
        except TimeFormatError as error:
            pytest.fail(
                f"graphite-web accepts {text!r} ({seconds}), we refuse: {error}"
            )
        assert ours == round(seconds * 1000), text
    assert accepted > 1500  # enough of each form to mean something
