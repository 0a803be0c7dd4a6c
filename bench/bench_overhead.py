"""Benchmarks of `localmap overhead` (plain script; figures go in README's overhead section).

    .venv/bin/python bench/bench_overhead.py            # both cases
    .venv/bin/python bench/bench_overhead.py synthetic  # 4096 CPUs, 64 chunks, 4K/16K/64K
    .venv/bin/python bench/bench_overhead.py replay     # s1_612_4k_smp4 on 160 CPUs, every table built

Targets: synthetic 4096-CPU 64-chunk case < 5 s; the 160-CPU replay < 30 s and < 2 GB.
The replay runs in a child process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

BUNDLE = Path("/work/shared/data/bundles/s1_612_4k_smp4")


def synthetic() -> None:
    from localmap.analysis.overhead import overhead_synthetic

    for g in ("4K", "16K", "64K"):
        t = time.perf_counter()
        r = overhead_synthetic(g, 48, 4096, "192K", 64)
        dt = time.perf_counter() - t
        print(f"synthetic {g}/48 4096 CPUs 64 chunks: {dt:.3f} s, extra page tables "
              f"{r['pgtable_extra_bytes']} bytes ({r['method']})")
    t = time.perf_counter()
    r = overhead_synthetic("4K", 48, 160, "192K", 64, materialise="all")
    print(f"synthetic 4K/48 160 CPUs 64 chunks, every CPU materialised: {time.perf_counter() - t:.3f} s")


def _replay_child(bundle: str, cpus: int) -> None:
    from localmap.analysis.overhead import overhead_bundle

    t = time.perf_counter()
    r = overhead_bundle(bundle, cpus, map_global=True)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": dt, "max_rss_bytes": rss, "pgtable_extra_bytes": r["pgtable_extra_bytes"],
                      "local_va_peak_bytes": r["local_va_peak_bytes"], "events": r["events"]}))


def replay() -> None:
    if not BUNDLE.exists():
        print(f"replay: {BUNDLE} not present, skipped")
        return
    out = subprocess.run([sys.executable, __file__, "_child", str(BUNDLE), "160"], check=True,
                         capture_output=True, text=True).stdout
    d = json.loads(out.strip().splitlines()[-1])
    print(f"replay {BUNDLE.name} on 160 CPUs (all tables materialised): {d['seconds']:.2f} s, "
          f"peak RSS {d['max_rss_bytes'] / 2**20:.0f} MiB, extra page tables {d['pgtable_extra_bytes']} bytes")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "_child":
        _replay_child(sys.argv[2], int(sys.argv[3]))
    else:
        if what in ("all", "synthetic"):
            synthetic()
        if what in ("all", "replay"):
            replay()
