"""Breadth-first explicit-state exploration with hashed states and two reductions.

What it models: the exhaustive search of every interleaving of :class:`Machine` actions from
the initial state. BFS makes the first violation found a shortest counterexample (in steps).

Reductions, both sound for the properties checked:
* register-only instructions (ALU, branches) are fused with the neighbouring visible
  instruction of the same context (they commute with every other action and do not change
  any property) -- done inside :meth:`Machine._exec`;
* task symmetry: all tasks run the same script, so states that differ only by a permutation of
  tasks are one state (the visited set stores the sorted task tuple; the CPU side does not name
  tasks). Identical runnable tasks also yield one ``sched`` action.

A counterexample is the list of actions from the initial state; :func:`replay` re-executes it
deterministically and must reach the same violation. A scenario brings its own machine
(``make_machine``): :class:`Machine` for this_cpu and page-table scenarios,
:class:`localmap.check.ktr.KtrMachine` for code patching under text replication.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from localmap.check.model import Machine, Scenario, StepInfo, Violation


@dataclass
class Result:
    scenario: str
    verdict: str
    states: int
    transitions: int
    seconds: float
    cpus: int
    tasks: int
    violation: str | None = None
    prop: str | None = None
    actions: list | None = None
    steps: list | None = None

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "verdict": self.verdict, "states": self.states,
                "seconds": round(self.seconds, 4), "counterexample": self.steps,
                "cpus": self.cpus, "tasks": self.tasks, "transitions": self.transitions,
                "states_per_second": round(self.states_per_second, 1),
                "property": self.prop, "violation": self.violation}


def explore(sc: Scenario, cpus: int | None = None, tasks: int | None = None,
            max_states: int = 5_000_000, symmetry: bool = True) -> Result:
    m = sc.make_machine(cpus, tasks)
    t0 = time.perf_counter()
    init = m.initial()
    k0 = init.key(symmetry)
    parent: dict = {k0: None}
    states: dict = {k0: init}
    queue = deque([k0])
    transitions = 0

    def finish(verdict, key=None, last=None, viol=None):
        res = Result(sc.name, verdict, len(parent), transitions, time.perf_counter() - t0,
                     m.ncpus, m.ntasks)
        if viol is not None:
            acts = []
            k = key
            while parent[k] is not None:
                pk, a = parent[k]
                acts.append(a)
                k = pk
            acts.reverse()
            if last is not None:
                acts.append(last)
            res.actions = acts
            res.violation, res.prop = viol.message, viol.prop
            res.steps = render(m, acts)
        return res

    try:
        m.check_state(init)
    except Violation as v:
        return finish("unsafe", k0, None, v)
    while queue:
        key = queue.popleft()
        w = states[key]
        for act in m.actions(w):
            transitions += 1
            try:
                nw, _info = m.apply(w, act)
            except Violation as v:
                return finish("unsafe", key, act, v)
            nk = nw.key(symmetry)
            if nk in parent:
                continue
            parent[nk] = (key, act)
            states[nk] = nw
            try:
                m.check_state(nw)
            except Violation as v:
                return finish("unsafe", nk, None, v)
            if len(parent) > max_states:
                raise RuntimeError(f"{sc.name}: more than {max_states} states")
            queue.append(nk)
        del states[key]  # expanded: only the key (and its parent link) is kept
    return finish("safe")


def replay(sc: Scenario, actions: list, cpus: int | None = None, tasks: int | None = None):
    """Re-execute ``actions`` from the initial state. Returns ``(violation, infos)`` where
    ``violation`` is the :class:`Violation` reached (or None) and ``infos`` the steps."""
    m = sc.make_machine(cpus, tasks)
    w = m.initial()
    infos: list[StepInfo] = []
    for i, act in enumerate(actions):
        if act not in m.actions(w):
            raise ValueError(f"step {i}: action {act!r} is not enabled")
        try:
            w, info = m.apply(w, act)
        except Violation as v:
            infos.append(v.info if hasattr(v, "info") else StepInfo("?", str(act)))
            return v, infos, w
        infos.append(info)
        try:
            m.check_state(w)
        except Violation as v:
            return v, infos, w
    return None, infos, w


def render(m: Machine, actions: list) -> list[dict]:
    v, infos, _ = replay(m.sc, actions, m.ncpus, m.ntasks)
    steps = [info.as_dict(i + 1) for i, info in enumerate(infos)]
    if v is not None and steps:
        steps[-1]["violation"] = f"{v.prop}: {v.message}"
    return steps
