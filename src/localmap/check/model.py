"""The abstract machine the checker explores: CPUs, tasks, interrupts, TLBs, page tables.

What it models. A small system running the this_cpu sequences of
:mod:`localmap.arch.arm64.thiscpu` (executed by that module's interpreter, one visible
instruction per step) on one percpu variable (16 bytes: the counted word and a second word) of
a one-page-per-unit chunk:

* CPUs, each with a TTBR1 (which root it walks), a CnP bit, an exclusive monitor (cleared on
  context switch and exception return; any store to the monitored 16 bytes by another PE clears
  it) and an online flag;
* tasks that the scheduler places on any idle online CPU (migration), preempts at any
  instruction boundary when the kernel is preemptible and the task's preempt count is zero and
  interrupts are on, and always at an operation boundary (voluntary schedule). Every task runs
  the scenario's script, or the script of its role;
* interrupts (at most ``irqs_per_cpu`` per CPU) that run the scenario's handler item on the
  interrupted CPU, nested inside whatever that CPU runs;
* page tables at the abstraction level of DESIGN.md sections 4-7: roots (swapper's, and one
  copy per CPU other than 0) whose entries ("split-level entries", 1 GB each here) point at
  tables by identity; tables hold leaf entries; each CPU's local-window entry points at its
  private table. A TLB per PE plus one common store shared by every PE whose TTBR1.CnP is 1
  (Arm ARM: CnP=1 promises identical tables across the Inner Shareable domain, so entries may
  be shared between any such PEs, not only SMT siblings); walk caches (table entries cached by
  the walker, and filled by speculative walks at any time) where a scenario frees tables;
* kernel workers that run the scenario's steps (depopulate, vmalloc + sync, CPU online, resume,
  hot-remove, ...); steps are plain functions of a :class:`Ctx`, written with the scenario;
* for the register fix-up design (the s390 series on arm64): the asynchronous exceptions through
  which a task can be preempted mid-op (``exception_paths``: IRQ and FIQ both end in
  ``preempt_schedule_irq`` on arm64), each recorded with the CPU it was taken on; when the task
  runs again, the exception return of a path in ``fixup_paths`` adds the difference of the two
  CPUs' offsets to the register the task has marked (``pcpu_mark``); the others return with the
  register unchanged.

Properties (the ``property`` of a violation):
``attribution``: a this_cpu update running on CPU c writes CPU c's copy; ``read-consistency``:
every value a this_cpu read returns was, at one instant, the running CPU's copy (all loads of
one read come from one copy, unchanged in between, and the task ran on that CPU at some point
of the read); ``lost-update``: in every quiescent state each copy equals the updates attributed
to it (this_cpu updates to the running CPU, ``per_cpu_ptr(ptr, k)`` updates to CPU k);
``freed-page``: no access to a freed page; ``missing-mapping``: no access through a missing
mapping; ``stale-mapping``: no use of a TLB or walk-cache entry that disagrees with the tables
(reported as attribution when it reaches another CPU's live copy); ``freed-table``: no root or
walk cache a CPU may walk points at a freed table (speculative walks may use it at any time);
``trampoline``: the KPTI trampoline reaches a trampoline table and comes back to the CPU's root.
Remote ``per_cpu_ptr`` accesses are judged by what they are: no attribution, but lost updates.

Deliberate differences from the kernel: one variable, one page per unit; workers do not occupy a
CPU and each of their steps is atomic; a broadcast TLBI completes in one step (``tlbi; dsb
ish``); root entries stand for "split-level entries" (1 GB each here); KPTI exit/entry runs with
interrupts and preemption masked between its first and last instruction. TLB and walk-cache
evictions are not explored by default: every access is judged against both the cached entry and
a fresh walk, so an eviction can only replace a violation by another one or by the same walk
result; ``evictions=True`` explores them (the tests show the verdicts do not change).
"""

from __future__ import annotations

import itertools
import marshal
from dataclasses import dataclass, field, replace
from typing import Callable

from localmap.arch.arm64 import thiscpu as tc
from localmap.errors import LocalmapError

# marshal version 2: no back-references, so equal values always give equal bytes
MARSHAL_VERSION = 2

MAX_CPUS = 8                     # unit pages are numbered 0x10 per generation
MAX_TASKS = 6
MAX_GEN = 4

PAGE = 0x1000
SLOT_SHIFT = 30                  # one "split-level entry" of the model covers 1 GB
G_BASE = 0x1000_0000             # global window (root slot 0): unit k at G_BASE + k*PAGE
G_SLOT = G_BASE >> SLOT_SHIFT
G_VP = G_BASE >> 12
DELTA = tc.DEFAULT_DELTA         # local window = global window + DELTA (root slot 1)
VAR_OFF = 0x40                   # the percpu variable's offset in the unit page (16 bytes)
VAR_WORDS = (VAR_OFF, VAR_OFF + 8)
# The percpu pointer, as the kernel's (relative to __per_cpu_start): no CPU's copy. CPU c's
# offset is (c + 1) pages, so per_cpu_ptr(PTR, c) = G_BASE + c*PAGE + VAR_OFF; the local
# mapping is at PTR + DELTA_THIS_CPU.
PTR = G_BASE - PAGE + VAR_OFF
LOCAL_PAGE = (PTR + DELTA) >> 12
LOCAL_SLOT = (G_BASE + DELTA) >> SLOT_SHIFT
KERNEL_SLOT = 3                  # the kernel image's entry (present at boot)
OBJ_SLOT = 2                     # a root slot that is empty at boot (vmalloc scenarios)
OBJ_VA = (OBJ_SLOT << SLOT_SHIFT) + 0x80
OBJ_PA_PAGE = 0x300
HOT_SLOT = 4                     # hot-plugged memory (linear map) in its own root entry
HOT_VA = (HOT_SLOT << SLOT_SHIFT) + 0x100
HOT_PA_PAGE = 0x400

# table identities
T_GLOBAL = 1                     # swapper's table under the global window entry
T_KERNEL = 2
T_OBJ = 3
T_HOT = 7
T_LOCAL = 0x40                   # + cpu: that CPU's private local-window table

# KPTI physical layout: swapper's {tramp, reserved, swapper} block and per-CPU roots.
TRAMP_OFFSET = 2 * PAGE
SWAPPER_BLOCK = 0x40000
SWAPPER_ROOT = SWAPPER_BLOCK + TRAMP_OFFSET
PERCPU_ROOTS = 0x90000           # per-CPU roots from the page allocator, one page each
BLOCKS = 0xA0000                 # per-CPU {tramp, reserved, root} blocks

DONE = -2
RUNNABLE = -1
NOREAD = ()                      # read-consistency ghost of a task not inside a read


def unit_page(gen: int, cpu: int) -> int:
    """Physical page number of ``cpu``'s unit page in allocation generation ``gen``."""
    return 0x10 + gen * 0x10 + cpu


class Violation(Exception):
    def __init__(self, prop: str, message: str):
        super().__init__(message)
        self.prop = prop
        self.message = message


# ----------------------------------------------------------------------------- scenario data

@dataclass(frozen=True)
class Item:
    """One operation in a task's script (or an interrupt handler).

    ``access``: ``"this_cpu"`` (attribution and read consistency apply), ``"remote"``
    (``per_cpu_ptr(ptr, target)``: the update belongs to CPU ``target``; a negative target counts
    from the last CPU) or ``"plain"`` (any other kernel memory). ``need`` names a flag a worker
    raises (e.g. ``"published"``) before the item may start."""

    form: str
    op: str
    ptr: int = PTR
    val: int = 1
    access: str = "this_cpu"
    target: int | None = None
    need: str | None = None
    masked: bool = False         # interrupts and preemption masked once started (KPTI path)

    def sequence(self) -> tc.OpSeq:
        if self.form == "kpti-exit":
            return tc.kpti_exit_sequence(TRAMP_OFFSET)
        return tc.sequence(self.form, self.op)


@dataclass(frozen=True)
class Step:
    """One atomic step of a kernel worker: ``effect(ctx)`` changes the state, ``guard(ctx)``
    (optional) says when the step may run. ``tag`` names the kind of step for consumers that
    replay schedules elsewhere (the MMU replay understands "unmap", "tlbi", "free",
    "repopulate")."""

    label: str
    effect: Callable | None = None
    guard: Callable | None = None
    tag: str = ""


@dataclass(frozen=True)
class Scenario:
    """One configuration of the abstract machine. Everything a scenario needs is data here:
    the task script (or per-role scripts), the interrupt handler, the architecture switches,
    the kernel workers (tuples of :class:`Step`, or functions of the CPU count returning one)
    and ``setup`` functions applied to the
    initial state (a :class:`Ctx`). ``family``/``on``/``params`` record how it was built from a
    family of :mod:`localmap.check.library` (``without(m)`` rebuilds it with mechanism ``m``
    removed); ``symmetric_cpus`` says which CPUs are interchangeable ("auto": all of them
    when the scenario has no worker, setup, KPTI or remote item; "all"; "non-boot": all but
    CPU 0; "middle": all but the first and the last; "all-but-last"; "none")."""

    name: str
    summary: str
    script: tuple = (Item("local-lse", "add"),)
    roles: tuple | None = None
    irq: Item | None = None
    preemptible: bool = True
    smt: bool = False                 # topology label only: CnP sharing does not depend on it
    cnp: bool = False                 # TTBR1.CnP set on every CPU at start
    monitor_clear: bool = True
    kpti: str | None = None           # None | "naive-root" | "pgtables-block"
    workers: tuple = ()
    setup: tuple = ()
    walk_cache_slots: tuple = ()      # root slots whose table entries the walkers cache
    symmetric_cpus: str = "auto"
    cpus: int = 2
    tasks: int = 2
    irqs_per_cpu: int = 1
    twin: str | None = None           # the scenario that differs by exactly the named mechanism
    mechanism: str = ""
    family: str | None = None
    on: frozenset = frozenset()
    params: tuple = ()
    exception_paths: tuple = ()       # register fix-up design: exceptions that can preempt mid-op
    fixup_paths: tuple = ()           # ... and those whose return fixes the marked register

    def without(self, mechanism: str) -> "Scenario":
        """The same scenario with ``mechanism`` switched off (its family rebuilds it)."""
        from localmap.check.library import FAMILIES

        if self.family is None or mechanism not in self.on:
            raise LocalmapError(f"{self.name}: no mechanism {mechanism!r} to remove")
        fam = FAMILIES[self.family]
        kw = fam.build(self.on - {mechanism}, **dict(self.params))
        return replace(self, name=f"{self.name} without {mechanism}",
                       on=self.on - {mechanism}, twin=None, mechanism="", **kw)


# ----------------------------------------------------------------------------- the state

@dataclass(slots=True)
class World:
    tasks: list          # (role, cpu, item, pc, regs, pcount, irqoff, rd, exc, marker): exc is ()
                         # or (its path fixes up?, CPU it was taken on), marker the register a
                         # fix-up design task has marked (-1: none)
    cpus: list           # (online, irq_pc, irq_regs, irqs_taken, monitor_pa, ttbr1, cnp)
    mem: dict            # pa -> value (variable words only)
    freed: frozenset     # freed physical pages
    ftables: frozenset   # freed tables
    tlb: list            # per CPU, then the common (CnP) store: frozenset of (vp, pa_page, filler)
    wc: list             # walk caches, same layout: frozenset of (slot, table, filler)
    roots: list          # per root (0: swapper, c: CPU c's copy): tuple of (slot, table) or None
    leaves: dict         # (table, va_page) -> pa_page
    wpc: tuple           # per worker: its next step
    wregs: tuple         # per worker: tuple of (name, value)
    flags: frozenset
    attrib: list
    gen: int

    def copy(self) -> "World":
        # roots and leaves are shared (copy-on-write: only worker steps change them, after
        # own_tables()).
        return World(list(self.tasks), list(self.cpus), dict(self.mem), self.freed, self.ftables,
                     list(self.tlb), list(self.wc), self.roots, self.leaves, self.wpc,
                     self.wregs, self.flags, list(self.attrib), self.gen)

    def own_tables(self) -> None:
        self.roots = list(self.roots)
        self.leaves = dict(self.leaves)

    def raw(self) -> tuple:
        """Everything, as plain tuples (tasks in their order): the exact, replayable state."""
        return (tuple(self.tasks), tuple(self.cpus), tuple(sorted(self.mem.items())),
                _sorted(self.freed), _sorted(self.ftables),
                tuple(map(_sorted, self.tlb)), tuple(map(_sorted, self.wc)),
                tuple(self.roots), tuple(sorted(self.leaves.items())), self.wpc, self.wregs,
                _sorted(self.flags), tuple(self.attrib), self.gen)

    @classmethod
    def from_raw(cls, r: tuple) -> "World":
        return cls(list(r[0]), list(r[1]), dict(r[2]), frozenset(r[3]), frozenset(r[4]),
                   [frozenset(t) for t in r[5]], [frozenset(t) for t in r[6]], list(r[7]),
                   dict(r[8]), r[9], r[10], frozenset(r[11]), list(r[12]), r[13])


_SORTED: dict = {}
_VALUE_REGS = tuple(r for r in range(tc.NREGS) if r not in (tc.X_PTR, tc.X_ADDR, tc.X_OFF, tc.X_TMP))


def _sorted(fs: frozenset) -> tuple:
    """``tuple(sorted(fs))``, memoised (the same small sets recur in millions of states)."""
    t = _SORTED.get(fs)
    if t is None:
        if len(_SORTED) > 200_000:
            _SORTED.clear()
        t = _SORTED[fs] = tuple(sorted(fs))
    return t


@dataclass
class StepInfo:
    """What one transition did, for the readable counterexample."""

    actor: str
    action: str
    cpu: int | None = None
    instructions: list = field(default_factory=list)
    accesses: list = field(default_factory=list)  # dicts: va, tlb, pa, page

    def as_dict(self, index: int) -> dict:
        return {"step": index, "actor": self.actor, "action": self.action, "cpu": self.cpu,
                "instructions": self.instructions, "accesses": self.accesses}


class Ctx:
    """What a worker step, guard or setup function sees and may change (one world, one step).

    Reading: ``ncpus``, ``last_cpu``, ``online(c)``, ``running(c)``, ``idle(c)``,
    ``tasks_past(n)``, ``root_entry(r, slot)``, ``reg(name)``, ``flag(name)``, ``locked(name)``.
    Changing: ``set_root_entry(r, slot, table)`` (root 0 is swapper's; None clears),
    ``copy_root(c)`` (CPU c's copy of swapper's root, its local entry to its own table),
    ``map(table, va, pa_page)``, ``unmap(table, va)``, ``tlbi(vas, last_level=True)``
    (broadcast; ``last_level=False`` also drops walk-cache entries of the VAs' slots),
    ``free_pages(pages)``, ``free_table(table)``, ``write(pa, value)``, ``set_reg``,
    ``raise_flag``, ``lock``/``unlock``, ``set_online(c, on)``, ``load_ttbr1(c, root, cnp)``
    (the CPU's TLB and walk cache are invalidated, as the kernel's switch does),
    ``flush_local(c)``, ``new_generation()``, ``note(text)`` (added to the step's trace)."""

    def __init__(self, m: "Machine", w: World, wid: int, info: StepInfo | None):
        self.m, self.w, self.wid, self.info = m, w, wid, info
        self.ncpus = m.ncpus
        self.last_cpu = m.ncpus - 1
        self._owned = False

    # -- reading
    def online(self, c: int) -> bool:
        return self.w.cpus[c][0]

    def running(self, c: int) -> int | None:
        return self.m.running(self.w, c)

    def idle(self, c: int) -> bool:
        return self.m.running(self.w, c) is None and self.w.cpus[c][1] < 0

    def tasks_past(self, item_no: int) -> bool:
        return all(t[2] >= item_no or t[1] == DONE for t in self.w.tasks)

    def root_entry(self, r: int, slot: int):
        return _entry(self.w.roots[r], slot)

    def reg(self, name: str, default=None):
        for k, v in self.w.wregs[self.wid]:
            if k == name:
                return v
        return default

    def flag(self, name: str) -> bool:
        return name in self.w.flags

    def locked(self, name: str) -> bool:
        return any(f.startswith(f"lock:{name}=") for f in self.w.flags)

    # -- changing
    def _own(self) -> None:
        if not self._owned:
            self.w.own_tables()
            self._owned = True

    def note(self, text: str) -> None:
        if self.info is not None:
            self.info.action += f" [{text}]"

    def set_reg(self, name: str, value) -> None:
        regs = dict(self.w.wregs[self.wid])
        regs[name] = value
        wr = list(self.w.wregs)
        wr[self.wid] = tuple(sorted(regs.items()))
        self.w.wregs = tuple(wr)

    def raise_flag(self, name: str) -> None:
        self.w.flags = self.w.flags | {name}

    def lock(self, name: str) -> None:
        if self.locked(name):
            raise RuntimeError(f"lock {name} taken twice (guard the step with ctx.locked)")
        self.raise_flag(f"lock:{name}={self.wid}")

    def unlock(self, name: str) -> None:
        self.w.flags = frozenset(f for f in self.w.flags if not f.startswith(f"lock:{name}="))

    def set_root_entry(self, r: int, slot: int, table: int | None) -> None:
        self._own()
        cur = self.w.roots[r]
        if cur is None:
            raise RuntimeError(f"root {r} does not exist")
        ent = tuple(e for e in cur if e[0] != slot)
        if table is not None:
            ent = tuple(sorted(ent + ((slot, table),)))
        self.w.roots[r] = ent

    def copy_root(self, c: int) -> None:
        self._own()
        self.w.roots[c] = tuple(sorted((s, T_LOCAL + c if s == LOCAL_SLOT else t)
                                       for s, t in self.w.roots[0]))

    def drop_root(self, c: int) -> None:
        self._own()
        self.w.roots[c] = None

    def map(self, table: int, va: int, pa_page: int) -> None:
        self._own()
        self.w.leaves[(table, va >> 12)] = pa_page

    def unmap(self, table: int, va: int) -> None:
        self._own()
        self.w.leaves.pop((table, va >> 12), None)

    def tlbi(self, vas, last_level: bool = True) -> None:
        vps = {va >> 12 for va in vas}
        self.w.tlb = [frozenset(e for e in d if e[0] not in vps) for d in self.w.tlb]
        if not last_level:
            slots = {va >> SLOT_SHIFT for va in vas}
            self.w.wc = [frozenset(e for e in d if e[0] not in slots) for d in self.w.wc]

    def flush_local(self, c: int) -> None:
        w = self.w
        w.tlb[c] = frozenset()
        w.wc[c] = frozenset()
        n = self.m.ncpus
        w.tlb[n] = frozenset(e for e in w.tlb[n] if e[2] != c)
        w.wc[n] = frozenset(e for e in w.wc[n] if e[2] != c)

    def free_pages(self, pages) -> None:
        self.w.freed = self.w.freed | frozenset(pages)

    def free_table(self, table: int) -> None:
        self.w.ftables = self.w.ftables | {table}

    def write(self, pa: int, value: int) -> None:
        self.w.mem[pa] = value

    def set_online(self, c: int, on: bool) -> None:
        cpu = self.w.cpus[c]
        self.w.cpus[c] = (on,) + cpu[1:]

    def load_ttbr1(self, c: int, root: int, cnp: bool = False) -> None:
        """CPU c's TTBR1 <- root ``root`` (0: swapper, c: its own), with CnP as given."""
        cpu = self.w.cpus[c]
        self.w.cpus[c] = cpu[:5] + (self.m.root_pa(root), cnp)
        self.flush_local(c)

    def new_generation(self) -> int:
        self.w.gen += 1
        if self.w.gen >= MAX_GEN:
            raise RuntimeError("too many allocation generations")
        self.w.attrib = [0] * self.m.ncpus
        return self.w.gen


def _entry(entries, slot):
    if entries is None:
        return None
    for s, t in entries:
        if s == slot:
            return t
    return None


# ----------------------------------------------------------------------------- the machine

class Machine:
    """Successor function, properties, state keys and deterministic replay for one scenario."""

    def __init__(self, sc: Scenario, cpus: int | None = None, tasks: int | None = None,
                 evictions: bool = False):
        self.sc = sc
        self.ncpus = sc.cpus if cpus is None else cpus
        self.ntasks = sc.tasks if tasks is None else tasks
        if not 1 <= self.ncpus <= MAX_CPUS:
            raise LocalmapError(f"--cpus must be between 1 and {MAX_CPUS} (got {self.ncpus})")
        if not 1 <= self.ntasks <= MAX_TASKS:
            raise LocalmapError(f"--tasks must be between 1 and {MAX_TASKS} (got {self.ntasks})")
        if self.ncpus < 2 and (sc.workers or sc.setup or sc.kpti or sc.cnp):
            raise LocalmapError(f"scenario {sc.name} needs at least 2 CPUs")
        self.evictions = evictions
        n = self.ncpus
        roles = sc.roles if sc.roles else (sc.script,)
        self.roles = [tuple(self._resolve(it) for it in r) for r in roles]
        self.seqs = [tuple(it.sequence() for it in r) for r in self.roles]
        self.irq = self._resolve(sc.irq) if sc.irq else None
        self.irq_seq = self.irq.sequence() if self.irq else None
        self.wc_slots = frozenset(sc.walk_cache_slots)
        self.workers = tuple(tuple(wk(n) if callable(wk) else wk) for wk in sc.workers)
        self.first_load = {}
        for seq in [s for r in self.seqs for s in r] + ([self.irq_seq] if self.irq_seq else []):
            loads = [i for i, ins in enumerate(seq.insns) if ins.op in tc.LOAD_OPS]
            self.first_load[id(seq)] = loads[0] if loads else -1
        self._root_index = {self.root_pa(c): c for c in range(n)}
        self._maps_cache: dict = {}
        self.cls = self._symmetric_class() if self._renaming_is_unambiguous() else ()
        self.static_tables = not (sc.workers or sc.setup)
        # parts of the state no action can change: left out of keys and encodings
        # (freed, ftables, wc, roots, leaves, wpc, wregs, flags, gen without workers/setup;
        # the walk caches whenever no slot is cached)
        static = {3, 4, 7, 8, 9, 10, 11, 13} if not self.workers else set()
        if not self.wc_slots:
            static.add(6)
        self.static_idx = frozenset(static)
        self._static_raw = self.initial().raw()

    # ------------------------------------------------------------------ layout helpers
    def _resolve(self, it: Item) -> Item:
        if it.access == "remote":
            t = it.target if it.target is not None else 0
            t = t % self.ncpus
            return replace(it, target=t, ptr=G_BASE + t * PAGE + VAR_OFF)
        return it

    def root_pa(self, r: int) -> int:
        if r == 0:
            return SWAPPER_ROOT
        if self.sc.kpti == "pgtables-block":
            return BLOCKS + r * 3 * PAGE + TRAMP_OFFSET
        return PERCPU_ROOTS + r * PAGE

    def root_index(self, pa: int) -> int | None:
        return self._root_index.get(pa)

    def root_name(self, r: int) -> str:
        return "swapper_pg_dir" if r == 0 else f"CPU{r}'s root copy"

    def table_name(self, t: int) -> str:
        if t >= T_LOCAL:
            return f"CPU{t - T_LOCAL}'s private local table"
        return {T_GLOBAL: "global-window table", T_KERNEL: "kernel-image table",
                T_OBJ: "vmalloc table", T_HOT: "hot-plugged memory's table"}.get(t, f"table {t}")

    def table_kind(self, pa: int) -> str:
        if pa == SWAPPER_BLOCK:
            return "tramp_pg_dir"
        if pa == SWAPPER_BLOCK + PAGE:
            return "reserved_pg_dir"
        r = self.root_index(pa)
        if r is not None:
            return f"root of CPU{r}"
        if self.sc.kpti == "pgtables-block" and pa >= BLOCKS:
            c, rr = divmod(pa - BLOCKS, 3 * PAGE)
            if 0 < c < self.ncpus:
                return {0: f"tramp copy of CPU{c}", PAGE: f"reserved copy of CPU{c}"}.get(rr, "?")
        return f"unrelated page {pa:#x}"

    def page_name(self, pa_page: int, w: World) -> str:
        if pa_page == OBJ_PA_PAGE or OBJ_PA_PAGE < pa_page < OBJ_PA_PAGE + 0x10:
            return "vmalloc object page"
        if pa_page == HOT_PA_PAGE:
            return "hot-plugged memory page"
        g, c = divmod(pa_page - 0x10, 0x10)
        state = "freed" if pa_page in w.freed else ("live" if g == w.gen else "old")
        return f"CPU{c}'s unit page (gen {g}, {state})"

    def owner(self, pa_page: int, w: World) -> int | None:
        if not 0x10 <= pa_page < 0x10 + MAX_GEN * 0x10:
            return None
        g, c = divmod(pa_page - 0x10, 0x10)
        if g == w.gen and c < self.ncpus and pa_page not in w.freed:
            return c
        return None

    # ------------------------------------------------------------------ initial state
    def initial(self) -> World:
        n = self.ncpus
        sc = self.sc
        swapper = tuple(sorted(((G_SLOT, T_GLOBAL), (LOCAL_SLOT, T_LOCAL), (KERNEL_SLOT, T_KERNEL))))
        roots = [swapper] + [tuple(sorted((s, T_LOCAL + c if s == LOCAL_SLOT else t)
                                          for s, t in swapper)) for c in range(1, n)]
        leaves = {}
        for c in range(n):
            leaves[(T_GLOBAL, G_VP + c)] = unit_page(0, c)
            leaves[(T_LOCAL + c, LOCAL_PAGE)] = unit_page(0, c)
        mem = {}
        for c in range(n):
            for off in VAR_WORDS:
                mem[unit_page(0, c) * PAGE + off] = 0
        cpus = [(True, -1, (), 0, -1, self.root_pa(c), sc.cnp) for c in range(n)]
        nroles = len(self.roles)
        tasks = [(i % nroles, RUNNABLE, 0, 0, (), 0, False, NOREAD, (), -1) for i in range(self.ntasks)]
        w = World(tasks=tasks, cpus=cpus, mem=mem, freed=frozenset(), ftables=frozenset(),
                  tlb=[frozenset()] * (n + 1), wc=[frozenset()] * (n + 1), roots=roots,
                  leaves=leaves, wpc=(0,) * len(self.workers),
                  wregs=((),) * len(self.workers), flags=frozenset(), attrib=[0] * n, gen=0)
        for fn in sc.setup:
            fn(Ctx(self, w, -1, None))
        return w

    # ------------------------------------------------------------------ translation
    def walk(self, w: World, r: int | None, va: int):
        """A fresh walk from root ``r``: ``(pa_page, why, table)`` (pa_page None: no mapping)."""
        if r is None:
            return None, "TTBR1 holds no kernel root", None
        entries = w.roots[r]
        if entries is None:
            return None, f"{self.root_name(r)} does not exist", None
        slot = va >> SLOT_SHIFT
        t = _entry(entries, slot)
        if t is None:
            return None, f"no entry for slot {slot} in {self.root_name(r)}", None
        pa = w.leaves.get((t, va >> 12))
        if pa is None:
            return None, f"no PTE for {va:#x} in the {self.table_name(t)}", t
        return pa, f"{self.root_name(r)} -> {self.table_name(t)}", t

    # ------------------------------------------------------------------ transitions
    def quiescent(self, w: World) -> bool:
        return all(t[3] == 0 for t in w.tasks) and all(c[1] < 0 for c in w.cpus)

    def check_state(self, w: World) -> None:
        if w.ftables:
            for c in range(self.ncpus):
                if not w.cpus[c][0]:
                    continue
                r = self.root_index(w.cpus[c][5])
                for s, t in (w.roots[r] or ()) if r is not None else ():
                    if t in w.ftables:
                        raise Violation("freed-table", f"CPU{c}'s TTBR1 root ({self.root_name(r)}) "
                                        f"still points at the freed {self.table_name(t)} (slot "
                                        f"{s}): a speculative walk may read the reused page")
                for s, t, f in w.wc[c] | (w.wc[self.ncpus] if w.cpus[c][6] else frozenset()):
                    if t in w.ftables:
                        raise Violation("freed-table", f"CPU{c}'s walk cache still holds slot {s} "
                                        f"-> the freed {self.table_name(t)} (cached by CPU{f})")
        if not self.quiescent(w):
            return
        for c in range(self.ncpus):
            v = w.mem.get(unit_page(w.gen, c) * PAGE + VAR_OFF, 0)
            if v != w.attrib[c]:
                raise Violation("lost-update", f"CPU{c}'s copy holds {v} but {w.attrib[c]} "
                                f"update(s) were attributed to CPU{c}")

    def running(self, w: World, cpu: int) -> int | None:
        for i, t in enumerate(w.tasks):
            if t[1] == cpu:
                return i
        return None

    def item(self, t: tuple) -> Item:
        return self.roles[t[0]][t[2]]

    def blocked(self, w: World, t: tuple) -> bool:
        r = self.roles[t[0]]
        return t[2] < len(r) and r[t[2]].need is not None and r[t[2]].need not in w.flags

    def actions(self, w: World) -> list[tuple]:
        acts = []
        sc = self.sc
        running = {t[1]: i for i, t in enumerate(w.tasks) if t[1] >= 0}
        for c in range(self.ncpus):
            online, irq_pc, _, irqs, _, _, _ = w.cpus[c]
            ti = running.get(c)
            if irq_pc >= 0:
                acts.append(("exec", c))
                continue
            t = None
            if ti is not None:
                t = w.tasks[ti]
                item = self.item(t)
                if not self.blocked(w, t):
                    acts.append(("exec", c))
                masked = item.masked and t[3] > 0
                if t[3] == 0:
                    acts.append(("preempt", c))
                elif sc.preemptible and t[5] == 0 and not t[6] and not masked:
                    if sc.exception_paths:  # preempted on the way out of one of these exceptions
                        acts.extend(("preempt", c, path) for path in sc.exception_paths)
                    else:
                        acts.append(("preempt", c))
            elif online:
                seen = set()
                for i, u in enumerate(w.tasks):
                    if u[1] == RUNNABLE and not self.blocked(w, u) and u not in seen:
                        seen.add(u)  # identical runnable tasks: one representative
                        acts.append(("sched", c, i))
            if online and self.irq is not None and irqs < sc.irqs_per_cpu \
                    and (self.irq.need is None or self.irq.need in w.flags):
                if t is None or not (t[6] or (self.item(t).masked and t[3] > 0)):
                    acts.append(("irq", c))
        for wid, steps in enumerate(self.workers):
            pc = w.wpc[wid]
            if pc < len(steps):
                g = steps[pc].guard
                if g is None or g(Ctx(self, w, wid, None)):
                    acts.append(("worker", wid))
        if self.wc_slots:
            n = self.ncpus
            for c in range(n):
                if not w.cpus[c][0]:
                    continue
                r = self.root_index(w.cpus[c][5])
                view = w.wc[c] | (w.wc[n] if w.cpus[c][6] else frozenset())
                have = {(e[0], e[1]) for e in view}
                for s, t in (w.roots[r] or ()) if r is not None else ():
                    if s in self.wc_slots and (s, t) not in have:
                        acts.append(("walk", c, s))
        if self.evictions:
            for d, entries in enumerate(w.tlb):
                for e in sorted(entries):
                    acts.append(("evict", d, e))
            for d, entries in enumerate(w.wc):
                for e in sorted(entries):
                    acts.append(("evict-walk", d, e))
        return acts

    def apply(self, w: World, act: tuple) -> tuple[World, StepInfo]:
        """Successor of ``w`` under ``act``; raises :class:`Violation` (with ``.info``)."""
        n = w.copy()
        kind = act[0]
        if kind == "sched":
            _, c, i = act
            t = n.tasks[i]
            rd = t[7]
            if rd and rd[0] == c and rd[1]:
                rd = (rd[0], True, True)  # inside a read, back on the copy's CPU
            regs, what = t[4], f"scheduled on CPU{c} (context switch, clrex)"
            if t[8]:
                fixes, was = t[8]
                what += f"; exception return (taken on CPU{was})"
                if t[9] >= 0 and c != was and fixes:
                    r = list(regs)
                    r[t[9]] = (r[t[9]] + (c - was) * PAGE) & tc.MASK64
                    regs = tc.forget_dead(self.seqs[t[0]][t[2]], t[3], tuple(r))
                    what += f" with the fix-up: {tc.REG_NAMES[t[9]]} += offset(CPU{c}) - offset(CPU{was})"
                elif t[9] >= 0 and c != was:
                    what += f", this path has no fix-up: {tc.REG_NAMES[t[9]]} keeps CPU{was}'s offset"
            n.tasks[i] = (t[0], c, t[2], t[3], regs) + t[5:7] + (rd, (), t[9])
            self._clear_monitor(n, c)
            return n, StepInfo(f"task{i}", what, c)
        if kind == "preempt":
            c = act[1]
            path = act[2] if len(act) > 2 else None
            i = self.running(n, c)
            t = n.tasks[i]
            # only whether the path fixes up matters for what follows (alike paths: one state)
            exc = (path in self.sc.fixup_paths, c) if path else ()
            n.tasks[i] = (t[0], RUNNABLE) + t[2:8] + (exc, t[9])
            self._clear_monitor(n, c)
            what = "schedules out (voluntary, between operations)" if t[3] == 0 else \
                f"preempted at pc {t[3]} (context switch, clrex)"
            if path:
                what = f"{path} exception at pc {t[3]}, preempted on its way out (context switch, clrex)"
            return n, StepInfo(f"task{i}", what, c)
        if kind == "irq":
            _, c = act
            cpu = n.cpus[c]
            n.cpus[c] = (cpu[0], 0, tc.initial_regs(ptr=self.irq.ptr, val=self.irq.val)) + cpu[3:]
            return n, StepInfo(f"CPU{c}/irq", f"interrupt taken (handler runs {self.irq.form} "
                               f"{self.irq.op})", c)
        if kind == "evict":
            _, d, e = act
            n.tlb[d] = n.tlb[d] - {e}
            return n, StepInfo("TLB", f"TLB {d} evicts VA page {e[0]:#x} -> PA page {e[1]:#x}")
        if kind == "evict-walk":
            _, d, e = act
            n.wc[d] = n.wc[d] - {e}
            return n, StepInfo("TLB", f"walk cache {d} evicts slot {e[0]} -> table {e[1]}")
        if kind == "walk":
            _, c, s = act
            r = self.root_index(n.cpus[c][5])
            t = _entry(n.roots[r], s)
            d = self.ncpus if n.cpus[c][6] else c
            n.wc[d] = n.wc[d] | {(s, t, c)}
            return n, StepInfo(f"CPU{c}/walker", f"speculative walk caches slot {s} -> "
                               f"{self.table_name(t)} from {self.root_name(r)}", c)
        if kind == "worker":
            wid = act[1]
            step = self.workers[wid][n.wpc[wid]]
            info = StepInfo(f"worker{wid}" if len(self.workers) > 1 else "worker", step.label)
            if step.effect is not None:
                step.effect(Ctx(self, n, wid, info))
            wpc = list(n.wpc)
            wpc[wid] += 1
            n.wpc = tuple(wpc)
            return n, info
        if kind == "exec":
            return self._exec(n, act[1])
        raise ValueError(f"unknown action {act!r}")

    def _clear_monitor(self, w: World, c: int) -> None:
        if self.sc.monitor_clear:
            cpu = w.cpus[c]
            if cpu[4] != -1:
                w.cpus[c] = cpu[:4] + (-1,) + cpu[5:]

    def _exec(self, w: World, c: int) -> tuple[World, StepInfo]:
        cpu = w.cpus[c]
        in_irq = cpu[1] >= 0
        if in_irq:
            item, seq = self.irq, self.irq_seq
            pc, regs = cpu[1], cpu[2]
            actor, ti, rd = f"CPU{c}/irq", None, NOREAD
        else:
            ti = self.running(w, c)
            t = w.tasks[ti]
            item = self.item(t)
            seq = self.seqs[t[0]][t[2]]
            pc, regs = t[3], t[4] or tc.initial_regs(ptr=item.ptr, val=item.val)
            actor, rd = f"task{ti}", t[7]
        what = f"{seq.form} {seq.op}"
        if item.access == "remote":
            what += f" on per_cpu_ptr(ptr, {item.target})"
        info = StepInfo(actor, what, c)
        env = _Env(self, w, c, ti, info, item, rd, self.first_load[id(seq)])
        ninsn = len(seq.insns)
        visible = 0
        guard = 0
        while pc < ninsn:
            ins = seq.insns[pc]
            if not ins.local_only:
                if visible:
                    break
                visible = 1
            info.instructions.append(f"{pc}: {ins.text}")
            env.pc, env.started = pc, False
            try:
                pc, regs = tc.step(seq, pc, regs, env)
            except Violation as v:
                v.info = info
                raise
            guard += 1
            if guard > 64:
                raise RuntimeError("runaway register-only loop")
        rd = env.rd
        if pc >= ninsn and item.access == "this_cpu" and item.op in tc.READ_OPS and rd:
            if not rd[2]:
                v = Violation("read-consistency", f"{actor}'s read returned CPU{rd[0]}'s copy "
                              f"but never ran on CPU{rd[0]} during the read")
                v.info = info
                raise v
            rd = NOREAD
        if pc < ninsn:
            regs = tc.forget_dead(seq, pc, regs)
        if in_irq:
            cpu = w.cpus[c]
            if pc >= ninsn:  # exception return: clears the exclusive monitor
                w.cpus[c] = (cpu[0], -1, (), cpu[3] + 1,
                             -1 if self.sc.monitor_clear else cpu[4]) + cpu[5:]
                info.instructions.append("eret (clrex)")
            else:
                w.cpus[c] = (cpu[0], pc, regs) + cpu[3:]
        else:
            t = w.tasks[ti]
            pcount = t[5] + env.pcount_delta
            irqoff = t[6] if env.irqoff is None else env.irqoff
            marker = t[9] if env.marker is None else env.marker
            if pc >= ninsn:
                item_no = t[2] + 1
                where = DONE if item_no >= len(self.roles[t[0]]) else c
                w.tasks[ti] = (t[0], where, item_no, 0, (), pcount, irqoff, NOREAD, (), marker)
            else:
                w.tasks[ti] = (t[0], c, t[2], pc, regs, pcount, irqoff, rd, (), marker)
        return w, info

    # ------------------------------------------------------------------ state keys
    def encode(self, w: World) -> bytes:
        """The exact state (for the search frontier), without the parts no action changes."""
        return self.encode_raw(w.raw())

    def encode_raw(self, raw: tuple) -> bytes:
        return marshal.dumps(self._varying(raw), MARSHAL_VERSION)

    def decode(self, blob: bytes) -> World:
        part = iter(marshal.loads(blob))
        return World.from_raw(tuple(x if i in self.static_idx else next(part)
                                    for i, x in enumerate(self._static_raw)))

    def _varying(self, raw: tuple) -> tuple:
        static = self.static_idx
        return tuple(x for i, x in enumerate(raw) if i not in static)

    def key(self, w: World, symmetry: bool = True) -> bytes:
        """The state's key: with ``symmetry``, the same for every state that differs only by
        a renaming of tasks (same role) and of interchangeable CPUs; a compact byte string.

        Canonical form: the interchangeable CPUs are ordered by a signature that no renaming
        changes (:meth:`_signature`); the key is the smallest encoding over the renamings that
        respect that order (all orders of CPUs with equal signatures), tasks sorted."""
        return self.key_of_raw(w.raw(), symmetry)

    def key_of_raw(self, raw: tuple, symmetry: bool = True) -> bytes:
        if not symmetry:
            return marshal.dumps(self._varying(raw), MARSHAL_VERSION)
        cls = self.cls
        if len(cls) < 2:
            return marshal.dumps(self._varying((tuple(sorted(raw[0])),) + raw[1:]),
                                 MARSHAL_VERSION)
        sig = {c: self._signature(raw, c) for c in cls}
        order = sorted(cls, key=sig.__getitem__)
        groups, i = [], 0
        while i < len(order):
            j = i + 1
            while j < len(order) and sig[order[j]] == sig[order[i]]:
                j += 1
            groups.append(order[i:j])
            i = j
        best = None
        for combo in itertools.product(*(itertools.permutations(g) for g in groups)):
            p = list(range(self.ncpus))
            for slot, c in zip(cls, itertools.chain.from_iterable(combo)):
                p[c] = slot
            k = marshal.dumps(self._varying(self._rename(raw, self._maps(tuple(p)))),
                              MARSHAL_VERSION)
            if best is None or k < best:
                best = k
        return best

    def _signature(self, raw: tuple, c: int) -> tuple:
        """What CPU ``c`` looks like, with every reference to a CPU made relative to ``c``
        (own / other): unchanged by any renaming of CPUs."""
        on, ipc, iregs, irqs, mon, ttbr, cnp = raw[1][c]
        gen = raw[13]
        own = unit_page(gen, c) * PAGE
        mon_rel = 0 if mon == -1 else (1 if mon - own in VAR_WORDS else 2)
        run = ()
        for t in raw[0]:
            if t[1] == c:
                regs = t[4]
                run = (t[0], t[2], t[3], t[5], t[6],
                       tuple(regs[r] for r in _VALUE_REGS) if regs else (),
                       (t[7][0] == c,) + t[7][1:] if t[7] else ())
                break
        mem = self._mem_of(raw[2], own)
        return (on, ipc, tuple(iregs[r] for r in _VALUE_REGS) if iregs else (), irqs, mon_rel,
                ttbr == self.root_pa(c), cnp, run, mem, raw[12][c], len(raw[5][c]))

    @staticmethod
    def _mem_of(mem: tuple, own: int) -> tuple:
        return tuple(v for a, v in mem if own <= a < own + PAGE)

    def _symmetric_class(self) -> tuple[int, ...]:
        sc, n = self.sc, self.ncpus
        mode = sc.symmetric_cpus
        if mode == "auto":
            plain = not (sc.workers or sc.setup or sc.kpti or
                         any(it.access == "remote" for r in self.roles for it in r))
            mode = "all" if plain else "none"
        return {"all": tuple(range(n)), "non-boot": tuple(range(1, n)),
                "middle": tuple(range(1, n - 1)), "all-but-last": tuple(range(n - 1)),
                "none": ()}[mode]

    def _renaming_is_unambiguous(self) -> bool:
        """Register values are renamed by value (addresses, offsets, TTBR1 values): no
        CPU-dependent value may equal another, nor a small counter value."""
        values = [PTR, PTR + DELTA]
        for c in range(self.ncpus):
            values += [G_BASE + c * PAGE + o for o in VAR_WORDS]
            values += [unit_page(g, c) * PAGE + o for g in range(MAX_GEN) for o in VAR_WORDS]
            values += [self.root_pa(c), self.root_pa(c) - TRAMP_OFFSET]
        return len(set(values)) == len(values) and min(values) >= MAX_CPUS * PAGE

    def _maps(self, p: tuple[int, ...]):
        got = self._maps_cache.get(p)
        if got is None:
            got = self._maps_cache[p] = self._build_maps(p)
        return got

    def _build_maps(self, p: tuple[int, ...]):
        n = self.ncpus
        addr, page, table, off, root = {}, {}, {}, {}, {}
        for c in range(n):
            d = p[c]
            for o in VAR_WORDS:
                addr[G_BASE + c * PAGE + o] = G_BASE + d * PAGE + o
                for g in range(MAX_GEN):
                    addr[unit_page(g, c) * PAGE + o] = unit_page(g, d) * PAGE + o
            for g in range(MAX_GEN):
                page[unit_page(g, c)] = unit_page(g, d)
            page[G_VP + c] = G_VP + d
            table[T_LOCAL + c] = T_LOCAL + d
            off[(c + 1) * PAGE] = (d + 1) * PAGE
            for delta in (0, -TRAMP_OFFSET):
                root[self.root_pa(c) + delta] = self.root_pa(d) + delta
        maps = (p, addr, page, table, off, root, {}, False)
        if self.static_tables:
            init = self.initial().raw()
            r = self._rename(init, maps)
            static_ok = tuple(r[i] for i in (3, 4, 6, 7, 8)) == tuple(init[i] for i in (3, 4, 6, 7, 8))
            maps = maps[:7] + (static_ok,)
        return maps

    def _rename(self, raw: tuple, maps) -> tuple:
        p, addr, page, table, off, root, memo, static_ok = maps
        n = self.ncpus

        def regs(r):
            if not r:
                return r
            r = list(r)
            r[tc.X_PTR] = addr.get(r[tc.X_PTR], r[tc.X_PTR])
            r[tc.X_ADDR] = addr.get(r[tc.X_ADDR], r[tc.X_ADDR])
            r[tc.X_OFF] = off.get(r[tc.X_OFF], r[tc.X_OFF])
            r[tc.X_TMP] = root.get(r[tc.X_TMP], r[tc.X_TMP])
            return tuple(r)

        def task(t):
            k = ("t", t)
            v = memo.get(k)
            if v is None:
                v = memo[k] = ((t[0], p[t[1]] if t[1] >= 0 else t[1]) + t[2:4] + (regs(t[4]),)
                               + t[5:7] + (((p[t[7][0]],) + t[7][1:]) if t[7] else t[7],)
                               + ((t[8][0], p[t[8][1]]) if t[8] else t[8], t[9]))
            return v

        def cpu(x):
            k = ("c", x)
            v = memo.get(k)
            if v is None:
                on, ipc, iregs, irqs, mon, ttbr, cnp = x
                v = memo[k] = (on, ipc, regs(iregs), irqs, addr.get(mon, mon),
                               root.get(ttbr, ttbr), cnp)
            return v

        def comp(tag, x, fn):
            k = (tag, x)
            v = memo.get(k)
            if v is None:
                v = memo[k] = fn(x)
            return v

        tasks = tuple(sorted(map(task, raw[0])))
        cpus = [None] * n
        for c, x in enumerate(raw[1]):
            cpus[p[c]] = cpu(x)
        mem = comp("m", raw[2], lambda x: tuple(sorted((addr.get(a, a), v) for a, v in x)))
        if static_ok:
            # no worker or setup: tables, freed sets and walk caches never change, and the
            # initial ones are invariant under this renaming (checked in __init__)
            tlb = [None] * (n + 1)
            for d, x in enumerate(raw[5]):
                tlb[p[d] if d < n else n] = comp("tlb", x, lambda x: tuple(sorted(
                    (page.get(e[0], e[0]), page.get(e[1], e[1]), p[e[2]]) for e in x)))
            attrib = [0] * n
            for c, a in enumerate(raw[12]):
                attrib[p[c]] = a
            return (tasks, tuple(cpus), mem, raw[3], raw[4], tuple(tlb), raw[6], raw[7], raw[8],
                    raw[9], raw[10], raw[11], tuple(attrib), raw[13])
        freed = comp("f", raw[3], lambda x: tuple(sorted(page.get(y, y) for y in x)))
        ftables = comp("ft", raw[4], lambda x: tuple(sorted(table.get(y, y) for y in x)))
        tlb = [None] * (n + 1)
        for d, x in enumerate(raw[5]):
            tlb[p[d] if d < n else n] = comp("tlb", x, lambda x: tuple(sorted(
                (page.get(e[0], e[0]), page.get(e[1], e[1]), p[e[2]]) for e in x)))
        wc = [None] * (n + 1)
        for d, x in enumerate(raw[6]):
            wc[p[d] if d < n else n] = comp("wc", x, lambda x: tuple(sorted(
                (e[0], table.get(e[1], e[1]), p[e[2]]) for e in x)))
        roots = [None] * n
        for r, x in enumerate(raw[7]):
            roots[p[r]] = None if x is None else comp("r", x, lambda x: tuple(sorted(
                (s, table.get(t, t)) for s, t in x)))
        leaves = comp("l", raw[8], lambda x: tuple(sorted(
            ((table.get(t, t), page.get(v, v)), page.get(pa, pa)) for (t, v), pa in x)))
        attrib = [0] * n
        for c, a in enumerate(raw[12]):
            attrib[p[c]] = a
        if len(memo) > 400_000:
            memo.clear()
        return (tasks, tuple(cpus), mem, freed, ftables, tuple(tlb), tuple(wc), tuple(roots),
                leaves, raw[9], raw[10], raw[11], tuple(attrib), raw[13])


class _Env(tc.ThisCpuEnv):
    """thiscpu hooks on the abstract state (translate = walk + TLB of the model)."""

    __slots__ = ("m", "w", "c", "ti", "info", "item", "update", "reading", "rd", "first_load",
                 "pc", "started", "pcount_delta", "irqoff", "marker")

    def __init__(self, m: Machine, w: World, c: int, ti, info: StepInfo, item: Item, rd: tuple,
                 first_load: int):
        self.m, self.w, self.c, self.ti, self.info, self.item = m, w, c, ti, info, item
        self.update = item.op in tc.UPDATE_OPS and item.access != "plain"
        self.reading = item.access == "this_cpu" and item.op in tc.READ_OPS
        self.rd, self.first_load = rd, first_load
        self.pc, self.started = 0, False
        self.pcount_delta = 0
        self.irqoff = None
        self.marker = None

    def cpu(self) -> int:
        return self.c

    def cpu_offset(self) -> int:
        return (self.c + 1) * PAGE

    def translate(self, va: int, write: bool) -> int:
        m, w, c = self.m, self.w, self.c
        n = m.ncpus
        vp = va >> 12
        cnp = w.cpus[c][6]
        hit = None
        for e in w.tlb[c]:
            if e[0] == vp:
                hit = e
                break
        if hit is None and cnp:
            for e in w.tlb[n]:
                if e[0] == vp:
                    hit = e
                    break
        r = m.root_index(w.cpus[c][5])
        walk_pa, why, table = m.walk(w, r, va)
        acc = {"va": f"{va:#x}"}
        self.info.accesses.append(acc)
        slot = va >> SLOT_SHIFT
        if hit is None and slot in m.wc_slots:
            view = w.wc[c] | (w.wc[n] if cnp else frozenset())
            for s, t, f in view:
                if s == slot and t != table:
                    acc["tlb"] = f"walk cache: slot {s} -> {m.table_name(t)} (cached by CPU{f})"
                    if t in w.ftables:
                        raise Violation("freed-table", f"CPU{c} walks {va:#x} through a walk-cache "
                                        f"entry for the freed {m.table_name(t)}")
                    raise Violation("stale-mapping", f"CPU{c}'s walk cache holds slot {s} -> "
                                    f"{m.table_name(t)}, its tables do not ({why})")
        d = n if cnp else c
        if hit is None:
            if walk_pa is None:
                acc["tlb"] = f"miss; walk: {why}"
                raise Violation("missing-mapping", f"CPU{c} accesses {va:#x}: {why}")
            w.tlb[d] = w.tlb[d] | {(vp, walk_pa, c)}
            if slot in m.wc_slots:
                w.wc[d] = w.wc[d] | {(slot, table, c)}
            pa_page = walk_pa
            where = "common (CnP) store" if cnp else f"CPU{c}'s TLB"
            acc["tlb"] = f"miss; fill {where}: {vp:#x} -> {walk_pa:#x} ({why})"
        else:
            pa_page = hit[1]
            shared = " (filled by CPU%d, shared via CnP)" % hit[2] if hit[2] != c else ""
            acc["tlb"] = f"hit: {vp:#x} -> {pa_page:#x}{shared}"
        pa = pa_page * PAGE + (va & (PAGE - 1))
        acc["pa"] = f"{pa:#x}"
        acc["page"] = m.page_name(pa_page, w)
        if pa_page in w.freed:
            raise Violation("freed-page", f"CPU{c} accesses freed physical page {pa_page:#x} "
                            f"through VA {va:#x} (stale TLB entry)")
        if hit is not None and pa_page != walk_pa:
            owner = m.owner(pa_page, w)
            if owner is not None and owner != c and self.item.access == "this_cpu":
                raise Violation("attribution", f"code running on CPU{c} would access CPU{owner}'s "
                                f"copy through VA {va:#x}: the TLB entry{shared or ''} disagrees "
                                f"with CPU{c}'s tables ({why})")
            raise Violation("stale-mapping", f"CPU{c} uses a TLB entry for {va:#x} -> "
                            f"{pa_page:#x} that its tables no longer hold ({why})")
        return pa

    def load(self, pa: int) -> int:
        if self.reading and (pa & (PAGE - 1)) in VAR_WORDS:
            m, c = self.m, self.c
            owner = m.owner(pa >> 12, self.w)
            if owner is None:
                raise Violation("read-consistency", f"a this_cpu read on CPU{c} loads "
                                f"{m.page_name(pa >> 12, self.w)}, no CPU's live copy")
            if self.pc == self.first_load and not self.started:
                self.rd = (owner, True, owner == c)   # the read (or a retry of it) starts
            else:
                o, intact, on = self.rd
                if owner != o:
                    raise Violation("read-consistency", f"one this_cpu read returns words of "
                                    f"CPU{o}'s and CPU{owner}'s copies (now on CPU{c})")
                if not intact:
                    raise Violation("read-consistency", f"CPU{o}'s copy changed between the "
                                    f"loads of one this_cpu read: the value returned never "
                                    f"existed (torn)")
                self.rd = (o, True, on or owner == c)
            self.started = True
        return self.w.mem.get(pa, 0)

    def store(self, pa: int, value: int) -> None:
        m, w, c = self.m, self.w, self.c
        off = pa & (PAGE - 1)
        if off in VAR_WORDS:
            owner = m.owner(pa >> 12, w)
            if self.update and off == VAR_OFF and owner is not None:
                it = self.item
                want = c if it.access == "this_cpu" else it.target
                if owner != want:
                    what = "an update running on" if it.access == "this_cpu" else \
                        f"per_cpu_ptr(ptr, {want}) updated from"
                    raise Violation("attribution", f"{what} CPU{c} writes CPU{owner}'s copy "
                                    f"(PA {pa:#x})")
                w.attrib[want] += it.val
            if owner is not None:
                for j, t in enumerate(w.tasks):  # in-flight reads of this copy are torn
                    rd = t[7]
                    if rd and rd[0] == owner and rd[1] and j != self.ti:
                        w.tasks[j] = t[:7] + ((owner, False, rd[2]),) + t[8:]
        w.mem[pa] = value
        g = pa & ~0xF
        for o in range(m.ncpus):  # a store to a monitored granule clears other PEs' monitors
            cpu = w.cpus[o]
            if o != c and cpu[4] != -1 and cpu[4] & ~0xF == g:
                w.cpus[o] = cpu[:4] + (-1,) + cpu[5:]

    def preempt_count_add(self, delta: int) -> None:
        self.pcount_delta += delta

    def pcpu_mark(self, reg: int) -> None:
        self.marker = reg

    def pcpu_unmark(self) -> None:
        self.marker = -1

    def irq_save(self) -> None:
        self.irqoff = True

    def irq_restore(self) -> None:
        self.irqoff = False

    def monitor_arm(self, pa: int) -> None:
        cpu = self.w.cpus[self.c]
        self.w.cpus[self.c] = cpu[:4] + (pa,) + cpu[5:]

    def monitor_check(self, pa: int) -> bool:
        cpu = self.w.cpus[self.c]
        ok = cpu[4] == pa
        self.w.cpus[self.c] = cpu[:4] + (-1,) + cpu[5:]
        return ok

    def read_ttbr1(self) -> int:
        return self.w.cpus[self.c][5]

    def write_ttbr1(self, value: int) -> None:
        m, w, c = self.m, self.w, self.c
        cur = w.cpus[c][5]
        own = m.root_pa(c)
        kind = m.table_kind(value)
        self.info.accesses.append({"ttbr1": f"{value:#x}", "page": kind})
        if cur == own:
            if "tramp" not in kind:
                raise Violation("trampoline", f"CPU{c}: TTBR1 root {own:#x} - TRAMP_OFFSET = "
                                f"{value:#x} is {kind}, not a trampoline table")
        elif value != own:
            raise Violation("trampoline", f"CPU{c}: trampoline returns to {value:#x} ({kind}), "
                            f"not its own root {own:#x}")
        cpu = w.cpus[c]
        w.cpus[c] = cpu[:5] + (value,) + cpu[6:]
