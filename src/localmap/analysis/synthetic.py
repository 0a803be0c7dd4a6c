"""Synthetic percpu workloads: a bundle as a kernel with N CPUs would have written it.

What it models: a machine of ``nr_cpus`` possible CPUs whose percpu allocator is the model
(:class:`localmap.mm.percpu.Percpu`), driven by a workload shaped like the real captures in
``shared/data/bundles`` (sizes, alignments, gfp flags and call sites taken from the histogram of
``s1_612_4k_smp4``'s trace): boot-time long-lived allocations, memcg creation as the kernel's
11-allocation burst (``percpu_ref_init``, ``cgroup_rstat_init``, ``psi_cgroup_alloc``,
``mem_cgroup_css_alloc`` ...), memcg removal whose frees arrive later in a kworker (the css is
freed after an RCU grace period), fork+exec churn (``mm_init`` + ``__percpu_counter_init_many``
pairs), occasional atomic allocations (``GFP_NOWAIT``/``GFP_ATOMIC``, BPF-map-like, short lived)
and module loads that use the reserved chunk. The balance work runs in a kworker once the task
that scheduled it lets the CPU go (the next operation is another task's) or when the next
non-atomic allocation needs the allocator mutex, and before each phase's ``meminfo``. Every
event is written as the kernel prints it to the tracefs ``trace`` file (header with
``entries-in-buffer/entries-written``, ``%p`` pointers as 16 hex digits, ``ptr = base_addr +
off - pcpu_base_addr + __per_cpu_start``, ``bytes_alloc = size * nr_cpus + size / 4 * 8`` as
``pcpu_obj_full_size`` computes it with kmem accounting on).
The bundle also has the dmesg first-chunk line, ``cpus``, a minimal ``config`` and
``meminfo.<phase>`` files, so ``localmap replay`` accepts it.

Deliberate differences from a real kernel:

- tracing covers everything from the first dynamic allocation (a real trace misses the earliest
  boot allocations), and no events are lost or printed out of order (no racing CPUs);
- chunk virtual addresses go top-down from ``VMALLOC_END`` into the highest free slot of one
  chunk span (``pcpu_get_vm_areas`` without other vmalloc users, freed areas reusable at once as
  if the lazy vmap purge had run);
- timestamps, tasks and pids are plausible, not measured; the memory is not touched.

Deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from localmap.errors import LocalmapError
from localmap.mm.percpu import (PCPU_MIN_ALLOC_SIZE, Percpu, PcpuAllocError, PcpuChunk,
                                first_chunk_alloc_info)

# The captured kernel (6.12.117+deb12-arm64): static percpu size, __per_cpu_start, and the
# address shapes of its chunks (s1: embed, linear map at 52-bit VA; s2: page, vmalloc).
STATIC_SIZE = 101464
PER_CPU_START = 0xFFFF800081F52000
VMALLOC_END = 0xFFFFC1FFBF800000
EMBED_TOP = 0xFFF0000100000000 - (10 << 20)   # first chunk allocated near the top of 4G RAM
PAGE_BASE = 0xFFFF800082B31000                 # vm_area_register_early, after the image

# (call_site, size, align, gfp) as printed in s1_612_4k_smp4
MEMCG_BURST = (
    ("percpu_ref_init+0x34/0x128", 8, 8, "GFP_KERNEL"),
    ("cgroup_rstat_init+0xa8/0xc0", 144, 8, "GFP_KERNEL"),
    ("psi_cgroup_alloc+0x50/0xc8", 128, 64, "GFP_KERNEL"),
    ("percpu_ref_init+0x34/0x128", 8, 8, "GFP_KERNEL"),
    ("mem_cgroup_css_alloc+0x110/0x608", 1088, 64, "GFP_KERNEL_ACCOUNT"),
    ("mem_cgroup_css_alloc+0x350/0x608", 496, 8, "GFP_KERNEL_ACCOUNT"),
    ("__percpu_counter_init_many+0x38/0x158", 4, 4, "GFP_KERNEL"),
    ("percpu_ref_init+0x34/0x128", 8, 8, "GFP_KERNEL"),
    ("percpu_ref_init+0x34/0x128", 8, 8, "GFP_KERNEL"),
    ("perf_cgroup_css_alloc+0x48/0x80", 32, 8, "GFP_KERNEL"),
    ("percpu_ref_init+0x34/0x128", 8, 8, "GFP_KERNEL"),
)
MM_PAIR = (
    ("mm_init+0x15c/0x2f8", 16, 8, "GFP_KERNEL"),
    ("__percpu_counter_init_many+0x38/0x158", 16, 4, "GFP_KERNEL_ACCOUNT"),
)
# the long-lived tail of s1 (count, call_site, size, align, gfp)
BOOT_TAIL = (
    (114, "do_kmem_cache_create+0x290/0x540", 32, 16, "GFP_KERNEL"),
    (81, "__percpu_init_rwsem+0x30/0x90", 4, 4, "GFP_KERNEL"),
    (40, "alloc_workqueue+0x334/0x6f8", 8, 8, "GFP_KERNEL"),
    (32, "alloc_vfsmnt+0xa8/0x1c0", 8, 4, "GFP_KERNEL"),
    (17, "init_desc+0x54/0x1f8", 4, 4, "GFP_KERNEL"),
    (13, "dma_channel_table_init+0x84/0x198", 8, 8, "GFP_KERNEL"),
    (8, "perf_pmu_register+0xd8/0x400", 240, 8, "GFP_KERNEL"),
    (8, "perf_pmu_register+0x50/0x400", 4, 4, "GFP_KERNEL"),
    (5, "init_srcu_struct_fields+0x2b0/0x308", 384, 64, "GFP_KERNEL"),
    (4, "smpcfd_prepare_cpu+0x90/0xe8", 32, 32, "GFP_KERNEL"),
    (16, "build_sched_domains+0xe8/0x1220", 8, 8, "GFP_KERNEL"),
    (2, "setup_zone_pageset+0x58/0xd8", 256, 64, "GFP_KERNEL"),
    (2, "setup_zone_pageset+0x40/0xd8", 64, 8, "GFP_KERNEL"),
    (2, "neigh_table_init+0xbc/0x298", 96, 8, "GFP_KERNEL"),
    (2, "ipv6_add_dev+0x13c/0x4e0", 304, 8, "GFP_KERNEL_ACCOUNT"),
    (2, "bioset_init+0x1b8/0x2c8", 24, 8, "GFP_KERNEL"),
    (1, "sve_setup+0x174/0x208", 8736, 16, "GFP_KERNEL"),
    (1, "sock_inuse_init_net+0x30/0x58", 260, 4, "GFP_KERNEL"),
    (1, "ipv4_mib_init_net+0xa4/0x210", 1056, 8, "GFP_KERNEL"),
    (1, "ip_rt_init+0x104/0x280", 4096, 4, "GFP_KERNEL"),
    (1, "gro_cells_init+0x38/0x130", 424, 8, "GFP_KERNEL"),
    (1, "crash_notes_memory_init+0x28/0x68", 424, 512, "GFP_KERNEL"),
    (1, "bpf_mem_alloc_init+0x54/0x358", 2464, 8, "GFP_KERNEL"),
    (1, "bpf_mem_alloc_init+0x198/0x358", 224, 8, "GFP_KERNEL"),
)
ATOMIC_KINDS = (
    ("bpf_map_alloc_percpu+0x60/0x108", 8, 8, "GFP_NOWAIT|__GFP_ACCOUNT"),
    ("bpf_map_alloc_percpu+0x60/0x108", 16, 8, "GFP_NOWAIT|__GFP_ACCOUNT"),
    ("bpf_map_alloc_percpu+0x60/0x108", 48, 8, "GFP_NOWAIT|__GFP_ACCOUNT"),
    ("blkg_alloc+0x9c/0x290", 160, 8, "GFP_NOWAIT"),
    ("__alloc_percpu_gfp_atomic_user+0x1c/0x30", 32, 8, "GFP_ATOMIC"),
)
MODULE_KINDS = ((64, 8), (128, 64), (200, 8), (512, 64), (1024, 64))

# share of the events each phase gets, and the meminfo file written at its end
PHASES = (("boot", 0.03), ("memcg", 0.40), ("memcg_del", 0.17), ("fork", 0.40))


@dataclass
class SyntheticBundle:
    """What :func:`make_synthetic_bundle` wrote."""

    path: Path
    nr_cpus: int
    page_size: int
    mode: str
    seed: int
    nr_events: int
    counts: dict = field(default_factory=dict)
    dmesg_line: str = ""
    pcpu_base_addr: int = 0
    per_cpu_start: int = PER_CPU_START
    meminfo: list = field(default_factory=list)


class _Writer:
    """Formats events the way the tracefs ``trace`` file prints them."""

    def __init__(self, nr_cpus: int):
        self.lines: list[str] = []
        self.nr_cpus = nr_cpus
        self.ts_us = 1_000_000   # microseconds since boot; tracing starts at 1 s
        self.counts = {"alloc": 0, "free": 0, "alloc_fail": 0, "create_chunk": 0,
                       "destroy_chunk": 0, "atomic": 0, "reserved": 0}

    @property
    def nr(self) -> int:
        return len(self.lines)

    def _prefix(self, task: str, pid: int, cpu: int, flags: str) -> str:
        s, us = divmod(self.ts_us, 1_000_000)
        return f"{task:>16}-{pid:<7} [{cpu:03d}] {flags} {s:5d}.{us:06d}: "

    def alloc(self, t, call_site, reserved, atomic, size, align, base, off, ptr, gfp):
        bytes_alloc = size * self.nr_cpus + size // PCPU_MIN_ALLOC_SIZE * 8
        self.lines.append(
            self._prefix(*t, ".....") + f"percpu_alloc_percpu: call_site={call_site} "
            f"reserved={int(reserved)} is_atomic={int(atomic)} size={size} align={align} "
            f"base_addr={base:016x} off={off} ptr={ptr:016x} bytes_alloc={bytes_alloc} "
            f"gfp_flags={gfp}\n")
        self.counts["alloc"] += 1
        self.counts["atomic"] += atomic
        self.counts["reserved"] += reserved

    def fail(self, t, reserved, atomic, size, align):
        self.lines.append(self._prefix(*t, ".....") + f"percpu_alloc_percpu_fail: "
                          f"reserved={int(reserved)} is_atomic={int(atomic)} size={size} "
                          f"align={align}\n")
        self.counts["alloc_fail"] += 1

    def free(self, t, base, off, ptr):
        self.lines.append(self._prefix(*t, "d....") +
                          f"percpu_free_percpu: base_addr={base:016x} off={off} ptr={ptr:016x}\n")
        self.counts["free"] += 1

    def chunk(self, t, created: bool, base):
        name = "percpu_create_chunk" if created else "percpu_destroy_chunk"
        self.lines.append(self._prefix(*t, ".....") + f"{name}: base_addr={base:016x}\n")
        self.counts["create_chunk" if created else "destroy_chunk"] += 1

    def header(self) -> str:
        n = self.nr
        return (
            "# tracer: nop\n#\n"
            f"# entries-in-buffer/entries-written: {n}/{n}   #P:{self.nr_cpus}\n#\n"
            "#                                _-----=> irqs-off/BH-disabled\n"
            "#                               / _----=> need-resched\n"
            "#                              | / _---=> hardirq/softirq\n"
            "#                              || / _--=> preempt-depth\n"
            "#                              ||| / _-=> migrate-disable\n"
            "#                              |||| /     delay\n"
            "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
            "#              | |         |   |||||     |         |\n")


class _VmSlots:
    """Chunk placement: the top-most free slot of one chunk span below VMALLOC_END."""

    def __init__(self, span: int, align: int):
        self.top = VMALLOC_END & ~(align - 1)
        self.step = -(-span // align) * align
        self.used: set[int] = set()

    def __call__(self, p: Percpu) -> int:
        k = 0
        while k in self.used:
            k += 1
        self.used.add(k)
        return self.top - (k + 1) * self.step

    def release(self, base: int) -> None:
        self.used.discard((self.top - base) // self.step - 1)


class _Listener:
    def __init__(self, gen: "_Generator"):
        self.gen = gen

    def chunk_created(self, chunk: PcpuChunk) -> None:
        self.gen.w.chunk(self.gen.ctx, True, chunk.base_addr)

    def chunk_destroyed(self, chunk: PcpuChunk) -> None:
        self.gen.vm.release(chunk.base_addr)
        self.gen.w.chunk(self.gen.ctx, False, chunk.base_addr)

    def pages_populated(self, *a) -> None:
        pass

    def pages_depopulated(self, *a) -> None:
        pass

    def tlb_flushed(self, *a) -> None:
        pass


class _Generator:
    def __init__(self, nr_cpus: int, nr_events: int, seed: int, page_size: int, mode: str,
                 teardown: str = "oldest"):
        self.rng = random.Random(seed)
        self.teardown = teardown
        self.nr_cpus = nr_cpus
        self.nr_events = nr_events
        self.ai = first_chunk_alloc_info(mode, STATIC_SIZE, nr_cpus, page_size)
        if mode == "embed":
            base = (EMBED_TOP - nr_cpus * self.ai.unit_size) & ~(page_size - 1)
        else:
            base = PAGE_BASE & ~(page_size - 1)
        self.vm = _VmSlots(self.ai.chunk_span, max(self.ai.atom_size, page_size))
        self.w = _Writer(nr_cpus)
        self.ctx: tuple[str, int, int] = ("swapper/0", 1, 0)
        self.p = Percpu(self.ai, mode=mode, base_addr=base, per_cpu_start=PER_CPU_START,
                        vm_areas=self.vm, listener=_Listener(self))
        self.next_pid = 100
        # live objects
        self.memcgs: list[list[int]] = []     # ptrs of each live memcg
        self.mms: list[tuple[tuple, list[int]]] = []
        self.misc: list[int] = []             # boot-time, never freed
        self.misc_dyn: list[int] = []         # kmem caches, workqueues... made and destroyed
        self.modules: list[list[int]] = []
        self.deferred: list[tuple[int, int, tuple]] = []   # (due event count, ptr, ctx)
        self.pending_task: tuple | None = None     # the task that scheduled the balance work
        self.meminfo: list[tuple[str, int]] = []

    # -- low level --
    def tick(self, lo: int = 2, hi: int = 60) -> None:
        self.w.ts_us += self.rng.randint(lo, hi)

    def new_task(self, comm: str) -> tuple[str, int, int]:
        self.next_pid += 1
        if self.next_pid > 4_000_000:
            self.next_pid = 300
        return (comm, self.next_pid, self.rng.randrange(self.nr_cpus))

    def kworker(self, cpu: int) -> tuple[str, int, int]:
        return (f"kworker/{cpu}:1", 20 + 2 * (cpu % 4096), cpu)

    def done(self) -> bool:
        return self.w.nr >= self.nr_events

    def alloc(self, t, call_site, size, align, gfp, atomic=False, reserved=False) -> int | None:
        self.before(t, not atomic)
        self.ctx = t
        self.tick()
        p = self.p
        try:
            ptr = p.alloc(size, align, reserved=reserved, atomic=atomic)
        except PcpuAllocError:
            self.w.fail(t, reserved, atomic, size, align)
            self.after(t)
            return None
        addr = p.ptr_to_addr(ptr)
        chunk = p.reserved_chunk if reserved else p.chunk_of(addr)
        self.w.alloc(t, call_site, reserved, atomic, size, align, chunk.base_addr,
                     addr - chunk.base_addr, ptr, gfp)
        self.after(t)
        return ptr

    def free(self, t, ptr: int) -> None:
        self.before(t, False)
        self.ctx = t
        self.tick()
        p = self.p
        addr = p.ptr_to_addr(ptr)
        chunk = p.chunk_of(addr)
        off = addr - chunk.base_addr
        p.free_in_chunk(chunk, off)
        self.w.free(t, chunk.base_addr, off, ptr)
        self.after(t)

    # the balance work as the kernel runs it: scheduled (pending), it waits for the scheduling
    # task to let the CPU go (its next operation is another task's) or for the mutex (the
    # next non-atomic allocation), then runs in that CPU's kworker
    def before(self, t, needs_mutex: bool) -> None:
        if self.p.balance_pending and (needs_mutex or t[1] != self.pending_task[1]):
            self.balance()

    def after(self, t) -> None:
        if self.p.balance_pending and self.pending_task is None:
            self.pending_task = t

    def balance(self) -> None:
        if self.p.balance_pending:
            self.ctx = self.kworker(self.pending_task[2] if self.pending_task else 0)
            self.tick(20, 200)
            self.p.balance()
        self.pending_task = None

    def run_deferred(self) -> None:
        n = self.w.nr
        while self.deferred and self.deferred[0][0] <= n and not self.done():
            _, ptr, t = self.deferred.pop(0)
            self.free(t, ptr)

    # -- workload actions --
    def act_mm(self, comm: str = "sh") -> None:
        """fork+exec: a new mm's two allocations; the oldest/random mm exits."""
        t = self.new_task(comm)
        ptrs = [self.alloc(t, *a) for a in MM_PAIR]
        self.mms.append((t, [x for x in ptrs if x is not None]))
        target = 64 + self.nr_cpus // 4
        while len(self.mms) > target and not self.done():
            i = self.rng.randrange(len(self.mms) // 2)    # the older half exits
            t2, lst = self.mms.pop(i)
            for ptr in lst:
                if self.done():
                    break
                self.free(t2, ptr)

    def act_memcg_create(self) -> None:
        t = self.new_task("mkdir")
        ptrs = []
        for a in MEMCG_BURST:
            if self.done():
                break
            ptr = self.alloc(t, *a)
            if ptr is not None:
                ptrs.append(ptr)
        self.memcgs.append(ptrs)

    def act_memcg_delete(self, grouped: bool = False) -> None:
        """rmdir of a memcg. ``grouped``: cgroups made together are removed together, the
        oldest eighth (teardown "oldest", which empties whole chunks as in s1's deletion phase)
        or the newest quarter (teardown "newest"); otherwise any live memcg."""
        if not self.memcgs:
            return
        n = len(self.memcgs)
        if not grouped:
            i = self.rng.randrange(n)
        elif self.teardown == "oldest":
            i = self.rng.randrange(max(1, n // 8))
        else:
            i = n - 1 - self.rng.randrange(max(1, n // 4))
        ptrs = self.memcgs.pop(i)
        # css_free_rwork_fn: after a grace period, in a kworker, subsystem by subsystem
        t = self.kworker(self.rng.randrange(self.nr_cpus))
        order = list(ptrs)
        self.rng.shuffle(order)
        due = self.w.nr + self.rng.randint(4, 120)
        for ptr in order:
            self.deferred.append((due, ptr, t))
        self.deferred.sort(key=lambda d: d[0])

    def act_misc(self, pool=None) -> None:
        if pool is None:
            pool = self.boot_pool
        cs, size, align, gfp = self.rng.choice(pool)
        t = self.new_task("modprobe" if cs.startswith("do_kmem") else "kthreadd")
        ptr = self.alloc(t, cs, size, align, gfp)
        if ptr is not None:
            self.misc_dyn.append(ptr)
        if len(self.misc_dyn) > 100 + self.nr_cpus // 8 and not self.done():
            self.free(t, self.misc_dyn.pop(self.rng.randrange(len(self.misc_dyn))))

    def act_atomic(self) -> None:
        cs, size, align, gfp = self.rng.choice(ATOMIC_KINDS)
        t = self.new_task("bpf_prog")
        ptr = self.alloc(t, cs, size, align, gfp, atomic=True)
        if ptr is not None:
            self.deferred.append((self.w.nr + self.rng.randint(1, 400), ptr, t))
            self.deferred.sort(key=lambda d: d[0])

    def act_module(self) -> None:
        if len(self.modules) >= 3 or (self.modules and self.rng.random() < 0.5):
            if self.modules:
                t = self.new_task("rmmod")
                for ptr in self.modules.pop(self.rng.randrange(len(self.modules))):
                    if self.done():
                        break
                    self.free(t, ptr)
            return
        size, align = self.rng.choice(MODULE_KINDS)
        t = self.new_task("modprobe")
        ptr = self.alloc(t, "load_module+0x1a4c/0x2230", size, align, "GFP_KERNEL",
                         reserved=True)
        if ptr is not None:
            self.modules.append([ptr])

    # -- phases --
    def run(self, progress: Callable[[int], None] | None = None) -> None:
        self.boot_pool = [(cs, s, a, g) for n, cs, s, a, g in BOOT_TAIL for _ in range(n)]
        rng = self.rng
        memcg_cap = max(64, min(2000, self.nr_events // 400))
        start = 0
        next_report = 0
        for pi, (phase, share) in enumerate(PHASES):
            end = self.nr_events if pi == len(PHASES) - 1 else start + int(self.nr_events * share)
            boot_list = list(self.boot_pool)
            while self.w.nr < end and not self.done():
                self.run_deferred()
                if self.w.nr >= end or self.done():
                    break
                r = rng.random()
                if r < 0.004:
                    self.act_atomic()
                elif r < 0.006:
                    self.act_module()
                elif phase == "boot":
                    if boot_list and r < 0.6:
                        cs, s, a, g = boot_list.pop(rng.randrange(len(boot_list)))
                        t = ("swapper/0", 1, 0)
                        ptr = self.alloc(t, cs, s, a, g)
                        if ptr is not None:
                            self.misc.append(ptr)
                    else:
                        self.act_mm("init")
                elif phase == "memcg":
                    if r < 0.55:
                        if len(self.memcgs) < memcg_cap or r < 0.30:
                            self.act_memcg_create()
                        else:
                            self.act_memcg_delete()
                    elif r < 0.58:
                        self.act_misc()
                    else:
                        self.act_mm()
                elif phase == "memcg_del":
                    if r < 0.55 and len(self.memcgs) > memcg_cap // 10:
                        self.act_memcg_delete(grouped=r < 0.45)
                    elif r < 0.65:
                        self.act_memcg_create()
                    elif r < 0.67:
                        self.act_misc()
                    else:
                        self.act_mm()
                else:  # fork (and a steady background of memcg churn)
                    if r < 0.10:
                        self.act_memcg_create()
                    elif r < 0.20:
                        self.act_memcg_delete()
                    elif r < 0.22:
                        self.act_misc()
                    else:
                        self.act_mm()
                if progress is not None and self.w.nr >= next_report:
                    progress(self.w.nr)
                    next_report = self.w.nr + 16384
            self.balance()            # (the work runs long before /proc/meminfo is read)
            self.meminfo.append((phase, self.p.populated_bytes))
            start = self.w.nr


def _dmesg_line(ai, mode: str, page_size: int) -> str:
    if mode == "embed":
        size_sum = ai.static_size + ai.reserved_size + ai.dyn_size
        return (f"percpu: Embedded {size_sum // page_size} pages/cpu s{ai.static_size} "
                f"r{ai.reserved_size} d{ai.dyn_size} u{ai.unit_size}")
    return (f"percpu: {ai.unit_size // page_size} {page_size // 1024}K pages/cpu "
            f"s{ai.static_size} r{ai.reserved_size} d{ai.dyn_size}")


_PAGE_CONFIG = {4096: "CONFIG_ARM64_4K_PAGES", 16384: "CONFIG_ARM64_16K_PAGES",
                65536: "CONFIG_ARM64_64K_PAGES"}


def _config_text(nr_cpus: int, page_size: int) -> str:
    va_bits = 52 if page_size != 16384 else 48
    return "\n".join([
        "# minimal arm64 config written by localmap's synthetic workload generator",
        f"{_PAGE_CONFIG[page_size]}=y",
        f"CONFIG_ARM64_VA_BITS={va_bits}",
        f"CONFIG_NR_CPUS={max(nr_cpus, 512)}",
        "CONFIG_SMP=y", "CONFIG_MODULES=y", "CONFIG_MEMCG=y", "CONFIG_PREEMPT_VOLUNTARY=y",
        "CONFIG_NEED_PER_CPU_EMBED_FIRST_CHUNK=y", "CONFIG_NEED_PER_CPU_PAGE_FIRST_CHUNK=y",
        "# CONFIG_RANDOM_KMALLOC_CACHES is not set",
        "# CONFIG_MEM_ALLOC_PROFILING is not set", ""])


def _meminfo_text(percpu_bytes: int) -> str:
    return ("MemTotal:        4009900 kB\nMemFree:         3900000 kB\n"
            f"Percpu:          {percpu_bytes // 1024:7d} kB\n")


def make_synthetic_bundle(out_dir: Path | str, nr_cpus: int = 512, nr_events: int = 10_000,
                          seed: int = 0, page_size: int = 4096, mode: str = "embed", *,
                          compress: str | None = None, teardown: str = "oldest",
                          progress: Callable[[int], None] | None = None) -> SyntheticBundle:
    """Write a replayable bundle of about ``nr_events`` percpu events to ``out_dir``.

    ``mode`` is the first-chunk mode (``embed`` or ``page``); ``compress`` None writes a plain
    ``trace``, ``"gz"`` writes ``trace.gz``. ``teardown`` says which memcgs the deletion
    phase removes in groups: ``"oldest"`` or ``"newest"``. The event count is exact unless the balance work
    that the last operation scheduled adds a chunk event or two after it.
    """
    if nr_cpus < 1:
        raise LocalmapError("a machine needs at least one CPU")
    if nr_events < 100:
        raise LocalmapError("ask for at least 100 events")
    if mode not in ("embed", "page"):
        raise LocalmapError(f"unknown first-chunk mode {mode!r} (expected embed or page)")
    if page_size not in _PAGE_CONFIG:
        raise LocalmapError(f"unknown page size {page_size} (expected 4096, 16384 or 65536)")
    if teardown not in ("oldest", "newest"):
        raise LocalmapError(f"unknown teardown order {teardown!r} (expected oldest or newest)")
    if compress not in (None, "gz"):
        raise LocalmapError(f"unknown compression {compress!r} (expected None or 'gz')")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = _Generator(nr_cpus, nr_events, seed, page_size, mode, teardown)
    gen.run(progress)
    w = gen.w
    tname = "trace.gz" if compress == "gz" else "trace"
    for stale in ("trace", "trace.gz", "trace.xz"):
        if stale != tname and (out / stale).exists():
            (out / stale).unlink()
    if compress == "gz":
        fh = gzip.GzipFile(out / tname, "wb", compresslevel=1, mtime=0)
    else:
        fh = open(out / tname, "wb")
    with fh:
        fh.write(w.header().encode())
        buf = []
        for line in w.lines:
            buf.append(line)
            if len(buf) >= 65536:
                fh.write("".join(buf).encode())
                buf = []
        fh.write("".join(buf).encode())
    ai = gen.ai
    line = _dmesg_line(ai, mode, page_size)
    (out / "dmesg").write_text(
        "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\n"
        f"[    0.000000] {line}\n"
        "[    0.000000] Kernel command line: console=ttyAMA0 no_hash_pointers nokaslr "
        f"trace_event=percpu:*{' percpu_alloc=page' if mode == 'page' else ''}\n")
    cpus = f"0-{nr_cpus - 1}" if nr_cpus > 1 else "0"
    (out / "cpus").write_text(f"possible {cpus}\nonline {cpus}\n")
    (out / "config").write_text(_config_text(nr_cpus, page_size))
    for phase, val in gen.meminfo:
        (out / f"meminfo.{phase}").write_text(_meminfo_text(val))
    (out / "SOURCE").write_text(
        f"synthetic: localmap.analysis.synthetic.make_synthetic_bundle(nr_cpus={nr_cpus}, "
        f"nr_events={nr_events}, seed={seed}, page_size={page_size}, mode={mode!r}, "
        f"teardown={teardown!r})\n")
    return SyntheticBundle(out, nr_cpus, page_size, mode, seed, w.nr, dict(w.counts), line,
                           gen.p.base_addr, PER_CPU_START, list(gen.meminfo))
