"""Parsing Graphite lines in a worker process, off the interpreter lock.

The listener's I/O thread sends the complete lines it read, a batch of
chunks (one per connection) in one request; the worker parses them with the
same :class:`~statsyard.graphite.protocol.GraphiteParser` (the one name rule)
and sends back each chunk's rows and rejected lines, marshalled: ``marshal``
writes a name repeated in a batch once, so the parent rebuilds the rows at C
speed and shares the strings. The parent keeps every chunk's bytes until its
answer arrives: if the worker dies, they are parsed in the parent instead,
so nothing read is lost to a worker's death.

The worker is a :class:`~statsyard._child_process.WorkerProcess`: it dies
with the thread that started it (the listener actor's) and with the service,
even after ``kill -9``.
"""

from __future__ import annotations

import marshal
from collections.abc import Sequence
from typing import Final

from statsyard._child_process import WorkerProcess
from statsyard.datapoint import Row
from statsyard.graphite.protocol import GraphiteParser, Reject

__all__ = ["ParseWorker", "ParserSettings", "parse_request"]

HANDLER: Final = "statsyard.graphite._parse_worker:parse_request"

ParserSettings = tuple[str, int, str, tuple[str, ...]]
"""``(default_entity, max_line_length, entity_tag, templates)``."""

Parsed = tuple[list[Row], list[Reject]]


def settings_of(parser: GraphiteParser) -> ParserSettings:
    """What a worker needs to build a parser like ``parser``."""
    return (
        parser.default_entity,
        parser.max_line_length,
        parser.entity_tag,
        parser.templates,
    )


# -- the worker's side -------------------------------------------------------

_parsers: dict[ParserSettings, GraphiteParser] = {}


def parse_request(payload: bytes) -> bytes:
    """The worker's handler: ``(settings, now_ms, [chunk, ...])`` -> parsed chunks.

    Each chunk holds complete lines only (the parent keeps partial lines).
    The reply is ``[(rows, [(reason, line), ...]), ...]``, one per chunk.
    """
    settings, now_ms, chunks = marshal.loads(payload)
    key = (settings[0], settings[1], settings[2], tuple(settings[3]))
    parser = _parsers.get(key)
    if parser is None:
        parser = _parsers[key] = GraphiteParser(
            default_entity=key[0],
            max_line_length=key[1],
            entity_tag=key[2],
            templates=key[3],
        )
    replies = []
    for chunk in chunks:
        rows, rejects, _ = parser.parse_lines(chunk, final=True, now_ms=now_ms)
        replies.append((rows, [(r.reason, r.line) for r in rejects]))
    return marshal.dumps(replies)


# -- the parent's side -------------------------------------------------------


class ParseWorker:
    """The I/O thread's handle on one parsing worker: one batch in flight.

    Start it from the thread that owns it (the listener actor's): the worker
    dies when that thread ends.

    Args:
        parser: the listener's parser; the worker builds one like it.
    """

    def __init__(self, parser: GraphiteParser) -> None:
        self._settings = settings_of(parser)
        self._process = WorkerProcess(HANDLER, name="graphite-parse")

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._process.pid

    def fileno(self) -> int:
        """The descriptor that becomes readable when the answer is in."""
        return self._process.reply_fd

    def submit(self, chunks: Sequence[bytes], now_ms: int) -> None:
        """Send one batch of chunks of complete lines.

        Raises:
            WorkerGoneError: the worker is gone.
        """
        self._process.send(marshal.dumps((self._settings, now_ms, list(chunks))))

    def collect(self) -> list[Parsed]:
        """The answer to the batch submitted: each chunk's rows and rejects.

        Raises:
            WorkerGoneError: the worker died; WorkerError: it failed to parse.
        """
        replies = marshal.loads(self._process.receive())
        return [
            (rows, [Reject(reason, line) for reason, line in rejects])
            for rows, rejects in replies
        ]

    def close(self) -> None:
        """Close the worker's pipe and reap it (killed if it lingers)."""
        self._process.close(timeout=2.0)
