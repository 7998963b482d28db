"""graphite-web's target language: parse a ``target`` into a small syntax tree.

A target is a path expression (``servers.web*.cpu.{user,system}``), a call
(``sumSeries(a.*, b.c)``) or either followed by piped calls
(``a.*|sumSeries()|alias("total")``, which means ``alias(sumSeries(a.*),
"total")``). Call arguments are numbers (``1``, ``-2.5``, ``1e3``), quoted
strings (``'x'`` or ``"x"``, kept as written between the quotes, as
graphite-web does), ``true``/``false``, ``None``, ``inf``, nested
expressions, and then keyword arguments (``name=value``).

Unlike graphite-web, which silently ignores what follows the first complete
expression (``a.b)junk`` reads as ``a.b``), trailing text is an error, and
so is nesting deeper than :data:`MAX_DEPTH` or a target longer than
:data:`MAX_LENGTH` (no ``RecursionError`` can escape). Every error is a
:class:`~statsyard.exceptions.TargetSyntaxError` naming the target and the
position.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from statsyard.exceptions import TargetSyntaxError

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Call",
    "Literal",
    "Node",
    "PathExpression",
    "format_target",
    "parse_target",
]

MAX_DEPTH: Final = 64
"""Deepest nesting of calls accepted in a target."""

MAX_LENGTH: Final = 20_000
"""Longest target accepted, in characters."""

SYMBOLS: Final = "(){},.'\"\\|"
"""Characters that end a path element unless escaped with a backslash."""

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")
_KEYWORD: Final = re.compile(r"(?i:true|false|none|inf)(?![A-Za-z0-9_$])")
_SPACE: Final = " \t\r\n"


@attrs.frozen
class PathExpression:
    """A metric path or glob, e.g. ``a.b.*`` (escapes already removed)."""

    text: str


@attrs.frozen
class Literal:
    """A string, number, boolean, ``None`` or ``inf`` argument."""

    value: str | int | float | bool | None


@attrs.frozen
class Call:
    """A function call; ``raw`` is its text as written (seriesByTag needs it)."""

    name: str
    args: tuple[Node, ...] = ()
    kwargs: tuple[tuple[str, Node], ...] = ()
    raw: str = attrs.field(default="", eq=False)


Node = PathExpression | Literal | Call
"""Any node of a parsed target."""


def parse_target(target: str) -> Node:
    """Parse one render target.

    Raises:
        TargetSyntaxError: the target is empty, malformed, too long or too
            deeply nested; the message says what was expected where.
    """
    if len(target) > MAX_LENGTH:
        raise TargetSyntaxError(
            f"target is {len(target)} characters long; at most {MAX_LENGTH} "
            "are accepted",
            target=target[:100],
            position=MAX_LENGTH,
        )
    parser = _Parser(target)
    parser.skip_space()
    if parser.at_end():
        parser.fail("empty target: expected a metric path or a function call")
    node = parser.expression(0)
    parser.skip_space()
    if not parser.at_end():
        parser.fail(f"unexpected {parser.text[parser.pos]!r}")
    return node


class _Parser:
    """Recursive descent over one target; ``depth`` bounds the recursion."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> None:
        shown = self.text if len(self.text) <= 200 else self.text[:200] + "..."
        raise TargetSyntaxError(
            f"bad target {shown!r}: {message} at position {self.pos}",
            target=self.text,
            position=self.pos,
        )

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _SPACE:
            pos += 1
        self.pos = pos

    def expect(self, char: str) -> None:
        self.skip_space()
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            self.fail(f"expected {char!r}, found {found}")
        self.pos += 1

    # -- expressions ----------------------------------------------------------

    def expression(self, depth: int) -> Node:
        """A call or path expression, then any ``|call(...)`` pipes."""
        if depth > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        self.skip_space()
        node = self.call_or_path(depth)
        while True:
            self.skip_space()
            if self.peek() != "|":
                return node
            self.pos += 1
            self.skip_space()
            start = self.pos
            name = _IDENTIFIER.match(self.text, self.pos)
            if name is None:
                self.fail("expected a function call after '|'")
                raise AssertionError  # unreachable: fail() raises
            self.pos = name.end()
            self.skip_space()
            if self.peek() != "(":
                self.fail("expected '(' after a piped function name")
            piped = self.call(name.group(), start, depth + 1)
            node = Call(piped.name, (node, *piped.args), piped.kwargs, piped.raw)

    def call_or_path(self, depth: int) -> Node:
        start = self.pos
        name = _IDENTIFIER.match(self.text, self.pos)
        if name is not None:
            after = name.end()
            while after < len(self.text) and self.text[after] in _SPACE:
                after += 1
            if after < len(self.text) and self.text[after] == "(":
                self.pos = after
                return self.call(name.group(), start, depth + 1)
        return self.path()

    def call(self, name: str, start: int, depth: int) -> Call:
        """``name(args, kwargs)``; ``self.pos`` is at the ``(``."""
        if depth > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        self.pos += 1
        args: list[Node] = []
        kwargs: list[tuple[str, Node]] = []
        self.skip_space()
        if self.peek() == ")":
            self.pos += 1
            return Call(name, (), (), self.text[start : self.pos])
        while True:
            self.skip_space()
            keyword = self.keyword_name()
            if keyword is not None:
                if any(key == keyword for key, _ in kwargs):
                    self.fail(f"keyword argument {keyword!r} given twice")
                kwargs.append((keyword, self.argument(depth)))
            elif kwargs:
                self.fail("positional argument after a keyword argument")
            else:
                args.append(self.argument(depth))
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() == ")":
                self.pos += 1
                return Call(
                    name, tuple(args), tuple(kwargs), self.text[start : self.pos]
                )
            found = repr(self.peek()) if self.peek() else "the end"
            self.fail(
                f"expected ',' or ')' in the arguments of {name}(), found {found}"
            )

    def keyword_name(self) -> str | None:
        """``name=`` (not ``name==``) ahead: consume it and return the name."""
        match = _IDENTIFIER.match(self.text, self.pos)
        if match is None:
            return None
        after = match.end()
        while after < len(self.text) and self.text[after] in _SPACE:
            after += 1
        if after < len(self.text) and self.text[after] == "=":
            self.pos = after + 1
            return match.group()
        return None

    def argument(self, depth: int) -> Node:
        self.skip_space()
        char = self.peek()
        if char in ("'", '"'):
            return self.string()
        for pattern in (_KEYWORD, _NUMBER):
            match = pattern.match(self.text, self.pos)
            if match is not None and self.ends_argument(match.end()):
                self.pos = match.end()
                return Literal(_literal(match.group()))
        if not char or char in ",)":
            self.fail("expected an argument")
        return self.expression(depth)

    def ends_argument(self, pos: int) -> bool:
        while pos < len(self.text) and self.text[pos] in _SPACE:
            pos += 1
        return pos >= len(self.text) or self.text[pos] in ",)"

    def string(self) -> Literal:
        quote = self.text[self.pos]
        pos = self.pos + 1
        text = self.text
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                pos += 2
                continue
            if char == quote:
                value = text[self.pos + 1 : pos]
                self.pos = pos + 1
                return Literal(value)
            pos += 1
        self.fail(f"unterminated string starting with {quote}")
        raise AssertionError  # unreachable: fail() raises

    # -- path expressions -----------------------------------------------------

    def path(self) -> PathExpression:
        """Dotted elements of plain characters, escapes and ``{a,b}`` groups."""
        out: list[str] = []
        while True:
            element = self.element()
            if not element:
                found = repr(self.peek()) if self.peek() else "the end"
                self.fail(f"expected a metric path or a function call, found {found}")
            out.append(element)
            if self.peek() == ".":
                out.append(".")
                self.pos += 1
                continue
            return PathExpression("".join(out))

    def element(self) -> str:
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\":
                if self.pos + 1 >= len(text) or text[self.pos + 1] not in SYMBOLS + "=":
                    self.fail("a backslash must escape one of " + SYMBOLS + "=")
                out.append(text[self.pos + 1])
                self.pos += 2
            elif char == "{":
                out.append(self.enumeration())
            elif char in SYMBOLS or char in _SPACE:
                break
            else:
                out.append(char)
                self.pos += 1
        return "".join(out)

    def enumeration(self) -> str:
        """``{a,b,c}``: the alternatives are plain path pieces (no dots)."""
        self.pos += 1
        parts: list[str] = []
        while True:
            part = self.enumeration_part()
            if not part:
                self.fail("expected a path piece in '{...}'")
            parts.append(part)
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() == "}":
                self.pos += 1
                return "{" + ",".join(parts) + "}"
            self.fail("expected ',' or '}' in '{...}'")

    def enumeration_part(self) -> str:
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\":
                if self.pos + 1 >= len(text) or text[self.pos + 1] not in SYMBOLS + "=":
                    self.fail("a backslash must escape one of " + SYMBOLS + "=")
                out.append(text[self.pos + 1])
                self.pos += 2
            elif char in SYMBOLS or char in _SPACE:
                break
            else:
                out.append(char)
                self.pos += 1
        return "".join(out)


def _literal(token: str) -> str | int | float | bool | None:
    lowered = token.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "none":
        return None
    if lowered == "inf":
        return float("inf")
    if "." in token or "e" in lowered:
        return float(token)
    return int(token)


def format_target(node: Node) -> str:
    """Write a parsed target back as text that parses to the same tree."""
    if isinstance(node, PathExpression):
        return _escape_path(node.text)
    if isinstance(node, Literal):
        return _format_literal(node.value)
    args = [format_target(arg) for arg in node.args]
    args += [f"{key}={format_target(value)}" for key, value in node.kwargs]
    return f"{node.name}({','.join(args)})"


def _format_literal(value: str | int | float | bool | None) -> str:
    if value is None:
        return "None"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return "'" + value + "'" if "'" not in value else '"' + value + '"'
    if value == float("inf"):
        return "inf"
    return repr(value).replace("e+", "e")


def _escape_path(text: str) -> str:
    """Escape symbols in a path, leaving ``{a,b}`` groups and dots as they are."""
    out: list[str] = []
    depth = 0
    for char in text:
        if char == "{":
            depth += 1
            out.append(char)
        elif char == "}" and depth:
            depth -= 1
            out.append(char)
        elif (char == "," and depth) or char == ".":
            out.append(char)
        elif char in SYMBOLS or char == "=":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)
