"""Pictures of rendered series: PNG and SVG drawn with matplotlib's Agg backend.

What ``/render?format=png`` and ``statsyard plot`` draw, in the spirit of
graphite-web's line graphs: a dark background, graphite-web's colour list,
a time axis, a legend, and the options graphite-web's users reach for most
(:class:`PlotOptions`). matplotlib is imported on first use only: it takes
a noticeable fraction of a second, which start-up and the CLI should not pay.

matplotlib's object API (a ``Figure`` with its own Agg canvas, never
``pyplot``) keeps no global figure state, but its font and text caches are
shared, so drawings are serialised by one lock; each takes a few tens of
milliseconds.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import attrs

__all__ = ["AREA_MODES", "FORMATS", "PlotOptions", "PlotSeries", "draw"]

FORMATS: Final = ("png", "svg")
AREA_MODES: Final = ("none", "first", "all", "stacked")

COLORS: Final = (
    "blue",
    "green",
    "red",
    "purple",
    "brown",
    "yellow",
    "aqua",
    "grey",
    "magenta",
    "pink",
    "gold",
    "mistyrose",
)
"""graphite-web's default ``colorList``."""

_DPI: Final = 100
_LOCK: Final = threading.Lock()


class PlotSeries(Protocol):
    """What is drawn: a named series (the render engine's ``TimeSeries``)."""

    name: str

    def datapoints(self) -> list[tuple[float | None, int]]:
        """``(value or None, epoch seconds)`` pairs, in time order."""


def _check_color(value: str) -> str:
    from matplotlib.colors import is_color_like

    candidate = value if is_color_like(value) else "#" + value
    if not is_color_like(candidate):
        raise ValueError(f"not a colour: {value!r}")
    return candidate


@attrs.frozen
class PlotOptions:
    """How to draw (graphite-web's parameter names in brackets).

    Attributes:
        width: picture width in pixels (``width``).
        height: picture height in pixels (``height``).
        title: title above the graph (``title``).
        vtitle: title of the y axis (``vtitle``).
        start: left end of the time axis, epoch seconds (``from``).
        end: right end of the time axis, epoch seconds (``until``).
        y_min: bottom of the y axis, or None to fit (``yMin``).
        y_max: top of the y axis, or None to fit (``yMax``).
        line_width: line width in pixels (``lineWidth``).
        area_mode: ``none``, ``first`` (fill the first series), ``all`` (fill
            each) or ``stacked`` (stack and fill all) (``areaMode``).
        hide_legend: no legend; by default shown up to 10 series
            (``hideLegend``).
        background: background colour (``bgcolor``).
        foreground: text and axis colour (``fgcolor``).
        colors: the series' colours in turn (``colorList``).
    """

    width: int = attrs.field(default=330, validator=attrs.validators.ge(50))
    height: int = attrs.field(default=250, validator=attrs.validators.ge(50))
    title: str = ""
    vtitle: str = ""
    start: int | None = None
    end: int | None = None
    y_min: float | None = None
    y_max: float | None = None
    line_width: float = attrs.field(default=1.2, validator=attrs.validators.gt(0))
    area_mode: str = attrs.field(
        default="none", validator=attrs.validators.in_(AREA_MODES)
    )
    hide_legend: bool | None = None
    background: str = "black"
    foreground: str = "white"
    colors: tuple[str, ...] = COLORS

    def __attrs_post_init__(self) -> None:
        if max(self.width, self.height) > 10_000:
            raise ValueError(
                f"width and height must be at most 10000, "
                f"got {self.width}x{self.height}"
            )


def draw(
    series: Sequence[PlotSeries], options: PlotOptions, *, fmt: str = "png"
) -> bytes:
    """Draw ``series`` and return the picture's bytes.

    Args:
        series: what to draw; with none, the picture says "No Data".
        options: how to draw it.
        fmt: ``png`` or ``svg``.

    Raises:
        ValueError: an unknown format or colour.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    with _LOCK:
        return _draw(series, options, fmt)


def _draw(series: Sequence[PlotSeries], options: PlotOptions, fmt: str) -> bytes:
    import numpy as np
    from matplotlib import dates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    background = _check_color(options.background)
    foreground = _check_color(options.foreground)
    colors = [_check_color(color) for color in options.colors] or ["blue"]
    figure = Figure(
        figsize=(options.width / _DPI, options.height / _DPI),
        dpi=_DPI,
        facecolor=background,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_facecolor(background)
    for spine in axes.spines.values():
        spine.set_color(foreground)
    axes.tick_params(colors=foreground, labelsize=7)
    axes.grid(True, color=foreground, alpha=0.2, linewidth=0.5)
    if options.title:
        axes.set_title(options.title, color=foreground, fontsize=9)
    if options.vtitle:
        axes.set_ylabel(options.vtitle, color=foreground, fontsize=8)

    stacked = np.zeros(0)
    drawn = 0
    for index, one in enumerate(series):
        points = one.datapoints()
        if not points:
            continue
        times = dates.date2num(
            [datetime.fromtimestamp(ts, UTC).replace(tzinfo=None) for _, ts in points]
        )
        values = np.array(
            [math.nan if value is None else float(value) for value, _ in points]
        )
        color = colors[index % len(colors)]
        line_style: dict[str, Any] = {
            "color": color,
            "linewidth": options.line_width,
            "label": one.name,
        }
        if options.area_mode == "stacked":
            base = np.zeros(len(values))
            if len(stacked) == len(values):
                base = stacked
            top = base + np.nan_to_num(values)
            axes.fill_between(times, base, top, color=color, alpha=0.8, linewidth=0)
            axes.plot(times, top, **line_style)
            stacked = top
        else:
            axes.plot(times, values, **line_style)
            if options.area_mode == "all" or (
                options.area_mode == "first" and drawn == 0
            ):
                axes.fill_between(
                    times,
                    0,
                    values,
                    where=~np.isnan(values),
                    color=color,
                    alpha=0.5,
                    linewidth=0,
                )
        drawn += 1

    if not drawn:
        axes.text(
            0.5,
            0.5,
            "No Data",
            color=foreground,
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
    locator = dates.AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    axes.xaxis.get_offset_text().set_fontsize(7)
    if options.start is not None and options.end is not None:
        axes.set_xlim(
            dates.date2num(
                datetime.fromtimestamp(options.start, UTC).replace(tzinfo=None)
            ),
            dates.date2num(
                datetime.fromtimestamp(options.end, UTC).replace(tzinfo=None)
            ),
        )
    if options.y_min is not None or options.y_max is not None:
        axes.set_ylim(bottom=options.y_min, top=options.y_max)
    show_legend = (
        drawn > 0 and drawn <= 10
        if options.hide_legend is None
        else not options.hide_legend
    )
    if show_legend and drawn:
        legend = axes.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncols=min(drawn, 2),
            fontsize=7,
            frameon=False,
            labelcolor=foreground,
        )
        legend.set_in_layout(True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, facecolor=background)
    return buffer.getvalue()
