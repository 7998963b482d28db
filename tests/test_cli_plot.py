"""The ``plot`` command: render targets drawn from a data directory to a file."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib import image

from statsyard.app import StatsYard
from statsyard.cli.main import main
from tests._http_helpers import POINTS, T0


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory holding the HTTP tests' points, written and closed."""
    directory = tmp_path / "data"
    with StatsYard(data_dir=directory, ship_metrics=False) as yard:
        yard.push_many(POINTS)
        yard.flush()
    return directory


def test_plot_writes_a_png_of_the_asked_size(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Targets (globs, functions) are drawn to FILE.png from the directory."""
    out = tmp_path / "cpu.png"
    status = main(
        [
            "plot",
            "servers.*.cpu",
            "sumSeries(servers.*.cpu)",
            "-o",
            str(out),
            "--data-dir",
            str(data_dir),
            "--from",
            str(T0),
            "--until",
            str(T0 + 600),
            "--width",
            "640",
            "--height",
            "320",
            "--title",
            "CPU",
        ]
    )
    assert status == 0
    assert image.imread(out).shape[:2] == (320, 640)
    assert f"{out}: 3 series" in capsys.readouterr().err


def test_plot_writes_svg_and_takes_relative_times(
    data_dir: Path, tmp_path: Path
) -> None:
    """An .svg name gives SVG; --from -1d is a value, not an option."""
    out = tmp_path / "mem.svg"
    status = main(
        [
            "plot",
            "servers.web1.mem",
            "-o",
            str(out),
            "--data-dir",
            str(data_dir),
            "--from",
            "-1d",
            "--area-mode",
            "first",
        ]
    )
    assert status == 0
    assert out.read_text(encoding="utf-8").lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["servers.web1.cpu", "-o", "x.gif"], "cannot tell the format"),
        (["nosuch(a)", "-o", "x.png"], "unknown function nosuch()"),
        (["a.b", "-o", "x.png", "--from", "soon"], "bad time 'soon'"),
    ],
)
def test_plot_errors_exit_2_with_one_line(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    """A bad target, time or file name: status 2 and what was wrong."""
    args[args.index("-o") + 1] = str(tmp_path / args[args.index("-o") + 1])
    assert main(["plot", *args, "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_plot_refuses_a_directory_that_is_not_a_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a data directory: status 2, saying so."""
    (tmp_path / "empty").mkdir()
    status = main(
        [
            "plot",
            "a.b",
            "-o",
            str(tmp_path / "a.png"),
            "--data-dir",
            str(tmp_path / "empty"),
        ]
    )
    assert status == 2
    assert "statsyard plot:" in capsys.readouterr().err
