"""Tests of statsyard.graphite.protocol: Carbon plaintext lines to DataPoints."""

from __future__ import annotations

from typing import Any

import pytest

from statsyard.datapoint import DataPoint, Valid, validate
from statsyard.graphite.protocol import (
    REASONS,
    GraphiteParser,
    LineStream,
    Reject,
    parse_lines,
)

NOW = 1_750_000_000_000


def parse(data: bytes, **kwargs: Any) -> tuple[list[DataPoint], list[Reject], bytes]:
    """Parse, and lift the parser's rows into DataPoints for readable assertions."""
    rows, rejects, remainder = GraphiteParser().parse_lines(
        data,
        now_ms=NOW,
        **kwargs,
    )
    return [DataPoint(*row) for row in rows], rejects, remainder


def test_the_parser_emits_plain_rows() -> None:
    """Rows (metric, entity, value, timestamp) are what the pipeline carries."""
    rows, _, _ = GraphiteParser().parse_lines(b"a.b 2 1700000000\n", now_ms=NOW)
    assert rows == [("a.b", "graphite", 2.0, 1_700_000_000_000)]
    assert type(rows[0]) is tuple


def test_plain_lines_become_points_with_the_default_entity() -> None:
    """Integer and decimal values and timestamps, tabs and CRLF are all understood."""
    points, rejects, remainder = parse(
        b"cpu.load 1.5 1700000000\nmem.used\t42  1700000001.25\r\nx -3e2 1700000002\n"
    )
    assert rejects == []
    assert remainder == b""
    assert points == [
        DataPoint("cpu.load", "graphite", 1.5, 1_700_000_000_000),
        DataPoint("mem.used", "graphite", 42.0, 1_700_000_001_250),
        DataPoint("x", "graphite", -300.0, 1_700_000_002_000),
    ]
    assert all(type(point.value) is float for point in points)


def test_minus_one_and_n_mean_now() -> None:
    """Carbon's -1 and N timestamps take the receive time."""
    points, _, _ = parse(b"a 1 -1\nb 2 N\n")
    assert [p.timestamp for p in points] == [NOW, NOW]


def test_decimal_timestamps_round_to_the_nearest_millisecond() -> None:
    """0.0015 s rounds to 2 ms rather than being truncated by float error."""
    points, _, _ = parse(b"a 1 1700000000.0015\nb 1 1700000000.123\n")
    assert [p.timestamp for p in points] == [1_700_000_000_002, 1_700_000_000_123]


def test_entity_tag_sets_the_entity_and_other_tags_stay_sorted_in_the_name() -> None:
    """path;tags: entity is taken out; the rest is Graphite's canonical sorted form."""
    points, rejects, _ = parse(
        b"cpu;host=a;dc=x;entity=web01 1 1700000000\n"
        b"cpu;dc=x;host=a 2 1700000000\n"
        b"cpu;entity=db;entity=web02 3 1700000000\n"
    )
    assert rejects == []
    assert [(p.metric, p.entity) for p in points] == [
        ("cpu;dc=x;host=a", "web01"),
        ("cpu;dc=x;host=a", "graphite"),
        ("cpu", "web02"),
    ]


def test_default_entity_is_configurable_and_checked() -> None:
    """The default entity is used for untagged paths; a bad one is refused up front."""
    points, _, _ = GraphiteParser(default_entity="edge-7").parse_lines(
        b"a 1 1700000000\n"
    )
    assert points[0][1] == "edge-7"
    with pytest.raises(ValueError, match="default_entity"):
        GraphiteParser(default_entity="two words")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"a 1", "fields"),
        (b"a 1 1700000000 extra", "fields"),
        (b"a one 1700000000", "value"),
        (b"a nan 1700000000", "not_finite"),
        (b"a -inf 1700000000", "not_finite"),
        (b"a 1 yesterday", "timestamp"),
        (b"a 1 -5", "timestamp"),
        (b"a 1 1700000000000", "timestamp"),
        (b"a 1 99", "timestamp"),
        (b"a 1 inf", "timestamp"),
        (b"a\xff 1 1700000000", "utf8"),
        (b"a;host 1 1700000000", "tags"),
        (b"a;=x 1 1700000000", "tags"),
        (b";host=x 1 1700000000", "tags"),
        (b"a\x01b 1 1700000000", "name"),
        (b"a;entity=" + b"e" * 300 + b" 1 1700000000", "name"),
        (b"m" * 300 + b" 1 1700000000", "name"),
    ],
)
def test_each_bad_line_is_rejected_with_its_reason(line: bytes, reason: str) -> None:
    """A bad line is reported with a known reason and does not stop the next line."""
    points, rejects, _ = parse(b"good 1 1700000000\n" + line + b"\nnext 2 1700000000\n")
    assert [p.metric for p in points] == ["good", "next"]
    assert rejects == [Reject(reason, line[:120])]
    assert reason in REASONS
    assert rejects[0].description == REASONS[reason]


def test_lines_over_the_maximum_length_are_rejected() -> None:
    """max_line_length counts bytes, not characters."""
    parser = GraphiteParser(max_line_length=64)
    ok = b"a" * 51 + b" 1 1700000000"  # 64 bytes
    long_ascii = b"a" * 52 + b" 1 1700000000"  # 65 bytes
    long_utf8 = "é".encode() * 26 + b" 1 1700000000"  # 39 characters, 65 bytes
    points, rejects, _ = parser.parse_lines(
        b"\n".join([ok, long_ascii, long_utf8]) + b"\n"
    )
    assert len(points) == 1
    assert [r.reason for r in rejects] == ["too_long", "too_long"]


def test_non_ascii_batches_keep_good_lines_around_bad_utf8() -> None:
    """Valid UTF-8 names are accepted; only the undecodable line is rejected."""
    points, rejects, _ = parse(
        "temp.café 1 1700000000\n".encode() + b"x\xc3 2 1700000000\nz 3 1700000000\n"
    )
    assert [p.metric for p in points] == ["temp.café", "z"]
    assert [r.reason for r in rejects] == ["utf8"]


def test_blank_lines_are_skipped_silently() -> None:
    """Empty and whitespace-only lines are neither points nor rejects."""
    points, rejects, _ = parse(b"\n  \r\na 1 1700000000\n\n")
    assert len(points) == 1
    assert rejects == []


def test_the_partial_last_line_is_returned_unless_final() -> None:
    """A stream keeps the partial line; a datagram (final) parses it."""
    points, _, remainder = parse(b"a 1 1700000000\nb 2 17")
    assert [p.metric for p in points] == ["a"]
    assert remainder == b"b 2 17"
    points, _, remainder = parse(b"a 1 1700000000\nb 2 1700000000", final=True)
    assert [p.metric for p in points] == ["a", "b"]
    assert remainder == b""
    assert parse(b"no newline yet") == ([], [], b"no newline yet")


def test_every_parsed_point_passes_validation() -> None:
    """What the parser accepts, the pipeline's validation accepts too."""
    points, _, _ = parse(b"a.b;entity=e;k=v 1 1700000000\nc -0.5 N\n")
    assert all(isinstance(validate(p), Valid) for p in points)


def test_line_stream_joins_chunks_split_anywhere() -> None:
    """Feeding a stream byte by byte gives the same points as one chunk."""
    data = b"a 1 1700000000\nb;entity=x 2 1700000001\nbad\nc 3 1700000002\n"
    stream = LineStream(GraphiteParser())
    points: list[DataPoint] = []
    rejects: list[Reject] = []
    for index in range(len(data)):
        more, bad = stream.feed(data[index : index + 1])
        points.extend(DataPoint(*row) for row in more)
        rejects.extend(bad)
    assert [p.metric for p in points] == ["a", "b", "c"]
    assert [r.reason for r in rejects] == ["fields"]
    assert stream.close() is None


def test_line_stream_reports_the_partial_line_lost_at_close() -> None:
    """A connection closed mid-line loses only that line, reported as partial."""
    stream = LineStream(GraphiteParser())
    points, _ = stream.feed(b"a 1 1700000000\nb 2 170")
    assert len(points) == 1
    assert stream.close() == Reject("partial", b"b 2 170")


def test_line_stream_skips_an_overlong_line_without_buffering_it() -> None:
    """A line that outgrows the limit is rejected once and skipped to its newline."""
    stream = LineStream(GraphiteParser(max_line_length=64))
    _, rejects = stream.feed(b"x" * 50)
    assert rejects == []
    _, rejects = stream.feed(b"y" * 50)
    assert [r.reason for r in rejects] == ["too_long"]
    _, rejects = stream.feed(b"z" * 10_000)
    assert rejects == []
    points, rejects = stream.feed(b"zz\nok 1 1700000000\n")
    assert [p[0] for p in points] == ["ok"]
    assert rejects == []
    assert stream.close() is None


def test_module_level_parse_lines_uses_the_given_settings() -> None:
    """The convenience function honours default_entity and max_line_length."""
    points, rejects, remainder = parse_lines(
        b"a 1 1700000000\n" + b"b" * 70 + b" 1 1\n",
        default_entity="dflt",
        max_line_length=64,
    )
    assert points == [("a", "dflt", 1.0, 1_700_000_000_000)]
    assert [r.reason for r in rejects] == ["too_long"]
    assert remainder == b""


def test_new_paths_after_many_distinct_ones_still_parse() -> None:
    """The bounded path cache does not change results when it is cleared."""
    parser = GraphiteParser()
    data = b"".join(b"m%d 1 1700000000\n" % i for i in range(100_005))
    points, rejects, _ = parser.parse_lines(data)
    assert len(points) == 100_005
    assert rejects == []
    assert points[-1][0] == "m100004"
