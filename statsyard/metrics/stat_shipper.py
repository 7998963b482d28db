"""The StatShipper actor: ships the registry to a DogStatsD agent as gauges.

The seed keeps "the shipping of metrics out of the data path" with a
dedicated, supervised StatShipper. Every ``interval`` it collects the
:class:`~statsyard.metrics.Registry` (draining histograms) and the optional
:class:`~statsyard.metrics.process_stats.ProcessStats`, and sends every sample as a
**gauge** through :class:`datadog.DogStatsd`: the agent then passes values
through instead of aggregating them a second time.

Lines are buffered by the client into datagrams under the usual UDP payload
size and flushed at the end of each shipment. The socket is the shipper's
own, non-blocking, handed to the client, so that every send failure is seen
and counted here: the client would otherwise swallow it. An absent agent, a
closed port or a socket error never crashes the shipper and never blocks:
it is counted in the counter ``shipper.errors`` (tag ``kind``) and logged
once per kind.

The schedule is kept by a timer thread that ``tell``\\ s the actor a private
tick message on a monotonic grid (``due += interval``): the send time never
shifts it, and ticks that come too late are skipped and counted in
``shipper.ticks_missed``.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from statsyard._ratelimit import warn_once
from statsyard._ticker import Ticker
from statsyard.exceptions import InvalidArgumentError
from statsyard.metrics._dogstatsd_compat import CountingSocket, attach
from statsyard.metrics.histogram import SHIPPER_READER
from statsyard.metrics.process_stats import ProcessStats
from statsyard.metrics.registry import Registry
from statsyard.metrics.sample import Sample, ShippableStats
from statsyard.supervision import ChildActor, Link

if TYPE_CHECKING:
    from datadog.dogstatsd.base import DogStatsd

__all__ = ["ERROR_KINDS", "StatShipper", "StatShipperProxy"]

logger = logging.getLogger(__name__)

TICKER_THREAD_NAME: Final = "statsyard-stat-shipper-ticker"
"""Name of the timer thread, to check none is left behind."""

ERROR_KINDS: Final = ("resolve", "connect", "econnrefused", "eagain", "emsgsize")
"""``shipper.errors`` kinds that ship from the first interval, at 0; a rarer
errno shows up as its own kind when it first happens."""


@attrs.frozen(slots=True)
class _Tick:
    """Private message from the timer thread: ship the interval ending at ``due``."""

    due: float


class StatShipper(ChildActor):
    """Ships every metric of a registry to DogStatsD, as gauges, every interval.

    Args:
        registry: the metrics to ship; also receives ``shipper.errors`` and
            ``shipper.ticks_missed``. All state lives there, so a restarted
            shipper carries on.
        host: the agent's host name or address.
        port: the agent's UDP port.
        namespace: prefix of every metric name (``statsyard.ingest.written``);
            empty for none.
        constant_tags: tags added to every metric.
        interval: seconds between shipments.
        shippable: which histogram and meter stats ship.
        process_stats: if given, its ``vm.*`` samples ship too.
        link: where the exit is reported (the supervisor).

    Raises:
        MetricError: a bad interval, port or tag.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        host: str = "127.0.0.1",
        port: int = 8125,
        namespace: str = "statsyard",
        constant_tags: Mapping[str, str] | None = None,
        interval: float = 1.0,
        shippable: ShippableStats | None = None,
        process_stats: ProcessStats | None = None,
        link: Link | None = None,
    ) -> None:
        super().__init__(link=link)
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise InvalidArgumentError(
                f"interval must be a number of seconds, got {interval!r}",
                value=interval,
            )
        if not math.isfinite(interval) or interval <= 0:
            raise InvalidArgumentError(
                f"interval must be > 0 seconds, got {interval!r}", value=interval
            )
        if (
            isinstance(port, bool)
            or not isinstance(port, int)
            or not 1 <= port <= 65535
        ):
            raise InvalidArgumentError(
                f"port must be an int in 1..65535, got {port!r}", value=port
            )
        self._registry = registry
        self._host = host
        self._port = port
        self._namespace = namespace or None
        self._constant_tags = [f"{k}:{v}" for k, v in (constant_tags or {}).items()]
        self._interval = float(interval)
        self._shippable = shippable if shippable is not None else ShippableStats()
        self._process_stats = process_stats
        self._clock = registry.clock
        self._statsd: DogStatsd | None = None
        self._socket: CountingSocket | None = None
        self._ticker: Ticker | None = None
        self._warned = warn_once(logger)
        self._lines_sent = 0

    # -- lifecycle (actor thread) ----------------------------------------------

    def on_child_start(self) -> None:
        """Create the client and start the ticker; on failure, close the socket.

        Pykka calls no ``on_failure`` when ``on_start`` raises, so a failed
        start releases what it opened here.
        """
        try:
            self._start()
        except BaseException:
            self._stop_ticker()
            self._close()
            raise

    def _start(self) -> None:
        # Imported here, not at module level: the datadog package imports its
        # HTTP API client (requests, urllib3), some 70 ms that only a running
        # shipper needs (issue 13).
        from datadog.dogstatsd.base import DogStatsd

        for kind in ERROR_KINDS:
            self._registry.counter("shipper.errors", tags={"kind": kind})
        self._statsd = DogStatsd(
            host=self._host,
            port=self._port,
            namespace=self._namespace,
            constant_tags=self._constant_tags,
            disable_telemetry=True,  # our own counters tell the story
            track_instance=False,  # the socket is ours; no fork hooks
        )
        self._connect()
        self._ticker = Ticker(
            self.actor_ref,
            _Tick,
            self._interval,
            name=TICKER_THREAD_NAME,
            clock=self._clock,
            on_missed=self._registry.counter("shipper.ticks_missed").inc,
        )
        self._ticker.start()
        logger.info(
            "Shipping metrics to %s:%d every %ss",
            self._host,
            self._port,
            self._interval,
        )

    def on_child_stop(self) -> None:
        """Stop the ticker, make a final shipment, close the socket."""
        self._stop_ticker()
        self.ship_now()
        self._close()

    def on_child_failure(self, error: BaseException | None) -> None:
        """Stop the ticker and close the socket; no shipment after a crash."""
        self._stop_ticker()
        self._close()

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None

    def _close(self) -> None:
        if self._statsd is not None:
            self._statsd.close_socket()
            self._statsd = None
        self._socket = None

    # -- messages (actor thread) ----------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Ship on a tick; anything else crashes the actor."""
        if isinstance(message, _Tick):
            self._on_tick(message)
            return None
        return super().on_receive(message)

    def _on_tick(self, tick: _Tick) -> None:
        lateness = self._clock() - tick.due
        if lateness >= self._interval:
            # The actor was busy for a whole interval: the next tick is
            # already queued or due. Skip this one rather than pile up.
            self._registry.counter("shipper.ticks_missed").inc()
            return
        self.ship_now()

    def ship_now(self) -> int:
        """Collect and send every sample now.

        Returns:
            How many samples went out in datagrams the OS accepted (0 if the
            agent's address cannot be resolved or every send failed).
        """
        samples = self._registry.collect(
            shippable=self._shippable, reader=SHIPPER_READER
        )
        if self._process_stats is not None:
            samples.extend(self._process_stats.samples())
        if self._socket is None and not self._connect():
            return 0
        statsd = self._statsd
        assert statsd is not None
        self._lines_sent = 0
        statsd.open_buffer()
        try:
            for sample in samples:
                statsd.gauge(sample.name, sample.value, tags=_tag_list(sample))
        finally:
            statsd.close_buffer()
        logger.debug("Shipped %d of %d samples", self._lines_sent, len(samples))
        return self._lines_sent

    # -- socket ------------------------------------------------------------------

    def _connect(self) -> bool:
        assert self._statsd is not None
        try:
            infos = socket.getaddrinfo(self._host, self._port, 0, socket.SOCK_DGRAM)
        except OSError as error:
            self._error("resolve", error)
            return False
        # Prefer IPv4, as the datadog client does.
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        family, kind, proto, _, address = infos[0]
        sock = CountingSocket(
            family, kind, proto, on_sent=self._sent, on_error=self._error
        )
        try:
            sock.setblocking(False)
            sock.connect(address)
        except OSError as error:
            sock.close()
            self._error("connect", error)
            return False
        self._socket = sock
        attach(self._statsd, sock)
        return True

    def _sent(self, datagram: bytes) -> None:
        self._lines_sent += datagram.count(b"\n") + (not datagram.endswith(b"\n"))

    def _error(self, kind: str, error: OSError) -> None:
        self._registry.counter("shipper.errors", tags={"kind": kind}).inc()
        self._warned.warning(
            kind,
            "Cannot ship metrics to %s:%d (%s): %s; counted in shipper.errors, "
            "logged once per kind",
            self._host,
            self._port,
            kind,
            error,
        )


def _tag_list(sample: Sample) -> list[str] | None:
    if not sample.tags:
        return None
    return [f"{key}:{value}" for key, value in sample.tags]


class StatShipperProxy(ActorMemberMixin, pykka.ActorProxy[StatShipper]):
    """Typed proxy: ``cast(StatShipperProxy, ref.proxy())``."""

    ship_now = proxy_method(StatShipper.ship_now)
