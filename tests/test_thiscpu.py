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


SCALAR_OPS = [op for op in tc.OPS if op != "cmpxchg128"]
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


@pytest.mark.parametrize("form", [f for f in tc.FORMS if f != "x86-seg"])
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
