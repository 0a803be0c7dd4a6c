"""``localmap capture`` (live host) and ``localmap lab capture`` (QEMU) command lines.

Both produce a bundle in the layout of shared/data/README.md through one guest-side script
(``guest/capture.sh``); see :mod:`localmap.lab.host` and :mod:`localmap.lab.qemu`.
"""

from __future__ import annotations

import argparse


def _workload_args(p: argparse.ArgumentParser, memcgs: int, remove: int, forks: int) -> None:
    p.add_argument("--memcgs", type=int, default=memcgs, metavar="N",
                   help=f"memory cgroups to create (default {memcgs})")
    p.add_argument("--remove", type=int, default=remove, metavar="N",
                   help=f"how many of them to remove again (default {remove})")
    p.add_argument("--forks", type=int, default=forks, metavar="N",
                   help=f"fork+exec of /bin/true (default {forks})")


def register(sub) -> None:
    from localmap.lab.qemu import DEFAULT_KERNEL

    cap = sub.add_parser("capture", help="capture a bundle on this (live, arm64) host as root",
                         description="Enable the percpu tracepoints, run a workload and collect "
                         "a bundle (trace, dmesg, meminfo phases, vmallocinfo, .config, kallsyms, "
                         "CPU lists) from the running kernel. Needs root.")
    cap.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder to create")
    cap.add_argument("--workload", metavar="CMD",
                     help="shell command to run instead of the memcg/fork workload")
    _workload_args(cap, 300, 0, 200)
    cap.add_argument("--buffer-kb", type=int, default=8192, metavar="KB",
                     help="per-CPU trace buffer size (default 8192)")
    cap.set_defaults(func=_capture)

    lab = sub.add_parser("lab", help="capture bundles from real arm64 kernels booted under QEMU")
    labsub = lab.add_subparsers(dest="lab_command", metavar="COMMAND")
    labsub.required = True
    lc = labsub.add_parser("capture", help="boot an arm64 kernel under QEMU and capture a bundle",
                           description="Fetch the kernel and busybox-static:arm64 (apt-get "
                           "download, cached), build an initramfs, boot qemu-system-aarch64 -M "
                           "virt -cpu max, run the workload and split the console into a bundle.")
    lc.add_argument("--kernel", default=DEFAULT_KERNEL, metavar="PACKAGE|IMAGE",
                    help=f"Debian linux-image package or raw arm64 Image (default {DEFAULT_KERNEL})")
    lc.add_argument("--config", metavar="FILE", help=".config of an IMAGE (default: config-* beside it)")
    lc.add_argument("--cpus", type=int, required=True, metavar="N")
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
    lc.add_argument("--timeout", type=float, default=1200.0, metavar="SECONDS",
                    help="give up on the boot after this long (default 1200)")
    lc.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder to create")
    lc.set_defaults(func=_lab_capture)
    _register_kernel_profile(labsub)
    _register_prototype(labsub)


def _capture(args) -> int:
    from localmap.lab.bundle_io import print_summary
    from localmap.lab import host

    res = host.capture(args.output, workload=args.workload, memcgs=args.memcgs,
                       remove=args.remove, forks=args.forks, buffer_kb=args.buffer_kb)
    print_summary(res.out, res.seconds, res.validation)
    return 0 if res.validation.ok else 1


def _lab_capture(args) -> int:
    from localmap.lab.bundle_io import print_summary
    from localmap.lab import qemu

    res = qemu.lab_capture(args.kernel, args.cpus, args.output, memcgs=args.memcgs,
                           remove=args.remove, forks=args.forks, percpu_alloc=args.percpu_alloc,
                           timeout=args.timeout, config=args.config,
                           modules=[m for m in (args.modules or "").split(",") if m.strip()],
                           unload_modules=not args.keep_modules, net_up=args.net)
    print_summary(res.out, res.seconds, res.validation)
    return 0


# --- lab kernel / lab profile: thin glue over localmap.lab.kernel and localmap.lab.profile --------

def _register_kernel_profile(labsub) -> None:
    from localmap.lab.kernel import FLAVOURS
    from localmap.lab.profile import WORKLOADS

    lk = labsub.add_parser("kernel", help="build an arm64 Image from Debian's 6.12 source and config",
                           description="Derive a config from Debian's 6.12 arm64 config (trimmed to "
                           "what QEMU virt needs, 48-bit VA, 4K pages, the chosen preemption model), "
                           "build `make Image` with aarch64-linux-gnu-gcc (nice'd, -j2) and cache it "
                           "by config + source + patches under ~/.cache/localmap/kernels.")
    lk.add_argument("--flavour", choices=sorted(FLAVOURS), default="dynamic",
                    help="preemption model (default dynamic: the talk's Fedora setting)")
    lk.add_argument("--patch", action="append", default=[], metavar="FILE",
                    help="apply this patch (patch -p1) before building; repeat in order")
    lk.add_argument("--set", action="append", default=[], metavar="SYM=VAL",
                    help="extra config override, e.g. --set DEBUG_PREEMPT=y; repeat")
    lk.add_argument("-j", "--jobs", type=int, default=2, metavar="N", help="make -jN (default 2)")
    lk.add_argument("--keep-build", action="store_true", help="keep the object tree")
    lk.add_argument("--list", action="store_true", help="list the cached builds and exit")
    lk.add_argument("--json", action="store_true", help="print the build record as JSON")
    lk.set_defaults(func=_lab_kernel)

    lp = labsub.add_parser("profile", help="count executed this_cpu sites and kernel instructions per "
                           "workload operation (QEMU + TCG plugin), price them with llvm-mca",
                           description="Boot a lab kernel under QEMU with the counting plugin, run "
                           "the workloads (" + ", ".join(WORKLOADS) + ") and report per operation: "
                           "kernel instructions, this_cpu executions by site and function, "
                           "instructions the local mapping removes and cycles it saves per core.")
    lp.add_argument("workloads", nargs="+", metavar="WORKLOAD",
                    help="any of: " + ", ".join(WORKLOADS) + " (NAME=ROUNDS to set the rounds)")
    lp.add_argument("--kernel", default="dynamic", metavar="K",
                    help="lab flavour (" + ", ".join(sorted(FLAVOURS)) + "; built if not cached), "
                    "debian:arm64, a lab build folder, or an Image with --system-map (default dynamic)")
    lp.add_argument("--system-map", metavar="FILE", help="System.map/kallsyms of an Image")
    lp.add_argument("--no-build", action="store_true", help="fail instead of building a lab kernel")
    lp.add_argument("--cpus", type=int, default=2, metavar="N", help="vCPUs (default 2)")
    lp.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS")
    lp.add_argument("--json", action="store_true", help="print the profile as JSON")
    lp.add_argument("-o", "--output", metavar="FILE", help="also write the JSON profile here")
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


def _bar():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=False)


def _lab_kernel(args) -> int:
    import json
    import sys

    from localmap.lab import kernel as kb

    if args.list:
        rows = [k.to_dict() for k in kb.cached_kernels()]
        if args.json:
            json.dump(rows, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            for r in rows:
                print(f"{r['dir']}  {r['flavour']}  {r['seconds']:.0f} s  {r['objects']} objects  "
                      f"patches: {len(r['patches'])}")
        return 0
    with _bar() as bar:
        task = bar.add_task("preparing", total=None)

        def cb(what, done, total):
            bar.update(task, description=what[:60], completed=done, total=total)

        res = kb.build_kernel(args.flavour, args.patch, _parse_sets(args.set), jobs=args.jobs,
                              progress=cb, keep_build=args.keep_build)
    if args.json:
        json.dump(res.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        how = "from the cache" if res.cached else f"built in {res.seconds:.0f} s ({res.objects} objects)"
        print(f"{res.flavour} kernel {res.version} {how}:\n  Image      {res.image}\n  vmlinux    "
              f"{res.vmlinux}\n  System.map {res.system_map}\n  config     {res.config}")
    return 0


def _lab_profile(args) -> int:
    import json
    import sys

    from rich.console import Console

    from localmap.errors import LocalmapError
    from localmap.lab import profile as prof

    wl = []
    for w in args.workloads:
        name, _, rounds = w.partition("=")
        if name not in prof.WORKLOADS:
            raise LocalmapError(f"unknown workload {name!r} (known: {', '.join(prof.WORKLOADS)})")
        try:
            wl.append((name, int(rounds) if rounds else prof.WORKLOADS[name][0]))
        except ValueError:
            raise LocalmapError(f"{w}: rounds must be an integer") from None
    err = Console(stderr=True)
    with _bar() as bar:
        task = bar.add_task("resolving the kernel", total=None)

        def kcb(what, done, total):
            bar.update(task, description="kernel: " + what[:52], completed=done, total=total)

        k = prof.resolve(args.kernel, build=not args.no_build, system_map=args.system_map,
                         kernel_progress=kcb)
        bar.update(task, total=None, completed=0)
        data = prof.profile(k, wl, args.cpus, timeout=args.timeout,
                            progress=lambda s: bar.update(task, description=s[:70]))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(data, fh, indent=1)
    if args.json:
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    err.print(f"booted in {data['boot_seconds']} s, whole run {data['seconds']} s")
    render_profile(data)
    return 0


def render_profile(data: dict, console=None) -> None:
    """The profile as terminal tables (also used by ``localmap evaluate``)."""
    from rich.table import Table

    from localmap.report.console import stdout_console

    con = console or stdout_console()
    k = data["kernel"]
    con.print(f"[bold]{k['label']}[/bold]: {k['preempt_model']}, preempt count {k['preempt_count']}; "
              f"{k['sites']:,} sites ({k['static_sites']:,} static, {k['dynamic_sites']:,} dynamic), "
              f"{k['removable_sites']:,} with a removable bracket", highlight=False)
    if data.get("label"):
        con.print(f"[bold red]{data['label']}[/bold red]")
    var = data["headline_variant"]
    t = Table(title=f"per operation ({data['cpus']} vCPUs; cycles saved: DELTA {var}, "
                    "overlapped..serial)", header_style="bold")
    cols = ["workload", "ops", "kernel instr", "this_cpu exec", "static/dyn", "removed instr",
            "share"] + [f"saved cyc {c}" for c in data["cores"]] + ["kernel time"]
    for c in cols:
        t.add_column(c, justify="left" if c == "workload" else "right")
    head_core = "ampere1" if "ampere1" in data["cores"] else data["cores"][0]
    for w in data["workloads"]:
        t.add_row(w["workload"], f"{w['ops']:,}", f"{w['kernel_instructions']:,.0f}",
                  f"{w['this_cpu_executions']:.1f}",
                  f"{w['static_executions']:.1f}/{w['dynamic_executions']:.1f}",
                  f"{w['removed_instructions']:.1f}", f"{100 * w['removed_share']:.2f}%",
                  *[f"{w['saved_cycles'][c][var][0]:.0f}..{w['saved_cycles'][c][var][1]:.0f}"
                    for c in data["cores"]],
                  "{:+.2f}..{:+.2f}%".format(*sorted(w["kernel_time_change"][head_core])))
    con.print(t)
    for w in data["workloads"]:
        f = Table(title=f"{w['workload']}: functions by this_cpu executions per op", header_style="bold")
        for c in ("function", "exec/op", "removed/op", "instr/op", "share of kernel"):
            f.add_column(c, justify="left" if c == "function" else "right")
        for r in w["functions"][:8]:
            f.add_row(r["function"], f"{r['executions']:.2f}", f"{r['removed']:.1f}",
                      f"{r['instructions']:.0f}", f"{100 * r['share']:.2f}%")
        con.print(f)
    c = Table(title=f"against the talk (kernel time on {head_core}, DELTA {var})", header_style="bold")
    for col in ("workload", "talk", "model", "verdict"):
        c.add_column(col)
    for r in data["talk"]:
        c.add_row(r["workload"], r["talk"], "{:+.2f}..{:+.2f}%".format(*r["model_kernel_time"]), r["verdict"])
    con.print(c)
    for r in data["talk"]:
        for fr in r["functions"]:
            model = ("-" if fr["model_change"] is None else
                     f"share {fr['model_share']:.2f}%, change {fr['model_change']:+.2f} points")
            con.print(f"  {r['workload']}: {fr['function']} talk {fr['talk_overhead']:.2f}% "
                      f"{fr['talk_change']:+.2f} points; model {model}: {fr['why']}", highlight=False)
        for why in r["reasons"]:
            con.print(f"  {r['workload']}: {why}", highlight=False, markup=False)
    con.print("[bold]assumptions[/bold]")
    for a in data["assumptions"]:
        con.print(f"  - {a}", markup=False, highlight=False)


# --- lab prototype: thin glue over localmap.lab.prototype -----------------------------------------

def _register_prototype(labsub) -> None:
    from localmap.lab.prototype import SERIES_VERSION

    pp = labsub.add_parser("prototype", help="build, boot and check the design's kernel patch series "
                           "(kernel/) against the model",
                           description=f"Apply the patch series of kernel/ to Linux {SERIES_VERSION} "
                           "(refusing any other source), build it and the unpatched kernel with the "
                           "same config (cached), boot both under QEMU on each CPU count, run the "
                           "built-in self-check, its stress, CPU hotplug cycles and the memcg/fork "
                           "workloads, compare the per-CPU page-table pages walked in the running "
                           "kernel with the model's for the same chunks, and profile kernel "
                           "instructions per workload operation before and after.")
    pp.add_argument("--cpus", default="1,2,4,8", metavar="LIST",
                    help="comma-separated vCPU counts (default 1,2,4,8)")
    pp.add_argument("--no-build", action="store_true", help="fail instead of building a kernel")
    pp.add_argument("--build-only", action="store_true",
                    help="only check the series and build (or find) both kernels")
    pp.add_argument("--check-series", action="store_true",
                    help="only check the source version and that the series applies")
    pp.add_argument("--no-profile", action="store_true",
                    help="skip the instructions-per-operation profiles")
    pp.add_argument("--no-extra", action="store_true",
                    help="skip the extra boots of the patched kernel (-cpu cortex-a57: no LSE "
                    "atomics; kpti=1: the KPTI trampoline)")
    pp.add_argument("--stress-ms", type=int, default=1000, metavar="MS",
                    help="this_cpu stress per run (default 1000)")
    pp.add_argument("--cycles", type=int, default=2, metavar="N", help="CPU hotplug cycles (default 2)")
    pp.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                    help="per boot (default 900)")
    pp.add_argument("--patches", metavar="DIR", help="the series folder (default: kernel/ of the checkout)")
    pp.add_argument("--json", action="store_true", help="print the result as JSON")
    pp.add_argument("-o", "--output", metavar="FILE", help="also write the JSON result here")
    pp.set_defaults(func=_lab_prototype)


def _int_list(text: str, what: str) -> list[int]:
    from localmap.errors import LocalmapError

    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LocalmapError(f"{what} wants comma-separated integers, not {text!r}") from None
    if not vals or any(v < 1 or v > 64 for v in vals):
        raise LocalmapError(f"{what} wants CPU counts between 1 and 64, not {text!r}")
    return vals


def _lab_prototype(args) -> int:
    import json
    import sys

    from localmap.errors import LocalmapError
    from localmap.lab import prototype as proto

    cpus = _int_list(args.cpus, "--cpus")
    if args.stress_ms < 1 or args.cycles < 0 or args.timeout <= 0:
        raise LocalmapError("--stress-ms must be >= 1, --cycles >= 0 and --timeout > 0")
    with _bar() as bar:
        task = bar.add_task("checking the patch series", total=None)

        def say(what):
            bar.update(task, description=what[:70])

        def kcb(what, done, total):
            bar.update(task, description="kernel: " + what[:60], completed=done, total=total)

        if args.check_series:
            data = proto.check_series(progress=say, path=args.patches)
        elif args.build_only:
            base, patched = proto.builds(build=not args.no_build, progress=kcb, path=args.patches)
            data = {"baseline": base.to_dict(), "patched": patched.to_dict()}
        else:
            data = proto.run_prototype(
                cpus, build=not args.no_build, profile=not args.no_profile,
                stress_ms=args.stress_ms, cycles=args.cycles, timeout=args.timeout,
                extra_boots=() if args.no_extra else proto.EXTRA_BOOTS,
                progress=say, kernel_progress=kcb, path=args.patches)
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(data, fh, indent=1, default=str)
    if args.json or args.check_series or args.build_only:
        json.dump(data, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    render_prototype(data)
    return 0 if all(b.get("booted") and not b.get("failures") for b in data["boots"]) else 1


def render_prototype(data: dict, console=None) -> None:
    from rich.table import Table

    from localmap.report.console import stdout_console

    con = console or stdout_console()
    con.print(f"[bold]prototype[/bold]: Linux {data['version']} ({data['flavour']}), "
              f"{len(data['patches'])} patches", highlight=False)
    t = Table(title="boots", header_style="bold")
    for c in ("kernel", "CPUs", "cpu", "append", "booted", "hotplug", "memcg", "fork", "self-check failures",
              "stress ops", "pgtable pages kernel", "model", "differences"):
        t.add_column(c, justify="left" if c in ("kernel", "cpu", "append", "differences") else "right")
    for b in data["boots"]:
        r = b.get("results", {})
        st = b.get("stress", {}).get("stress", {})
        ops = sum(st.get(k, 0) for k in ("process_ops", "softirq_ops", "hardirq_ops"))
        diffs = b.get("pgtables", {}).get("differences")
        t.add_row(b["kernel"], str(b["cpus"]), b["cpu_model"], b.get("append", ""),
                  "yes" if b["booted"] else "NO",
                  _ok(r.get("hotplug")), _ok(r.get("memcg")), _ok(r.get("fork")),
                  "-" if b["kernel"] == "baseline" else str(b.get("failures")),
                  f"{ops:,}" if ops else "-",
                  str(b.get("measured_pgtable_pages", "-")), str(b.get("model_pgtable_pages", "-")),
                  "-" if diffs is None else ("none" if not diffs else "; ".join(diffs)[:60]))
    con.print(t)
    ins = data.get("instructions")
    if ins:
        t = Table(title=f"kernel instructions per operation ({ins['cpus']} vCPUs)", header_style="bold")
        for c in ("workload", "before", "after", "removed", "model: bracket removed",
                  "model: net (DELTA load)"):
            t.add_column(c, justify="left" if c == "workload" else "right")
        for w in ins["workloads"]:
            t.add_row(w["workload"], f"{w['before']:,.0f}", f"{w['after']:,.0f}",
                      f"{w['measured_removed']:,.0f}", f"{w['model_removed']:,.1f}",
                      f"{w['model_net_removed'].get('load', 0):,.1f}")
        con.print(t)


def _ok(v) -> str:
    return "-" if v is None else ("ok" if v else "FAIL")
