"""Helpers for the HTTP tests: a StatsYard serving data, and a tiny client."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from statsyard.app import StatsYard
from statsyard.config import Config

TIMEOUT = 10.0
T0 = 1_699_999_980  # seconds, 2023-11-14 22:13:00 UTC; a multiple of 60

POINTS: Sequence[tuple[str, str, float, int]] = [
    *[
        ("servers.web1.cpu", "graphite", float(i), (T0 + 60 * i) * 1000)
        for i in range(10)
    ],
    *[
        ("servers.web1.mem", "graphite", 100.0 + i, (T0 + 60 * i) * 1000)
        for i in range(10)
    ],
    *[
        ("servers.db1.cpu", "graphite", 2.0 * i, (T0 + 60 * i) * 1000)
        for i in range(10)
    ],
    ("servers.db1", "graphite", 1.0, T0 * 1000),
    *[("disk.used", "web1", 10.0 + i, (T0 + 60 * i) * 1000) for i in range(10)],
    *[("disk.used", "web2", 20.0 + i, (T0 + 60 * i) * 1000) for i in range(10)],
    ("cpu;dc=eu", "web1", 5.0, T0 * 1000),
]
"""What the tests write: plain paths (default entity) and tagged series."""


@attrs.frozen
class Reply:
    """A received HTTP response."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Requests to one base URL with urllib; errors come back as replies."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.base = f"http://{address[0]}:{address[1]}"

    def request(
        self,
        path: str,
        params: Sequence[tuple[str, str]] | dict[str, str] = (),
        *,
        method: str = "GET",
    ) -> Reply:
        query = urllib.parse.urlencode(
            list(params.items()) if isinstance(params, dict) else list(params)
        )
        url = self.base + path
        data = None
        if method == "POST":
            data = query.encode("ascii")
        elif query:
            url += "?" + query
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return Reply(
                    response.status,
                    response.headers.get("Content-Type", ""),
                    response.read(),
                    dict(response.headers),
                )
        except urllib.error.HTTPError as error:
            return Reply(
                error.code,
                error.headers.get("Content-Type", ""),
                error.read(),
                dict(error.headers),
            )

    def get(
        self, path: str, params: Sequence[tuple[str, str]] | dict[str, str] = ()
    ) -> Reply:
        return self.request(path, params)


@contextmanager
def serving_yard(
    data_dir: Path,
    points: Sequence[tuple[str, str, float, int]] = POINTS,
    **options: Any,
) -> Iterator[tuple[StatsYard, Client]]:
    """A started StatsYard with HTTP on an ephemeral port, holding ``points``."""
    yard = StatsYard(
        Config.of(http={"enabled": True, "port": 0}, **options),
        data_dir=data_dir,
        ship_metrics=False,
    )
    with yard:
        yard.push_many(points)
        yard.flush()
        address = yard.http_address
        assert address is not None
        yield yard, Client(address)
