"""Tests of statsyard.metrics.process_stats: the vm.* samples."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pykka
import pytest

from statsyard.metrics import Sample
from statsyard.metrics.process_stats import ProcessStats


class Idle(pykka.ThreadingActor):
    """An actor that does nothing, to be counted."""


@pytest.fixture
def idle_actor() -> Iterator[pykka.ActorRef[Idle]]:
    ref = Idle.start()
    yield ref
    ref.stop(timeout=5)


def by_name(samples: list[Sample]) -> dict[str, float]:
    return {s.name: s.value for s in samples if not s.tags}


def test_vm_samples_are_present_and_plausible(idle_actor: pykka.ActorRef[Idle]) -> None:
    """Memory, CPU, threads, fds, GC, live actors: all there, all sane."""
    stats = by_name(ProcessStats().samples())
    assert stats["vm.memory.rss"] > 1_000_000
    assert stats["vm.memory.vms"] >= stats["vm.memory.rss"]
    assert stats["vm.cpu.user"] > 0
    assert stats["vm.cpu.system"] >= 0
    assert stats["vm.threads"] >= 2  # this one and the actor's
    assert stats["vm.open_fds"] >= 3
    assert stats["vm.actors.live"] >= 1
    for gen in (0, 1, 2):
        assert stats[f"vm.gc.count.gen{gen}"] >= 0
        assert stats[f"vm.gc.collections.gen{gen}"] >= 0
        assert stats[f"vm.gc.collected.gen{gen}"] >= 0
        assert stats[f"vm.gc.uncollectable.gen{gen}"] >= 0
    assert stats["vm.uptime"] >= 0
    assert "vm.errors" not in stats


def test_uptime_counts_from_creation_on_the_given_clock() -> None:
    """vm.uptime is seconds since the collector was created."""
    now = [50.0]
    collector = ProcessStats(clock=lambda: now[0])
    now[0] = 62.5
    assert by_name(collector.samples())["vm.uptime"] == 12.5


def test_mailbox_lengths_ship_under_sanitized_names() -> None:
    """Each actor's mailbox is vm.mailbox.<name>, the name made metric-safe."""
    collector = ProcessStats(mailboxes=lambda: {"writer": 3, "ingest-consumer/1": 0})
    stats = by_name(collector.samples())
    assert stats["vm.mailbox.writer"] == 3
    assert stats["vm.mailbox.ingest_consumer_1"] == 0


def test_a_failing_mailbox_reader_is_skipped_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One broken section never hides the others."""

    def broken() -> dict[str, int]:
        raise pykka.ActorDeadError("gone")

    collector = ProcessStats(mailboxes=broken)
    with caplog.at_level(logging.WARNING, logger="statsyard.metrics.process_stats"):
        collector.samples()
        samples = collector.samples()
    assert Sample("vm.errors", 2.0, (("section", "mailboxes"),)) in samples
    assert by_name(samples)["vm.memory.rss"] > 0
    assert [r.getMessage() for r in caplog.records].count(
        "Could not read vm.mailboxes stats: ActorDeadError('gone') "
        "(counted in vm.errors; logged once)"
    ) == 1
