"""The lab kernel and the dynamic profiles: build time, boot time, profiling slowdown.

    .venv/bin/python bench/bench_profile.py [--kernel dynamic|debian:arm64] [--cpus 2]

* build time: the cached lab build's own record (``build.json``: wall seconds of ``make Image``
  at -j2 under nice 10, object count); it is not rebuilt here (``localmap lab kernel`` does that);
* boot time: seconds from starting QEMU to the guest's first line after mounting (the init
  script's ``LMPROFILE-START``), without and with the counting plugin;
* profiling slowdown: wall time of the same workloads (every workload at its default rounds,
  after boot) with the plugin against without it;
* the alternative counter: QEMU's ``-d exec,nochain`` logging every kernel block entry (what a
  profile from the exec log alone needs) on a small set (boot + fork=5 syscall=200; the full set
  writes tens of GB of log), written to /dev/null, against the same set without/with the plugin.
Kernel: the cached talk-matching build (``dynamic``), else Debian's 6.12.117 arm64.
"""

from __future__ import annotations

import argparse
import sys

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
    # the exec log of every kernel block entry is huge (tens of GB for the full set): a small set,
    # written to /dev/null, against the same small set without and with the plugin
    small = [("fork", 5), ("syscall", 200)]
    s_plain = prof.run_profile(k, small, args.cpus, instrumented=False)
    s_inst = prof.run_profile(k, small, args.cpus, instrumented=True)
    ex = prof.run_profile(k, small, args.cpus, instrumented=False,
                          qemu_extra=["-d", "exec,nochain", "-dfilter", "0xffff000000000000..0xffffffffffffffff",
                                      "-D", "/dev/null"])
    run_plain = plain.seconds - plain.boot_seconds
    run_inst = inst.seconds - inst.boot_seconds
    rows += [
        ("kernel", k.label),
        ("boot to shell, no plugin / plugin", f"{plain.boot_seconds:.1f} s / {inst.boot_seconds:.1f} s "
                                             f"({args.cpus} vCPUs, TCG)"),
        ("all workloads after boot, no plugin", f"{run_plain:.1f} s"),
        ("all workloads after boot, plugin", f"{run_inst:.1f} s = {run_inst / run_plain:.2f}x"),
        ("boot + fork=5 syscall=200: no plugin / plugin / -d exec,nochain of every kernel block (to /dev/null)",
         f"{s_plain.seconds:.1f} s / {s_inst.seconds:.1f} s ({s_inst.seconds / s_plain.seconds:.2f}x) / "
         f"{ex.seconds:.1f} s ({ex.seconds / s_plain.seconds:.2f}x)"),
        ("kernel instructions counted", f"{sum(w.kernel_instructions for w in inst.workloads.values()):,}"),
    ]
    print("| what | result |\n|---|---|")
    for a, b in rows:
        print(f"| {a} | {b} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
