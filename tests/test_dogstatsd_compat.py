"""Loud failures for when the datadog client changes what the shipper relies on.

The shipper hands :class:`datadog.DogStatsd` its own socket through the
client's ``socket`` attribute (``statsyard/metrics/_dogstatsd_compat.py``).
If a datadog release stops sending through it, or starts raising or hiding
what our socket reports, these tests fail first.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from importlib import metadata

import pytest
from datadog.dogstatsd.base import DogStatsd
from packaging.requirements import Requirement

from statsyard.metrics._dogstatsd_compat import CountingSocket, attach

WAIT = 5.0


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(WAIT)
        yield sock


def _client(port: int) -> DogStatsd:
    return DogStatsd(
        host="127.0.0.1",
        port=port,
        disable_telemetry=True,
        track_instance=False,
    )


def test_the_client_sends_every_buffered_datagram_through_our_socket(
    receiver: socket.socket,
) -> None:
    """Gauges in a buffer leave as datagrams through the attached socket."""
    port = receiver.getsockname()[1]
    sent: list[bytes] = []
    errors: list[str] = []
    sock = CountingSocket(
        socket.AF_INET,
        socket.SOCK_DGRAM,
        0,
        on_sent=sent.append,
        on_error=lambda kind, _error: errors.append(kind),
    )
    sock.connect(("127.0.0.1", port))
    statsd = _client(port)
    attach(statsd, sock)
    statsd.open_buffer()
    statsd.gauge("a", 1, tags=["k:v"])
    statsd.gauge("b", 2.5)
    statsd.close_buffer()
    datagram = receiver.recv(65536)
    statsd.close_socket()
    assert datagram == b"a:1|g|#k:v\nb:2.5|g\n"
    assert sent == [datagram]
    assert errors == []
    assert statsd.socket is None or statsd.socket is sock


def test_a_send_failure_reaches_us_and_does_not_replace_the_socket() -> None:
    """A refused datagram is reported to on_error; the client keeps our socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    errors: list[str] = []
    sock = CountingSocket(
        socket.AF_INET,
        socket.SOCK_DGRAM,
        0,
        on_sent=lambda _data: None,
        on_error=lambda kind, _error: errors.append(kind),
    )
    sock.connect(("127.0.0.1", port))
    statsd = _client(port)
    attach(statsd, sock)
    for _ in range(3):  # the ICMP refusal surfaces on a later send
        statsd.open_buffer()
        statsd.gauge("a", 1)
        statsd.close_buffer()
    assert statsd.socket is sock
    statsd.close_socket()
    assert "econnrefused" in errors


def test_the_installed_datadog_is_within_the_bounds_we_declare() -> None:
    """pyproject.toml bounds datadog above; the tests above ran on this version."""
    requirement = next(
        Requirement(text)
        for text in metadata.requires("statsyard") or []
        if Requirement(text).name == "datadog"
    )
    assert any(spec.operator == "<" for spec in requirement.specifier)
    assert requirement.specifier.contains(metadata.version("datadog"))
