"""Regenerate the dynamic profiles shipped in ``src/localmap/data/profile-*.json``.

    .venv/bin/python bench/make_profile_summary.py [--kernel dynamic] [--kernel debian:arm64]

Runs ``localmap lab profile`` (the Python API) with every workload at its default rounds on
2 vCPUs for each kernel (default: the talk-matching lab build ``dynamic``, which is built first
when it is not cached, and Debian's own ``debian:arm64``), and keeps a small summary: the
per-operation figures, the top functions, the talk comparison and the assumptions.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from localmap.lab import profile as prof

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", action="append", help="kernels to profile (default dynamic, debian:arm64)")
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    workloads = [(n, r) for n, (r, _op, _talk) in prof.WORKLOADS.items()]
    for kernel in args.kernel or ["dynamic", "debian:arm64"]:
        k = prof.resolve(kernel, kernel_progress=lambda w, d, t: None)
        data = prof.profile(k, workloads, args.cpus, progress=lambda s: print("  " + s, file=sys.stderr))
        name = "profile-" + re.sub(r"[^A-Za-z0-9.+-]+", "-", kernel.replace("debian:", "debian-")) + ".json"
        path = DATA / name
        path.write_text(json.dumps(slim(data), indent=1) + "\n")
        print(f"{kernel}: booted in {data['boot_seconds']} s, run {data['seconds']} s -> {path} "
              f"({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
