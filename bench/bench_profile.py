"""The lab kernel and the dynamic profiles: build time, boot time, profiling slowdown.

    .venv/bin/python bench/bench_profile.py [--kernel dynamic|debian:arm64] [--cpus 2]

* build time: the cached lab build's own record (``build.json``: wall seconds of ``make Image``
  at -j2 under nice 10, object count); it is not rebuilt here (``localmap lab kernel`` does that);
* boot time: seconds from starting QEMU to the guest's first line after mounting (the init
  script's ``LMPROFILE-START``), without and with the counting plugin;
* profiling slowdown: wall time of the same workloads (every workload at its default rounds,
  after boot) with the plugin against without it;
* the alternative counter: the same run with QEMU's ``-d exec,nochain`` logging every kernel
  block entry (what a profile from the exec log alone needs), its time and log size.
Kernel: the cached talk-matching build (``dynamic``), else Debian's 6.12.117 arm64.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from localmap.lab import kernel as kb
from localmap.lab import profile as prof


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel")
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    build = kb.find_cached("dynamic")
    target = args.kernel or (str(build.dir) if build else "debian:arm64")
    k = prof.resolve(target, build=False)
    wl = [(n, r) for n, (r, _o, _t) in prof.WORKLOADS.items()]
    rows = []
    if build is not None and target == str(build.dir):
        rows.append(("lab kernel build (make Image, -j2, nice 10)",
                     f"{build.seconds:.0f} s, {build.objects} objects ({build.dir.name})"))
    plain = prof.run_profile(k, wl, args.cpus, instrumented=False)
    inst = prof.run_profile(k, wl, args.cpus, instrumented=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "exec.log"
        ex = prof.run_profile(k, wl, args.cpus, instrumented=False,
                              qemu_extra=["-d", "exec,nochain", "-dfilter", "0xffff000000000000..0xffffffffffffffff",
                                          "-D", str(log)])
        log_mb = log.stat().st_size / 2**20 if log.exists() else 0.0
    run_plain = plain.seconds - plain.boot_seconds
    run_inst = inst.seconds - inst.boot_seconds
    run_ex = ex.seconds - ex.boot_seconds
    rows += [
        ("kernel", k.label),
        ("boot to shell, no plugin / plugin", f"{plain.boot_seconds:.1f} s / {inst.boot_seconds:.1f} s "
                                             f"({args.cpus} vCPUs, TCG)"),
        ("all workloads after boot, no plugin", f"{run_plain:.1f} s"),
        ("all workloads after boot, plugin", f"{run_inst:.1f} s = {run_inst / run_plain:.2f}x"),
        ("same with -d exec,nochain (kernel blocks logged)",
         f"{run_ex:.1f} s = {run_ex / run_plain:.2f}x, boot {ex.boot_seconds:.1f} s, log {log_mb:,.0f} MiB"),
        ("kernel instructions counted", f"{sum(w.kernel_instructions for w in inst.workloads.values()):,}"),
    ]
    print("| what | result |\n|---|---|")
    for a, b in rows:
        print(f"| {a} | {b} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
