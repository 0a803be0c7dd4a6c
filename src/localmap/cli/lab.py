"""``localmap capture`` (live host) and ``localmap lab ...`` (QEMU) command lines.

Both captures produce a bundle in the layout of the shared captures through one guest-side
script; see :mod:`localmap.lab.host` and :mod:`localmap.lab.qemu`. ``localmap lab`` groups the
commands that work with real kernels under QEMU; a new one is added to :func:`register` as a
sub-command of ``lab``. ``lab kernel`` drives :mod:`localmap.lab.kernel` (the talk-matching
build), ``lab profile`` :mod:`localmap.lab.profile` (the counts) and
:func:`localmap.perf.dynamic.measured_profile` (what they are worth).
"""

from __future__ import annotations

import argparse
import json
import sys

from localmap.cli.common import add_command, guest_cpus, info, positive, progress, seconds, whole
from localmap.cli.console import safe, safe_row, stdout_console
from localmap.fileio import write_atomic
from localmap.units import fmt_count, fmt_percent, fmt_seconds


_WORK = whole(0, 1_000_000)         # memcgs, removals, forks of a capture workload


def _workload_args(p: argparse.ArgumentParser, memcgs: int, remove: int, forks: int) -> None:
    p.add_argument("--memcgs", type=_WORK, default=memcgs, metavar="N",
                   help=f"memory cgroups to create (default {memcgs})")
    p.add_argument("--remove", type=_WORK, default=remove, metavar="N",
                   help=f"how many of them to remove again (default {remove})")
    p.add_argument("--forks", type=_WORK, default=forks, metavar="N",
                   help=f"fork+exec of /bin/true (default {forks})")


def register(sub) -> None:
    from localmap.lab.qemu import DEFAULT_KERNEL

    cap = add_command(sub, "capture", help="capture a bundle on this (live, arm64) host as root",
                      description="Enable the percpu tracepoints, run a workload and collect "
                      "a bundle (trace, dmesg, meminfo phases, vmallocinfo, .config, kallsyms, "
                      "CPU lists) from the running kernel. Needs root.")
    cap.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder to create")
    cap.add_argument("--workload", metavar="CMD",
                     help="shell command to run instead of the memcg/fork workload")
    _workload_args(cap, 300, 0, 200)
    cap.add_argument("--buffer-kb", type=whole(1, 1 << 20), default=8192, metavar="KB",
                     help="per-CPU trace buffer size (default 8192)")
    cap.set_defaults(func=_capture)

    lab = add_command(sub, "lab", help="real arm64 kernels under QEMU: capture bundles, build the "
                      "talk-matching kernel, profile workloads")
    labsub = lab.add_subparsers(dest="lab_command", metavar="COMMAND")
    labsub.required = True
    lc = add_command(labsub, "capture", help="boot an arm64 kernel under QEMU and capture a bundle",
                     description="Fetch the kernel and busybox-static:arm64 (apt-get "
                     "download, cached), build an initramfs, boot qemu-system-aarch64 -M "
                     "virt -cpu max, run the workload and split the console into a bundle.")
    lc.add_argument("--kernel", default=DEFAULT_KERNEL, metavar="PACKAGE|IMAGE",
                    help=f"Debian linux-image package or raw arm64 Image (default {DEFAULT_KERNEL})")
    lc.add_argument("--config", metavar="FILE", help=".config of an IMAGE (default: config-* beside it)")
    lc.add_argument("--cpus", type=guest_cpus, required=True, metavar="N",
                    help="number of CPUs of the guest")
    _workload_args(lc, 300, 0, 200)
    lc.add_argument("--percpu-alloc", choices=("page", "embed"), help="first-chunk allocator")
    lc.add_argument("--modules", metavar="LIST",
                    help="comma-separated modules of the kernel package to insmod after the fork "
                    "phase (their dependencies, from each module's .modinfo, first), then rmmod in reverse order; "
                    "modules with static per-CPU data allocate from the reserved chunk")
    lc.add_argument("--keep-modules", action="store_true",
                    help="do not unload the --modules again")
    lc.add_argument("--net", action="store_true",
                    help="also load virtio_net and set the interfaces up after the modules (IPv6 "
                    "autoconfiguration makes GFP_ATOMIC percpu allocations)")
    lc.add_argument("--timeout", type=seconds, default=1200.0, metavar="SECONDS",
                    help="give up on the boot after this long (default 1200)")
    lc.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder to create")
    lc.set_defaults(func=_lab_capture)
    _register_kernel(labsub)
    _register_profile(labsub)
    _register_prototype(labsub)


def _capture(args) -> int:
    from localmap.lab import host

    with progress(args) as prog:
        res = host.capture(args.output, workload=args.workload, memcgs=args.memcgs,
                           remove=args.remove, forks=args.forks, buffer_kb=args.buffer_kb,
                           progress=prog)
    print_summary(res.out, res.seconds, res.validation)
    return 0 if res.validation.ok else 1


def _lab_capture(args) -> int:
    from localmap.lab import qemu

    with progress(args) as prog:
        res = qemu.lab_capture(args.kernel, args.cpus, args.output, memcgs=args.memcgs,
                               remove=args.remove, forks=args.forks, percpu_alloc=args.percpu_alloc,
                               timeout=args.timeout, config=args.config,
                               modules=[m for m in (args.modules or "").split(",") if m.strip()],
                               unload_modules=not args.keep_modules, net_up=args.net, progress=prog)
    print_summary(res.out, res.seconds, res.validation)
    return 0


def print_summary(out, seconds: float, v, file=None) -> None:
    """What a capture produced: where, how long, the first-chunk line, events, problems, notes
    (shared by ``localmap capture`` and ``localmap lab capture``)."""
    file = file or sys.stdout
    print(f"bundle written to {out} in {seconds:.0f} s", file=file)
    print(f"  first chunk: {v.first_chunk or 'not found'}", file=file)
    print(f"  percpu events: {v.events}", file=file)
    for p in v.problems:
        print(f"  PROBLEM: {p}", file=file)
    for n in v.notes:
        print(f"  note: {n}", file=file)


# --- lab kernel / lab profile: the talk-matching kernel and the dynamic profiles -----------------

def _register_kernel(labsub) -> None:
    from localmap.lab.kernel import FLAVOURS

    lk = add_command(labsub, "kernel", help="build an arm64 kernel from Debian's 6.12 source and config",
                     description="Derive a config from Debian's 6.12 arm64 config (trimmed to what "
                     "QEMU virt needs, 48-bit VA, 4K pages, the chosen preemption model), build the "
                     "Image with aarch64-linux-gnu-gcc (nice 10, two jobs by default) and keep it in "
                     "the user's cache directory, keyed by config, source, patches and compiler. "
                     "A build found in the cache is not built again.")
    lk.add_argument("--flavour", choices=sorted(FLAVOURS), default="dynamic",
                    help="preemption model (default dynamic: the talk's Fedora setting, with a "
                    "preempt count)")
    lk.add_argument("--patch", action="append", default=[], metavar="FILE",
                    help="apply this patch (patch -p1) before building; repeat, in order")
    lk.add_argument("--set", action="append", default=[], metavar="SYM=VAL",
                    help="one more config override, e.g. --set DEBUG_PREEMPT=y; repeat")
    lk.add_argument("-j", "--jobs", type=positive, default=2, metavar="N",
                    help="parallel compile jobs (default 2)")
    lk.add_argument("--keep-build", action="store_true", help="keep the object tree after the build")
    lk.add_argument("--list", action="store_true", help="list the cached builds and exit")
    lk.add_argument("--json", action="store_true", help="print the result as JSON")
    lk.set_defaults(func=_lab_kernel)


def _register_profile(labsub) -> None:
    from localmap.lab.kernel import FLAVOURS
    from localmap.lab.profile import WORKLOADS

    lp = add_command(labsub, "profile", help="count the this_cpu sites and kernel instructions each "
                     "workload operation executes, and price what the local mapping saves",
                     description="Boot a kernel under QEMU with the counting plugin, run the "
                     "workloads (" + ", ".join(WORKLOADS) + ") and report per operation: kernel "
                     "instructions, this_cpu executions by site and function, the instructions the "
                     "local mapping removes, the cycles it saves on three cores (llvm-mca) and the "
                     "talk's figures beside them.")
    lp.add_argument("workloads", nargs="+", metavar="WORKLOAD",
                    help="any of: " + ", ".join(WORKLOADS) + " (NAME=ROUNDS sets the rounds)")
    lp.add_argument("--kernel", default="dynamic", metavar="KERNEL",
                    help="a lab flavour (" + ", ".join(sorted(FLAVOURS)) + "; built when not cached), "
                    "debian:arm64, a lab build folder, or an Image with --system-map (default dynamic)")
    lp.add_argument("--system-map", metavar="FILE", help="System.map of the image's build")
    lp.add_argument("--no-build", action="store_true",
                    help="fail instead of building a lab kernel that is not cached")
    lp.add_argument("--cpus", type=guest_cpus, default=2, metavar="N",
                    help="number of CPUs of the guest (default 2)")
    lp.add_argument("--timeout", type=seconds, default=1800.0, metavar="SECONDS",
                    help="give up on the boot after this long (default 1800)")
    lp.add_argument("--json", action="store_true", help="print the result as JSON")
    lp.add_argument("--save", metavar="FILE", help="also write the profile as JSON to FILE")
    lp.set_defaults(func=_lab_profile)


def _parse_sets(items: list[str]) -> dict[str, str]:
    from localmap.errors import LocalmapError

    out = {}
    for it in items:
        if "=" not in it:
            raise LocalmapError(f"--set wants SYMBOL=VALUE, not {it!r}")
        k, v = it.split("=", 1)
        out[k.strip().removeprefix("CONFIG_")] = v.strip()
    return out


def _dump(data) -> None:
    json.dump(data, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _lab_kernel(args) -> int:
    from localmap.lab import kernel as kb

    if args.list:
        rows = [k.to_dict() for k in kb.cached_kernels()]
        if args.json:
            _dump(rows)
        else:
            for r in rows:
                print(f"{r['dir']}  {r['flavour']}  {fmt_seconds(r['seconds'], 0)}  "
                      f"{fmt_count(r['objects'])} objects  patches: {len(r['patches'])}")
        return 0
    with progress(args) as prog:
        res = kb.build_kernel(args.flavour, args.patch, _parse_sets(args.set), jobs=args.jobs,
                              progress=prog, keep_build=args.keep_build)
    if args.json:
        _dump(res.to_dict())
    else:
        how = ("from the cache" if res.cached else
               f"built in {fmt_seconds(res.seconds, 0)} ({fmt_count(res.objects)} objects)")
        print(f"{res.flavour} kernel {res.version} {how}:\n  Image      {res.image}\n  vmlinux    "
              f"{res.vmlinux}\n  System.map {res.system_map}\n  config     {res.config}")
    return 0


def _lab_profile(args) -> int:
    from localmap.errors import LocalmapError
    from localmap.lab import profile as prof
    from localmap.units import parse_count
    from localmap.perf.dynamic import measured_profile

    wl = []
    for w in args.workloads:
        name, _, rounds = w.partition("=")
        if name not in prof.WORKLOADS:
            raise LocalmapError(f"unknown workload {name!r} (known: {', '.join(prof.WORKLOADS)})")
        wl.append((name, parse_count(rounds, w, minimum=1, maximum=10_000_000) if rounds
                   else prof.WORKLOADS[name][0]))
    with progress(args) as prog:
        k = prof.resolve(args.kernel, build=not args.no_build, system_map=args.system_map,
                         progress=prog)
        run = prof.run_profile(k, wl, args.cpus, timeout=args.timeout, progress=prog)
        data = measured_profile(run, progress=prog)
    if args.save:
        write_atomic(args.save, json.dumps(data, indent=1))
    if args.json:
        _dump(data)
        return 0
    info(args, f"booted in {fmt_seconds(data['boot_seconds'], 1)}, "
               f"whole run {fmt_seconds(data['seconds'], 1)}")
    render_profile(data)
    return 0


def _range(pair, fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(pair[0])}..{fmt.format(pair[1])}"


def render_profile(data: dict, console=None) -> None:
    """A measured profile as terminal tables (``lab profile``, and ``predict`` for the shipped
    ones)."""
    from rich.table import Table

    con = console or stdout_console()
    k = data["kernel"]
    con.print(f"[bold]{safe(k['label'])}[/bold]: {safe(k['preempt_model'])}, preempt count {safe(k['preempt_count'])}; "
              f"{fmt_count(k['sites'])} sites ({fmt_count(k['static_sites'])} static, "
              f"{fmt_count(k['dynamic_sites'])} dynamic), {fmt_count(k['removable_sites'])} with a "
              "removable bracket", highlight=False)
    if data.get("label"):
        con.print(f"[bold red]{safe(data['label'])}[/bold red]")
    var = data["headline_variant"]
    t = Table(title=f"per operation ({data['cpus']} vCPUs; cycles saved: DELTA {var}, "
                    "overlapped..serial)", header_style="bold")
    cols = ["workload", "ops", "kernel instr", "this_cpu exec", "static/dyn", "removed instr",
            "share"] + [f"saved cyc {c}" for c in data["cores"]] + ["kernel time"]
    for c in cols:
        t.add_column(c, justify="left" if c == "workload" else "right")
    head_core = "ampere1" if "ampere1" in data["cores"] else data["cores"][0]
    for w in data["workloads"]:
        safe_row(t, w["workload"], fmt_count(w["ops"]), fmt_count(round(w["kernel_instructions"])),
                  f"{w['this_cpu_executions']:.1f}",
                  f"{w['static_executions']:.1f}/{w['dynamic_executions']:.1f}",
                  f"{w['removed_instructions']:.1f}", fmt_percent(w["removed_share"]),
                  *[_range(w["saved_cycles"][c][var]) for c in data["cores"]],
                  _range(sorted(w["kernel_time_change"][head_core]), "{:+.2f}") + " %")
    con.print(t)
    for w in data["workloads"]:
        f = Table(title=f"{w['workload']}: functions by this_cpu executions per op", header_style="bold")
        for c in ("function", "exec/op", "removed/op", "instr/op", "share of kernel"):
            f.add_column(c, justify="left" if c == "function" else "right")
        for r in w["functions"][:8]:
            safe_row(f, r["function"], f"{r['executions']:.2f}", f"{r['removed']:.1f}",
                      fmt_count(round(r["instructions"])), fmt_percent(r["share"]))
        con.print(f)
    c = Table(title=f"against the talk (kernel time on {head_core}, DELTA {var})", header_style="bold")
    for col in ("workload", "talk", "model", "verdict"):
        c.add_column(col)
    for r in data["talk"]:
        safe_row(c, r["workload"], r["talk"], _range(r["model_kernel_time"], "{:+.2f}") + " %", r["verdict"])
    con.print(c)
    for r in data["talk"]:
        for fr in r["functions"]:
            model = ("-" if fr["model_change"] is None else
                     f"share {fr['model_share']:.2f} %, change {fr['model_change']:+.2f} points")
            con.print(f"  {r['workload']}: {fr['function']} talk {fr['talk_overhead']:.2f} % "
                      f"{fr['talk_change']:+.2f} points; model {model}: {fr['why']}",
                      highlight=False, markup=False)
        for why in r["reasons"]:
            con.print(f"  {r['workload']}: {why}", highlight=False, markup=False)
    con.print("[bold]assumptions[/bold]")
    for a in data["assumptions"]:
        con.print(f"  - {a}", markup=False, highlight=False)


# --- lab prototype: thin glue over localmap.lab.prototype; the site analysis that predicts the
# instructions removed (localmap.perf.dynamic.measured_profile) is joined here, because lab and
# perf do not import each other.

def _register_prototype(labsub) -> None:
    from localmap.lab.prototype import SERIES_VERSION

    pp = add_command(labsub, "prototype", help="build, boot and check the design's kernel patch "
                     "series (kernel/) against the model",
                     description=f"Apply the patch series of kernel/ to Linux {SERIES_VERSION} "
                     "(any other source is refused), build it and the unpatched kernel with the "
                     "same config (cached), boot both under QEMU on each CPU count, run the "
                     "built-in self-check, its stress, CPU hotplug cycles and the memcg and fork "
                     "workloads, compare the per-CPU page-table pages walked in the running "
                     "kernel with the model's for the same chunks, and count kernel instructions "
                     "per workload operation before and after.")
    pp.add_argument("--cpus", default="1,2,4,8", metavar="LIST",
                    help="number of CPUs of each guest, comma-separated (default 1,2,4,8)")
    pp.add_argument("--no-build", action="store_true",
                    help="fail instead of building a kernel that is not cached")
    pp.add_argument("--build-only", action="store_true",
                    help="only check the series and build (or find) both kernels")
    pp.add_argument("--check-series", action="store_true",
                    help="only check the source version and that the series applies")
    pp.add_argument("--no-profile", action="store_true",
                    help="skip the instructions-per-operation profiles")
    pp.add_argument("--no-extra", action="store_true",
                    help="skip the extra boots of the patched kernel (-cpu cortex-a57: no LSE "
                    "atomics; kpti=1: the KPTI trampoline)")
    pp.add_argument("--stress-ms", type=whole(1, 3_600_000), default=1000, metavar="MS",
                    help="milliseconds of this_cpu stress per run (default 1000)")
    pp.add_argument("--cycles", type=whole(0, 1000), default=2, metavar="N",
                    help="CPU hotplug off/on cycles (default 2)")
    pp.add_argument("--timeout", type=seconds, default=900.0, metavar="SECONDS",
                    help="give up on a boot after this long (default 900)")
    pp.add_argument("--patches", metavar="DIR",
                    help="the series folder (default: kernel/ of the source checkout)")
    pp.add_argument("--json", action="store_true", help="print the result as JSON")
    pp.add_argument("--save", metavar="FILE", help="also write the result as JSON to FILE")
    pp.set_defaults(func=_lab_prototype)


def _cpu_list(text: str) -> list[int]:
    from localmap.errors import LocalmapError

    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LocalmapError(f"--cpus wants comma-separated integers, not {text!r}") from None
    if not vals or any(v < 1 or v > 64 for v in vals):
        raise LocalmapError(f"--cpus wants CPU counts between 1 and 64, not {text!r}")
    return vals


def _lab_prototype(args) -> int:
    from localmap.lab import prototype as proto
    from localmap.perf.dynamic import measured_profile

    cpus = _cpu_list(args.cpus)
    with progress(args) as prog:
        if args.check_series:
            data = proto.check_series(progress=prog, path=args.patches)
        elif args.build_only:
            base, patched = proto.builds(build=not args.no_build, progress=prog, path=args.patches)
            data = {"baseline": base.to_dict(), "patched": patched.to_dict()}
        else:
            data = proto.run_prototype(
                cpus, build=not args.no_build, profile=not args.no_profile,
                stress_ms=args.stress_ms, cycles=args.cycles, timeout=args.timeout,
                extra_boots=() if args.no_extra else proto.EXTRA_BOOTS,
                analyse=measured_profile, progress=prog, path=args.patches)
    if args.save:
        write_atomic(args.save, json.dumps(data, indent=1, default=str))
    if args.json or args.check_series or args.build_only:
        json.dump(data, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        render_prototype(data)
    if "boots" in data:
        return 0 if all(b.get("booted") and not b.get("failures") for b in data["boots"]) else 1
    return 0


def _proto_ok(v) -> str:
    return "-" if v is None else ("ok" if v else "FAIL")


def render_prototype(data: dict, console=None) -> None:
    """The prototype's result as terminal tables."""
    from rich.table import Table

    from localmap.units import fmt_count

    con = console or stdout_console()
    con.print(f"[bold]prototype[/bold]: Linux {data['version']} ({data['flavour']}), "
              f"{len(data['patches'])} patches", highlight=False)
    t = Table(title="boots", header_style="bold")
    for c in ("kernel", "CPUs", "cpu", "append", "booted", "hotplug", "memcg", "fork",
              "self-check failures", "stress updates", "page-table pages", "model", "differences"):
        t.add_column(c, justify="left" if c in ("kernel", "cpu", "append", "differences") else "right")
    for b in data["boots"]:
        r = b.get("results", {})
        st = b.get("stress", {}).get("stress", {})
        diffs = b.get("pgtables", {}).get("differences")
        safe_row(t, b["kernel"], str(b["cpus"]), b["cpu_model"], b.get("append", ""),
                  "yes" if b["booted"] else "NO", _proto_ok(r.get("hotplug")), _proto_ok(r.get("memcg")),
                  _proto_ok(r.get("fork")), "-" if b["kernel"] == "baseline" else str(b.get("failures")),
                  fmt_count(st["expected"]) if st.get("expected") else "-",
                  str(b.get("measured_pgtable_pages", "-")), str(b.get("model_pgtable_pages", "-")),
                  "-" if diffs is None else ("none" if not diffs else "; ".join(diffs)[:60]))
    con.print(t)
    ins = data.get("instructions")
    if ins:
        t = Table(title=f"kernel instructions per operation ({ins['cpus']} vCPUs, -icount)",
                  header_style="bold")
        for c in ("workload", "before", "after", "removed", "model: brackets", "model: net (load)",
                  "model: net (hoisted)"):
            t.add_column(c, justify="left" if c == "workload" else "right")
        for w in ins["workloads"]:
            net = w["model_net_removed"]
            safe_row(t, w["workload"], f"{w['before']:,.0f}", f"{w['after']:,.0f}",
                      f"{w['measured_removed']:,.0f}", f"{w['model_removed']:,.0f}",
                      f"{net.get('load', 0):,.0f}", f"{net.get('hoisted', 0):,.0f}")
        con.print(t)
