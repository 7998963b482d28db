"""Process statistics under ``vm.``: the seed's ``ex_vmstats`` for Python.

:class:`ProcessStats` reads memory, CPU time, threads, file descriptors, the
garbage collector, live Pykka actors, mailbox lengths and uptime with psutil
and the standard library. The ``StatShipper`` calls :meth:`ProcessStats.samples`
on every interval and ships the result with the registry's samples.

Reading never raises: a section that fails (psutil refused, a mailbox callable
broke) is skipped, logged once, and counted in the ``vm.errors`` sample
(tag ``section``).
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

import psutil
import pykka

from statsyard._ratelimit import warn_once
from statsyard.metrics.sample import Sample

__all__ = ["ProcessStats"]

logger = logging.getLogger(__name__)

_NOT_IN_NAME: Final = re.compile(r"[^A-Za-z0-9_]+")


def _mailbox_metric(name: str) -> str:
    part = _NOT_IN_NAME.sub("_", name).strip("_") or "unnamed"
    return f"vm.mailbox.{part}"


class ProcessStats:
    """Collects ``vm.*`` samples about the current process.

    Args:
        mailboxes: returns each StatsYard actor's name and its mailbox length;
            names become ``vm.mailbox.<name>`` (characters other than letters,
            digits and ``_`` turn into ``_``).
        clock: monotonic seconds, for ``vm.uptime``.
    """

    def __init__(
        self,
        *,
        mailboxes: Callable[[], Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mailboxes = mailboxes
        self._clock = clock
        self._created = clock()
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}
        self._warned = warn_once(logger)

    def samples(self) -> list[Sample]:
        """Read every ``vm.*`` value now. Never raises.

        Returns:
            ``vm.memory.rss`` and ``vm.memory.vms`` (bytes), ``vm.cpu.user``
            and ``vm.cpu.system`` (seconds), ``vm.threads``, ``vm.open_fds``,
            ``vm.gc.count.genN``, ``vm.gc.collections.genN``,
            ``vm.gc.collected.genN``, ``vm.gc.uncollectable.genN``,
            ``vm.actors.live``, ``vm.mailbox.<name>``, ``vm.uptime`` (seconds)
            and, once a section has failed, ``vm.errors`` per section.
        """
        out: list[Sample] = []
        for section, read in (
            ("process", self._process_samples),
            ("gc", self._gc_samples),
            ("actors", self._actor_samples),
            ("mailboxes", self._mailbox_samples),
        ):
            try:
                out.extend(read())
            except Exception as error:  # noqa: BLE001 (deliberate: psutil, callbacks)
                self._failed(section, error)
        out.append(Sample("vm.uptime", self._clock() - self._created))
        with self._lock:
            out.extend(
                Sample("vm.errors", float(n), (("section", section),))
                for section, n in sorted(self._errors.items())
            )
        return out

    def _failed(self, section: str, error: Exception) -> None:
        with self._lock:
            self._errors[section] = self._errors.get(section, 0) + 1
        self._warned.warning(
            section,
            "Could not read vm.%s stats: %r (counted in vm.errors; logged once)",
            section,
            error,
        )

    def _process_samples(self) -> list[Sample]:
        process = self._process
        with process.oneshot():
            memory = process.memory_info()
            cpu = process.cpu_times()
            threads = process.num_threads()
            fds = process.num_fds() if hasattr(process, "num_fds") else None
        out = [
            Sample("vm.memory.rss", float(memory.rss)),
            Sample("vm.memory.vms", float(memory.vms)),
            Sample("vm.cpu.user", float(cpu.user)),
            Sample("vm.cpu.system", float(cpu.system)),
            Sample("vm.threads", float(threads)),
        ]
        if fds is not None:
            out.append(Sample("vm.open_fds", float(fds)))
        return out

    @staticmethod
    def _gc_samples() -> list[Sample]:
        out = [
            Sample(f"vm.gc.count.gen{gen}", float(count))
            for gen, count in enumerate(gc.get_count())
        ]
        for gen, stats in enumerate(gc.get_stats()):
            out.append(
                Sample(f"vm.gc.collections.gen{gen}", float(stats["collections"]))
            )
            out.append(Sample(f"vm.gc.collected.gen{gen}", float(stats["collected"])))
            out.append(
                Sample(f"vm.gc.uncollectable.gen{gen}", float(stats["uncollectable"]))
            )
        return out

    @staticmethod
    def _actor_samples() -> list[Sample]:
        return [Sample("vm.actors.live", float(len(pykka.ActorRegistry.get_all())))]

    def _mailbox_samples(self) -> list[Sample]:
        if self._mailboxes is None:
            return []
        return [
            Sample(_mailbox_metric(name), float(length))
            for name, length in sorted(self._mailboxes().items())
        ]
