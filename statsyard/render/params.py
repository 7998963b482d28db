"""Render function parameters, checked as graphite-web's ``functions/params.py``.

Each function declares its parameters (:class:`Param`): kind, required,
multiple, options. :func:`bind_arguments` checks a call's evaluated
arguments against them and converts them as graphite-web's validators do
(``"10"`` for a float is 10.0, an ``intOrInf`` may be ``inf``), with one
difference: a bad argument is always an error
(:class:`~statsyard.exceptions.BadArgumentError`), as with graphite-web's
``ENFORCE_INPUT_VALIDATION``, never a crash further on.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any, Final

import attrs

from statsyard.exceptions import BadArgumentError
from statsyard.render.aggregation import AGGREGATION_FUNCTIONS
from statsyard.timeparse import parse_offset_ms

if TYPE_CHECKING:
    from statsyard.render.series import TimeSeries

__all__ = ["Function", "Param", "bind_arguments"]

INF: Final = float("inf")


@attrs.frozen
class Param:
    """One parameter of a function, as graphite-web's ``Param``.

    Attributes:
        name: the keyword it may be given by.
        kind: ``seriesList``, ``float``, ``integer``, ``intOrInf``,
            ``interval``, ``intOrInterval``, ``boolean``, ``string``,
            ``aggFunc``, ``aggOrSeriesFunc``, ``nodeOrTag``, ``tag`` or ``any``.
        required: must be given.
        multiple: takes every remaining positional argument.
        options: the allowed values, if restricted.
    """

    name: str
    kind: str
    required: bool = False
    multiple: bool = False
    options: tuple[str, ...] = ()


@attrs.frozen
class Function:
    """A render function: its graphite-web name, implementation and parameters."""

    name: str
    impl: Callable[..., list[TimeSeries]]
    params: tuple[Param, ...]
    aggregator: bool = False
    defaults: tuple[Any, ...] = ()
    """The implementation's default per parameter (what an explicit None means)."""
    keywords: tuple[str, ...] = ()
    """The implementation's Python name per parameter."""


def _check_value(
    function: str, param: Param, value: Any, aggregators: Container[str]
) -> Any:
    """The value converted as graphite-web's param types do, or an error."""
    if param.options and value not in param.options:
        raise BadArgumentError(
            f'invalid option for {function}() parameter "{param.name}": '
            f"{_describe(value)}; expected one of {', '.join(param.options)}"
        )
    try:
        if param.kind == "aggOrSeriesFunc":
            return _agg_or_series_func(value, aggregators)
        return _CONVERTERS[param.kind](value)
    except (TypeError, ValueError) as exc:
        raise BadArgumentError(
            f'invalid {param.kind} for {function}() parameter "{param.name}": '
            f"{_describe(value)} ({exc})"
        ) from None


def _describe(value: Any) -> str:
    """An argument as an error message shows it (a series list is not listed)."""
    if isinstance(value, list):
        return f"a series list ({len(value)} series)"
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _series_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise TypeError("expected a series list (a metric path or a function)")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("expected a number")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, float | bool):
        raise TypeError("expected an integer")
    if not isinstance(value, int | str):
        raise TypeError("expected an integer")
    return int(value)


def _int_or_inf(value: Any) -> float:
    if isinstance(value, float) and value == INF:
        return INF
    return _integer(value)


def _interval(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a quoted interval such as '1h'")
    parse_offset_ms(value)
    return value


def _int_or_interval(value: Any) -> int | str:
    if isinstance(value, str):
        return _interval(value)
    return _integer(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("expected true or false")
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise ValueError("expected true or false")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a quoted string")
    return value


def _agg_func(value: Any) -> str:
    if not isinstance(value, str) or (
        value not in AGGREGATION_FUNCTIONS
        and not (value.endswith("Series") and value[:-6] in AGGREGATION_FUNCTIONS)
    ):
        raise ValueError("expected one of " + ", ".join(AGGREGATION_FUNCTIONS))
    return value


def _agg_or_series_func(value: Any, aggregators: Container[str]) -> str:
    if isinstance(value, str) and value in aggregators:
        return value
    return _agg_func(value)


def _node_or_tag_value(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("expected a node number or a tag name")
    return value


_CONVERTERS: Final[dict[str, Callable[[Any], Any]]] = {
    "seriesList": _series_list,
    "float": _float,
    "integer": _integer,
    "intOrInf": _int_or_inf,
    "interval": _interval,
    "intOrInterval": _int_or_interval,
    "boolean": _boolean,
    "string": _string,
    "aggFunc": _agg_func,
    "nodeOrTag": _node_or_tag_value,
    "tag": _string,
    "any": lambda value: value,
}


def bind_arguments(
    function: Function,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    aggregators: Container[str] = (),
) -> tuple[list[Any], dict[str, Any]]:
    """Check and convert a call's arguments as graphite-web's ``validateParams``.

    ``aggregators`` names the series functions an ``aggOrSeriesFunc``
    parameter accepts besides the aggregation names (the function registry
    knows them; it is passed in so that this module need not import it).

    Raises:
        BadArgumentError: too many, missing, unexpected or ill-typed arguments.
    """
    params = function.params
    name = function.name
    if len(args) + len(kwargs) > len(params) and not params[-1].multiple:
        raise BadArgumentError(f"too many arguments for {name}()")
    positional: tuple[Param, ...]
    keyword: tuple[Param, ...]
    if len(args) > len(params):
        positional, keyword = params, ()
    else:
        positional, keyword = params[: len(args)], params[len(args) :]
    out_args = []
    for index, value in enumerate(args):
        param = positional[min(index, len(positional) - 1)]
        if value is None and not param.required and not param.multiple:
            # graphite-web lets None through for an optional parameter.
            out_args.append(function.defaults[min(index, len(params) - 1)])
            continue
        out_args.append(_check_value(name, param, value, aggregators))
    out_kwargs: dict[str, Any] = {}
    for param in keyword:
        value = kwargs.get(param.name)
        if value is None:
            if param.required:
                raise BadArgumentError(
                    f'missing required parameter "{param.name}" for {name}()'
                )
            continue
        if param.multiple:
            raise BadArgumentError(
                f'parameter "{param.name}" of {name}() cannot be given by keyword'
            )
        out_kwargs[param.name] = _check_value(name, param, value, aggregators)
    unexpected = [
        key for key in kwargs if key not in out_kwargs and kwargs[key] is not None
    ]
    if unexpected:
        raise BadArgumentError(
            f"unexpected keyword arguments for {name}(): {', '.join(unexpected)}"
        )
    python_names = dict(zip((p.name for p in params), function.keywords, strict=True))
    return out_args, {python_names[key]: value for key, value in out_kwargs.items()}
