"""The graphite-web compatible render engine: targets in, series out.

Pure Python and independent of HTTP: :func:`evaluate` reads through a
:class:`SeriesSource` (:class:`StorageSource` over a live or read-only
:class:`~statsyard.storage.Storage`), and :func:`format_json`,
:func:`format_csv` and :func:`format_raw` write graphite-web's formats.
See ``docs/render.md``.
"""

from statsyard.render.evaluator import evaluate
from statsyard.render.functions import FUNCTIONS
from statsyard.render.grammar import format_target, parse_target
from statsyard.render.output import (
    apply_max_data_points,
    format_csv,
    format_json,
    format_raw,
)
from statsyard.render.resolution import RenderSettings, SchemaRule, parse_step
from statsyard.render.series import TimeSeries
from statsyard.render.source import (
    SeriesSource,
    StorageSource,
    series_name,
    series_tags,
)

__all__ = [
    "FUNCTIONS",
    "RenderSettings",
    "SchemaRule",
    "SeriesSource",
    "StorageSource",
    "TimeSeries",
    "apply_max_data_points",
    "evaluate",
    "format_csv",
    "format_json",
    "format_raw",
    "format_target",
    "parse_step",
    "parse_target",
    "series_name",
    "series_tags",
]
