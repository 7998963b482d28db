"""Compaction of a frozen head into blocks, in the writer's thread or a worker process.

Grouping a head by series and encoding each series' blocks costs about a
microsecond a point, all of it under the interpreter lock that ingest needs.
A :class:`Compactor` hands a frozen head to a worker process
(:class:`~statsyard._child_process.WorkerProcess`, which dies with its
parent) so that it runs on another core while the writer keeps appending
to a fresh head; the writer commits the blocks when they come back.

The requests carry the frozen head's raw columns in chunks, written to the
pipe straight from its arrays, and the series keys numbered since the
worker's previous request (the worker keeps the numbering); the reply to
the last chunk carries the encoded blocks and five numbers
per block: the series number, the block's length, its points, and its first
and last timestamps. Any failure (the worker crashes, is killed, times out,
raises, or replies with something that does not add up) discards the worker,
and the writer encodes that head itself: the log still holds every point
until the checkpoint record commits.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import marshal
import os
import signal
import struct
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from statsyard._child_process import WorkerProcess
from statsyard.storage._blocks import MAX_BLOCK_POINTS, encode_block
from statsyard.storage._catalog import BlockEntry, SeriesKey
from statsyard.storage._head import Head

if TYPE_CHECKING:
    from typing_extensions import Buffer

logger = logging.getLogger("statsyard.storage")

HANDLER: Final = "statsyard.storage._compaction:handle"
"""The worker's request handler (see :mod:`statsyard._child_process`)."""
MAX_FAILURES: Final = 3
"""Worker failures after which a storage compacts in the writer's thread only."""
CHUNK_POINTS: Final = 64 * 1024
"""Points per request: a frozen head goes in several, so that neither side
ever holds more than one chunk's bytes besides the columns themselves."""
_REQUEST = struct.Struct("<BIIQQQQ")
"""Value column kind, new keys, number of the first new key, points of the
head, of those before this chunk and in it, value bytes in it."""
_REPLY = struct.Struct("<I")
"""Blocks (then five int64 per block, then the blocks' bytes)."""
_ROW = 5
_FLOATS, _INTS, _OBJECTS = 0, 1, 2


@attrs.frozen
class Encoded:
    """A frozen head's blocks, encoded and not yet written."""

    data: bytes
    """The blocks, one after the other."""
    rows: array[int]
    """Per block: series number, length, points, first and last timestamps."""

    @property
    def points(self) -> int:
        """Points in the blocks."""
        return sum(self.rows[2::_ROW])

    def entries(self, keys: Sequence[SeriesKey]) -> list[BlockEntry]:
        """The blocks as checkpoint entries, naming each block's series."""
        rows = self.rows
        return [
            (*keys[rows[at]], *rows[at + 1 : at + _ROW])  # type: ignore[misc]
            for at in range(0, len(rows), _ROW)
        ]


def encode_head(head: Head, keys: Sequence[SeriesKey]) -> Encoded:
    """Group a frozen head by series and encode each series' blocks.

    Runs wherever it is called: in the writer's thread or in a worker.
    """
    numbers, timestamps, values = head.columns()
    if type(values) is array:
        return encode_columns(numbers, timestamps, values, keys)
    blocks: list[bytes] = []
    rows: array[int] = array("q")
    kind = head.value_kind()
    for number, series_ts, series_values in head.groups():
        metric, entity = keys[number]
        for at in range(0, len(series_ts), MAX_BLOCK_POINTS):
            some_ts = series_ts[at : at + MAX_BLOCK_POINTS]
            some = series_values[at : at + MAX_BLOCK_POINTS]
            block, low, high = encode_block(metric, entity, some_ts, some, kind)
            blocks.append(block)
            rows.extend((number, len(block), len(some_ts), low, high))
    return Encoded(b"".join(blocks), rows)


def encode_columns(
    numbers: Any, timestamps: Any, values: Any, keys: Sequence[SeriesKey]
) -> Encoded:
    """:func:`encode_head` of raw columns of floats or int64s, grouped by numpy.

    A stable sort by series number keeps each series' points in arrival
    order, as :meth:`Head.groups` does; only one series' points at a time
    become Python objects (for :func:`encode_block`), so memory stays
    about 8 bytes a point above the columns.
    """
    import numpy as np

    blocks: list[bytes] = []
    rows: array[int] = array("q")
    series = np.frombuffer(numbers, dtype=np.uint32)
    if not len(series):
        return Encoded(b"", rows)
    stamps = np.frombuffer(timestamps, dtype=np.int64)
    if isinstance(values, array):
        floats = values.typecode == "d"
        column = np.frombuffer(values, dtype=np.float64 if floats else np.int64)
    else:  # a numpy column (the worker's)
        floats = values.dtype == np.float64
        column = values
    kind = float if floats else int
    order = np.argsort(series, kind="stable")
    sorted_series = series[order]
    starts = np.flatnonzero(np.diff(sorted_series)) + 1
    bounds = [0, *starts.tolist(), len(order)]
    del sorted_series, starts
    for low_at, high_at in itertools.pairwise(bounds):
        number = int(series[order[low_at]])
        metric, entity = keys[number]
        for at in range(low_at, high_at, MAX_BLOCK_POINTS):
            picked = order[at : min(at + MAX_BLOCK_POINTS, high_at)]
            some_ts = stamps[picked].tolist()
            some = column[picked].tolist()
            block, low, high = encode_block(metric, entity, some_ts, some, kind)
            blocks.append(block)
            rows.extend((number, len(block), len(some_ts), low, high))
    return Encoded(b"".join(blocks), rows)


# -- the wire format -----------------------------------------------------------


def encode_requests(
    head: Head,
    first_key: int,
    new_keys: Sequence[SeriesKey],
    chunk_points: int = CHUNK_POINTS,
) -> Iterator[list[Buffer]]:
    """A frozen head's columns in chunks, and the series keys numbered from
    ``first_key`` (with the first chunk).

    Yields the parts of each request, to be sent one after the other: the
    columns go as they are, uncopied.
    """
    numbers, timestamps, values = head.columns()
    total = len(numbers)
    names = [name.encode("utf-8", "surrogatepass") for key in new_keys for name in key]
    keys_part = array("I", map(len, names)).tobytes() + b"".join(names)
    if type(values) is not array:  # ints beyond int64, or ints and floats mixed
        value_bytes = marshal.dumps(list(values))
        header = _REQUEST.pack(
            _OBJECTS, len(new_keys), first_key, total, 0, total, len(value_bytes)
        )
        yield [header + keys_part, numbers, timestamps, value_bytes]
        return
    kind = _FLOATS if values.typecode == "d" else _INTS
    with (
        memoryview(numbers) as all_numbers,
        memoryview(timestamps) as all_ts,
        memoryview(values) as all_values,
    ):
        for at in range(0, max(total, 1), chunk_points):
            end = min(at + chunk_points, total)
            first = at == 0
            header = _REQUEST.pack(
                kind,
                len(new_keys) if first else 0,
                first_key if first else first_key + len(new_keys),
                total,
                at,
                end - at,
                8 * (end - at),
            )
            yield [
                header + (keys_part if first else b""),
                all_numbers[at:end],
                all_ts[at:end],
                all_values[at:end],
            ]


class _Chunk:
    """A request read back in the worker (views into its payload)."""

    def __init__(self, payload: bytes) -> None:
        (
            self.kind,
            key_count,
            self.first_key,
            self.total,
            self.offset,
            points,
            value_size,
        ) = _REQUEST.unpack_from(payload)
        view = memoryview(payload)
        at = _REQUEST.size
        lengths: array[int] = array("I")
        lengths.frombytes(view[at : at + 8 * key_count])
        at += 8 * key_count
        names = []
        for length in lengths:
            names.append(str(view[at : at + length], "utf-8", "surrogatepass"))
            at += length
        self.keys = list(zip(names[::2], names[1::2], strict=True))
        self.numbers = view[at : at + 4 * points]
        at += 4 * points
        self.timestamps = view[at : at + 8 * points]
        at += 8 * points
        self.values = view[at : at + value_size]
        self.points = points
        if at + value_size != len(payload) or len(self.timestamps) != 8 * points:
            raise ValueError(f"a request of {points} points does not add up")


class _WorkerState:
    """What the worker keeps between requests: the series numbering, and the
    columns of the head being received."""

    def __init__(self) -> None:
        self.keys: list[SeriesKey] = []
        self.columns: tuple[Any, Any, Any] | None = None
        self.received = 0


_state = _WorkerState()


def handle(payload: bytes) -> bytes:
    """The worker's handler: a frozen head's columns in, its blocks out.

    A chunk that does not complete the head gets an empty reply.
    """
    chunk = _Chunk(payload)
    state = _state
    if chunk.first_key != len(state.keys):
        raise ValueError(
            f"series keys must continue from {len(state.keys)}, got {chunk.first_key}"
        )
    state.keys.extend(chunk.keys)
    if chunk.kind == _OBJECTS:
        head = Head()
        if chunk.points:
            numbers: array[int] = array("I", chunk.numbers.cast("I"))
            stamps: array[int] = array("q", chunk.timestamps.cast("q"))
            head.add(numbers, stamps, marshal.loads(chunk.values))
        encoded = encode_head(head, state.keys)
    else:
        import numpy as np

        if chunk.offset == 0:
            state.columns = (
                np.empty(chunk.total, np.uint32),
                np.empty(chunk.total, np.int64),
                np.empty(
                    chunk.total, np.float64 if chunk.kind == _FLOATS else np.int64
                ),
            )
            state.received = 0
        if state.columns is None or chunk.offset != state.received:
            raise ValueError(f"a chunk at {chunk.offset}, expected {state.received}")
        end = chunk.offset + chunk.points
        for column, part in zip(
            state.columns, (chunk.numbers, chunk.timestamps, chunk.values), strict=True
        ):
            column[chunk.offset : end] = np.frombuffer(part, dtype=column.dtype)
        state.received = end
        if end < chunk.total:
            return b""
        columns, state.columns = state.columns, None
        encoded = encode_columns(*columns, state.keys)
        del columns
    return b"".join(
        [_REPLY.pack(len(encoded.rows) // _ROW), encoded.rows.tobytes(), encoded.data]
    )


def decode_reply(payload: bytes, points: int, series: int) -> Encoded:
    """The blocks of a reply, checked against the head they encode.

    Raises:
        ValueError: the reply does not add up (then it is not committed).
    """
    count = _REPLY.unpack_from(payload)[0] if len(payload) >= _REPLY.size else -1
    end = _REPLY.size + 8 * _ROW * count
    rows: array[int] = array("q")
    if count >= 0 and end <= len(payload):
        rows.frombytes(payload[_REPLY.size : end])
    data = payload[end:]
    encoded = Encoded(data, rows)
    if (
        count < 0
        or len(rows) != _ROW * count
        or sum(rows[1::_ROW]) != len(data)
        or encoded.points != points
        or any(not 0 <= number < series for number in rows[::_ROW])
    ):
        raise ValueError(
            f"the worker's reply of {count} blocks does not match "
            f"the {points} points sent"
        )
    return encoded


# -- the writer's side ---------------------------------------------------------


class _Job:
    """One frozen head on its way through the worker, in a thread of its own.

    The thread blocks on the worker's pipes so that the writer's thread
    never does; it sets :attr:`done` and calls ``notify`` when the reply (or
    a failure) is in.
    """

    def __init__(
        self,
        worker: WorkerProcess,
        head: Head,
        first_key: int,
        new_keys: list[SeriesKey],
        notify: Callable[[], None] | None,
    ) -> None:
        self.head = head
        self.done = threading.Event()
        self.reply: bytes | None = None
        self.error: Exception | None = None
        self._worker = worker
        self._first_key = first_key
        self._new_keys = new_keys
        self._notify = notify
        self.thread = threading.Thread(
            target=self._run, name="statsyard-compaction", daemon=True
        )

    def _run(self) -> None:
        try:
            worker = self._worker
            for parts in encode_requests(self.head, self._first_key, self._new_keys):
                if self.reply:  # only the last chunk's reply holds anything
                    raise ValueError("the worker replied before the last chunk")
                worker.send_parts(parts)
                # Far more than encoding takes (about a microsecond a point).
                self.reply = worker.receive(60.0 + self.head.points * 20e-6)
        except Exception as exc:  # noqa: BLE001 - the writer falls back on any failure
            self.error = exc
        finally:
            self.done.set()
            if self._notify is not None:
                try:
                    self._notify()
                except Exception:  # deliberate: a listener must not lose the reply
                    logger.exception("Compaction listener failed")


class Compactor:
    """Compacts frozen heads in a worker process, one at a time.

    Owned by the writer's thread, which starts the worker (so that the
    worker dies with that thread) and collects the results.

    Args:
        notify: called from another thread when a compaction's result is in
            (a writer actor ``tell``s itself to commit it); None: the writer
            looks at each append.
    """

    def __init__(self, notify: Callable[[], None] | None = None) -> None:
        self._notify = notify
        self._worker: WorkerProcess | None = None
        self._keys_sent = 0
        self._job: _Job | None = None
        self.failures = 0
        """Compactions the worker failed (then done in the writer's thread)."""
        self.completed = 0
        """Compactions the worker did."""

    @property
    def enabled(self) -> bool:
        """Whether compactions still go to a worker (it failed too often)."""
        return self.failures < MAX_FAILURES

    @property
    def busy(self) -> bool:
        """Whether a frozen head is with the worker."""
        return self._job is not None

    @property
    def ready(self) -> bool:
        """Whether the worker's result (or failure) is in."""
        return self._job is not None and self._job.done.is_set()

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id, while there is one."""
        return None if self._worker is None else self._worker.pid

    def start(self, head: Head, keys: list[SeriesKey]) -> bool:
        """Hand a frozen head to the worker, starting one if needed.

        Returns:
            False when no worker can take it (the caller encodes it).
        """
        if self._job is not None or not self.enabled:
            return False
        if self._worker is None:
            try:
                self._worker = WorkerProcess(HANDLER, name="compaction")
            except OSError as exc:
                self._failed(exc)
                return False
            self._keys_sent = 0
        first = self._keys_sent
        new_keys = keys[first:]
        self._keys_sent = first + len(new_keys)
        job = _Job(self._worker, head, first, new_keys, self._notify)
        job.thread.start()
        self._job = job
        return True

    def result(self, series: int) -> Encoded | None:
        """Wait for the worker's blocks; None if it failed (the caller encodes).

        Args:
            series: series numbered so far (a reply names no other).
        """
        job, self._job = self._job, None
        if job is None:
            return None
        job.thread.join()
        if job.error is None and job.reply is not None:
            try:
                encoded = decode_reply(job.reply, job.head.points, series)
            except ValueError as exc:
                job.error = exc
            else:
                self.completed += 1
                return encoded
        self._failed(job.error or ValueError("no reply"))
        return None

    def _failed(self, error: BaseException) -> None:
        """Discard the worker; the next compaction starts a new one."""
        self.failures += 1
        self._discard()
        if self.enabled:
            logger.warning(
                "Compaction worker failed, compacting in the writer's thread "
                "this time: %s",
                error,
            )
        else:
            logger.error(
                "Compaction worker failed %d times, compacting in the writer's "
                "thread from now on: %s",
                self.failures,
                error,
            )

    def _discard(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        job, self._job = self._job, None
        if job is not None:  # abandon it: its thread reads end of file, ends
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            job.thread.join()
            worker.close()
        else:
            worker.kill()

    def close(self) -> None:
        """Stop the worker; an unfinished compaction is abandoned (the log has it)."""
        if self._job is not None:
            self._discard()
            return
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
