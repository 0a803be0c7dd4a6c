"""The alternative design for arm64's this_cpu ops: the register fix-up of the s390 series.

What it models: what the fix-up design costs in instructions, next to today's kernel and the
local mapping: one ``this_cpu_add`` in each form of :mod:`localmap.arch.arm64.thiscpu`
(``baseline-lse``, ``local-lse``, ``fixup-lse``) counted as compiled, the marker's cost per
protected op and the work it adds to every exception. :mod:`localmap.perf.designs` applies these
to Debian's images and the talk's profile; the checker's ``fixup-*`` scenarios say what it needs.

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


def insns_per_op(form: str, preempt_inc: int, preempt_dec: int) -> int:
    """Instructions of this_cpu_add in ``form`` as compiled (abstract preempt/mark steps expanded)."""
    n = 0
    for ins in tc.sequence(form, "add").insns:
        if ins.op == "alu_imm" and ins.imm > 0xFFF:
            n += 2  # DELTA does not fit an add immediate: movz/movn + add
            continue
        n += {"preempt_disable": preempt_inc, "preempt_enable": preempt_dec, "pcpu_mark": MARK,
              "pcpu_unmark": UNMARK}.get(ins.op, 1)
    return n


def fixup_removed(removed_fast: int, marked_sites: int) -> int:
    """What the fix-up design removes where the local mapping removes ``removed_fast``
    instructions: the same brackets, less the marker at each of ``marked_sites``."""
    return removed_fast - (MARK + UNMARK) * marked_sites


__all__ = ["ASSUMPTIONS", "EXC_ENTRY", "EXC_EXIT", "MARK", "UNMARK", "fixup_removed", "insns_per_op"]
