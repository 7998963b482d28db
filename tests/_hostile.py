"""Hypothesis strategies for hostile candidate points.

Objects whose dunder methods raise (even ``SystemExit``), subclasses of the
built-in types that lie, numbers no storage could hold, and containers that
fail when read: everything a caller could hand to ``push()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st

TS = 1_700_000_000_000

_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    RuntimeError,
    OverflowError,
    RecursionError,
    MemoryError,
    SystemExit,
    GeneratorExit,
    StopIteration,
)


def _raiser(error: type[BaseException]) -> Any:
    def method(self: object, *args: object) -> Any:
        raise error("hostile")

    return method


def _hostile_class(base: type, methods: list[str], error: type[BaseException]) -> type:
    namespace = {name: _raiser(error) for name in methods}
    return type(f"Hostile{base.__name__.title()}", (base,), namespace)


_STR_METHODS = ["__hash__", "__eq__", "__str__", "__repr__", "__len__", "__iter__"]
_FLOAT_METHODS = ["__float__", "__repr__", "__eq__", "__lt__", "__hash__", "__bool__"]
_INT_METHODS = ["__int__", "__index__", "__repr__", "__lt__", "__le__", "__hash__"]


@st.composite
def hostile_str(draw: st.DrawFn) -> object:
    """A str subclass whose chosen dunders raise, or a plain odd name."""
    if draw(st.booleans()):
        return draw(st.text(max_size=300))
    methods = draw(st.lists(st.sampled_from(_STR_METHODS), unique=True))
    cls = _hostile_class(str, methods, draw(st.sampled_from(_ERRORS)))
    return cls(draw(st.sampled_from(["m", "e", "cpu.load", "", "a b"])))


@st.composite
def hostile_value(draw: st.DrawFn) -> object:
    """Numbers out of range, NaN, bools, and numeric subclasses that raise."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.integers())  # unbounded: many do not fit in 64 bits
    if kind == 1:
        return draw(
            st.sampled_from(
                [10**5000, -(10**5000), 2**63, -(2**63) - 1, math.nan, math.inf, True]
            )
        )
    if kind == 2:
        return draw(st.floats(allow_nan=True, allow_infinity=True))
    if kind == 3:
        methods = draw(st.lists(st.sampled_from(_FLOAT_METHODS), unique=True))
        cls = _hostile_class(float, methods, draw(st.sampled_from(_ERRORS)))
        return cls(draw(st.floats(allow_nan=True)))
    if kind == 4:
        methods = draw(st.lists(st.sampled_from(_INT_METHODS), unique=True))
        cls = _hostile_class(int, methods, draw(st.sampled_from(_ERRORS)))
        return cls(draw(st.sampled_from([0, 1, 2**63, 10**5000])))
    return draw(st.sampled_from([None, "1", b"1", [1], object(), complex(1, 1)]))


@st.composite
def hostile_timestamp(draw: st.DrawFn) -> object:
    """Timestamps of every wrong kind, and some right ones."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.sampled_from([TS, 10**5000, -1, 1.7e12, None, True, "1"]))
    if kind == 1:
        methods = draw(st.lists(st.sampled_from(_INT_METHODS), unique=True))
        cls = _hostile_class(int, methods, draw(st.sampled_from(_ERRORS)))
        return cls(draw(st.sampled_from([TS, 10**5000])))
    return draw(st.integers())


class BrokenMapping(Mapping[str, Any]):
    """A mapping whose reads raise after a few calls."""

    def __init__(self, data: dict[str, Any], error: type[BaseException], fail: str):
        self._data = data
        self._error = error
        self._fail = fail

    def __getitem__(self, key: str) -> Any:
        if self._fail == "getitem":
            raise self._error("hostile")
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        if self._fail == "iter":
            raise self._error("hostile")
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        if self._fail == "contains":
            raise self._error("hostile")
        return key in self._data


class BrokenTuple(tuple[Any, ...]):
    """A tuple subclass whose length or items raise."""

    def __len__(self) -> int:
        raise RuntimeError("hostile len")

    def __getitem__(self, index: Any) -> Any:
        raise SystemExit("hostile getitem")


class BadRepr:
    """Neither a point nor printable."""

    def __repr__(self) -> str:
        raise RuntimeError("hostile repr")


@st.composite
def hostile_candidates(draw: st.DrawFn) -> object:
    """A candidate point with at least one hostile part, of any shape."""
    metric = draw(st.one_of(st.just("m"), hostile_str()))
    entity = draw(st.one_of(st.just("e"), hostile_str()))
    value = draw(st.one_of(st.just(1.5), hostile_value()))
    timestamp = draw(hostile_timestamp())
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return (metric, entity, value, timestamp)
    if shape == 1:
        return (metric, entity, value)
    if shape == 2:
        from statsyard import DataPoint

        return DataPoint(metric, entity, value, timestamp)  # type: ignore[arg-type]
    if shape == 3:
        data = {"metric": metric, "entity": entity, "value": value}
        return BrokenMapping(
            data,
            draw(st.sampled_from(_ERRORS)),
            draw(st.sampled_from(["getitem", "iter", "contains", "none"])),
        )
    if shape == 4:
        return BrokenTuple((metric, entity, value, timestamp))
    if shape == 5:
        return BadRepr()
    return {"metric": metric, "entity": entity, "value": value, BadRepr(): 1}
