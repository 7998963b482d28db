"""One rule for names: validate() and the Graphite parser agree on every name.

Both use :func:`statsyard.datapoint.forbidden_char_index`; these properties
check the agreement through each path's public interface, including the
characters they once disagreed on (format characters such as U+200B) and
lone surrogates, which must be refused by both (they cannot be encoded as
UTF-8, so a stored one would break ``statsyard series``).
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from statsyard.datapoint import Valid, validate
from statsyard.graphite.protocol import parse_lines

TS_S = 1_700_000_000

# Any code point at all, surrogates included, biased towards the odd ones.
names = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, categories=None),
        st.sampled_from("\u200b\u200e\u2028\u00a0\x85\x7f\ud800\udfff\ue000 .-_"),
    ),
    max_size=20,
).filter(lambda name: ";" not in name and "\n" not in name and "\r" not in name)


def _graphite_accepts(name: str) -> bool:
    """The parser turns ``<name> 1 <ts>`` into exactly that metric."""
    line = f"{name} 1 {TS_S}\n".encode("utf-8", "surrogatepass")
    points, _rejects, _rest = parse_lines(line, final=True)
    return len(points) == 1 and points[0][0] == name


@given(names)
@example("cpu\u200bload")  # a format character: both refuse it now
@example("cpu\ud800")  # a lone surrogate: both refuse it
@example("cpu.load")
@example("caf\u00e9")
def test_validate_and_the_graphite_parser_agree_on_every_name(name: str) -> None:
    """A metric name is valid for validate() exactly when Graphite takes it."""
    valid = isinstance(validate((name, "web-1", 1, TS_S * 1000)), Valid)
    assert valid == _graphite_accepts(name)


@given(names)
def test_an_accepted_name_always_encodes_as_utf8(name: str) -> None:
    """No accepted name holds a lone surrogate (it would not encode)."""
    if isinstance(validate((name, "web-1", 1, TS_S * 1000)), Valid):
        name.encode("utf-8")


def test_the_characters_the_two_paths_once_disagreed_on_are_refused_by_both() -> None:
    """U+200B, U+200E, a lone surrogate: invalid in both paths, not in one only."""
    for name in ("a\u200bb", "a\u200eb", "a\ud800b", "a\udfffb"):
        assert not isinstance(validate((name, "e", 1, TS_S * 1000)), Valid)
        assert not _graphite_accepts(name)
