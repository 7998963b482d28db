"""Tests of statsyard.cli.stress: the generated stream and the stress run's report."""

from __future__ import annotations

import io
import json
import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from statsyard.cli.main import main
from statsyard.cli.stress import (
    IngestStress,
    generate_points,
    write_percentile_distribution,
)
from statsyard.config import Config

# hdr-plot (PyPI `hdr-plot`, the standard HdrHistogram plotter) imports
# pkg_resources only to print its own version, which --noversion skips; recent
# setuptools no longer ships pkg_resources, so the run gives it an empty one.
_RUN_HDR_PLOT = """
import sys, types
sys.modules.setdefault("pkg_resources", types.ModuleType("pkg_resources"))
import matplotlib
matplotlib.use("Agg")
from hdr_plot import hdr_plot
print(hdr_plot.parse_metadata(sys.argv[1]))
rows = hdr_plot.parse_percentiles(sys.argv[1])
print(len(rows), rows["Latency"].iloc[0], rows["TotalCount"].iloc[-1])
out, hgrm = sys.argv[2], sys.argv[1]
sys.argv = ["hdr-plot", "--noversion", "--units", "us", "--output", out, hgrm]
hdr_plot.main()
"""


def test_generated_points_are_lazy_and_exactly_as_invalid_as_asked() -> None:
    """The generator is an iterator; floor(n * share) points are invalid."""
    points = generate_points(1000, metrics=7, entities=3, invalid_share=0.25)
    assert iter(points) is points
    materialised = list(points)
    assert len(materialised) == 1000
    assert sum(1 for p in materialised if math.isnan(p[2])) == 250
    assert {p[0] for p in materialised} == {f"stress.metric{m}" for m in range(7)}
    assert len({p[1] for p in materialised}) == 3
    with pytest.raises(ValueError, match="invalid_share"):
        list(generate_points(1, invalid_share=1.5))


def test_stress_run_accounts_for_every_point(tmp_path: Path) -> None:
    """pushed = written + invalid + lost, with the data kept where asked."""
    stress = IngestStress(invalid_share=0.1, batch_size=300, data_dir=tmp_path / "d")
    report = stress.run(3000)
    assert (report.pushed, report.written, report.invalid, report.lost) == (
        3000,
        2700,
        300,
        0,
    )
    assert report.balanced
    assert report.points_per_second > 0
    assert 0 < report.validation_us["p50"] <= report.validation_us["max"]
    assert report.bytes_written > 0
    assert report.bytes_per_point == report.bytes_written / 2700
    # 3,000 points are below the checkpoint threshold, but the clean stop
    # compacted the head: the log holds no points (issue 13).
    assert 0 < report.log_bytes < 100 < report.segment_bytes
    assert "at the clean stop, so the log is empty" in report.to_text()
    assert report.peak_rss_bytes > 0
    assert (tmp_path / "d").is_dir()


def test_stress_command_prints_json_and_writes_the_hgrm_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stress N --json --hgrm PATH`: JSON report and HdrHistogram percentile file."""
    hgrm = tmp_path / "validation.hgrm"
    status = main(
        ["stress", "2_000", "--json", "--hgrm", str(hgrm), "--progress", "never"]
    )
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["pushed"] == report["written"] == 2000
    assert report["balanced"] is True
    assert set(report["validation_us"]) == {"p50", "p90", "p99", "p99.9", "max"}
    text = hgrm.read_text()
    assert "Value     Percentile TotalCount 1/(1-Percentile)" in text
    assert re.search(r"^#\[Max += +[0-9.]+, Total count += +2000\]$", text, re.M)


GOLDEN = Path(__file__).resolve().parent / "data" / "hgrm"


def _golden_histograms() -> dict[str, tuple[HdrHistogram, float]]:
    """The histograms tests/data/hgrm/HgrmGolden.java wrote with HdrHistogram."""
    linear = HdrHistogram(1, 60_000_000_000, 3)
    for value in range(1_000, 101_000, 1_000):
        linear.record_value(value, 3)
    spread = HdrHistogram(1, 3_600_000_000, 2)
    for i in range(1, 5001):
        spread.record_value((i * i * 7919) % 50_000_000 + 1, i % 7 + 1)
    return {
        "linear": (linear, 1000.0),
        "spread": (spread, 1.0),
        "empty": (HdrHistogram(1, 60_000_000_000, 3), 1000.0),
    }


@pytest.mark.parametrize("name", ["linear", "spread", "empty"])
def test_hgrm_is_byte_for_byte_what_hdrhistogram_writes(name: str) -> None:
    """Same bytes as HdrHistogram 2.1.11's outputPercentileDistribution (Java)."""
    histogram, ratio = _golden_histograms()[name]
    out = io.BytesIO()
    write_percentile_distribution(histogram, out, ratio)
    assert out.getvalue() == (GOLDEN / f"{name}.hgrm").read_bytes()


def test_hgrm_plots_with_the_standard_hdr_plot(tmp_path: Path) -> None:
    """The real hdr-plot parses our .hgrm (rows, mean, stddev, max, total
    count, the latter two scaled like the Value column) and draws it."""
    histogram, ratio = _golden_histograms()["linear"]
    hgrm, png = tmp_path / "ingest.hgrm", tmp_path / "ingest.png"
    with hgrm.open("wb") as out:
        write_percentile_distribution(histogram, out, ratio)
    run = subprocess.run(
        [sys.executable, "-c", _RUN_HDR_PLOT, str(hgrm), str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    metadata, rows, wrote = run.stdout.splitlines()
    assert metadata == str(
        {
            "Mean": "50.504",
            "StdDeviation": "28.866",
            "Max": "100.031",
            "Total count": "300",
        }
    )
    count, first_latency, last_total = rows.split()
    assert int(count) > 10
    assert (float(first_latency), int(last_total)) == (1.0, 300)
    assert wrote == f"Wrote: {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unwritable_hgrm_path_is_a_usage_error_before_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--hgrm /nonexistent/dir/file`: status 2, the path named, no run."""
    status = main(["stress", "1000", "--hgrm", "/nonexistent/dir/file"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert "cannot write --hgrm /nonexistent/dir/file" in captured.err


def test_stress_command_text_report_and_temporary_directory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default report is readable text and says the accounting balances."""
    assert main(["stress", "500", "--progress", "never"]) == 0
    out = capsys.readouterr().out
    assert "points/s" in out
    assert "accounting      pushed 500 = written 500 + invalid 0 + lost 0  [ok]" in out
    assert re.search(r"bytes/point: [\d,]+ in the log, [\d,]+ in segments", out)
    assert "and at the clean stop, so the log is empty" in out


def test_progress_bar_has_an_eta_and_log_lines_print_above_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--progress always: tqdm's bar (count, rate, ETA) with logs above it."""
    assert main(["stress", "20000", "--progress", "always", "--batch-size", "500"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"100%\|.*\| 20\.0k/20\.0k \[\d\d:\d\d<\d\d:\d\d", err)
    # Every log line starts on a line of its own, never after a bar.
    for line in err.replace("\r", "\n").splitlines():
        if "statsyard.app" in line:
            assert line.startswith("20"), line


def test_a_stress_run_opens_no_port_and_forwards_nothing(tmp_path: Path) -> None:
    """The service's settings turn on the HTTP API (port 8080) and forwarders;
    a stress run is an in-process measurement: it takes neither, so a busy
    HTTP port or a configured destination cannot fail or slow it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = Config.of(
            http={"enabled": True, "port": busy.getsockname()[1]},
            forward=[{"name": "relay", "kind": "graphite", "address": "127.0.0.1:9"}],
        )
        report = IngestStress(config=settings, data_dir=tmp_path / "d").run(500)
    assert (report.pushed, report.written, report.lost) == (500, 500, 0)
    assert not (tmp_path / "d" / "forward").exists()
