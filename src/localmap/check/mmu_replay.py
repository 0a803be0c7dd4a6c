"""Re-execute a checker counterexample through the MMU model of ``localmap.design``.

What it models: the checker's abstract machine (:mod:`localmap.check.model`) finds a shortest
schedule; this module replays the same schedule -- the same actions, the same this_cpu sequences
from :mod:`localmap.arch.arm64.thiscpu` with the same fusion of register-only instructions --
on a :class:`~localmap.design.machine.DesignMachine` (local forms) or
:class:`~localmap.design.machine.BaselineMachine` (offset-register forms): real 4K/48 page
tables, per-CPU roots, the TLB model with CnP sharing between SMT siblings, frames from the page
allocator. It judges the properties on that machine's own state (which frame a store reached,
what each copy holds, MMU faults), independently of the abstract model.

Scope (deliberate): schedules made of ``sched``/``preempt``/``irq``/``exec`` actions and the
depopulate worker's steps, on scenarios whose items are this_cpu updates (no reads, no remote
accesses, no other kernel worker, no TLB eviction -- the MMU model's TLB never evicts).
"CnP on" maps to the design machine's ``keep_cnp`` variant, since the correct design machine
keeps CnP off whenever per-CPU tables exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from localmap.arch.arm64 import thiscpu as tc
from localmap.check.model import DONE, RUNNABLE, VAR_OFF, Machine, Scenario
from localmap.errors import LocalmapError

SUPPORTED_ACTIONS = {"sched", "preempt", "irq", "exec", "worker"}


@dataclass
class MmuReplayResult:
    prop: str | None
    message: str | None
    step: int | None          # 1-based step at which the violation appeared
    executed: list            # per exec step: list of instruction texts


class _Viol(Exception):
    def __init__(self, prop: str, message: str):
        super().__init__(message)
        self.prop, self.message = prop, message


DEPOPULATE_TAGS = {"unmap", "tlbi", "free", "repopulate"}


def supported(sc: Scenario, actions: list) -> bool:
    if not isinstance(sc, Scenario):  # e.g. code patching under text replication: no this_cpu op
        return False
    if sc.kpti or sc.setup or sc.roles or sc.exception_paths:
        return False
    if any(step.tag not in DEPOPULATE_TAGS and step.effect is not None
           for wk in sc.workers for step in wk):
        return False
    if any(it.access != "this_cpu" or it.op not in tc.UPDATE_OPS for it in sc.script):
        return False
    if sc.irq is not None and (sc.irq.access != "this_cpu" or sc.irq.op != "add"):
        return False
    return all(a[0] in SUPPORTED_ACTIONS for a in actions)


def replay_through_mmu(sc: Scenario, actions: list, cpus: int | None = None,
                       tasks: int | None = None) -> MmuReplayResult:
    from localmap.arch.arm64.pgtable import Geometry
    from localmap.arch.arm64.mmu import MmuFault
    from localmap.design.machine import machine

    if not supported(sc, actions):
        raise LocalmapError(f"{sc.name}: only this_cpu-op schedules can be replayed through the "
                            "MMU model")
    am = Machine(sc, cpus, tasks)  # for the script and the sizes only
    ncpus, ntasks = am.ncpus, am.ntasks
    script = am.roles[0]
    seq0 = script[0].sequence()
    kind = "design" if seq0.addressing == "local" else "baseline"
    g = Geometry(4096, 48)
    faults = ["keep_cnp"] if (sc.cnp and kind == "design") else []
    tags = {step.tag for wk in am.workers for step in wk}
    if "unmap" in tags and "tlbi" not in tags:
        faults.append("skip_tlbi")
    m = machine(kind, g, ncpus, g.page_size, threads_per_core=2 if sc.smt else 1, cnp=sc.cnp,
                faults=faults)
    chunk = m.create_chunk()
    m.populate(chunk, 0, 1)
    ptr = m.ptr_of(chunk, VAR_OFF)
    delta = m.this_cpu_delta() & tc.MASK64
    frame_of = {chunk.frames[(c, 0)]: c for c in range(ncpus)}
    var_pa = {c: chunk.frames[(c, 0)] + VAR_OFF for c in range(ncpus)}
    page_mask = ~(g.page_size - 1)
    seqs = [tc.sequence(it.form, it.op, delta) for it in script]
    irq_seq = tc.sequence(sc.irq.form, "add", delta) if sc.irq else None

    # cpu, pc, regs, pcount, irqoff, item
    tasks_st = [[RUNNABLE, 0, (), 0, False, 0] for _ in range(ntasks)]
    irq_ctx: dict[int, list] = {}
    monitor: dict[int, int | None] = {c: None for c in range(ncpus)}
    attrib = [0] * ncpus
    executed: list = []
    worker_pc = 0
    flags: set = set()
    live = True
    freed_frames: set[int] = set()

    class Env(tc.ThisCpuEnv):
        def __init__(self, cpu: int, update: bool):
            self.c, self.update = cpu, update
            self.pdelta, self.irq = 0, None

        def cpu(self):
            return self.c

        def cpu_offset(self):
            return m.per_cpu_offset(self.c)

        def translate(self, va, write):
            try:
                pa = m.mmu.translate(self.c, va)
            except MmuFault as exc:
                raise _Viol("missing-mapping", str(exc)) from None
            frame = pa & page_mask
            if not m.frames.is_allocated(frame):
                raise _Viol("freed-page", f"CPU{self.c} reaches freed frame {frame:#x} "
                            f"through VA {va:#x}")
            if frame in freed_frames and m.mmu.walk(self.c, va) != pa:
                # the frame was freed by depopulate and the page allocator already reused it
                raise _Viol("freed-page", f"CPU{self.c} reaches frame {frame:#x}, freed by "
                            f"depopulate (since reused), through a stale TLB entry for {va:#x}")
            return pa

        def load(self, pa):
            return m.frames.load(pa, 8)

        def store(self, pa, value):
            owner = frame_of.get(pa & page_mask)
            if self.update and owner is not None and (pa & ~page_mask) == VAR_OFF:
                if owner != self.c:
                    raise _Viol("attribution", f"update on CPU{self.c} stored to CPU{owner}'s "
                                f"frame {pa:#x}")
                attrib[self.c] += 1
            m.frames.store(pa, 8, value)
            for o in range(ncpus):
                if o != self.c and monitor[o] == pa:
                    monitor[o] = None

        def preempt_count_add(self, d):
            self.pdelta += d

        def irq_save(self):
            self.irq = True

        def irq_restore(self):
            self.irq = False

        def monitor_arm(self, pa):
            monitor[self.c] = pa

        def monitor_check(self, pa):
            ok = monitor[self.c] == pa
            monitor[self.c] = None
            return ok

    def clear(c):
        if sc.monitor_clear:
            monitor[c] = None

    def running(c):
        for i, t in enumerate(tasks_st):
            if t[0] == c:
                return i
        return None

    def quiescent_check():
        if all(t[1] == 0 for t in tasks_st) and not irq_ctx and live:
            for c in range(ncpus):
                v = m.frames.load(var_pa[c], 8)
                if v != attrib[c]:
                    raise _Viol("lost-update", f"CPU{c}'s copy (frame {var_pa[c]:#x}) holds {v}, "
                                f"{attrib[c]} update(s) attributed")

    for n, act in enumerate(actions, 1):
        try:
            k = act[0]
            if k == "sched":
                _, c, i = act
                tasks_st[i][0] = c
                clear(c)
            elif k == "preempt":
                c = act[1]
                tasks_st[running(c)][0] = RUNNABLE
                clear(c)
            elif k == "worker":
                # the MMU model's depopulate unmaps, invalidates (unless skip_tlbi) and frees in
                # one call; the checker's separate tlbi/free steps are part of it
                name = am.workers[act[1]][worker_pc].tag
                worker_pc += 1
                if name == "unmap":
                    freed_frames.update(chunk.frames[(c, 0)] for c in range(ncpus))
                    m.depopulate(chunk, 0, 1)
                    live = False
                elif name == "repopulate":
                    m.populate(chunk, 0, 1)
                    frame_of.clear()
                    frame_of.update({chunk.frames[(c, 0)]: c for c in range(ncpus)})
                    var_pa.update({c: chunk.frames[(c, 0)] + VAR_OFF for c in range(ncpus)})
                    attrib[:] = [0] * ncpus
                    flags.add("repopulated")
                    live = True
            elif k == "irq":
                irq_ctx[act[1]] = [0, tc.initial_regs(ptr=ptr, val=1)]
            else:
                c = act[1]
                if c in irq_ctx:
                    seq, (pc, regs), env = irq_seq, irq_ctx[c], Env(c, True)
                else:
                    ti = running(c)
                    t = tasks_st[ti]
                    item = script[t[5]]
                    if item.need is not None and item.need not in flags:
                        raise LocalmapError(f"step {n}: task{ti} is blocked")
                    seq, env = seqs[t[5]], Env(c, item.op in tc.UPDATE_OPS)
                    pc, regs = t[1], t[2] or tc.initial_regs(ptr=ptr, val=item.val)
                texts, visible = [], False
                executed.append(texts)
                while pc < len(seq.insns):
                    ins = seq.insns[pc]
                    if not ins.local_only:
                        if visible:
                            break
                        visible = True
                    texts.append(f"{pc}: {ins.text}")
                    pc, regs = tc.step(seq, pc, regs, env)
                if c in irq_ctx:
                    if pc >= len(seq.insns):
                        del irq_ctx[c]
                        clear(c)
                    else:
                        irq_ctx[c] = [pc, regs]
                else:
                    t[3] += env.pdelta
                    t[4] = t[4] if env.irq is None else env.irq
                    if pc >= len(seq.insns):
                        t[5] += 1
                        t[1], t[2] = 0, ()
                        if t[5] >= len(script):
                            t[0] = DONE
                    else:
                        t[1], t[2] = pc, regs
            quiescent_check()
        except _Viol as v:
            return MmuReplayResult(v.prop, v.message, n, executed)
    return MmuReplayResult(None, None, None, executed)
