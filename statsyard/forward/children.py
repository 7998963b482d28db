"""The forwarders of one StatsYard: settings checked, progress, retention, child specs.

:class:`Forwarding` is what ``app.py`` builds from its ``forward`` argument:
it checks the settings (a malformed destination is a
:class:`~statsyard.exceptions.ConfigError` before anything starts), owns what
must outlive actor restarts (each forwarder's progress and metrics), gives the
storage its log retention hook, and makes one child spec per forwarder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pykka

from statsyard.exceptions import ConfigError
from statsyard.forward.cursor import Cursor
from statsyard.forward.forwarder import Forwarder
from statsyard.forward.instruments import ForwardInstruments
from statsyard.forward.progress import ForwardProgress
from statsyard.forward.retention import ForwardRetention
from statsyard.forward.settings import ForwardSettings, parse_forward_tables
from statsyard.metrics import Registry
from statsyard.pipeline.storage_handle import StorageHandle
from statsyard.supervision import ChildSpec, StartContext
from statsyard.supervision.deadline import deadline_after, remaining

__all__ = ["Forwarding"]

logger = logging.getLogger(__name__)

SHUTDOWN_MARGIN = 5.0
"""Seconds a forwarder's shutdown deadline adds to its network timeout."""


class Forwarding:
    """Every forwarder of one instance.

    Args:
        forward: settings, or mappings of them (a ``[[forward]]`` array).
        data_dir: the data directory.
        registry: where the forwarders' metrics go.
        ingest_busy: True while ingest is saturated (forwarders then yield).

    Raises:
        ConfigError: a setting is malformed (every problem listed).
    """

    def __init__(
        self,
        forward: Sequence[ForwardSettings | Mapping[str, Any]],
        *,
        data_dir: str | os.PathLike[str],
        registry: Registry,
        ingest_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        settings, problems = parse_forward_tables(forward, "forward")
        if problems:
            raise ConfigError(problems)
        self._dir = Path(data_dir)
        self._ingest_busy = ingest_busy
        self._forwarders = {
            s.name: (s, ForwardProgress(s.name), ForwardInstruments(registry, s.name))
            for s in settings
        }
        self.retention = (
            ForwardRetention(self._dir, self._forwarders) if self._forwarders else None
        )
        """The storage's log retention hook (None without forwarders)."""

    def __bool__(self) -> bool:
        return bool(self._forwarders)

    @property
    def settings(self) -> tuple[ForwardSettings, ...]:
        """Every forwarder's settings, in order."""
        return tuple(entry[0] for entry in self._forwarders.values())

    def progress(self, name: str) -> ForwardProgress:
        """Forwarder ``name``'s progress.

        Raises:
            KeyError: no such forwarder.
        """
        return self._forwarders[name][1]

    def specs(self, storage: StorageHandle) -> list[ChildSpec]:
        """One child spec per forwarder, ids ``forward.<name>``."""
        specs = []
        for settings, progress, instruments in self._forwarders.values():

            def start(
                ctx: StartContext,
                settings: ForwardSettings = settings,
                progress: ForwardProgress = progress,
                instruments: ForwardInstruments = instruments,
            ) -> pykka.ActorRef[Any]:
                return Forwarder.start(
                    settings=settings,
                    data_dir=self._dir,
                    storage=storage,
                    progress=progress,
                    instruments=instruments,
                    ingest_busy=self._ingest_busy,
                    link=ctx.link,
                )

            specs.append(
                ChildSpec(
                    settings.child_id,
                    start,
                    shutdown=settings.timeout + SHUTDOWN_MARGIN,
                )
            )
        return specs

    def drain(self, target: Cursor, timeout: float | None = None) -> None:
        """At stop: let each forwarder deliver up to ``target`` within its deadline.

        Each waits at most its ``flush_deadline`` (and all together at most
        ``timeout`` seconds); a forwarder whose destination is failing is not
        waited for. What is left goes after the next start (logged).
        """
        end = deadline_after(timeout)
        for settings, progress, _instruments in self._forwarders.values():
            wait = settings.flush_deadline
            left = remaining(end)
            if left is not None:
                wait = min(wait, left)
            if wait <= 0:
                continue
            if not progress.wait_for(target, wait, unless_failing=True):
                logger.warning(
                    "Forwarder %s has not delivered everything at stop; the rest "
                    "goes after the next start",
                    settings.name,
                )

    def wait_delivered(self, target: Cursor, timeout: float | None) -> bool:
        """Wait until every forwarder delivered up to ``target``; False on timeout."""
        for _settings, progress, _instruments in self._forwarders.values():
            if not progress.wait_for(target, timeout):
                return False
        return True
