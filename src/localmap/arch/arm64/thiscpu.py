"""this_cpu operation sequences, defined once, and the one interpreter that runs them.

What it models: the instruction sequences that implement ``this_cpu_<op>()`` (and the
non-atomic ``__this_cpu_<op>()``) on arm64 today (arch/arm64/include/asm/percpu.h: preempt
control around ``mrs tpidr_el1; add; <op>``, with an LSE atomic or an LL/SC loop), the
local-mapping forms of the LSF/MM/BPF 2026 proposal (``<op>`` on ``ptr + DELTA_THIS_CPU``, no
preempt control, no offset register), a naive form (baseline without preempt control), x86's
``%gs``-prefixed single instruction for reference, multi-instruction generic fallbacks (such as a
non-atomic 128-bit cmpxchg), 16-byte reads (one ``ldp``, single-copy atomic with FEAT_LSE2; an
``ldxp``/``stxp`` loop; or two loads) and a 16-byte add done as two read-modify-writes, atomics
on an ordinary kernel pointer (``atomic64_add(per_cpu_ptr(ptr, cpu))``) and the KPTI
trampoline's root lookup. :func:`live_registers` gives, per instruction, the registers still to
be read (the checker forgets the others, so states differing only in dead registers are one). Every consumer -- the per-CPU
page-table MMU model (``localmap.design``) and the explicit-state checker (``localmap.check``) --
executes these same sequences through :func:`step`; there is no second copy.

Deliberate differences from the kernel:
* Instructions are abstract: registers are 64-bit integers in a tuple indexed by ``X_*``; a
  ``cmp`` + ``b.ne`` pair is one ``bne`` instruction; ``preempt_disable``/``preempt_enable`` are
  one step each (they touch only the task's own count, so splitting them adds no behaviour; the
  conditional ``preempt_schedule`` call is the environment's business, see ``preempt_count_add``).
* Memory instructions call ``env.translate`` exactly once (an LSE atomic, ``ldxp``/``stxp`` and
  ``casp`` are single accesses of at most 16 aligned bytes, which never cross a page).
* The LSE forms use value-returning atomics (``ldadd`` etc.), as 6.12.117 does.

Interface. An environment supplies the hooks (subclass :class:`ThisCpuEnv`):

``cpu()`` current CPU; ``cpu_offset()`` its offset register (``tpidr_el1``, x86 ``%gs`` base);
``translate(va, write) -> pa`` on the current CPU (page tables + TLB, may raise);
``load(pa) -> int`` and ``store(pa, value)`` (64-bit words); ``preempt_count_add(delta)``;
``irq_save()`` / ``irq_restore()``; ``monitor_arm(pa)`` and ``monitor_check(pa) -> bool``
(exclusive monitor: ``stxr`` succeeds only if armed for ``pa``; the check disarms it);
``read_ttbr1()`` / ``write_ttbr1(value)`` (KPTI trampoline only); ``pcpu_mark(reg)`` /
``pcpu_unmark()`` (the fix-up design only: record in the running task which register holds a
value derived from the CPU offset, so that an exception return on another CPU can correct it).

The *fix-up* forms model the alternative design of the s390 series (FACTS.md §1) on arm64: the
offset register stays, no preemption control; the task marks the register that holds
``ptr + tpidr_el1`` while the op is in flight, and every exception return that resumes the task
on another CPU adds the difference of the two CPUs' offsets to that register. The offset is read
straight into the address register (``mrs x3, tpidr_el1; add x3, x3, x0``) so that one register
is offset-derived from the ``mrs`` to the access.

Example::

    from localmap.arch.arm64.thiscpu import sequence, initial_regs, run, X_RET
    seq = sequence("local-lse", "add")          # ldadd x1, x5, [x3] after add x3, x0, #DELTA
    regs = run(seq, env, initial_regs(ptr=0x1000, val=1))
    # or one instruction at a time, as the checker does:
    pc, regs = 0, initial_regs(ptr=0x1000, val=1)
    while pc < len(seq):
        pc, regs = step(seq, pc, regs, env)

``DELTA_THIS_CPU`` is a parameter of :func:`sequence` (``delta=``); the default
:data:`DEFAULT_DELTA` is only a placeholder constant for tests and the checker.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from localmap.errors import LocalmapError
from localmap.units import MASK64


# Register file (indices into the regs tuple).
X_PTR, X_VAL, X_OLD, X_ADDR, X_TMP, X_RET, X_ST, X_OFF, X_VAL2, X_OLD2, X_TMP2, X_RET2 = range(12)
NREGS = 12
REG_NAMES = ("x0", "x1", "x2", "x3", "x4", "x5", "w6", "x7", "x8", "x9", "x10", "x11")

DEFAULT_DELTA = 0x4000_0000  # placeholder DELTA_THIS_CPU (a multiple of any split-level entry)

OPS = ("read", "write", "add", "inc", "dec", "and", "or", "xchg", "cmpxchg", "add_return",
       "cmpxchg128", "read128", "add128")
UPDATE_OPS = ("add", "inc", "dec", "add_return", "add128")  # ops whose effect is "+val" on the copy
READ_OPS = ("read", "read128")    # ops that return the copy's value and write nothing
WIDE_OPS = ("cmpxchg128", "read128", "add128")  # 16-byte operands (two 64-bit words)

# Memory-touching mnemonics: (reads, writes)
_MEM = {"ldr": (True, False), "str": (False, True), "ldxr": (True, False),
        "stxr": (False, True), "ldxp": (True, False), "stxp": (False, True),
        "ldadd": (True, True), "ldclr": (True, True), "ldset": (True, True),
        "swp": (True, True), "cas": (True, True), "casp": (True, True),
        "seg_rmw": (True, True), "ldr2": (True, False), "str2": (False, True),
        "ldp": (True, False)}
LOAD_OPS = frozenset(k for k, (r, _w) in _MEM.items() if r)


class ThisCpuFault(LocalmapError):
    """An instruction the interpreter cannot execute (bad sequence or missing hook)."""


@dataclass(frozen=True, slots=True)
class Insn:
    """One abstract instruction. ``op`` selects the semantics (see :func:`step`)."""

    op: str
    rd: int = -1
    rn: int = -1
    rm: int = -1
    imm: int = 0
    target: int = -1
    alu: str = ""
    text: str = ""

    @property
    def is_mem(self) -> bool:
        return self.op in _MEM

    @property
    def writes(self) -> bool:
        return _MEM.get(self.op, (False, False))[1]

    @property
    def local_only(self) -> bool:
        """True when the instruction touches only registers (invisible to other actors)."""
        return self.op in ("alu", "alu_imm", "mov_imm", "bne", "cbnz", "nop")


@dataclass(frozen=True, slots=True)
class OpSeq:
    """An instruction sequence implementing ``op`` in ``form``."""

    form: str
    op: str
    insns: tuple[Insn, ...]
    preempt_control: bool
    irq_control: bool
    addressing: str  # "offset" (tpidr_el1), "local" (ptr + DELTA), "segment", "direct"

    def __len__(self) -> int:
        return len(self.insns)

    def __getitem__(self, i: int) -> Insn:
        return self.insns[i]

    def listing(self) -> str:
        return "\n".join(f"{i:2d}: {ins.text}" for i, ins in enumerate(self.insns))


class ThisCpuEnv:
    """Base class for environments; override the hooks your sequences use."""

    def cpu(self) -> int:
        raise ThisCpuFault("environment has no cpu() hook")

    def cpu_offset(self) -> int:
        raise ThisCpuFault("environment has no cpu_offset() hook")

    def translate(self, va: int, write: bool) -> int:
        raise ThisCpuFault("environment has no translate() hook")

    def load(self, pa: int) -> int:
        raise ThisCpuFault("environment has no load() hook")

    def store(self, pa: int, value: int) -> None:
        raise ThisCpuFault("environment has no store() hook")

    def preempt_count_add(self, delta: int) -> None:
        raise ThisCpuFault("environment has no preempt_count_add() hook")

    def irq_save(self) -> None:
        raise ThisCpuFault("environment has no irq_save() hook")

    def irq_restore(self) -> None:
        raise ThisCpuFault("environment has no irq_restore() hook")

    def monitor_arm(self, pa: int) -> None:
        raise ThisCpuFault("environment has no monitor_arm() hook")

    def monitor_check(self, pa: int) -> bool:
        raise ThisCpuFault("environment has no monitor_check() hook")

    def read_ttbr1(self) -> int:
        raise ThisCpuFault("environment has no read_ttbr1() hook")

    def write_ttbr1(self, value: int) -> None:
        raise ThisCpuFault("environment has no write_ttbr1() hook")

    def pcpu_mark(self, reg: int) -> None:
        raise ThisCpuFault("environment has no pcpu_mark() hook")

    def pcpu_unmark(self) -> None:
        raise ThisCpuFault("environment has no pcpu_unmark() hook")


# --------------------------------------------------------------------------- builders

def _r(i: int) -> str:
    return REG_NAMES[i]


def _alu(alu: str, rd: int, rn: int, rm: int) -> Insn:
    return Insn("alu", rd=rd, rn=rn, rm=rm, alu=alu, text=f"{alu} {_r(rd)}, {_r(rn)}, {_r(rm)}")


def _addr_insns(addressing: str, delta: int) -> list[Insn]:
    if addressing == "offset":
        return [Insn("mrs_off", rd=X_OFF, text=f"mrs {_r(X_OFF)}, tpidr_el1"),
                _alu("add", X_ADDR, X_PTR, X_OFF)]
    if addressing == "local":
        return [Insn("alu_imm", rd=X_ADDR, rn=X_PTR, imm=delta, alu="add",
                     text=f"add {_r(X_ADDR)}, {_r(X_PTR)}, #DELTA_THIS_CPU")]
    if addressing == "direct":
        return [Insn("alu_imm", rd=X_ADDR, rn=X_PTR, imm=0, alu="add",
                     text=f"mov {_r(X_ADDR)}, {_r(X_PTR)}")]
    if addressing == "fixup":
        return [Insn("pcpu_mark", rd=X_ADDR,
                     text=f"pcpu_mark {_r(X_ADDR)}  (mov w16, #{X_ADDR}; strb w16, [tsk, #PCPU_REG])"),
                Insn("mrs_off", rd=X_ADDR, text=f"mrs {_r(X_ADDR)}, tpidr_el1"),
                _alu("add", X_ADDR, X_ADDR, X_PTR)]
    raise ThisCpuFault(f"unknown addressing {addressing!r}")


def _pre(op: str) -> list[Insn]:
    """Operand preparation shared by all forms (inc/dec/and)."""
    if op == "inc":
        return [Insn("mov_imm", rd=X_VAL, imm=1, text=f"mov {_r(X_VAL)}, #1")]
    if op == "dec":
        return [Insn("mov_imm", rd=X_VAL, imm=MASK64, text=f"mov {_r(X_VAL)}, #-1")]
    return []


def _lse_body(op: str) -> list[Insn]:
    a = f"[{_r(X_ADDR)}]"
    if op == "read":
        return [Insn("ldr", rd=X_RET, rn=X_ADDR, text=f"ldr {_r(X_RET)}, {a}")]
    if op == "write":
        return [Insn("str", rd=X_VAL, rn=X_ADDR, text=f"str {_r(X_VAL)}, {a}")]
    if op in ("add", "inc", "dec"):
        return [Insn("ldadd", rd=X_RET, rn=X_ADDR, rm=X_VAL,
                     text=f"ldadd {_r(X_VAL)}, {_r(X_RET)}, {a}")]
    if op == "add_return":
        return [Insn("ldadd", rd=X_RET, rn=X_ADDR, rm=X_VAL,
                     text=f"ldadd {_r(X_VAL)}, {_r(X_RET)}, {a}"),
                _alu("add", X_RET, X_RET, X_VAL)]
    if op == "and":
        return [_alu("mvn", X_TMP, X_VAL, X_VAL),
                Insn("ldclr", rd=X_RET, rn=X_ADDR, rm=X_TMP,
                     text=f"ldclr {_r(X_TMP)}, {_r(X_RET)}, {a}")]
    if op == "or":
        return [Insn("ldset", rd=X_RET, rn=X_ADDR, rm=X_VAL,
                     text=f"ldset {_r(X_VAL)}, {_r(X_RET)}, {a}")]
    if op == "xchg":
        return [Insn("swp", rd=X_RET, rn=X_ADDR, rm=X_VAL,
                     text=f"swp {_r(X_VAL)}, {_r(X_RET)}, {a}")]
    if op == "cmpxchg":
        return [_alu("mov", X_RET, X_OLD, X_OLD),
                Insn("cas", rd=X_RET, rn=X_ADDR, rm=X_VAL,
                     text=f"cas {_r(X_RET)}, {_r(X_VAL)}, {a}")]
    if op == "read128":
        return [Insn("ldp", rd=X_RET, rn=X_ADDR,
                     text=f"ldp {_r(X_RET)}, {_r(X_RET2)}, {a}  (single-copy atomic: FEAT_LSE2)")]
    if op == "add128":
        raise ThisCpuFault("add128 exists only as a multi-instruction sequence (generic forms)")
    if op == "cmpxchg128":
        return [_alu("mov", X_RET, X_OLD, X_OLD), _alu("mov", X_RET2, X_OLD2, X_OLD2),
                Insn("casp", rd=X_RET, rn=X_ADDR, rm=X_VAL,
                     text=f"casp {_r(X_RET)}, {_r(X_RET2)}, {_r(X_VAL)}, {_r(X_VAL2)}, {a}")]
    raise ThisCpuFault(f"unknown op {op!r}")


def _llsc_body(op: str, base: int) -> list[Insn]:
    """LL/SC loop; ``base`` is the index of the first body instruction (branch targets)."""
    a = f"[{_r(X_ADDR)}]"
    ld = Insn("ldxr", rd=X_RET, rn=X_ADDR, text=f"ldxr {_r(X_RET)}, {a}")
    if op == "read":
        return [Insn("ldr", rd=X_RET, rn=X_ADDR, text=f"ldr {_r(X_RET)}, {a}")]
    if op == "write":
        return [Insn("str", rd=X_VAL, rn=X_ADDR, text=f"str {_r(X_VAL)}, {a}")]

    def tail(src: int, at: int) -> list[Insn]:
        return [Insn("stxr", rd=X_ST, rn=X_ADDR, rm=src,
                     text=f"stxr {_r(X_ST)}, {_r(src)}, {a}"),
                Insn("cbnz", rn=X_ST, target=base, text=f"cbnz {_r(X_ST)}, {base}")]

    if op in ("add", "inc", "dec"):
        return [ld, _alu("add", X_TMP, X_RET, X_VAL)] + tail(X_TMP, base + 2)
    if op == "add_return":
        return [ld, _alu("add", X_RET, X_RET, X_VAL)] + tail(X_RET, base + 2)
    if op == "and":
        return [ld, _alu("and", X_TMP, X_RET, X_VAL)] + tail(X_TMP, base + 2)
    if op == "or":
        return [ld, _alu("orr", X_TMP, X_RET, X_VAL)] + tail(X_TMP, base + 2)
    if op == "xchg":
        return [ld] + tail(X_VAL, base + 1)
    if op == "cmpxchg":
        done = base + 4
        return [ld, Insn("bne", rn=X_RET, rm=X_OLD, target=done,
                         text=f"cmp {_r(X_RET)}, {_r(X_OLD)}; b.ne {done}")] + tail(X_VAL, base + 2)
    if op == "read128":
        return [Insn("ldxp", rd=X_RET, rn=X_ADDR,
                     text=f"ldxp {_r(X_RET)}, {_r(X_RET2)}, {a}"),
                _alu("mov", X_VAL, X_RET, X_RET), _alu("mov", X_VAL2, X_RET2, X_RET2),
                Insn("stxp", rd=X_ST, rn=X_ADDR, rm=X_VAL,
                     text=f"stxp {_r(X_ST)}, {_r(X_VAL)}, {_r(X_VAL2)}, {a}"),
                Insn("cbnz", rn=X_ST, target=base, text=f"cbnz {_r(X_ST)}, {base}")]
    if op == "add128":
        raise ThisCpuFault("add128 exists only as a multi-instruction sequence (generic forms)")
    if op == "cmpxchg128":
        done = base + 5
        return [Insn("ldxp", rd=X_RET, rn=X_ADDR,
                     text=f"ldxp {_r(X_RET)}, {_r(X_RET2)}, {a}"),
                Insn("bne", rn=X_RET, rm=X_OLD, target=done,
                     text=f"cmp {_r(X_RET)}, {_r(X_OLD)}; b.ne {done}"),
                Insn("bne", rn=X_RET2, rm=X_OLD2, target=done,
                     text=f"cmp {_r(X_RET2)}, {_r(X_OLD2)}; b.ne {done}"),
                Insn("stxp", rd=X_ST, rn=X_ADDR, rm=X_VAL,
                     text=f"stxp {_r(X_ST)}, {_r(X_VAL)}, {_r(X_VAL2)}, {a}"),
                Insn("cbnz", rn=X_ST, target=base, text=f"cbnz {_r(X_ST)}, {base}")]
    raise ThisCpuFault(f"unknown op {op!r}")


def _generic_body(op: str, base: int) -> list[Insn]:
    """Non-atomic read-modify-write: several instructions on one copy (``__this_cpu_*``,
    ``this_cpu_generic_*`` fallbacks, a 128-bit cmpxchg done as two 64-bit halves)."""
    a = f"[{_r(X_ADDR)}]"
    ld = Insn("ldr", rd=X_RET, rn=X_ADDR, text=f"ldr {_r(X_RET)}, {a}")
    st = lambda src: Insn("str", rd=src, rn=X_ADDR, text=f"str {_r(src)}, {a}")  # noqa: E731
    if op == "read":
        return [ld]
    if op == "write":
        return [st(X_VAL)]
    if op in ("add", "inc", "dec"):
        return [ld, _alu("add", X_TMP, X_RET, X_VAL), st(X_TMP)]
    if op == "add_return":
        return [ld, _alu("add", X_RET, X_RET, X_VAL), st(X_RET)]
    if op == "and":
        return [ld, _alu("and", X_TMP, X_RET, X_VAL), st(X_TMP)]
    if op == "or":
        return [ld, _alu("orr", X_TMP, X_RET, X_VAL), st(X_TMP)]
    if op == "xchg":
        return [ld, st(X_VAL)]
    if op == "cmpxchg":
        done = base + 3
        return [ld, Insn("bne", rn=X_RET, rm=X_OLD, target=done,
                         text=f"cmp {_r(X_RET)}, {_r(X_OLD)}; b.ne {done}"), st(X_VAL)]
    ld2 = Insn("ldr2", rd=X_RET2, rn=X_ADDR, text=f"ldr {_r(X_RET2)}, [{_r(X_ADDR)}, #8]")
    if op == "read128":
        return [ld, ld2]
    if op == "add128":
        return [ld, ld2, _alu("add", X_RET, X_RET, X_VAL), _alu("add", X_RET2, X_RET2, X_VAL),
                st(X_RET),
                Insn("str2", rd=X_RET2, rn=X_ADDR, text=f"str {_r(X_RET2)}, [{_r(X_ADDR)}, #8]")]
    if op == "cmpxchg128":
        done = base + 6
        return [ld, Insn("ldr2", rd=X_RET2, rn=X_ADDR, text=f"ldr {_r(X_RET2)}, [{_r(X_ADDR)}, #8]"),
                Insn("bne", rn=X_RET, rm=X_OLD, target=done,
                     text=f"cmp {_r(X_RET)}, {_r(X_OLD)}; b.ne {done}"),
                Insn("bne", rn=X_RET2, rm=X_OLD2, target=done,
                     text=f"cmp {_r(X_RET2)}, {_r(X_OLD2)}; b.ne {done}"),
                st(X_VAL),
                Insn("str2", rd=X_VAL2, rn=X_ADDR, text=f"str {_r(X_VAL2)}, [{_r(X_ADDR)}, #8]")]
    raise ThisCpuFault(f"unknown op {op!r}")


def _x86_body(op: str) -> list[Insn]:
    if op not in ("read", "write", "add", "inc", "dec", "and", "or", "xchg", "cmpxchg",
                  "add_return"):
        raise ThisCpuFault(f"x86-seg form has no {op!r} (16-byte operands need cmpxchg16b "
                           "and preempt control)")
    alu = {"inc": "add", "dec": "add", "add_return": "xadd"}.get(op, op)
    mnem = {"read": "mov", "write": "mov", "add": "add", "inc": "add", "dec": "add", "and": "and",
            "or": "or", "xchg": "xchg", "cmpxchg": "cmpxchg", "add_return": "xadd"}[op]
    body = [Insn("seg_rmw", rd=X_RET, rn=X_PTR, rm=X_VAL, alu=alu,
                 text=f"{mnem} %gs:({_r(X_PTR)}), {_r(X_VAL)}")]
    if op == "add_return":
        body.append(_alu("add", X_RET, X_RET, X_VAL))
    return body


# form name -> (addressing, preempt_control, irq_control, body kind, doc)
FORMS: dict[str, tuple[str, bool, bool, str, str]] = {
    "baseline-lse": ("offset", True, False, "lse",
                     "arm64 today with PREEMPT_COUNT: preempt_disable; mrs tpidr_el1; add; LSE op; preempt_enable"),
    "baseline-llsc": ("offset", True, False, "llsc",
                      "arm64 today with PREEMPT_COUNT, LL/SC loop"),
    "baseline-lse-nopc": ("offset", False, False, "lse",
                          "arm64 today without PREEMPT_COUNT (preempt steps vanish; kernel not preemptible)"),
    "baseline-llsc-nopc": ("offset", False, False, "llsc",
                           "arm64 today without PREEMPT_COUNT, LL/SC loop"),
    "naive-lse": ("offset", False, False, "lse",
                  "offset-register form with no preemption control, run in a preemptible kernel"),
    "naive-llsc": ("offset", False, False, "llsc",
                   "naive LL/SC form, no preemption control, preemptible kernel"),
    "local-lse": ("local", False, False, "lse",
                  "proposal: one LSE atomic on ptr + DELTA_THIS_CPU, no preempt control"),
    "local-llsc": ("local", False, False, "llsc",
                   "proposal: LL/SC loop on ptr + DELTA_THIS_CPU, no preempt control"),
    "x86-seg": ("segment", False, False, "x86",
                "x86-64 reference: one %gs-prefixed instruction"),
    "raw-offset": ("offset", False, False, "generic",
                   "__this_cpu_* today: non-atomic RMW via tpidr_el1 (caller has irqs/preempt off)"),
    "raw-local": ("local", False, False, "generic",
                  "__this_cpu_* with the proposal: non-atomic RMW via the local mapping"),
    "multi-local": ("local", False, False, "generic",
                    "several instructions on one copy via the local mapping, no preempt control"),
    "multi-local-preempt": ("local", True, False, "generic",
                            "several instructions on one copy via the local mapping, preempt_disable"),
    "multi-local-irqoff": ("local", False, True, "generic",
                           "generic fallback: irq save/restore around several instructions (local mapping)"),
    "generic-offset": ("offset", False, True, "generic",
                       "asm-generic this_cpu_generic_*: irq save; tpidr_el1; RMW; irq restore"),
    "plain": ("direct", False, False, "generic",
              "ordinary load/store at a kernel VA (no per-CPU addressing)"),
    "atomic-lse": ("direct", False, False, "lse",
                   "atomic op on a kernel pointer, e.g. atomic64_add on per_cpu_ptr(ptr, cpu) (LSE)"),
    "atomic-llsc": ("direct", False, False, "llsc",
                    "atomic op on a kernel pointer, LL/SC loop"),
    "fixup-lse": ("fixup", False, False, "lse",
                  "alternative design (s390 series on arm64): marked offset register, one LSE atomic, "
                  "no preempt control; exception return fixes the register after a migration"),
    "fixup-llsc": ("fixup", False, False, "llsc",
                   "alternative design, LL/SC loop on the marked offset-derived address"),
}


@lru_cache(maxsize=None)
def sequence(form: str, op: str, delta: int = DEFAULT_DELTA) -> OpSeq:
    """The instruction sequence for ``op`` in ``form`` (cached; sequences are immutable)."""
    if form not in FORMS:
        raise ThisCpuFault(f"unknown this_cpu form {form!r}; known: {', '.join(FORMS)}")
    if op not in OPS:
        raise ThisCpuFault(f"unknown this_cpu op {op!r}; known: {', '.join(OPS)}")
    addressing, pc, irq, kind, _ = FORMS[form]
    insns: list[Insn] = []
    if irq:
        insns.append(Insn("irq_save", text="local_irq_save"))
    if pc:
        insns.append(Insn("preempt_disable", text="preempt_disable (count += 1)"))
    insns += _pre(op)
    if addressing != "segment":
        insns += _addr_insns(addressing, delta)
    base = len(insns)
    if kind == "lse":
        insns += _lse_body(op)
    elif kind == "llsc":
        insns += _llsc_body(op, base)
    elif kind == "generic":
        insns += _generic_body(op, base)
    else:
        insns += _x86_body(op)
    if kind in ("llsc", "generic") and op in ("cmpxchg", "cmpxchg128"):
        insns.append(Insn("nop", text="done:"))
    if addressing == "fixup":
        insns.append(Insn("pcpu_unmark", text="pcpu_unmark  (strb wzr, [tsk, #PCPU_REG])"))
    if pc:
        insns.append(Insn("preempt_enable", text="preempt_enable (count -= 1; resched check)"))
    if irq:
        insns.append(Insn("irq_restore", text="local_irq_restore"))
    for i, ins in enumerate(insns):
        if ins.target > len(insns):
            raise ThisCpuFault(f"bad branch target in {form}/{op} at {i}")
    return OpSeq(form, op, tuple(insns), pc, irq, addressing)


def kpti_exit_sequence(tramp_offset: int) -> OpSeq:
    """KPTI return to EL0 and re-entry: the trampoline finds its tables at a fixed offset below
    the TTBR1 root (``tramp_pg_dir = root - tramp_offset``) and comes back by adding it."""
    insns = (
        Insn("mrs_ttbr1", rd=X_TMP, text=f"mrs {_r(X_TMP)}, ttbr1_el1"),
        Insn("alu_imm", rd=X_TMP, rn=X_TMP, imm=(-tramp_offset) & MASK64, alu="add",
             text=f"sub {_r(X_TMP)}, {_r(X_TMP)}, #TRAMP_OFFSET"),
        Insn("msr_ttbr1", rn=X_TMP, text=f"msr ttbr1_el1, {_r(X_TMP)}  (tramp_pg_dir; eret)"),
        Insn("mrs_ttbr1", rd=X_TMP, text=f"mrs {_r(X_TMP)}, ttbr1_el1  (exception entry)"),
        Insn("alu_imm", rd=X_TMP, rn=X_TMP, imm=tramp_offset, alu="add",
             text=f"add {_r(X_TMP)}, {_r(X_TMP)}, #TRAMP_OFFSET"),
        Insn("msr_ttbr1", rn=X_TMP, text=f"msr ttbr1_el1, {_r(X_TMP)}  (back to the kernel root)"),
    )
    return OpSeq("kpti-exit", "tramp", insns, False, False, "direct")


def _uses(ins: Insn) -> tuple[frozenset, frozenset]:
    """(registers read, registers written) by one instruction."""
    op = ins.op
    if op == "alu":
        return frozenset((ins.rn, ins.rm)), frozenset((ins.rd,))
    if op == "alu_imm" or op in ("ldr", "ldr2", "ldxr"):
        return frozenset((ins.rn,)), frozenset((ins.rd,))
    if op in ("mov_imm", "mrs_off", "mrs_ttbr1"):
        return frozenset(), frozenset((ins.rd,))
    if op == "bne":
        return frozenset((ins.rn, ins.rm)), frozenset()
    if op in ("cbnz", "msr_ttbr1"):
        return frozenset((ins.rn,)), frozenset()
    if op in ("str", "str2"):
        return frozenset((ins.rd, ins.rn)), frozenset()
    if op in ("ldxp", "ldp"):
        return frozenset((ins.rn,)), frozenset((ins.rd, X_RET2))
    if op == "stxr":
        return frozenset((ins.rn, ins.rm)), frozenset((ins.rd,))
    if op == "stxp":
        return frozenset((ins.rn, ins.rm, X_VAL2)), frozenset((ins.rd,))
    if op in ("ldadd", "ldclr", "ldset", "swp"):
        return frozenset((ins.rn, ins.rm)), frozenset((ins.rd,))
    if op == "cas":
        return frozenset((ins.rd, ins.rn, ins.rm)), frozenset((ins.rd,))
    if op == "casp":
        return (frozenset((X_RET, X_RET2, X_VAL, X_VAL2, ins.rn)), frozenset((X_RET, X_RET2)))
    if op == "seg_rmw":
        return frozenset((ins.rn, ins.rm, X_OLD)), frozenset((ins.rd,))
    return frozenset(), frozenset()  # nop, preempt and irq control


@lru_cache(maxsize=None)
def live_registers(seq: OpSeq) -> tuple[frozenset, ...]:
    """For each pc (and ``len(seq)``), the registers whose value can still be read before being
    overwritten when execution continues at that pc (backward data-flow over the sequence and
    its branches; nothing is live after the last instruction). A consumer may forget the other
    registers: two states that differ only in dead registers behave the same from then on."""
    n = len(seq.insns)
    live = [frozenset()] * (n + 1)
    changed = True
    while changed:
        changed = False
        for pc in range(n - 1, -1, -1):
            ins = seq.insns[pc]
            succ = {pc + 1}
            if ins.op in ("bne", "cbnz"):
                succ.add(ins.target)
            out = frozenset().union(*(live[s] for s in succ))
            reads, writes = _uses(ins)
            new = reads | (out - writes)
            if new != live[pc]:
                live[pc] = new
                changed = True
    return tuple(live)


def forget_dead(seq: OpSeq, pc: int, regs: tuple[int, ...]) -> tuple[int, ...]:
    """``regs`` with every register that is dead at ``pc`` set to 0."""
    live = live_registers(seq)[pc]
    if len(live) == len(regs):
        return regs
    return tuple(v if i in live else 0 for i, v in enumerate(regs))


def initial_regs(ptr: int = 0, val: int = 0, old: int = 0, val2: int = 0,
                 old2: int = 0) -> tuple[int, ...]:
    regs = [0] * NREGS
    regs[X_PTR], regs[X_VAL], regs[X_OLD] = ptr & MASK64, val & MASK64, old & MASK64
    regs[X_VAL2], regs[X_OLD2] = val2 & MASK64, old2 & MASK64
    return tuple(regs)


# --------------------------------------------------------------------------- interpreter

def _alu_op(alu: str, a: int, b: int) -> int:
    if alu == "add":
        return (a + b) & MASK64
    if alu == "and":
        return a & b
    if alu == "orr" or alu == "or":
        return a | b
    if alu == "bic":
        return a & ~b & MASK64
    if alu == "mvn":
        return ~a & MASK64
    if alu == "mov":
        return a
    raise ThisCpuFault(f"unknown alu op {alu!r}")


def step(seq: OpSeq, pc: int, regs: tuple[int, ...], env: ThisCpuEnv) -> tuple[int, tuple[int, ...]]:
    """Execute instruction ``pc`` of ``seq`` against ``env``; return ``(next_pc, regs)``.

    The sequence is finished when ``next_pc == len(seq)``. Exceptions raised by hooks propagate
    (the checker uses that to report a violation at the exact instruction).
    """
    ins = seq.insns[pc]
    op = ins.op
    r = list(regs)
    nxt = pc + 1
    if op == "alu":
        r[ins.rd] = _alu_op(ins.alu, r[ins.rn], r[ins.rm])
    elif op == "alu_imm":
        r[ins.rd] = _alu_op(ins.alu, r[ins.rn], ins.imm)
    elif op == "mov_imm":
        r[ins.rd] = ins.imm & MASK64
    elif op == "nop":
        pass
    elif op == "bne":
        if r[ins.rn] != r[ins.rm]:
            nxt = ins.target
    elif op == "cbnz":
        if r[ins.rn] != 0:
            nxt = ins.target
    elif op == "mrs_off":
        r[ins.rd] = env.cpu_offset() & MASK64
    elif op == "preempt_disable":
        env.preempt_count_add(1)
    elif op == "preempt_enable":
        env.preempt_count_add(-1)
    elif op == "irq_save":
        env.irq_save()
    elif op == "irq_restore":
        env.irq_restore()
    elif op == "mrs_ttbr1":
        r[ins.rd] = env.read_ttbr1() & MASK64
    elif op == "msr_ttbr1":
        env.write_ttbr1(r[ins.rn])
    elif op == "pcpu_mark":
        env.pcpu_mark(ins.rd)
    elif op == "pcpu_unmark":
        env.pcpu_unmark()
    elif op in ("ldr", "ldr2"):
        va = r[ins.rn] + (8 if op == "ldr2" else 0)
        r[ins.rd] = env.load(env.translate(va, False)) & MASK64
    elif op in ("str", "str2"):
        va = r[ins.rn] + (8 if op == "str2" else 0)
        env.store(env.translate(va, True), r[ins.rd])
    elif op == "ldp":
        pa = env.translate(r[ins.rn], False)
        r[ins.rd] = env.load(pa) & MASK64
        r[X_RET2] = env.load(pa + 8) & MASK64
    elif op == "ldxr":
        pa = env.translate(r[ins.rn], False)
        r[ins.rd] = env.load(pa) & MASK64
        env.monitor_arm(pa)
    elif op == "ldxp":
        pa = env.translate(r[ins.rn], False)
        r[ins.rd] = env.load(pa) & MASK64
        r[X_RET2] = env.load(pa + 8) & MASK64
        env.monitor_arm(pa)
    elif op == "stxr":
        pa = env.translate(r[ins.rn], True)
        if env.monitor_check(pa):
            env.store(pa, r[ins.rm])
            r[ins.rd] = 0
        else:
            r[ins.rd] = 1
    elif op == "stxp":
        pa = env.translate(r[ins.rn], True)
        if env.monitor_check(pa):
            env.store(pa, r[ins.rm])
            env.store(pa + 8, r[X_VAL2])
            r[ins.rd] = 0
        else:
            r[ins.rd] = 1
    elif op in ("ldadd", "ldclr", "ldset", "swp"):
        pa = env.translate(r[ins.rn], True)
        old = env.load(pa) & MASK64
        v = r[ins.rm]
        new = {"ldadd": (old + v) & MASK64, "ldclr": old & ~v & MASK64, "ldset": old | v,
               "swp": v}[op]
        env.store(pa, new)
        r[ins.rd] = old
    elif op == "cas":
        pa = env.translate(r[ins.rn], True)
        old = env.load(pa) & MASK64
        if old == r[ins.rd]:
            env.store(pa, r[ins.rm])
        r[ins.rd] = old
    elif op == "casp":
        pa = env.translate(r[ins.rn], True)
        lo, hi = env.load(pa) & MASK64, env.load(pa + 8) & MASK64
        if lo == r[X_RET] and hi == r[X_RET2]:
            env.store(pa, r[X_VAL])
            env.store(pa + 8, r[X_VAL2])
        r[X_RET], r[X_RET2] = lo, hi
    elif op == "seg_rmw":
        pa = env.translate((r[ins.rn] + env.cpu_offset()) & MASK64, ins.alu != "read")
        old = env.load(pa) & MASK64
        v = r[ins.rm]
        a = ins.alu
        if a == "read":
            r[ins.rd] = old
        else:
            if a in ("add", "xadd"):
                new = (old + v) & MASK64
            elif a == "and":
                new = old & v
            elif a == "or":
                new = old | v
            elif a in ("xchg", "write"):
                new = v
            elif a == "cmpxchg":
                new = v if old == r[X_OLD] else old
            else:
                raise ThisCpuFault(f"unknown segment op {a!r}")
            if a != "cmpxchg" or old == r[X_OLD]:
                env.store(pa, new)
            r[ins.rd] = old
    else:
        raise ThisCpuFault(f"unknown instruction {op!r}")
    return nxt, tuple(r)


def run(seq: OpSeq, env: ThisCpuEnv, regs: tuple[int, ...], max_steps: int = 10_000) -> tuple[int, ...]:
    """Run ``seq`` to completion on one CPU with nothing interleaved; return the final regs."""
    pc = 0
    for _ in range(max_steps):
        if pc >= len(seq.insns):
            return regs
        pc, regs = step(seq, pc, regs, env)
    raise ThisCpuFault(f"{seq.form}/{seq.op} did not finish in {max_steps} steps")


def expected_result(op: str, old: int, val: int, cmp_old: int = 0) -> tuple[int, int]:
    """Independent reference semantics of ``this_cpu_<op>``: ``(new_value, returned)``."""
    val &= MASK64
    if op == "read":
        return old, old
    if op == "write":
        return val, 0
    if op == "add":
        return (old + val) & MASK64, old
    if op == "inc":
        return (old + 1) & MASK64, old
    if op == "dec":
        return (old - 1) & MASK64, old
    if op == "and":
        return old & val, old
    if op == "or":
        return old | val, old
    if op == "xchg":
        return val, old
    if op == "cmpxchg":
        return (val if old == cmp_old else old), old
    if op == "add_return":
        return (old + val) & MASK64, (old + val) & MASK64
    raise ThisCpuFault(f"no reference semantics for {op!r}")
