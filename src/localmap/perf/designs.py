"""Three designs for arm64's this_cpu ops on the same images and profile: today's kernel, the
local mapping (the talk's design), and the register fix-up of the s390 series.

What it models: nothing new. For each design it puts side by side the instructions of one
``this_cpu_add`` and the fix-up's marker and exception costs (:mod:`localmap.design.alternatives`),
what it removes from Debian's 6.12.117 arm64 images (the shipped site summary), the VA and page
tables the local mapping adds (:mod:`localmap.design.arches`), what each predicts for the talk's
profile (:mod:`localmap.perf.predict`), and which checker scenarios say what it needs.

Deliberate simplifications: static instruction counts (one execution per site, as in
:mod:`localmap.perf.predict`); the marker and exception costs are the assumptions stated in
:data:`localmap.design.alternatives.ASSUMPTIONS`, not measured.
"""

from __future__ import annotations

from localmap.design.alternatives import (ASSUMPTIONS, EXC_ENTRY, EXC_EXIT, fixup_removed,
                                          insns_per_op)

CPUS = 160   # the talk's machine (analysis.overhead.TALK_CPUS; perf does not import analysis)


def three_way(profile=None, cpus: int = CPUS) -> dict:
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
        return removed if design == "local" else fixup_removed(removed, protected)

    def profile_delta(fl: dict, design: str) -> dict:
        facts = facts_from_summary(fl)
        if design == "today":
            facts = {n: replace(f, removed_fast=0) for n, f in facts.items()}
        elif design == "fixup":
            facts = {n: replace(f, removed_fast=max(0, fixup_removed(f.removed_fast, f.removable)))
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
            "insns_per_op_pc": insns_per_op(form, inc, dec),
            # without PREEMPT_COUNT nothing preempts the op: no bracket and no marker
            "insns_per_op_nopc": insns_per_op("local-lse" if design == "local" else "baseline-lse-nopc", 0, 0),
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


__all__ = ["three_way"]
