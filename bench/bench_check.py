"""Benchmark: the exhaustive checker's default scenario set (target: < 60 s on 2 cores).

Runs the 15 default scenarios at the default size, then with --cpus +1 and with --tasks +1,
and prints states, seconds and states/s per configuration (and per scenario with -v).
Usage: .venv/bin/python bench/bench_check.py [-v] [--no-grow]
"""

from __future__ import annotations

import argparse
import time

from localmap.check.explore import explore
from localmap.check.scenarios import DEFAULT_SET, SCENARIOS


def run(dc: int, dt: int, verbose: bool) -> tuple[int, float]:
    states, t0 = 0, time.perf_counter()
    for name in DEFAULT_SET:
        sc = SCENARIOS[name]
        r = explore(sc, sc.cpus + dc, sc.tasks + dt)
        states += r.states
        if verbose:
            print(f"  {name:30s} {r.verdict:6s} {r.states:8d} states {r.seconds:7.3f} s "
                  f"{r.states_per_second:9.0f} states/s")
    return states, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--no-grow", action="store_true")
    a = ap.parse_args()
    configs = [("default (2 CPUs, 2 tasks)", 0, 0)]
    if not a.no_grow:
        configs += [("--cpus +1", 1, 0), ("--tasks +1", 0, 1)]
    for label, dc, dt in configs:
        states, secs = run(dc, dt, a.v)
        print(f"{label:28s} {states:8d} states {secs:7.2f} s {states / secs:9.0f} states/s")


if __name__ == "__main__":
    main()
