"""The hooks the ingest consumer calls per batch, apart from the consumer.

A module of its own so that code which only observes ingest (the ``stress``
command's validation timer, the metrics wiring) does not import the consumer
actor and Pykka with it.
"""

from __future__ import annotations

__all__ = ["IngestObserver"]


class IngestObserver:
    """Hooks the consumer calls per batch; the default does nothing.

    The metrics wiring overrides it to record validation time and counts.
    """

    def validated(self, points: int, invalid: int, seconds: float) -> None:
        """A batch of ``points`` was validated in ``seconds``."""
