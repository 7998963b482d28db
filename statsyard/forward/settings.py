"""One forwarder's settings: a ``[[forward]]`` table, or the embedded constructor's.

:func:`parse_forward_tables` checks every table and reports every problem at
once (with "did you mean" for unknown keys), like the rest of the
configuration; a malformed destination stops start-up (exit status 2), an
unreachable one does not (it is retried).
"""

from __future__ import annotations

import difflib
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from statsyard.exceptions import ConfigError

__all__ = [
    "ENTITY_AS",
    "KINDS",
    "STARTS",
    "ForwardSettings",
    "parse_forward_tables",
    "split_address",
]

Kind = Literal["prometheus", "graphite"]
KINDS: Final = ("prometheus", "graphite")
STARTS: Final = ("now", "beginning")
ENTITY_AS: Final = ("tag", "prefix", "suffix", "drop")

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_GRAPHITE_TAG: Final = re.compile(r"[A-Za-z0-9_.\-]+")
MIB: Final = 1024 * 1024

_COMMON: Final = (
    "name",
    "kind",
    "start",
    "max_samples",
    "max_bytes",
    "timeout",
    "min_backoff",
    "max_backoff",
    "backlog_max_bytes",
    "cursor_sync_interval",
    "flush_deadline",
)
_ONLY: Final[Mapping[str, tuple[str, ...]]] = {
    "prometheus": (
        "url",
        "entity_label",
        "extra_labels",
        "headers",
        "username",
        "password_file",
        "bearer_token_file",
        "tls_verify",
        "tls_ca_file",
    ),
    "graphite": ("address", "entity_as", "entity_tag"),
}


@attrs.frozen
class ForwardSettings:
    """Where and how one forwarder ships what the writer acknowledged.

    Build it from a mapping with :meth:`from_mapping` (which checks everything
    and names each problem), or directly; :func:`parse_forward_tables` checks
    a whole ``[[forward]]`` array.
    """

    name: str
    """Unique name: the child id ``forward.<name>``, the metric tag, the cursor file."""
    kind: Kind
    """``prometheus`` (remote write 1.0) or ``graphite`` (plaintext over TCP)."""
    url: str = ""
    """prometheus: the remote write endpoint, ``http(s)://host:port/path``."""
    address: str = ""
    """graphite: ``host:port`` of a plaintext (line) receiver."""
    entity_label: str = "entity"
    """prometheus: the label that carries the entity (e.g. ``instance``)."""
    extra_labels: Mapping[str, str] = attrs.field(factory=dict)
    """prometheus: labels added to every series."""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """prometheus: extra HTTP headers (e.g. the tenant: ``X-Scope-OrgID``)."""
    entity_as: str = "tag"
    """graphite: ``tag`` (``metric;entity=E``), ``prefix``, ``suffix`` or ``drop``."""
    entity_tag: str = "entity"
    """graphite: the tag name when ``entity_as = "tag"``."""
    start: str = "now"
    """First start without a cursor: ``now`` or ``beginning`` (the logs kept)."""
    max_samples: int = 5000
    """Most samples in one request (batch)."""
    max_bytes: int = 4 * MIB
    """Most bytes in one request body before compression."""
    timeout: float = 10.0
    """Seconds to connect, and to wait for each answer."""
    min_backoff: float = 0.05
    """First retry delay, in seconds; doubled per attempt up to max_backoff."""
    max_backoff: float = 5.0
    """Longest retry delay, in seconds."""
    backlog_max_bytes: int = 1024 * MIB
    """Compacted log bytes kept for this forwarder; older unsent ones are dropped."""
    cursor_sync_interval: float = 1.0
    """Seconds between fsyncs of the cursor (it is written after every batch)."""
    flush_deadline: float = 5.0
    """At stop, seconds to let it deliver what is left (0: none; a failing one
    is not waited for); the rest goes after the next start."""
    username: str = ""
    """prometheus: basic auth user (with ``password_file``)."""
    password_file: str = ""
    """prometheus: file holding the basic auth password."""
    bearer_token_file: str = ""
    """prometheus: file holding a bearer token (read before each request)."""
    tls_verify: bool = True
    """prometheus: verify the server's TLS certificate."""
    tls_ca_file: str = ""
    """prometheus: CA bundle to verify it with (default: the system's)."""

    @property
    def child_id(self) -> str:
        """The supervisor's id of this forwarder's actor."""
        return f"forward.{self.name}"

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], label: str = "forward"
    ) -> ForwardSettings:
        """Check one table and build the settings.

        Raises:
            ConfigError: listing every problem, each prefixed with ``label``.
        """
        settings, problems = _parse(table, label)
        if problems or settings is None:
            raise ConfigError(problems)
        return settings

    def rows(self) -> list[tuple[str, Any]]:
        """``(key, value)`` of the settings that apply to this kind, for display."""
        keys = [*_COMMON, *_ONLY[self.kind]]
        return [(key, getattr(self, key)) for key in keys]


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as ``(host, port)``.

    Raises:
        ValueError: not of that form, or the port is not 1..65535.
    """
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port with a port in 1..65535, got {address!r}")
    return host, int(port)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _parse(
    table: Mapping[str, Any], label: str
) -> tuple[ForwardSettings | None, list[str]]:
    problems: list[str] = []
    if not isinstance(table, Mapping):
        return None, [f"{label}: expected a table, got {table!r}"]
    kind = table.get("kind")
    if kind not in KINDS:
        problems.append(
            f"{label}.kind: expected one of {', '.join(map(repr, KINDS))}, got {kind!r}"
        )
        allowed = [*_COMMON, *(k for keys in _ONLY.values() for k in keys)]
    else:
        allowed = [*_COMMON, *_ONLY[kind]]
    for key in table:
        if key not in allowed:
            others = [k for k, keys in _ONLY.items() if key in keys]
            hint = (
                f" (only for kind = {others[0]!r})"
                if others
                else _did_you_mean(key, allowed)
            )
            problems.append(f"{label}: unknown setting {key!r}{hint}")
    values = {key: table[key] for key in allowed if key in table}

    def bad(key: str, expected: str) -> None:
        problems.append(f"{label}.{key}: expected {expected}, got {values[key]!r}")

    name = values.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(
            f"{label}.name: expected 1 to 64 letters, digits, '_', '.' or '-' "
            f"(starting with a letter or digit), got {name!r}"
        )
    if "start" in values and values["start"] not in STARTS:
        bad("start", "'now' or 'beginning'")
    for key, minimum in (
        ("max_samples", 1),
        ("max_bytes", 1024),
        ("backlog_max_bytes", 0),
    ):
        value = values.get(key)
        if key in values and (
            isinstance(value, bool) or not isinstance(value, int) or value < minimum
        ):
            bad(key, f"an integer >= {minimum}")
    for key in ("timeout", "min_backoff", "max_backoff", "cursor_sync_interval"):
        if key in values and not (_is_number(values[key]) and values[key] > 0):
            bad(key, "a number of seconds > 0")
    if "flush_deadline" in values and not (
        _is_number(values["flush_deadline"]) and values["flush_deadline"] >= 0
    ):
        bad("flush_deadline", "a number of seconds >= 0")
    defaults = attrs.fields(ForwardSettings)
    lo: Any = values.get("min_backoff", defaults.min_backoff.default)
    hi: Any = values.get("max_backoff", defaults.max_backoff.default)
    if _is_number(lo) and _is_number(hi) and lo > hi:
        problems.append(f"{label}: min_backoff ({lo}) is above max_backoff ({hi})")
    for key in ("username", "password_file", "bearer_token_file", "tls_ca_file"):
        if key in values and not isinstance(values[key], str):
            bad(key, "a string")
    if "tls_verify" in values and not isinstance(values["tls_verify"], bool):
        bad("tls_verify", "true or false")
    if kind == "prometheus":
        _check_prometheus(values, label, problems, bad)
    elif kind == "graphite":
        _check_graphite(values, label, problems, bad)
    if problems:
        return None, problems
    for key in (
        "timeout",
        "min_backoff",
        "max_backoff",
        "cursor_sync_interval",
        "flush_deadline",
    ):
        if key in values:
            values[key] = float(values[key])
    for key in ("extra_labels", "headers"):
        if key in values:
            values[key] = dict(sorted(values[key].items()))
    return ForwardSettings(**values), []


def _check_prometheus(
    values: dict[str, Any], label: str, problems: list[str], bad: Any
) -> None:
    url = values.get("url")
    if url is None:
        problems.append(f"{label}.url: required for kind = 'prometheus'")
    else:
        parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if (
            parsed is None
            or parsed.scheme not in ("http", "https")
            or not (parsed.hostname)
        ):
            bad("url", "an http:// or https:// URL with a host")
        else:
            try:
                parsed.port  # noqa: B018 (raises on a bad port)
            except ValueError:
                bad("url", "an http:// or https:// URL with a valid port")
    entity_label = values.get("entity_label", "entity")
    if (
        not isinstance(entity_label, str)
        or not _LABEL.fullmatch(entity_label)
        or entity_label.startswith("__")
    ):
        bad("entity_label", "a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no __)")
    extra = values.get("extra_labels", {})
    if not isinstance(extra, Mapping) or not all(
        isinstance(k, str)
        and _LABEL.fullmatch(k)
        and not k.startswith("__")
        and isinstance(v, str)
        and v
        for k, v in extra.items()
    ):
        bad("extra_labels", "a table of label names to non-empty strings")
    elif entity_label in extra:
        problems.append(
            f"{label}.extra_labels: must not set the entity label {entity_label!r}"
        )
    headers = values.get("headers", {})
    reserved = {"authorization", "content-encoding", "content-type", "content-length"}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str)
        and re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", k)
        and k.lower() not in reserved
        and not k.lower().startswith("x-prometheus-remote-write")
        and isinstance(v, str)
        and "\n" not in v
        and "\r" not in v
        for k, v in headers.items()
    ):
        bad(
            "headers",
            "a table of header names to one-line strings (not Authorization, "
            "Content-* or X-Prometheus-Remote-Write-*)",
        )
    if bool(values.get("username")) != bool(values.get("password_file")):
        problems.append(f"{label}: username and password_file go together")
    if values.get("username") and values.get("bearer_token_file"):
        problems.append(
            f"{label}: basic auth (username) and bearer_token_file exclude each other"
        )


def _check_graphite(
    values: dict[str, Any], label: str, problems: list[str], bad: Any
) -> None:
    address = values.get("address")
    if address is None:
        problems.append(f"{label}.address: required for kind = 'graphite'")
    else:
        try:
            split_address(address if isinstance(address, str) else "")
        except ValueError:
            bad("address", "host:port with a port in 1..65535")
    if "entity_as" in values and values["entity_as"] not in ENTITY_AS:
        bad("entity_as", "one of " + ", ".join(map(repr, ENTITY_AS)))
    tag = values.get("entity_tag", "entity")
    if not isinstance(tag, str) or not _GRAPHITE_TAG.fullmatch(tag) or tag == "name":
        bad("entity_tag", "a Graphite tag name (letters, digits, _.-; not 'name')")


def _did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_forward_tables(
    tables: Any, source: str = "forward"
) -> tuple[tuple[ForwardSettings, ...], list[str]]:
    """Check a ``[[forward]]`` array (or the embedded argument).

    Args:
        tables: a sequence of mappings or :class:`ForwardSettings`.
        source: where they come from, for messages (e.g. the file name).

    Returns:
        ``(settings, problems)``: every problem found, each naming the table
        (``forward[1] "mimir"``) and the setting.
    """
    if isinstance(tables, Mapping) or not isinstance(tables, Iterable):
        return (), [
            f"{source}: forward must be an array of tables [[forward]], got {tables!r}"
        ]
    found: list[ForwardSettings] = []
    problems: list[str] = []
    for index, table in enumerate(tables):
        if isinstance(table, ForwardSettings):
            settings: ForwardSettings | None = table
        else:
            name = table.get("name") if isinstance(table, Mapping) else None
            label = f"{source}: forward[{index}]" + (
                f" {name!r}" if isinstance(name, str) else ""
            )
            settings, more = _parse(table, label)
            problems.extend(more)
        if settings is None:
            continue
        if any(other.name == settings.name for other in found):
            problems.append(
                f"{source}: forward[{index}]: name {settings.name!r} is used twice"
            )
            continue
        found.append(settings)
    return tuple(found), problems
