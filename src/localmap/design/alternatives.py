"""Three designs for arm64's this_cpu ops on the same images and profile: today's kernel, the
local mapping (the talk's design), and the register fix-up of the s390 series.

What it models: for each design, the instructions of one ``this_cpu_add`` (the sequences of
:mod:`localmap.arch.arm64.thiscpu`: ``baseline-lse``, ``local-lse``, ``fixup-lse``, counted as
compiled), what it removes from Debian's 6.12.117 arm64 images (the shipped site summary), what
it adds elsewhere (per exception for the fix-up; VA and page tables for the local mapping, on the
design's own accounting), what it predicts for the talk's profile (:mod:`localmap.perf.predict`),
and which checker scenarios say what it needs.

The fix-up design (FACTS.md §1: the register-number marker in lowcore and the fix-up on
interrupt) on arm64: ``pcpu_mark`` before the offset is read (``mov w16, #reg; strb w16,
[tsk, #off]``: 2 instructions), ``pcpu_unmark`` after the access (``strb wzr``: 1); every
exception entry records the CPU (1 store) and every return to EL1 tests the marker (``ldrb;
cbnz``: 2), the rare fix-up itself (a load of the new CPU's offset and an add to the saved
register) only when the marked task resumes on another CPU. A kernel without PREEMPT_COUNT
cannot be preempted inside the op and needs no marker, exactly as it needs no preempt bracket.

Deliberate simplifications: static instruction counts (one execution per site, as in
:mod:`localmap.perf.predict`); the marker and exception costs are the assumptions stated in
:data:`ASSUMPTIONS`, not measured.
"""

from __future__ import annotations

from localmap.arch.arm64 import thiscpu as tc

MARK = 2        # mov w16, #reg ; strb w16, [tsk, #PCPU_REG]
UNMARK = 1      # strb wzr, [tsk, #PCPU_REG]
EXC_ENTRY = 1   # record the CPU the exception was taken on
EXC_EXIT = 2    # ldrb marker ; cbnz -> fix-up

ASSUMPTIONS = [
    f"fix-up design: marking costs {MARK} instructions before and {UNMARK} after each protected op; "
    f"each EL1 exception costs {EXC_ENTRY} at entry and {EXC_EXIT} at return (the fix-up itself "
    "only after a migration).",
    "preempt bracket as compiled in Debian's 6.12 rt-arm64 image: 3 instructions before, 6 on the "
    "fast path after (costs.toml arch.arm64).",
    "local mapping: mrs tpidr_el1 becomes one mov #DELTA; VA and page tables from the design's "
    "accounting (160 CPUs, 5 chunks of 192 KiB units, 4K/48).",
    "image-wide, the fix-up design is charged the marker at every preempt-protected site (the shipped "
    "summary does not say which of them are replaceable), so its 'removed' is a lower bound; the "
    "profile rows use the exact per-function counts.",
]


def _count(form: str, preempt_inc: int, preempt_dec: int) -> int:
    """Instructions of this_cpu_add in ``form`` as compiled (abstract preempt/mark steps expanded)."""
    n = 0
    for ins in tc.sequence(form, "add").insns:
        if ins.op == "alu_imm" and ins.imm > 0xFFF:
            n += 2  # DELTA does not fit an add immediate: movz/movn + add
            continue
        n += {"preempt_disable": preempt_inc, "preempt_enable": preempt_dec, "pcpu_mark": MARK,
              "pcpu_unmark": UNMARK}.get(ins.op, 1)
    return n


def three_way(profile=None, cpus: int = 160) -> dict:
    """Rows for today / local mapping / fix-up on Debian's arm64 and rt-arm64 images (shipped
    summary) and the talk profile (default). Plain data."""
    from dataclasses import replace

    from localmap.design.arches import arch_cost
    from localmap.perf.costs import load_costs
    from localmap.perf.predict import facts_from_summary, load_summary, parse_profile, predict, talk_profile_path

    arm = load_costs()["arch"]["arm64"]
    inc, dec = int(arm["preempt_inc"]), int(arm["preempt_dec_fast"])
    prof = parse_profile(profile or talk_profile_path())
    flavours = {fl["flavour"]: fl for fl in load_summary()["flavours"]}
    rt, plain = flavours["rt-arm64"], flavours["arm64"]
    cost = arch_cost("arm64", cpus, 192 * 1024, 5)

    def image_removed(fl: dict, design: str) -> int:
        t = fl["totals"]
        if design == "today":
            return 0
        removed = t["removed_fast_path"]
        protected = t.get("removable_sites", t["protection"].get("preempt", 0))
        return removed if design == "local" else removed - (MARK + UNMARK) * protected

    def profile_delta(fl: dict, design: str) -> dict:
        facts = facts_from_summary(fl)
        if design == "today":
            facts = {n: replace(f, removed_fast=0) for n, f in facts.items()}
        elif design == "fixup":
            facts = {n: replace(f, removed_fast=max(0, f.removed_fast - (MARK + UNMARK) * f.removable))
                     for n, f in facts.items()}
        p = predict(prof, facts, image=fl["image"], preempt_model=fl["preempt_model"],
                    text_instructions=fl["text_instructions"], removed_fast_total=image_removed(fl, design))
        return {sec or "profile": v["model"] for sec, v in p.sections.items()}

    rows = []
    for design, form, name in (("today", "baseline-lse", "today's kernel (preempt bracket)"),
                               ("local", "local-lse", "local mapping (per-CPU page tables)"),
                               ("fixup", "fixup-lse", "register fix-up (s390 series, on arm64)")):
        rows.append({
            "design": design, "name": name, "form": form,
            "insns_per_op_pc": _count(form, inc, dec),
            # without PREEMPT_COUNT nothing preempts the op: no bracket and no marker
            "insns_per_op_nopc": _count("local-lse" if design == "local" else "baseline-lse-nopc", 0, 0),
            "removed_rt_arm64": image_removed(rt, design), "removed_arm64": image_removed(plain, design),
            "protected_sites_rt_arm64": rt["totals"]["protection"].get("preempt", 0),
            "per_exception": EXC_ENTRY + EXC_EXIT if design == "fixup" else 0,
            "local_va_bytes": cost["local_va_bytes"] if design == "local" else 0,
            "pgtable_extra_bytes": cost["pgtable_extra_bytes"] if design == "local" else 0,
            "profile_delta_rt_arm64": profile_delta(rt, design),
            "checker": {"today": ["baseline-preempt"],
                        "local": ["local-lse", "local-llsc", "local-lse-smt-nocnp", "depopulate-tlbi",
                                  "vmalloc-sync", "hotplug-map-before-online", "kpti-pgtables-block"],
                        "fixup": ["fixup-all-paths"]}[design],
            "unsafe_without": {"today": ["naive-no-preempt"],
                               "local": ["local-lse-smt-cnp", "depopulate-no-tlbi", "vmalloc-no-sync",
                                         "hotplug-map-after-online", "kpti-naive-root"],
                               "fixup": ["fixup-missed-path"]}[design],
        })
    return {"cpus": cpus, "rows": rows, "assumptions": ASSUMPTIONS,
            "images": {"rt-arm64": rt["image"], "arm64": plain["image"]}}


__all__ = ["ASSUMPTIONS", "three_way"]
