"""The exhaustive checker at scale: states, time and peak memory, with and without symmetry.

Each configuration runs in a fresh process, so its peak RSS is its own: the named set of
scenarios at its default size (target: under 60 s), the named set at 3 CPUs x 3 tasks
(``localmap check --cpus 3 --tasks 3``; target: under 2 minutes of CPU and under 1 GiB), every
scenario (``all``) at 3 x 3, and the named set at 3 x 3 without the symmetry reduction (tasks
and CPUs not identified up to renaming: the states the reduction saves; slow, about 2 minutes of
CPU and 1.7 GiB; ``--no-before`` skips it). CPU seconds are the process's own; wall seconds
depend on the machine's load.

    .venv/bin/python bench/bench_check.py [--no-before] [-v]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from benchlib import Row, main
from localmap.units import fmt_bytes, fmt_count, fmt_seconds

CAP = 4_000_000  # states per scenario before a run gives up (only the unreduced run gets near)


def child(argv: list[str]) -> int:
    """One configuration, in this (fresh) process; prints its figures as JSON."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--cpus", type=int)
    ap.add_argument("--tasks", type=int)
    ap.add_argument("--no-symmetry", action="store_true")
    a = ap.parse_args(argv)
    from localmap.check.explore import explore
    from localmap.check.scenarios import resolve

    out = {"scenarios": [], "states": 0, "capped": [], "verdicts": {}}
    t0, c0 = time.perf_counter(), time.process_time()
    for sc in resolve(a.names):
        try:
            r = explore(sc, a.cpus, a.tasks, symmetry=not a.no_symmetry, max_states=CAP)
        except RuntimeError:
            out["capped"].append(sc.name)
            out["states"] += CAP
            continue
        out["states"] += r.states
        out["verdicts"][sc.name] = r.verdict
        out["scenarios"].append([sc.name, r.verdict, r.states, round(r.seconds, 3)])
    out["wall"] = time.perf_counter() - t0
    out["cpu"] = time.process_time() - c0
    print(json.dumps(out))
    return 0


def run(names, cpus=None, tasks=None, symmetry=True) -> dict:
    cmd = [sys.executable, __file__, "--child", *names]
    if cpus:
        cmd += ["--cpus", str(cpus)]
    if tasks:
        cmd += ["--tasks", str(tasks)]
    if not symmetry:
        cmd.append("--no-symmetry")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    res = json.loads(out)
    res["peak_rss"] = ru.ru_maxrss * 1024
    return res


def rows(args) -> list[Row]:
    from localmap.check.scenarios import ALL_SCENARIOS, DEFAULT_SET

    n, m = len(DEFAULT_SET), len(ALL_SCENARIOS)
    configs = [(f"{n} named scenarios, default size (2 CPUs, 2 tasks)", [], None, None, True,
                "< 60 s"),
               (f"{n} named scenarios, 3 CPUs x 3 tasks (check --cpus 3 --tasks 3)", [], 3, 3,
                True, "< 120 s CPU, < 1 GiB"),
               (f"all {m} scenarios, 3 CPUs x 3 tasks (check all --cpus 3 --tasks 3)", ["all"],
                3, 3, True, "")]
    if not args.no_before:
        configs.append((f"{n} named scenarios, 3 CPUs x 3 tasks, without the symmetry "
                        "reduction", [], 3, 3, False, ""))
    out, default_verdicts = [], None
    for label, names, cpus, tasks, sym, target in configs:
        r = run(names, cpus, tasks, sym)
        if cpus is None:
            default_verdicts = r["verdicts"]
        states = fmt_count(r["states"]) + (f" (capped: {', '.join(r['capped'])})"
                                           if r["capped"] else "")
        result = (f"{states} states, {fmt_seconds(r['cpu'])} CPU, {fmt_seconds(r['wall'])} "
                  f"wall, peak RSS {fmt_bytes(r['peak_rss'])}")
        ok = None
        if target == "< 60 s":
            ok = r["wall"] < 60
        elif target:
            same = all(default_verdicts.get(k) == v for k, v in r["verdicts"].items())
            result += ", same verdicts as the default size" if same else \
                ", VERDICTS DIFFER from the default size"
            ok = r["cpu"] < 120 and r["peak_rss"] < (1 << 30) and same
        out.append(Row(label, result, target, ok))
        if args.v:
            for name, verdict, k, secs in r["scenarios"]:
                print(f"    {name:32s} {verdict:6s} {k:9,d} states {secs:8.2f} s",
                      file=sys.stderr)
    return out


def add_args(ap) -> None:
    ap.add_argument("--no-before", action="store_true",
                    help="skip the named set at 3 x 3 without the symmetry reduction (slow)")
    ap.add_argument("-v", action="store_true", help="per scenario, on stderr")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main(__doc__, rows, add_args))
