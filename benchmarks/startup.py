"""Start-up cost of the package and of the ``query`` command (issue 13).

Runs each command ``--runs`` times as a fresh process (as hyperfine does) and
prints the median wall time of each, interleaved so that load on the shared
machine hits every command alike:

- ``python -c pass``: the interpreter alone, the floor;
- ``python -c "import statsyard"`` (goal <= 60 ms);
- ``python -c "from statsyard import StatsYard"``: what an embedding app pays;
- ``python -c "import numpy"``: what a query pays on top when it imports
  numpy (to decode blocks);
- ``statsyard query`` of one series among 10,000, cold, whole command
  (goal <= 120 ms), over two directories the script builds first: every
  point compacted into blocks, and the same with 30 more points per series
  still in the log (not yet compacted); and of a series whose 30 points are
  all in that log (no block to decode, so no numpy);
- the peer: Debian's ``whisper-fetch`` (python3-whisper) of one whisper file
  holding the same 240 points, when installed; and the ratio;
- in this process, ``Storage.open_readonly`` of each directory whole and
  for the one series (``series=[...]``): what the query's open costs;
- the query command's phases (imports, arguments, open, query), each timed
  inside a fresh interpreter (the query phase includes importing numpy when
  a block is decoded).

The package is byte-compiled first and the commands run without
``PYTHONDONTWRITEBYTECODE``, as an installed package runs (compiling every
module at each start would cost some 20 ms more).

Usage::

    python benchmarks/startup.py [--runs 15] [--before DIR]

With ``--before DIR`` (a tree holding the code before, e.g. ``git archive
main statsyard | tar -x -C /tmp/before``) the two query commands also run
as ``python -S -m statsyard`` by that code and by this tree, interleaved
with the rest.
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.storage import Storage

T0 = 1_700_000_000_000
SERIES = 10_000
POINTS = 240
LOGGED = 30
QUERY = "statsyard query (1 of 10,000 series, compacted)"
QUERY_LOG = "statsyard query (same + 30 points/series in the log)"
QUERY_NEW = "statsyard query (a series only in that log)"
NEW_SERIES = ("app.new.latency", "node-new")
PEER = "whisper-fetch (peer, 1 file)"


def build(directory: Path) -> tuple[str, str]:
    """Write 10,000 series x 240 points (10 s apart), all compacted; return one."""
    rng = random.Random(1)
    series = [(f"app.{i // 1000}.latency", f"node-{i:05d}") for i in range(SERIES)]
    storage = Storage.open(directory)
    for n in range(POINTS):
        ts = T0 + n * 10_000
        storage.append([(m, e, rng.random(), ts) for m, e in series])
    storage.checkpoint()
    storage.close()
    return series[rng.randrange(SERIES)]


def add_to_log(directory: Path) -> None:
    """Append 30 more points to every series, and to one new series, left in
    the log (not compacted)."""
    rng = random.Random(2)
    series = [(f"app.{i // 1000}.latency", f"node-{i:05d}") for i in range(SERIES)]
    series.append(NEW_SERIES)
    storage = Storage.open(directory, checkpoint_points=None)
    for n in range(POINTS, POINTS + LOGGED):
        ts = T0 + n * 10_000
        storage.append([(m, e, rng.random(), ts) for m, e in series])
    storage.close()  # no checkpoint: the points stay in the log


def build_whisper(path: Path) -> bool:
    """Write the same 240 points into one whisper file; False without whisper."""
    try:
        import whisper  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import whisper  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return False
    whisper.create(str(path), [(10, 8640)])
    now = int(time.time())
    whisper.update_many(
        str(path), [(now - (POINTS - n) * 10, float(n)) for n in range(POINTS)]
    )
    return True


def open_times(directory: Path, series: tuple[str, str]) -> dict[str, float]:
    """Median ms of ``open_readonly`` in this process: whole, and one series."""
    times: dict[str, list[float]] = {"whole": [], "one series": []}
    for _ in range(7):
        for name, only in (("whole", None), ("one series", [series])):
            start = time.perf_counter()
            Storage.open_readonly(directory, series=only).close()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(runs) for name, runs in times.items()}


PHASES = """
import sys, time
t0 = time.perf_counter()
from statsyard.cli import main as cli
t1 = time.perf_counter()
argv = cli.prepare_argv(
    ["query", sys.argv[1], "--entity", sys.argv[2], "--data-dir", sys.argv[3]],
    cli._HELP,
)
args = cli.build_parser("query").parse_args(argv)
t2 = time.perf_counter()
from statsyard.storage import Storage
storage = Storage.open_readonly(sys.argv[3], series=[(sys.argv[1], sys.argv[2])])
t3 = time.perf_counter()
storage.query(sys.argv[1], entity=sys.argv[2])
t4 = time.perf_counter()
print(*(1000 * (b - a) for a, b in ((t0, t1), (t1, t2), (t2, t3), (t3, t4))))
"""
"""The query command's phases, each timed in a fresh interpreter."""


def phases(
    python: str, env: dict[str, str], series: tuple[str, str], directory: Path
) -> list[float]:
    """Median ms of imports, argument parsing, open and query (fresh processes)."""
    runs = []
    for _ in range(7):
        done = subprocess.run(
            [python, "-c", PHASES, *series, str(directory)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        runs.append([float(x) for x in done.stdout.split()])
    return [statistics.median(column) for column in zip(*runs, strict=True)]


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time of one run of ``command`` in seconds; it must succeed.

    Run from the temporary directory, so that ``python -S`` (``--before``)
    finds the package on its ``PYTHONPATH``, not in the working directory.
    """
    start = time.perf_counter()
    where = tempfile.gettempdir()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env, cwd=where)
    return time.perf_counter() - start


def versus(
    python: str, before: Path, env: dict[str, str], queries: dict[str, list[str]]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The queries run by the code in ``before`` and by this tree, alike.

    Both as ``python -S -m statsyard`` with ``PYTHONPATH`` = the code's
    tree, then the virtualenv's site-packages: an editable install would
    otherwise load this tree's code for both.
    """
    packages = next(p for p in sys.path if p.endswith("site-packages"))
    here = Path(__file__).resolve().parent.parent
    compileall.compile_dir(before / "statsyard", quiet=1)
    runs = {}
    for label, tree in (("before", before), ("after", here)):
        tree_env = dict(env, PYTHONPATH=f"{tree}{os.pathsep}{packages}")
        for name, arguments in queries.items():
            runs[f"{label}: {name}"] = (
                [python, "-S", "-m", "statsyard", *arguments],
                tree_env,
            )
    return runs


def main() -> None:
    """Build the data, run every command interleaved, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--before",
        type=Path,
        help="a tree holding the code before (e.g. `git archive main statsyard "
        "| tar -x -C /tmp/before`): also time its queries, same run",
    )
    args = parser.parse_args()
    python = sys.executable
    statsyard = shutil.which("statsyard", path=str(Path(python).parent)) or ""
    package = Path(__file__).resolve().parent.parent / "statsyard"
    compileall.compile_dir(package, quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        metric, entity = build(directory)
        logged = Path(tmp) / "logged"
        shutil.copytree(directory, logged)
        add_to_log(logged)
        query = [statsyard] if statsyard else [python, "-m", "statsyard"]
        one = ["query", metric, "--entity", entity, "--data-dir", str(directory)]
        new = ["query", *NEW_SERIES[:1], "--entity", NEW_SERIES[1]]
        new += ["--data-dir", str(logged)]
        commands: dict[str, list[str]] = {
            "python -c pass": [python, "-c", "pass"],
            "import statsyard": [python, "-c", "import statsyard"],
            "from statsyard import StatsYard": [
                python,
                "-c",
                "from statsyard import StatsYard",
            ],
            "import numpy": [python, "-c", "import numpy"],
            QUERY: [*query, *one],
            QUERY_LOG: [*query, *one[:-1], str(logged)],
            QUERY_NEW: [*query, *new],
        }
        envs = dict.fromkeys(commands, env)
        if args.before is not None:
            by_code = versus(
                python,
                args.before,
                env,
                {"query, compacted": one, "query, only in the log": new},
            )
            for name, (command, command_env) in by_code.items():
                commands[name] = command
                envs[name] = command_env
        wsp = Path(tmp) / "one.wsp"
        fetch = shutil.which("whisper-fetch")
        if fetch and build_whisper(wsp):
            commands[PEER] = [fetch, "--from", "0", str(wsp)]
        opens = {
            label: open_times(path, (metric, entity))
            for label, path in (("compacted", directory), ("+ log", logged))
        }
        split = {
            "compacted": phases(python, env, (metric, entity), directory),
            "only in the log": phases(python, env, NEW_SERIES, logged),
        }
        env_note = "PYTHONPATH" in os.environ
        times: dict[str, list[float]] = {name: [] for name in commands}
        for name, command in commands.items():
            timed(command, envs.get(name, env))  # warm the page cache once
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(timed(command, envs.get(name, env)))
    print(f"medians of {args.runs} runs, interleaved (PYTHONPATH set: {env_note})")
    medians = {name: statistics.median(runs) * 1000 for name, runs in times.items()}
    for name, ms in medians.items():
        low = min(times[name]) * 1000
        print(f"  {name:52} {ms:7.1f} ms  (best {low:.1f})")
    for label, figures in opens.items():
        print(
            f"  open_readonly in-process, {label:9}: whole {figures['whole']:.1f} ms,"
            f" one series {figures['one series']:.1f} ms (medians of 7)"
        )
    for label, (imports, parse, opened, queried) in split.items():
        print(
            f"  query phases, {label:15}: imports {imports:.1f}, arguments "
            f"{parse:.1f}, open {opened:.1f}, query {queried:.1f} ms (medians of 7)"
        )
    peer = medians.get(PEER)
    if peer:
        for name in (QUERY, QUERY_LOG, QUERY_NEW):
            print(f"  {name} / whisper-fetch: {medians[name] / peer:.2f}")


if __name__ == "__main__":
    main()
