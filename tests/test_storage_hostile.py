"""Storage files are untrusted input: bombs, special files, huge sizes, fuzzing.

Every test builds a real data directory through :class:`Storage`, damages it
as a disk, a backup tool or a careless person would, and reads it back
through the public interface (``Storage.open``, ``open_readonly``,
``query``, ``series``, the CLI).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.datapoint import DataPoint
from statsyard.exceptions import CorruptRecordError, StatsYardError
from statsyard.storage import Storage, scan_records
from statsyard.storage._batch import decode_batch, decode_batch_record
from statsyard.storage._blocks import (
    BLOCK_HEADER,
    BLOCK_PEEK,
    block_length,
    decode_block,
)
from statsyard.storage._framing import pack_record
from statsyard.storage._index import decode_checkpoint
from tests._storage_helpers import REPO, T0, points

Point = tuple[str, str, int, float | int]

MEMORY_BOUND = 48 * 2**20
"""Peak Python allocations allowed while reading a small damaged directory."""
CASE_SECONDS = 10
"""A case taking longer than this counts as a hang."""


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging for ever) if the block takes longer."""

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"took more than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_everything(storage: Storage) -> set[Point]:
    """Every point a storage returns, through series() and query()."""
    got: set[Point] = set()
    for metric, _entity in storage.series("**"):
        for entity, rows in storage.query(metric).items():
            got.update((metric, entity, t, v) for t, v in rows)
    return got


def as_points(batch: list[DataPoint]) -> set[Point]:
    return {(p.metric, p.entity, p.timestamp, p.value) for p in batch}


# -- the template directory and where each point lies ---------------------------------


@attrs.frozen
class Unit:
    """Points stored in one byte range of one file (a log record or a block)."""

    file: str
    start: int
    end: int
    points: frozenset[Point]


def build_template(directory: Path) -> list[Unit]:
    """Two checkpoints in one segment, two batches still in the log."""
    batches = [
        [
            *points("cpu.load", "h1", [0.5, 1.5, 2.25]),
            *points("cpu.load", "h2", [3.0, 4.0]),
        ],
        [
            *points("disk.used", "h1", [10, 20, 30], start=T0 + 60_000),
            *points("cpu.load", "h1", [7.5], start=T0 + 60_000),
        ],
        [*points("mem.free", "h3", [1, 2.5, 3], start=T0 + 120_000)],
        [*points("net.rx", "h1", [100, 200], start=T0 + 180_000)],
    ]
    with Storage.open(directory, checkpoint_points=None) as s:
        s.append(batches[0])
        s.checkpoint()
        s.append(batches[1])
        s.checkpoint()
        s.append(batches[2])
        s.append(batches[3])
    units = []
    for path in sorted(directory.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".log":
            for offset, kind, payload in scan_records(data, 16).records:
                batch = decode_batch_record(kind, payload)
                keys = [batch.keys[n] for n in batch.series_numbers]
                found = {
                    (m, e, t, v)
                    for (m, e), t, v in zip(
                        keys, batch.timestamps, batch.values, strict=True
                    )
                }
                units.append(
                    Unit(
                        path.name, offset, offset + 16 + len(payload), frozenset(found)
                    )
                )
        elif path.suffix == ".dat":
            offset = 16
            while offset < len(data):
                length = block_length(data[offset : offset + BLOCK_PEEK])
                assert length is not None
                metric, entity, stamps, values = decode_block(
                    data[offset : offset + length]
                )
                found = {
                    (metric, entity, t, v) for t, v in zip(stamps, values, strict=True)
                }
                units.append(Unit(path.name, offset, offset + length, frozenset(found)))
                offset += length
    assert {p for u in units for p in u.points} == set().union(
        *(as_points(b) for b in batches)
    )
    return units


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Unit]]:
    directory = tmp_path_factory.mktemp("template") / "data"
    return directory, build_template(directory)


# -- mutations ----------------------------------------------------------------------

WHOLE = (0, 2**63)


@attrs.frozen
class Mutation:
    """What was done to which file, and which bytes it touched."""

    name: str
    file: str
    touched: tuple[int, int]
    """Byte range changed; ``WHOLE`` when the file as a whole was replaced."""


def mutate(directory: Path, rng: random.Random) -> Mutation:
    """Damage one data file of ``directory`` at random."""
    files = sorted(
        p for p in directory.iterdir() if p.suffix in (".log", ".dat", ".idx")
    )
    path = rng.choice(files)
    data = bytearray(path.read_bytes())
    size = len(data)
    kind = rng.choice(
        [
            "bitflip",
            "bitflip",
            "bitflips",
            "truncate",
            "splice",
            "huge_length",
            "zero_run",
            "garbage_tail",
            "directory",
            "fifo",
            "sparse",
        ]
    )
    if kind in ("bitflip", "bitflips"):
        spots = [rng.randrange(size) for _ in range(1 if kind == "bitflip" else 4)]
        for spot in spots:
            data[spot] ^= 1 << rng.randrange(8)
        touched = (min(spots), max(spots) + 1)
    elif kind == "truncate":
        cut = rng.randrange(size)
        del data[cut:]
        touched = (cut, 2**63)
    elif kind == "splice":
        length = rng.randrange(1, min(64, size))
        source = rng.randrange(size - length + 1)
        target = rng.randrange(size - length + 1)
        data[target : target + length] = data[source : source + length]
        touched = (target, target + length)
    elif kind == "huge_length":
        # A record's or a block's length field, set to the largest value.
        marker = b"SYRC" if path.suffix != ".dat" else b"SYBK"
        spots = [i for i in range(size) if data.startswith(marker, i)] or [16]
        spot = rng.choice(spots)
        field = spot + (8 if marker == b"SYRC" else 24)
        data[field : field + 4] = b"\xff\xff\xff\xff"
        touched = (field, field + 4)
    elif kind == "zero_run":
        start = rng.randrange(size)
        end = min(size, start + rng.randrange(1, 200))
        data[start:end] = bytes(end - start)
        touched = (start, end)
    elif kind == "garbage_tail":
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        touched = (size, 2**63)
    else:
        path.unlink()
        if kind == "directory":
            path.mkdir()
            (path / "inside").write_text("not a data file")
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(bytes(data))
            os.truncate(path, 3 * 2**30)  # sparse: no disk, 3 GiB of size
            return Mutation(kind, path.name, (size, 2**63))
        return Mutation(kind, path.name, WHOLE)
    path.write_bytes(bytes(data))
    return Mutation(kind, path.name, touched)


def must_survive(units: list[Unit], mutation: Mutation) -> set[Point]:
    """Points the mutation did not touch, which must still read back.

    A segment's blocks survive any damage to its index (they are found
    again by scanning its data file). A file replaced as a whole, or grown
    past any size a writer makes, is set aside: its points are not required.
    """
    spared: set[Point] = set()
    for unit in units:
        if unit.file != mutation.file:
            spared |= unit.points
            continue
        if mutation.touched == WHOLE or (
            mutation.name == "sparse" and (unit.file.endswith((".log", ".idx")))
        ):
            continue
        low, high = mutation.touched
        if unit.end <= low or unit.start >= high:
            spared |= unit.points
    return spared


def _open_and_read(opener: Callable[[Path], Storage], directory: Path) -> set[Point]:
    storage = opener(directory)
    try:
        return read_everything(storage)
    finally:
        storage.close()


def check_case(directory: Path, units: list[Unit], mutation: Mutation) -> None:
    """Reader, writer, reader again: each reads back what it must, within bounds."""
    everything = {p for u in units for p in u.points}
    spared = must_survive(units, mutation)
    for opener in (Storage.open_readonly, Storage.open, Storage.open_readonly):
        tracemalloc.start()
        try:
            with deadline(CASE_SECONDS):
                got = _open_and_read(opener, directory)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        where = f"{mutation} then {opener.__name__}"
        assert peak < MEMORY_BOUND, f"{where}: {peak} bytes allocated"
        assert spared <= got, f"{where}: lost {sorted(spared - got)[:5]}"
        assert got <= everything, f"{where}: invented {sorted(got - everything)[:5]}"


def test_random_damage_never_crashes_hangs_bloats_or_loses_untouched_points(
    template: tuple[Path, list[Unit]], tmp_path: Path
) -> None:
    """Seeded random mutations of a real data directory: opening, query and
    series succeed, stay within memory and time, and read back every point
    outside what the mutation touched (index damage loses nothing).

    ``FUZZ_SEED`` and ``FUZZ_CASES`` in the environment run other or more
    cases locally."""
    source, units = template
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "20261202")))
    seen: dict[str, int] = {}
    logging.getLogger("statsyard.storage").setLevel(logging.ERROR)
    try:
        for case in range(int(os.environ.get("FUZZ_CASES", "300"))):
            directory = tmp_path / f"case{case}"
            shutil.copytree(source, directory)
            mutation = mutate(directory, rng)
            seen[mutation.name] = seen.get(mutation.name, 0) + 1
            check_case(directory, units, mutation)
            shutil.rmtree(directory)
    finally:
        logging.getLogger("statsyard.storage").setLevel(logging.NOTSET)
    assert len(seen) == 10, seen  # every kind of mutation was tried


def test_the_cli_reads_damaged_directories_with_clear_results(
    template: tuple[Path, list[Unit]], tmp_path: Path
) -> None:
    """`statsyard series`, `query` and `check` on damaged directories: exit 0 or
    1 with a plain message, never a traceback, never a hang."""
    source, _units = template
    rng = random.Random(7)
    for case in range(4):
        directory = tmp_path / f"case{case}"
        shutil.copytree(source, directory)
        mutation = mutate(directory, rng)
        for args in (
            ["series", "--data-dir", str(directory), "**"],
            ["query", "--data-dir", str(directory), "cpu.load", "--from", "20200101"],
            ["check", str(directory)],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "statsyard", *args],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
                check=False,
            )
            where = f"{mutation}: statsyard {' '.join(args)}"
            assert done.returncode in (0, 1), f"{where}: {done.stderr}"
            assert "Traceback" not in done.stderr, where


# -- the attacks of issue 10, one by one --------------------------------------------


def test_a_fifo_named_like_a_log_is_set_aside_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO named like the newest log: a reader skips it, the writer moves it
    into damaged/ (WARNING with the reason); nothing blocks."""
    with Storage.open(tmp_path) as s:
        s.append(points("m", "e", [1]))
    fifo = tmp_path / "wal-0000000000000009.log"
    os.mkfifo(fifo)
    with deadline(CASE_SECONDS), caplog.at_level(logging.WARNING):
        with Storage.open_readonly(tmp_path) as reader:
            assert reader.query("m") == {"e": [(T0, 1)]}
            assert reader.skipped_records == 1
        with Storage.open(tmp_path) as s:
            assert s.query("m") == {"e": [(T0, 1)]}
    assert f"Skipped {fifo}: is a FIFO, not a file" in caplog.text
    assert f"Moved {fifo} into damaged/: is a FIFO, not a file" in caplog.text
    assert (tmp_path / "damaged" / fifo.name).is_fifo()


def test_a_sparse_3_gib_log_is_damage_read_in_bounded_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A log no writer could have made (3 GiB, sparse) is set aside unread."""
    with Storage.open(tmp_path) as s:
        s.append(points("m", "e", [1]))
    log = next(tmp_path.glob("wal-*.log"))
    os.truncate(log, 3 * 2**30)
    tracemalloc.start()
    try:
        with deadline(CASE_SECONDS), caplog.at_level(logging.WARNING):
            with Storage.open_readonly(tmp_path) as reader:
                assert reader.query("m") == {}
            with Storage.open(tmp_path) as s:
                s.append(points("m", "e", [2], start=T0 + 1000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    assert "is 3221225472 bytes, more than any writer makes" in caplog.text
    assert (tmp_path / "damaged" / log.name).stat().st_size == 3 * 2**30


def _bomb_block(metric: str, entity: str) -> bytes:
    """A block with a sound checksum whose payload inflates to 64 MiB."""
    payload = zlib.compress(bytes(64 * 2**20), 9)
    m, e = metric.encode(), entity.encode()
    head = BLOCK_HEADER.pack(b"SYBK", 2, 3, 0, 3, 1, len(m), len(e), T0, len(payload))
    crc = zlib.crc32(m + e + payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + m + e + payload


def test_a_decompression_bomb_is_damage_not_an_allocation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checksummed block whose payload inflates far past its declared size
    (one int64 point) is skipped and logged, within a small memory bound."""
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(points("m", "e", [1]))
        s.checkpoint()
    dat = next(tmp_path.glob("seg-*.dat"))
    with open(dat, "ab") as f:
        f.write(_bomb_block("m", "bomb"))  # then listed by nothing: rescued?
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING), Storage.open(tmp_path) as s:
            assert s.query("m") == {"e": [(T0, 1)]}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak
    assert "Truncated torn tail of" in caplog.text  # not a block: set aside
    with pytest.raises(CorruptRecordError, match="inflates past the 8 bytes"):
        decode_block(_bomb_block("m", "bomb"))


def test_damage_to_the_last_index_record_loses_no_point(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint record that covers removed logs is damaged: its blocks are
    found again by scanning the data file and listed by a new record; readers
    do not claim the files kept changing."""
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(points("m", "e", [1, 2]))
        s.checkpoint()
        s.append(points("m", "e", [3, 4], start=T0 + 10_000))
        s.checkpoint()  # its logs are removed: the blocks are all there is
    index = next(tmp_path.glob("seg-*.idx"))
    data = bytearray(index.read_bytes())
    data[-3] ^= 0x40
    index.write_bytes(bytes(data))
    want = {"e": [(T0, 1), (T0 + 1000, 2), (T0 + 10_000, 3), (T0 + 11_000, 4)]}
    with caplog.at_level(logging.WARNING):
        with Storage.open_readonly(tmp_path) as reader:
            assert reader.query("m") == want
        assert "kept changing" not in caplog.text
        with Storage.open(tmp_path) as s:
            assert s.query("m") == want
    assert "Found 1 blocks (2 points)" in caplog.text
    with Storage.open_readonly(tmp_path) as reader:
        assert reader.query("m") == want


def _batch_record(flag: int, stamp: int) -> bytes:
    """A checksummed log record of one mixed-kind point with the given flag."""
    entry = struct.pack("<IHH", 0, 1, 1) + b"me"
    table = zlib.compress(entry)
    body = (
        struct.pack("<IIB3xI", 1, 1, 2, len(table))
        + table
        + struct.pack("<I", 0)
        + struct.pack("<q", stamp)
        + bytes([flag])
        + struct.pack("<d", 1.0)
    )
    return pack_record(1, body)


@pytest.mark.parametrize(
    ("flag", "stamp", "problem"),
    [(2, T0, "neither 0 nor 1"), (1, 2**62, "timestamp 4611686018427387904")],
)
def test_records_with_sound_checksums_but_impossible_content_are_skipped(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    flag: int,
    stamp: int,
    problem: str,
) -> None:
    """A mixed-kind flag of 2 (once StopIteration) or a timestamp of 2**62 (once
    a crash of `statsyard query`): a counted skip naming file and offset."""
    with Storage.open(tmp_path) as s:
        s.append(points("m", "e", [1]))
    log = next(tmp_path.glob("wal-*.log"))
    offset = log.stat().st_size
    with open(log, "ab") as f:
        f.write(_batch_record(flag, stamp))
    with caplog.at_level(logging.WARNING), Storage.open_readonly(tmp_path) as reader:
        assert reader.query("m") == {"e": [(T0, 1)]}
        assert reader.skipped_records == 1
    assert f"{log}: record at {offset}:" in caplog.text
    assert problem in caplog.text
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "statsyard",
            "query",
            "--data-dir",
            str(tmp_path),
            "m",
            "--from",
            "20200101",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decoders_raise_only_corruption_errors(data: bytes) -> None:
    """Whatever the bytes, each decoder returns or raises CorruptRecordError."""
    for decode in (
        decode_batch,
        decode_block,
        lambda raw: decode_checkpoint(1, raw, 10**6),
    ):
        with contextlib.suppress(CorruptRecordError):
            decode(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decoders_survive_mutations_of_sound_records(data: st.DataObject) -> None:
    """Sound records with bytes flipped, cut or appended: decoded or refused."""
    sound = _batch_record(0, T0)[16:]
    position = data.draw(st.integers(0, len(sound) - 1))
    damaged = bytearray(sound)
    damaged[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    for raw in (bytes(damaged), bytes(damaged[:cut]), bytes(damaged) + b"\x00"):
        try:
            decode_batch(raw)
        except CorruptRecordError:
            pass
        except StatsYardError as error:  # pragma: no cover - would be a bug
            pytest.fail(f"{error!r} is not a CorruptRecordError")
