"""What importing the package and running a read command load (issue 13).

Start-up time is measured by hand (``benchmarks/startup.py``); these tests
guard its cause: each runs a fresh interpreter and asserts that heavy
modules a use does not need stay out of ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from statsyard.storage import Storage

PREFIX = "STATSYARD_"
HEAVY = ("datadog", "requests", "urllib3", "matplotlib", "numpy")


def _modules_after(code: str) -> set[str]:
    """Every module loaded once ``code`` has run in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    # No STATSYARD_* variable: one would make a read load the configuration.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(PREFIX)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_package_loads_none_of_its_heavy_dependencies() -> None:
    """``import statsyard`` loads no DogStatsD client, numpy or plotting."""
    loaded = _modules_after("import statsyard")
    assert loaded.isdisjoint(HEAVY)
    assert "statsyard.app" not in loaded


def test_the_facade_imports_the_statsd_client_only_when_shipping_starts() -> None:
    """``from statsyard import StatsYard`` works without the datadog client loaded."""
    loaded = _modules_after(
        "from statsyard import Config, DataPoint, StatsYard, Storage\n"
        "assert StatsYard.__name__ == 'StatsYard'"
    )
    assert "statsyard.app" in loaded
    assert loaded.isdisjoint(HEAVY)


def test_a_query_command_loads_no_actor_tree(tmp_path: Path) -> None:
    """``statsyard query`` reads the directory without Pykka, the tree or the client."""
    storage = Storage.open(tmp_path)
    storage.append([("cpu.load", "web-1", 0.5, 1_700_000_000_000)])
    storage.close()
    loaded = _modules_after(
        "from statsyard.cli.main import main\n"
        f"status = main(['query', 'cpu.load', '--data-dir', {str(tmp_path)!r}])\n"
        "assert status == 0, status"
    )
    assert loaded.isdisjoint({*HEAVY, "pykka", "statsyard.app", "tqdm", "psutil"})


def test_a_query_of_a_small_series_loads_no_writer_tree_or_numpy(
    tmp_path: Path,
) -> None:
    """``statsyard query`` of a series still in the log, through the command
    line as a user runs it: no Pykka, no tree, no numpy, no writer, no glob
    matcher, no other command's modules, and no configuration (nothing sets
    one)."""
    storage = Storage.open(tmp_path, checkpoint_points=None)
    storage.append([("cpu.load", f"web-{i}", 0.5, 1_700_000_000_000) for i in range(3)])
    storage.close()
    loaded = _modules_after(
        "from statsyard.__main__ import main\n"
        "status = main(['query', 'cpu.load', '--entity', 'web-1', "
        f"'--data-dir', {str(tmp_path)!r}])\n"
        "assert status == 0, status"
    )
    assert loaded.isdisjoint(
        {
            *HEAVY,
            "pykka",
            "statsyard.app",
            "statsyard.tree",
            "statsyard.storage._writer",
            "statsyard.storage._checkpoint",
            "statsyard.storage._glob",
            "statsyard.storage._columns",
            "statsyard.cli.stress",
            "statsyard.cli.check",
            "statsyard.cli.plot",
            "statsyard.config",
            "csv",
        }
    )
