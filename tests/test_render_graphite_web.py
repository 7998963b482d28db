"""The render engine against graphite-web itself: identical JSON, target by target.

The same points go into StatsYard's storage and, as carbon would write them,
into whisper files; Debian's graphite-web 1.1 (``apt-get install graphite-web``,
done by ``.ci/run``) renders every target from them in-process
(tests/graphite_web/oracle.py) and our engine must answer with the very same
JSON text: names, tags, timestamps, values, null handling, steps.

The one deliberate difference, from issue 11: ``seriesByTag()`` also reaches
default-entity (plain) series by their name, so the oracle registers plain
series in graphite-web's tag database too.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statsyard.datapoint import DataPoint
from statsyard.render import (
    RenderSettings,
    SchemaRule,
    StorageSource,
    evaluate,
    format_csv,
    format_json,
    format_raw,
)
from statsyard.storage import Storage
from statsyard.timeparse import parse_time

SYSTEM_PYTHON = "/usr/bin/python3"
ORACLE = Path(__file__).parent / "graphite_web" / "oracle.py"
B = 1_699_999_200
NOW = B + 3600
SETTINGS = RenderSettings(schema=(SchemaRule(r"^db\.", 30),))


def _has_graphite_web() -> bool:
    try:
        found = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import graphite.render, django, whisper"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0


pytestmark = pytest.mark.skipif(
    not _has_graphite_web(),
    reason="needs Debian's graphite-web (apt-get install graphite-web; .ci/run does)",
)


def _series() -> dict[str, tuple[int, list[tuple[float, float]]]]:
    """Graphite name to (step, points), points at odd moments, some sharing a slot."""
    rng = random.Random(11)
    out: dict[str, tuple[int, list[tuple[float, float]]]] = {}

    def walk(
        every: int, start: int, stop: int, skip: float
    ) -> list[tuple[float, float]]:
        value = rng.uniform(0, 100)
        points = []
        for t in range(start, stop, every):
            if rng.random() < skip:
                continue
            value = round(value + rng.uniform(-20, 25), 2)
            jitter = rng.choice([0, 0, 0.25, 0.999, 7, every - 1])
            points.append((t + jitter, value))
        return points

    web_a = walk(60, B - 2400, B + 3540, 0.05)
    # A client retried some writes with other values: the last write wins
    # (each of these points is alone in its slot, so whisper agrees).
    retried = [(timestamp, value + 1000) for timestamp, value in web_a[::7]]
    out["web.a.requests"] = (60, web_a + retried)
    out["web.b.requests"] = (60, walk(40, B - 2400, B + 3540, 0.2))
    out["web.c.requests"] = (60, walk(60, B - 2400, B + 3540, 0.5))
    out["db.x.load"] = (30, walk(15, B - 2400, B + 3540, 0.1))
    out["cpu.user"] = (60, walk(60, B - 1200, B + 1200, 0.1))
    out["cpu.user;entity=web1"] = (60, walk(60, B - 1200, B + 1200, 0.1))
    out["cpu.user;entity=web2"] = (60, walk(60, B - 1200, B + 1200, 0.3))
    out["mem.free;entity=web1"] = (60, walk(60, B - 1200, B + 1200, 0.1))
    counter = 0.0
    counter_points = []
    for i, t in enumerate(range(B - 2400, B + 3540, 60)):
        counter = 5.0 if i % 17 == 16 else counter + rng.randint(0, 300)
        counter_points.append((float(t + 3), counter))
    out["net.rx.bytes"] = (60, counter_points)
    for name in ("s.s1.used", "s.s1.total", "s.s2.used", "s.s3.total"):
        out[name] = (60, walk(60, B - 600, B + 600, 0.0))
    return out


SERIES = _series()

TARGETS = [
    "web.*.requests",
    "web.{a,b}.requests",
    "web.[ab].requests",
    "web.?.requests",
    "db.x.load",
    "*.*.*",
    "cpu.user;entity=web1",
    "sumSeries(web.*.requests)",
    "sum(web.*.requests)",
    "averageSeries(web.*.requests)",
    "avg(web.a.requests, web.b.requests)",
    "minSeries(web.*.requests)",
    "maxSeries(web.*.requests)",
    "sumSeries(web.a.requests, db.x.load)",
    "averageSeries(db.x.load, web.*.requests)",
    "aggregate(web.*.requests, 'median')",
    "aggregate(web.*.requests, 'sum', 0.7)",
    "aggregate(web.*.requests, 'avg_zero')",
    "alias(web.a.requests, 'A')",
    "aliasByNode(web.*.requests, 1)",
    "aliasByNode(web.*.requests, 0, -1)",
    "aliasByNode(sumSeries(web.*.requests), 0)",
    "aliasByTags(seriesByTag('name=cpu.user', 'entity!='), 'entity')",
    "scale(web.*.requests, 2.5)",
    "offset(web.a.requests, -10)",
    "absolute(web.b.requests)",
    "summarize(web.a.requests, '5min')",
    "summarize(web.a.requests, '5min', 'avg')",
    "summarize(web.a.requests, '7min', 'max', true)",
    "summarize(db.x.load, '2min', 'last')",
    "perSecond(net.rx.bytes)",
    "nonNegativeDerivative(net.rx.bytes)",
    # maxValue/minValue are left out: graphite-web 1.1.8 crashes on them when
    # a value is null (fixed later upstream); tests/test_render_functions.py
    # checks them by hand.
    "derivative(web.b.requests)",
    "integral(web.c.requests)",
    # movingAverage/movingWindow are left out: Debian's 1.1.8 averages the
    # window before each point, 1.1.9 and later (our reference, 1.1.10) the
    # window ending at it; tests/test_render_functions.py checks them by hand.
    "keepLastValue(web.c.requests)",
    "keepLastValue(web.c.requests, 2)",
    "transformNull(web.c.requests)",
    "transformNull(web.c.requests, -1, web.b.requests)",
    "timeShift(web.a.requests, '10min')",
    "timeShift(web.a.requests, '+5min')",
    "timeShift(web.a.requests, '-15min', false)",
    "asPercent(web.*.requests)",
    "asPercent(web.a.requests, 1000)",
    "asPercent(web.*.requests, web.c.requests)",
    "asPercent(s.*.used, s.*.total, 1)",
    "highestAverage(web.*.requests, 2)",
    "highestCurrent(web.*.requests, 1)",
    "highestMax(web.*.requests, 1)",
    "lowestAverage(web.*.requests, 2)",
    "limit(web.*.requests, 2)",
    "sortByName(web.*.requests, true, true)",
    "sortByMaxima(web.*.requests)",
    "groupByNode(web.*.requests, 0, 'sum')",
    "groupByNode(*.*.*, 0)",
    "groupByNodes(web.*.requests, 'max', 0, 2)",
    "groupByNode(web.*.requests, 2, 'sumSeries')",
    "groupByTags(seriesByTag('name=cpu.user', 'entity!='), 'sum', 'entity')",
    "groupByTags(seriesByTag('entity=~web'), 'average', 'name')",
    "consolidateBy(web.a.requests, 'max')",
    "seriesByTag('name=cpu.user')",
    "seriesByTag('entity=~web.*')",
    "seriesByTag('name=cpu.user', 'entity!=web1')",
    "web.*.requests|sumSeries()|scale(0.5)",
    "diffSeries(web.a.requests, web.b.requests)",
    "multiplySeries(web.a.requests, web.b.requests)",
    "countSeries(web.*.requests)",
    "divideSeries(web.*.requests, web.a.requests)",
    "aliasSub(web.*.requests, '^web\\.(\\w)\\..*', 'site-\\1')",
    "aliasByMetric(web.*.requests)",
    "exclude(web.*.requests, 'web.b')",
    "grep(web.*.requests, 'b')",
    "removeEmptySeries(web.*.requests, 0.6)",
    "removeAboveValue(web.a.requests, 100)",
    "removeBelowValue(web.a.requests, 100)",
    "lowestCurrent(web.*.requests, 1)",
    "sortByMinima(web.*.requests)",
    "sortByTotal(web.*.requests)",
]

RANGES = [
    ("-1h", "now"),
    ("-10min", "-1min"),
    (str(B - 1), str(B + 599)),
    ("22:00_20231114", "22:30_20231114"),
    ("teatime", "noon+10h30min"),
    ("-90min", "-1h15min"),
]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    """The same points in StatsYard's storage (half in blocks, half in the head)."""
    directory = tmp_path_factory.mktemp("statsyard")
    store = Storage.open(directory, checkpoint_points=None)
    rows: list[DataPoint] = []
    for name, (_step, points) in SERIES.items():
        metric, _, entity = name.partition(";entity=")
        for timestamp, value in points:
            rows.append(
                DataPoint(metric, entity or "graphite", value, round(timestamp * 1000))
            )
    half = len(rows) // 2  # in writing order, as carbon wrote them
    store.append(rows[:half])
    store.checkpoint()
    store.append(rows[half:])
    yield store
    store.close()


def _oracle(tmp_path: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    job = {
        "now": NOW,
        "series": {
            name: {"step": step, "points": points}
            for name, (step, points) in SERIES.items()
        },
        "requests": requests,
    }
    env = {
        **os.environ,
        "ORACLE_ROOT": str(tmp_path),
        "PYTHONPATH": str(ORACLE.parent),
    }
    done = subprocess.run(
        [SYSTEM_PYTHON, str(ORACLE)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers


@pytest.fixture(scope="module")
def answers(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, str, str, str], str]:
    """graphite-web's answer to every (target, from, until, extra) request."""
    requests: list[dict[str, str]] = []
    keys: list[tuple[str, str, str, str]] = []
    for target in TARGETS:
        for start, end in RANGES:
            keys.append((target, start, end, ""))
            requests.append({"target": target, "from": start, "until": end})
    for target in [
        *TARGETS,
        "consolidateBy(db.x.load, 'sum')",
        "sumSeries(consolidateBy(db.x.load, 'min'), web.a.requests)",
    ]:
        for extra in (
            "maxDataPoints=7",
            "maxDataPoints=1",
            "noNullPoints=1",
            "xFilesFactor=0.5",
        ):
            name, value = extra.split("=")
            keys.append((target, "-1h", "now", extra))
            requests.append(
                {"target": target, "from": "-1h", "until": "now", name: value}
            )
    for form in ("csv", "raw"):
        keys.append(("web.*.requests", "-10min", "now", form))
        requests.append({"target": "web.*.requests", "from": "-10min", "until": "now"})
    for request in requests:
        request.update(now=str(NOW), noCache="1")
        request.setdefault("format", "json")
    for key, request in zip(keys, requests, strict=True):
        if key[3] in ("csv", "raw"):
            request["format"] = key[3]
    results = _oracle(tmp_path_factory.mktemp("graphite"), requests)
    out: dict[tuple[str, str, str, str], str] = {}
    for key, result in zip(keys, results, strict=True):
        assert result["status"] == 200, (key, result["body"][-2000:])
        out[key] = result["body"]
    return out


def _ours(storage: Storage, target: str, start: str, end: str, extra: str) -> str:
    now_ms = NOW * 1000
    series = evaluate(
        [target],
        start_ms=parse_time(start, now_ms=now_ms),
        end_ms=parse_time(end, now_ms=now_ms),
        now_ms=now_ms,
        source=StorageSource(storage),
        settings=SETTINGS,
        x_files_factor=0.5 if extra == "xFilesFactor=0.5" else None,
    )
    if extra == "csv":
        return format_csv(series)
    if extra == "raw":
        return format_raw(series)
    if extra.startswith("maxDataPoints="):
        return format_json(series, max_data_points=int(extra.split("=")[1]))
    return format_json(series, no_null_points=extra == "noNullPoints=1")


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_renders_the_json_graphite_web_renders(
    storage: Storage, answers: dict[tuple[str, str, str, str], str], target: str
) -> None:
    """Byte for byte, over several time ranges and time forms."""
    for start, end in RANGES:
        expected = answers[(target, start, end, "")]
        assert _ours(storage, target, start, end, "") == expected, (start, end)
    # The first range always has data: an empty answer would prove nothing.
    assert json.loads(answers[(target, *RANGES[0], "")])


def test_max_data_points_no_null_points_csv_and_raw_match_graphite_web(
    storage: Storage, answers: dict[tuple[str, str, str, str], str]
) -> None:
    """The output options and the other formats, byte for byte."""
    for (target, start, end, extra), expected in answers.items():
        if extra:
            assert _ours(storage, target, start, end, extra) == expected, (
                target,
                extra,
            )
