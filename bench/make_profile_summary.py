"""Regenerate the dynamic profiles shipped in ``src/localmap/data/profile-*.json``.

Not a benchmark (``make bench`` does not run it: it rewrites package data). Runs ``localmap lab
profile`` (the Python API: :func:`localmap.lab.profile.run_profile`, then
:func:`localmap.perf.dynamic.measured_profile`) with every workload at its default rounds on 2
vCPUs for each kernel (default: the talk-matching lab build ``dynamic``, built first when it is
not cached, and Debian's own ``debian:arm64``) and keeps a small summary: the per-operation
figures, the top functions, the talk comparison and the assumptions. It prints one row per
kernel in the bench row format; what one profile costs is measured by ``bench/bench_profile.py``
into ``docs/benchmarks.md``.

    .venv/bin/python bench/make_profile_summary.py [--kernel dynamic] [--kernel debian:arm64]
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from benchlib import Row, main, write_data
from localmap.lab import profile as prof
from localmap.perf.dynamic import measured_profile
from localmap.units import fmt_bytes, fmt_seconds

DATA = Path(__file__).resolve().parents[1] / "src/localmap/data"
TOP = 8


def slim(data: dict) -> dict:
    out = dict(data)
    out["kernel"] = {k: v for k, v in data["kernel"].items() if k != "image"}
    out["workloads"] = []
    for w in data["workloads"]:
        w = dict(w)
        w["functions"] = w["functions"][:TOP]
        w.pop("sites", None)
        out["workloads"].append(w)
    return out


def rows(args) -> list[Row]:
    workloads = [(n, r) for n, (r, _op, _talk) in prof.WORKLOADS.items()]
    out = []
    for kernel in args.kernel or ["dynamic", "debian:arm64"]:
        t0 = time.perf_counter()
        k = prof.resolve(kernel)
        data = measured_profile(prof.run_profile(k, workloads, args.cpus))
        name = "profile-" + re.sub(r"[^A-Za-z0-9.+-]+", "-", kernel.replace("debian:", "debian-")) + ".json"
        path = DATA / name
        write_data(path, slim(data), compact=False)
        out.append(Row(f"{kernel}: profile of every workload, {args.cpus} vCPUs -> "
                       f"{path.relative_to(DATA.parents[2])} ({fmt_bytes(path.stat().st_size)})",
                       f"booted in {fmt_seconds(data['boot_seconds'], 1)}, run "
                       f"{fmt_seconds(data['seconds'], 1)}, all {fmt_seconds(time.perf_counter() - t0, 1)}"))
    return out


def add_args(ap) -> None:
    ap.add_argument("--kernel", action="append",
                    help="kernels to profile, repeat (default: dynamic, debian:arm64)")
    ap.add_argument("--cpus", type=int, default=2, help="vCPUs of the guest (default 2)")


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, add_args))
