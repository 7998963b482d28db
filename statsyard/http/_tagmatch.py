"""graphite-web's tag expressions (``tag=v``, ``tag!=v``, ``tag=~re``, ``tag!=~re``).

Used by the tag API (``/tags/findSeries`` and the auto-completers' ``expr``)
to pick tagged series, with graphite-web's rules: a missing tag has the
empty value, regular expressions are anchored at the start, and at least
one expression must require a non-empty value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from statsyard.http.catalog import parse_tags

__all__ = ["expression_tags", "match_series"]

_SPEC: Final = re.compile(r"^([^;!=]+)(!?=~?)([^;]*)$")


def _parse(expr: str) -> tuple[str, str, str]:
    found = _SPEC.match(expr)
    if found is None:
        raise ValueError(f"Invalid tagspec {expr}")
    return found.group(1), found.group(2), found.group(3)


def expression_tags(exprs: Sequence[str]) -> set[str]:
    """The tags the expressions test.

    Raises:
        ValueError: an expression is malformed.
    """
    return {_parse(expr)[0] for expr in exprs}


def match_series(names: Sequence[str], exprs: Sequence[str]) -> list[str]:
    """The names (tagged series) matching every expression, in order.

    Raises:
        ValueError: an expression or regex is malformed, or none needs a value.
    """
    tests: list[tuple[str, bool, str | None, re.Pattern[str] | None]] = []
    needs_value = False
    for expr in exprs:
        tag, operator, spec = _parse(expr)
        if operator in ("=~", "!=~"):
            try:
                regex = re.compile(spec)
            except re.error as error:
                raise ValueError(f"Invalid regex in tagspec {expr}: {error}") from None
            matches_empty = regex.match("") is not None
            positive = operator == "=~"
            needs_value |= positive != matches_empty
            tests.append((tag, positive, None, regex))
        else:
            positive = operator == "="
            needs_value |= positive == (spec != "")
            tests.append((tag, positive, spec, None))
    if not needs_value:
        raise ValueError("At least one tagspec must not match the empty string")
    found = []
    for name in names:
        tags = parse_tags(name)
        for tag, positive, exact, pattern in tests:
            value = tags.get(tag, "")
            if pattern is None:
                hit = value == exact
            else:
                hit = pattern.match(value) is not None
            if hit != positive:
                break
        else:
            found.append(name)
    return found
