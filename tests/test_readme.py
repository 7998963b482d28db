"""README.md's Python examples run as shown, and print what it says they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

_BLOCK = re.compile(
    r"```python\n(.*?)```\n(?:\n[^`]*?prints[^`]*?\n\n```\n(.*?)```)?", re.S
)


def _examples() -> list[tuple[str, str | None]]:
    """Each ``python`` block with the output block after it ("prints ..."), if any."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(README.read_text())]


def test_the_readme_has_python_examples_with_output() -> None:
    """The extraction below finds the examples (an empty list would prove nothing)."""
    examples = _examples()
    assert len(examples) >= 2
    assert all(shown is not None for _, shown in examples)


@pytest.mark.parametrize("index", range(len(_examples())))
def test_a_readme_example_runs_and_prints_what_the_readme_shows(
    index: int, tmp_path: Path
) -> None:
    """Run the block in a fresh interpreter in an empty directory; every line it
    prints to stdout is in the output the README shows (logs there come from
    stderr and carry run-specific details, so stdout is what is compared)."""
    code, shown = _examples()[index]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert printed, "the example prints nothing"
    assert shown is not None
    shown_lines = shown.splitlines()
    for line in printed:
        assert line in shown_lines, f"{line!r} is not in the README's output"
