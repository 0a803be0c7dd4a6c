"""The exhaustive checker's default scenario set: states, seconds and states/s.

Runs the 15 default scenarios at their default size, then with one more CPU and with one more
task. Target: the default set in under 60 s on 2 cores.

    .venv/bin/python bench/bench_check.py [-v] [--no-grow]
"""

from __future__ import annotations

import sys
import time

from benchlib import Row, main
from localmap.check.explore import explore
from localmap.check.scenarios import DEFAULT_SET, SCENARIOS
from localmap.units import fmt_count, fmt_seconds


def run(dc: int, dt: int, verbose: bool) -> tuple[int, float]:
    states, t0 = 0, time.perf_counter()
    for name in DEFAULT_SET:
        sc = SCENARIOS[name]
        r = explore(sc, sc.cpus + dc, sc.tasks + dt)
        states += r.states
        if verbose:
            print(f"  {name:30s} {r.verdict:6s} {r.states:8d} states {r.seconds:7.3f} s "
                  f"{r.states_per_second:9.0f} states/s", file=sys.stderr)
    return states, time.perf_counter() - t0


def rows(args) -> list[Row]:
    configs = [("default size (2 CPUs, 2 tasks)", 0, 0)]
    if not args.no_grow:
        configs += [("one more CPU (--cpus 3)", 1, 0), ("one more task (--tasks 3)", 0, 1)]
    out = []
    for label, dc, dt in configs:
        states, secs = run(dc, dt, args.v)
        default = (dc, dt) == (0, 0)
        out.append(Row(f"{len(DEFAULT_SET)} checker scenarios, {label}",
                       f"{fmt_count(states)} states in {fmt_seconds(secs)} "
                       f"({fmt_count(round(states / secs))} states/s)",
                       "< 60 s" if default else "", secs < 60 if default else None))
    return out


def add_args(ap) -> None:
    ap.add_argument("-v", action="store_true", help="per scenario, on stderr")
    ap.add_argument("--no-grow", action="store_true", help="only the default size")


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, add_args))
