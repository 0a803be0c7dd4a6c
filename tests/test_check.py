"""The exhaustive checker: verdicts, twins, mutations, shortest and replayable counterexamples,
symmetry and eviction reductions, the public scenario API, CLI."""

from __future__ import annotations

import json

import pytest

from localmap.check import run_checks
from localmap.check.explore import explore, replay
from localmap.check.library import FAMILIES
from localmap.check.model import Machine, Violation
from localmap.check.scenarios import ALL_SCENARIOS, DEFAULT_SET, SCENARIOS

# The expected verdicts (the code derives them by exploration only): (verdict, property).
EXPECTED = {
    # the first fifteen
    "baseline-preempt": ("safe", None), "naive-no-preempt": ("unsafe", "attribution"),
    "local-lse": ("safe", None), "local-llsc": ("safe", None),
    "local-lse-smt-cnp": ("unsafe", "attribution"), "local-lse-smt-nocnp": ("safe", None),
    "depopulate-no-tlbi": ("unsafe", "freed-page"), "depopulate-tlbi": ("safe", None),
    "vmalloc-no-sync": ("unsafe", "missing-mapping"), "vmalloc-sync": ("safe", None),
    "hotplug-map-after-online": ("unsafe", "missing-mapping"),
    "hotplug-map-before-online": ("safe", None),
    "kpti-naive-root": ("unsafe", "trampoline"), "kpti-pgtables-block": ("safe", None),
    "local-multi-insn-no-preempt": ("unsafe", "lost-update"),
    # reads, remote accesses, CnP, TTBR1 paths, sync races
    "local-read-torn-no-preempt": ("unsafe", "read-consistency"),
    "local-read-torn-irqoff": ("safe", None),
    "remote-atomic-percpu-ptr": ("safe", None),
    "remote-plain-rmw-percpu-ptr": ("unsafe", "lost-update"),
    "cnp-no-smt": ("unsafe", "attribution"), "cnp-off": ("safe", None),
    "resume-swapper-ttbr1": ("unsafe", "attribution"), "resume-percpu-root": ("safe", None),
    "sync-race-nolock": ("unsafe", "missing-mapping"), "sync-race-lock": ("safe", None),
    "hot-remove-stale-copy": ("unsafe", "freed-table"), "hot-remove-clear-copies": ("safe", None),
    "publish-before-local-map": ("unsafe", "missing-mapping"),
    "publish-after-local-map": ("safe", None),
    # the register fix-up design, code patching under kernel text replication
    "fixup-missed-path": ("unsafe", "attribution"), "fixup-all-paths": ("safe", None),
    "ktr-patch-one-copy": ("unsafe", "stale-code"), "ktr-patch-all-copies": ("safe", None),
    # extras
    "local-multi-insn-irqoff": ("safe", None),
    "local-multi-insn-preempt-only": ("unsafe", "lost-update"),
    "local-llsc-no-clrex": ("unsafe", "lost-update"), "baseline-nopc": ("safe", None),
    "baseline-llsc": ("safe", None), "x86-seg": ("safe", None),
    "baseline-read": ("safe", None), "naive-read-no-preempt": ("unsafe", "read-consistency"),
    "local-read-torn-preempt-only": ("unsafe", "read-consistency"),
    "local-read-ldp": ("safe", None), "local-read-ldxp": ("safe", None),
    "secondary-boot-swapper": ("unsafe", "attribution"), "secondary-boot-percpu-root": ("safe", None),
    "cnp-enable-swapper": ("unsafe", "attribution"), "cnp-enable-percpu-root": ("safe", None),
    "hot-remove-leaf-tlbi": ("unsafe", "freed-table"),
    "hot-remove-tlbi-before-clear": ("unsafe", "freed-table"),
    "ktr-patch-all-no-icache": ("unsafe", "stale-code"), "ktr-patch-all-no-tlbi": ("unsafe", "stale-code"),
    "ktr-patch-all-no-isb": ("unsafe", "stale-code"),
}
FIRST_FIFTEEN = list(EXPECTED)[:15]


def test_every_named_scenario_is_expected_and_the_default_set_has_them_all():
    assert set(ALL_SCENARIOS) == set(EXPECTED)
    assert list(DEFAULT_SET) == list(EXPECTED)[:33]
    assert set(FIRST_FIFTEEN) <= set(DEFAULT_SET)


@pytest.mark.parametrize("name", list(ALL_SCENARIOS))
def test_verdict_at_default_size(name):
    r = explore(ALL_SCENARIOS[name])
    assert (r.verdict, r.prop) == EXPECTED[name], r.violation
    assert r.states > 0


SLOW_GROW = {("local-llsc", 1, 0), ("kpti-pgtables-block", 1, 0), ("baseline-preempt", 1, 0),
             ("remote-atomic-percpu-ptr", 1, 0)}
GROW = [(n, dc, dt) for n in DEFAULT_SET for dc, dt in ((1, 0), (0, 1))]


@pytest.mark.parametrize("name,dc,dt", [
    pytest.param(n, dc, dt, marks=pytest.mark.slow) if (n, dc, dt) in SLOW_GROW
    else (n, dc, dt) for n, dc, dt in GROW])
def test_verdict_stable_when_cpus_or_tasks_grow(name, dc, dt):
    sc = SCENARIOS[name]
    r = explore(sc, sc.cpus + dc, sc.tasks + dt)
    assert (r.verdict, r.prop) == EXPECTED[name], r.violation
    assert (r.cpus, r.tasks) == (sc.cpus + dc, sc.tasks + dt)
    small = explore(sc)
    assert r.states >= small.states  # a bigger configuration explores at least as much


@pytest.mark.slow
def test_three_cpus_three_tasks_same_verdicts_for_every_scenario():
    for name, sc in ALL_SCENARIOS.items():
        r = explore(sc, 3, 3)
        assert r.verdict == EXPECTED[name][0], (name, r.violation)


@pytest.mark.parametrize("name", sorted(n for n, sc in ALL_SCENARIOS.items() if sc.twin))
def test_every_unsafe_scenario_has_a_safe_twin_differing_by_one_mechanism(name):
    sc = ALL_SCENARIOS[name]
    twin = ALL_SCENARIOS[sc.twin]
    assert EXPECTED[name][0] == "unsafe" and EXPECTED[sc.twin][0] == "safe"
    assert sc.family == twin.family
    # the twin switches one mechanism on (and leaves at most one partial variant of it, a
    # family parameter, back at its default), or it differs by one parameter only
    on_diff = twin.on - sc.on
    assert sc.on <= twin.on
    param_keys = {k for k, _ in set(sc.params) ^ set(twin.params)}
    assert (len(on_diff), len(param_keys)) in ((1, 0), (1, 1), (0, 1)), (on_diff, param_keys)


def test_every_unsafe_named_scenario_has_a_twin():
    for name, (verdict, _) in EXPECTED.items():
        if verdict == "unsafe" and name in DEFAULT_SET:
            assert ALL_SCENARIOS[name].twin, name


MUTATIONS = sorted((n, m) for n, sc in ALL_SCENARIOS.items() if EXPECTED[n][0] == "safe"
                   for m in sc.on)


@pytest.mark.parametrize("name,mechanism", MUTATIONS)
def test_removing_a_mechanism_flips_the_verdict(name, mechanism):
    sc = ALL_SCENARIOS[name]
    assert explore(sc).verdict == "safe"
    mutant = sc.without(mechanism)
    assert mutant.on == sc.on - {mechanism}
    r = explore(mutant)
    assert r.verdict == "unsafe", f"{name} without {mechanism} is still safe"


def test_every_mechanism_of_every_family_has_a_mutation_test():
    covered = {(ALL_SCENARIOS[n].family, m) for n, m in MUTATIONS}
    for fam in FAMILIES.values():
        for m in fam.mechanisms:
            assert (fam.name, m) in covered, (fam.name, m)


@pytest.mark.parametrize("name", sorted(n for n in ALL_SCENARIOS if EXPECTED[n][0] == "unsafe"))
def test_counterexample_replays_deterministically_to_the_same_violation(name):
    sc = ALL_SCENARIOS[name]
    r = explore(sc)
    for _ in range(2):
        v, infos, _ = replay(sc, r.actions)
        assert v is not None and v.prop == r.prop and v.message == r.violation
        assert len(infos) == len(r.actions) == len(r.steps)
    # every prefix is violation-free: the violation is reached exactly at the last step
    v, _, _ = replay(sc, r.actions[:-1])
    assert v is None
    last = r.steps[-1]
    assert "violation" in last
    if last["accesses"] and "va" in last["accesses"][0]:
        assert {"va", "tlb"} <= set(last["accesses"][0])


def _violation_within(m: Machine, w, depth: int) -> bool:
    """Independent check: plain DFS over every action sequence, no hashing, no symmetry."""
    if depth == 0:
        return False
    for act in m.actions(w):
        try:
            nw, _ = m.apply(w, act)
            m.check_state(nw)
        except Violation:
            return True
        if _violation_within(m, nw, depth - 1):
            return True
    return False


@pytest.mark.parametrize("name", ["naive-no-preempt", "local-lse-smt-cnp", "vmalloc-no-sync",
                                  "hotplug-map-after-online", "kpti-naive-root",
                                  "local-multi-insn-no-preempt", "local-llsc-no-clrex",
                                  "local-read-torn-no-preempt", "cnp-no-smt",
                                  "resume-swapper-ttbr1", "publish-before-local-map",
                                  "remote-plain-rmw-percpu-ptr"])
def test_counterexample_is_shortest(name):
    sc = ALL_SCENARIOS[name]
    r = explore(sc)
    m = Machine(sc)
    assert not _violation_within(m, m.initial(), len(r.actions) - 1)


@pytest.mark.parametrize("name", list(ALL_SCENARIOS))
def test_symmetry_reduction_keeps_verdict_and_counterexample_length(name):
    sc = ALL_SCENARIOS[name]
    a, b = explore(sc), explore(sc, symmetry=False)
    assert (a.verdict, a.prop) == (b.verdict, b.prop)
    assert a.states <= b.states
    if a.actions:
        assert len(a.actions) == len(b.actions)


@pytest.mark.parametrize("name,cpus,tasks", [pytest.param("local-llsc", 3, 2, marks=pytest.mark.slow),
                                             pytest.param("baseline-preempt", 3, 2,
                                                          marks=pytest.mark.slow),
                                             ("local-read-torn-irqoff", 3, 2),
                                             ("remote-atomic-percpu-ptr", 3, 2),
                                             pytest.param("kpti-pgtables-block", 3, 2,
                                                          marks=pytest.mark.slow),
                                             ("resume-percpu-root", 3, 2),
                                             ("local-multi-insn-preempt-only", 3, 2)])
def test_cpu_symmetry_reduces_states_and_keeps_verdicts_at_three_cpus(name, cpus, tasks):
    sc = ALL_SCENARIOS[name]
    a, b = explore(sc, cpus, tasks), explore(sc, cpus, tasks, symmetry=False)
    assert a.verdict == b.verdict == EXPECTED[name][0]
    if a.actions:
        assert len(a.actions) == len(b.actions)
    assert a.states < b.states


def test_symmetric_states_have_one_key():
    """Renaming the CPUs (and tasks) of a reachable state gives the same key."""
    sc = ALL_SCENARIOS["local-llsc"]
    m = Machine(sc, 3, 2)
    w = m.initial()
    for act in [("sched", 1, 0), ("exec", 1), ("sched", 2, 1), ("irq", 0), ("exec", 2)]:
        w, _ = m.apply(w, act)
    w2 = m.initial()
    for act in [("sched", 0, 1), ("exec", 0), ("sched", 2, 0), ("irq", 1), ("exec", 2)]:
        w2, _ = m.apply(w2, act)
    assert w.raw() != w2.raw()
    assert m.key(w) == m.key(w2)
    assert m.key(w, symmetry=False) != m.key(w2, symmetry=False)


@pytest.mark.parametrize("name", list(ALL_SCENARIOS))
def test_tlb_and_walk_cache_evictions_do_not_change_any_verdict(name):
    sc = ALL_SCENARIOS[name]
    a = explore(sc)
    b = explore(sc, evictions=True, symmetry=True)
    assert a.verdict == b.verdict
    assert b.transitions >= a.transitions


def test_lost_update_counterexample_is_a_real_interleaving():
    r = explore(SCENARIOS["local-multi-insn-no-preempt"])
    kinds = [a[0] for a in r.actions]
    assert "preempt" in kinds or "irq" in kinds
    assert "lost-update" in r.steps[-1]["violation"]


def test_cnp_counterexamples_use_an_entry_filled_by_another_pe():
    for name in ("local-lse-smt-cnp", "cnp-no-smt"):
        r = explore(ALL_SCENARIOS[name])
        tlb = r.steps[-1]["accesses"][0]["tlb"]
        assert "hit" in tlb and "CnP" in tlb
    # without SMT the two PEs are separate cores: the sharing comes from CnP alone
    assert not ALL_SCENARIOS["cnp-no-smt"].smt


def test_torn_read_returns_two_copies_or_a_changed_copy():
    r = explore(SCENARIOS["local-read-torn-no-preempt"])
    assert r.prop == "read-consistency"
    kinds = [a[0] for a in r.actions]
    # something runs between the two loads of the read: a migration or an interrupt
    assert "preempt" in kinds or "irq" in kinds
    insns = [i for s in r.steps for i in s["instructions"]]
    assert any("ldr x5" in i for i in insns) and "ldr x11" in r.steps[-1]["instructions"][-1]
    # a single-copy-atomic 16-byte load needs no protection at all
    assert explore(ALL_SCENARIOS["local-read-ldp"]).verdict == "safe"


def test_read_consistency_is_what_catches_the_torn_read(monkeypatch):
    from localmap.check import model

    monkeypatch.setattr(model._Env, "load", lambda self, pa: self.w.mem.get(pa, 0))
    assert explore(SCENARIOS["local-read-torn-no-preempt"]).verdict == "safe"


def test_remote_updates_are_judged_by_what_they_are():
    r = explore(SCENARIOS["remote-plain-rmw-percpu-ptr"])
    assert r.prop == "lost-update"
    last_cpu = SCENARIOS["remote-plain-rmw-percpu-ptr"].cpus - 1
    assert f"CPU{last_cpu}'s copy" in r.violation
    acts = [s["action"] for s in r.steps]
    assert any(a.startswith("plain add") for a in acts)
    # the atomic remote update is not an attribution bug
    assert explore(SCENARIOS["remote-atomic-percpu-ptr"]).verdict == "safe"


def test_resume_on_swapper_reaches_cpu0s_copy_through_the_walk():
    r = explore(SCENARIOS["resume-swapper-ttbr1"])
    last = r.steps[-1]
    assert any("swapper_pg_dir" in s["action"] for s in r.steps)
    assert "writes CPU0's copy" in r.violation
    assert last["cpu"] == SCENARIOS["resume-swapper-ttbr1"].cpus - 1


def test_hot_remove_counterexamples():
    r = explore(SCENARIOS["hot-remove-stale-copy"])
    assert "root copy" in r.violation and "freed" in r.violation
    r = explore(ALL_SCENARIOS["hot-remove-leaf-tlbi"])
    assert "walk cache" in r.violation
    r = explore(ALL_SCENARIOS["hot-remove-tlbi-before-clear"])
    assert any(a[0] == "walk" for a in r.actions)  # a speculative walk re-caches the entry


def test_sync_race_without_the_lock_loses_a_mapping():
    r = explore(SCENARIOS["sync-race-nolock"])
    labels = [s["action"] for s in r.steps]
    assert sum("populate it with a new table" in a and "swapper slot" in a for a in labels) == 2
    assert r.prop == "missing-mapping"


def test_publish_before_local_map_faults_on_a_cpu_without_its_pte():
    r = explore(SCENARIOS["publish-before-local-map"])
    assert "no PTE" in r.violation and "private local table" in r.violation


def test_run_checks_api_shape():
    res = run_checks(["vmalloc-no-sync", "vmalloc-sync"])
    assert [r["scenario"] for r in res] == ["vmalloc-no-sync", "vmalloc-sync"]
    for r in res:
        assert {"scenario", "verdict", "states", "seconds", "counterexample"} <= set(r)
    assert res[0]["verdict"] == "unsafe" and isinstance(res[0]["counterexample"], list)
    assert res[1]["verdict"] == "safe" and res[1]["counterexample"] is None
    assert len(run_checks()) == len(DEFAULT_SET) == 33


def test_cli_json_and_errors(capsys):
    from localmap.cli import main

    assert main(["check", "--json", "kpti-naive-root", "--cpus", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["scenario"] == "kpti-naive-root" and out[0]["verdict"] == "unsafe"
    assert out[0]["cpus"] == 3 and out[0]["counterexample"][-1]["violation"]
    assert main(["check", "no-such-scenario"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown scenario" in err
    assert main(["check", "--cpus", "99", "local-lse"]) == 2


def test_cli_list_shows_every_scenario_with_its_verdict(capsys):
    from localmap.cli import main

    assert main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    for name, (verdict, prop) in EXPECTED.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " ") or
                    ln.startswith(name + ":"))
        assert verdict in line, line
        if prop:
            assert prop in line, line


def test_cli_text_shows_trace(capsys):
    from localmap.cli import main

    assert main(["check", "naive-no-preempt", "local-lse"]) == 0
    out = capsys.readouterr().out
    assert "unsafe" in out and "safe" in out and "states/s" in out
    assert "ldadd x1, x5, [x3]" in out and "VIOLATION attribution" in out
