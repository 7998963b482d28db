"""``/render``: graphite-web's render endpoint over the render engine.

Parses graphite-web's parameters, evaluates the targets with
:func:`statsyard.render.evaluate` against the live storage and writes the
result as ``json``, ``csv``, ``raw`` (the engine's formatters) or a ``png``
or ``svg`` picture (:mod:`statsyard.render.plot`). As in graphite-web, the
default format is ``png``, the default range the last 24 hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from statsyard.exceptions import NotRunningError, RenderError, TimeFormatError
from statsyard.http.api import HttpError, Request, Response
from statsyard.render import (
    RenderSettings,
    StorageSource,
    apply_max_data_points,
    evaluate,
    format_csv,
    format_json,
    format_raw,
)
from statsyard.timeparse import parse_time

if TYPE_CHECKING:
    from datetime import tzinfo

    from statsyard.render.plot import PlotOptions
    from statsyard.storage import Storage

__all__ = ["RenderView"]

FORMATS: Final = ("png", "svg", "json", "csv", "raw")
_TYPES: Final = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "raw": "text/plain; charset=utf-8",
    "png": "image/png",
    "svg": "image/svg+xml",
}
_TRUE: Final = ("1", "true", "yes", "on")


def _bad(message: str) -> HttpError:
    return HttpError(400, f"Invalid parameters ({message})")


class RenderView:
    """The ``/render`` handler.

    Args:
        storage: returns the live storage, waiting up to the given seconds.
        settings: steps, naming and the point budget (``[render]``).
        clock: epoch milliseconds now (tests pass a fixed one).
    """

    def __init__(
        self,
        *,
        storage: Callable[[float], Storage],
        settings: RenderSettings,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._clock = clock

    def __call__(self, request: Request) -> Response:
        """Answer one ``/render`` request."""
        if request.method not in ("GET", "POST"):
            raise HttpError(
                405, f"method {request.method} not allowed; use GET or POST"
            )
        form = (request.get("format") or "png").lower()
        if form not in FORMATS:
            raise _bad(f"format must be one of {', '.join(FORMATS)}, got {form!r}")
        tz = _zone(request.get("tz"))
        now_ms = self._time(request, "now", None, tz)
        start_ms = self._time(request, "from", "-1d", tz, now_ms)
        end_ms = self._time(request, "until", "now", tz, now_ms)
        max_data_points = _positive_int(request, "maxDataPoints")
        no_null_points = (request.get("noNullPoints") or "").lower() in _TRUE
        x_files_factor = _float(request, "xFilesFactor")
        targets = request.getlist("target")
        plot = (
            _plot_options(request, start_ms, end_ms) if form in ("png", "svg") else None
        )
        try:
            storage = self._storage(5.0)
        except NotRunningError as error:
            raise HttpError(503, f"storage is not open: {error}") from None
        try:
            series = evaluate(
                targets,
                start_ms=start_ms,
                end_ms=end_ms,
                now_ms=now_ms,
                source=StorageSource(storage),
                settings=self._settings,
                x_files_factor=x_files_factor,
            )
        except RenderError as error:
            raise _bad(str(error)) from None
        body: bytes
        if form == "json":
            body = format_json(
                series, max_data_points=max_data_points, no_null_points=no_null_points
            ).encode("utf-8")
        elif form == "csv":
            body = format_csv(series, tz=tz).encode("utf-8")
        elif form == "raw":
            body = format_raw(series).encode("utf-8")
        else:
            from statsyard.render.plot import draw

            assert plot is not None
            apply_max_data_points(series, max_data_points or plot.width)
            try:
                body = draw(series, plot, fmt=form)
            except ValueError as error:  # a colour matplotlib does not know
                raise _bad(str(error)) from None
        return Response(body, _TYPES[form], headers=[("Cache-Control", "no-cache")])

    def _time(
        self,
        request: Request,
        name: str,
        default: str | None,
        tz: tzinfo,
        now_ms: int | None = None,
    ) -> int:
        text = request.get(name) or default
        if now_ms is None:
            now_ms = self._clock()
        if text is None:
            return now_ms
        try:
            return parse_time(text, now_ms=now_ms, tz=tz)
        except TimeFormatError as error:
            raise _bad(f"{name}: {error}") from None


def _zone(name: str | None) -> tzinfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(f"unknown time zone tz={name!r}") from None


def _positive_int(request: Request, name: str) -> int | None:
    text = request.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(float(text))
    except ValueError:
        raise _bad(f"{name} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise _bad(f"{name} must be a positive integer, got {text!r}")
    return value


def _float(request: Request, name: str) -> float | None:
    text = request.get(name)
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise _bad(f"{name} must be a number, got {text!r}") from None


def _plot_options(request: Request, start_ms: int, end_ms: int) -> PlotOptions:
    """graphite-web's picture parameters as :class:`PlotOptions`."""
    from statsyard.render.plot import COLORS, PlotOptions

    options: dict[str, Any] = {"start": start_ms // 1000, "end": end_ms // 1000}
    for param, key in (("width", "width"), ("height", "height")):
        value = _positive_int(request, param)
        if value is not None:
            options[key] = value
    for param, key in (
        ("yMin", "y_min"),
        ("yMax", "y_max"),
        ("lineWidth", "line_width"),
    ):
        number = _float(request, param)
        if number is not None:
            options[key] = number
    for param, key in (
        ("title", "title"),
        ("vtitle", "vtitle"),
        ("areaMode", "area_mode"),
        ("bgcolor", "background"),
        ("fgcolor", "foreground"),
    ):
        text = request.get(param)
        if text:
            options[key] = text
    hide = request.get("hideLegend")
    if hide:
        options["hide_legend"] = hide.lower() in _TRUE
    colors = request.get("colorList")
    options["colors"] = tuple(c for c in (colors or "").split(",") if c) or COLORS
    try:
        return PlotOptions(**options)
    except (ValueError, TypeError) as error:
        raise _bad(str(error)) from None
