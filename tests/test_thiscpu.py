"""The this_cpu sequences and their interpreter, against independently written semantics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localmap.arch.arm64 import thiscpu as tc

PTR = 0x1000
OFF = 0x300  # this CPU's offset register value


class FlatEnv(tc.ThisCpuEnv):
    """Identity translation, one CPU, records every hook call."""

    def __init__(self, monitor_breaks: int = 0):
        self.mem: dict[int, int] = {}
        self.pcount = 0
        self.irqoff = 0
        self.monitor = None
        self.monitor_breaks = monitor_breaks  # how many stxr fail (monitor lost)
        self.calls: list[str] = []
        self.translated: list[int] = []
        self.ttbr1 = 0x42000
        self.ttbr1_log: list[int] = []

    def cpu(self):
        return 0

    def cpu_offset(self):
        self.calls.append("cpu_offset")
        return OFF

    def translate(self, va, write):
        self.translated.append(va)
        return va

    def load(self, pa):
        return self.mem.get(pa, 0)

    def store(self, pa, value):
        self.calls.append("store")
        self.mem[pa] = value

    def preempt_count_add(self, delta):
        self.pcount += delta
        self.calls.append(f"preempt{delta:+d}")
        assert self.pcount >= 0

    def irq_save(self):
        self.irqoff += 1

    def irq_restore(self):
        self.irqoff -= 1

    def monitor_arm(self, pa):
        self.monitor = pa

    def monitor_check(self, pa):
        ok = self.monitor == pa and self.monitor_breaks == 0
        if self.monitor_breaks:
            self.monitor_breaks -= 1
        self.monitor = None
        return ok

    def read_ttbr1(self):
        return self.ttbr1

    def write_ttbr1(self, value):
        self.ttbr1 = value
        self.ttbr1_log.append(value)

    def pcpu_mark(self, reg):
        self.calls.append(f"mark{reg}")

    def pcpu_unmark(self):
        self.calls.append("unmark")


def target(seq: tc.OpSeq) -> int:
    return {"offset": PTR + OFF, "segment": PTR + OFF, "local": PTR + tc.DEFAULT_DELTA,
            "direct": PTR, "fixup": PTR + OFF}[seq.addressing]


SCALAR_OPS = [op for op in tc.OPS if op not in tc.WIDE_OPS]
VALUES = st.integers(min_value=0, max_value=tc.MASK64)


@pytest.mark.parametrize("form", list(tc.FORMS))
@pytest.mark.parametrize("op", SCALAR_OPS)
@settings(max_examples=15, deadline=None)
@given(old=VALUES, val=VALUES, same=st.booleans())
def test_every_form_matches_reference_semantics(form, op, old, val, same):
    seq = tc.sequence(form, op)
    env = FlatEnv()
    a = target(seq)
    env.mem[a] = old
    cmp_old = old if same else (old ^ 1)
    regs = tc.run(seq, env, tc.initial_regs(ptr=PTR, val=val, old=cmp_old))
    new, ret = tc.expected_result(op, old, val, cmp_old)
    assert env.mem[a] == new
    if op != "write":
        assert regs[tc.X_RET] == ret
    # every access hits the copy chosen by the addressing mode, nothing else
    assert set(env.translated) == {a}
    assert env.pcount == 0 and env.irqoff == 0


def _forms_with(op):
    out = []
    for f in tc.FORMS:
        try:
            tc.sequence(f, op)
        except tc.ThisCpuFault:
            continue
        out.append(f)
    return out


def test_wide_reads_and_updates_exist_where_the_architecture_has_them():
    # a 16-byte read: one ldp (LSE2) in the LSE forms, an ldxp/stxp loop in the LL/SC forms,
    # two loads in the generic ones; a 16-byte add only as a multi-instruction sequence
    assert set(_forms_with("read128")) == set(tc.FORMS) - {"x86-seg"}
    assert {tc.FORMS[f][3] for f in _forms_with("add128")} == {"generic"}
    loads = lambda f: [i.op for i in tc.sequence(f, "read128").insns if i.is_mem]  # noqa: E731
    assert loads("local-lse") == ["ldp"]
    assert loads("local-llsc") == ["ldxp", "stxp"]
    assert loads("multi-local") == ["ldr", "ldr2"]


@pytest.mark.parametrize("form", _forms_with("read128"))
@settings(max_examples=10, deadline=None)
@given(lo=VALUES, hi=VALUES)
def test_read128_returns_both_words_and_leaves_memory(form, lo, hi):
    seq = tc.sequence(form, "read128")
    env = FlatEnv()
    a = target(seq)
    env.mem[a], env.mem[a + 8] = lo, hi
    regs = tc.run(seq, env, tc.initial_regs(ptr=PTR))
    assert (regs[tc.X_RET], regs[tc.X_RET2]) == (lo, hi)
    assert (env.mem[a], env.mem[a + 8]) == (lo, hi)
    assert env.pcount == 0 and env.irqoff == 0


@pytest.mark.parametrize("form", _forms_with("add128"))
def test_add128_adds_to_both_words(form):
    seq = tc.sequence(form, "add128")
    env = FlatEnv()
    a = target(seq)
    env.mem[a], env.mem[a + 8] = 5, tc.MASK64
    tc.run(seq, env, tc.initial_regs(ptr=PTR, val=3))
    assert (env.mem[a], env.mem[a + 8]) == (8, 2)


class _TraceEnv(FlatEnv):
    def __init__(self, monitor_breaks=0):
        super().__init__(monitor_breaks)
        self.events = []

    def store(self, pa, value):
        self.events.append(("store", pa, value))
        super().store(pa, value)

    def write_ttbr1(self, value):
        self.events.append(("ttbr1", value))
        super().write_ttbr1(value)


@pytest.mark.parametrize("form", list(tc.FORMS))
@pytest.mark.parametrize("op", list(tc.OPS))
def test_dead_registers_can_be_forgotten(form, op):
    """Overwriting every register that live_registers() calls dead, before every instruction,
    changes neither the path nor any store: the liveness the checker relies on is exact enough."""
    try:
        seq = tc.sequence(form, op)
    except tc.ThisCpuFault:
        return
    import random

    rnd = random.Random(hash((form, op)) & 0xFFFF)
    for breaks in (0, 1):
        runs = []
        for garble in (False, True):
            env = _TraceEnv(monitor_breaks=breaks)
            a = target(seq)
            env.mem[a], env.mem[a + 8] = 7, 9
            regs = tc.initial_regs(ptr=PTR, val=3, old=7, val2=4, old2=9)
            pc, pcs = 0, []
            while pc < len(seq):
                if garble:
                    live = tc.live_registers(seq)[pc]
                    regs = tuple(v if i in live else rnd.getrandbits(64) for i, v in enumerate(regs))
                pcs.append(pc)
                pc, regs = tc.step(seq, pc, regs, env)
            runs.append((pcs, env.events, dict(env.mem)))
        assert runs[0] == runs[1]
    # and the checker's canonical form really zeroes the dead ones
    regs = tuple(range(1, tc.NREGS + 1))
    assert tc.forget_dead(seq, len(seq), regs) == (0,) * tc.NREGS


@pytest.mark.parametrize("form", _forms_with("cmpxchg128"))
def test_cmpxchg128(form):
    seq = tc.sequence(form, "cmpxchg128")
    for match in (True, False):
        env = FlatEnv()
        a = target(seq)
        env.mem[a], env.mem[a + 8] = 5, 6
        regs = tc.run(seq, env, tc.initial_regs(ptr=PTR, val=7, val2=8, old=5,
                                                old2=6 if match else 9))
        assert (env.mem[a], env.mem[a + 8]) == ((7, 8) if match else (5, 6))
        assert (regs[tc.X_RET], regs[tc.X_RET2]) == (5, 6)


def test_llsc_loop_retries_after_monitor_loss():
    seq = tc.sequence("local-llsc", "add")
    env = FlatEnv(monitor_breaks=2)
    a = PTR + tc.DEFAULT_DELTA
    env.mem[a] = 10
    tc.run(seq, env, tc.initial_regs(ptr=PTR, val=3))
    assert env.mem[a] == 13
    assert env.calls.count("store") == 1  # the two failed stxr stored nothing
    assert env.translated.count(a) == 6   # 3 x (ldxr + stxr)


def test_forms_differ_only_by_named_mechanism():
    names = lambda f, op="add": [i.op for i in tc.sequence(f, op).insns]  # noqa: E731
    # baseline with PREEMPT_COUNT = naive + preempt steps; without PREEMPT_COUNT = naive
    base = names("baseline-lse")
    assert base[0] == "preempt_disable" and base[-1] == "preempt_enable"
    assert base[1:-1] == names("naive-lse") == names("baseline-lse-nopc")
    assert names("baseline-llsc")[1:-1] == names("naive-llsc")
    # local forms: no offset register, no preempt control, same body as the baseline
    for kind in ("lse", "llsc"):
        loc = names(f"local-{kind}")
        assert "mrs_off" not in loc and "preempt_disable" not in loc
        assert loc[1:] == names(f"naive-{kind}")[2:]
    # the generic fallback with irqs off differs from the bare multi-insn form by the irq pair
    assert names("multi-local-irqoff") == ["irq_save"] + names("multi-local") + ["irq_restore"]


@pytest.mark.parametrize("op", ["add", "inc", "dec", "and", "or", "xchg", "cmpxchg",
                                "add_return"])
def test_lse_and_x86_do_the_rmw_in_one_instruction(op):
    for form in ("local-lse", "x86-seg"):
        mem = [i for i in tc.sequence(form, op).insns if i.is_mem]
        assert len(mem) == 1 and mem[0].writes
    # while the generic/raw forms need several memory instructions on the same copy
    if op not in ("xchg",):
        assert sum(i.is_mem for i in tc.sequence("multi-local", op).insns) >= 2 or op == "write"


def test_x86_uses_segment_base_and_local_form_does_not_touch_offset_register():
    env = FlatEnv()
    tc.run(tc.sequence("x86-seg", "inc"), env, tc.initial_regs(ptr=PTR))
    assert env.calls.count("cpu_offset") == 1 and env.mem[PTR + OFF] == 1
    env = FlatEnv()
    tc.run(tc.sequence("local-lse", "inc"), env, tc.initial_regs(ptr=PTR))
    assert "cpu_offset" not in env.calls


def test_kpti_exit_sequence_switches_to_trampoline_and_back():
    env = FlatEnv()
    tc.run(tc.kpti_exit_sequence(0x2000), env, tc.initial_regs())
    assert env.ttbr1_log == [0x40000, 0x42000]


def test_errors_are_localmap_errors():
    from localmap.errors import LocalmapError

    with pytest.raises(LocalmapError):
        tc.sequence("no-such-form", "add")
    with pytest.raises(LocalmapError):
        tc.sequence("local-lse", "mul")
    with pytest.raises(LocalmapError):
        tc.run(tc.sequence("local-lse", "add"), tc.ThisCpuEnv(), tc.initial_regs())
