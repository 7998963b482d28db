"""Compaction of a frozen head into blocks, in the writer's thread or a worker process.

Grouping a head by series and encoding each series' blocks costs about a
microsecond a point, all of it under the interpreter lock that ingest needs.
A :class:`Compactor` hands a frozen head to a worker process
(:class:`~statsyard._child_process.WorkerProcess`, which dies with its
parent) so that it runs on another core while the writer keeps appending
to a fresh head; the writer commits the blocks when they come back.

The request carries the frozen head's raw columns (a ``memcpy`` each) and
the series keys numbered since the worker's previous request (the worker
keeps the numbering); the reply carries the encoded blocks and five numbers
per block: the series number, the block's length, its points, and its first
and last timestamps. Any failure (the worker crashes, is killed, times out,
raises, or replies with something that does not add up) discards the worker,
and the writer encodes that head itself: the log still holds every point
until the checkpoint record commits.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import signal
import struct
import threading
from array import array
from collections.abc import Callable, Sequence
from typing import Final

import attrs

from statsyard._child_process import WorkerProcess
from statsyard.storage._batch import ValueColumn
from statsyard.storage._blocks import MAX_BLOCK_POINTS, encode_block
from statsyard.storage._catalog import BlockEntry, SeriesKey
from statsyard.storage._head import Head

logger = logging.getLogger("statsyard.storage")

HANDLER: Final = "statsyard.storage._compaction:handle"
"""The worker's request handler (see :mod:`statsyard._child_process`)."""
MAX_FAILURES: Final = 3
"""Worker failures after which a storage compacts in the writer's thread only."""
MAX_REQUEST_BYTES: Final = 2**32 - 1
"""Largest request a frame carries; a bigger head is compacted in-process."""
_REQUEST = struct.Struct("<BIIQQ")
"""Value column kind, new keys, number of the first new key, points, value bytes."""
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
    blocks: list[bytes] = []
    rows: array[int] = array("q")
    kind = head.value_kind()
    for number, timestamps, values in head.groups():
        metric, entity = keys[number]
        for at in range(0, len(timestamps), MAX_BLOCK_POINTS):
            some_ts = timestamps[at : at + MAX_BLOCK_POINTS]
            some = values[at : at + MAX_BLOCK_POINTS]
            block, low, high = encode_block(metric, entity, some_ts, some, kind)
            blocks.append(block)
            rows.extend((number, len(block), len(some_ts), low, high))
    return Encoded(b"".join(blocks), rows)


# -- the wire format -----------------------------------------------------------


def encode_request(head: Head, first_key: int, new_keys: Sequence[SeriesKey]) -> bytes:
    """A frozen head's columns and the series keys numbered from ``first_key``."""
    numbers, timestamps, values = head.columns()
    if type(values) is array:
        kind = _FLOATS if values.typecode == "d" else _INTS
        value_bytes = values.tobytes()
    else:  # ints beyond int64, or ints and floats mixed: rare
        kind, value_bytes = _OBJECTS, marshal.dumps(list(values))
    names = [name.encode("utf-8", "surrogatepass") for key in new_keys for name in key]
    header = _REQUEST.pack(
        kind, len(new_keys), first_key, len(numbers), len(value_bytes)
    )
    return b"".join(
        [
            header,
            array("I", map(len, names)).tobytes(),
            *names,
            numbers.tobytes(),
            timestamps.tobytes(),
            value_bytes,
        ]
    )


class _Request:
    """A request read back in the worker."""

    def __init__(self, payload: bytes) -> None:
        kind, key_count, self.first_key, points, value_size = _REQUEST.unpack_from(
            payload
        )
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
        self.numbers: array[int] = array("I")
        self.numbers.frombytes(view[at : at + 4 * points])
        at += 4 * points
        self.timestamps: array[int] = array("q")
        self.timestamps.frombytes(view[at : at + 8 * points])
        at += 8 * points
        raw = view[at : at + value_size]
        self.values: ValueColumn
        if kind == _OBJECTS:
            self.values = marshal.loads(raw)
        else:
            self.values = array("d" if kind == _FLOATS else "q")
            self.values.frombytes(raw)
        if (
            at + value_size != len(payload)
            or len(self.timestamps) != points
            or len(self.values) != points
        ):
            raise ValueError(f"a request of {points} points does not add up")


_worker_keys: list[SeriesKey] = []
"""The worker's copy of the storage's series numbering."""


def handle(payload: bytes) -> bytes:
    """The worker's handler: a frozen head's columns in, its blocks out."""
    request = _Request(payload)
    if request.first_key != len(_worker_keys):
        raise ValueError(
            f"series keys must continue from {len(_worker_keys)}, "
            f"got {request.first_key}"
        )
    _worker_keys.extend(request.keys)
    head = Head()
    if request.numbers:
        head.add(request.numbers, request.timestamps, request.values)
    encoded = encode_head(head, _worker_keys)
    return b"".join(
        [_REPLY.pack(len(encoded.rows) // _ROW), encoded.rows.tobytes(), encoded.data]
    )


def decode_reply(payload: bytes, points: int, series: int) -> Encoded:
    """The blocks of a reply, checked against the head they encode.

    Raises:
        ValueError: the reply does not add up (then it is not committed).
    """
    (count,) = _REPLY.unpack_from(payload)
    rows: array[int] = array("q")
    end = _REPLY.size + 8 * _ROW * count
    rows.frombytes(payload[_REPLY.size : end])
    data = payload[end:]
    encoded = Encoded(data, rows)
    if (
        len(rows) != _ROW * count
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
            payload = encode_request(self.head, self._first_key, self._new_keys)
            if len(payload) > MAX_REQUEST_BYTES:
                raise ValueError(f"a request of {len(payload)} bytes is too big")
            # Far more than encoding takes (about a microsecond a point).
            timeout = 60.0 + self.head.points * 20e-6
            self.reply = self._worker.request(payload, timeout=timeout)
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
            except (ValueError, struct.error) as exc:
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
