"""Tests of statsyard.testing: the DogStatsD parser and capture socket."""

from __future__ import annotations

import re
import socket

import pytest

from statsyard.testing import DogStatsdCapture, StatsdLine, parse_dogstatsd


def test_parse_several_lines_with_rates_tags_and_extensions() -> None:
    """Every metric line of a datagram becomes a record; extensions are ignored."""
    datagram = (
        b"yard.queue.size:12|g|#env:prod,child:writer\n"
        b"yard.hits:3|c|@0.5\n"
        b"_e{5,4}:title|text\n"
        b"yard.lat:1.5:2.5|d|#solo|c:abc123|T1700000000\n"
    )
    assert parse_dogstatsd(datagram) == [
        StatsdLine("yard.queue.size", 12.0, "g", ("env:prod", "child:writer")),
        StatsdLine("yard.hits", 3.0, "c", (), 0.5),
        StatsdLine("yard.lat", 1.5, "d", ("solo",)),
        StatsdLine("yard.lat", 2.5, "d", ("solo",)),
    ]
    assert parse_dogstatsd(datagram)[0].tag_map == {"env": "prod", "child": "writer"}
    assert parse_dogstatsd(datagram)[2].tag_map == {"solo": ""}


@pytest.mark.parametrize("bad", [b"no_value|g", b"name:|g", b"name:1", b"name:x|g"])
def test_parse_rejects_malformed_lines_quoting_them(bad: bytes) -> None:
    """A malformed line is a ValueError that shows the line."""
    with pytest.raises(ValueError, match=re.escape(repr(bad.decode()))):
        parse_dogstatsd(bad)


def test_capture_waits_on_the_socket_and_times_out_with_a_summary() -> None:
    """wait_for returns once the predicate holds, or raises TimeoutError."""
    with DogStatsdCapture() as capture:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sender.sendto(b"a:1|g\nb:2|g", (capture.host, capture.port))
            lines = capture.wait_for(lambda lines: len(lines) == 2, timeout=5)
        finally:
            sender.close()
        assert [line.name for line in lines] == ["a", "b"]
        assert capture.values("b") == [2.0]
        assert capture.datagrams == [b"a:1|g\nb:2|g"]
        capture.clear()
        with pytest.raises(TimeoutError, match="0 lines received"):
            capture.wait_for(lambda lines: bool(lines), timeout=0.05)
