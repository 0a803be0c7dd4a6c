"""Counterexamples found by the checker, re-executed through the MMU model (localmap.design)."""

from __future__ import annotations

import pytest

from localmap.check.explore import explore, replay
from localmap.check.mmu_replay import replay_through_mmu, supported
from localmap.check.scenarios import ALL_SCENARIOS

THIS_CPU_UNSAFE = ["naive-no-preempt", "local-lse-smt-cnp", "cnp-no-smt",
                   "local-multi-insn-no-preempt",
                   "local-multi-insn-preempt-only", "local-llsc-no-clrex", "depopulate-no-tlbi"]


@pytest.mark.parametrize("name", THIS_CPU_UNSAFE)
@pytest.mark.parametrize("grow", [(0, 0), (1, 0), (0, 1)])
def test_counterexample_reaches_same_violation_through_mmu_model(name, grow):
    sc = ALL_SCENARIOS[name]
    cpus, tasks = sc.cpus + grow[0], sc.tasks + grow[1]
    r = explore(sc, cpus, tasks)
    assert r.verdict == "unsafe" and supported(sc, r.actions)
    mr = replay_through_mmu(sc, r.actions, cpus, tasks)
    assert mr.prop == r.prop, mr.message
    assert mr.step == len(r.actions)  # at the same, last, step
    # the MMU replay executed exactly the instructions the checker's trace shows
    checker_insns = [[i for i in s["instructions"] if not i.startswith("eret")]
                     for s in r.steps if s["instructions"]]
    assert mr.executed == checker_insns
    # and no violation before the last step
    assert replay_through_mmu(sc, r.actions[:-1], cpus, tasks).prop is None


def test_same_schedule_with_the_tlbi_is_clean_in_both_models():
    r = explore(ALL_SCENARIOS["depopulate-no-tlbi"])
    twin = ALL_SCENARIOS["depopulate-tlbi"]
    acts = list(r.actions)
    # the twin's worker has one more step (the TLBI) right after the unmap
    unmap = [i for i, a in enumerate(acts) if a == ("worker", 0)][1]
    acts.insert(unmap + 1, ("worker", 0))
    v, _, _ = replay(twin, acts)
    assert v is None
    assert replay_through_mmu(twin, acts).prop is None


@pytest.mark.parametrize("name", ["kpti-naive-root", "local-read-torn-no-preempt",
                                  "remote-plain-rmw-percpu-ptr", "resume-swapper-ttbr1",
                                  "hot-remove-stale-copy"])
def test_unsupported_schedules_are_refused(name):
    from localmap.errors import LocalmapError

    sc = ALL_SCENARIOS[name]
    acts = explore(sc).actions
    assert not supported(sc, acts)
    with pytest.raises(LocalmapError):
        replay_through_mmu(sc, acts)


def test_cli_mmu_option_reports_the_replay(capsys):
    import json

    from localmap.cli import main

    assert main(["check", "--json", "--mmu", "naive-no-preempt", "vmalloc-no-sync"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["mmu_replay"]["property"] == out[0]["property"] == "attribution"
    assert out[0]["mmu_replay"]["step"] == len(out[0]["counterexample"])
    assert out[1]["mmu_replay"] is None
