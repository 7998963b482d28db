"""Sends batches as Graphite plaintext lines over TCP, one connection per batch.

A line is ``<path> <value> <timestamp>\\n`` with the timestamp in seconds
(fractional when the point's milliseconds are not whole seconds). The path
carries the entity according to ``entity_as``:

- ``tag`` (default): ``metric;entity=E`` (Graphite 1.1 tags; the tag name is
  ``entity_tag``);
- ``prefix``: ``E.metric``; ``suffix``: ``metric.E``; ``drop``: ``metric``
  (series of several entities then collide).

Plaintext has no acknowledgement, so each batch goes on its own connection:
connect, send everything, half-close (``shutdown(SHUT_WR)``), then wait for
the receiver to close its side. A receiver closes only after reading up to
our end of stream, so a batch counts as sent once it has been read in full;
any failure before that (refused, reset, timeout) is retried on a new
connection (it may repeat the batch: at least once).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Final

from statsyard.exceptions import RetryableSendError
from statsyard.forward.log_reader import Piece
from statsyard.forward.settings import ForwardSettings, split_address

__all__ = ["GraphiteSender", "graphite_path", "graphite_timestamp"]

_CACHE_LIMIT: Final = 100_000


def graphite_path(metric: str, entity: str, entity_as: str, tag: str) -> str:
    """The Graphite path of series ``(metric, entity)``."""
    if entity_as == "tag":
        value = entity.replace(";", "_").replace("~", "_")
        return f"{metric};{tag}={value}"
    if entity_as == "prefix":
        return f"{entity}.{metric}"
    if entity_as == "suffix":
        return f"{metric}.{entity}"
    return metric


def graphite_timestamp(ms: int) -> str:
    """Milliseconds as Graphite's seconds: whole when possible."""
    seconds, rest = divmod(ms, 1000)
    return str(seconds) if not rest else f"{seconds}.{rest:03d}"


class GraphiteSender:
    """Delivers chunks to one plaintext receiver (the forwarder's thread).

    Args:
        settings: the forwarder's settings (``kind = "graphite"``).
    """

    def __init__(self, settings: ForwardSettings) -> None:
        self._host, self._port = split_address(settings.address)
        self._timeout = settings.timeout
        self._entity_as = settings.entity_as
        self._tag = settings.entity_tag
        self._paths: dict[tuple[str, str], str] = {}
        self._sock: socket.socket | None = None
        self.where = settings.address
        """The receiver, for logs."""

    def cost(self, metric: str, entity: str) -> tuple[int, int]:
        """Bytes of a line of this series (an upper bound), and 0 per series."""
        return len(metric) + len(entity) + len(self._tag) + 48, 0

    def _path(self, key: tuple[str, str]) -> str:
        path = self._paths.get(key)
        if path is None:
            if len(self._paths) >= _CACHE_LIMIT:
                self._paths.clear()
            path = self._paths[key] = graphite_path(*key, self._entity_as, self._tag)
        return path

    def lines(self, pieces: Sequence[Piece]) -> bytes:
        """The plaintext lines of ``pieces``, in log order."""
        out: list[str] = []
        for piece in pieces:
            paths = {
                number: self._path(piece.keys[number]) for number in set(piece.numbers)
            }
            time.sleep(0)  # let a thread waiting for the GIL (ingest) run now
            out.extend(
                f"{paths[number]} {value!r} {graphite_timestamp(ts)}\n"
                for number, ts, value in zip(
                    piece.numbers, piece.timestamps, piece.values, strict=True
                )
            )
        return "".join(out).encode("utf-8", "replace")

    def send(self, pieces: Sequence[Piece]) -> None:
        """Deliver one batch and wait until the receiver has read all of it.

        Raises:
            RetryableSendError: refused, reset or timed out.
        """
        data = self.lines(pieces)
        try:
            sock = socket.create_connection(
                (self._host, self._port), timeout=self._timeout
            )
        except TimeoutError as exc:
            raise RetryableSendError(
                f"connecting timed out: {exc}", reason="timeout"
            ) from exc
        except OSError as exc:
            raise RetryableSendError(
                f"cannot connect: {exc}", reason="connection"
            ) from exc
        self._sock = sock
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass  # plaintext receivers answer nothing; read to their close
        except TimeoutError as exc:
            raise RetryableSendError(f"timed out: {exc}", reason="timeout") from exc
        except OSError as exc:
            raise RetryableSendError(
                f"connection failed: {exc}", reason="connection"
            ) from exc
        finally:
            self._sock = None
            sock.close()

    def close(self) -> None:
        """Abort a send in progress (may be called from another thread)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: nothing to abort
