"""statsyard.render.resolution: steps by schema, whisper's alignment, slot values."""

from __future__ import annotations

import os
import tempfile

import pytest
import whisper
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.exceptions import BadArgumentError
from statsyard.render import RenderSettings, SchemaRule, parse_step
from statsyard.render.resolution import Slots, bucket, slots
from tests._render_helpers import B, MemorySource, render


def test_first_matching_schema_rule_gives_the_step() -> None:
    """Rules are regexes searched in the metric name; first match wins; else 60 s."""
    settings_ = RenderSettings(
        schema=(SchemaRule(r"^carbon\.", 10), SchemaRule("cpu", 30), SchemaRule(".", 5))
    )
    assert settings_.step_for("carbon.cpu") == 10
    assert settings_.step_for("host.cpu.idle") == 30
    assert settings_.step_for("x") == 5
    assert RenderSettings().step_for("anything") == 60
    assert RenderSettings(default_step=120).step_for("anything") == 120


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m", 60), ("5min", 300), ("1h", 3600), ("1d", 86400), (60, 60)],
)
def test_steps_read_as_carbon_writes_them(text: str | int, seconds: int) -> None:
    """Steps are carbon retention units or an int of seconds."""
    assert parse_step(text) == seconds


@pytest.mark.parametrize("text", ["0", 0, -5, "1x", "-1m", "abc", "500ms", "", "1h1x"])
def test_bad_steps_are_clear_errors(text: str | int) -> None:
    """Zero, negative, unknown units and fractions of a second are refused."""
    with pytest.raises(BadArgumentError, match="bad duration"):
        parse_step(text)


@pytest.mark.parametrize(
    ("from_s", "until_s", "now_s", "step", "expected"),
    [
        # fromInterval = from - from % step + step; untilInterval likewise.
        (0, 600, 10_000, 60, Slots(60, 660, 60)),
        (59, 601, 10_000, 60, Slots(60, 660, 60)),
        (60, 660, 10_000, 60, Slots(120, 720, 60)),
        (61, 119, 10_000, 60, Slots(120, 180, 60)),
        # An equal pair of intervals still gives one slot.
        (61, 62, 10_000, 60, Slots(120, 180, 60)),
        # until is clamped to now.
        (0, 10_000, 300, 60, Slots(60, 360, 60)),
        (100, 200, 1000, 7, Slots(105, 203, 7)),
    ],
)
def test_slots_align_as_whisper_fetch(
    from_s: int, until_s: int, now_s: int, step: int, expected: Slots
) -> None:
    """The fetched range matches whisper's __archive_fetch arithmetic."""
    assert slots(from_s, until_s, now_s, step) == expected


def test_a_range_after_now_has_no_slots_and_a_reversed_one_is_an_error() -> None:
    """from > now: nothing (whisper returns None); from > until: an error."""
    assert slots(2000, 3000, 1000, 60) is None
    with pytest.raises(BadArgumentError, match="after until"):
        slots(3000, 2000, 5000, 60)


def test_the_last_point_of_a_slot_wins_and_empty_slots_are_none() -> None:
    """A point belongs to the slot of its whole second; later points overwrite."""
    window = Slots(60, 240, 60)
    points = [(60_000, 1), (119_999, 2), (120_000, 3), (125_500, 4), (500_000, 9)]
    timestamps, values = zip(*points, strict=True)
    assert bucket(timestamps, values, window) == [2.0, 4.0, None]


def test_out_of_range_and_missing_series_read_nothing() -> None:
    """A range after now renders no series, as graphite-web over whisper."""
    assert (
        render("a", {"a": [1.0]}, start=B + 10_000, end=B + 20_000, now=B + 5000) == []
    )


@settings(max_examples=60, deadline=None)
@given(
    step=st.sampled_from([1, 7, 10, 60]),
    offsets=st.lists(
        st.tuples(st.integers(min_value=0, max_value=5000), st.floats(-1e6, 1e6)),
        max_size=40,
    ),
    from_back=st.integers(min_value=1, max_value=5000),
    span=st.integers(min_value=1, max_value=6000),
    now_jitter=st.integers(min_value=0, max_value=59),
)
def test_values_and_timestamps_match_real_whisper(
    step: int,
    offsets: list[tuple[int, float]],
    from_back: int,
    span: int,
    now_jitter: int,
) -> None:
    """The same points, schema and times give whisper's own fetch result."""
    now = B + 10_000 + now_jitter
    points = sorted((now - back, value) for back, value in offsets)
    from_s = now - from_back
    until_s = from_s + span
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "m.wsp")
        whisper.create(path, [(step, 20_000 // step + 10)])
        for timestamp, value in points:
            whisper.update(path, value, timestamp, now=now)
        (w_start, w_end, w_step), w_values = whisper.fetch(
            path, from_s, until_s, now=now
        )
    source = MemorySource({("m", "graphite"): [(t * 1000, v) for t, v in points]})
    window = slots(from_s, until_s, now, step)
    assert window is not None
    assert (window.start, window.end, window.step) == (w_start, w_end, w_step)
    fetched = source.fetch("m", "graphite", window.start * 1000, window.end * 1000)
    assert bucket(*fetched, window) == w_values
