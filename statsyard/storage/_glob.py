"""Graphite-style globs on metric names, matched in time linear in the name.

``*`` matches within one dotted component, ``**`` across components, ``?``
one character other than a dot, ``{a,b}`` either alternative (nestable),
``[abc]``/``[a-z]``/``[!abc]`` a character class.

A pattern is parsed once into a Thompson automaton (no recursion on the
input, nesting and length bounded). A simple pattern (no braces, at most
two stars) becomes a regular expression, whose backtracking that shape
keeps small: C speed for the usual ``cpu.*``. Any other pattern runs as a
lazily built DFA (sets of automaton states, transitions cached up to a
bound), so ``**a**a**a**a**c`` against a 255-character name takes
microseconds per character instead of the seconds a backtracking regex took.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Final, Protocol

from statsyard.exceptions import PatternError

MAX_PATTERN_LENGTH: Final = 1024
"""Longest pattern accepted (a metric name is at most 255 characters)."""
MAX_NESTING: Final = 16
"""Deepest ``{`` nesting accepted."""
MAX_REGEX_STARS: Final = 2
"""Stars a pattern may hold and still run as a backtracking regex."""
MAX_DFA_STATES: Final = 4096
"""DFA states cached per pattern; past it, steps are computed, not cached."""


class GlobMatcher(Protocol):
    """What :func:`compile_glob` returns: ``fullmatch(name)`` is truthy on a match."""

    def fullmatch(self, name: str) -> object:
        """Whether the whole of ``name`` matches."""
        ...  # pragma: no cover (protocol)


# -- parsing --------------------------------------------------------------------------

Test = Callable[[str], bool]


class _Item:
    """One element of a parsed pattern."""

    __slots__ = ("alternatives", "kind", "regex", "test")

    def __init__(
        self,
        kind: str,
        regex: str = "",
        test: Test | None = None,
        alternatives: list[list[_Item]] | None = None,
    ) -> None:
        self.kind = kind  # "one" (consumes one char), "star", "alt"
        self.regex = regex
        self.test = test
        self.alternatives = alternatives or []


def _not_dot(char: str) -> bool:
    return char != "."


def _any(_char: str) -> bool:
    return True


def _literal(char: str) -> _Item:
    return _Item("one", re.escape(char), char.__eq__)


def _char_class(body: str, pattern: str) -> _Item:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    if not body:
        raise PatternError(
            f"empty character class in pattern {pattern!r}", pattern=pattern
        )
    singles: set[str] = set()
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low > high:
                raise PatternError(
                    f"bad range {low}-{high} in pattern {pattern!r}", pattern=pattern
                )
            ranges.append((low, high))
            i += 3
        else:
            singles.add(body[i])
            i += 1
    frozen = frozenset(singles)

    def test(char: str) -> bool:
        inside = char in frozen or any(low <= char <= high for low, high in ranges)
        return inside != negate

    parts = [re.escape(c) for c in sorted(frozen)]
    parts += [f"{re.escape(low)}-{re.escape(high)}" for low, high in ranges]
    regex = "[" + ("^" if negate else "") + "".join(parts) + "]"
    return _Item("one", regex, test)


def parse_glob(pattern: str) -> list[_Item]:
    """The pattern as a sequence of items (braces as nested alternatives).

    Raises:
        PatternError: too long, nested too deep, unbalanced ``{`` or ``[``,
            or a bad character class.
    """
    if not isinstance(pattern, str):
        raise PatternError(
            f"a pattern must be a str, got {pattern!r}", pattern=str(pattern)
        )
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"pattern is {len(pattern)} characters, at most {MAX_PATTERN_LENGTH} "
            "are accepted",
            pattern=pattern[:80] + "...",
        )
    # A stack of open braces: each holds its alternatives so far.
    stack: list[list[list[_Item]]] = [[[]]]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        current = stack[-1][-1]
        if pattern.startswith("**", i):
            current.append(_Item("star", ".*", _any))
            i += 2
            continue
        if char == "*":
            current.append(_Item("star", r"[^.]*", _not_dot))
        elif char == "?":
            current.append(_Item("one", r"[^.]", _not_dot))
        elif char == "{":
            if len(stack) > MAX_NESTING:
                raise PatternError(
                    f"braces nested deeper than {MAX_NESTING} in pattern "
                    f"{pattern[:80]!r}",
                    pattern=pattern,
                )
            stack.append([[]])
        elif char == "}" and len(stack) > 1:
            alternatives = stack.pop()
            stack[-1][-1].append(_Item("alt", alternatives=alternatives))
        elif char == "," and len(stack) > 1:
            stack[-1].append([])
        elif char == "[":
            close = pattern.find("]", i + 1)
            if close == -1:
                raise PatternError(
                    f"unbalanced '[' in pattern {pattern!r}", pattern=pattern
                )
            current.append(_char_class(pattern[i + 1 : close], pattern))
            i = close + 1
            continue
        else:
            current.append(_literal(char))
        i += 1
    if len(stack) > 1:
        raise PatternError(f"unbalanced '{{' in pattern {pattern!r}", pattern=pattern)
    return stack[0][0]


def to_regex(items: list[_Item]) -> str:
    """The regular expression of parsed items (the reference semantics)."""
    out: list[str] = []
    for item in items:
        if item.kind == "alt":
            out.append("(?:" + "|".join(map(to_regex, item.alternatives)) + ")")
        else:
            out.append(item.regex)
    return "".join(out)


def _count_stars(items: list[_Item]) -> tuple[int, bool]:
    stars, braces = 0, False
    for item in items:
        if item.kind == "star":
            stars += 1
        elif item.kind == "alt":
            braces = True
    return stars, braces


# -- the automaton --------------------------------------------------------------------


class _Automaton:
    """A Thompson NFA: nodes with epsilon edges or one consuming edge."""

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.test: list[Test | None] = []
        self.out: list[int] = []

    def node(self) -> int:
        self.eps.append([])
        self.test.append(None)
        self.out.append(-1)
        return len(self.eps) - 1

    def build(self, items: list[_Item], start: int) -> int:
        """Add ``items`` after node ``start``; returns the node they end at.

        Iterative over the sequence; recursion only into braces, whose depth
        the parser bounds.
        """
        at = start
        for item in items:
            if item.kind == "one":
                nxt = self.node()
                self.test[at] = item.test
                self.out[at] = nxt
                at = nxt
            elif item.kind == "star":
                loop, nxt = self.node(), self.node()
                self.eps[at].append(loop)
                self.eps[loop].append(nxt)
                self.test[loop] = item.test
                self.out[loop] = loop
                at = nxt
            else:
                join = self.node()
                for alternative in item.alternatives:
                    begin = self.node()
                    self.eps[at].append(begin)
                    self.eps[self.build(alternative, begin)].append(join)
                at = join
        return at

    def closure(self, nodes: set[int]) -> frozenset[int]:
        todo = list(nodes)
        seen = set(nodes)
        while todo:
            for nxt in self.eps[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return frozenset(seen)


class _LazyDfa:
    """Matches by walking sets of automaton states, caching the transitions."""

    __slots__ = ("_accept", "_auto", "_ids", "_moves", "_sets", "_start")

    def __init__(self, items: list[_Item]) -> None:
        auto = _Automaton()
        begin = auto.node()
        self._accept = auto.build(items, begin)
        self._auto = auto
        start = auto.closure({begin})
        self._sets: list[frozenset[int]] = [start]
        self._ids: dict[frozenset[int], int] = {start: 0}
        self._moves: dict[tuple[int, str], int] = {}
        self._start = 0

    def _step(self, state: int, char: str) -> int:
        auto = self._auto
        moved = set()
        for node in self._sets[state]:
            test = auto.test[node]
            if test is not None and test(char):
                moved.add(auto.out[node])
        target = auto.closure(moved) if moved else frozenset()
        number = self._ids.get(target)
        if number is None:
            number = len(self._sets)
            self._sets.append(target)
            if len(self._sets) <= MAX_DFA_STATES:
                self._ids[target] = number
        if len(self._moves) < 16 * MAX_DFA_STATES:
            self._moves[(state, char)] = number
        return number

    def fullmatch(self, name: str) -> bool:
        """Whether the whole of ``name`` matches: one step per character."""
        moves, sets = self._moves, self._sets
        state = self._start
        for char in name:
            nxt = moves.get((state, char))
            state = self._step(state, char) if nxt is None else nxt
            if not sets[state]:
                return False
        return self._accept in sets[state]


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> GlobMatcher:
    """A matcher for a Graphite-style glob on dotted metric names.

    Raises:
        PatternError: the pattern is malformed, longer than
            ``MAX_PATTERN_LENGTH`` or nested deeper than ``MAX_NESTING``.
    """
    if pattern in ("*", "**"):
        return re.compile(r".*", re.DOTALL)
    items = parse_glob(pattern)
    stars, braces = _count_stars(items)
    if not braces and stars <= MAX_REGEX_STARS:
        return re.compile(to_regex(items), re.DOTALL)
    return _LazyDfa(items)
