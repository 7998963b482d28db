"""Fixtures shared by the whole suite: every actor a test starts is stopped."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pykka
import pytest

from statsyard.supervision import Link


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    """Stop whatever actors a test left running, even when it failed."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=10)


class RecordingLink(Link):
    """A fake supervisor link: records exits and sets an event for each."""

    def __init__(self) -> None:
        self.exits: list[tuple[bool, BaseException | None]] = []
        self.exited_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def adopt(self, thread: threading.Thread) -> None:
        self.threads.append(thread)

    def started(self) -> None:
        pass

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        self.exits.append((crashed, error))
        self.exited_event.set()


@pytest.fixture
def link() -> RecordingLink:
    """A fresh recording link."""
    return RecordingLink()
