"""The abstract machine the checker explores: CPUs, tasks, interrupts, TLBs, page tables.

What it models. A small system running the this_cpu sequences of
:mod:`localmap.arch.arm64.thiscpu` (executed by that module's interpreter, one visible
instruction per step) on one percpu variable of a one-page-per-unit chunk:

* CPUs (optionally SMT pairs ``(0,1), (2,3)...`` whose TLB is shared when CnP is on; with CnP off
  each PE's entries stay private, as the architecture requires), each with an exclusive monitor
  (cleared on context switch and on exception return; any store to the monitored address by
  another PE clears it), an online flag and a TTBR1 value;
* tasks that the scheduler places on any idle online CPU (migration), preempts at any
  instruction boundary when the kernel is preemptible and the task's preempt count is zero and
  interrupts are on, and always at an operation boundary (voluntary schedule);
* interrupts (at most ``irqs_per_cpu`` per CPU) that run the non-atomic ``__this_cpu_add`` on
  the owning CPU's copy, nested inside whatever that CPU runs;
* page tables at the abstraction level of DESIGN.md section 4-7: swapper's root entries and
  leaf mappings (shared below the root), per-CPU root copies for CPUs other than 0, and per-CPU
  private tables for the local window; TLBs filled on a miss by a walk of the current CPU's
  tables and emptied by evictions (any entry, any time) and broadcast invalidation by VA;
* a kernel worker that runs one scenario script (depopulate + page reuse, vmalloc + sync, CPU
  online, ...); the KPTI trampoline root lookup runs as a task step;
* for the alternative (fix-up) design: the asynchronous exceptions through which a task can be
  preempted mid-op (``exception_paths``, e.g. IRQ and FIQ, both of which end in
  ``preempt_schedule_irq`` on arm64), each recorded with the CPU it was taken on; when the task
  is scheduled again, the exception return of a path in ``fixup_paths`` adds the difference of
  the two CPUs' offsets to the register the task has marked (``pcpu_mark``), the others return
  with the register unchanged.

Properties, checked at every step: no access to a freed physical page; no access through a
missing mapping or through a TLB entry that disagrees with the current CPU's tables (when the
stale entry maps another CPU's live copy the violation is reported as attribution); attribution
(an update by a context running on CPU c at its memory access writes CPU c's copy); the
trampoline's TTBR1 switch reaches a trampoline table and comes back to the CPU's own root; and,
in every quiescent state (no operation in flight), no lost update (each CPU's copy equals the sum
of the updates attributed to it since the object was (re)allocated).

Deliberate differences from the kernel: one variable, one page per unit; the worker does not
occupy a CPU and its steps (e.g. "unmap the PTEs in every CPU's tables") are atomic; a broadcast
TLBI completes in one step (``tlbi; dsb ish``); root entries stand for "split-level entries"
(1 GB each here); interrupts only run ``__this_cpu_add``; KPTI exit/entry runs with interrupts
and preemption masked between its first and last instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from localmap.arch.arm64 import thiscpu as tc
from localmap.errors import LocalmapError

MAX_CPUS = 8                     # unit pages are numbered 0x10 per generation
MAX_TASKS = 6

PAGE = 0x1000
SLOT_SHIFT = 30                  # one "split-level entry" of the model covers 1 GB
G_BASE = 0x1000_0000             # global window (root slot 0): unit k at G_BASE + k*PAGE
DELTA = tc.DEFAULT_DELTA         # local window = global window + DELTA (root slot 1)
VAR_OFF = 0x40                   # the percpu variable's offset in the unit page
PTR = G_BASE + VAR_OFF           # this_cpu pointer (== per_cpu_ptr(ptr, 0) here)
LOCAL_PAGE = (G_BASE + DELTA) >> 12
LOCAL_SLOT = (G_BASE + DELTA) >> SLOT_SHIFT
OBJ_VA = 0x8000_0000 + 0x80      # a vmalloc object in a root slot (2) that is empty at start
OBJ_PA_PAGE = 0x300
KERNEL_SLOTS = frozenset({G_BASE >> SLOT_SHIFT, 3})  # slots swapper has at boot (3: kernel image)

# KPTI physical layout: swapper's {tramp, reserved, swapper} block and per-CPU roots.
TRAMP_OFFSET = 2 * PAGE
SWAPPER_BLOCK = 0x40000
NAIVE_ROOTS = 0x90000            # per-CPU roots from the page allocator, one page each
BLOCKS = 0xA0000                 # per-CPU {tramp, reserved, root} blocks

DONE = -2
RUNNABLE = -1


def unit_page(gen: int, cpu: int) -> int:
    """Physical page number of ``cpu``'s unit page in allocation generation ``gen``."""
    return 0x10 + gen * 0x10 + cpu


class Violation(Exception):
    def __init__(self, prop: str, message: str):
        super().__init__(message)
        self.prop = prop
        self.message = message


@dataclass(frozen=True)
class Item:
    """One operation in a task's script."""

    form: str
    op: str
    ptr: int = PTR
    val: int = 1
    need_phase: int = 0          # blocked until the worker reaches this phase
    masked: bool = False         # interrupts and preemption masked once started (KPTI path)

    @property
    def seq(self) -> tc.OpSeq:
        if self.form == "kpti-exit":
            return tc.kpti_exit_sequence(TRAMP_OFFSET)
        return tc.sequence(self.form, self.op)


@dataclass
class Scenario:
    name: str
    summary: str
    task_form: str = "local-lse"
    irq_form: str | None = None
    preemptible: bool = True
    smt: bool = False
    cnp: bool = False
    monitor_clear: bool = True
    depopulate: str | None = None     # "tlbi" | "no-tlbi"
    vmalloc: str | None = None        # "sync" | "no-sync"
    hotplug: str | None = None        # "map-before-online" | "map-after-online"
    kpti: str | None = None           # "naive-root" | "pgtables-block"
    cpus: int = 2
    tasks: int = 2
    irqs_per_cpu: int = 1
    twin: str | None = None           # the scenario that differs by exactly the named mechanism
    mechanism: str = ""
    exception_paths: tuple = ()       # fix-up design: exceptions that can preempt a task mid-op
    fixup_paths: tuple = ()           # ... and those whose return fixes the marked register
    track_tlb: bool = True            # False: tables never change, a TLB could only cache what a
                                      # walk returns, so translations walk (sound without SMT+CnP)

    def make_machine(self, cpus: int | None = None, tasks: int | None = None) -> "Machine":
        return Machine(self, cpus, tasks)

    def script(self) -> tuple[Item, ...]:
        if self.depopulate:
            return (Item(self.task_form, "add"), Item(self.task_form, "add", need_phase=1))
        if self.vmalloc:
            return (Item("plain", "read", ptr=OBJ_VA, val=0, need_phase=1),)
        if self.kpti:
            return (Item(self.task_form, "add"), Item("kpti-exit", "tramp", masked=True))
        return (Item(self.task_form, "add"),)


# ----------------------------------------------------------------------------- the state

@dataclass(slots=True)
class World:
    tasks: list          # (cpu, item, pc, regs, pcount, irqoff, exc, marker); exc = () or
                         # (its path fixes up?, CPU it was taken on), marker = marked reg or -1
    cpus: list           # (online, irq_pc, irq_regs, irqs_taken, monitor_pa, ttbr1)
    mem: dict            # pa -> value (variable words only)
    freed: frozenset     # freed physical pages
    tlbs: list           # per TLB domain: frozenset of (va_page, pa_page, filler_cpu)
    swapper_map: dict    # va_page -> pa_page (shared tables below the root)
    swapper_slots: frozenset
    roots: list          # per CPU: frozenset of root slots in its root copy (None: no root)
    local: list          # per CPU: tuple of (va_page, pa_page) private local tables, or None
    worker: int
    attrib: list
    gen: int
    phase: int

    def copy(self) -> "World":
        # swapper_map, roots and local are shared (copy-on-write: only worker steps change
        # them, and they call own_tables() first).
        return World(list(self.tasks), list(self.cpus), dict(self.mem), self.freed,
                     list(self.tlbs), self.swapper_map, self.swapper_slots,
                     self.roots, self.local, self.worker, list(self.attrib),
                     self.gen, self.phase)

    def own_tables(self) -> None:
        self.swapper_map = dict(self.swapper_map)
        self.roots = list(self.roots)
        self.local = list(self.local)

    def key(self, symmetric_tasks: bool = True) -> tuple:
        tasks = tuple(sorted(self.tasks)) if symmetric_tasks else tuple(self.tasks)
        # dict insertion orders are the same on every path (keys are only created by the
        # initial state and by worker steps, in script order), so items() is canonical.
        return (tasks, tuple(self.cpus), tuple(self.mem.items()), self.freed,
                tuple(self.tlbs), tuple(self.swapper_map.items()), self.swapper_slots,
                tuple(self.roots), tuple(self.local), self.worker, tuple(self.attrib),
                self.gen, self.phase)


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


class Machine:
    """Successor function, properties and deterministic replay for one scenario."""

    def __init__(self, sc: Scenario, cpus: int | None = None, tasks: int | None = None):
        self.sc = sc
        self.ncpus = sc.cpus if cpus is None else cpus
        self.ntasks = sc.tasks if tasks is None else tasks
        if not 1 <= self.ncpus <= MAX_CPUS:
            raise LocalmapError(f"--cpus must be between 1 and {MAX_CPUS} (got {self.ncpus})")
        if not 1 <= self.ntasks <= MAX_TASKS:
            raise LocalmapError(f"--tasks must be between 1 and {MAX_TASKS} (got {self.ntasks})")
        if self.ncpus < 2 and (sc.smt or sc.hotplug or sc.kpti or sc.vmalloc):
            raise LocalmapError(f"scenario {sc.name} needs at least 2 CPUs")
        self.script = sc.script()
        self.hot_cpu = self.ncpus - 1 if sc.hotplug else None
        self.evictions = True
        if not sc.track_tlb and (sc.smt and sc.cnp or sc.depopulate or sc.vmalloc or sc.hotplug or sc.kpti):
            raise LocalmapError(f"scenario {sc.name}: the TLB can only be left out when no table changes")
        self.worker_script = self._worker_script()
        self.ndomains = (self.ncpus + 1) // 2 if (sc.smt and sc.cnp) else self.ncpus

    # ------------------------------------------------------------------ layout helpers
    def domain(self, cpu: int) -> int:
        return cpu // 2 if (self.sc.smt and self.sc.cnp) else cpu

    def root_pa(self, cpu: int) -> int:
        if cpu == 0 or not self.sc.kpti:
            return SWAPPER_BLOCK + TRAMP_OFFSET
        if self.sc.kpti == "naive-root":
            return NAIVE_ROOTS + cpu * PAGE
        return BLOCKS + cpu * 3 * PAGE + TRAMP_OFFSET

    def table_kind(self, pa: int) -> str:
        if pa == SWAPPER_BLOCK:
            return "tramp_pg_dir"
        if pa == SWAPPER_BLOCK + PAGE:
            return "reserved_pg_dir"
        for c in range(self.ncpus):
            if pa == self.root_pa(c):
                return f"root of CPU{c}"
        if self.sc.kpti == "pgtables-block" and pa >= BLOCKS:
            c, r = divmod(pa - BLOCKS, 3 * PAGE)
            if 0 < c < self.ncpus:
                return {0: f"tramp copy of CPU{c}", PAGE: f"reserved copy of CPU{c}"}.get(r, "?")
        return f"unrelated page {pa:#x}"

    def page_name(self, pa_page: int, w: World) -> str:
        if pa_page == OBJ_PA_PAGE:
            return "vmalloc object page"
        g, c = divmod(pa_page - 0x10, 0x10)
        state = "freed" if pa_page in w.freed else ("live" if g == w.gen else "old")
        return f"CPU{c}'s unit page (gen {g}, {state})"

    def owner(self, pa_page: int, w: World) -> int | None:
        g, c = divmod(pa_page - 0x10, 0x10)
        if g == w.gen and 0 <= c < self.ncpus and pa_page not in w.freed:
            return c
        return None

    # ------------------------------------------------------------------ initial state
    def initial(self) -> World:
        n = self.ncpus
        online = [c != self.hot_cpu for c in range(n)]
        swapper_map = {(G_BASE >> 12) + c: unit_page(0, c) for c in range(n)}
        roots = [KERNEL_SLOTS if (c > 0 and online[c]) else None for c in range(n)]
        local = [((LOCAL_PAGE, unit_page(0, c)),) if online[c] else None for c in range(n)]
        cpus = [(online[c], -1, (), 0, -1, self.root_pa(c)) for c in range(n)]
        mem = {unit_page(0, c) * PAGE + VAR_OFF: 0 for c in range(n)}
        return World(tasks=[(RUNNABLE, 0, 0, (), 0, False, (), -1)] * self.ntasks, cpus=cpus, mem=mem,
                     freed=frozenset(), tlbs=[frozenset()] * self.ndomains,
                     swapper_map=swapper_map, swapper_slots=KERNEL_SLOTS, roots=roots,
                     local=local, worker=0, attrib=[0] * n, gen=0, phase=0)

    # ------------------------------------------------------------------ worker scripts
    def _worker_script(self):
        sc = self.sc
        steps = []
        if sc.depopulate:
            def gen0_done(w):
                return all(t[1] >= 1 or t[0] == DONE for t in w.tasks)

            def unmap(w, info):
                for c in range(self.ncpus):
                    w.swapper_map.pop((G_BASE >> 12) + c, None)
                    if w.local[c] is not None:
                        w.local[c] = tuple(e for e in w.local[c] if e[0] != LOCAL_PAGE)

            def tlbi(w, info):
                vps = {LOCAL_PAGE} | {(G_BASE >> 12) + c for c in range(self.ncpus)}
                w.tlbs = [frozenset(e for e in d if e[0] not in vps) for d in w.tlbs]

            def free_pages(w, info):
                w.freed = w.freed | {unit_page(w.gen, c) for c in range(self.ncpus)}

            def repopulate(w, info):
                w.gen += 1
                for c in range(self.ncpus):
                    w.swapper_map[(G_BASE >> 12) + c] = unit_page(w.gen, c)
                    if w.local[c] is not None:
                        w.local[c] = w.local[c] + ((LOCAL_PAGE, unit_page(w.gen, c)),)
                    w.mem[unit_page(w.gen, c) * PAGE + VAR_OFF] = 0
                w.attrib = [0] * self.ncpus
                w.phase = 1

            steps.append(("free_percpu(obj) after its last use", gen0_done, None))
            steps.append(("pcpu_depopulate: clear the page's global PTEs (swapper) and local "
                          "PTEs (every CPU's private tables)", None, unmap))
            if sc.depopulate == "tlbi":
                steps.append(("flush_tlb_kernel_range: tlbi vaale1is on the local and global "
                              "VAs; dsb ish", None, tlbi))
            steps.append(("free the unit pages to the page allocator", None, free_pages))
            steps.append(("page reuse: repopulate with new pages, map global + local on every "
                          "CPU; alloc_percpu returns the same offset (zeroed)", None, repopulate))
        elif sc.vmalloc:
            def vmap(w, info):
                w.swapper_slots = w.swapper_slots | {OBJ_VA >> SLOT_SHIFT}
                w.swapper_map[OBJ_VA >> 12] = OBJ_PA_PAGE

            def sync(w, info):
                for c in range(1, self.ncpus):
                    if w.roots[c] is not None:
                        w.roots[c] = w.roots[c] | {OBJ_VA >> SLOT_SHIFT}

            def publish(w, info):
                w.phase = 1

            steps.append(("vmalloc: new root entry (split level) in swapper + leaf PTE",
                          None, vmap))
            if sc.vmalloc == "sync":
                steps.append(("sync the new root entry into every CPU's root copy", None, sync))
            steps.append(("publish the vmalloc'ed object's address", None, publish))
        elif sc.hotplug:
            k = self.hot_cpu

            def build(w, info):
                w.local[k] = tuple((LOCAL_PAGE, unit_page(w.gen, k)) for _ in (0,))

            def online(w, info):
                w.roots[k] = w.swapper_slots
                cpu = list(w.cpus[k])
                cpu[0] = True
                w.cpus[k] = tuple(cpu)

            b = (f"build CPU{k}'s private local-window tables (map unit {k}'s pages)", None, build)
            o = (f"CPU{k} online: boots on its root copy and enters the scheduler", None, online)
            steps += [b, o] if sc.hotplug == "map-before-online" else [o, b]
        return steps

    # ------------------------------------------------------------------ translation
    def walk(self, w: World, cpu: int, va: int):
        slot = va >> SLOT_SHIFT
        vp = va >> 12
        if slot == LOCAL_SLOT:
            lm = w.local[cpu]
            if lm is None:
                return None, f"CPU{cpu} has no private tables for the local window"
            for p, pa in lm:
                if p == vp:
                    return pa, "local PTE"
            return None, f"no local PTE for {va:#x} in CPU{cpu}'s tables"
        slots = w.swapper_slots if cpu == 0 else w.roots[cpu]
        if slots is None or slot not in slots:
            return None, f"no root entry for slot {slot} in CPU{cpu}'s root"
        pa = w.swapper_map.get(vp)
        if pa is None:
            return None, f"no PTE for {va:#x} in swapper's tables"
        return pa, "shared PTE"

    # ------------------------------------------------------------------ transitions
    def quiescent(self, w: World) -> bool:
        return all(t[2] == 0 for t in w.tasks) and all(c[1] < 0 for c in w.cpus)

    def check_state(self, w: World) -> None:
        if not self.quiescent(w):
            return
        for c in range(self.ncpus):
            v = w.mem.get(unit_page(w.gen, c) * PAGE + VAR_OFF, 0)
            if v != w.attrib[c]:
                raise Violation("lost-update", f"CPU{c}'s copy holds {v} but {w.attrib[c]} "
                                f"update(s) were attributed to CPU{c}")

    def running(self, w: World, cpu: int) -> int | None:
        for i, t in enumerate(w.tasks):
            if t[0] == cpu:
                return i
        return None

    def blocked(self, w: World, t: tuple) -> bool:
        return t[1] < len(self.script) and self.script[t[1]].need_phase > w.phase

    def actions(self, w: World) -> list[tuple]:
        acts = []
        sc = self.sc
        running = {t[0]: i for i, t in enumerate(w.tasks) if t[0] >= 0}
        for c in range(self.ncpus):
            online, irq_pc, _, irqs, _, _ = w.cpus[c]
            ti = running.get(c)
            if irq_pc >= 0:
                acts.append(("exec", c))
                continue
            if ti is not None:
                t = w.tasks[ti]
                item = self.script[t[1]]
                if not self.blocked(w, t):
                    acts.append(("exec", c))
                masked = item.masked and t[2] > 0
                if t[2] == 0:
                    acts.append(("preempt", c))
                elif sc.preemptible and t[4] == 0 and not t[5] and not masked:
                    if sc.exception_paths:  # preempted through one of the exception paths
                        acts.extend(("preempt", c, path) for path in sc.exception_paths)
                    else:
                        acts.append(("preempt", c))
            elif online:
                seen = set()
                for i, t in enumerate(w.tasks):
                    if t[0] == RUNNABLE and not self.blocked(w, t) and t not in seen:
                        seen.add(t)  # identical runnable tasks: one representative
                        acts.append(("sched", c, i))
            if online and sc.irq_form and irqs < sc.irqs_per_cpu:
                t = w.tasks[ti] if ti is not None else None
                if t is None or not (t[5] or (self.script[t[1]].masked and t[2] > 0)):
                    acts.append(("irq", c))
        if w.worker < len(self.worker_script):
            guard = self.worker_script[w.worker][1]
            if guard is None or guard(w):
                acts.append(("worker",))
        for d, entries in enumerate(w.tlbs if self.evictions else ()):
            for e in sorted(entries):
                acts.append(("evict", d, e))
        return acts

    def apply(self, w: World, act: tuple) -> tuple[World, StepInfo]:
        """Successor of ``w`` under ``act``; raises :class:`Violation` (with ``.info``)."""
        n = w.copy()
        kind = act[0]
        if kind == "sched":
            _, c, i = act
            t = n.tasks[i]
            regs, what = t[3], f"scheduled on CPU{c} (context switch, clrex)"
            if t[6]:
                fixes, was = t[6]
                ret = f"; exception return (taken on CPU{was})"
                if t[7] >= 0 and c != was and fixes:
                    r = list(regs)
                    r[t[7]] = (r[t[7]] + (c - was) * PAGE) & tc.MASK64
                    regs = tuple(r)
                    ret += f" with the fix-up: {tc.REG_NAMES[t[7]]} += offset(CPU{c}) - offset(CPU{was})"
                elif t[7] >= 0 and c != was:
                    ret += f", this path has no fix-up: {tc.REG_NAMES[t[7]]} keeps CPU{was}'s offset"
                what += ret
            n.tasks[i] = (c, t[1], t[2], regs, t[4], t[5], (), t[7])
            self._clear_monitor(n, c)
            return n, StepInfo(f"task{i}", what, c)
        if kind == "preempt":
            c = act[1]
            path = act[2] if len(act) > 2 else None
            i = self.running(n, c)
            t = n.tasks[i]
            # only whether the path fixes up matters for what follows (paths that behave alike
            # give one state)
            exc = (path in self.sc.fixup_paths, c) if path else ()
            n.tasks[i] = (RUNNABLE,) + t[1:6] + (exc,) + t[7:]
            self._clear_monitor(n, c)
            what = "schedules out (voluntary, between operations)" if t[2] == 0 else \
                f"preempted at pc {t[2]} (context switch, clrex)"
            if path:
                what = f"{path} exception at pc {t[2]}, preempted on its way out (context switch, clrex)"
            return n, StepInfo(f"task{i}", what, c)
        if kind == "irq":
            _, c = act
            cpu = list(n.cpus[c])
            cpu[1], cpu[2] = 0, tc.initial_regs(ptr=PTR, val=1)
            n.cpus[c] = tuple(cpu)
            return n, StepInfo(f"CPU{c}/irq", "interrupt taken (handler runs __this_cpu_add)", c)
        if kind == "evict":
            _, d, e = act
            n.tlbs[d] = n.tlbs[d] - {e}
            return n, StepInfo("TLB", f"TLB domain {d} evicts VA page {e[0]:#x} -> PA page "
                               f"{e[1]:#x}")
        if kind == "worker":
            label, _, effect = self.worker_script[n.worker]
            info = StepInfo("worker", label)
            if effect:
                n.own_tables()
                effect(n, info)
            n.worker += 1
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
            seq = tc.sequence(self.sc.irq_form, "add")
            pc, regs = cpu[1], cpu[2]
            actor, val, is_update = f"CPU{c}/irq", 1, True
            ti = None
        else:
            ti = self.running(w, c)
            t = w.tasks[ti]
            item = self.script[t[1]]
            seq = item.seq
            pc, regs = t[2], t[3] or tc.initial_regs(ptr=item.ptr, val=item.val)
            actor, val, is_update = f"task{ti}", item.val, item.op in tc.UPDATE_OPS
        info = StepInfo(actor, f"{seq.form} {seq.op}", c)
        env = _Env(self, w, c, ti, info, is_update, val)
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
            try:
                pc, regs = tc.step(seq, pc, regs, env)
            except Violation as v:
                v.info = info
                raise
            guard += 1
            if guard > 64:
                raise RuntimeError("runaway register-only loop")
        if in_irq:
            cpu = w.cpus[c]
            if pc >= ninsn:  # exception return: clears the exclusive monitor
                w.cpus[c] = (cpu[0], -1, (), cpu[3] + 1,
                             -1 if self.sc.monitor_clear else cpu[4], cpu[5])
                info.instructions.append("eret (clrex)")
            else:
                w.cpus[c] = (cpu[0], pc, regs) + cpu[3:]
        else:
            t = w.tasks[ti]
            pcount = t[4] + env.pcount_delta
            irqoff = t[5] if env.irqoff is None else env.irqoff
            marker = t[7] if env.marker is None else env.marker
            if pc >= ninsn:
                item_no = t[1] + 1
                if item_no >= len(self.script):
                    w.tasks[ti] = (DONE, item_no, 0, (), pcount, irqoff, (), marker)
                else:
                    w.tasks[ti] = (c, item_no, 0, (), pcount, irqoff, (), marker)
            else:
                w.tasks[ti] = (c, t[1], pc, regs, pcount, irqoff, (), marker)
        return w, info


class _Env(tc.ThisCpuEnv):
    """thiscpu hooks on the abstract state (translate = walk + TLB of the model)."""

    __slots__ = ("m", "w", "c", "ti", "info", "is_update", "val", "pcount_delta", "irqoff", "marker")

    def __init__(self, m: Machine, w: World, c: int, ti, info: StepInfo, is_update: bool, val: int):
        self.m, self.w, self.c, self.ti, self.info = m, w, c, ti, info
        self.is_update, self.val = is_update, val
        self.pcount_delta = 0
        self.irqoff = None
        self.marker = None

    def cpu(self) -> int:
        return self.c

    def cpu_offset(self) -> int:
        return self.c * PAGE

    def translate(self, va: int, write: bool) -> int:
        m, w, c = self.m, self.w, self.c
        if not m.sc.track_tlb:
            pa_page, why = m.walk(w, c, va)
            acc = {"va": f"{va:#x}", "tlb": f"not modelled (tables never change); walk: {why}"}
            self.info.accesses.append(acc)
            if pa_page is None:
                raise Violation("missing-mapping", f"CPU{c} accesses {va:#x}: {why}")
            pa = pa_page * PAGE + (va & (PAGE - 1))
            acc["pa"], acc["page"] = f"{pa:#x}", m.page_name(pa_page, w)
            return pa
        vp = va >> 12
        d = m.domain(c)
        hit = None
        for e in w.tlbs[d]:
            if e[0] == vp:
                hit = e
                break
        walk_pa, why = m.walk(w, c, va)
        acc = {"va": f"{va:#x}"}
        self.info.accesses.append(acc)
        if hit is None:
            if walk_pa is None:
                acc["tlb"] = f"miss; walk: {why}"
                raise Violation("missing-mapping", f"CPU{c} accesses {va:#x}: {why}")
            w.tlbs[d] = w.tlbs[d] | {(vp, walk_pa, c)}
            pa_page = walk_pa
            acc["tlb"] = f"miss; fill domain {d}: {vp:#x} -> {walk_pa:#x} ({why})"
        else:
            pa_page = hit[1]
            shared = " (filled by CPU%d, shared via CnP)" % hit[2] if hit[2] != c else ""
            acc["tlb"] = f"hit domain {d}: {vp:#x} -> {pa_page:#x}{shared}"
        pa = pa_page * PAGE + (va & (PAGE - 1))
        acc["pa"] = f"{pa:#x}"
        acc["page"] = m.page_name(pa_page, w)
        if pa_page in w.freed:
            raise Violation("freed-page", f"CPU{c} accesses freed physical page {pa_page:#x} "
                            f"through VA {va:#x} (stale TLB entry)")
        if hit is not None and pa_page != walk_pa:
            owner = m.owner(pa_page, w)
            if owner is not None and owner != c:
                raise Violation("attribution", f"code running on CPU{c} would access CPU{owner}'s "
                                f"copy through VA {va:#x}: the TLB entry{shared or ''} disagrees "
                                f"with CPU{c}'s tables ({why})")
            raise Violation("stale-mapping", f"CPU{c} uses a TLB entry for {va:#x} -> "
                            f"{pa_page:#x} that its tables no longer hold ({why})")
        return pa

    def load(self, pa: int) -> int:
        return self.w.mem.get(pa, 0)

    def store(self, pa: int, value: int) -> None:
        m, w, c = self.m, self.w, self.c
        if self.is_update and (pa & (PAGE - 1)) == VAR_OFF and pa >> 12 != OBJ_PA_PAGE:
            owner = m.owner(pa >> 12, w)
            if owner != c:
                raise Violation("attribution", f"an update running on CPU{c} writes CPU{owner}'s "
                                f"copy (PA {pa:#x})")
            w.attrib[c] += self.val
        w.mem[pa] = value
        for o in range(m.ncpus):  # a store to a monitored address clears other PEs' monitors
            cpu = w.cpus[o]
            if o != c and cpu[4] == pa:
                w.cpus[o] = cpu[:4] + (-1,) + cpu[5:]

    def preempt_count_add(self, delta: int) -> None:
        self.pcount_delta += delta

    def irq_save(self) -> None:
        self.irqoff = True

    def pcpu_mark(self, reg: int) -> None:
        self.marker = reg

    def pcpu_unmark(self) -> None:
        self.marker = -1

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
        w.cpus[c] = cpu[:5] + (value,)
