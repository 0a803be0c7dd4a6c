"""``localmap overhead``: the synthetic worst case and a real history on 160 CPUs.

    .venv/bin/python bench/bench_overhead.py [--only synthetic|replay]

Targets: synthetic 4096 CPUs x 64 chunks < 5 s per granule; ``s1_612_4k_smp4`` replayed on 160
CPUs with every table built < 30 s and < 2 GB (run in a child process so the peak RSS is its
own).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchlib import Row, main, s1_bundle
from localmap.units import GiB, fmt_bytes, fmt_seconds


def synthetic() -> list[Row]:
    from localmap.analysis.overhead import overhead_synthetic

    out = []
    for g in ("4K", "16K", "64K"):
        t = time.perf_counter()
        r = overhead_synthetic(g, 48, 4096, "192K", 64)
        dt = time.perf_counter() - t
        out.append(Row(f"synthetic overhead {g}/48, 4096 CPUs x 64 chunks",
                       f"{fmt_seconds(dt, 3)} ({r['method']})", "< 5 s", dt < 5))
    t = time.perf_counter()
    overhead_synthetic("4K", 48, 160, "192K", 64, materialise="all")
    out.append(Row("synthetic overhead 4K/48, 160 CPUs x 64 chunks, every CPU's tables built",
                   fmt_seconds(time.perf_counter() - t, 3)))
    return out


def _replay_child(bundle: str, cpus: int) -> None:
    from localmap.analysis.overhead import overhead_bundle

    t = time.perf_counter()
    r = overhead_bundle(bundle, cpus, map_global=True)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": dt, "max_rss_bytes": rss, "events": r["events"]}))


def replay() -> list[Row]:
    bundle = s1_bundle()
    out = subprocess.run([sys.executable, __file__, "--child", str(bundle)], check=True,
                         capture_output=True, text=True).stdout
    d = json.loads(out.strip().splitlines()[-1])
    ok = d["seconds"] < 30 and d["max_rss_bytes"] < 2 * GiB
    return [Row(f"{bundle.name} replayed on 160 CPUs, design and today's machine, every table built",
                f"{fmt_seconds(d['seconds'])}, peak RSS {fmt_bytes(d['max_rss_bytes'])}",
                "< 30 s, < 2 GiB", ok)]


def rows(args) -> list[Row]:
    out = []
    if args.only in (None, "synthetic"):
        out += synthetic()
    if args.only in (None, "replay"):
        out += replay()
    return out


def add_args(ap) -> None:
    ap.add_argument("--only", choices=("synthetic", "replay"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _replay_child(sys.argv[2], 160)
        sys.exit(0)
    sys.exit(main(__doc__, rows, add_args))
