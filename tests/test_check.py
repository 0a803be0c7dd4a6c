"""The exhaustive checker: verdicts, twins, shortest and replayable counterexamples, CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from localmap.check import run_checks
from localmap.check.explore import explore, replay
from localmap.check.model import Machine, Violation
from localmap.check.scenarios import ALL_SCENARIOS, DEFAULT_SET, SCENARIOS

# The expected verdicts of the default scenarios (the code derives them by exploration only).
UNSAFE = {"naive-no-preempt", "local-lse-smt-cnp", "depopulate-no-tlbi", "vmalloc-no-sync",
          "hotplug-map-after-online", "kpti-naive-root", "local-multi-insn-no-preempt"}
SAFE = {"baseline-preempt", "local-lse", "local-llsc", "local-lse-smt-nocnp", "depopulate-tlbi",
        "vmalloc-sync", "hotplug-map-before-online", "kpti-pgtables-block"}
EXPECTED_PROPERTY = {
    "naive-no-preempt": "attribution", "local-lse-smt-cnp": "attribution",
    "depopulate-no-tlbi": "freed-page", "vmalloc-no-sync": "missing-mapping",
    "hotplug-map-after-online": "missing-mapping", "kpti-naive-root": "trampoline",
    "local-multi-insn-no-preempt": "lost-update"}
EXTRA_EXPECTED = {"local-multi-insn-irqoff": "safe", "local-multi-insn-preempt-only": "unsafe",
                  "local-llsc-no-clrex": "unsafe", "baseline-nopc": "safe",
                  "baseline-llsc": "safe", "x86-seg": "safe"}


def expected(name: str) -> str:
    return "unsafe" if name in UNSAFE else EXTRA_EXPECTED.get(name, "safe")


def test_default_set_is_the_issue_list():
    assert set(DEFAULT_SET) == UNSAFE | SAFE and len(DEFAULT_SET) == 15


@pytest.mark.parametrize("name", list(ALL_SCENARIOS))
def test_verdict_at_default_size(name):
    r = explore(ALL_SCENARIOS[name])
    assert r.verdict == expected(name), r.violation
    assert r.states > 0
    if name in EXPECTED_PROPERTY:
        assert r.prop == EXPECTED_PROPERTY[name]


GROW = [(n, dc, dt) for n in DEFAULT_SET for dc, dt in ((1, 0), (0, 1))]


@pytest.mark.parametrize("name,dc,dt", [
    pytest.param(n, dc, dt, marks=pytest.mark.slow) if (n, dc) == ("local-llsc", 1)
    else (n, dc, dt) for n, dc, dt in GROW])
def test_verdict_stable_when_cpus_or_tasks_grow(name, dc, dt):
    sc = SCENARIOS[name]
    r = explore(sc, sc.cpus + dc, sc.tasks + dt)
    assert r.verdict == expected(name), r.violation
    assert (r.cpus, r.tasks) == (sc.cpus + dc, sc.tasks + dt)
    small = explore(sc)
    assert r.states >= small.states  # a bigger configuration explores at least as much


@pytest.mark.parametrize("name", sorted(n for n, sc in ALL_SCENARIOS.items() if sc.twin))
def test_every_unsafe_scenario_has_a_safe_twin_differing_by_one_mechanism(name):
    sc = ALL_SCENARIOS[name]
    twin = ALL_SCENARIOS[sc.twin]
    assert explore(sc).verdict == "unsafe"
    assert explore(twin).verdict == "safe"
    ignore = {"name", "summary", "twin", "mechanism"}
    diff = [f.name for f in dataclasses.fields(sc) if f.name not in ignore
            and getattr(sc, f.name) != getattr(twin, f.name)]
    assert len(diff) == 1, diff


def test_every_unsafe_issue_scenario_has_a_twin():
    for name in UNSAFE:
        twin = SCENARIOS[name].twin
        assert twin in ALL_SCENARIOS and expected(twin) == "safe"


@pytest.mark.parametrize("name", sorted(n for n in ALL_SCENARIOS if expected(n) == "unsafe"))
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
    # the readable trace names CPU, instruction, TLB entry and physical page
    last = r.steps[-1]
    assert "violation" in last
    if last["accesses"] and "va" in last["accesses"][0]:
        acc = last["accesses"][0]
        assert {"va", "tlb"} <= set(acc)


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
                                  "local-multi-insn-no-preempt", "local-llsc-no-clrex"])
def test_counterexample_is_shortest(name):
    sc = ALL_SCENARIOS[name]
    r = explore(sc)
    m = Machine(sc)
    assert not _violation_within(m, m.initial(), len(r.actions) - 1)
    # symmetry reduction does not change the length
    assert len(explore(sc, symmetry=False).actions) == len(r.actions)


def test_symmetry_reduction_preserves_verdicts_and_reduces_states():
    for name in ("baseline-preempt", "local-llsc", "local-multi-insn-irqoff"):
        a, b = explore(ALL_SCENARIOS[name]), explore(ALL_SCENARIOS[name], symmetry=False)
        assert a.verdict == b.verdict == "safe"
        assert a.states < b.states


def test_lost_update_counterexample_is_a_real_interleaving():
    r = explore(SCENARIOS["local-multi-insn-no-preempt"])
    kinds = [a[0] for a in r.actions]
    # something (a preemption or an interrupt) separates the load from the store
    assert "preempt" in kinds or "irq" in kinds
    assert "lost-update" in r.steps[-1]["violation"]


def test_smt_counterexample_uses_an_entry_filled_by_the_sibling():
    r = explore(SCENARIOS["local-lse-smt-cnp"])
    tlb = r.steps[-1]["accesses"][0]["tlb"]
    assert "hit" in tlb and "CnP" in tlb


def test_run_checks_api_shape():
    res = run_checks(["vmalloc-no-sync", "vmalloc-sync"])
    assert [r["scenario"] for r in res] == ["vmalloc-no-sync", "vmalloc-sync"]
    for r in res:
        assert {"scenario", "verdict", "states", "seconds", "counterexample"} <= set(r)
    assert res[0]["verdict"] == "unsafe" and isinstance(res[0]["counterexample"], list)
    assert res[1]["verdict"] == "safe" and res[1]["counterexample"] is None
    assert len(run_checks()) == 15


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
    assert main(["check", "--list"]) == 0
    assert "local-multi-insn-no-preempt" in capsys.readouterr().out


def test_cli_text_shows_trace(capsys):
    from localmap.cli import main

    assert main(["check", "naive-no-preempt", "local-lse"]) == 0
    out = capsys.readouterr().out
    assert "unsafe" in out and "safe" in out and "states/s" in out
    assert "ldadd x1, x5, [x3]" in out and "VIOLATION attribution" in out
