"""Scenario families: the kernel-side mechanisms, accesses and faults the checker knows, as data.

What it models: each family is a small function ``build(on, **params) -> dict`` of
:class:`~localmap.check.model.Scenario` fields, where ``on`` is the set of protective
mechanisms switched on (``FAMILIES[name].mechanisms`` lists them). A named scenario is a family
with a set of mechanisms; its safe twin has one more; ``Scenario.without(m)`` rebuilds it
with ``m`` removed, which is how the mutation tests show that every mechanism matters. Worker
steps are plain functions of a :class:`~localmap.check.model.Ctx`. Nothing here touches the
explorer: a new family (or a one-off :class:`Scenario`) is written the same way outside the
package (see ``docs/checker.md``).

Where the model follows Linux 6.12 (arm64), the step labels name the kernel function; the
design's side follows DESIGN.md (items 6-11, 14, 15). Deliberate choices:
* the hot-remove family follows ``free_empty_tables`` (clear the entry, ``tlbi vaae1is``, free
  the table page) and adds what per-CPU copies need: clear the entry in every copy before the
  table-level invalidation;
* the TTBR1 families model three of the audited paths (secondary boot, resume, CnP enabling):
  the mainline load of ``swapper_pg_dir`` against the design's load of the CPU's own root;
* the sync-race family has two vmalloc callers creating the same top-level entry; with the
  lock, the check, the population and the sync are one critical section (the kernel's
  ``init_mm.page_table_lock``), without it each is a separate step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from localmap.check.model import (
    G_BASE,
    HOT_PA_PAGE,
    HOT_SLOT,
    HOT_VA,
    LOCAL_PAGE,
    OBJ_PA_PAGE,
    OBJ_SLOT,
    OBJ_VA,
    PAGE,
    T_GLOBAL,
    T_HOT,
    T_LOCAL,
    T_OBJ,
    VAR_WORDS,
    Ctx,
    Item,
    Scenario,
    Step,
    unit_page,
)


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable
    mechanisms: tuple[str, ...]
    doc: str = ""


FAMILIES: dict[str, Family] = {}


def family(name: str, mechanisms=(), doc: str = ""):
    """Register ``build(on, **params) -> dict`` as family ``name``."""
    def deco(fn):
        FAMILIES[name] = Family(name, fn, tuple(mechanisms), doc or (fn.__doc__ or "").strip())
        return fn
    return deco


def scenario(fam: str, name: str, summary: str, on=None, *, twin=None, mechanism="",
             **params) -> Scenario:
    """A named scenario of family ``fam`` with mechanisms ``on`` (default: all of them)."""
    f = FAMILIES[fam]
    on = frozenset(f.mechanisms if on is None else on)
    unknown = on - set(f.mechanisms)
    if unknown:
        raise ValueError(f"{name}: family {fam} has no mechanism {sorted(unknown)}")
    kw = f.build(on, **params)
    return Scenario(name=name, summary=summary, family=fam, on=on,
                    params=tuple(sorted(params.items())), twin=twin, mechanism=mechanism, **kw)


# ----------------------------------------------------------------------------- helpers

LOCAL_IRQ = Item("raw-local", "add")     # __this_cpu_add in an interrupt, via the local mapping
OFFSET_IRQ = Item("raw-offset", "add")   # the same, through tpidr_el1 (today)


def when_tasks_past(item_no: int) -> Callable:
    """Guard: every task has finished its first ``item_no`` items."""
    return lambda ctx: ctx.tasks_past(item_no)


def when_idle(cpu: int) -> Callable:
    """Guard: CPU ``cpu`` (negative: from the last) runs no task and no interrupt."""
    return lambda ctx: ctx.idle(cpu % ctx.ncpus)


def raise_flag(name: str) -> Callable:
    return lambda ctx: ctx.raise_flag(name)


def publish(name: str = "published", what: str = "the object's address") -> Step:
    return Step(f"publish {what}", raise_flag(name))


def offline_cpu(cpu: int) -> Callable:
    """Setup: CPU ``cpu`` starts offline, with neither root copy nor private tables."""
    def fn(ctx: Ctx) -> None:
        k = cpu % ctx.ncpus
        ctx.set_online(k, False)
        ctx.drop_root(k)
        ctx.unmap(T_LOCAL + k, LOCAL_PAGE << 12)
    return fn


def build_local_tables(cpu: int) -> Callable:
    def fn(ctx: Ctx) -> None:
        k = cpu % ctx.ncpus
        ctx.map(T_LOCAL + k, LOCAL_PAGE << 12, unit_page(ctx.w.gen, k))
    return fn


# ----------------------------------------------------------------------------- this_cpu ops

@family("offset-op", ["preempt-control"])
def _offset_op(on, llsc=False, pc=True, op="add"):
    """arm64 today: mrs tpidr_el1; add; <op>, preempt control around it when PREEMPT_COUNT."""
    kind = "llsc" if llsc else "lse"
    if not pc:
        return dict(script=(Item(f"baseline-{kind}-nopc", op),), irq=OFFSET_IRQ,
                    preemptible=False)
    form = f"baseline-{kind}" if "preempt-control" in on else f"naive-{kind}"
    return dict(script=(Item(form, op),), irq=OFFSET_IRQ, preemptible=True)


@family("x86-op")
def _x86(on):
    """x86-64 reference: one %gs-prefixed read-modify-write."""
    return dict(script=(Item("x86-seg", "add"),), irq=OFFSET_IRQ, preemptible=True)


@family("local-op", ["clrex"])
def _local_op(on, form="local-lse"):
    """The proposal: one LSE atomic (or an LL/SC loop) on ptr + DELTA_THIS_CPU, no preempt
    control; interrupts run __this_cpu_add through the local mapping. An LL/SC loop is safe only
    because the exclusive monitor is cleared on context switch and exception return."""
    return dict(script=(Item(form, "add"),), irq=LOCAL_IRQ, preemptible=True,
                monitor_clear="clrex" in on or not form.endswith("llsc"))


@family("cnp", ["cnp-off"])
def _cnp(on, smt=False):
    """local-lse with TTBR1.CnP set or not on every CPU. Per the Arm ARM, CnP=1 lets every PE
    of the Inner Shareable domain with CnP=1 use entries another filled -- SMT or not."""
    return dict(script=(Item("local-lse", "add"),), irq=LOCAL_IRQ, preemptible=True,
                smt=smt, cnp="cnp-off" not in on)


@family("multi-insn", ["irqoff"])
def _multi(on, preempt_only=False):
    """A multi-instruction op (ldr; add; str on one copy, as a generic or 128-bit fallback) on
    the local mapping; interrupts update the same copy."""
    form = "multi-local-irqoff" if "irqoff" in on else \
        ("multi-local-preempt" if preempt_only else "multi-local")
    return dict(script=(Item(form, "add"),), irq=LOCAL_IRQ, preemptible=True)


@family("read-torn", ["irqoff"])
def _read_torn(on, form=None, preempt_only=False):
    """A 16-byte this_cpu read through the local mapping while interrupts update both words of
    the same copy (DESIGN.md item 14: wide reads need protection). ``form`` picks a
    single-access read instead (ldp with FEAT_LSE2, or an ldxp/stxp loop)."""
    if form is None:
        form = "multi-local-irqoff" if "irqoff" in on else \
            ("multi-local-preempt" if preempt_only else "multi-local")
    return dict(script=(Item(form, "read128"),), irq=Item("raw-local", "add128"),
                preemptible=True)


@family("remote", ["atomic"])
def _remote(on):
    """Every task does this_cpu_add through the local mapping, then an update of the last CPU's
    copy through per_cpu_ptr() (the global mapping): an atomic (safe) or a plain
    read-modify-write (a lost update against that CPU's own atomic updates)."""
    form = "atomic-lse" if "atomic" in on else "plain"
    return dict(script=(Item("local-lse", "add"),
                        Item(form, "add", access="remote", target=-1)),
                irq=Item("local-lse", "add"), preemptible=True,
                symmetric_cpus="all-but-last")


@family("fixup-op", ["fixup-fiq"])
def _fixup_op(on, form="fixup-lse"):
    """The alternative design (the s390 series' register fix-up, on arm64): no page tables, no
    preemption control; the task marks the register that holds ptr + tpidr_el1, and a task
    preempted mid-op through an IRQ or an FIQ (both end in preempt_schedule_irq) is corrected on
    its exception return when it resumes on another CPU -- on the IRQ path always, on the FIQ path
    with ``fixup-fiq``; interrupts run __this_cpu_add through tpidr_el1."""
    paths = ("irq", "fiq")
    return dict(script=(Item(form, "add"),), irq=OFFSET_IRQ, preemptible=True, exception_paths=paths,
                fixup_paths=paths if "fixup-fiq" in on else ("irq",))


# ----------------------------------------------------------------------------- page-table lifecycle

@family("depopulate", ["tlbi"])
def _depopulate(on):
    """Depopulate a page (unmap local + global), free it, reuse the offset."""
    def unmap(ctx):
        for c in range(ctx.ncpus):
            ctx.unmap(T_GLOBAL, G_BASE + c * PAGE)
            ctx.unmap(T_LOCAL + c, LOCAL_PAGE << 12)

    def tlbi(ctx):
        ctx.tlbi([LOCAL_PAGE << 12] + [G_BASE + c * PAGE for c in range(ctx.ncpus)])

    def free(ctx):
        ctx.free_pages(unit_page(ctx.w.gen, c) for c in range(ctx.ncpus))

    def repopulate(ctx):
        g = ctx.new_generation()
        for c in range(ctx.ncpus):
            ctx.map(T_GLOBAL, G_BASE + c * PAGE, unit_page(g, c))
            if ctx.w.roots[c] is not None:
                ctx.map(T_LOCAL + c, LOCAL_PAGE << 12, unit_page(g, c))
            for off in VAR_WORDS:
                ctx.write(unit_page(g, c) * PAGE + off, 0)
        ctx.raise_flag("repopulated")

    steps = [Step("free_percpu(obj) after its last use", None, when_tasks_past(1)),
             Step("pcpu_depopulate: clear the page's global PTEs (swapper) and local PTEs "
                  "(every CPU's private tables)", unmap, tag="unmap")]
    if "tlbi" in on:
        steps.append(Step("flush_tlb_kernel_range: tlbi vaale1is on the local and global VAs; "
                          "dsb ish", tlbi, tag="tlbi"))
    steps.append(Step("free the unit pages to the page allocator", free, tag="free"))
    steps.append(Step("page reuse: repopulate with new pages, map global + local on every CPU; "
                      "alloc_percpu returns the same offset (zeroed)", repopulate,
                      tag="repopulate"))
    return dict(script=(Item("local-lse", "add"), Item("local-lse", "add", need="repopulated")),
                workers=(tuple(steps),), symmetric_cpus="all")


def _vmap_new_entry(ctx: Ctx) -> None:
    ctx.set_root_entry(0, OBJ_SLOT, T_OBJ)
    ctx.map(T_OBJ, OBJ_VA, OBJ_PA_PAGE)


def sync_slot(slot: int) -> Callable:
    """The sync: copy swapper's entry for ``slot`` (whatever it is now) into every root copy."""
    def fn(ctx: Ctx) -> None:
        t = ctx.root_entry(0, slot)
        for c in range(1, ctx.ncpus):
            if ctx.w.roots[c] is not None:
                ctx.set_root_entry(c, slot, t)
    return fn


@family("vmalloc", ["sync"])
def _vmalloc(on):
    """vmalloc creates a new top-level entry in swapper; other CPUs read the object once its
    address is published."""
    steps = [Step("vmalloc: new root entry (split level) in swapper + leaf PTE", _vmap_new_entry)]
    if "sync" in on:
        steps.append(Step("sync the new root entry into every CPU's root copy",
                          sync_slot(OBJ_SLOT)))
    steps.append(publish())
    return dict(script=(Item("plain", "read", ptr=OBJ_VA, val=0, access="plain",
                             need="published"),),
                workers=(tuple(steps),), symmetric_cpus="non-boot")


@family("sync-race", ["lock"])
def _sync_race(on):
    """Two vmalloc callers whose objects fall in the same, still empty, top-level entry: each
    checks swapper's entry, populates it with a new table if empty, maps its object, syncs the
    entry into every copy and publishes. With the lock the four are one critical section."""
    workers = []
    for wid, name in enumerate("AB"):
        table = 5 + wid
        va = OBJ_VA + wid * PAGE

        def check(ctx, table=table):
            ctx.set_reg("seen", ctx.root_entry(0, OBJ_SLOT))

        def populate(ctx, table=table):
            seen = ctx.reg("seen")
            if seen is None:
                ctx.set_root_entry(0, OBJ_SLOT, table)
                ctx.set_reg("table", table)
                ctx.note(f"swapper slot {OBJ_SLOT} <- table {table}")
            else:
                ctx.set_reg("table", seen)
                ctx.note(f"already populated (table {seen}): use it")

        def map_obj(ctx, va=va, wid=wid):
            ctx.map(ctx.reg("table"), va, OBJ_PA_PAGE + wid)

        steps = []
        if "lock" in on:
            steps.append(Step("spin_lock(&init_mm.page_table_lock)",
                              lambda ctx: ctx.lock("ptl"), lambda ctx: not ctx.locked("ptl")))
        steps += [Step(f"vmalloc {name}: is swapper's entry for slot {OBJ_SLOT} empty?", check),
                  Step(f"vmalloc {name}: if so, populate it with a new table", populate),
                  Step(f"vmalloc {name}: map object {name}'s PTE in that table", map_obj),
                  Step(f"vmalloc {name}: sync swapper's entry into every CPU's root copy",
                       sync_slot(OBJ_SLOT))]
        if "lock" in on:
            steps.append(Step("spin_unlock(&init_mm.page_table_lock)",
                              lambda ctx: ctx.unlock("ptl")))
        steps.append(publish(f"{name} published", f"object {name}'s address"))
        workers.append(tuple(steps))
    script = tuple(Item("plain", "read", ptr=OBJ_VA + i * PAGE, val=0, access="plain",
                        need=f"{n} published") for i, n in enumerate("AB"))
    return dict(script=script, workers=tuple(workers), irq=None, symmetric_cpus="non-boot")


@family("hot-remove", ["clear-copies", "table-tlbi"])
def _hot_remove(on, tlbi_first=False):
    """Memory hot-remove frees an empty table below a top-level entry (arch_remove_memory ->
    free_empty_tables): swapper's entry is cleared, the walk caches invalidated, the table page
    freed. Per-CPU root copies hold the same entry; walkers may cache it and walk it
    speculatively at any time. ``tlbi_first`` issues the invalidation before clearing the
    copies (a speculative walk may then re-cache the entry)."""
    def setup(ctx):
        for r in range(ctx.ncpus):
            ctx.set_root_entry(r, HOT_SLOT, T_HOT)
        ctx.map(T_HOT, HOT_VA, HOT_PA_PAGE)
        ctx.write(HOT_PA_PAGE * PAGE + (HOT_VA & (PAGE - 1)), 0)

    def unmap(ctx):
        ctx.unmap(T_HOT, HOT_VA)
        ctx.tlbi([HOT_VA])

    def clear_swapper(ctx):
        ctx.set_root_entry(0, HOT_SLOT, None)

    def clear_copies(ctx):
        for c in range(1, ctx.ncpus):
            if ctx.w.roots[c] is not None:
                ctx.set_root_entry(c, HOT_SLOT, None)

    def tlbi_table(ctx):
        ctx.tlbi([HOT_VA], last_level=False)

    def tlbi_leaf(ctx):
        ctx.tlbi([HOT_VA])

    steps = [Step("arch_remove_memory: unmap the range's PTEs (unmap_hotplug_range), "
                  "tlbi vaale1is", unmap, when_tasks_past(1)),
             Step("free_empty_tables: the table is empty, clear swapper's entry", clear_swapper)]
    clear = Step("clear the same entry in every CPU's root copy", clear_copies)
    if "table-tlbi" in on:
        inval = Step("__flush_tlb_kernel_pgtable: tlbi vaae1is (all levels: walk caches too)",
                     tlbi_table)
    else:
        inval = Step("tlbi vaale1is (last level only: walk caches keep the table)", tlbi_leaf)
    if "clear-copies" in on:
        steps += [inval, clear] if tlbi_first else [clear, inval]
    else:
        steps.append(inval)
    steps.append(Step("free_hotplug_pgtable_page: the table page returns to the page allocator",
                      lambda ctx: ctx.free_table(T_HOT)))
    return dict(script=(Item("plain", "read", ptr=HOT_VA, val=0, access="plain"),),
                workers=(tuple(steps),), setup=(setup,), walk_cache_slots=(HOT_SLOT,),
                irq=None, symmetric_cpus="non-boot")


@family("publish", ["map-before-publish"])
def _publish(on):
    """alloc_percpu populates a new page: global mapping, then each CPU's local mapping; the
    pointer may be published (returned and stored) only once every CPU's local PTE exists."""
    def setup(ctx):
        for c in range(ctx.ncpus):
            ctx.unmap(T_GLOBAL, G_BASE + c * PAGE)
            ctx.unmap(T_LOCAL + c, LOCAL_PAGE << 12)
            for off in VAR_WORDS:
                ctx.w.mem.pop(unit_page(0, c) * PAGE + off, None)

    def map_global(ctx):
        for c in range(ctx.ncpus):
            ctx.map(T_GLOBAL, G_BASE + c * PAGE, unit_page(0, c))
            for off in VAR_WORDS:
                ctx.write(unit_page(0, c) * PAGE + off, 0)

    def map_local(c):
        return Step(f"pcpu_populate_chunk: map the local-slice page in CPU{c}'s private tables",
                    lambda ctx: ctx.map(T_LOCAL + c, LOCAL_PAGE << 12, unit_page(0, c)))

    def worker(ncpus):
        pub = publish("published", "the percpu pointer (alloc_percpu returns)")
        steps = [Step("pcpu_populate_chunk: map the new page in the global mapping (every unit)",
                      map_global)]
        locals_ = [map_local(c) for c in range(ncpus)]
        steps += (locals_ + [pub]) if "map-before-publish" in on else ([pub] + locals_)
        return tuple(steps)

    return dict(script=(Item("local-lse", "add", need="published"),), workers=(worker,),
                setup=(setup,), irq=None, symmetric_cpus="none")


@family("hotplug", ["map-before-online"])
def _hotplug(on):
    """CPU k (the last) comes online: its private local tables must exist before it runs."""
    def online(ctx):
        k = ctx.last_cpu
        ctx.copy_root(k)
        ctx.load_ttbr1(k, k)
        ctx.set_online(k, True)

    b = Step("build the last CPU's private local-window tables (map its unit's pages)",
             build_local_tables(-1))
    o = Step("the last CPU online: boots on its root copy and enters the scheduler", online)
    steps = (b, o) if "map-before-online" in on else (o, b)
    return dict(script=(Item("local-lse", "add"),), irq=LOCAL_IRQ, workers=(steps,),
                setup=(offline_cpu(-1),), symmetric_cpus="middle")


@family("kpti", ["pgtables-block"])
def _kpti(on):
    """KPTI trampoline: TTBR1 - fixed offset finds the trampoline tables, and back."""
    return dict(script=(Item("local-lse", "add"), Item("kpti-exit", "tramp", masked=True)),
                irq=LOCAL_IRQ, kpti="pgtables-block" if "pgtables-block" in on else "naive-root",
                symmetric_cpus="non-boot")


@family("ttbr1", ["percpu-root"])
def _ttbr1(on, path="resume"):
    """A path that loads TTBR1 on CPU k (the last): mainline loads swapper_pg_dir, the design
    must load CPU k's own root. ``path``: "resume" (cpu_resume -> __enable_mmu; the resume
    path itself runs this_cpu ops before any later fix-up could run), "secondary-boot"
    (secondary_startup -> __enable_mmu) or "cnp-enable" (cpu_enable_swapper_cnp, which also
    sets CnP)."""
    own = "percpu-root" in on
    k = -1

    def load(cnp):
        def fn(ctx):
            c = k % ctx.ncpus
            ctx.load_ttbr1(c, c if own else 0, cnp=cnp and not own)
        return fn

    def offline(ctx):
        c = k % ctx.ncpus
        ctx.set_online(c, False)
        ctx.flush_local(c)

    def online(ctx):
        ctx.set_online(k % ctx.ncpus, True)

    what = "its own root" if own else "swapper_pg_dir"
    setup: tuple = ()
    if path == "resume":
        steps = (Step("cpu_suspend on the last CPU (idle): context saved, TLB state lost",
                      offline, when_idle(k)),
                 Step(f"cpu_resume: __enable_mmu loads TTBR1 <- {what}", load(False)),
                 Step("__cpu_suspend_exit: back to the scheduler", online))
    elif path == "secondary-boot":
        def build(ctx):
            c = k % ctx.ncpus
            ctx.copy_root(c)
            build_local_tables(c)(ctx)
        setup = (offline_cpu(k),)
        steps = (Step("__cpu_up: build the last CPU's root copy and private tables", build),
                 Step(f"secondary_startup: __enable_mmu loads TTBR1 <- {what}", load(False)),
                 Step("secondary_start_kernel: the CPU enters the scheduler", online))
    elif path == "cnp-enable":
        label = ("cpu_enable_swapper_cnp: keeps its own root, CnP stays off" if own else
                 "cpu_enable_swapper_cnp: __cpu_replace_ttbr1(swapper_pg_dir, CnP)")
        steps = (Step(f"stop_machine on the last CPU, {label}", load(True), when_idle(k)),)
    else:
        raise ValueError(f"unknown TTBR1 path {path!r}")
    return dict(script=(Item("local-lse", "add"),), irq=LOCAL_IRQ, workers=(steps,),
                setup=setup, symmetric_cpus="middle")
