"""The register fix-up design: its sequences, its checker scenarios, its cost beside the others."""

from __future__ import annotations


from localmap.arch.arm64 import thiscpu as tc
from localmap.check.explore import explore
from localmap.check.library import OFFSET_IRQ
from localmap.check.model import G_BASE, PAGE, PTR, VAR_OFF, Item, Machine, Scenario
from localmap.check.scenarios import ALL_SCENARIOS
from localmap.design.alternatives import MARK, UNMARK
from localmap.perf.designs import three_way


def test_fixup_sequence_reads_the_offset_into_the_marked_register():
    seq = tc.sequence("fixup-lse", "add")
    ops = [i.op for i in seq.insns]
    assert ops[0] == "pcpu_mark" and ops[-1] == "pcpu_unmark" and "preempt_disable" not in ops
    mark, mrs = seq.insns[0], seq.insns[1]
    assert mark.rd == mrs.rd == tc.X_ADDR  # one register is offset-derived from the mrs to the access
    body = [i for i in seq.insns if i.is_mem]
    assert len(body) == 1 and body[0].rn == tc.X_ADDR


def test_exception_return_fixes_the_marked_register_after_a_migration():
    sc = ALL_SCENARIOS["fixup-all-paths"]
    m = Machine(sc)
    w = m.initial()
    w, _ = m.apply(w, ("sched", 0, 0))
    for _ in range(2):                       # pcpu_mark; mrs x3 + add x3 (fused)
        w, _ = m.apply(w, ("exec", 0))
    t = w.tasks[0]
    # CPU c's offset is (c + 1) pages: x3 = ptr + offset(CPU0) is CPU0's copy
    assert t[4][tc.X_ADDR] == PTR + 1 * PAGE == G_BASE + VAR_OFF and t[9] == tc.X_ADDR
    w, _ = m.apply(w, ("preempt", 0, "fiq"))
    w, info = m.apply(w, ("sched", 1, 0))
    assert w.tasks[0][4][tc.X_ADDR] == G_BASE + 1 * PAGE + VAR_OFF  # now CPU1's copy
    assert "fix-up" in info.action


def test_fixup_missed_path_counterexample_migrates_through_the_unfixed_path():
    r = explore(ALL_SCENARIOS["fixup-missed-path"])
    assert r.verdict == "unsafe" and r.prop == "attribution"
    assert ("preempt", 0, "fiq") in r.actions or ("preempt", 1, "fiq") in r.actions
    assert "no fix-up" in " ".join(s["action"] for s in r.steps)


def test_without_the_marker_the_fixup_cannot_help():
    sc = Scenario("t", "naive form, every path fixes up", script=(Item("naive-lse", "add"),),
                  irq=OFFSET_IRQ, exception_paths=("irq", "fiq"), fixup_paths=("irq", "fiq"))
    assert explore(sc).verdict == "unsafe"


def test_removing_the_fiq_fixup_is_the_missed_path():
    sc = ALL_SCENARIOS["fixup-all-paths"]
    assert sc.without("fixup-fiq").fixup_paths == ALL_SCENARIOS["fixup-missed-path"].fixup_paths
    assert explore(sc.without("fixup-fiq")).verdict == "unsafe"


def test_three_way_counts_follow_the_sequences_and_the_images():
    d = three_way()
    rows = {r["design"]: r for r in d["rows"]}
    # this_cpu_add as compiled: bracket 3 + 6, mrs, add, ldadd / movz+add, ldadd / mark, mrs, add, ldadd, unmark
    assert rows["today"]["insns_per_op_pc"] == 3 + 1 + 1 + 1 + 6
    assert rows["local"]["insns_per_op_pc"] == 2 + 1
    assert rows["fixup"]["insns_per_op_pc"] == MARK + 3 + UNMARK
    prot = rows["local"]["protected_sites_rt_arm64"]
    assert rows["fixup"]["removed_rt_arm64"] == rows["local"]["removed_rt_arm64"] - (MARK + UNMARK) * prot
    assert rows["today"]["removed_rt_arm64"] == 0 and rows["local"]["removed_arm64"] == 0
    assert rows["fixup"]["pgtable_extra_bytes"] == 0 < rows["local"]["pgtable_extra_bytes"]
    for sec, local in rows["local"]["profile_delta_rt_arm64"].items():
        fix = rows["fixup"]["profile_delta_rt_arm64"][sec]
        assert local <= fix <= 0 == rows["today"]["profile_delta_rt_arm64"][sec]
