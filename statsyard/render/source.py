"""Where the render engine reads series, and how StatsYard series look to Graphite.

The engine reads through a :class:`SeriesSource`: the HTTP layer gives it
one over its live :class:`~statsyard.storage.Storage` handle
(:class:`StorageSource`, which also works on ``Storage.open_readonly``).

Naming: a series whose entity is the default entity
(``graphite.default_entity``) is the plain Graphite path ``metric``, tags
``{"name": metric}``; any other series is the Graphite 1.1 tagged series
``metric;entity=E``, tags ``{"entity": E, "name": metric}`` (graphite-web's
order: the name tag last). Plain path
globs match only default-entity series, as graphite-web's finder shows
plain paths; ``seriesByTag()`` reaches every series.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from statsyard.exceptions import BadArgumentError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from statsyard.storage import Storage

__all__ = [
    "FetchedColumns",
    "SeriesKey",
    "SeriesSource",
    "StorageSource",
    "TagExpression",
    "compile_path_glob",
    "parse_series_name",
    "parse_tag_expression",
    "series_name",
    "series_tags",
]

SeriesKey = tuple[str, str]
"""``(metric, entity)`` of a stored series."""
FetchedColumns = tuple[
    "Sequence[int] | NDArray[np.int64]", "Sequence[float] | NDArray[np.float64]"
]
"""A fetch's timestamps (ms) and values: numpy arrays or sequences."""


class SeriesSource(Protocol):
    """What the render engine reads: series names and their raw points."""

    def series(self, pattern: str) -> list[SeriesKey]:
        """At least every stored ``(metric, entity)`` whose metric matches ``pattern``.

        ``pattern`` is a Graphite glob (``*``, ``?``, ``[...]``, ``{a,b}``) or
        ``*`` for everything; returning more is fine (the engine filters).
        """

    def fetch(
        self, metric: str, entity: str, start_ms: int, end_ms: int
    ) -> FetchedColumns:
        """The series' points in ``[start_ms, end_ms)``, sorted by time, as
        two columns: timestamps (ms) and values."""


class StorageSource:
    """A :class:`SeriesSource` over a :class:`~statsyard.storage.Storage`.

    Reads go straight to the storage handle (never through an actor), so a
    live writer's handle and ``Storage.open_readonly`` both work.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def series(self, pattern: str) -> list[SeriesKey]:
        """Every stored series whose metric matches the glob (``*``: all)."""
        try:
            return self._storage.series(pattern)
        except ValueError:
            # The storage's glob dialect refused it; list all, the engine filters.
            return self._storage.series("*")

    def fetch(
        self, metric: str, entity: str, start_ms: int, end_ms: int
    ) -> FetchedColumns:
        """The points of ``metric`` for ``entity`` in ``[start_ms, end_ms)``, as
        numpy columns (no Python object per point: a render may read millions)."""
        return self._storage.query_columns(metric, entity, start_ms, end_ms)


# -- naming ---------------------------------------------------------------------


def series_name(metric: str, entity: str, default_entity: str) -> str:
    """The Graphite name of a stored series (plain path or ``metric;entity=E``)."""
    if entity == default_entity:
        return metric
    return f"{metric};entity={entity}"


def series_tags(metric: str, entity: str, default_entity: str) -> dict[str, str]:
    """The Graphite tags of a stored series."""
    if entity == default_entity:
        return {"name": metric}
    return {"entity": entity, "name": metric}


def parse_series_name(name: str) -> dict[str, str]:
    """Tags of a Graphite series name: ``a.b;k=v`` gives ``k=v, name=a.b``.

    As graphite-web's ``TaggedSeries.parse``: the name tag comes last.

    Raises:
        BadArgumentError: a tag has no ``=``.
    """
    metric, *pairs = name.split(";")
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadArgumentError(f"bad tag {pair!r} in series name {name!r}")
        tags[key] = value
    tags["name"] = metric
    return tags


# -- plain path globs -------------------------------------------------------------


@lru_cache(maxsize=512)
def compile_path_glob(pattern: str) -> re.Pattern[str]:
    """A regex matching the metric names a graphite-web path expression finds.

    Each dotted node matches one node: ``*`` any run of characters, ``?``
    one, ``[abc]``/``[a-z]``/``[!a]`` a class, ``{x,y}`` an alternative
    (which may itself hold globs). Nothing matches across a dot.

    Raises:
        BadArgumentError: an unbalanced ``[`` or ``{``.
    """
    try:
        return re.compile(_translate(pattern, 0, len(pattern)), re.DOTALL)
    except re.error as exc:
        raise BadArgumentError(f"bad path expression {pattern!r}: {exc}") from None


def _translate(pattern: str, low: int, high: int) -> str:
    out: list[str] = []
    i = low
    while i < high:
        char = pattern[i]
        if char == "*":
            out.append(r"[^.]*")
        elif char == "?":
            out.append(r"[^.]")
        elif char == "[":
            close = pattern.find(
                "]", i + 2 if pattern[i + 1 : i + 2] in "!^" else i + 1
            )
            if close == -1 or close >= high:
                raise BadArgumentError(f"unbalanced '[' in path expression {pattern!r}")
            body = pattern[i + 1 : close]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            escaped = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append("[" + ("^." if negate else "") + escaped + "]")
            i = close + 1
            continue
        elif char == "{":
            close = pattern.find("}", i + 1)
            if close == -1 or close >= high:
                raise BadArgumentError(
                    f"unbalanced '{{' in path expression {pattern!r}"
                )
            alternatives: list[str] = []
            start = i + 1
            for j in range(i + 1, close + 1):
                if j == close or pattern[j] == ",":
                    alternatives.append(_translate(pattern, start, j))
                    start = j + 1
            out.append("(?:" + "|".join(alternatives) + ")")
            i = close + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


# -- seriesByTag ------------------------------------------------------------------

_OPERATORS: Final = ("!=~", "=~", "!=", "=")


@attrs.frozen
class TagExpression:
    """One ``seriesByTag`` condition: ``t=v``, ``t!=v``, ``t=~re`` or ``t!=~re``."""

    tag: str
    operator: str
    value: str
    regex: re.Pattern[str] | None = attrs.field(default=None, eq=False)

    def matches(self, tags: dict[str, str]) -> bool:
        """Whether a series with ``tags`` passes (a missing tag reads as ``""``)."""
        actual = tags.get(self.tag, "")
        if self.operator == "=":
            return actual == self.value
        if self.operator == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.match(actual) is not None
        return found if self.operator == "=~" else not found

    def matches_empty(self) -> bool:
        """Whether a series without the tag passes (graphite-web's rule)."""
        return self.matches({})


def parse_tag_expression(text: str) -> TagExpression:
    """Parse one ``seriesByTag`` argument.

    Raises:
        BadArgumentError: no operator, an empty tag, or a bad regex.
    """
    for operator in _OPERATORS:
        index = _operator_index(text, operator)
        if index is None:
            continue
        tag, value = text[:index].strip(), text[index + len(operator) :].strip()
        if not tag:
            break
        regex = None
        if "~" in operator:
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise BadArgumentError(
                    f"bad regex in seriesByTag expression {text!r}: {exc}"
                ) from None
        return TagExpression(tag, operator, value, regex)
    raise BadArgumentError(
        f"bad seriesByTag expression {text!r}: expected tag=value, tag!=value, "
        "tag=~regex or tag!=~regex"
    )


def _operator_index(text: str, operator: str) -> int | None:
    """Where the first ``=`` belongs to ``operator`` (``a!=~b`` is ``!=~``)."""
    equal = text.find("=")
    if equal == -1:
        return None
    negated = equal > 0 and text[equal - 1] == "!"
    regex = text[equal + 1 : equal + 2] == "~"
    start = equal - 1 if negated else equal
    found = ("!" if negated else "") + "=" + ("~" if regex else "")
    return start if found == operator else None
