"""Each forwarder's metrics, in the instance's registry (tag ``forwarder``).

See ``docs/metrics.md``: ``forward.samples_sent``, ``forward.batches_sent``,
``forward.batches_failed`` (tag ``reason``), ``forward.dropped`` (samples, tag
``reason``), ``forward.retries``, ``forward.lag_seconds``,
``forward.pending_bytes``, ``forward.pending_points`` and the timer
``forward.send_us``.
"""

from __future__ import annotations

from statsyard.metrics import Registry

__all__ = ["ForwardInstruments"]


class ForwardInstruments:
    """The metrics of forwarder ``name``; recording never raises."""

    def __init__(self, registry: Registry, name: str) -> None:
        self._registry = registry
        self._tags = {"forwarder": name}
        tags = self._tags
        self.samples_sent = registry.counter("forward.samples_sent", tags=tags)
        self.batches_sent = registry.counter("forward.batches_sent", tags=tags)
        self.retries = registry.counter("forward.retries", tags=tags)
        self.lag_seconds = registry.gauge("forward.lag_seconds", tags=tags)
        self.pending_bytes = registry.gauge("forward.pending_bytes", tags=tags)
        self.pending_points = registry.gauge("forward.pending_points", tags=tags)
        self.send_us = registry.timed("forward.send_us", tags=tags)

    def failed(self, reason: str) -> None:
        """One delivery attempt failed for ``reason``."""
        self._registry.counter(
            "forward.batches_failed", tags={**self._tags, "reason": reason}
        ).inc()

    def dropped(self, reason: str, samples: int) -> None:
        """``samples`` will never be delivered, for ``reason``."""
        self._registry.counter(
            "forward.dropped", tags={**self._tags, "reason": reason}
        ).inc(samples)

    def dropped_count(self, reason: str) -> int:
        """Samples dropped so far for ``reason``."""
        return self._registry.counter(
            "forward.dropped", tags={**self._tags, "reason": reason}
        ).value

    def failed_count(self, reason: str) -> int:
        """Failed attempts so far for ``reason``."""
        return self._registry.counter(
            "forward.batches_failed", tags={**self._tags, "reason": reason}
        ).value
