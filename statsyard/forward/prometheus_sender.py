"""Sends remote write requests over HTTP(S) with urllib3, and sorts out the answer.

One keep-alive connection per forwarder, a timeout on connecting and on every
read, no automatic retries or redirects (the forwarder decides):

- 2xx: delivered;
- 429 and 5xx, connection errors, timeouts, TLS errors:
  :class:`~statsyard.exceptions.RetryableSendError`;
- any other status (400 "out of order sample", 401, 404, 3xx):
  :class:`~statsyard.exceptions.RejectedBatchError` — retrying would fail
  the same way.

Credentials: basic auth (``username`` + ``password_file``) or a bearer token
(``bearer_token_file``), both read from their file before each request, so a
rotated secret is picked up without a restart. TLS certificates are verified
unless ``tls_verify = false``.
"""

from __future__ import annotations

import logging
import ssl
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import urllib3
from urllib3.exceptions import (
    HTTPError,
    NewConnectionError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from statsyard.exceptions import RejectedBatchError, RetryableSendError
from statsyard.forward.log_reader import Piece
from statsyard.forward.remote_write import CONTENT_HEADERS, RemoteWriteEncoder
from statsyard.forward.settings import ForwardSettings

__all__ = ["PrometheusSender"]

logger = logging.getLogger(__name__)

_BODY_SHOWN: Final = 300
"""Bytes of an error answer kept for the log."""


class PrometheusSender:
    """Delivers chunks to one remote write endpoint (the forwarder's thread).

    Args:
        settings: the forwarder's settings (``kind = "prometheus"``).
    """

    def __init__(self, settings: ForwardSettings) -> None:
        self._settings = settings
        self._encoder = RemoteWriteEncoder(
            entity_label=settings.entity_label, extra_labels=settings.extra_labels
        )
        parts = urllib.parse.urlsplit(settings.url)
        self._path = parts.path or "/"
        if parts.query:
            self._path += "?" + parts.query
        options: dict[str, Any] = {"maxsize": 1, "block": False, "retries": False}
        if parts.scheme == "https":
            options["cert_reqs"] = (
                ssl.CERT_REQUIRED if settings.tls_verify else ssl.CERT_NONE
            )
            if settings.tls_ca_file:
                options["ca_certs"] = settings.tls_ca_file
            if not settings.tls_verify:
                options["assert_hostname"] = False
        self._pool = urllib3.connection_from_url(settings.url, **options)
        self._timeout = urllib3.Timeout(connect=settings.timeout, read=settings.timeout)
        self._lock = threading.Lock()
        self.where = f"{parts.scheme}://{parts.netloc}{self._path}"
        """The endpoint, for logs (credentials never appear in it)."""

    def cost(self, metric: str, entity: str) -> tuple[int, int]:
        """Request bytes of a sample and of a series (the log reader's bound)."""
        return self._encoder.cost(metric, entity)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "statsyard-forwarder", **self._settings.headers}
        headers.update(CONTENT_HEADERS)
        settings = self._settings
        if settings.bearer_token_file:
            token = Path(settings.bearer_token_file).read_text().strip()
            headers["Authorization"] = f"Bearer {token}"
        elif settings.username:
            password = Path(settings.password_file).read_text().rstrip("\n")
            headers.update(
                urllib3.make_headers(basic_auth=f"{settings.username}:{password}")
            )
        return headers

    def send(self, pieces: Sequence[Piece]) -> None:
        """Deliver one batch.

        Raises:
            RetryableSendError: worth retrying.
            RejectedBatchError: refused for good.
        """
        body = self._encoder.encode(pieces)
        try:
            headers = self._headers()
        except OSError as exc:
            raise RetryableSendError(
                f"cannot read the credentials file: {exc}", reason="credentials"
            ) from exc
        try:
            response = self._pool.urlopen(
                "POST",
                self._path,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=self._timeout,
                preload_content=True,
                release_conn=True,
            )
        except SSLError as exc:
            raise RetryableSendError(f"TLS error: {exc}", reason="tls") from exc
        except NewConnectionError as exc:
            raise RetryableSendError(
                f"cannot connect: {exc}", reason="connection"
            ) from exc
        except Urllib3Timeout as exc:
            raise RetryableSendError(f"timed out: {exc}", reason="timeout") from exc
        except (HTTPError, OSError) as exc:
            raise RetryableSendError(
                f"connection failed: {exc}", reason="connection"
            ) from exc
        status = response.status
        if 200 <= status < 300:
            return
        text = response.data[:_BODY_SHOWN].decode("utf-8", "replace").strip()
        message = f"HTTP {status}: {text}"
        if status == 429 or status >= 500:
            raise RetryableSendError(message, reason=f"http_{status}")
        raise RejectedBatchError(message, reason=f"http_{status}")

    def close(self) -> None:
        """Close the connection (may be called from another thread)."""
        self._pool.close()
