"""Carbon's plaintext protocol: ``<metric path> <value> <timestamp>\\n``, parsed fast.

Rules (a superset of carbon-cache 1.1's line receiver):

- Fields are separated by runs of spaces or tabs; a trailing ``\\r`` is
  ignored; blank lines are skipped without counting.
- **Value**: any number Python's ``float()`` reads (``42``, ``-1.5``,
  ``1e3``); stored as a float, as Graphite does. ``nan`` and ``inf`` are
  rejected.
- **Timestamp**: Unix seconds, integer or decimal, converted to milliseconds
  (decimals rounded to the nearest ms); ``-1`` or ``N`` means "now" (one
  clock reading per received batch). It must fall in the range
  :func:`statsyard.validate` accepts (2000-01-01 to 2100-01-01).
- **Graphite tags**: ``path;tag=value;...``. The ``entity`` tag (the
  configured ``entity_tag``) becomes the point's entity; without it a
  matching template rule (:mod:`statsyard.graphite.templates`) may take the
  entity from the path, else the configured default entity is used. The
  other tags stay part of the series name, sorted by tag name, in Graphite's
  own canonical form: ``cpu;host=a;dc=x`` and ``cpu;dc=x;host=a`` both become
  metric ``cpu;dc=x;host=a``. So two series that differ only by a tag stay
  two series (nothing is merged or silently dropped), and a query names the
  series exactly as Graphite would print it. Tag names and values must be
  non-empty; when a tag repeats, the last one wins (as in carbon).
- Names must pass :func:`statsyard.validate`'s rules (non-empty, at most
  255 characters, no whitespace or unprintable characters); a line breaking
  them is rejected here, with the line, rather than later in the pipeline.

A rejected line is returned as a :class:`Reject` with one of the
:data:`REASONS`; parsing goes on with the next line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final, cast

import attrs

from statsyard.datapoint import (
    MAX_NAME_LENGTH,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    Row,
    forbidden_char_index,
)
from statsyard.datapoint import now_ms as current_ms
from statsyard.graphite.templates import compile_templates

__all__ = [
    "REASONS",
    "GraphiteParser",
    "LineStream",
    "Reject",
    "parse_lines",
]

FIELDS: Final = "fields"
VALUE: Final = "value"
NOT_FINITE: Final = "not_finite"
TIMESTAMP: Final = "timestamp"
TOO_LONG: Final = "too_long"
UTF8: Final = "utf8"
TAGS: Final = "tags"
NAME: Final = "name"
PARTIAL: Final = "partial"

REASONS: Final[dict[str, str]] = {
    FIELDS: "expected 3 fields '<metric path> <value> <timestamp>'",
    VALUE: "value is not a number",
    NOT_FINITE: "value must be finite, not nan or inf",
    TIMESTAMP: "timestamp must be Unix seconds in 2000..2100, -1 or N",
    TOO_LONG: "line longer than the maximum line length",
    UTF8: "line is not valid UTF-8",
    TAGS: "malformed tags: expected path;name=value;...",
    NAME: "metric or entity name is empty, too long or has control characters",
    PARTIAL: "connection closed in the middle of a line",
}
"""Every reason a line can be rejected for, with its description."""

_EXCERPT: Final = 120
_CACHE_LIMIT: Final = 100_000
_MAX_SECONDS: Final = MAX_TIMESTAMP_MS // 1000
_INF: Final = math.inf


@attrs.frozen(slots=True)
class Reject:
    """A line that was not accepted.

    Attributes:
        reason: a key of :data:`REASONS`.
        line: the start of the offending line (at most 120 bytes).
    """

    reason: str
    line: bytes

    @property
    def description(self) -> str:
        """What the reason means, for logs."""
        return REASONS[self.reason]


def _bad_name(name: str) -> bool:
    """The rule of :func:`statsyard.datapoint.validate`, for a parsed name."""
    return (
        not name
        or len(name) > MAX_NAME_LENGTH
        or forbidden_char_index(name) is not None
    )


def _reject(reason: str, line: bytes | str) -> Reject:
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    return Reject(reason, raw[:_EXCERPT])


class GraphiteParser:
    """Turns plaintext lines into rows; keeps a cache of seen metric paths.

    A row is ``(metric, entity, value, timestamp)``, what the pipeline carries.

    One parser per connection or per thread (it is not thread-safe).

    Args:
        default_entity: the entity of points without an ``entity`` tag.
        max_line_length: the longest accepted line, in bytes, without its newline.
        entity_tag: the Graphite tag that becomes the entity.
        templates: ``"FILTER TEMPLATE"`` rules taking the entity from a plain
            path (:mod:`statsyard.graphite.templates`); an explicit tag wins.
    """

    def __init__(
        self,
        *,
        default_entity: str = "graphite",
        max_line_length: int = 4096,
        entity_tag: str = "entity",
        templates: Sequence[str] = (),
    ) -> None:
        if _bad_name(default_entity):
            raise ValueError(
                "default_entity must be a non-empty printable name without "
                f"whitespace, at most {MAX_NAME_LENGTH} characters, "
                f"got {default_entity!r}"
            )
        self.default_entity = default_entity
        self.max_line_length = max_line_length
        self.entity_tag = entity_tag
        self._templates = compile_templates(templates)
        self._paths: dict[str, tuple[str, str]] = {}

    # -- name resolution (cache misses only) ------------------------------

    def _resolve(self, path: str) -> tuple[str, str] | str:
        """``(metric, entity)`` for a raw path, or the reason it is bad."""
        entity: str | None = None
        name = path
        found: dict[str, str] = {}
        if ";" in path:
            name, *tags = path.split(";")
            for tag in tags:
                key, sep, value = tag.partition("=")
                if not sep or not key or not value:
                    return TAGS
                found[key] = value
            entity = found.pop(self.entity_tag, None)
            if not name:
                return TAGS
        if self._templates:
            mapped = self._templates.resolve(name)
            if mapped is not None:
                name, from_path = mapped
                entity = entity or from_path or None
        if entity is None:
            entity = self.default_entity
        metric = name + "".join(f";{key}={found[key]}" for key in sorted(found))
        if _bad_name(metric) or _bad_name(entity):
            return NAME
        if len(self._paths) >= _CACHE_LIMIT:
            self._paths.clear()
        resolved = (metric, entity)
        self._paths[path] = resolved
        return resolved

    @staticmethod
    def _timestamp(text: str, now: int) -> int | None:
        """Milliseconds for a timestamp field, or None if it is bad."""
        if text.isdecimal():
            seconds = int(text)
            if seconds >= _MAX_SECONDS:
                return None
            ms = seconds * 1000
        elif text == "-1" or text == "N":
            return now
        else:
            try:
                number = float(text)
            except ValueError:
                return None
            if not 0 < number < _MAX_SECONDS:
                return None
            ms = round(number * 1000)
        if MIN_TIMESTAMP_MS <= ms < MAX_TIMESTAMP_MS:
            return ms
        return None

    # -- the hot path -----------------------------------------------------

    def parse_lines(
        self, buffer: bytes, *, final: bool = False, now_ms: int | None = None
    ) -> tuple[list[Row], list[Reject], bytes]:
        """Parse every complete line of ``buffer``.

        Args:
            buffer: received bytes; lines end with ``\\n``.
            final: treat a last line without a newline as complete (a UDP
                datagram); otherwise it is returned as the remainder.
            now_ms: the time used for ``-1``/``N`` timestamps (default: now).

        Returns:
            ``(points, rejects, remainder)``: the points of the good lines in
            order, the rejected lines, and the bytes after the last newline
            (the start of a line still to come; ``b""`` when ``final``).
        """
        if now_ms is None:
            now_ms = current_ms()
        cut = buffer.rfind(b"\n")
        if final or cut < 0:
            body, remainder = (buffer, b"") if final else (b"", buffer)
        else:
            body, remainder = buffer[:cut], buffer[cut + 1 :]
        if not body:
            return [], [], remainder
        if body.isascii():
            lines = body.decode("ascii").split("\n")
            points, rejects = self._parse_text(lines, now_ms)
        else:
            points, rejects = self._parse_mixed(body.split(b"\n"), now_ms)
        return points, rejects, remainder

    def _parse_mixed(
        self, raw_lines: list[bytes], now_ms: int
    ) -> tuple[list[Row], list[Reject]]:
        """Slow path for a batch with non-ASCII bytes: decode line by line."""
        points: list[Row] = []
        rejects: list[Reject] = []
        good: list[str] = []
        limit = self.max_line_length

        def flush_good() -> None:
            if good:
                more, bad = self._parse_text(good, now_ms)
                points.extend(more)
                rejects.extend(bad)
                good.clear()

        for raw in raw_lines:
            if len(raw) > limit:
                flush_good()
                rejects.append(_reject(TOO_LONG, raw))
                continue
            try:
                good.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                flush_good()
                rejects.append(_reject(UTF8, raw))
        flush_good()
        return points, rejects

    def _parse_text(
        self, lines: Iterable[str], now_ms: int
    ) -> tuple[list[Row], list[Reject]]:
        points: list[Row] = []
        rejects: list[Reject] = []
        append = points.append
        paths_get = self._paths.get
        resolve = self._resolve
        to_ms = self._timestamp
        max_length = self.max_line_length
        inf = _INF
        last_text = ""
        last_ms = 0
        for line in lines:
            if len(line) > max_length:  # bytes: ASCII, or checked by _parse_mixed
                rejects.append(_reject(TOO_LONG, line))
                continue
            parts = line.split()
            if len(parts) != 3:
                if parts:
                    rejects.append(_reject(FIELDS, line))
                continue
            path, value_text, time_text = parts
            names = paths_get(path)
            if names is None:
                resolved = resolve(path)
                if type(resolved) is str:
                    rejects.append(_reject(resolved, line))
                    continue
                names = cast("tuple[str, str]", resolved)
            try:
                value = float(value_text)
            except ValueError:
                rejects.append(_reject(VALUE, line))
                continue
            if not -inf < value < inf:
                rejects.append(_reject(NOT_FINITE, line))
                continue
            if time_text == last_text:
                ms = last_ms
            else:
                stamp = to_ms(time_text, now_ms)
                if stamp is None:
                    rejects.append(_reject(TIMESTAMP, line))
                    continue
                ms = last_ms = stamp
                last_text = time_text
            append((names[0], names[1], value, ms))
        return points, rejects


class LineStream:
    """Parses one TCP connection's byte stream, chunk by chunk.

    Keeps the partial line between chunks, and refuses to buffer a line
    longer than the maximum: it is rejected once (``too_long``) and skipped
    up to its newline.
    """

    def __init__(self, parser: GraphiteParser) -> None:
        self._parser = parser
        self._pending = b""
        self._skipping = False

    def feed(self, data: bytes) -> tuple[list[Row], list[Reject]]:
        """Parse a received chunk; returns the points and rejects it completed."""
        limit = self._parser.max_line_length
        rejects: list[Reject] = []
        if self._skipping:
            cut = data.find(b"\n")
            if cut < 0:
                return [], rejects
            data = data[cut + 1 :]
            self._skipping = False
        if self._pending:
            data = self._pending + data
            self._pending = b""
        points, more, remainder = self._parser.parse_lines(data)
        rejects.extend(more)
        if len(remainder) > limit:
            rejects.append(_reject(TOO_LONG, remainder))
            self._skipping = True
            remainder = b""
        self._pending = remainder
        return points, rejects

    def close(self) -> Reject | None:
        """End of stream: the partial line that is lost, if there is one."""
        pending, self._pending = self._pending, b""
        self._skipping = False
        if pending.strip():
            return _reject(PARTIAL, pending)
        return None


_shared: dict[tuple[str, int], GraphiteParser] = {}


def parse_lines(
    buffer: bytes,
    *,
    default_entity: str = "graphite",
    max_line_length: int = 4096,
    final: bool = False,
    now_ms: int | None = None,
) -> tuple[list[Row], list[Reject], bytes]:
    """Parse the complete lines of ``buffer`` with a shared :class:`GraphiteParser`.

    A convenience for one-off use; a server should keep one parser per
    thread (this shared one is not thread-safe).

    Returns:
        ``(points, rejects, remainder)`` as :meth:`GraphiteParser.parse_lines`.
    """
    key = (default_entity, max_line_length)
    parser = _shared.get(key)
    if parser is None:
        parser = _shared[key] = GraphiteParser(
            default_entity=default_entity, max_line_length=max_line_length
        )
    return parser.parse_lines(buffer, final=final, now_ms=now_ms)
