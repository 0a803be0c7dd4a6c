"""The named scenarios: one family of :mod:`localmap.check.library` with a set of mechanisms
each, and its safe twin.

What it models: each scenario switches on exactly the mechanisms its name states; the verdict
comes only from exploring :mod:`localmap.check.model` (no expected verdict is stored). ``twin``
names the scenario that differs by exactly the mechanism in ``mechanism``.

Deliberate choices (reported):
* the twin of ``local-multi-insn-no-preempt`` is "the same sequence with preemption control".
  Because interrupts run ``__this_cpu_add`` on the same copy, ``preempt_disable`` alone is not
  enough for a multi-instruction op (``local-multi-insn-preempt-only`` shows the lost update);
  the control that makes it safe is the generic fallback's, interrupts off
  (``local-multi-insn-irqoff``). The same holds for 16-byte reads (``local-read-torn-*``).
* CnP: with the Arm ARM's rule (sharing across the Inner Shareable domain) SMT changes nothing,
  so ``local-lse-smt-cnp``/``-nocnp`` and ``cnp-no-smt``/``cnp-off`` are the same systems with
  a different topology label, and have the same verdicts.
"""

from __future__ import annotations

from localmap.check.ktr import ktr_scenario
from localmap.check.library import scenario
from localmap.check.model import Scenario

SCENARIOS: dict[str, Scenario] = {}
EXTRA: dict[str, Scenario] = {}


def _add(sc: Scenario, extra: bool = False) -> None:
    (EXTRA if extra else SCENARIOS)[sc.name] = sc


# -- the first fifteen: this_cpu forms and the page-table lifecycle
_add(scenario("offset-op", "baseline-preempt", "arm64 today (PREEMPT_COUNT): preempt_disable; "
              "mrs tpidr_el1; add; ldadd; preempt_enable; irqs run __this_cpu_add via tpidr_el1"))
_add(scenario("offset-op", "naive-no-preempt", "offset-register form without preemption control "
              "in a preemptible kernel", on=(), twin="baseline-preempt",
              mechanism="preempt_disable/preempt_enable around mrs tpidr_el1 .. ldadd"))
_add(scenario("local-op", "local-lse", "proposal: one ldadd on ptr + DELTA_THIS_CPU, no preempt "
              "control", on=()))
_add(scenario("local-op", "local-llsc", "proposal: ldxr/add/stxr/cbnz loop on the local mapping, "
              "no preempt control; monitor cleared on context switch and exception return",
              form="local-llsc"))
_add(scenario("cnp", "local-lse-smt-cnp", "local-lse on SMT siblings, TTBR1.CnP on",
              on=(), smt=True, twin="local-lse-smt-nocnp",
              mechanism="CnP off for TTBR1 (TLB entries not shared between PEs)"))
_add(scenario("cnp", "local-lse-smt-nocnp", "local-lse on SMT siblings, CnP off", smt=True))
_add(scenario("depopulate", "depopulate-no-tlbi", "depopulate a page (unmap local + global), free "
              "it, reuse the offset without invalidating the TLB", on=(), twin="depopulate-tlbi",
              mechanism="broadcast TLBI by VA after the unmap"))
_add(scenario("depopulate", "depopulate-tlbi", "depopulate with a broadcast TLBI by VA before "
              "freeing"))
_add(scenario("vmalloc", "vmalloc-no-sync", "vmalloc creates a new root entry in swapper; other "
              "CPUs' root copies are not synced", on=(), twin="vmalloc-sync",
              mechanism="sync of new root entries into every CPU's root copy"))
_add(scenario("vmalloc", "vmalloc-sync", "vmalloc with the new root entry synced before "
              "publication"))
_add(scenario("hotplug", "hotplug-map-after-online", "CPU k is online (schedulable) before its "
              "local tables exist", on=(), twin="hotplug-map-before-online",
              mechanism="order: build CPU k's local tables before it goes online"))
_add(scenario("hotplug", "hotplug-map-before-online", "CPU k's local tables built before it goes "
              "online"))
_add(scenario("kpti", "kpti-naive-root", "KPTI trampoline: TTBR1 - fixed offset, per-CPU roots "
              "allocated one page at a time", on=(), twin="kpti-pgtables-block",
              mechanism="per-CPU {tramp, reserved, root} block keeping the fixed offset"))
_add(scenario("kpti", "kpti-pgtables-block", "KPTI with a per-CPU {tramp, reserved, root} block"))
_add(scenario("multi-insn", "local-multi-insn-no-preempt", "a multi-instruction op (ldr; add; str "
              "on one copy, as a generic or 128-bit cmpxchg fallback) on the local mapping, no "
              "preempt control", on=(), twin="local-multi-insn-irqoff",
              mechanism="preemption control (interrupts off, as the generic fallback does)"))

# -- reads, remote accesses, the architecture, the real TTBR1 paths, sync races
_add(scenario("read-torn", "local-read-torn-no-preempt", "a 16-byte this_cpu read done as two "
              "loads through the local mapping, no preempt control; interrupts update both words",
              on=(), twin="local-read-torn-irqoff",
              mechanism="interrupts off around the two loads"))
_add(scenario("read-torn", "local-read-torn-irqoff", "the same read with local_irq_save/restore"))
_add(scenario("remote", "remote-atomic-percpu-ptr", "atomic64_add on per_cpu_ptr(ptr, k) from any "
              "CPU racing CPU k's own this_cpu_add (ldadd via the local mapping)"))
_add(scenario("remote", "remote-plain-rmw-percpu-ptr", "a plain read-modify-write on "
              "per_cpu_ptr(ptr, k) racing CPU k's own this_cpu_add", on=(),
              twin="remote-atomic-percpu-ptr", mechanism="an atomic for the remote update"))
_add(scenario("cnp", "cnp-no-smt", "local-lse, no SMT, TTBR1.CnP on every CPU (Arm ARM: entries "
              "shareable across the Inner Shareable domain)", on=(), twin="cnp-off",
              mechanism="CnP off for TTBR1 on every CPU"))
_add(scenario("cnp", "cnp-off", "local-lse, no SMT, CnP off (the design forces it off)"))
_add(scenario("ttbr1", "resume-swapper-ttbr1", "CPU k resumes from suspend: cpu_resume loads "
              "swapper_pg_dir into TTBR1 (mainline), then runs tasks", on=(),
              twin="resume-percpu-root", mechanism="cpu_resume loads CPU k's own root"))
_add(scenario("ttbr1", "resume-percpu-root", "CPU k resumes on its own root"))
_add(scenario("sync-race", "sync-race-nolock", "two vmallocs populate the same new top-level entry "
              "at once: check, populate, map, sync as separate steps", on=(),
              twin="sync-race-lock", mechanism="init_mm.page_table_lock around check, populate "
              "and sync"))
_add(scenario("sync-race", "sync-race-lock", "the same under the page-table lock"))
_add(scenario("hot-remove", "hot-remove-stale-copy", "memory hot-remove frees an empty table: "
              "swapper's entry cleared, tlbi vaae1is, table freed; per-CPU copies still point at "
              "it", on=("table-tlbi",), twin="hot-remove-clear-copies",
              mechanism="clear the entry in every CPU's copy before the invalidation"))
_add(scenario("hot-remove", "hot-remove-clear-copies", "hot-remove clears the entry in swapper and "
              "every copy, then tlbi vaae1is (walk caches), then frees the table"))
_add(scenario("publish", "publish-before-local-map", "alloc_percpu publishes the pointer before "
              "every CPU's local PTE for the new page exists", on=(),
              twin="publish-after-local-map", mechanism="map every CPU's local PTE before "
              "publishing"))
_add(scenario("publish", "publish-after-local-map", "alloc_percpu publishes after the global and "
              "every local mapping"))

# -- the alternative design (the register fix-up) and code patching under text replication
_add(scenario("fixup-op", "fixup-missed-path", "alternative design: marked offset register, fix-up "
              "on the IRQ return path only (the FIQ path returns without it)", on=(),
              twin="fixup-all-paths", mechanism="the register fix-up on every exception return "
              "path that can follow a preemption (here the FIQ one)"))
_add(scenario("fixup-op", "fixup-all-paths", "alternative design: marked offset register, fix-up "
              "on every exception return path"))
_add(ktr_scenario("ktr-patch-one-copy", "text replicated per node; the patch writes through the "
                  "text VA, i.e. only the patching CPU's copy (what __aarch64_insn_write does today)",
                  on=("icache-maint", "poke-tlbi", "kick-isb"), twin="ktr-patch-all-copies",
                  mechanism="write every copy through its own alias"))
_add(ktr_scenario("ktr-patch-all-copies", "text replicated per node; every copy written through its "
                  "own alias, D-cache cleaned and I-cache invalidated per copy, alias TLBI, isb on "
                  "every CPU, then publish"))

# -- extra twins and references (`localmap check all`)
for _sc in (
    scenario("multi-insn", "local-multi-insn-irqoff", "multi-instruction op with "
             "local_irq_save/restore"),
    scenario("multi-insn", "local-multi-insn-preempt-only", "multi-instruction op with "
             "preempt_disable only, interrupts update the same copy", on=(), preempt_only=True,
             twin="local-multi-insn-irqoff", mechanism="interrupts off (not just preemption)"),
    scenario("local-op", "local-llsc-no-clrex", "local LL/SC loop with a monitor that is NOT "
             "cleared on context switch / exception return", on=(), form="local-llsc",
             twin="local-llsc", mechanism="clrex on context switch and exception return"),
    scenario("offset-op", "baseline-nopc", "arm64 today without PREEMPT_COUNT (kernel not "
             "preemptible)", on=(), pc=False),
    scenario("offset-op", "baseline-llsc", "arm64 today (PREEMPT_COUNT), LL/SC loop", llsc=True),
    scenario("x86-op", "x86-seg", "x86-64 reference: one %gs-prefixed add"),
    scenario("offset-op", "baseline-read", "arm64 today: this_cpu_read (mrs tpidr_el1; add; ldr) "
             "with preempt control", op="read"),
    scenario("offset-op", "naive-read-no-preempt", "this_cpu_read through tpidr_el1 without "
             "preempt control: migrating after the mrs reads the old CPU's copy", on=(),
             op="read", twin="baseline-read", mechanism="preempt control around mrs .. ldr"),
    scenario("read-torn", "local-read-torn-preempt-only", "16-byte read as two loads with "
             "preempt_disable only; an interrupt updates both words in between", on=(),
             preempt_only=True, twin="local-read-torn-irqoff",
             mechanism="interrupts off (not just preemption)"),
    scenario("read-torn", "local-read-ldp", "16-byte read as one ldp (single-copy atomic with "
             "FEAT_LSE2) through the local mapping, no protection", on=(), form="local-lse"),
    scenario("read-torn", "local-read-ldxp", "16-byte read as an ldxp/stxp loop through the local "
             "mapping, no protection", on=(), form="local-llsc"),
    scenario("ttbr1", "secondary-boot-swapper", "CPU k boots: secondary_startup loads "
             "swapper_pg_dir (mainline)", on=(), path="secondary-boot",
             twin="secondary-boot-percpu-root", mechanism="secondary_startup loads CPU k's root"),
    scenario("ttbr1", "secondary-boot-percpu-root", "CPU k boots on its own root",
             path="secondary-boot"),
    scenario("ttbr1", "cnp-enable-swapper", "cpu_enable_swapper_cnp on CPU k: swapper_pg_dir with "
             "CnP (mainline)", on=(), path="cnp-enable", twin="cnp-enable-percpu-root",
             mechanism="keep CPU k's own root, CnP off"),
    scenario("ttbr1", "cnp-enable-percpu-root", "CnP enabling skipped: CPU k keeps its own root",
             path="cnp-enable"),
    scenario("hot-remove", "hot-remove-leaf-tlbi", "hot-remove clears every copy but invalidates "
             "the last level only: walk caches keep the freed table", on=("clear-copies",),
             twin="hot-remove-clear-copies", mechanism="tlbi vaae1is (all levels)"),
    scenario("hot-remove", "hot-remove-tlbi-before-clear", "hot-remove invalidates before clearing "
             "the copies: a speculative walk re-caches the entry", tlbi_first=True,
             twin="hot-remove-clear-copies", mechanism="order: clear the copies, then invalidate"),
    ktr_scenario("ktr-patch-all-no-icache", "every copy written and cleaned, no I-cache "
                 "invalidation", on=("all-copies", "poke-tlbi", "kick-isb"),
                 twin="ktr-patch-all-copies", mechanism="ic ivau through each copy's alias"),
    ktr_scenario("ktr-patch-all-no-tlbi", "every copy written, but the poke alias is remapped "
                 "without a TLB invalidation", on=("all-copies", "icache-maint", "kick-isb"),
                 twin="ktr-patch-all-copies", mechanism="local TLBI when the poke alias is unmapped"),
    ktr_scenario("ktr-patch-all-no-isb", "every copy written with cache maintenance, no isb on "
                 "the other CPUs before publishing", on=("all-copies", "icache-maint", "poke-tlbi"),
                 twin="ktr-patch-all-copies",
                 mechanism="kick_all_cpus_sync (context synchronisation on every CPU)"),
):
    _add(_sc, extra=True)

DEFAULT_SET = tuple(SCENARIOS)
ALL_SCENARIOS: dict[str, Scenario] = {**SCENARIOS, **EXTRA}
REGISTERED: dict[str, Scenario] = {}


def register(sc: Scenario) -> Scenario:
    """Make a scenario written outside the package known by name (``localmap check NAME``);
    registering the same name again replaces it (a built-in name is refused)."""
    if (sc.name in SCENARIOS or sc.name in EXTRA) and ALL_SCENARIOS[sc.name] is not sc:
        from localmap.errors import LocalmapError

        raise LocalmapError(f"a built-in scenario is named {sc.name!r}")
    REGISTERED[sc.name] = sc
    ALL_SCENARIOS[sc.name] = sc
    return sc


def resolve(names=None) -> list[Scenario]:
    """Scenarios by name (``None``: the default set; ``"all"``: every scenario)."""
    from localmap.errors import LocalmapError

    if names is None or len(names) == 0:
        return [SCENARIOS[n] for n in DEFAULT_SET]
    out = []
    for n in names:
        if not isinstance(n, str):  # a scenario object (Scenario, or one with its own machine)
            out.append(n)
            continue
        if n == "all":
            out += [sc for sc in ALL_SCENARIOS.values() if sc not in out]
            continue
        if n not in ALL_SCENARIOS:
            raise LocalmapError(f"unknown scenario {n!r} (see `localmap check --list`)")
        out.append(ALL_SCENARIOS[n])
    return out
