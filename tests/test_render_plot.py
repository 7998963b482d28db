"""Tests of statsyard.render.plot: pictures of series, PNG and SVG."""

from __future__ import annotations

import io
import math

import pytest
from matplotlib import image

from statsyard.render.plot import PlotOptions, draw

T0 = 1_700_000_000


class FakeSeries:
    """A named series with a value per minute (None for a gap)."""

    def __init__(self, name: str, values: list[float | None]) -> None:
        self.name = name
        self._values = values

    def datapoints(self) -> list[tuple[float | None, int]]:
        return [(value, T0 + 60 * i) for i, value in enumerate(self._values)]


WAVE = FakeSeries(
    "servers.web1.cpu", [None if i == 7 else math.sin(i / 5) + 2 for i in range(60)]
)
FLAT = FakeSeries("servers.db1.cpu", [1.0] * 60)


def _png_size(data: bytes) -> tuple[int, int]:
    pixels = image.imread(io.BytesIO(data), format="png")
    return pixels.shape[1], pixels.shape[0]


@pytest.mark.parametrize("area_mode", ["none", "first", "all", "stacked"])
def test_png_has_the_asked_size_in_every_area_mode(area_mode: str) -> None:
    """width and height are the picture's pixels, whatever the area mode."""
    data = draw(
        [WAVE, FLAT],
        PlotOptions(width=640, height=320, title="CPU", area_mode=area_mode),
    )
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert _png_size(data) == (640, 320)


def test_svg_carries_the_title_and_the_legend() -> None:
    """SVG output is text holding the title and each series' name."""
    data = draw(
        [WAVE, FLAT],
        PlotOptions(title="load average", start=T0, end=T0 + 3600, y_min=0, y_max=5),
        fmt="svg",
    )
    text = data.decode("utf-8")
    assert text.lstrip().startswith("<?xml")
    for word in ("load average", "servers.web1.cpu", "servers.db1.cpu"):
        assert word in text


def test_no_series_draws_no_data() -> None:
    """An empty result is still a picture, saying so."""
    assert "No Data" in draw([], PlotOptions(), fmt="svg").decode("utf-8")
    assert _png_size(draw([], PlotOptions())) == (330, 250)


def test_bad_options_are_refused() -> None:
    """Unknown area modes, formats and colours raise ValueError."""
    with pytest.raises(ValueError, match="area_mode"):
        PlotOptions(area_mode="sideways")
    with pytest.raises(ValueError, match="format"):
        draw([FLAT], PlotOptions(), fmt="gif")
    with pytest.raises(ValueError, match="not a colour"):
        draw([FLAT], PlotOptions(background="nocolour"))
    with pytest.raises(ValueError, match="at most 10000"):
        PlotOptions(width=20_000)
