"""The forwarder's cursor file: atomic saves, fsync at an interval, damage detected."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statsyard.forward.cursor import (
    Cursor,
    CursorFile,
    cursor_path,
    decode_cursor,
    encode_cursor,
)

positions = st.builds(
    Cursor,
    st.integers(0, 2**63),
    st.integers(0, 2**63),
    st.integers(0, 2**31),
)


@given(positions)
def test_a_cursor_survives_encoding(cursor: Cursor) -> None:
    """decode(encode(c)) == c."""
    assert decode_cursor(encode_cursor(cursor)) == cursor


@given(positions, st.data())
def test_any_changed_byte_is_detected(cursor: Cursor, data: st.DataObject) -> None:
    """A flipped byte never decodes to another cursor."""
    raw = bytearray(encode_cursor(cursor))
    at = data.draw(st.integers(0, len(raw) - 2))  # the newline is not checked
    raw[at] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    try:
        assert decode_cursor(bytes(raw)) == cursor
    except (ValueError, UnicodeDecodeError):
        pass  # refused: the point of the checksum


def test_cursors_order_by_log_then_offset_then_skip() -> None:
    """Delivery progress compares as a position in the log."""
    assert Cursor(1, 500, 9) < Cursor(2, 16, 0) < Cursor(2, 16, 1) < Cursor(2, 17, 0)


def test_save_renames_into_place_and_fsyncs_only_when_due(tmp_path: Path) -> None:
    """Every save replaces the file; fsyncs follow the interval (or sync=True)."""
    now = [100.0]
    file = CursorFile(
        cursor_path(tmp_path, "mimir"), sync_interval=1.0, clock=lambda: now[0]
    )
    assert file.load() is None
    assert file.save(Cursor(1, 16)) is True  # the first save is fsynced
    assert file.save(Cursor(1, 100)) is False
    assert file.unsynced
    assert file.load() == Cursor(1, 100)
    now[0] += 1.0
    assert file.save(Cursor(1, 200, 3)) is True
    assert not file.unsynced
    assert file.save(Cursor(2, 16), sync=True) is True
    assert CursorFile(file.path).load() == Cursor(2, 16)
    assert sorted(p.name for p in file.path.parent.iterdir()) == ["mimir.cursor"]


def test_a_damaged_cursor_file_is_ignored_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A torn or corrupted cursor reads as none: resend rather than skip."""
    path = cursor_path(tmp_path, "relay")
    path.parent.mkdir()
    path.write_bytes(encode_cursor(Cursor(7, 1234)).replace(b"1234", b"1235"))
    with caplog.at_level(logging.WARNING):
        assert CursorFile(path).load() is None
    assert "Ignoring damaged cursor file" in caplog.text
