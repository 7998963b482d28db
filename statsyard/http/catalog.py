"""The stored series as graphite-web sees them: a tree of paths and a tag index.

A series whose entity is the default entity is the plain Graphite path
``metric``; every other series is the tagged series ``metric;entity=E``
(:func:`series_name`). Plain paths make the tree that
``/metrics/find`` walks; tagged series make the tags ``/tags`` lists (``name``
is the part before the first ``;``, as in Graphite 1.1).

A :class:`Catalog` is a snapshot taken per request from the live storage.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from statsyard.storage._query import compile_glob

__all__ = ["Catalog", "Node", "parse_tags", "series_name"]

NAME_TAG: Final = "name"


@attrs.frozen
class Node:
    """One answer of ``/metrics/find``: a branch or a leaf of the path tree.

    Attributes:
        path: the full dotted path of the node.
        name: its last part.
        is_leaf: a stored series has exactly this path.
    """

    path: str
    name: str
    is_leaf: bool


def series_name(metric: str, entity: str, default_entity: str) -> str:
    """The Graphite name of a stored series: plain, or tagged with its entity.

    Tags are in Graphite's canonical order (sorted by name).
    """
    if entity == default_entity:
        return metric
    tags = parse_tags(metric)
    name = tags.pop(NAME_TAG)
    tags["entity"] = entity
    return name + "".join(f";{key}={tags[key]}" for key in sorted(tags))


def parse_tags(series: str) -> dict[str, str]:
    """The tags of a tagged series name, ``name`` included (Graphite 1.1)."""
    name, *pairs = series.split(";")
    tags = {NAME_TAG: name}
    for pair in pairs:
        key, _, value = pair.partition("=")
        tags[key] = value
    return tags


class Catalog:
    """Every stored series name, split into plain paths and tagged series.

    Args:
        names: the Graphite names of the stored series.
    """

    def __init__(self, names: Iterable[str]) -> None:
        plain: list[str] = []
        tagged: list[str] = []
        for name in names:
            (tagged if ";" in name else plain).append(name)
        self.plain = sorted(set(plain))
        """Plain dotted paths, sorted."""
        self.tagged = sorted(set(tagged))
        """Tagged series names, sorted."""
        self._tags = [parse_tags(name) for name in self.tagged]

    # -- the path tree ----------------------------------------------------------

    def find(self, query: str) -> list[Node]:
        """The branches and leaves matching a Graphite glob, sorted by path.

        A path ``a.b.c`` makes the nodes ``a`` and ``a.b`` (branches) and
        ``a.b.c`` (a leaf); ``query`` is matched against nodes with as many
        parts as it has.

        Raises:
            ValueError: the glob is malformed.
        """
        depth = query.count(".") + 1
        regex = compile_glob(query)
        found: dict[tuple[str, bool], Node] = {}
        for path in self.plain:
            parts = path.split(".")
            if len(parts) < depth:
                continue
            prefix = ".".join(parts[:depth])
            is_leaf = len(parts) == depth
            if (prefix, is_leaf) in found or not regex.fullmatch(prefix):
                continue
            found[(prefix, is_leaf)] = Node(prefix, parts[depth - 1], is_leaf)
        return sorted(found.values(), key=lambda node: (node.path, node.is_leaf))

    # -- the tag index ------------------------------------------------------------

    def tag_names(self) -> list[str]:
        """Every tag of the tagged series, sorted."""
        return sorted({tag for tags in self._tags for tag in tags})

    def tag_values(self, tag: str) -> list[tuple[str, int]]:
        """``(value, number of series)`` for each value of ``tag``, sorted."""
        counts: dict[str, int] = {}
        for tags in self._tags:
            value = tags.get(tag)
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        return sorted(counts.items())

    def tags_of(self, names: Sequence[str]) -> list[dict[str, str]]:
        """The tags of each of ``names`` (tagged series names)."""
        return [parse_tags(name) for name in names]


def filter_anchored(items: Iterable[str], pattern: str | None) -> list[str]:
    """Items matching graphite-web's tag ``filter`` (a regex anchored at the start).

    Raises:
        ValueError: the pattern is not a valid regular expression.
    """
    if not pattern:
        return list(items)
    if not pattern.startswith("^"):
        pattern = "^(" + pattern + ")"
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"bad filter {pattern!r}: {error}") from None
    return [item for item in items if regex.match(item)]


def limited_sorted(items: Iterable[str], limit: int) -> list[str]:
    """The first ``limit`` distinct items in sorted order."""
    result: list[str] = []
    for item in items:
        index = bisect.bisect_left(result, item)
        if index < len(result) and result[index] == item:
            continue
        result.insert(index, item)
        if len(result) > limit:
            del result[-1]
    return result
