"""graphite-web's ``/functions`` data: what the render engine offers, as JSON.

Grafana's Graphite datasource (version 1.1.x) asks ``/functions`` for the
functions a backend has, to fill its query editor; graphite-web answers with
one object per function (name, signature, description, group, parameters).
:func:`function_list` and :func:`function_info` build the same objects for
our functions, so the HTTP layer only has to serve them.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Final

from statsyard.render.functions import FUNCTIONS
from statsyard.render.params import Function, Param

__all__ = ["GROUPS", "function_info", "function_list", "to_json"]

GROUPS: Final[dict[str, str]] = {
    **dict.fromkeys(
        (
            "aggregate",
            "sumSeries",
            "sum",
            "averageSeries",
            "avg",
            "minSeries",
            "maxSeries",
            "asPercent",
            "pct",
            "groupByNode",
            "groupByNodes",
            "groupByTags",
            "diffSeries",
            "multiplySeries",
            "countSeries",
            "divideSeries",
        ),
        "Combine",
    ),
    **dict.fromkeys(
        ("alias", "aliasByNode", "aliasByTags", "aliasSub", "aliasByMetric"), "Alias"
    ),
    **dict.fromkeys(
        (
            "scale",
            "offset",
            "absolute",
            "summarize",
            "perSecond",
            "nonNegativeDerivative",
            "derivative",
            "integral",
            "keepLastValue",
            "transformNull",
            "timeShift",
        ),
        "Transform",
    ),
    **dict.fromkeys(("movingWindow", "movingAverage"), "Calculate"),
    **dict.fromkeys(
        (
            "highest",
            "lowest",
            "highestAverage",
            "highestCurrent",
            "highestMax",
            "lowestAverage",
            "lowestCurrent",
            "limit",
            "exclude",
            "grep",
            "removeEmptySeries",
        ),
        "Filter Series",
    ),
    **dict.fromkeys(("removeAboveValue", "removeBelowValue"), "Filter Data"),
    **dict.fromkeys(
        ("sortBy", "sortByName", "sortByMaxima", "sortByMinima", "sortByTotal"),
        "Sorting",
    ),
    **dict.fromkeys(("consolidateBy", "seriesByTag", "substr"), "Special"),
}
"""graphite-web's group of each function."""

_SERIES_BY_TAG: Final = (Param("tagExpressions", "string", True, True),)
_SERIES_BY_TAG_DOC: Final = (
    "``seriesByTag(*tagExpressions)``: the series whose tags match every "
    "expression: tag=value, tag!=value, tag=~regex, tag!=~regex."
)


def _param_json(param: Param, default: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "type": param.kind}
    if param.required:
        out["required"] = True
    if default is not None and not param.multiple:
        out["default"] = default
    if param.multiple:
        out["multiple"] = True
    if param.options:
        out["options"] = sorted(param.options)
    return out


def _signature(name: str, params: tuple[Param, ...], defaults: tuple[Any, ...]) -> str:
    parts = []
    for param, default in zip(params, defaults, strict=False):
        if param.multiple:
            parts.append("*" + param.name)
        elif param.required:
            parts.append(param.name)
        else:
            parts.append(f"{param.name}={default!r}")
    return f"{name}({', '.join(parts)})"


def function_info(name: str) -> dict[str, Any]:
    """graphite-web's description of one function (``/functions/<name>``).

    Raises:
        KeyError: no such function (graphite-web answers 404).
    """
    if name == "seriesByTag":
        params: tuple[Param, ...] = _SERIES_BY_TAG
        defaults: tuple[Any, ...] = (None,)
        description = _SERIES_BY_TAG_DOC
    else:
        function: Function = FUNCTIONS[name]
        params, defaults = function.params, function.defaults
        description = inspect.getdoc(function.impl) or ""
    return {
        "name": name,
        "function": _signature(name, params, defaults),
        "description": description,
        "module": "statsyard.render.functions",
        "group": GROUPS.get(name, "Ungrouped"),
        "params": [_param_json(p, d) for p, d in zip(params, defaults, strict=False)],
    }


def function_list(*, group: str | None = None, grouped: bool = False) -> dict[str, Any]:
    """graphite-web's ``/functions`` answer: every function, or one group's.

    Args:
        group: only the functions of this group (``Combine``, ``Transform``...).
        grouped: nest the functions under their group's name.
    """
    result: dict[str, Any] = {}
    for name in sorted([*FUNCTIONS, "seriesByTag"]):
        info = function_info(name)
        if group is not None and info["group"] != group:
            continue
        if grouped:
            result.setdefault(info["group"], {})[name] = info
        else:
            result[name] = info
    return result


def to_json(value: dict[str, Any]) -> str:
    """JSON as graphite-web writes ``/functions`` (infinity as ``1e9999``)."""
    text = json.dumps(value)
    return text.replace("Infinity,", "1e9999,").replace("Infinity}", "1e9999}")
