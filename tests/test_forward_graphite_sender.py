"""Graphite plaintext lines: paths per entity_as, timestamps in seconds."""

from __future__ import annotations

from array import array

from statsyard.forward.graphite_sender import (
    GraphiteSender,
    graphite_path,
    graphite_timestamp,
)
from statsyard.forward.log_reader import Piece
from statsyard.forward.settings import ForwardSettings


def test_paths_carry_the_entity_as_configured() -> None:
    """tag, prefix, suffix or drop; tag values lose ; and ~."""
    assert (
        graphite_path("cpu.load", "web-1", "tag", "entity") == "cpu.load;entity=web-1"
    )
    assert graphite_path("cpu.load", "a;b~c", "tag", "host") == "cpu.load;host=a_b_c"
    assert graphite_path("cpu.load", "web-1", "prefix", "entity") == "web-1.cpu.load"
    assert graphite_path("cpu.load", "web-1", "suffix", "entity") == "cpu.load.web-1"
    assert graphite_path("cpu.load", "web-1", "drop", "entity") == "cpu.load"


def test_timestamps_are_seconds_fractional_only_when_needed() -> None:
    """Whole seconds print as integers; milliseconds as three decimals."""
    assert graphite_timestamp(1_700_000_000_000) == "1700000000"
    assert graphite_timestamp(1_700_000_000_005) == "1700000000.005"
    assert graphite_timestamp(1_700_000_000_250) == "1700000000.250"


def test_lines_keep_log_order_and_value_types() -> None:
    """One line per point, in order; ints stay ints, floats keep their repr."""
    sender = GraphiteSender(
        ForwardSettings(name="g", kind="graphite", address="127.0.0.1:1")
    )
    piece = Piece(
        {0: ("a.b", "x"), 1: ("c", "y")},
        [1, 0, 1],
        array("q", [3000, 1000, 2500]),
        [7, 0.1, -2.5],
    )
    assert sender.lines([piece]) == (
        b"c;entity=y 7 3\na.b;entity=x 0.1 1\nc;entity=y -2.5 2.500\n"
    )
