"""Remote write encoding: WriteRequest protobuf + snappy, labels, sample order."""

from __future__ import annotations

import re
from array import array

import cramjam
from hypothesis import given
from hypothesis import strategies as st

from statsyard.forward.log_reader import Piece
from statsyard.forward.remote_write import (
    RemoteWriteEncoder,
    WriteRequest,
    sanitize_metric_name,
)

VALID_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def decode(body: bytes) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return {
        tuple((label.name, label.value) for label in series.labels): [
            (sample.timestamp, sample.value) for sample in series.samples
        ]
        for series in request.timeseries
    }


@given(st.text(min_size=1, max_size=30))
def test_a_sanitised_name_is_valid_and_keeps_valid_characters(metric: str) -> None:
    """Every character outside [a-zA-Z0-9_:], and a leading digit, becomes _."""
    name = sanitize_metric_name(metric)
    assert VALID_NAME.fullmatch(name)
    assert len(name) == len(metric)
    for given_char, kept in zip(metric[1:], name[1:], strict=True):
        assert kept == (
            given_char if re.fullmatch(r"[a-zA-Z0-9_:]", given_char) else "_"
        )


def test_sanitising_examples() -> None:
    """Dots and dashes become underscores; colons stay."""
    assert sanitize_metric_name("web.requests-total") == "web_requests_total"
    assert sanitize_metric_name("9lives:count") == "_lives:count"
    assert sanitize_metric_name("ok_name:sub") == "ok_name:sub"


points = st.lists(
    st.tuples(
        st.sampled_from([("cpu.load", "web-1"), ("cpu.load", "web-2"), ("m", "e")]),
        st.integers(0, 2**40),
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**53), 2**53),
        ),
    ),
    min_size=1,
    max_size=60,
)


@given(points, st.integers(1, 10))
def test_every_point_arrives_in_its_series_sorted_by_timestamp(
    rows: list[tuple[tuple[str, str], int, float]], cut: int
) -> None:
    """Samples are grouped by series, each series sorted by time (stably)."""
    numbers = {key: n for n, key in enumerate(sorted({key for key, _t, _v in rows}))}
    keys = {n: key for key, n in numbers.items()}
    pieces = [
        Piece(
            keys,
            [numbers[key] for key, _t, _v in part],
            array("q", [t for _k, t, _v in part]),
            [v for _k, _t, v in part],
        )
        for part in (rows[:cut], rows[cut:])
        if part
    ]
    encoder = RemoteWriteEncoder(entity_label="instance", extra_labels={"job": "j"})
    got = decode(encoder.encode(pieces))
    expected: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for (metric, entity), ts, value in rows:
        labels = (
            ("__name__", sanitize_metric_name(metric)),
            ("instance", entity),
            ("job", "j"),
        )
        expected.setdefault(labels, []).append((ts, float(value)))
    assert got == {k: sorted(v, key=lambda p: p[0]) for k, v in expected.items()}


def test_labels_are_sorted_by_name_and_huge_ints_become_infinities() -> None:
    """Extra labels sort among the others; an int beyond float64 is +-inf."""
    encoder = RemoteWriteEncoder(extra_labels={"Zone": "eu", "zz": "1"})
    body = encoder.encode(
        [Piece({0: ("m", "e")}, [0, 0], array("q", [2, 1]), [10**400, -(10**400)])]
    )
    ((labels, samples),) = decode(body).items()
    assert [name for name, _ in labels] == ["Zone", "__name__", "entity", "zz"]
    assert samples == [(1, float("-inf")), (2, float("inf"))]
