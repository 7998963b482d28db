"""The stored series as graphite-web sees them: a tree of paths and a tag index.

Naming is the render engine's (:func:`statsyard.render.series_name`): a
series whose entity is the default entity is the plain Graphite path
``metric``; every other series is the tagged series ``metric;entity=E``.
Plain paths make the tree that ``/metrics/find`` walks. The tag API lists
the tags ``seriesByTag`` matches (:func:`statsyard.render.series_tags`):
``name`` for every series and ``entity`` for the tagged ones, so that
Grafana's tag editor offers exactly what ``seriesByTag`` can find.

A :class:`Catalog` is a snapshot taken per request from the live storage.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

import attrs

from statsyard.exceptions import BadArgumentError
from statsyard.render.source import (
    SeriesKey,
    compile_path_glob,
    parse_tag_expression,
    series_name,
    series_tags,
)

__all__ = ["Catalog", "Node", "filter_anchored", "limited_sorted"]


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


class Catalog:
    """Every stored series with its Graphite name and tags.

    Args:
        keys: the stored ``(metric, entity)`` pairs.
        default_entity: the entity whose series are plain Graphite paths.
    """

    def __init__(self, keys: Iterable[SeriesKey], default_entity: str) -> None:
        entries = sorted(
            (series_name(metric, entity, default_entity), (metric, entity))
            for metric, entity in set(keys)
        )
        self.names = [name for name, _ in entries]
        """Every series' Graphite name, sorted."""
        self.plain = [
            metric
            for _, (metric, entity) in entries
            if entity == default_entity and ";" not in metric
        ]
        """The plain dotted paths that make the tree, sorted."""
        self._tags = [
            (name, series_tags(metric, entity, default_entity))
            for name, (metric, entity) in entries
        ]

    # -- the path tree ----------------------------------------------------------

    def find(self, query: str) -> list[Node]:
        """The branches and leaves matching a Graphite glob, sorted by path.

        A path ``a.b.c`` makes the nodes ``a`` and ``a.b`` (branches) and
        ``a.b.c`` (a leaf); ``query`` is matched against nodes with as many
        parts as it has.

        Raises:
            BadArgumentError: the glob is malformed.
        """
        depth = query.count(".") + 1
        regex = compile_path_glob(query)
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

    # -- the tag index (the tags seriesByTag matches) --------------------------------

    def tag_names(self) -> list[str]:
        """Every tag of the series, sorted."""
        return sorted({tag for _, tags in self._tags for tag in tags})

    def tag_values(self, tag: str) -> list[tuple[str, int]]:
        """``(value, number of series)`` for each value of ``tag``, sorted."""
        counts: dict[str, int] = {}
        for _, tags in self._tags:
            value = tags.get(tag)
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        return sorted(counts.items())

    def match(self, exprs: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
        """``(name, tags)`` of the series matching every tag expression.

        The expressions and rules are ``seriesByTag``'s: a missing tag reads
        as empty, and at least one expression must need a non-empty value.

        Raises:
            BadArgumentError: a malformed expression, or none needs a value.
        """
        expressions = [parse_tag_expression(expr) for expr in exprs]
        if all(expression.matches_empty() for expression in expressions):
            raise BadArgumentError(
                "at least one tag expression must require a non-empty value"
            )
        return [
            (name, tags)
            for name, tags in self._tags
            if all(expression.matches(tags) for expression in expressions)
        ]


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
