"""Prometheus remote write 1.0: the ``WriteRequest`` protobuf, snappy-compressed.

The message types are those of Prometheus' ``prompb/remote.proto`` and
``prompb/types.proto`` (same package, names, field numbers and types), built
at run time with ``google.protobuf``'s descriptor API, so no ``protoc`` step
and no generated code to keep in step: the ``protobuf`` package (upb, C)
encodes them. Only the fields remote write 1.0 senders fill are declared
(``timeseries``; ``labels``; ``samples``): the others are optional and absent
on the wire either way. The body is compressed with snappy's *block* format
(``cramjam.snappy.compress_raw``), as the protocol requires.

Labels of a point ``(metric, entity)``: ``__name__`` is the metric made a
valid Prometheus name (every character outside ``[a-zA-Z0-9_:]``, and a
leading digit, becomes ``_``), the entity goes into the
configured entity label, then ``extra_labels``; sorted by name, as the
protocol asks. Samples of each series are sorted by timestamp.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, Final

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from statsyard.forward.log_reader import Piece

__all__ = [
    "CONTENT_HEADERS",
    "RemoteWriteEncoder",
    "WriteRequest",
    "sanitize_metric_name",
]

CONTENT_HEADERS: Final = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
"""The headers of every remote write 1.0 request."""

_INVALID: Final = re.compile(r"[^a-zA-Z0-9_:]")
SLICE: Final = 256
"""Samples encoded between two chances for other threads to take the GIL."""
breathe: Final = time.sleep
"""``breathe(0)`` lets a thread waiting for the GIL (ingest) run at once."""
_CACHE_LIMIT: Final = 100_000


def _build_messages() -> dict[str, Any]:
    """The ``prometheus.*`` message classes, from a descriptor built here."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="statsyard/prometheus_remote_write.proto",
        package="prometheus",
        syntax="proto3",
    )

    def message(name: str, fields: Sequence[tuple[str, int, int, str]]) -> None:
        described = proto.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            repeated = kind == field.TYPE_MESSAGE
            entry = described.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL,
            )
            if type_name:
                entry.type_name = type_name

    message(
        "Label",
        [("name", 1, field.TYPE_STRING, ""), ("value", 2, field.TYPE_STRING, "")],
    )
    message(
        "Sample",
        [("value", 1, field.TYPE_DOUBLE, ""), ("timestamp", 2, field.TYPE_INT64, "")],
    )
    message(
        "TimeSeries",
        [
            ("labels", 1, field.TYPE_MESSAGE, ".prometheus.Label"),
            ("samples", 2, field.TYPE_MESSAGE, ".prometheus.Sample"),
        ],
    )
    message(
        "WriteRequest",
        [("timeseries", 1, field.TYPE_MESSAGE, ".prometheus.TimeSeries")],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return dict(message_factory.GetMessages([proto], pool=pool))


_MESSAGES: Final = _build_messages()
WriteRequest: Final[Any] = _MESSAGES["prometheus.WriteRequest"]
"""The ``prometheus.WriteRequest`` message class (also for decoding, in tests)."""
_TimeSeries: Final[Any] = _MESSAGES["prometheus.TimeSeries"]


def sanitize_metric_name(metric: str) -> str:
    """``metric`` as a valid Prometheus metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``)."""
    name = _INVALID.sub("_", metric)
    if not name:
        return "_"
    return "_" + name[1:] if name[0].isdigit() else name


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float64
        return math.inf if value > 0 else -math.inf


def _utf8(text: str) -> str:
    """``text`` with anything that is not valid UTF-8 (lone surrogates) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


class RemoteWriteEncoder:
    """Turns chunks of points into compressed ``WriteRequest`` bodies.

    Args:
        entity_label: the label carrying the entity.
        extra_labels: labels added to every series.
    """

    def __init__(
        self, *, entity_label: str = "entity", extra_labels: Mapping[str, str] = {}
    ) -> None:
        self._entity_label = entity_label
        self._extra = [(k, _utf8(v)) for k, v in extra_labels.items()]
        self._extra_bytes = sum(len(k) + len(v) + 6 for k, v in self._extra)
        self._templates: dict[tuple[str, str], Any] = {}

    def labels(self, metric: str, entity: str) -> list[tuple[str, str]]:
        """The sorted label pairs of series ``(metric, entity)``."""
        return sorted(
            [
                ("__name__", sanitize_metric_name(metric)),
                (self._entity_label, _utf8(entity)),
                *self._extra,
            ]
        )

    def _template(self, key: tuple[str, str]) -> Any:
        """A ``TimeSeries`` holding just the series' labels (merged in: one C call)."""
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= _CACHE_LIMIT:
                self._templates.clear()
            template = self._templates[key] = _TimeSeries()
            add_label = template.labels.add
            for name, value in self.labels(*key):
                add_label(name=name, value=value)
        return template

    def cost(self, metric: str, entity: str) -> tuple[int, int]:
        """Upper bounds of the request bytes of a sample and of a series' labels."""
        return 22, 3 * len(metric) + 3 * len(entity) + 40 + self._extra_bytes

    def encode(self, pieces: Sequence[Piece]) -> bytes:
        """One snappy-compressed ``WriteRequest`` holding every point of ``pieces``."""
        groups: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        for piece in pieces:
            keys = piece.keys
            local: dict[int, tuple[list[int], list[float]]] = {}
            for number in set(piece.numbers):
                key = keys[number]
                group = groups.get(key)
                if group is None:
                    group = groups[key] = ([], [])
                local[number] = group
            numbers, timestamps, all_values = (
                piece.numbers,
                piece.timestamps,
                piece.values,
            )
            for low in range(0, len(numbers), SLICE):
                high = low + SLICE
                for number, timestamp, value in zip(
                    numbers[low:high],
                    timestamps[low:high],
                    all_values[low:high],
                    strict=True,
                ):
                    stamps, values = local[number]
                    stamps.append(timestamp)
                    values.append(value)
                breathe(0)
        request = WriteRequest()
        add_series = request.timeseries.add
        budget = SLICE
        for key, (stamps, values) in groups.items():
            budget -= len(stamps) + 4
            if budget <= 0:
                breathe(0)
                budget = SLICE
            series = add_series()
            series.MergeFrom(self._template(key))
            pairs: Any = zip(stamps, values, strict=True)
            if any(b < a for a, b in pairwise(stamps)):
                pairs = sorted(pairs, key=lambda pair: pair[0])  # stable
            add_sample = series.samples.add
            try:
                for timestamp, value in pairs:
                    add_sample(value=value, timestamp=timestamp)
            except (TypeError, OverflowError):  # an int beyond float64: rare
                del series.samples[:]
                for timestamp, value in sorted(
                    zip(stamps, values, strict=True), key=lambda pair: pair[0]
                ):
                    add_sample(value=_as_float(value), timestamp=timestamp)
        return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
