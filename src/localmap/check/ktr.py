"""The checker's model of code patching under kernel text replication.

What it models: CPUs that each map the kernel text to their own node's copy (one CPU per node,
or per-CPU replication -- the same here), tasks that keep executing one patched instruction on
whatever CPU they run, and a patcher (static key, ftrace, kprobe or alternative: all end in
``__aarch64_insn_write``) that replaces the instruction and then *publishes* the change, after
which the kernel relies on every CPU executing the new instruction. Per CPU: an instruction cache
(one line, filled from the CPU's copy in memory, PIPT: invalidating a physical line removes it
from every CPU's cache), and a fetch buffer (an instruction already fetched, executed unless a
context synchronisation -- ``isb``, exception return, a context switch -- discards it). Per copy:
memory and a D-cache line (the write lands in the D-cache; ``dc cvau`` makes it visible to
instruction fetches). The patcher writes through a poke alias (a fixmap PTE) that it maps to a
copy's physical page and reads through its own TLB.

The patcher's steps, one mechanism each (the scenario's ``on``): write every copy, each through
its own alias (``all-copies``; without it only the copy the text VA gives the patching CPU, which
is what ``__aarch64_insn_write`` does today, since it maps ``__pa_symbol`` of the text address);
clean the D-cache of each written copy; invalidate the I-cache by each copy's alias
(``icache-maint``); unmap the alias with a local TLB invalidation before mapping the next copy
(``poke-tlbi``); make every CPU execute an ``isb`` (``kick-isb``: ``kick_all_cpus_sync``); then
publish. Property ``stale-code``: no CPU executes the old instruction after the change was
published. The scenarios have the shape of :mod:`localmap.check.library`'s (a family with
mechanisms, ``without(m)``) and bring their own machine to the explorer (``machine()``).

Deliberate simplifications: one instruction, one cache line, one copy per CPU; the patcher's
steps are atomic and do not occupy a CPU; maintenance completes at once (``dsb ish`` implicit);
the I-cache may drop its line at any time.
"""

from __future__ import annotations

import marshal
from dataclasses import dataclass, replace

from localmap.check.model import MARSHAL_VERSION, StepInfo, Violation
from localmap.errors import LocalmapError

MAX_CPUS = 6
MAX_TASKS = 6
RUNNABLE = -1
OLD, NEW = 0, 1
EMPTY = -1
MECHANISMS = ("all-copies", "icache-maint", "poke-tlbi", "kick-isb")
FAMILY = "ktr-patch"


@dataclass(frozen=True)
class KtrScenario:
    name: str
    summary: str
    on: frozenset = frozenset(MECHANISMS)
    cpus: int = 2
    tasks: int = 2
    twin: str | None = None
    mechanism: str = ""
    family: str = FAMILY
    params: tuple = ()
    # what the rest of the checker asks of any scenario
    kpti: str | None = None
    setup: tuple = ()
    roles: tuple | None = None
    workers: tuple = ()
    exception_paths: tuple = ()

    def machine(self, cpus: int | None = None, tasks: int | None = None,
                evictions: bool = False) -> "KtrMachine":
        return KtrMachine(self, cpus, tasks)

    def without(self, mechanism: str) -> "KtrScenario":
        if mechanism not in self.on:
            raise LocalmapError(f"{self.name}: no mechanism {mechanism!r} to remove")
        return replace(self, name=f"{self.name} without {mechanism}", on=self.on - {mechanism},
                       twin=None, mechanism="")


def ktr_scenario(name: str, summary: str, on=None, *, twin=None, mechanism="") -> KtrScenario:
    """A code-patching scenario with mechanisms ``on`` (default: all of them)."""
    on = frozenset(MECHANISMS if on is None else on)
    unknown = on - set(MECHANISMS)
    if unknown:
        raise ValueError(f"{name}: no mechanism {sorted(unknown)}")
    return KtrScenario(name, summary, on=on, twin=twin, mechanism=mechanism)


@dataclass(slots=True)
class KtrWorld:
    tasks: list        # per task: CPU it runs on, or RUNNABLE
    icache: list       # per CPU: version in its I-cache line (EMPTY, OLD, NEW)
    fetched: list      # per CPU: version in its fetch buffer (EMPTY, OLD, NEW)
    mem: list          # per copy: version in memory
    dcache: list       # per copy: version in the D-cache line (dirty if != mem)
    poke: int          # copy the poke alias PTE maps (EMPTY: unmapped)
    poke_tlb: int      # copy the patcher's TLB entry for the alias maps (EMPTY: none)
    worker: int
    phase: int         # 1 once the change is published

    def copy(self) -> "KtrWorld":
        return KtrWorld(list(self.tasks), list(self.icache), list(self.fetched), list(self.mem),
                        list(self.dcache), self.poke, self.poke_tlb, self.worker, self.phase)

    def raw(self) -> tuple:
        return (tuple(self.tasks), tuple(self.icache), tuple(self.fetched), tuple(self.mem),
                tuple(self.dcache), self.poke, self.poke_tlb, self.worker, self.phase)

    @classmethod
    def from_raw(cls, r: tuple) -> "KtrWorld":
        return cls(list(r[0]), list(r[1]), list(r[2]), list(r[3]), list(r[4]), r[5], r[6], r[7], r[8])


class KtrMachine:
    """Successor function, property and state keys of one text-replication scenario (the
    interface the explorer uses of :class:`localmap.check.model.Machine`)."""

    def __init__(self, sc: KtrScenario, cpus: int | None = None, tasks: int | None = None):
        self.sc = sc
        self.ncpus = sc.cpus if cpus is None else cpus
        self.ntasks = sc.tasks if tasks is None else tasks
        if not 2 <= self.ncpus <= MAX_CPUS:
            raise LocalmapError(f"--cpus must be between 2 and {MAX_CPUS} for {sc.name} (got {self.ncpus})")
        if not 1 <= self.ntasks <= MAX_TASKS:
            raise LocalmapError(f"--tasks must be between 1 and {MAX_TASKS} (got {self.ntasks})")
        self.evictions = False  # I-cache lines are dropped by the model itself (action "evict")
        self.worker_script = self._script()

    # the patching CPU is CPU 0; its text VA resolves to copy 0
    def _script(self):
        sc = self.sc
        steps = []
        every = "all-copies" in sc.on
        targets = range(self.ncpus) if every else [0]
        for k in targets:
            via = f"copy {k}'s alias" if every else "the text VA (the patching CPU's copy)"
            steps.append((f"map the poke alias to {via}", lambda w, k=k: self._map(w, k)))
            steps.append(("write the new instruction through the poke alias", self._write))
            steps.append(("dc cvau through the poke alias (D-cache -> point of unification)", self._clean))
            if "icache-maint" in sc.on:
                steps.append(("ic ivau through the poke alias (PIPT: that copy's line, every CPU)", self._inval))
            steps.append(("unmap the poke alias" + (" + local TLBI" if "poke-tlbi" in sc.on else " (no TLBI)"),
                          self._unmap))
        if "kick-isb" in sc.on:
            steps.append(("kick_all_cpus_sync: every CPU takes an IPI (context synchronisation)", self._kick))
        steps.append(("publish: the kernel now relies on the new instruction everywhere", self._publish))
        return steps

    def _alias(self, w: KtrWorld) -> int:
        if w.poke_tlb == EMPTY:
            if w.poke == EMPTY:
                raise Violation("missing-mapping", "the patcher writes through an unmapped poke alias")
            w.poke_tlb = w.poke
        return w.poke_tlb

    def _map(self, w, k):
        w.poke = k

    def _write(self, w):
        w.dcache[self._alias(w)] = NEW

    def _clean(self, w):
        c = self._alias(w)
        w.mem[c] = w.dcache[c]

    def _inval(self, w):
        c = self._alias(w)
        for cpu in range(self.ncpus):
            if self._copy_of(cpu) == c:
                w.icache[cpu] = EMPTY

    def _unmap(self, w):
        w.poke = EMPTY
        if "poke-tlbi" in self.sc.on:
            w.poke_tlb = EMPTY

    def _kick(self, w):
        w.fetched = [EMPTY] * self.ncpus

    def _publish(self, w):
        w.phase = 1

    def _copy_of(self, cpu: int) -> int:
        return cpu  # one copy per CPU (per node, one CPU per node)

    # ------------------------------------------------------------------ explorer interface
    def initial(self) -> KtrWorld:
        n = self.ncpus
        return KtrWorld(tasks=[RUNNABLE] * self.ntasks, icache=[EMPTY] * n, fetched=[EMPTY] * n,
                        mem=[OLD] * n, dcache=[OLD] * n, poke=EMPTY, poke_tlb=EMPTY, worker=0, phase=0)

    def check_state(self, w: KtrWorld) -> None:
        return None

    def encode(self, w: KtrWorld) -> bytes:
        return self.encode_raw(w.raw())

    def encode_raw(self, raw: tuple) -> bytes:
        return marshal.dumps(raw, MARSHAL_VERSION)

    def decode(self, blob: bytes) -> KtrWorld:
        return KtrWorld.from_raw(marshal.loads(blob))

    def key(self, w: KtrWorld, symmetry: bool = True) -> bytes:
        return self.key_of_raw(w.raw(), symmetry)

    def key_of_raw(self, raw: tuple, symmetry: bool = True) -> bytes:
        """Tasks all run the same code: with ``symmetry`` their order does not matter (the CPUs
        are not interchangeable: each executes its own copy, CPU 0 patches)."""
        if symmetry:
            raw = (tuple(sorted(raw[0])),) + raw[1:]
        return marshal.dumps(raw, MARSHAL_VERSION)

    def actions(self, w: KtrWorld) -> list[tuple]:
        acts = []
        running = {c: i for i, c in enumerate(w.tasks) if c >= 0}
        for c in range(self.ncpus):
            if c in running:
                acts.append(("exec", c) if w.fetched[c] != EMPTY else ("fetch", c))
                acts.append(("preempt", c))
            else:
                seen = False
                for i, t in enumerate(w.tasks):
                    if t == RUNNABLE and not seen:
                        seen = True  # identical tasks: one representative
                        acts.append(("sched", c, i))
            if w.icache[c] != EMPTY:
                acts.append(("evict", c))
        if w.worker < len(self.worker_script):
            acts.append(("worker",))
        return acts

    def apply(self, w: KtrWorld, act: tuple) -> tuple[KtrWorld, StepInfo]:
        n = w.copy()
        kind = act[0]
        if kind == "worker":
            label, effect = self.worker_script[n.worker]
            info = StepInfo("patcher", label, 0)
            try:
                effect(n)
            except Violation as v:
                v.info = info
                raise
            n.worker += 1
            return n, info
        c = act[1]
        if kind == "sched":
            n.tasks[act[2]] = c
            n.fetched[c] = EMPTY
            return n, StepInfo(f"task{act[2]}", f"scheduled on CPU{c} (exception return: context "
                               "synchronisation)", c)
        if kind == "preempt":
            i = next(i for i, t in enumerate(n.tasks) if t == c)
            n.tasks[i] = RUNNABLE
            n.fetched[c] = EMPTY
            return n, StepInfo(f"task{i}", "preempted (context switch)", c)
        if kind == "evict":
            n.icache[c] = EMPTY
            return n, StepInfo(f"CPU{c}", "I-cache drops the line", c)
        i = next(i for i, t in enumerate(n.tasks) if t == c)
        copy = self._copy_of(c)
        if kind == "fetch":
            how = "I-cache hit"
            if n.icache[c] == EMPTY:
                n.icache[c] = n.mem[copy]
                how = f"I-cache miss, filled from copy {copy} in memory"
            n.fetched[c] = n.icache[c]
            ver = "new" if n.fetched[c] == NEW else "old"
            return n, StepInfo(f"task{i}", f"fetches the patched instruction: {how} ({ver})", c)
        if kind == "exec":
            ver = n.fetched[c]
            n.fetched[c] = EMPTY
            info = StepInfo(f"task{i}", f"executes the {'new' if ver == NEW else 'old'} instruction", c)
            if ver == OLD and n.phase == 1:
                v = Violation("stale-code", f"CPU{c} executes the old instruction from copy {copy} after "
                                            "the change was published")
                v.info = info
                raise v
            return n, info
        raise ValueError(f"unknown action {act!r}")


__all__ = ["KtrMachine", "KtrScenario", "KtrWorld", "MECHANISMS", "ktr_scenario"]
