"""Chaos soak: the chaos test, longer: 1,000+ kills and 2,000,000 points.

Runs tests/_chaos.py's harness against the service's tree (queue, Graphite
listener, writer, consumer, shipper): random crashes, stops and requested
restarts of every child while host threads push and Graphite clients send
unique points, then reads everything back and prints the figures: points/s
under chaos, kills, restarts, counts, duplicates, missing points, duration,
and every broken promise. Exits non-zero if any promise broke.

Run by hand:

    python benchmarks/soak.py [--points N] [--kills K] [--duration S]
                              [--seed SEED] [--rounds R] [--embedded]

``--points`` is split 80/20 between host threads and Graphite TCP clients
(``--embedded`` runs the tree without the listener, all points from the host).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._chaos import ChaosPlan, run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=2_000_000)
    parser.add_argument("--kills", type=int, default=1200)
    parser.add_argument(
        "--duration", type=float, default=40.0, help="seconds the load is spread over"
    )
    parser.add_argument("--seed", type=int, default=None, help="default: random")
    parser.add_argument("--rounds", type=int, default=1, help="runs, seeds seed+i")
    parser.add_argument("--embedded", action="store_true", help="no Graphite listener")
    parser.add_argument("--log-level", default="CRITICAL")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pykka").setLevel(logging.CRITICAL)  # the crashes we cause
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    tcp = 0 if args.embedded else args.points // 5
    failed = 0
    for round_ in range(args.rounds):
        plan = ChaosPlan(
            seed=seed + round_,
            host_points=args.points - tcp,
            tcp_points=tcp,
            graphite=not args.embedded,
            kills=args.kills,
            duration=args.duration,
            deadline=args.duration * 3 + 60.0,
            settle_timeout=60.0,
        )
        with tempfile.TemporaryDirectory(prefix="statsyard-soak-") as directory:
            report = run_chaos(plan, Path(directory) / "data")
        problems = report.problems()
        print(report.summary())
        print("verdict         " + ("ok" if not problems else "FAILED"))
        for problem in problems:
            print(f"  - {problem}")
        print()
        failed += bool(problems)
    if args.rounds > 1:
        print(f"{args.rounds - failed} of {args.rounds} rounds ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
