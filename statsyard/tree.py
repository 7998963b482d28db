"""YardTree: one StatsYard's supervision tree, wired in one place from its settings.

It holds what outlives the actors (the ledger, the queue's contents, the
storage handle the writer publishes, the table of living children, the
threads to join) and builds every child's :class:`ChildSpec` from the
settings tree: queue, Graphite listener, writer, consumer, extra children,
HTTP API, forwarders, shipper. Each child reaches its siblings through the
``StartContext`` the supervisor gives it (``ctx.siblings["queue"]``), never
through the host. :meth:`YardTree.start` starts the supervisor and reports a
failed start as the child's own error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pykka

from statsyard.exceptions import ChildStartError, NotRunningError, StatsYardError
from statsyard.forward import Forwarding
from statsyard.graphite.listener import GraphiteListener
from statsyard.http.options import HttpOptions
from statsyard.metrics.instruments import (
    ListenerInstruments,
    PipelineInstruments,
    register_pipeline_gauges,
)
from statsyard.metrics.process_stats import ProcessStats
from statsyard.metrics.stat_shipper import StatShipper
from statsyard.pipeline.blocking_queue import BlockingQueue
from statsyard.pipeline.ingest_consumer import (
    IngestConsumer,
    IngestFanOut,
    IngestObserver,
)
from statsyard.pipeline.ledger import Ledger, QueueContents
from statsyard.pipeline.storage_handle import StorageHandle
from statsyard.pipeline.timestamp_writer import FsyncPolicy, TimestampWriter
from statsyard.render import RenderSettings
from statsyard.supervision import (
    ChildSpec,
    ChildTable,
    StartContext,
    Supervisor,
    SupervisorExit,
    ThreadTracker,
)
from statsyard.supervision import ChildStartError as _SupervisionStartError

if TYPE_CHECKING:
    from statsyard.config import Config
    from statsyard.metrics import Registry

__all__ = [
    "CONSUMER",
    "GRAPHITE",
    "GRAPHITE_DRAIN",
    "HTTP",
    "QUEUE",
    "SHIPPER",
    "WRITER",
    "YardTree",
]

QUEUE = "queue"
WRITER = "writer"
CONSUMER = "consumer"
SHIPPER = "shipper"
GRAPHITE = "graphite"
HTTP = "http"

GRAPHITE_DRAIN = 5.0
"""Seconds the Graphite listener may take at stop to queue what it read."""

_START_JOIN = 30.0
"""Seconds to wait for the threads of a failed start to end."""


class _HostLink:
    """The supervisor's own link: records its thread, its start and its exit.

    The supervisor's exit is reported to the host through ``on_exit``; a
    failed start is reported here, as the supervisor's crash in ``on_start``.
    """

    def __init__(self, threads: ThreadTracker) -> None:
        self._threads = threads
        self._ready = threading.Event()
        self.start_error: BaseException | None = None

    def adopt(self, thread: threading.Thread) -> None:
        self._threads.add(thread)

    def started(self) -> None:
        self._ready.set()

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        if not self._ready.is_set():
            self.start_error = error
            self._ready.set()

    def wait_started(self, timeout: float | None) -> bool:
        """Wait for the supervisor's start to succeed or fail; False if neither."""
        return self._ready.wait(timeout)


class YardTree:
    """The children of one StatsYard and what outlives them, from its settings.

    Args:
        settings: the effective settings tree.
        registry: where metrics are recorded.
        extra_children: started after the consumer, before the HTTP API.
        ingest_observer: extra per-batch validation hooks.
        ready: whether the tree is up and the storage open (HTTP ``/-/ready``).
    """

    def __init__(
        self,
        settings: Config,
        *,
        registry: Registry,
        extra_children: Sequence[ChildSpec] = (),
        ingest_observer: IngestObserver | None = None,
        ready: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.data_dir = Path(settings.storage.data_dir)
        self._extra_children = tuple(extra_children)
        self._ready = ready
        self.ledger = Ledger()
        """pushed = written + invalid + lost + pending."""
        self.contents = QueueContents(capacity=settings.pipeline.queue_capacity)
        """The queue's points and parked callers; a restarted queue inherits them."""
        self.storage_handle = StorageHandle()
        """The storage the living writer publishes (read by queries and HTTP)."""
        self.table = ChildTable()
        """The living children by id, for callers outside the tree."""
        self.threads = ThreadTracker()
        """Every thread of the tree, joined at stop."""
        self._link: _HostLink | None = None
        capacity = settings.pipeline.queue_capacity
        self.forwarding = Forwarding(
            settings.forward,
            data_dir=self.data_dir,
            registry=registry,
            ingest_busy=lambda: self.contents.size * 2 >= capacity,
        )
        """The forwarders: settings, progress."""
        self._storage_options = settings.storage.open_options()
        if self.forwarding.retention is not None:
            self._storage_options["log_retention"] = self.forwarding.retention
        instrument = settings.metrics.instrument
        self._instruments = PipelineInstruments(registry) if instrument else None
        self._listener_instruments = (
            ListenerInstruments(registry)
            if instrument and settings.graphite.enabled
            else None
        )
        observers = [o for o in (self._instruments, ingest_observer) if o is not None]
        self._ingest_observer: IngestObserver | None = (
            observers[0]
            if len(observers) == 1
            else IngestFanOut(observers)
            if observers
            else None
        )

    # -- the children ---------------------------------------------------------

    def specs(self) -> list[ChildSpec]:
        """Every child's spec, in start order (every dependency points back)."""
        settings = self.settings
        # The listener needs only the queue, so it comes right after it: a
        # writer or consumer crash does not drop its connections.
        specs = [ChildSpec(QUEUE, self._start_queue)]
        if settings.graphite.enabled:
            specs.append(
                ChildSpec(GRAPHITE, self._start_graphite, shutdown=GRAPHITE_DRAIN + 5.0)
            )
        specs += [
            # Opening the data directory recovers it: as long as that takes.
            ChildSpec(WRITER, self._start_writer, start_timeout=None),
            ChildSpec(CONSUMER, self._start_consumer),
            *self._extra_children,
        ]
        if settings.http.enabled:
            specs.append(ChildSpec(HTTP, self._start_http, shutdown=15.0))
        specs += self.forwarding.specs(self.storage_handle)  # after http: a
        # forwarder crash then restarts only the shipper with it
        if settings.metrics.enabled:
            specs.append(ChildSpec(SHIPPER, self._start_shipper))
        for spec in specs:  # each child's restarts ship from the first interval, at 0
            self.registry.counter("supervisor.restarts", tags={"child": spec.id})
        return specs

    def _start_queue(self, ctx: StartContext) -> pykka.ActorRef[Any]:
        return BlockingQueue.start(
            contents=self.contents, ledger=self.ledger, link=ctx.link
        )

    def _start_graphite(self, ctx: StartContext) -> pykka.ActorRef[Any]:
        settings = self.settings.graphite
        return GraphiteListener.start(
            queue=ctx.siblings[QUEUE],
            host=settings.host,
            tcp_port=settings.tcp_port,
            udp_port=settings.udp_port,
            default_entity=settings.default_entity,
            max_line_length=settings.max_line_length,
            max_connections=settings.max_connections,
            idle_timeout=settings.idle_timeout,
            entity_tag=settings.entity_tag,
            templates=settings.templates,
            drain_timeout=GRAPHITE_DRAIN,
            observer=self._listener_instruments,
            progress=lambda: self.ledger.committed_upto,
            link=ctx.link,
        )

    def _start_writer(self, ctx: StartContext) -> pykka.ActorRef[Any]:
        storage = self.settings.storage
        return TimestampWriter.start(
            data_dir=self.data_dir,
            ledger=self.ledger,
            fsync=cast("FsyncPolicy", storage.fsync),
            fsync_interval=storage.fsync_interval,
            checkpoint_after=storage.checkpoint_after,
            storage_options=self._storage_options,
            observer=self._instruments,
            handle=self.storage_handle,
            link=ctx.link,
        )

    def _start_consumer(self, ctx: StartContext) -> pykka.ActorRef[Any]:
        return IngestConsumer.start(
            queue=ctx.siblings[QUEUE],
            writer=ctx.siblings[WRITER],
            ledger=self.ledger,
            batch_size=self.settings.pipeline.batch_size,
            observer=self._ingest_observer,
            link=ctx.link,
        )

    def http_options(self) -> HttpOptions:
        """The HTTP API's options, from the ``http``, ``graphite`` and ``render``
        settings."""
        settings = self.settings
        return HttpOptions(
            host=settings.http.host,
            port=settings.http.port,
            threads=settings.http.threads,
            default_entity=settings.graphite.default_entity,
            render=RenderSettings.from_config(settings),
        )

    def _start_http(self, ctx: StartContext) -> pykka.ActorRef[Any]:
        """The HTTP child: serves the API from the live storage (statsyard.http)."""
        # Imported when served: an embedded StatsYard without HTTP never loads it.
        from statsyard.http.http_server import HttpServer
        from statsyard.http.wiring import build_api

        options = self.http_options()
        api = build_api(
            options,
            storage=self.storage_handle.get,
            registry=self.registry,
            ready=self._ready,
        )
        return HttpServer.start(
            app=api,
            host=options.host,
            port=options.port,
            threads=options.threads,
            link=ctx.link,
        )

    def _start_shipper(self, ctx: StartContext) -> pykka.ActorRef[Any]:
        metrics = self.settings.metrics
        stats = (
            ProcessStats(mailboxes=self.table.mailboxes)
            if metrics.process_stats
            else None
        )
        return StatShipper.start(
            registry=self.registry,
            process_stats=stats,
            host=metrics.host,
            port=metrics.port,
            namespace=metrics.namespace,
            constant_tags=dict(metrics.tags),
            interval=metrics.interval,
            link=ctx.link,
        )

    # -- starting it ------------------------------------------------------------

    def start(
        self, on_exit: Callable[[SupervisorExit], None]
    ) -> pykka.ActorRef[Supervisor]:
        """Start the supervisor, which starts every child in order; return it.

        Call :meth:`wait_started` next: it reports whether every child started.
        """
        register_pipeline_gauges(self.registry, self.ledger, self.contents)
        self._link = _HostLink(self.threads)
        return Supervisor.start(
            specs=self.specs(),
            max_restarts=self.settings.pipeline.max_restarts,
            max_seconds=self.settings.pipeline.max_seconds,
            table=self.table,
            threads=self.threads,
            on_exit=on_exit,
            on_restart=self._count_restart,
            link=self._link,
        )

    def wait_started(self) -> None:
        """Return once every child has started; raise the error of one that did not.

        Each child's start is bounded by its spec (the writer's recovery is
        not), so the supervisor always reports success or failure. A child
        that fails fails the whole start (OTP): the children already started
        stop in reverse order, and the child's error is raised once their
        threads have ended.

        Raises:
            StatsYardError: a child could not start, e.g.
                :class:`~statsyard.exceptions.DataDirectoryInUseError` naming
                the directory, or :class:`~statsyard.exceptions.ChildStartError`
                (``__cause__``: the child's own error, e.g. a busy port's OSError).
        """
        link = self._link
        if link is None:
            raise NotRunningError("the tree was not started")
        link.wait_started(None)
        if link.start_error is None:
            return
        self.threads.join(_START_JOIN)
        error = link.start_error
        cause = error.__cause__
        if isinstance(cause, StatsYardError):
            raise cause from None  # it names the directory, port, ...
        if isinstance(error, _SupervisionStartError):
            raise ChildStartError(str(error), child_id=error.child_id) from cause
        if isinstance(error, StatsYardError):
            raise error
        raise NotRunningError(f"StatsYard could not start: {error}") from error

    def _count_restart(self, child_id: str) -> None:
        self.registry.counter("supervisor.restarts", tags={"child": child_id}).inc()
