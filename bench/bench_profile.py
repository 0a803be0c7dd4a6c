"""The lab kernel and the dynamic profiles: build time, boot time, profiling slowdown.

* build time: the cached talk-matching build's own record (its ``build.json``: wall seconds of
  ``make Image`` at -j2 under nice 10, objects compiled); it is not rebuilt here (``localmap lab
  kernel --flavour dynamic`` does that, over an hour on 2 shared cores);
* boot time: seconds from starting QEMU to the guest's first line after mounting (the init
  script's ``LMPROFILE-START``), without and with the counting plugin;
* profiling slowdown: wall time of every workload at its default rounds (after boot) with the
  plugin against without it;
* the alternative counter: QEMU's ``-d exec,nochain`` logging every kernel block entry (what a
  profile from the exec log alone needs) on a small set (boot + fork=5 syscall=200; the full set
  writes tens of GB of log), written to /dev/null, against the same set without and with the
  plugin; the target holds the choice of the plugin;
* analysis: the site analysis and llvm-mca pricing of the instrumented run
  (``localmap.perf.dynamic.measured_profile``); with the instrumented run, this is what
  ``bench/make_profile_summary.py`` spends per kernel.

Kernel: the cached talk-matching build (``dynamic``), else Debian's 6.12.117 arm64.

    .venv/bin/python bench/bench_profile.py [--kernel dynamic|debian:arm64|DIR] [--cpus 2]
"""

from __future__ import annotations

import sys
import time

from benchlib import Row, main
from localmap.lab import kernel as kb
from localmap.lab import profile as prof
from localmap.perf.dynamic import measured_profile
from localmap.units import fmt_count, fmt_seconds

SMALL = [("fork", 5), ("syscall", 200)]
EXEC_LOG = ["-d", "exec,nochain", "-dfilter", "0xffff000000000000..0xffffffffffffffff", "-D", "/dev/null"]


def rows(args) -> list[Row]:
    build = kb.find_cached("dynamic")
    target = args.kernel or (str(build.dir) if build else "debian:arm64")
    k = prof.resolve(target, build=False)
    out = []
    if build is not None and target in (str(build.dir), "dynamic"):
        out.append(Row("lab kernel build (make Image, -j2, nice 10), talk-matching config",
                       f"{fmt_seconds(build.seconds, 0)}, {fmt_count(build.objects)} objects",
                       command=f"localmap lab kernel --flavour dynamic (its build.json in "
                               f"~/.cache/localmap/kernels/{build.dir.name})"))
    wl = [(n, r) for n, (r, _op, _talk) in prof.WORKLOADS.items()]
    plain = prof.run_profile(k, wl, args.cpus, instrumented=False)
    inst = prof.run_profile(k, wl, args.cpus, instrumented=True)
    t0 = time.perf_counter()
    data = measured_profile(inst)
    analysis = time.perf_counter() - t0
    s_plain = prof.run_profile(k, SMALL, args.cpus, instrumented=False)
    s_inst = prof.run_profile(k, SMALL, args.cpus, instrumented=True)
    s_exec = prof.run_profile(k, SMALL, args.cpus, instrumented=False, qemu_extra=EXEC_LOG)
    run_plain = plain.seconds - plain.boot_seconds
    run_inst = inst.seconds - inst.boot_seconds
    slowdown = run_inst / run_plain
    small = ", ".join(f"{n}={r}" for n, r in SMALL)
    out += [
        Row(f"boot to the guest's shell ({k.label}, {args.cpus} vCPUs, TCG): no plugin / plugin",
            f"{fmt_seconds(plain.boot_seconds, 1)} / {fmt_seconds(inst.boot_seconds, 1)}"),
        Row("every workload at its default rounds, after boot: no plugin / plugin",
            f"{fmt_seconds(run_plain, 1)} / {fmt_seconds(run_inst, 1)} = {slowdown:.2f}x "
            f"({fmt_count(sum(w.kernel_instructions for w in inst.workloads.values()))} kernel "
            "instructions counted)"),
        Row(f"boot + {small}: no plugin / plugin / -d exec,nochain of every kernel block (to /dev/null)",
            f"{fmt_seconds(s_plain.seconds, 1)} / {fmt_seconds(s_inst.seconds, 1)} "
            f"({s_inst.seconds / s_plain.seconds:.2f}x) / {fmt_seconds(s_exec.seconds, 1)} "
            f"({s_exec.seconds / s_plain.seconds:.2f}x)",
            target="plugin faster than the exec log", ok=s_inst.seconds < s_exec.seconds),
        Row(f"site analysis + llvm-mca pricing of the profile ({len(data['cores'])} cores)",
            fmt_seconds(analysis, 1)),
        Row("one profile of every workload (booted, run, analysed, priced: what "
            "make_profile_summary.py spends per kernel)", fmt_seconds(inst.seconds + analysis, 1)),
    ]
    return out


def add_args(ap) -> None:
    ap.add_argument("--kernel", help="dynamic (the cached build), debian:arm64 or a lab build folder "
                    "(default: the cached dynamic build, else debian:arm64)")
    ap.add_argument("--cpus", type=int, default=2, help="vCPUs of the guest (default 2)")


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, add_args))
