"""``localmap capture`` (live host) and ``localmap lab ...`` (QEMU) command lines.

Both captures produce a bundle in the layout of the shared captures through one guest-side
script; see :mod:`localmap.lab.host` and :mod:`localmap.lab.qemu`. ``localmap lab`` groups the
commands that work with real kernels under QEMU; a new one is added to :func:`register` as a
sub-command of ``lab``.
"""

from __future__ import annotations

import argparse
import sys

from localmap.cli.common import add_command, progress


def _workload_args(p: argparse.ArgumentParser, memcgs: int, remove: int, forks: int) -> None:
    p.add_argument("--memcgs", type=int, default=memcgs, metavar="N",
                   help=f"memory cgroups to create (default {memcgs})")
    p.add_argument("--remove", type=int, default=remove, metavar="N",
                   help=f"how many of them to remove again (default {remove})")
    p.add_argument("--forks", type=int, default=forks, metavar="N",
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
    cap.add_argument("--buffer-kb", type=int, default=8192, metavar="KB",
                     help="per-CPU trace buffer size (default 8192)")
    cap.set_defaults(func=_capture)

    lab = add_command(sub, "lab", help="capture bundles from real arm64 kernels booted under QEMU")
    labsub = lab.add_subparsers(dest="lab_command", metavar="COMMAND")
    labsub.required = True
    lc = add_command(labsub, "capture", help="boot an arm64 kernel under QEMU and capture a bundle",
                     description="Fetch the kernel and busybox-static:arm64 (apt-get "
                     "download, cached), build an initramfs, boot qemu-system-aarch64 -M "
                     "virt -cpu max, run the workload and split the console into a bundle.")
    lc.add_argument("--kernel", default=DEFAULT_KERNEL, metavar="PACKAGE|IMAGE",
                    help=f"Debian linux-image package or raw arm64 Image (default {DEFAULT_KERNEL})")
    lc.add_argument("--config", metavar="FILE", help=".config of an IMAGE (default: config-* beside it)")
    lc.add_argument("--cpus", type=int, required=True, metavar="N",
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
    lc.add_argument("--timeout", type=float, default=1200.0, metavar="SECONDS",
                    help="give up on the boot after this long (default 1200)")
    lc.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder to create")
    lc.set_defaults(func=_lab_capture)


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
