"""Test helpers: a real DogStatsD listener to check what StatsYard (or your code) ships.

>>> with DogStatsdCapture() as agent:              # doctest: +SKIP
...     shipper = StatShipper.start(registry=registry, port=agent.port)
...     agent.wait_for(lambda lines: any(l.name == "statsyard.vm.threads"
...                                      for l in lines), timeout=5)

:class:`DogStatsdCapture` binds a UDP socket on 127.0.0.1 with an ephemeral
port and parses every datagram with :func:`parse_dogstatsd`. Waiting happens
on the socket (``select``) with a deadline, never with sleeps.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["DogStatsdCapture", "StatsdLine", "parse_dogstatsd"]

_MAX_DATAGRAM = 65_535


@attrs.frozen(slots=True)
class StatsdLine:
    """One metric line of a DogStatsD datagram: ``name:value|type|@rate|#tags``."""

    name: str
    """Full name, namespace included."""
    value: float
    """The number sent."""
    type: str
    """``g``, ``c``, ``ms``, ``h``, ``d`` or ``s``."""
    tags: tuple[str, ...] = ()
    """Tags as sent, e.g. ``("child:writer", "env:prod")``."""
    sample_rate: float = 1.0
    """``@rate`` if present."""

    @property
    def tag_map(self) -> dict[str, str]:
        """Tags as a mapping; a tag without ``:`` maps to ``""``."""
        out: dict[str, str] = {}
        for tag in self.tags:
            key, _, value = tag.partition(":")
            out[key] = value
        return out


def parse_dogstatsd(datagram: bytes) -> list[StatsdLine]:
    """Parse one datagram holding one metric line or several, newline-separated.

    Event (``_e{``) and service-check (``_sc|``) lines are skipped. Unknown
    extension fields (``|c:``, ``|T``, ``|e:``, ``|card:``) are ignored.

    Raises:
        ValueError: a line is not valid DogStatsD metric syntax; the message
            quotes it.
    """
    out: list[StatsdLine] = []
    for raw in datagram.decode("utf-8").split("\n"):
        line = raw.strip()
        if not line or line.startswith(("_e{", "_sc|")):
            continue
        head, *fields = line.split("|")
        name, sep, values = head.partition(":")
        if not sep or not name or not values or not fields or not fields[0]:
            raise ValueError(f"not a DogStatsD metric line: {line!r}")
        metric_type = fields[0]
        rate = 1.0
        tags: tuple[str, ...] = ()
        for field in fields[1:]:
            if field.startswith("@"):
                rate = _number(field[1:], line)
            elif field.startswith("#"):
                tags = tuple(tag for tag in field[1:].split(",") if tag)
        for value in values.split(":"):  # protocol 1.1 packs several values
            out.append(StatsdLine(name, _number(value, line), metric_type, tags, rate))
    return out


def _number(text: str, line: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"bad number {text!r} in DogStatsD line {line!r}") from None


class DogStatsdCapture:
    """A DogStatsD agent stand-in on ``127.0.0.1:<ephemeral port>``.

    Pass ``port`` to listen on a given one instead (e.g. to bring an agent
    back on the port a shipper already sends to).

    Every line received is kept in :attr:`lines` (in arrival order) until
    :meth:`clear`; raw datagrams in :attr:`datagrams`. Use it as a context
    manager or call :meth:`close`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((host, port))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise
        self.host: str = host
        self.port: int = self._sock.getsockname()[1]
        self.lines: list[StatsdLine] = []
        self.datagrams: list[bytes] = []

    def __enter__(self) -> DogStatsdCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket; later datagrams are refused by the OS."""
        self._sock.close()

    def clear(self) -> None:
        """Forget what was received so far (after draining the socket)."""
        self._drain()
        self.lines.clear()
        self.datagrams.clear()

    def _drain(self) -> None:
        while True:
            try:
                data = self._sock.recv(_MAX_DATAGRAM)
            except BlockingIOError:
                return
            self.datagrams.append(data)
            self.lines.extend(parse_dogstatsd(data))

    def wait_for(
        self,
        predicate: Callable[[Sequence[StatsdLine]], bool],
        timeout: float = 5.0,
    ) -> list[StatsdLine]:
        """Receive until ``predicate(lines)`` holds for the lines so far.

        Args:
            predicate: called with every line received since :meth:`clear`.
            timeout: seconds to wait at most.

        Returns:
            A copy of the lines received so far.

        Raises:
            TimeoutError: the predicate still fails after ``timeout``; the
                message says how many lines arrived.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            if predicate(self.lines):
                return list(self.lines)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"DogStatsD capture on port {self.port}: condition not met "
                    f"after {timeout}s ({len(self.lines)} lines received)"
                )
            select.select([self._sock], [], [], remaining)

    def values(self, name: str) -> list[float]:
        """Values received so far for the metric ``name``, in arrival order."""
        self._drain()
        return [line.value for line in self.lines if line.name == name]
