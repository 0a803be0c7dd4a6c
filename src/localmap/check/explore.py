"""Breadth-first explicit-state exploration with compact state keys and symmetry reduction.

What it models: the exhaustive search of every interleaving of :class:`Machine` actions from
the initial state. BFS makes the first violation found a shortest counterexample (in steps).

Reductions, all sound for the properties checked:
* register-only instructions (ALU, branches) are fused with the neighbouring visible
  instruction of the same context (they commute with every other action and do not change
  any property), and registers that are dead at the next instruction are forgotten -- both
  inside :meth:`Machine._exec`;
* symmetry: tasks with the same script are interchangeable, and so are the CPUs the scenario
  treats alike (:attr:`Scenario.symmetric_cpus`); a state's key is the smallest encoding over
  every renaming of those CPUs, with the tasks sorted, so states that differ only by such a
  renaming are one. Identical runnable tasks also yield one ``sched`` action;
* TLB and walk-cache evictions are not explored by default (see :mod:`localmap.check.model`).

Memory: a visited state is one ``marshal`` byte string (its key) and an index; the frontier
holds the exact encoding of the states still to expand, decoded when expanded. A counterexample
is the list of actions from the initial state; :func:`replay` re-executes it deterministically
and must reach the same violation. A scenario may bring its own machine with the same interface
(``sc.machine``): the code-patching scenarios of :mod:`localmap.check.ktr` do.
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from dataclasses import dataclass

from localmap.check.model import Machine, Scenario, StepInfo, Violation

RECENT_LIMIT = 200_000  # exact encodings remembered to skip canonicalising known states


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


def machine_for(sc, cpus: int | None, tasks: int | None, evictions: bool = False):
    """The machine that runs ``sc``: :class:`Machine`, or the scenario's own (``sc.machine``:
    code patching under text replication, :mod:`localmap.check.ktr`)."""
    own = getattr(sc, "machine", None)
    if own is not None:
        return own(cpus, tasks, evictions)
    return Machine(sc, cpus, tasks, evictions=evictions)


def explore(sc: Scenario, cpus: int | None = None, tasks: int | None = None,
            max_states: int = 5_000_000, symmetry: bool = True, evictions: bool = False,
            progress=None) -> Result:
    """Explore every interleaving of ``sc``. ``symmetry=False`` switches off the task and CPU
    symmetry reduction; ``evictions=True`` also explores TLB and walk-cache evictions;
    ``progress(states)`` is called every 20 000 new states."""
    m = machine_for(sc, cpus, tasks, evictions)
    t0 = time.perf_counter()
    init = m.initial()
    ids: dict[bytes, int] = {m.key(init, symmetry): 0}
    parent = array("q", [-1])
    acts: list = [None]
    interned: dict = {}
    queue = deque([(0, m.encode(init))])
    transitions = 0
    recent: set = set()

    def finish(verdict, sid=None, last=None, viol=None):
        res = Result(sc.name, verdict, len(acts), transitions, time.perf_counter() - t0,
                     m.ncpus, m.ntasks)
        if viol is not None:
            path = []
            k = sid
            while k > 0:
                path.append(acts[k])
                k = parent[k]
            path.reverse()
            if last is not None:
                path.append(last)
            res.actions = path
            res.violation, res.prop = viol.message, viol.prop
            res.steps = render(m, path)
        return res

    try:
        m.check_state(init)
    except Violation as v:
        return finish("unsafe", 0, None, v)
    while queue:
        sid, blob = queue.popleft()
        w = m.decode(blob)
        for act in m.actions(w):
            transitions += 1
            try:
                nw, _info = m.apply(w, act)
            except Violation as v:
                return finish("unsafe", sid, act, v)
            raw = nw.raw()
            blob = m.encode_raw(raw)
            if blob in recent:
                continue  # this exact state was seen: its key is known
            if len(recent) >= RECENT_LIMIT:
                recent.clear()
            recent.add(blob)
            nk = m.key_of_raw(raw, symmetry)
            if nk in ids:
                continue
            nid = len(acts)
            ids[nk] = nid
            parent.append(sid)
            acts.append(interned.setdefault(act, act))
            try:
                m.check_state(nw)
            except Violation as v:
                return finish("unsafe", nid, None, v)
            if nid >= max_states:
                raise RuntimeError(f"{sc.name}: more than {max_states} states")
            if progress is not None and nid % 20_000 == 0:
                progress(nid)
            queue.append((nid, blob))
    return finish("safe")


def replay(sc: Scenario, actions: list, cpus: int | None = None, tasks: int | None = None,
           evictions: bool = False):
    """Re-execute ``actions`` from the initial state. Returns ``(violation, infos, world)``
    where ``violation`` is the :class:`Violation` reached (or None) and ``infos`` the steps."""
    m = machine_for(sc, cpus, tasks, evictions or any(a[0].startswith("evict") for a in actions))
    w = m.initial()
    infos: list[StepInfo] = []
    try:
        m.check_state(w)
    except Violation as v:
        return v, infos, w
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
    v, infos, _ = replay(m.sc, actions, m.ncpus, m.ntasks, m.evictions)
    steps = [info.as_dict(i + 1) for i, info in enumerate(infos)]
    if v is not None and steps:
        steps[-1]["violation"] = f"{v.prop}: {v.message}"
    return steps
