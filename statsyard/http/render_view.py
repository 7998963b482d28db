"""``/render``: graphite-web's render endpoint over the render engine.

Parses graphite-web's parameters, evaluates the targets with
:func:`statsyard.render.evaluate` against the live storage and writes the
result as ``json``, ``csv``, ``raw`` (the engine's formatters) or a ``png``
or ``svg`` picture (:mod:`statsyard.render.plot`). As in graphite-web, the
default format is ``png``, the default range the last 24 hours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from statsyard.datapoint import now_ms
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

    from statsyard.render import TimeSeries
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
RENDERS_AT_ONCE: Final = 1
"""Renders computed at once; more wait their turn (ingest shares the CPU)."""
GATE_WAIT: Final = 60.0
"""Seconds a render waits for its turn before a 503."""


@attrs.frozen
class _RenderQuery:
    """A checked ``/render`` request."""

    targets: tuple[str, ...]
    form: str
    tz: tzinfo
    start_ms: int
    end_ms: int
    now_ms: int
    max_data_points: int | None
    no_null_points: bool
    x_files_factor: float | None
    plot: PlotOptions | None


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
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._clock = clock
        self._gate = threading.BoundedSemaphore(RENDERS_AT_ONCE)

    def __call__(self, request: Request) -> Response:
        """Answer one ``/render`` request.

        The parameters are checked first; then the request waits for its
        turn (:data:`RENDERS_AT_ONCE`), since evaluating and drawing take
        the CPU that ingest shares.
        """
        if request.method not in ("GET", "POST"):
            raise HttpError(
                405, f"method {request.method} not allowed; use GET or POST"
            )
        query = self._parse(request)
        try:
            storage = self._storage(5.0)
        except NotRunningError as error:
            raise HttpError(503, f"storage is not open: {error}") from None
        if not self._gate.acquire(timeout=GATE_WAIT):
            raise HttpError(503, f"busy: waited {GATE_WAIT:.0f} s for a turn; retry")
        try:
            body = self._render(query, storage)
        finally:
            self._gate.release()
        return Response(
            body, _TYPES[query.form], headers=[("Cache-Control", "no-cache")]
        )

    def _parse(self, request: Request) -> _RenderQuery:
        form = (request.get("format") or "png").lower()
        if form not in FORMATS:
            raise _bad(f"format must be one of {', '.join(FORMATS)}, got {form!r}")
        tz = _zone(request.get("tz"))
        now_ms = self._time(request, "now", None, tz)
        start_ms = self._time(request, "from", "-1d", tz, now_ms)
        end_ms = self._time(request, "until", "now", tz, now_ms)
        return _RenderQuery(
            targets=tuple(request.getlist("target")),
            form=form,
            tz=tz,
            start_ms=start_ms,
            end_ms=end_ms,
            now_ms=now_ms,
            max_data_points=_positive_int(request, "maxDataPoints"),
            no_null_points=(request.get("noNullPoints") or "").lower() in _TRUE,
            x_files_factor=_float(request, "xFilesFactor"),
            plot=(
                _plot_options(request, start_ms, end_ms)
                if form in ("png", "svg")
                else None
            ),
        )

    def _render(self, query: _RenderQuery, storage: Storage) -> bytes:
        try:
            series = evaluate(
                query.targets,
                start_ms=query.start_ms,
                end_ms=query.end_ms,
                now_ms=query.now_ms,
                source=StorageSource(storage),
                settings=self._settings,
                x_files_factor=query.x_files_factor,
            )
        except RenderError as error:
            raise _bad(str(error)) from None
        if query.form == "json":
            return _paced_json(
                series,
                storage.pace,
                query.max_data_points,
                no_null_points=query.no_null_points,
            )
        if query.form == "csv":
            return format_csv(series, tz=query.tz).encode("utf-8")
        if query.form == "raw":
            return format_raw(series).encode("utf-8")
        from statsyard.render.plot import draw

        plot = query.plot
        assert plot is not None
        apply_max_data_points(series, query.max_data_points or plot.width)
        storage.pace()
        try:
            return draw(series, plot, fmt=query.form)
        except ValueError as error:  # a colour matplotlib does not know
            raise _bad(str(error)) from None

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


def _paced_json(
    series: list[TimeSeries],
    pace: Callable[[], None],
    max_data_points: int | None,
    *,
    no_null_points: bool,
) -> bytes:
    """:func:`format_json`'s output, written a series at a time.

    Between series the storage's pacer lets ingest run, so that encoding a
    large answer does not hold the interpreter lock for its whole length.
    """
    if max_data_points is not None and any(len(one) for one in series):
        apply_max_data_points(series, max_data_points)
    parts: list[str] = []
    for one in series:
        text = format_json([one], no_null_points=no_null_points)
        if text != "[]":
            parts.append(text[1:-1])
        pace()
    return ("[" + ", ".join(parts) + "]").encode("utf-8")


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
