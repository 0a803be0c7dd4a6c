"""The design machine: per-CPU kernel page tables with a percpu local mapping (DESIGN.md), and
the baseline machine (today's arm64: one shared kernel table, offset register) with the same API.

What it models:
* a no-embed first chunk and every dynamic chunk placed top-down in the global window with
  ``pcpu_get_vm_areas``; each chunk's local slice at ``base_addr + DELTA``;
* CPU 0 on swapper's root; every other online CPU on its own copy of the tables from the root
  down to the split level, whose local-window entries point at tables private to that CPU;
* every kernel page-table change outside the local window is made in swapper's tables; a change
  to a table at or above the split level is synced to every CPU's copy (counted);
* populate maps a page in the global mapping (every possible CPU's unit) and in each online
  CPU's local mapping; depopulate unmaps both and invalidates by VA (broadcast);
* CPU online builds the root copy (inside a per-CPU KPTI block ``{tramp, reserved, root}``) and
  the private tables; offline frees them; CnP is off for TTBR1 on every CPU while per-CPU
  tables exist (Arm ARM: CnP=1 on PEs of one Inner Shareable domain whose tables differ is
  CONSTRAINED UNPREDICTABLE, SMT siblings or not; DESIGN.md item 10);
* ``per_cpu_ptr()`` and ``this_cpu_*()`` run the sequences of ``localmap.arch.arm64.thiscpu``
  through the MMU model of a chosen CPU;
* invariants I1-I5, checked after every step in checked mode; a violation raises
  :class:`InvariantViolation` naming the CPU, VA, expected and actual physical page.

Deliberate differences from the kernel: chunks have one group (``nr_units`` consecutive units,
CPU ``c`` at ``c * unit_size``) unless the caller passes unit offsets; no linear map, kernel image
or modules are materialised (vmalloc areas stand for "other kernel mappings"); a root smaller than
a page is still given a frame in the model but accounted at PGD_SIZE (kmem_cache object) when
KPTI blocks are off; TLBs have unlimited capacity. ``faults`` switches on deliberately broken
variants (``skip_sync``, ``skip_tlbi``, ``forget_cpu``, ``keep_cnp``) for the tests that prove
the checks catch them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from localmap.arch.arm64 import thiscpu
from localmap.arch.arm64.mmu import Mmu, MmuFault
from localmap.arch.arm64.pgtable import (
    Geometry,
    PageTable,
    TableRegistry,
    desc_addr,
    desc_valid,
    iter_leaves,
    iter_tables,
    make_desc,
    walk,
)
from localmap.design.layout import DesignLayout, design_layout
from localmap.errors import LocalmapError
from localmap.mm.page_alloc import FrameAllocator
from localmap.mm.vmalloc import VmapAllocator, VmapArea, clear_pte, set_pte
from localmap.units import MASK64

PER_CPU_START = 0xFFFF_8000_8200_0000  # stands for __per_cpu_start (a link-time constant)
FAULTS = frozenset({"skip_sync", "skip_tlbi", "forget_cpu", "keep_cnp"})


class InvariantViolation(LocalmapError):
    def __init__(self, inv: str, detail: str, cpu: int | None = None, va: int | None = None,
                 expected: int | None = None, actual: int | None = None):
        def h(x: int | None) -> str:
            return "none" if x is None else f"{x:#x}"

        msg = f"{inv} violated: {detail}"
        if cpu is not None or va is not None:
            msg += f" (CPU {cpu}, VA {h(va)}, expected PA {h(expected)}, actual PA {h(actual)})"
        super().__init__(msg)
        self.inv, self.cpu, self.va, self.expected, self.actual = inv, cpu, va, expected, actual


@dataclass(eq=False)
class Chunk:
    key: Any
    base: int  # global base_addr
    nr_pages: int
    areas: list[VmapArea]
    is_first: bool = False
    populated: list[bool] = field(default_factory=list)
    frames: dict[tuple[int, int], int] = field(default_factory=dict)  # (cpu, page) -> PA
    local_base: int = 0  # where this chunk's local slice is mapped (design machine)


@dataclass
class Accounting:
    """Operation counts: entries written and TLB invalidations per operation kind."""

    ops: Counter = field(default_factory=Counter)  # how many times each operation ran
    entries: Counter = field(default_factory=Counter)  # (op, "global"|"local"|"sync"|"copy")
    tlbi: Counter = field(default_factory=Counter)  # (op, "global"|"local")
    local_va_peak: int = 0
    extra_peak: int = 0

    def as_dict(self) -> dict[str, Any]:
        per_op: dict[str, dict[str, int]] = defaultdict(dict)
        for op, n in self.ops.items():
            per_op[op]["count"] = n
        for (op, kind), n in self.entries.items():
            per_op[op][f"entries_{kind}"] = n
        for (op, kind), n in self.tlbi.items():
            per_op[op][f"tlbi_{kind}"] = n
        for op, d in per_op.items():
            n = d.get("count", 0)
            if n:
                d["entries_per_op"] = round(sum(v for k, v in d.items() if k.startswith("entries_")) / n, 2)
                d["tlbi_per_op"] = round(sum(v for k, v in d.items() if k.startswith("tlbi_")) / n, 2)
        return {k: dict(sorted(v.items())) for k, v in sorted(per_op.items())}


class _Env(thiscpu.ThisCpuEnv):
    """thiscpu hooks over a machine's MMU for one CPU, run to completion (no preemption)."""

    def __init__(self, machine: "BaseMachine", cpu: int):
        self.m = machine
        self._cpu = cpu
        self._monitor: int | None = None
        self.preempt = 0

    def cpu(self) -> int:
        return self._cpu

    def cpu_offset(self) -> int:
        return self.m.per_cpu_offset(self._cpu) & MASK64

    def translate(self, va: int, write: bool) -> int:
        return self.m.mmu.translate(self._cpu, va)

    def load(self, pa: int) -> int:
        return self.m.frames.load(pa, 8)

    def store(self, pa: int, value: int) -> None:
        self.m.frames.store(pa, 8, value)

    def preempt_count_add(self, delta: int) -> None:
        self.preempt += delta

    def irq_save(self) -> None:
        pass

    def irq_restore(self) -> None:
        pass

    def monitor_arm(self, pa: int) -> None:
        self._monitor = pa

    def monitor_check(self, pa: int) -> bool:
        ok = self._monitor == pa
        self._monitor = None
        return ok

    def pcpu_mark(self, reg: int) -> None:  # the fix-up design: nothing migrates here
        pass

    def pcpu_unmark(self) -> None:
        pass


class BaseMachine:
    """State and API shared by the design and the baseline machine."""

    design = False

    def __init__(
        self,
        geom: Geometry,
        nr_cpus: int,
        unit_size: int,
        *,
        online: Iterable[int] | None = None,
        vabits_actual: int | None = None,
        window_bytes: int | None = None,
        unit_offsets: list[int] | None = None,
        threads_per_core: int = 1,
        cnp: bool = True,
        kpti: bool = True,
        checked: bool = False,
        map_global: bool = True,
        faults: Iterable[str] = (),
    ):
        if nr_cpus < 1:
            raise LocalmapError(f"need at least 1 CPU, got {nr_cpus}")
        if unit_size <= 0 or unit_size % geom.page_size:
            raise LocalmapError(f"unit size {unit_size} is not a positive multiple of the page size {geom.page_size}")
        self.faults = frozenset(faults)
        if self.faults - FAULTS:
            raise LocalmapError(f"unknown fault(s) {sorted(self.faults - FAULTS)}")
        self.layout: DesignLayout = design_layout(geom, vabits_actual, window_bytes)
        self.geom = self.layout.geom
        self.nr_cpus = nr_cpus
        self.unit_size = unit_size
        self.unit_pages = unit_size // geom.page_size
        self.unit_offsets = unit_offsets or [c * unit_size for c in range(nr_cpus)]
        if len(self.unit_offsets) != nr_cpus:
            raise LocalmapError("unit_offsets must give one offset per CPU")
        self.chunk_span = max(self.unit_offsets) + unit_size
        self.checked = checked
        self.map_global = map_global
        self.kpti = kpti
        self.cnp_requested = cnp
        self.page = geom.page_size
        self.frames = FrameAllocator(self.page)
        self.extra_bytes_now = 0  # extra page-table bytes (root copies + copied levels + private)
        self.registry = TableRegistry()
        self.mmu = Mmu(self.geom, self.registry, self.frames, nr_cpus, threads_per_core)
        self.acct = Accounting()
        k = self.layout.kernel
        self.vmap = VmapAllocator(k.vmalloc_start, k.vmalloc_end, self.page)
        self.chunks: dict[Any, Chunk] = {}
        self.first_chunk: Chunk | None = None
        self.vm_areas: dict[int, tuple[VmapArea, list[int]]] = {}
        self.online: set[int] = set()
        self._op = "boot"
        # swapper: KPTI arrangement {tramp, reserved, swapper} in the image
        self.swapper = self._new_root("swapper")
        self._boot()
        for cpu in sorted(set(range(nr_cpus) if online is None else online)):
            self.cpu_online(cpu)
        if 0 not in self.online:
            raise LocalmapError("CPU 0 must be online (it runs on swapper's tables)")

    # --- tables --------------------------------------------------------------------------
    def _new_root(self, owner: str) -> PageTable:
        g = self.geom
        if self.kpti:
            base = self.frames.alloc_contig(3, kind=f"pgtable:{owner}")
            pa = base + 2 * self.page  # {tramp, reserved, root}: root = tramp + 2 pages
            nbytes = self.page
        else:
            pa = self.frames.alloc(kind=f"pgtable:{owner}")
            nbytes = g.root_alloc_bytes
        t = PageTable(g.root_level, pa, nbytes, owner)
        if owner != "swapper":
            self.extra_bytes_now += g.root_alloc_bytes
        return self.registry.add(t)

    def _new_table(self, level: int, owner: str) -> PageTable:
        pa = self.frames.alloc(kind=f"pgtable:{owner}")
        if owner != "swapper":
            self.extra_bytes_now += self.page
        return self.registry.add(PageTable(level, pa, self.page, owner))

    def _free_table(self, t: PageTable) -> None:
        self.registry.remove(t)
        if t.owner != "swapper":
            self.extra_bytes_now -= self.geom.root_alloc_bytes if t.level == self.geom.root_level else self.page
        if t.level == self.geom.root_level and self.kpti:
            for i in range(3):
                self.frames.free(t.pa - 2 * self.page + i * self.page)
        else:
            self.frames.free(t.pa)

    def _swapper_alloc(self, level: int) -> PageTable:
        return self._new_table(level, "swapper")

    def _boot(self) -> None:
        self.mmu.set_ttbr1(0, self.swapper.pa)

    # --- hooks the subclasses fill --------------------------------------------------------
    def _swapper_written(self, written: list[tuple[PageTable, int]]) -> None:
        pass

    # --- kernel mappings outside the windows (vmalloc) -----------------------------------
    def vmalloc(self, size: int) -> int:
        self._op = "vmalloc"
        self.acct.ops["vmalloc"] += 1
        area = self.vmap.alloc(size, caller="vmalloc")
        pas = []
        written: list[tuple[PageTable, int]] = []
        for va in range(area.start, area.end, self.page):
            pa = self.frames.alloc("vmalloc")
            pas.append(pa)
            set_pte(self.geom, self.registry, self.swapper, va, pa, self._swapper_alloc, written)
        self.acct.entries[("vmalloc", "global")] += len(written)
        self._swapper_written(written)
        self.vm_areas[area.start] = (area, pas)
        if self.checked:
            self.check_kernel_vas(range(area.start, area.end, self.page))
        return area.start

    def vfree(self, addr: int) -> None:
        self._op = "vfree"
        self.acct.ops["vfree"] += 1
        if addr not in self.vm_areas:
            raise LocalmapError(f"vfree of {addr:#x}, which vmalloc did not return")
        area, pas = self.vm_areas.pop(addr)
        written: list[tuple[PageTable, int]] = []
        for va in range(area.start, area.end, self.page):
            clear_pte(self.geom, self.registry, self.swapper, va, written)
            self.mmu.tlb.invalidate_va(va)
            self.acct.tlbi[("vfree", "global")] += 1
        self.acct.entries[("vfree", "global")] += len(written)
        self.vmap.free(addr)
        for pa in pas:
            self.frames.free(pa)
        if self.checked:
            self.check_kernel_vas(range(area.start, area.end, self.page))
            self.check_no_stale(list(range(area.start, area.end, self.page)), pas)

    # --- chunks ----------------------------------------------------------------------------
    def _place_chunk(self, key: Any, first: bool) -> Chunk:
        areas = self._chunk_areas()
        base = areas[0].start - min(self.unit_offsets)
        c = Chunk(key, base, self.unit_pages, areas, first, [False] * self.unit_pages,
                  local_base=base + self.layout.delta)
        self.chunks[key] = c
        if first:
            self.first_chunk = c
        return c

    def _chunk_areas(self) -> list[VmapArea]:
        return self.vmap.pcpu_get_vm_areas([min(self.unit_offsets)], [self.chunk_span - min(self.unit_offsets)],
                                           self.page)

    def create_chunk(self, key: Any = None, first: bool = False) -> Chunk:
        self._op = "chunk_create"
        self.acct.ops["chunk_create"] += 1
        if key is None:
            key = object()
        if key in self.chunks:
            raise LocalmapError("chunk created twice")
        if first and self.first_chunk is not None:
            raise LocalmapError("there is already a first chunk")
        c = self._place_chunk(key, first or self.first_chunk is None)
        self._after_create(c)
        self._update_peaks()
        if self.checked:
            self.check_chunk(c)
        return c

    def _after_create(self, c: Chunk) -> None:
        pass

    def destroy_chunk(self, c: Chunk) -> None:
        if c.is_first:
            raise LocalmapError("the first chunk is never destroyed")
        populated = [i for i, p in enumerate(c.populated) if p]
        # runs of populated pages
        for s, e in _runs(populated):
            self.depopulate(c, s, e)
        self._op = "chunk_destroy"
        self.acct.ops["chunk_destroy"] += 1
        self._free_chunk_areas(c)
        del self.chunks[c.key]
        if self.checked:
            self.check_invariants_light()

    def _free_chunk_areas(self, c: Chunk) -> None:
        """Give the chunk's virtual areas back (today's kernel: to vmalloc)."""
        for a in c.areas:
            self.vmap.free(a.start)

    def global_va(self, c: Chunk, cpu: int, page: int) -> int:
        return c.base + self.unit_offsets[cpu] + page * self.page

    def _frame(self, c: Chunk, cpu: int, page: int) -> int:
        pa = c.frames.get((cpu, page))
        if pa is None:
            pa = c.frames[(cpu, page)] = self.frames.alloc("percpu")
        return pa

    def populate(self, c: Chunk, start: int, end: int) -> None:
        self._op = "populate"
        self.acct.ops["populate"] += 1
        if not (0 <= start < end <= c.nr_pages):
            raise LocalmapError(f"populate: bad page range {start}-{end} of a {c.nr_pages}-page chunk")
        pages = [i for i in range(start, end) if not c.populated[i]]
        written: list[tuple[PageTable, int]] = []
        for i in pages:
            for cpu in range(self.nr_cpus) if self.map_global else ():
                pa = self._frame(c, cpu, i)
                if self.map_global:
                    set_pte(self.geom, self.registry, self.swapper, self.global_va(c, cpu, i), pa,
                            self._swapper_alloc, written)
            c.populated[i] = True
        self.acct.entries[("populate", "global")] += len(written)
        self._swapper_written(written)
        self._populate_local(c, pages)
        self._update_peaks()
        if self.checked:
            self.check_pages(c, pages)

    def _populate_local(self, c: Chunk, pages: list[int]) -> None:
        pass

    def depopulate(self, c: Chunk, start: int, end: int) -> None:
        self._op = "depopulate"
        self.acct.ops["depopulate"] += 1
        if not (0 <= start < end <= c.nr_pages):
            raise LocalmapError(f"depopulate: bad page range {start}-{end} of a {c.nr_pages}-page chunk")
        pages = [i for i in range(start, end) if c.populated[i]]
        self._depopulate_local(c, pages)
        written: list[tuple[PageTable, int]] = []
        freed_vas: list[int] = []
        freed_pas: list[int] = []
        for i in pages:
            for cpu in range(self.nr_cpus):
                va = self.global_va(c, cpu, i)
                if self.map_global:
                    clear_pte(self.geom, self.registry, self.swapper, va, written)
                    self.mmu.tlb.invalidate_va(va)
                    self.acct.tlbi[("depopulate", "global")] += 1
                freed_vas.append(va)
                pa = c.frames.pop((cpu, i), None)
                if pa is not None:
                    freed_pas.append(pa)
                    self.frames.free(pa)
            c.populated[i] = False
        self.acct.entries[("depopulate", "global")] += len(written)
        if self.checked:
            freed_vas += [self.local_va(c, i) for i in pages] if self.design else []
            self.check_no_stale(freed_vas, freed_pas)
            self.check_pages(c, pages)

    def _depopulate_local(self, c: Chunk, pages: list[int]) -> None:
        pass

    def local_va(self, c: Chunk, page: int) -> int:
        return c.local_base + page * self.page

    # --- listener protocol (drives the machine from the percpu allocator or a replay) ------
    def _chunk_for(self, chunk: Any) -> Chunk:
        key = id(chunk)
        c = self.chunks.get(key)
        if c is None:
            c = self.create_chunk(key, first=bool(getattr(chunk, "is_first", False)))
            c.key_obj = chunk  # type: ignore[attr-defined]  # keep the id valid
        return c

    def chunk_created(self, chunk: Any) -> None:
        self._chunk_for(chunk)

    def chunk_destroyed(self, chunk: Any) -> None:
        c = self.chunks.get(id(chunk))
        if c is not None:
            self.destroy_chunk(c)

    def pages_populated(self, chunk: Any, page_start: int, page_end: int) -> None:
        self.populate(self._chunk_for(chunk), page_start, page_end)

    def pages_depopulated(self, chunk: Any, page_start: int, page_end: int) -> None:
        self.depopulate(self._chunk_for(chunk), page_start, page_end)

    # --- pointers and this_cpu -----------------------------------------------------------
    @property
    def pcpu_base_addr(self) -> int:
        if self.first_chunk is None:
            raise LocalmapError("no first chunk yet")
        return self.first_chunk.base

    def ptr_of(self, c: Chunk, off: int) -> int:
        """The percpu pointer for offset ``off`` in chunk ``c`` (what alloc_percpu returns)."""
        return (c.base + off - self.pcpu_base_addr + PER_CPU_START) & MASK64

    def per_cpu_offset(self, cpu: int) -> int:
        return (self.pcpu_base_addr - PER_CPU_START + self.unit_offsets[cpu]) & MASK64

    def per_cpu_ptr(self, ptr: int, cpu: int) -> int:
        if not 0 <= cpu < self.nr_cpus:
            raise LocalmapError(f"no CPU {cpu}")
        return (ptr + self.per_cpu_offset(cpu)) & MASK64

    this_cpu_form = "baseline-lse"

    def this_cpu_delta(self) -> int:
        return 0

    def this_cpu(self, cpu: int, op: str, ptr: int, val: int = 0, old: int = 0, form: str | None = None) -> int:
        """Run ``this_cpu_<op>(ptr, ...)`` on ``cpu`` through the MMU model; returns what the
        operation returns (the old value for RMW ops, the new one for add_return, the value read)."""
        if cpu not in self.online:
            raise LocalmapError(f"CPU {cpu} is offline")
        seq = thiscpu.sequence(form or self.this_cpu_form, op, self.this_cpu_delta() & MASK64)
        env = _Env(self, cpu)
        regs = thiscpu.run(seq, env, thiscpu.initial_regs(ptr=ptr, val=val, old=old))
        self.acct.ops[f"this_cpu_{op}"] += 1
        return regs[thiscpu.X_RET]

    def this_cpu_read(self, cpu: int, ptr: int) -> int:
        return self.this_cpu(cpu, "read", ptr)

    def this_cpu_write(self, cpu: int, ptr: int, val: int) -> None:
        self.this_cpu(cpu, "write", ptr, val)

    def this_cpu_add(self, cpu: int, ptr: int, val: int) -> None:
        self.this_cpu(cpu, "add", ptr, val)

    def this_cpu_inc(self, cpu: int, ptr: int) -> None:
        self.this_cpu(cpu, "inc", ptr)

    def this_cpu_dec(self, cpu: int, ptr: int) -> None:
        self.this_cpu(cpu, "dec", ptr)

    def this_cpu_and(self, cpu: int, ptr: int, val: int) -> None:
        self.this_cpu(cpu, "and", ptr, val)

    def this_cpu_or(self, cpu: int, ptr: int, val: int) -> None:
        self.this_cpu(cpu, "or", ptr, val)

    def this_cpu_xchg(self, cpu: int, ptr: int, val: int) -> int:
        return self.this_cpu(cpu, "xchg", ptr, val)

    def this_cpu_cmpxchg(self, cpu: int, ptr: int, old: int, new: int) -> int:
        return self.this_cpu(cpu, "cmpxchg", ptr, new, old)

    def this_cpu_add_return(self, cpu: int, ptr: int, val: int) -> int:
        return self.this_cpu(cpu, "add_return", ptr, val)

    def read_via(self, reader_cpu: int, va: int) -> int:
        """A plain 64-bit load of ``va`` executed on ``reader_cpu``."""
        return self.mmu.load(reader_cpu, va, 8)

    # --- CPUs -----------------------------------------------------------------------------
    def cpu_online(self, cpu: int) -> None:
        if not 0 <= cpu < self.nr_cpus:
            raise LocalmapError(f"no CPU {cpu} (machine has {self.nr_cpus})")
        if cpu in self.online:
            raise LocalmapError(f"CPU {cpu} is already online")
        self._op = "cpu_online"
        self.acct.ops["cpu_online"] += 1
        self._online(cpu)
        self.online.add(cpu)
        self._update_cnp()
        self._update_peaks()
        if self.checked and self.first_chunk is not None:
            self.check_cpu(cpu)

    def _online(self, cpu: int) -> None:
        if cpu:
            self.mmu.set_ttbr1(cpu, self.swapper.pa)

    def cpu_offline(self, cpu: int) -> None:
        if cpu not in self.online:
            raise LocalmapError(f"CPU {cpu} is not online")
        if cpu == 0:
            raise LocalmapError("CPU 0 runs on swapper's tables and stays online in this model")
        self._op = "cpu_offline"
        self.acct.ops["cpu_offline"] += 1
        self.online.discard(cpu)
        self._offline(cpu)
        self.mmu.set_ttbr1(cpu, None)
        self._update_cnp()
        if self.checked:
            self.check_invariants_light()

    def _offline(self, cpu: int) -> None:
        pass

    def _update_cnp(self) -> None:
        for cpu in self.online:
            self.mmu.tlb.set_cnp(cpu, self.cnp_requested and self._cnp_allowed())

    def _cnp_allowed(self) -> bool:
        return True

    # --- accounting ----------------------------------------------------------------------
    def local_va_bytes(self) -> int:
        return 0

    def extra_pgtable(self) -> dict[str, Any]:
        return {"root_copy_bytes": 0, "copied_level_bytes": 0, "private_tables": {}, "private_bytes": 0,
                "kpti_block_bytes": 0, "total": 0}

    def _update_peaks(self) -> None:
        self.acct.local_va_peak = max(self.acct.local_va_peak, self.local_va_bytes())
        self.acct.extra_peak = max(self.acct.extra_peak, self.extra_bytes_now)

    # --- checks (baseline: I2 for per_cpu_ptr only, I3 trivially, I5) ----------------------
    def check_chunk(self, c: Chunk) -> None:
        pass

    def check_pages(self, c: Chunk, pages: Iterable[int]) -> None:
        if not self.map_global:
            return
        for i in pages:
            for cpu in range(self.nr_cpus):
                va = self.global_va(c, cpu, i)
                exp = c.frames.get((cpu, i)) if c.populated[i] else None
                ref = walk(self.geom, self.registry, self.swapper.pa, va)
                if ref != exp:
                    raise InvariantViolation("I2", f"global mapping of chunk page {i}, unit {cpu}",
                                             0, va, exp, ref)
                readers = {0, max(self.online)} | ({cpu} if cpu in self.online else set())
                for reader in sorted(readers):
                    got = self.mmu.peek(reader, va)
                    if got != ref:
                        raise InvariantViolation("I5" if got is not None and ref is None else "I3",
                                                 f"global mapping of chunk page {i}, unit {cpu}, seen from "
                                                 f"CPU {reader}", reader, va, ref, got)

    def check_kernel_vas(self, vas: Iterable[int]) -> None:
        vas = list(vas)
        for va in vas:
            ref = walk(self.geom, self.registry, self.swapper.pa, va)
            for cpu in sorted(self.online):
                got = self.mmu.peek(cpu, va)
                if got != ref:
                    raise InvariantViolation("I3", "kernel VA outside the local window differs between CPUs",
                                             cpu, va, ref, got)

    def check_no_stale(self, vas: list[int], pas: list[int]) -> None:
        freed = set(pas)
        for cpu in sorted(self.online):
            for va in vas:
                got = self.mmu.peek(cpu, va)
                if got is not None and (got - got % self.page) in freed:
                    raise InvariantViolation("I5", "freed page still reachable", cpu, va, None, got)
            for vpage, ppage in self.mmu.tlb.entries(cpu).items():
                if ppage in freed:
                    raise InvariantViolation("I5", "TLB still holds a freed page", cpu, vpage, None, ppage)

    def check_cpu(self, cpu: int) -> None:
        for c in list(self.chunks.values()):
            self.check_pages(c, [i for i, p in enumerate(c.populated) if p])

    def check_invariants_light(self) -> None:
        pass

    def check_all(self) -> None:
        for c in list(self.chunks.values()):
            self.check_chunk(c)
            self.check_pages(c, range(c.nr_pages))
        vas = [va for a, _ in self.vm_areas.values() for va in range(a.start, a.end, self.page)]
        self.check_kernel_vas(vas)
        self.check_tlbs()
        self.check_invariants_light()

    def check_tlbs(self) -> None:
        """Every TLB entry a CPU can hit agrees with that CPU's tables (no stale entry)."""
        for cpu in sorted(self.online):
            for vpage, ppage in self.mmu.tlb.entries(cpu).items():
                now = self.mmu.walk(cpu, vpage)
                if now != ppage:
                    raise InvariantViolation("I5", "TLB entry disagrees with the tables", cpu, vpage, now, ppage)


class BaselineMachine(BaseMachine):
    """Today's kernel: one shared table, ``tpidr_el1`` offset register, no local mapping."""

    design = False
    this_cpu_form = "baseline-lse"


class DesignMachine(BaseMachine):
    """Per-CPU kernel page tables with the percpu local mapping (DESIGN.md)."""

    design = True
    this_cpu_form = "local-lse"

    def __init__(self, *args: Any, **kw: Any):
        self.cpu_roots: dict[int, PageTable] = {}
        self.cpu_path: dict[int, dict[int, PageTable]] = {}
        super().__init__(*args, **kw)

    # --- boot ----------------------------------------------------------------------------
    def _boot(self) -> None:
        lay = self.layout
        # reserve both windows against every other vmalloc user
        self.vmap.reserve(lay.local_window[0], lay.window_bytes, "percpu local window")
        self.vmap.reserve(lay.global_window[0], lay.window_bytes, "percpu global window")
        # chunks take their global mapping from the global window only
        self.window_vmap = VmapAllocator(lay.global_window[0], lay.global_window[1], self.page)
        # swapper's tables from the root down to the split level over the local window
        written: list[tuple[PageTable, int]] = []
        path = {self.geom.root_level: self.swapper}
        t = self.swapper
        for level in range(self.geom.root_level, lay.split_level):
            idx = self.geom.index(lay.local_window[0], level)
            desc = t.entries.get(idx)
            if desc is None:
                child = self._swapper_alloc(level + 1)
                t.entries[idx] = make_desc(child.pa)
                written.append((t, idx))
            else:
                child = self.registry.tables[desc_addr(desc)]
            path[level + 1] = child
            t = child
        self.swapper_path = path
        self.cpu_path[0] = path
        self.cpu_roots[0] = self.swapper
        s = lay.split_level
        e = self.geom.entry_size(s)
        self.window_idx = {self.geom.index(va, s) for va in range(lay.local_window[0], lay.local_window[1], e)}
        self.path_idx = {lvl: self.geom.index(lay.local_window[0], lvl) for lvl in range(self.geom.root_level, s)}
        self.mmu.set_ttbr1(0, self.swapper.pa)

    def _chunk_areas(self) -> list[VmapArea]:
        lo = min(self.unit_offsets)
        return self.window_vmap.pcpu_get_vm_areas([lo], [self.chunk_span - lo], self.page)

    def _free_chunk_areas(self, c: Chunk) -> None:
        """Give the chunk's slot back to the global window's allocator."""
        for a in c.areas:
            self.window_vmap.free(a.start)

    # --- sync --------------------------------------------------------------------------------
    def _is_private_entry(self, level: int, idx: int) -> bool:
        s = self.layout.split_level
        if level == s:
            return idx in self.window_idx
        if level < s:
            return idx == self.path_idx[level]
        return False

    def _swapper_written(self, written: list[tuple[PageTable, int]]) -> None:
        """Propagate every change to a copied table (root .. split level) to all CPU copies."""
        s = self.layout.split_level
        for table, idx in written:
            lvl = table.level
            if lvl > s or self.swapper_path.get(lvl) is not table:
                continue  # below the split: shared, nothing to sync
            if self._is_private_entry(lvl, idx):
                raise InvariantViolation("I4", f"a swapper write at level {lvl} touched the local window")
            if "skip_sync" in self.faults:
                continue
            desc = table.entries.get(idx)
            for cpu, path in self.cpu_path.items():
                if cpu == 0:
                    continue
                copy = path[lvl]
                if desc is None:
                    copy.entries.pop(idx, None)
                else:
                    copy.entries[idx] = desc
                self.acct.entries[(self._op, "sync")] += 1
                self.acct.entries[("sync_total", "sync")] += 1
            self.acct.ops["sync_total"] += 1

    # --- local mapping -------------------------------------------------------------------
    def _private_alloc(self, cpu: int):
        owner = f"cpu{cpu}"

        def alloc(level: int) -> PageTable:
            return self._new_table(level, owner)

        return alloc

    def _map_local(self, cpu: int, c: Chunk, pages: Iterable[int], written: list) -> None:
        root = self.cpu_roots[cpu]
        alloc = self._private_alloc(cpu)
        for i in pages:
            set_pte(self.geom, self.registry, root, self.local_va(c, i), self._frame(c, cpu, i), alloc, written)

    def _populate_local(self, c: Chunk, pages: list[int]) -> None:
        if not pages:
            return
        cpus = sorted(self.online)
        if "forget_cpu" in self.faults and len(cpus) > 1:
            cpus = cpus[:-1]
        written: list = []
        for cpu in cpus:
            self._map_local(cpu, c, pages, written)
        self.acct.entries[("populate", "local")] += len(written)

    def _depopulate_local(self, c: Chunk, pages: list[int]) -> None:
        written: list = []
        for i in pages:
            va = self.local_va(c, i)
            for cpu in sorted(self.online):
                clear_pte(self.geom, self.registry, self.cpu_roots[cpu], va, written)
            if "skip_tlbi" not in self.faults:
                self.mmu.tlb.invalidate_va(va)  # broadcast: every CPU's own entry goes
                self.acct.tlbi[("depopulate", "local")] += 1
        self.acct.entries[("depopulate", "local")] += len(written)

    # --- CPUs ------------------------------------------------------------------------------
    def _online(self, cpu: int) -> None:
        if cpu == 0:
            self.mmu.set_ttbr1(0, self.swapper.pa, cnp=False)
            written: list = []
            for c in self.chunks.values():
                self._map_local(0, c, [i for i, p in enumerate(c.populated) if p], written)
            self.acct.entries[("cpu_online", "local")] += len(written)
            return
        g = self.geom
        s = self.layout.split_level
        owner = f"cpu{cpu}"
        root = self._new_root(owner)
        path = {g.root_level: root}
        copied = 0
        for lvl in range(g.root_level, s + 1):
            src = self.swapper_path[lvl]
            dst = path[lvl]
            for idx, desc in src.entries.items():
                if self._is_private_entry(lvl, idx):
                    continue
                dst.entries[idx] = desc
                copied += 1
            if lvl < s:
                nxt = self._new_table(lvl + 1, owner)
                dst.entries[self.path_idx[lvl]] = make_desc(nxt.pa)
                copied += 1
                path[lvl + 1] = nxt
        self.cpu_roots[cpu] = root
        self.cpu_path[cpu] = path
        written: list = []
        for c in self.chunks.values():
            self._map_local(cpu, c, [i for i, p in enumerate(c.populated) if p], written)
        self.acct.entries[("cpu_online", "copy")] += copied
        self.acct.entries[("cpu_online", "local")] += len(written)
        self.mmu.set_ttbr1(cpu, root.pa)

    def _offline(self, cpu: int) -> None:
        path = self.cpu_path.pop(cpu)
        root = self.cpu_roots.pop(cpu)
        s = self.layout.split_level
        split_table = path[s]
        for idx in self.window_idx:
            desc = split_table.entries.get(idx)
            if desc is not None and desc_valid(desc):
                sub = self.registry.tables[desc_addr(desc)]
                for t in list(iter_tables(self.registry, sub)):
                    self._free_table(t)
        for lvl, t in path.items():
            if t is not root:
                self._free_table(t)
        self._free_table(root)
        # the freed CPU's view of the local window is gone; its TLB is flushed by set_ttbr1

    def _cnp_allowed(self) -> bool:
        if "keep_cnp" in self.faults:
            return True
        # Every CPU's TTBR1 tables differ from every other's (the local window), and CnP
        # promises identical tables to every PE of the Inner Shareable domain with CnP=1, not
        # only to SMT siblings: CnP stays off, with or without SMT.
        return False

    def this_cpu_delta(self) -> int:
        """DELTA_THIS_CPU = local_base - __per_cpu_start: a link-time constant, fixed once the
        first chunk (and so the local base) is placed."""
        if self.first_chunk is None:
            raise LocalmapError("no first chunk yet")
        return self.first_chunk.local_base - PER_CPU_START

    # --- accounting ---------------------------------------------------------------------
    def local_va_bytes(self) -> int:
        return len(self.chunks) * self.unit_size

    def private_tables(self, cpu: int) -> dict[int, int]:
        """Level -> number of tables private to ``cpu`` below the split level (brute force)."""
        counts: Counter[int] = Counter()
        split_table = self.cpu_path[cpu][self.layout.split_level]
        for idx in self.window_idx:
            desc = split_table.entries.get(idx)
            if desc is not None and desc_valid(desc):
                for t in iter_tables(self.registry, self.registry.tables[desc_addr(desc)]):
                    counts[t.level] += 1
        return dict(sorted(counts.items()))

    def extra_pgtable(self) -> dict[str, Any]:
        g = self.geom
        s = self.layout.split_level
        others = [c for c in self.online if c != 0]
        root_copy = len(others) * g.root_alloc_bytes
        copied = len(others) * (s - g.root_level) * self.page
        per_level: Counter[int] = Counter()
        per_cpu: dict[int, dict[int, int]] = {}
        for cpu in sorted(self.online):
            pt = self.private_tables(cpu)
            per_cpu[cpu] = pt
            per_level.update(pt)
        private_bytes = sum(per_level.values()) * self.page
        kpti = len(others) * (3 * self.page - g.root_alloc_bytes) if self.kpti else 0
        return {
            "root_copy_bytes": root_copy,
            "copied_level_bytes": copied,
            "private_tables": dict(sorted(per_level.items())),
            "private_tables_per_cpu": per_cpu,
            "private_bytes": private_bytes,
            "kpti_block_bytes": kpti,
            "total": root_copy + copied + private_bytes,
        }

    def _update_peaks(self) -> None:
        super()._update_peaks()

    # --- checks --------------------------------------------------------------------------
    def check_chunk(self, c: Chunk) -> None:
        """I1 (congruence) and I4 (the chunk's areas stay in the global window)."""
        lay = self.layout
        local_base = self.first_chunk.local_base if self.first_chunk else c.local_base
        laddr = self.local_va(c, 0)
        if laddr - local_base != c.base - self.pcpu_base_addr:
            raise InvariantViolation("I1", f"chunk at {c.base:#x}: local slice at {laddr:#x} is not congruent")
        ptr = self.ptr_of(c, 0)
        if (ptr + self.this_cpu_delta()) & MASK64 != laddr:
            raise InvariantViolation("I1", f"this_cpu address of {ptr:#x} is not the chunk's local slice")
        if not lay.in_local_window(laddr) or not lay.in_local_window(laddr + self.unit_size - 1):
            raise InvariantViolation("I4", f"local slice {laddr:#x} outside the local window")
        for a in c.areas:
            if not (lay.in_global_window(a.start) and lay.in_global_window(a.end - 1)):
                raise InvariantViolation("I4", f"chunk area {a.start:#x} outside the global window")

    def check_pages(self, c: Chunk, pages: Iterable[int]) -> None:
        """I2: the local address on CPU c reaches the same page as per_cpu_ptr(ptr, c)."""
        pages = list(pages)
        super().check_pages(c, pages)
        for i in pages:
            lva = self.local_va(c, i)
            for cpu in sorted(self.online):
                exp = c.frames.get((cpu, i)) if c.populated[i] else None
                got = self.mmu.peek(cpu, lva)
                if got != exp:
                    raise InvariantViolation("I2", f"local mapping of chunk page {i}", cpu, lva, exp, got)

    def check_invariants_light(self) -> None:
        """Structural I3 and I4: copies equal swapper outside the window; window holds only
        local mappings; no vmalloc area overlaps a window."""
        s = self.layout.split_level
        for cpu, path in self.cpu_path.items():
            for lvl, t in path.items() if cpu else ():
                src = self.swapper_path[lvl]
                keys = set(src.entries) | set(t.entries)
                for idx in keys:
                    if self._is_private_entry(lvl, idx):
                        continue
                    if src.entries.get(idx) != t.entries.get(idx):
                        va = self._va_of(lvl, idx)
                        raise InvariantViolation(
                            "I3", f"CPU {cpu}'s level-{lvl} copy differs from swapper at entry {idx}",
                            cpu, va, desc_addr(src.entries.get(idx) or 0) or None,
                            desc_addr(t.entries.get(idx) or 0) or None)
            # window: only local mappings of live chunks, to this CPU's own unit
            split_table = path[s]
            expected = self._expected_local(cpu)
            for idx in self.window_idx:
                desc = split_table.entries.get(idx)
                if desc is None:
                    continue
                sub = self.registry.tables[desc_addr(desc)]
                for va, pa in iter_leaves(self.geom, self.registry, sub, self._va_of(s, idx) + 0):
                    if expected.get(va) != pa:
                        raise InvariantViolation("I4", "unexpected mapping in the local window", cpu, va,
                                                 expected.get(va), pa)
        lo, hi = self.layout.local_window
        glo, ghi = self.layout.global_window
        for a in self.vmap.areas:
            if a.caller.startswith("percpu"):
                continue
            if a.start < hi and a.end > lo or a.start < ghi and a.end > glo:
                raise InvariantViolation("I4", f"vmalloc area {a.start:#x}-{a.end:#x} overlaps a percpu window")

    def _expected_local(self, cpu: int) -> dict[int, int]:
        out = {}
        for c in self.chunks.values():
            for i, p in enumerate(c.populated):
                if p:
                    out[self.local_va(c, i)] = c.frames[(cpu, i)]
        return out

    def _va_of(self, level: int, idx: int) -> int:
        """Lowest VA covered by entry ``idx`` of the table on the local-window path at ``level``."""
        g = self.geom
        span_above = g.entry_size(level - 1) if level > g.root_level else 1 << 64
        base = self.layout.local_window[0] - self.layout.local_window[0] % span_above
        if level == g.root_level:
            base = g.ttbr1_base
        return base + idx * g.entry_size(level)

    def check_all(self) -> None:
        super().check_all()
        for cpu in self.cpu_path:
            if cpu != 0 and self.mmu.ttbr1[cpu] != self.cpu_roots[cpu].pa:
                raise InvariantViolation("I3", f"CPU {cpu}'s TTBR1 is not its own root")
            if self.kpti:
                # KPTI arrangement: tramp and reserved at fixed offsets below every root
                root = self.cpu_roots[cpu].pa
                for off in (1, 2):
                    if not self.frames.is_allocated(root - off * self.page):
                        raise InvariantViolation("KPTI", f"CPU {cpu}: no page {off} below the root")


def _runs(pages: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for p in pages:
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def machine(kind: str, *args: Any, **kw: Any) -> BaseMachine:
    if kind == "design":
        return DesignMachine(*args, **kw)
    if kind == "baseline":
        return BaselineMachine(*args, **kw)
    raise LocalmapError(f"unknown machine {kind!r}: design or baseline")


__all__ = ["BaselineMachine", "DesignMachine", "InvariantViolation", "Chunk", "machine", "MmuFault"]
