"""statsyard.render.grammar: graphite-web's target language."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statsyard.exceptions import RenderError, TargetSyntaxError
from statsyard.render.grammar import (
    MAX_DEPTH,
    MAX_LENGTH,
    Call,
    Literal,
    Node,
    PathExpression,
    format_target,
    parse_target,
)


def path(text: str) -> PathExpression:
    return PathExpression(text)


@pytest.mark.parametrize(
    ("target", "tree"),
    [
        ("a.b.c", path("a.b.c")),
        ("servers.web*.cpu.{user,system}", path("servers.web*.cpu.{user,system}")),
        ("a.b?.[0-9].c{x*,y}z", path("a.b?.[0-9].c{x*,y}z")),
        ("cpu.load;entity=web1", path("cpu.load;entity=web1")),
        (r"a\(b\).c\,d", path("a(b).c,d")),
        ("sumSeries(a.*)", Call("sumSeries", (path("a.*"),))),
        (
            "sumSeries( a.* , b.c )",
            Call("sumSeries", (path("a.*"), path("b.c"))),
        ),
        (
            "alias(sumSeries(a.*),'total')",
            Call("alias", (Call("sumSeries", (path("a.*"),)), Literal("total"))),
        ),
        (
            "scale(a.b, -2.5)",
            Call("scale", (path("a.b"), Literal(-2.5))),
        ),
        ("limit(a.b,3)", Call("limit", (path("a.b"), Literal(3)))),
        ("scale(a.b,1e3)", Call("scale", (path("a.b"), Literal(1000.0)))),
        (
            "sortByName(a.*, natural=TRUE, reverse=false)",
            Call(
                "sortByName",
                (path("a.*"),),
                (("natural", Literal(True)), ("reverse", Literal(False))),
            ),
        ),
        (
            "keepLastValue(a.b, inf)",
            Call("keepLastValue", (path("a.b"), Literal(float("inf")))),
        ),
        (
            "asPercent(a.*, None, 0)",
            Call("asPercent", (path("a.*"), Literal(None), Literal(0))),
        ),
        (
            "seriesByTag('name=cpu', \"entity=~web.*\", 'dc!=x')",
            Call(
                "seriesByTag",
                (Literal("name=cpu"), Literal("entity=~web.*"), Literal("dc!=x")),
            ),
        ),
        (
            'a.*|sumSeries()|alias("total")',
            Call("alias", (Call("sumSeries", (path("a.*"),)), Literal("total"))),
        ),
        ("f()", Call("f")),
        ("scale(1.b,2)", Call("scale", (path("1.b"), Literal(2)))),
        ("alias(a.b,'it''s')", None),
    ],
)
def test_targets_parse_to_their_tree(target: str, tree: Node | None) -> None:
    """Paths, calls, literals, keywords and pipes read as graphite-web reads them."""
    if tree is None:
        with pytest.raises(TargetSyntaxError):
            parse_target(target)
        return
    assert parse_target(target) == tree


def test_a_call_keeps_its_raw_text() -> None:
    """seriesByTag's series are named by the call as written (graphite-web's raw)."""
    node = parse_target("sumSeries(seriesByTag('name=cpu'))")
    assert isinstance(node, Call)
    inner = node.args[0]
    assert isinstance(inner, Call)
    assert inner.raw == "seriesByTag('name=cpu')"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "empty target"),
        ("   ", "empty target"),
        ("sumSeries(a.b", "expected ',' or ')'"),
        ("sumSeries(a.b))", "unexpected ')'"),
        ("a.b)", "unexpected ')'"),
        ("a..b", "expected a metric path"),
        ("a.b.", "expected a metric path"),
        ("f(,)", "expected an argument"),
        ("f(a=1, b)", "positional argument after a keyword"),
        ("f(a=1, a=2)", "given twice"),
        ("alias(a.b, 'x)", "unterminated string"),
        ("a.{b,c", "expected ',' or '}'"),
        ("a.b|c", "expected '(' after a piped"),
        ("a.b|", "expected a function call after '|'"),
        ("a\\xb", "backslash must escape"),
    ],
)
def test_bad_targets_are_clear_errors(target: str, message: str) -> None:
    """Malformed targets raise TargetSyntaxError naming what was expected and where."""
    with pytest.raises(TargetSyntaxError, match=re.escape(message)) as info:
        parse_target(target)
    assert isinstance(info.value, RenderError)
    assert isinstance(info.value, ValueError)
    assert "position" in str(info.value)


def test_deep_nesting_and_long_targets_are_refused_without_recursion_error() -> None:
    """Absurd targets fail with our error, never a RecursionError."""
    deep = "f(" * (MAX_DEPTH + 5) + "a" + ")" * (MAX_DEPTH + 5)
    with pytest.raises(TargetSyntaxError, match="nesting deeper"):
        parse_target(deep)
    very_deep = "f(" * 100_000 + "a" + ")" * 100_000
    with pytest.raises(TargetSyntaxError):
        parse_target(very_deep)
    piped = "a" + "|f()" * (MAX_DEPTH + 5)
    assert isinstance(parse_target(piped), Call)
    with pytest.raises(TargetSyntaxError, match="characters long"):
        parse_target("a" * (MAX_LENGTH + 1))
    ok = "f(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert isinstance(parse_target(ok), Call)


_NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
_PIECE = st.from_regex(r"[a-z0-9_*?\-:;=~!]{1,6}|\[[a-z0-9]{1,3}\]", fullmatch=True)
_ELEMENT = st.one_of(
    _PIECE,
    st.lists(_PIECE, min_size=1, max_size=3).map(lambda ps: "{" + ",".join(ps) + "}"),
    st.tuples(_PIECE, _PIECE).map(lambda p: p[0] + "{" + p[1] + ",x}"),
)
_PATH = (
    st.lists(_ELEMENT, min_size=1, max_size=4)
    .map(".".join)
    # A path that reads as a number or keyword is one (as in graphite-web).
    .filter(lambda text: not re.fullmatch(r"-?[\d.e-]+|true|false|none|inf", text))
    .map(PathExpression)
)
_LITERAL = st.one_of(
    st.integers(min_value=-(10**9), max_value=10**9).map(Literal),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(Literal),
    st.booleans().map(Literal),
    st.just(Literal(None)),
    st.just(Literal(float("inf"))),
    st.from_regex(r"[a-zA-Z0-9 =~!.*,()|{}\"]{0,10}", fullmatch=True).map(Literal),
)


def _calls(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.builds(
        lambda name, args, kwargs: Call(name, tuple(args), tuple(kwargs.items())),
        _NAME,
        st.lists(st.one_of(children, _LITERAL), max_size=3),
        st.dictionaries(_NAME, st.one_of(children, _LITERAL), max_size=2),
    )


_TREE = st.recursive(_PATH, _calls, max_leaves=12)


@given(_TREE)
def test_formatted_trees_parse_back_to_themselves(tree: Node) -> None:
    """format_target and parse_target round-trip every tree."""
    assert parse_target(format_target(tree)) == tree


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_only_target_syntax_error(text: str) -> None:
    """No input escapes with anything but our error."""
    try:
        parse_target(text)
    except TargetSyntaxError:
        pass


@given(st.text(alphabet="ab.*(),'\"|={}[]\\ 1e-~", max_size=60))
def test_target_like_text_parses_or_raises_only_target_syntax_error(text: str) -> None:
    """Text made of the grammar's own symbols never escapes with another error."""
    try:
        node = parse_target(text)
    except TargetSyntaxError:
        return
    assert isinstance(node, PathExpression | Call)
