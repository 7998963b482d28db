"""Start-up cost of the package and of the ``query`` command (issue 13).

Runs each command ``--runs`` times as a fresh process (as hyperfine does) and
prints the median wall time of each, interleaved so that load on the shared
machine hits every command alike:

- ``python -c pass``: the interpreter alone, the floor;
- ``python -c "import statsyard"`` (goal <= 60 ms);
- ``python -c "from statsyard import StatsYard"``: what an embedding app pays;
- ``statsyard query`` of one series among 10,000, cold, whole command
  (goal <= 120 ms), over a directory the script builds first;
- the peer: Debian's ``whisper-fetch`` (python3-whisper) of one whisper file
  holding the same 240 points, when installed; and the ratio.

Usage::

    python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
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


def build(directory: Path) -> tuple[str, str]:
    """Write 10,000 series x 240 points (10 s apart) and return one series."""
    rng = random.Random(1)
    series = [(f"app.{i // 1000}.latency", f"node-{i:05d}") for i in range(SERIES)]
    storage = Storage.open(directory)
    for n in range(POINTS):
        ts = T0 + n * 10_000
        storage.append([(m, e, rng.random(), ts) for m, e in series])
    storage.checkpoint()
    storage.close()
    return series[rng.randrange(SERIES)]


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


def timed(command: list[str]) -> float:
    """Wall time of one run of ``command`` in seconds; it must succeed."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """Build the data, run every command interleaved, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    statsyard = shutil.which("statsyard", path=str(Path(python).parent)) or ""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        metric, entity = build(directory)
        query = [statsyard] if statsyard else [python, "-m", "statsyard"]
        commands: dict[str, list[str]] = {
            "python -c pass": [python, "-c", "pass"],
            "import statsyard": [python, "-c", "import statsyard"],
            "from statsyard import StatsYard": [
                python,
                "-c",
                "from statsyard import StatsYard",
            ],
            "statsyard query (1 of 10,000 series)": [
                *query,
                "query",
                metric,
                "--entity",
                entity,
                "--data-dir",
                str(directory),
            ],
        }
        wsp = Path(tmp) / "one.wsp"
        fetch = shutil.which("whisper-fetch")
        if fetch and build_whisper(wsp):
            commands["whisper-fetch (peer, 1 file)"] = [fetch, "--from", "0", str(wsp)]
        env_note = "PYTHONPATH" in os.environ
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():
            timed(command)  # warm the page cache once
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(timed(command))
    print(f"medians of {args.runs} runs, interleaved (PYTHONPATH set: {env_note})")
    medians = {name: statistics.median(runs) * 1000 for name, runs in times.items()}
    for name, ms in medians.items():
        low = min(times[name]) * 1000
        print(f"  {name:40} {ms:7.1f} ms  (best {low:.1f})")
    peer = medians.get("whisper-fetch (peer, 1 file)")
    if peer:
        ratio = medians["statsyard query (1 of 10,000 series)"] / peer
        print(f"  statsyard query / whisper-fetch: {ratio:.2f}")


if __name__ == "__main__":
    main()
