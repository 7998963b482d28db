"""Retention: which whole segments go (age, size), and which covered logs may go."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from statsyard.storage._catalog import Catalog, SegmentInfo
from statsyard.storage._files import index_name, segment_name, wal_name
from statsyard.storage._log_watch import LogRetention

logger = logging.getLogger("statsyard.storage")


def segments_to_remove(
    segments: dict[int, SegmentInfo],
    *,
    max_age_ms: int | None,
    max_bytes: int | None,
    now_ms: int,
) -> list[tuple[SegmentInfo, str]]:
    """The oldest segments that are too old or over the size limit, with why.

    Never the newest segment (the one being written). Oldest means by the
    newest point held (then by number): a merged segment, numbered above
    the segments written while it was merged, holds older points. Stops at
    the first segment that may stay.
    """
    if max_age_ms is None and max_bytes is None:
        return []
    oldest_allowed = now_ms - max_age_ms if max_age_ms is not None else None
    total = sum(s.size for s in segments.values())
    doomed: list[tuple[SegmentInfo, str]] = []
    newest = max(segments, default=0)
    by_age = sorted(
        (s for s in segments.values() if s.seq != newest),
        key=lambda s: (s.max_ts is None, s.max_ts or 0, s.seq),
    )
    for segment in by_age:
        too_old = (
            oldest_allowed is not None
            and segment.max_ts is not None
            and segment.max_ts < oldest_allowed
        )
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            break
        doomed.append((segment, "too old" if too_old else "over the size limit"))
        total -= segment.size
    return doomed


def remove_segment(
    directory: Path, catalog: Catalog, segment: SegmentInfo, reason: str
) -> None:
    """Take a segment out of the index, then delete its files.

    A file that cannot be removed is logged at ERROR and left behind: out of
    the index already, the next open applies retention to it again.
    """
    catalog.drop_segment(segment.seq)
    for name in (index_name(segment.seq), segment_name(segment.seq)):
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("Could not remove %s (%s): %s", name, reason, exc)
    logger.info(
        "Retention removed segment %d (%s): %d bytes", segment.seq, reason, segment.size
    )


def logs_to_keep(
    directory: Path, hook: LogRetention | None, seqs: Sequence[int]
) -> set[int]:
    """Of covered logs ``seqs``, those the log retention hook says to keep.

    A hook that raises keeps them all (rather than lose what a reader needs).
    """
    if hook is None or not seqs:
        return set()
    sizes = []
    for seq in seqs:
        try:
            sizes.append((seq, (directory / wal_name(seq)).stat().st_size))
        except FileNotFoundError:
            continue
    try:
        return set(hook.keep(sizes)) & set(seqs)
    except Exception:  # deliberate: a broken hook keeps logs rather than lose them
        logger.exception("Log retention hook failed; keeping covered logs")
        return set(seqs)


def remove_covered_logs(
    directory: Path, hook: LogRetention | None, candidates: Sequence[int]
) -> tuple[list[int], bool]:
    """Delete the covered logs ``candidates`` that no log reader still needs.

    Returns:
        The logs kept (asked for by the hook, or failing to go: retried at
        the next checkpoint), and whether any file was removed.
    """
    kept = logs_to_keep(directory, hook, candidates)
    still = [s for s in candidates if s in kept]
    removed = False
    for seq in [s for s in candidates if s not in kept]:
        try:
            (directory / wal_name(seq)).unlink()
        except OSError as exc:
            logger.error("Could not remove covered log %s: %s", wal_name(seq), exc)
            still.append(seq)
            continue
        removed = True
    return still, removed
