"""Dynamic this_cpu profiles: boot a lab kernel under QEMU and count what executes per operation.

What it models: nothing of the kernel; it measures a real one. A kernel (a lab build from
:mod:`localmap.lab.kernel`, or any arm64 ``Image`` with its symbols) boots under
``qemu-system-aarch64 -M virt -cpu max -accel tcg,thread=single`` with the lab's TCG plugin
(:mod:`localmap.lab.tcgplugin`) from a busybox initramfs whose ``/init`` runs the workload program
``workloads/lmwork.c`` (static aarch64, cross-compiled at run time). Each workload runs one warm-up
round, then N measured rounds between two marker instructions; the plugin snapshots every
counter at each marker, so a workload's figures are the differences between its two snapshots:

* ``kernel_instructions``: instructions executed at kernel addresses (all vCPUs: interrupts,
  kworkers and RCU callbacks running meanwhile are counted with the workload, as a sampling
  profiler would attribute them to the system);
* ``sites``: executions of each ``mrs xN, tpidr_el1`` at a kernel address (a this_cpu site, as
  :mod:`localmap.perf.sites` defines it).

The guest is the talk's setting as far as one VM allows: the workload runs inside a memory cgroup
(cgroup v2, memory controller on), memcg creation makes children of another cgroup. Deliberately
different: a few CPUs instead of 160, small sizes per round (the per-operation figures do not
depend on them), and TCG instead of hardware (instruction counts are exact; time is not measured
here but priced by :mod:`localmap.perf.mca`).

It counts; what the counts are worth (the site analysis, llvm-mca prices, the talk comparison)
is :func:`localmap.perf.dynamic.measured_profile`, which takes the run as plain data.

API::

    run = run_profile(kernel, [("page-fault", 4), ("fork", 50)], cpus=2)
    run.workloads["fork"].ops, .kernel_instructions, .sites   # {addr: executions}
    run.boot_seconds, run.seconds
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.lab.cc import compile_cached
from localmap.lab.qemu import QEMU, busybox_binary, qemu_running
from localmap.progress import Progress, as_progress

CROSS_GCC = "aarch64-linux-gnu-gcc"

# name -> (default measured rounds, what one operation is, the talk's benchmark it mirrors)
WORKLOADS: dict[str, tuple[int, str, str]] = {
    "page-fault": (4, "page faulted in a shared file mapping (1,024 pages a round)",
                   "will-it-scale page_fault3 (backup-slide profile)"),
    "vm": (4, "anonymous 4K page (no THP) written, read and unmapped (1,024 pages a round)",
           "stress-ng --vm 160 --vm-bytes 128M"),
    "fork": (50, "fork + exit + wait", "stress-ng --fork 160"),
    "mmapfork": (10, "fork of a child that maps, touches, advises and unmaps 2 MiB",
                 "stress-ng --mmapfork 160 --mmapfork-bytes 128M"),
    "memcg": (50, "memory cgroup created (mkdir)", "memcg creation (10K memcgs)"),
    "exec-io": (20, "fork + exec of a static program that writes, reads and unlinks 64 KiB",
                "kernel build (make -j160) in a memcg, as a kernel-heavy mix"),
    "syscall": (1000, "getppid() system call (exactness probe: each enters el0_svc once)",
                "exactness probe, not in the talk"),
}


@dataclass
class ProfiledKernel:
    """What a profile boots and how its sites are resolved."""

    image: Path
    label: str
    vmlinux: Path | None = None       # ELF with .symtab (lab builds)
    system_map: Path | None = None
    config: Path | None = None
    preempt_model: str = ""


@dataclass
class WorkloadCounts:
    name: str
    rounds: int
    ops: int
    kernel_instructions: int
    user_instructions: int
    sites: dict[int, int] = field(default_factory=dict)
    blocks: dict[tuple[int, int], int] = field(default_factory=dict)  # (addr, insns) -> executions
    op: str = ""              # what one operation is (WORKLOADS)
    talk: str = ""            # the talk's benchmark it mirrors (WORKLOADS)


@dataclass
class ProfileRun:
    kernel: ProfiledKernel
    cpus: int
    workloads: dict[str, WorkloadCounts]
    boot_seconds: float
    seconds: float
    instrumented: bool
    totals: dict[int, int] = field(default_factory=dict)  # whole-run site counts (exit snapshot)
    totals_blocks: dict[tuple[int, int], int] = field(default_factory=dict)
    total_kernel_instructions: int = 0
    console: str = ""


def _cache() -> Path:
    from localmap import debian

    p = debian.cache_dir() / "profile"
    p.mkdir(parents=True, exist_ok=True)
    return p


def workload_source() -> str:
    return resources.files("localmap.lab").joinpath("workloads/lmwork.c").read_text()


def build_workload() -> Path:
    """Cross-compile ``workloads/lmwork.c`` (static aarch64), cached by its content."""
    gcc = shutil.which(CROSS_GCC)
    if gcc is None:
        raise LocalmapError(f"{CROSS_GCC} not found: apt-get install gcc-aarch64-linux-gnu")
    return compile_cached(gcc, workload_source(), "lmwork", ["-static", "-O2", "-Wall"], _cache(),
                          what="cross-compiling the workload")


INIT = """#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
mount -t cgroup2 none /sys/fs/cgroup
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/work /sys/fs/cgroup/lm
echo +memory > /sys/fs/cgroup/lm/cgroup.subtree_control
echo $$ > /sys/fs/cgroup/work/cgroup.procs
echo 1 > /proc/sys/kernel/printk
echo "LMPROFILE-START $(cat /sys/fs/cgroup/work/cgroup.controllers)"
for spec in $(echo "$lmwork" | tr ',' ' '); do
  set -- $(echo "$spec" | tr ':' ' ')
  /lmwork "$1" "$2" "$3" || echo "LMPROFILE-FAIL $1"
done
echo LMPROFILE-DONE
poweroff -f
"""


def initramfs(workloads: list[tuple[str, int]]) -> bytes:
    from localmap.lab.initramfs import Entry, busybox_initramfs

    bb = busybox_binary()
    work = build_workload()
    extra = [Entry("lmwork", stat.S_IFREG | 0o755, work.read_bytes())]
    d = stat.S_IFDIR | 0o755
    extra += [Entry("sys/fs", d)]
    return busybox_initramfs(bb.read_bytes(), INIT.encode(), extra=extra)


def _spec(workloads: list[tuple[str, int]]) -> str:
    if not workloads:
        raise LocalmapError("no workload to profile (known: " + ", ".join(WORKLOADS) + ")")
    for name, rounds in workloads:
        if name not in WORKLOADS:
            raise LocalmapError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")
        if rounds < 1:
            raise LocalmapError(f"workload {name}: rounds must be >= 1, not {rounds}")
    return ",".join(f"{n}:{r}:{i}" for i, (n, r) in enumerate(workloads))


def qemu_command(image: Path, initrd: Path, cpus: int, append: str, plugin: Path | None,
                 out: Path | None, memory: str = "2G", extra: list[str] | None = None) -> list[str]:
    cmd = [QEMU, "-M", "virt,gic-version=3", "-cpu", "max", "-smp", str(cpus), "-m", memory,
           "-accel", "tcg,thread=single", "-nographic", "-no-reboot", "-net", "none",
           "-kernel", str(image), "-initrd", str(initrd), "-append", append]
    if plugin is not None:
        cmd += ["-plugin", f"{plugin},out={out}"]
    return cmd + (extra or [])


_LMWORK = re.compile(r"LMWORK (\S+) ops=(\d+)")


def run_profile(kernel: ProfiledKernel, workloads: list[tuple[str, int]], cpus: int = 2, *,
                instrumented: bool = True, timeout: float = 1800.0,
                progress: Progress | None = None, qemu_extra: list[str] | None = None) -> ProfileRun:
    """Boot ``kernel``, run ``workloads`` (name, rounds) in order, return their counts.

    ``instrumented=False`` boots the same guest without the plugin (for the slowdown figure);
    its counts are empty. ``qemu_extra`` adds QEMU options (e.g. ``-d exec`` for a cross-check).
    """
    from localmap.lab import tcgplugin

    if shutil.which(QEMU) is None:
        raise LocalmapError(f"{QEMU} not found: apt-get install qemu-system-arm")
    if cpus < 1:
        raise LocalmapError("need at least one CPU")
    spec = _spec(workloads)
    prog = as_progress(progress)
    prog.start("building the plugin and the workload program (cached)")
    plugin = tcgplugin.build_plugin(prog) if instrumented else None
    initrd_bytes = initramfs(workloads)
    work = Path(tempfile.mkdtemp(dir=_cache(), prefix="run-"))
    initrd = work / "initrd.gz"
    initrd.write_bytes(initrd_bytes)
    out = work / "counts.txt"
    append = f"console=ttyAMA0 nokaslr no_hash_pointers lmwork={spec}"
    cmd = qemu_command(kernel.image, initrd, cpus, append, plugin, out, extra=qemu_extra)
    prog.start(f"booting {kernel.label} on {cpus} CPUs" + (" with the counting plugin" if plugin else ""),
               len(workloads))
    t0 = time.monotonic()
    boot = None
    ops: list[tuple[str, int]] = []
    lines: list[str] = []
    with qemu_running(cmd, timeout, cwd=work) as (proc, timed_out):
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "LMPROFILE-START" in line and boot is None:
                boot = time.monotonic() - t0
                prog.update(0, description=f"booted in {boot:.1f} s; running {workloads[0][0]}")
            m = _LMWORK.search(line)
            if m:
                ops.append((m.group(1), int(m.group(2))))
                nxt = f"; running {workloads[len(ops)][0]}" if len(ops) < len(workloads) else ""
                prog.update(len(ops), description=f"{m.group(1)} done ({m.group(2)} ops){nxt}")
            if "LMPROFILE-FAIL" in line:
                prog.update(description=line.strip())
        proc.wait()
    seconds = time.monotonic() - t0
    console = "".join(lines)
    (work / "console.log").write_text(console)
    if timed_out.is_set() and "LMPROFILE-DONE" not in console:
        raise LocalmapError(f"QEMU timed out after {timeout:.0f} s (console in {work / 'console.log'})")
    if "LMPROFILE-DONE" not in console:
        tail = [ln.strip() for ln in lines if ln.strip()][-1:] or ["no output"]
        raise LocalmapError(f"the guest did not finish the workloads ({tail[0][:160]}); "
                            f"console in {work / 'console.log'}")
    if [n for n, _o in ops] != [n for n, _r in workloads]:
        done = {n for n, _o in ops}
        missing = [n for n, _r in workloads if n not in done] or [n for n, _r in workloads]
        raise LocalmapError(f"workloads failed in the guest: {', '.join(missing)} "
                            f"(console in {work / 'console.log'})")
    keys = _keys(workloads)
    run = ProfileRun(kernel=kernel, cpus=cpus, workloads={}, boot_seconds=boot or 0.0,
                     seconds=seconds, instrumented=plugin is not None, console=str(work / "console.log"))
    if plugin is None:
        for i, (name, rounds) in enumerate(workloads):
            run.workloads[keys[i]] = WorkloadCounts(name, rounds, ops[i][1], 0, 0,
                                                    op=WORKLOADS[name][1], talk=WORKLOADS[name][2])
        _done(work, run)
        return run
    snaps = tcgplugin.parse_output(out.read_text())
    by_marker = {s["marker"]: s for s in snaps}
    for i, (name, rounds) in enumerate(workloads):
        b, e = by_marker.get(2 * i), by_marker.get(2 * i + 1)
        if b is None or e is None:
            raise LocalmapError(f"the plugin saw no markers for {name} (output {out})")
        sites = {a: c - b["sites"].get(a, 0) for a, c in e["sites"].items() if c - b["sites"].get(a, 0)}
        blocks = {k: c - b["blocks"].get(k, 0) for k, c in e["blocks"].items() if c - b["blocks"].get(k, 0)}
        run.workloads[keys[i]] = WorkloadCounts(name, rounds, ops[i][1], e["kernel_insns"] - b["kernel_insns"],
                                                e["user_insns"] - b["user_insns"], sites, blocks,
                                                op=WORKLOADS[name][1], talk=WORKLOADS[name][2])
    last = by_marker.get(-1)
    if last is not None:
        run.totals = dict(last["sites"])
        run.totals_blocks = dict(last["blocks"])
        run.total_kernel_instructions = last["kernel_insns"]
    _done(work, run)
    return run


def _done(work: Path, run: ProfileRun) -> None:
    """A finished run keeps only its console (as ``last-console.log``); failed runs keep all."""
    last = _cache() / "last-console.log"
    os.replace(work / "console.log", last)
    run.console = str(last)
    shutil.rmtree(work, ignore_errors=True)


def _keys(workloads: list[tuple[str, int]]) -> list[str]:
    """Result keys: the workload's name, ``name#2``, ``name#3`` ... when it runs again."""
    seen: dict[str, int] = {}
    out = []
    for name, _r in workloads:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def cross_check(kernel: ProfiledKernel, workloads: list[tuple[str, int]], addr: int,
                function: tuple[int, int], cpus: int = 1, timeout: float = 1800.0,
                progress: Progress | None = None) -> dict:
    """Count executions of the instruction at ``addr`` two ways in one boot.

    1. the plugin's whole-run counter for ``addr``;
    2. QEMU's own execution log (``-d exec,nochain``, filtered to ``function`` = [start, end)):
       every entry into a translation block prints a ``Trace`` line with the block's guest start
       address, and a block abandoned before its first instruction (an interrupt was pending)
       prints ``Stopped execution of TB chain before ... [pc]``. Executions of ``addr`` = entries
       minus stops of the blocks that contain it. Which blocks contain it (start + length) comes
       from the plugin's block table of the same run; the check refuses when a start address was
       translated with lengths that do and do not reach ``addr``.

    Returns {"plugin": n, "exec_log": n, "blocks": [...], "run": ProfileRun}."""
    work = Path(tempfile.mkdtemp(dir=_cache(), prefix="dexec-"))
    log = work / "exec.log"
    lo, hi = function
    run = run_profile(kernel, workloads, cpus, timeout=timeout, progress=progress,
                      qemu_extra=["-d", "exec,nochain", "-dfilter", f"{lo:#x}..{hi - 1:#x}",
                                  "-D", str(log)])
    starts: dict[int, set[bool]] = {}
    for (start, n), cnt in run.totals_blocks.items():
        if lo <= start < hi and cnt:
            starts.setdefault(start, set()).add(start <= addr < start + 4 * n)
    mixed = [s for s, v in starts.items() if len(v) > 1]
    if mixed:
        raise LocalmapError(f"block(s) at {', '.join(hex(s) for s in mixed)} were translated with "
                            f"lengths that do and do not reach {addr:#x}: no exact second count")
    covering = {s for s, v in starts.items() if True in v}
    trace = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
    stopped = re.compile(r"^Stopped execution of TB chain before \S+ \[([0-9a-f]+)\]")
    entries = stops = 0
    with open(log, errors="replace") as fh:
        for line in fh:
            m = trace.match(line)
            if m and int(m.group(1), 16) in covering:
                entries += 1
                continue
            m = stopped.match(line)
            if m and int(m.group(1), 16) in covering:
                stops += 1
    shutil.rmtree(work, ignore_errors=True)
    return {"plugin": run.totals.get(addr, 0), "exec_log": entries - stops, "entries": entries,
            "stops": stops, "blocks": sorted(hex(s) for s in covering), "run": run}


def lab_kernel(flavour: str, patches: list[Path] | None = None, build: bool = True,
               progress: Progress | None = None) -> ProfiledKernel:
    """A lab-built kernel of ``flavour`` from the cache, built first when ``build``."""
    from localmap.lab import kernel as kb

    found = kb.find_cached(flavour, patches)
    if found is None:
        if not build:
            raise LocalmapError(f"no cached lab kernel of flavour {flavour!r}: build it with "
                                f"'localmap lab kernel --flavour {flavour}'")
        found = kb.build_kernel(flavour, patches, progress=progress)
    return ProfiledKernel(image=found.image, label=f"lab {found.version}-{flavour} ({found.key})",
                          vmlinux=found.vmlinux, system_map=found.system_map, config=found.config,
                          preempt_model=flavour)


def resolve(kernel: str, *, build: bool = True, system_map: str | None = None,
            config: str | None = None, progress: Progress | None = None) -> ProfiledKernel:
    """``kernel``: a lab flavour (``dynamic``, ``voluntary``, ``full``, ``rt``: built or from the
    cache), ``debian:arm64`` / ``debian:rt-arm64`` (Debian's image; System.map from its -dbg
    package), a lab build directory, or an arm64 ``Image`` (with ``system_map``) or ``vmlinux``."""
    from localmap.lab import kernel as kb

    if kernel in kb.FLAVOURS:
        return lab_kernel(kernel, build=build, progress=progress)
    if kernel.startswith("debian:"):
        from localmap import debian

        flavour = kernel.split(":", 1)[1]
        image, _stub = debian.debian_kernel(flavour)
        cfgs = sorted(image.parent.glob("config-*"))
        return ProfiledKernel(image=image, label=f"Debian {image.name.removeprefix('vmlinuz-')}",
                              system_map=Path(system_map) if system_map else debian.debian_system_map(flavour),
                              config=cfgs[0] if cfgs else None)
    p = Path(kernel)
    if p.is_dir() and (p / "build.json").is_file():
        return ProfiledKernel(image=p / "Image", label=f"lab {p.name}", vmlinux=p / "vmlinux",
                              system_map=p / "System.map", config=p / "config")
    if not p.is_file():
        raise LocalmapError("no such kernel (a flavour, debian:FLAVOUR, a lab build folder, an Image)", p)
    head = p.read_bytes()[:64]
    if head[:4] == b"\x7fELF":
        raise LocalmapError("give the Image to boot, and its vmlinux's build folder or --system-map", p)
    if system_map is None:
        raise LocalmapError("an Image needs --system-map (or a /proc/kallsyms dump) for the site analysis", p)
    return ProfiledKernel(image=p, label=p.name, system_map=Path(system_map),
                          config=Path(config) if config else None)
