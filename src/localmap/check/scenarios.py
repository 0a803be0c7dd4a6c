"""The named scenarios: one configuration of the abstract machine each, and its safe twin.

What it models: each scenario switches on exactly the mechanisms of DESIGN.md section 10-14
that its name states; the verdict comes only from exploring :mod:`localmap.check.model`. No
expected verdict is stored here. ``twin`` names the scenario that differs by exactly the
mechanism in ``mechanism`` (used by the tests to show each unsafe variant's safe counterpart).

Deliberate choice (reported): the issue's twin of ``local-multi-insn-no-preempt`` is "the same
sequence with preemption control". Because our model runs ``__this_cpu_add`` in interrupts on
the same copy, ``preempt_disable`` alone is not enough for a multi-instruction op (the extra
scenario ``local-multi-insn-preempt-only`` shows the lost update); the control that makes it
safe is the one the kernel's generic fallback uses, interrupts off (which also disables
preemption): ``local-multi-insn-irqoff``.
"""

from __future__ import annotations

from localmap.check.ktr import KtrScenario
from localmap.check.model import Scenario

_CORE = dict(irq_form="raw-local", preemptible=True)

SCENARIOS: dict[str, Scenario] = {}


def _add(sc: Scenario) -> None:
    SCENARIOS[sc.name] = sc


_add(Scenario("baseline-preempt", "arm64 today (PREEMPT_COUNT): preempt_disable; mrs tpidr_el1; "
              "add; ldadd; preempt_enable; irqs run __this_cpu_add via tpidr_el1",
              task_form="baseline-lse", irq_form="raw-offset", preemptible=True))
_add(Scenario("naive-no-preempt", "offset-register form without preemption control in a "
              "preemptible kernel", task_form="naive-lse", irq_form="raw-offset",
              preemptible=True, twin="baseline-preempt",
              mechanism="preempt_disable/preempt_enable around mrs tpidr_el1 .. ldadd"))
_add(Scenario("local-lse", "proposal: one ldadd on ptr + DELTA_THIS_CPU, no preempt control",
              task_form="local-lse", **_CORE))
_add(Scenario("local-llsc", "proposal: ldxr/add/stxr/cbnz loop on the local mapping, no preempt "
              "control; monitor cleared on context switch and exception return",
              task_form="local-llsc", **_CORE))
_add(Scenario("local-lse-smt-cnp", "local-lse on SMT siblings that share a TLB, CnP on",
              task_form="local-lse", smt=True, cnp=True, twin="local-lse-smt-nocnp",
              mechanism="CnP on TTBR1 (TLB entries shared between siblings)", **_CORE))
_add(Scenario("local-lse-smt-nocnp", "local-lse on SMT siblings, CnP off (entries private)",
              task_form="local-lse", smt=True, cnp=False, **_CORE))
_add(Scenario("depopulate-no-tlbi", "depopulate a page (unmap local + global), free it, reuse "
              "the offset without invalidating the TLB", task_form="local-lse", depopulate="no-tlbi",
              twin="depopulate-tlbi", mechanism="broadcast TLBI by VA after the unmap"))
_add(Scenario("depopulate-tlbi", "depopulate with a broadcast TLBI by VA before freeing",
              task_form="local-lse", depopulate="tlbi"))
_add(Scenario("vmalloc-no-sync", "vmalloc creates a new root entry in swapper; other CPUs' "
              "root copies are not synced", vmalloc="no-sync", twin="vmalloc-sync",
              mechanism="sync of new root entries into every CPU's root copy"))
_add(Scenario("vmalloc-sync", "vmalloc with the new root entry synced before publication",
              vmalloc="sync"))
_add(Scenario("hotplug-map-after-online", "CPU k is online (schedulable) before its local "
              "tables exist", task_form="local-lse", hotplug="map-after-online",
              twin="hotplug-map-before-online",
              mechanism="order: build CPU k's local tables before it goes online"))
_add(Scenario("hotplug-map-before-online", "CPU k's local tables built before it goes online",
              task_form="local-lse", hotplug="map-before-online"))
_add(Scenario("kpti-naive-root", "KPTI trampoline: TTBR1 - fixed offset, per-CPU roots "
              "allocated one page at a time", task_form="local-lse", kpti="naive-root",
              twin="kpti-pgtables-block",
              mechanism="per-CPU {tramp, reserved, root} block keeping the fixed offset"))
_add(Scenario("kpti-pgtables-block", "KPTI with a per-CPU {tramp, reserved, root} block",
              task_form="local-lse", kpti="pgtables-block"))
_add(Scenario("local-multi-insn-no-preempt", "a multi-instruction op (ldr; add; str on one copy, "
              "as a generic or 128-bit cmpxchg fallback) on the local mapping, no preempt control",
              task_form="multi-local", twin="local-multi-insn-irqoff",
              mechanism="preemption control (interrupts off, as the generic fallback does)",
              **_CORE))

# The alternative design (the s390 series' register fix-up, on arm64): no page tables, no
# preemption control; a task preempted mid-op through an IRQ or an FIQ (both end in
# preempt_schedule_irq on arm64) is corrected on its exception return when it resumes elsewhere.
_FIXUP = dict(task_form="fixup-lse", irq_form="raw-offset", preemptible=True,
              exception_paths=("irq", "fiq"), track_tlb=False)  # no page tables change here
_add(Scenario("fixup-missed-path", "alternative design: marked offset register, fix-up on the IRQ "
              "return path only (the FIQ path returns without it)", fixup_paths=("irq",),
              twin="fixup-all-paths", mechanism="the register fix-up on every exception return path "
              "that can follow a preemption (here the FIQ one)", **_FIXUP))
_add(Scenario("fixup-all-paths", "alternative design: marked offset register, fix-up on every "
              "exception return path", fixup_paths=("irq", "fiq"), **_FIXUP))

# Code patching under kernel text replication (check/ktr.py): every CPU executes its node's copy.
_add(KtrScenario("ktr-patch-one-copy", "text replicated per node; the patch writes through the text "
                 "VA, i.e. only the patching CPU's copy (what __aarch64_insn_write does today)",
                 patch_copies="one", twin="ktr-patch-all-copies",
                 mechanism="write every copy through its own alias"))
_add(KtrScenario("ktr-patch-all-copies", "text replicated per node; every copy written through its "
                 "own alias, D-cache cleaned and I-cache invalidated per copy, alias TLBI, isb on "
                 "every CPU, then publish"))

# Extra scenarios (not in the list): more twins and references.
EXTRA: dict[str, Scenario] = {}
for sc in (
    Scenario("local-multi-insn-irqoff", "multi-instruction op with local_irq_save/restore",
             task_form="multi-local-irqoff", **_CORE),
    Scenario("local-multi-insn-preempt-only", "multi-instruction op with preempt_disable only, "
             "interrupts update the same copy", task_form="multi-local-preempt",
             twin="local-multi-insn-irqoff", mechanism="interrupts off (not just preemption)",
             **_CORE),
    Scenario("local-llsc-no-clrex", "local LL/SC loop with a monitor that is NOT cleared on "
             "context switch / exception return", task_form="local-llsc", monitor_clear=False,
             twin="local-llsc", mechanism="clrex on context switch and exception return",
             **_CORE),
    Scenario("baseline-nopc", "arm64 today without PREEMPT_COUNT (kernel not preemptible)",
             task_form="baseline-lse-nopc", irq_form="raw-offset", preemptible=False),
    Scenario("baseline-llsc", "arm64 today (PREEMPT_COUNT), LL/SC loop", task_form="baseline-llsc",
             irq_form="raw-offset", preemptible=True),
    Scenario("x86-seg", "x86-64 reference: one %gs-prefixed add", task_form="x86-seg",
             irq_form="raw-offset", preemptible=True),
    KtrScenario("ktr-patch-all-no-icache", "every copy written and cleaned, no I-cache invalidation",
                icache_maint=False, twin="ktr-patch-all-copies",
                mechanism="ic ivau through each copy's alias"),
    KtrScenario("ktr-patch-all-no-tlbi", "every copy written, but the poke alias is remapped without "
                "a TLB invalidation", poke_tlbi=False, twin="ktr-patch-all-copies",
                mechanism="local TLBI when the poke alias is unmapped"),
    KtrScenario("ktr-patch-all-no-isb", "every copy written with cache maintenance, no isb on the "
                "other CPUs before publishing", kick_isb=False, twin="ktr-patch-all-copies",
                mechanism="kick_all_cpus_sync (context synchronisation on every CPU)"),
):
    EXTRA[sc.name] = sc

DEFAULT_SET = tuple(SCENARIOS)
ALL_SCENARIOS: dict[str, Scenario] = {**SCENARIOS, **EXTRA}


def resolve(names=None) -> list[Scenario]:
    """Scenarios by name (``None``: the default set; ``"all"``: every scenario)."""
    from localmap.errors import LocalmapError

    if names is None or len(names) == 0:
        return [SCENARIOS[n] for n in DEFAULT_SET]
    out = []
    for n in names:
        if n == "all":
            out += [sc for sc in ALL_SCENARIOS.values() if sc not in out]
            continue
        if n not in ALL_SCENARIOS:
            raise LocalmapError(f"unknown scenario {n!r} (see `localmap check --list`)")
        out.append(ALL_SCENARIOS[n])
    return out
