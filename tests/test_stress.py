"""Tests of statsyard.stress: the generated stream and the stress run's report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from statsyard.cli import main
from statsyard.stress import IngestStress, generate_points


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
    assert "#[Mean" in text
    assert "#[Max" in text


def test_stress_command_text_report_and_temporary_directory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default report is readable text and says the accounting balances."""
    assert main(["stress", "500", "--progress", "never"]) == 0
    out = capsys.readouterr().out
    assert "points/s" in out
    assert "accounting      pushed 500 = written 500 + invalid 0 + lost 0  [ok]" in out
