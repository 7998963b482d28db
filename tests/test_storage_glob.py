"""Series patterns: Graphite globs matched in time linear in the name."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.exceptions import PatternError, StatsYardError
from statsyard.storage import Storage
from statsyard.storage._glob import compile_glob
from tests._storage_helpers import points


def expand_braces(pattern: str) -> list[str]:
    """Every brace-free pattern ``pattern`` stands for (reference, small inputs)."""
    depth, start = 0, -1
    for i, char in enumerate(pattern):
        if char == "[":
            close = pattern.find("]", i + 1)
            if close != -1 and depth == 0:
                continue
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                body, parts, level, last = pattern[start + 1 : i], [], 0, 0
                for j, c in enumerate(body):
                    level += (c == "{") - (c == "}" and level > 0)
                    if c == "," and level == 0:
                        parts.append(body[last:j])
                        last = j + 1
                parts.append(body[last:])
                head, tail = pattern[:start], pattern[i + 1 :]
                return [x for part in parts for x in expand_braces(head + part + tail)]
    return [pattern]


ANY, SEGMENT = "\u2042", "\u2043"
"""``**`` and ``*`` as single characters, so brace expansion cannot join two."""


def reference(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern``, by expansion and plain recursion."""
    if pattern == "*":
        return True  # a bare star lists everything (documented)
    tokens = pattern.replace("**", ANY).replace("*", SEGMENT)
    return any(reference_match(p, name) for p in expand_braces(tokens))


def reference_match(pattern: str, name: str) -> bool:
    """A plain recursive matcher for brace-free globs (exponential: tests only)."""
    if not pattern:
        return not name
    head = pattern[0]
    if head == ANY:
        return any(reference_match(pattern[1:], name[i:]) for i in range(len(name) + 1))
    if head == SEGMENT:
        return any(
            reference_match(pattern[1:], name[i:])
            for i in range(len(name) + 1)
            if "." not in name[:i]
        )
    if not name:
        return False
    if head == "?":
        return name[0] != "." and reference_match(pattern[1:], name[1:])
    if head == "[":
        close = pattern.index("]", 1)
        body = pattern[1:close]
        negate = body.startswith("!")
        body = body[1:] if negate else body
        inside, i = False, 0
        while i < len(body):
            if i + 2 < len(body) and body[i + 1] == "-":
                inside = inside or body[i] <= name[0] <= body[i + 2]
                i += 3
            else:
                inside = inside or body[i] == name[0]
                i += 1
        return inside != negate and reference_match(pattern[close + 1 :], name[1:])
    return head == name[0] and reference_match(pattern[1:], name[1:])


names = st.text(alphabet="ab.c", max_size=8)
globs = st.lists(
    st.sampled_from(
        [
            "a",
            "b",
            ".",
            "*",
            "**",
            "?",
            "[ab]",
            "[!a]",
            "[a-b]",
            "{a,b.}",
            "{*,c}",
            "{a{b,c},}",
        ]
    ),
    max_size=6,
).map("".join)


@settings(max_examples=600, deadline=None)
@given(globs, names)
def test_matching_agrees_with_a_reference_matcher(pattern: str, name: str) -> None:
    """Both engines (regex for simple patterns, lazy DFA otherwise) match
    exactly what a plain recursive matcher over the brace expansion does."""
    want = reference(pattern, name)
    assert bool(compile_glob(pattern).fullmatch(name)) == want


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_pathological_pattern_matches_a_long_name_without_backtracking(
    tmp_path: Path,
) -> None:
    """`**a**a**a**a**c` against a 255-character name (11 s with the old regex)
    finishes well within a hang guard, through series()."""
    with Storage.open(tmp_path) as s:
        s.append(points("a" * 255, "e", [1]))
        s.append(points("a" * 254 + "c", "e", [1]))
        with deadline(5):
            assert s.series("**a**a**a**a**c") == [("a" * 254 + "c", "e")]
            assert s.series("*a*a*a*a*a*a*b") == []


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{" * 3000, "3000 characters, at most 1024"),
        ("{" * 1000, "nested deeper than 16"),
        ("{a," * 20 + "b" + "}" * 20, "nested deeper than 16"),
        ("a" * 1025, "at most 1024"),
        ("cpu.{a,b", "unbalanced '{'"),
        ("cpu.[ab", "unbalanced '\\['"),
        ("cpu.[]x]", "empty character class"),
        ("cpu.[z-a]", "bad range z-a"),
    ],
)
def test_a_bad_pattern_is_a_clear_error(
    tmp_path: Path, pattern: str, message: str
) -> None:
    """Malformed, too long or too deep: PatternError (a ValueError and a
    StatsYardError), never RecursionError."""
    with Storage.open(tmp_path) as s:
        s.append(points("cpu.a", "e", [1]))
        with pytest.raises(PatternError, match=message) as caught:
            s.series(pattern)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, StatsYardError)
