"""this_cpu sites in real kernels of every Debian architecture, and what a local mapping removes.

What it models: the per-CPU offset acquisitions (or ``%gs:`` accesses) of one kernel image, as
:mod:`localmap.arch.percpu` describes each architecture, found with capstone and classified:

* **finding** -- fixed-width ISAs (armhf, ppc64el) are scanned as aligned words with numpy, as
  ``objdump -D`` sees them; variable-length ISAs are walked instruction by instruction from
  ``_stext``: s390x and riscv64 by their length encodings (the first two bits of an s390
  opcode; the low bits of a RISC-V parcel), amd64 with capstone from every function start that
  holds a ``0x65`` (``%gs``) byte (with a length rule for the system and VEX instructions
  capstone 5 does not decode, so the stream stays in step with objdump's);
* **classifying** -- a window of instructions around each site: the access that consumes the
  offset (read, write, non-atomic read-modify-write, atomic, address only), and the protection
  bracket around it: interrupts off (armhf ``mrs/cpsid`` .. ``msr cpsr_c``, riscv64
  ``csrrc``/``andi; csrs sstatus``, s390x ``stnsm`` .. ``stosm/ssm``), the lazy soft mask
  (ppc64el ``lbz/ori/stb`` of the PACA mask .. ``bl arch_local_irq_restore; nop``), or nothing
  (amd64). A bracket is the op's *own* when it encloses no other site and no call; a larger one
  belongs to the caller's critical section and stays;
* **what the local mapping removes** -- per site: the own bracket when the op becomes safe
  without it (a read, a write, or an RMW that becomes one atomic instruction or a restartable
  LL/SC loop), minus the loop's extra instructions on ISAs without a single-instruction RMW;
  plus, on riscv64, the table lookup (``slli; add; ld``) that a constant DELTA replaces.

arm64 images go through :mod:`localmap.perf.sites` (the full analysis) and are summarised in the
same terms. Deliberate simplifications: the data-flow walk is linear over a bounded window (as
in :mod:`localmap.perf.sites`); ``removed`` is a static count; a bracket's instructions are
counted as the architecture's idiom (3 or 5), not re-derived for every compiler variant.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from localmap.arch.percpu import this_cpu_path
from localmap.errors import LocalmapError
from localmap.perf.image import ImageFacts, KernelImage
from localmap.progress import Progress, as_progress

BEFORE = 14   # instructions looked at before a site (bracket open)
AFTER = 24    # after it (consumer, bracket close)

ASSUMPTIONS = [
    "A site is one acquisition of the per-CPU offset (or one %gs: operand on amd64) in "
    "[_stext, _etext), the same pattern objdump's output is grepped for.",
    "An own protection bracket encloses exactly one site and no call; enclosing brackets belong "
    "to a larger critical section and are kept.",
    "With a local mapping a read/write needs no protection; an RMW becomes one atomic "
    "instruction (amd64, arm64 LSE, riscv64 AMO, s390x z196 laa) or a restartable LL/SC loop "
    "(armhf ldrex/strex +2, ppc64el lwarx/stwcx. +1 instructions).",
    "The offset acquisition is replaced by one DELTA constant (arm64 movz, s390x/armhf add "
    "immediate); riscv64 also loses the table lookup (slli, add, ld).",
]


@dataclass
class ArchSite:
    addr: int
    function: str
    access: str          # read / write / rmw / atomic / address / other / cpu-number / canary / preempt
    protection: str      # own / caller / none (+ kind in bracket)
    bracket: str         # irq / softmask / psw / preempt / none
    bracket_insns: int
    replaceable: bool
    removed: int
    detail: str = ""


@dataclass
class ArchReport(ImageFacts):
    arch: str
    sites: list[ArchSite] = field(default_factory=list)
    pattern: str = ""
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)   # derived constants (e.g. ppc64el data_offset)

    @property
    def count(self) -> int:
        return len(self.sites)

    def totals(self) -> dict:
        acc, prot, br = Counter(), Counter(), Counter()
        removed = replaceable = own = 0
        own_insns = 0
        for s in self.sites:
            acc[s.access] += 1
            prot[s.protection] += 1
            if s.protection == "own":
                br[s.bracket] += 1
                own += 1
                own_insns += s.bracket_insns
            removed += s.removed
            replaceable += s.replaceable
        return {"sites": self.count, "functions": len({s.function for s in self.sites}),
                "access": dict(sorted(acc.items())), "protection": dict(sorted(prot.items())),
                "own_brackets": dict(sorted(br.items())), "own_bracket_sites": own,
                "own_bracket_instructions": own_insns, "replaceable": replaceable,
                "removed_instructions": removed}

    def functions(self, top: int | None = None) -> list[dict]:
        rows: dict[str, dict] = {}
        for s in self.sites:
            r = rows.setdefault(s.function, {"function": s.function, "sites": 0, "own_brackets": 0,
                                             "removed": 0})
            r["sites"] += 1
            r["own_brackets"] += s.protection == "own"
            r["removed"] += s.removed
        out = sorted(rows.values(), key=lambda r: (-r["sites"], r["function"]))
        return out[:top] if top else out

    def to_json(self, per_site: bool = False) -> dict:
        path = this_cpu_path(self.arch)
        d = {"arch": self.arch, **self.facts_json(), "site_pattern": self.pattern, "sites": self.count,
             "totals": self.totals(), "functions": self.functions(25), "params": self.params,
             "this_cpu_path": asdict(path), "notes": self.notes, "assumptions": ASSUMPTIONS}
        if per_site:
            d["site_list"] = [dict(asdict(s), addr=hex(s.addr)) for s in self.sites]
        return d


# what the design can serve from the local mapping with its own sequence (the per-architecture
# functions below price the bracket it then drops)
REPLACEABLE = ("read", "write", "rmw", "atomic")


# --------------------------------------------------------------------------- shared helpers

def _md(arch: str):
    import capstone as cs

    if arch == "amd64":
        md = cs.Cs(cs.CS_ARCH_X86, cs.CS_MODE_64)
        md.syntax = cs.CS_OPT_SYNTAX_ATT
    elif arch == "armhf":
        md = cs.Cs(cs.CS_ARCH_ARM, cs.CS_MODE_ARM)
    elif arch == "ppc64el":
        md = cs.Cs(cs.CS_ARCH_PPC, cs.CS_MODE_64 | cs.CS_MODE_LITTLE_ENDIAN)
    elif arch == "riscv64":
        md = cs.Cs(cs.CS_ARCH_RISCV, cs.CS_MODE_RISCV64 | cs.CS_MODE_RISCVC)
    elif arch == "s390x":
        md = cs.Cs(cs.CS_ARCH_SYSZ, cs.CS_MODE_BIG_ENDIAN)
    else:
        raise LocalmapError(f"no disassembler set up for {arch}")
    return md


def _function(img: KernelImage, addr: int) -> str:
    hit = img.symbols.lookup(addr)
    return hit[0] if hit else "?"


def _words(img: KernelImage, order: str = "<") -> np.ndarray:
    n = len(img.text) // 4
    return np.frombuffer(img.text, dtype=order + "u4", count=n)


@dataclass
class _Ins:
    addr: int
    size: int
    mnem: str
    ops: str


def _decode(md, img: KernelImage, start: int, end: int) -> list[_Ins]:
    start = max(start, img.stext)
    end = min(end, img.etext)
    out: list[_Ins] = []
    p = start
    while p < end:
        code = img.text[p - img.stext:end - img.stext]
        last = p
        for a, s, m, o in md.disasm_lite(code, p):
            out.append(_Ins(a, s, m, o))
            last = a + s
        if last >= end:
            break
        p = last + (2 if img.arch in ("riscv64", "s390x") else 4 if img.arch != "amd64" else 1)
    return out


def _window(md, img: KernelImage, addr: int, starts: np.ndarray | None, width: int) -> tuple[list[_Ins], int]:
    """Instructions around ``addr`` (clipped to its function) and the index of the site."""
    fstart, fend = img.symbols.extent(addr, img.etext)
    if starts is None:  # fixed width
        lo = max(fstart, addr - width * BEFORE)
        hi = min(fend, addr + width * (AFTER + 1))
    else:
        i = int(np.searchsorted(starts, addr - img.stext))
        lo = max(fstart, img.stext + int(starts[max(0, i - BEFORE)]))
        j = min(len(starts) - 1, i + AFTER + 1)
        hi = min(fend, img.stext + int(starts[j]) if j > i else img.etext)
    hi = max(hi, addr + 8)
    ins = _decode(md, img, lo, hi)
    idx = next((k for k, x in enumerate(ins) if x.addr == addr), None)
    if idx is None:
        ins = _decode(md, img, addr, hi)
        idx = 0
    return ins, idx


def _own_or_caller(ins: list[_Ins], lo: int, hi: int, site_idx: int, site_addrs: set[int],
                   call_mnems: tuple[str, ...]) -> str:
    """'own' if ins[lo..hi] holds no other site and no call, else 'caller'."""
    for k in range(lo, hi + 1):
        x = ins[k]
        if k != site_idx and x.addr in site_addrs:
            return "caller"
        if x.mnem in call_mnems:
            return "caller"
    return "own"


# --------------------------------------------------------------------------- register flow

_REG_ARM = re.compile(r"\b(r\d+|sb|sl|fp|ip|lr)\b")
_REG_PPC = re.compile(r"\br(\d+)\b")
_REG_RV = re.compile(r"\b(zero|ra|sp|gp|tp|t[0-6]|s\d+|a[0-7])\b")
_REG_S390 = re.compile(r"%r(\d+)")


def _regs(arch: str, ops: str) -> list[str]:
    if arch == "armhf":
        return _REG_ARM.findall(ops)
    if arch == "ppc64el":
        return ["r" + r for r in _REG_PPC.findall(ops)]
    if arch == "riscv64":
        return _REG_RV.findall(ops)
    return ["r" + r for r in _REG_S390.findall(ops)]


def _mem_regs(arch: str, ops: str) -> list[str]:
    """Registers inside the memory operand."""
    if arch == "armhf":
        m = re.search(r"\[([^\]]*)\]", ops)
        return _REG_ARM.findall(m.group(1)) if m else []
    if arch in ("riscv64", "ppc64el", "s390x"):
        m = re.search(r"\(([^)]*)\)", ops)
        if not m:
            return []
        return _regs(arch, m.group(1))
    return []


_LOADS = {"armhf": re.compile(r"^ldr(b|h|sb|sh|d)?$"), "ppc64el": re.compile(r"^l(bz|hz|ha|wz|wa|d)x?$"),
          "riscv64": re.compile(r"^(c\.)?l[bhwd]u?$"), "s390x": re.compile(r"^(l|lg|lgf|llgf|lh|lgh|llgh|lb|lgb|llgc|ly)$")}
_STORES = {"armhf": re.compile(r"^str(b|h|d)?$"), "ppc64el": re.compile(r"^st(b|h|w|d)x?$"),
           "riscv64": re.compile(r"^(c\.)?s[bhwd]$"), "s390x": re.compile(r"^(st|stg|sth|stc|sty|mvi|mvhi|mvghi)$")}
_ATOMIC = {"armhf": re.compile(r"^(ldrex|strex)"), "ppc64el": re.compile(r"^(lwarx|ldarx|stwcx\.|stdcx\.)$"),
           "riscv64": re.compile(r"^(amo|lr\.|sc\.)"), "s390x": re.compile(r"^(cs|csg|csy|cds|cdsg|laa|laag|lan|lang|lao|laog|asi|agsi|alsi|algsi)$")}
_DERIVE = {"armhf": {"add", "sub", "mov", "orr"}, "ppc64el": {"add", "mr", "addi", "subf"},
           "riscv64": {"add", "c.add", "mv", "c.mv", "addi", "c.addi", "sub", "addw"},
           "s390x": {"agr", "algr", "la", "lay", "lgr", "ag", "alg", "agrk", "algrk"}}
_CALLS = {"armhf": ("bl", "blx"), "ppc64el": ("bl", "bctrl", "blrl"), "riscv64": ("jal", "jalr", "c.jal", "c.jalr"),
          "s390x": ("brasl", "basr", "bras")}
_ENDS = {"armhf": ("pop", "bx", "b"), "ppc64el": ("blr", "b"), "riscv64": ("ret", "c.jr", "jr", "j", "c.j", "mret", "sret"),
         "s390x": ("br", "j", "jg")}


def _follow(arch: str, ins: list[_Ins], idx: int, reg: str) -> tuple[str, int, int]:
    """(access kind, index of the first and of the last consumer) for the value in ``reg``
    written by ins[idx] (both ``idx`` when nothing consumes it)."""
    tracked = {reg}
    first = None
    loads = stores = atomics = 0
    derived = False
    last = idx
    addr_ops: set[str] = set()
    for k in range(idx + 1, min(len(ins), idx + AFTER + 1)):
        x = ins[k]
        m = x.mnem.rstrip(".")
        if m in _ENDS[arch] or x.mnem in _ENDS[arch]:
            break
        regs = _regs(arch, x.ops)
        if not regs and not x.ops:
            continue
        mem = _mem_regs(arch, x.ops)
        if arch == "ppc64el" and x.mnem.endswith("x") and x.mnem[:-1] != "" and (
                _LOADS[arch].match(x.mnem) or _STORES[arch].match(x.mnem)):
            mem = regs[1:3]  # indexed forms: rT, rA, rB
        uses_mem = any(r in tracked for r in mem)
        if uses_mem:
            first = k if first is None else first
            key = x.ops.split(",", 1)[1].strip() if "," in x.ops else x.ops
            addr_ops.add(key)
            if _ATOMIC[arch].match(x.mnem):
                atomics += 1
            elif _LOADS[arch].match(x.mnem):
                loads += 1
            elif _STORES[arch].match(x.mnem):
                stores += 1
            else:
                atomics += 1 if arch == "s390x" else 0
            last = k
            if regs and regs[0] in tracked and _LOADS[arch].match(x.mnem):
                tracked.discard(regs[0])
            continue
        srcs = regs[1:]
        dest = regs[0] if regs else None
        if x.mnem in _CALLS[arch]:
            break
        if dest is not None and any(r in tracked for r in srcs) and x.mnem in _DERIVE[arch]:
            tracked.add(dest)
            derived = True
            last = k
        elif arch == "s390x" and dest in tracked and x.mnem in ("ag", "alg", "agr", "algr"):
            derived = True  # pointer + offset accumulated in place
            last = k
        elif dest is not None and dest in tracked and not any(r in tracked for r in srcs):
            tracked.discard(dest)
        if not tracked:
            break
    first = idx if first is None else first
    if atomics:
        return "atomic", first, last
    if loads and stores and len(addr_ops) == 1:
        return "rmw", first, last
    if loads and not stores:
        return "read", first, last
    if stores and not loads:
        return "write", first, last
    if loads or stores:
        return "other", first, last
    return ("address" if derived else "other"), first, last


# --------------------------------------------------------------------------- amd64

_X86_RMW = re.compile(r"^(add|sub|inc|dec|and|or|xor|xadd|cmpxchg|cmpxchg8b|cmpxchg16b|xchg|neg|not|"
                      r"bts|btr|btc|adc|sbb)[bwlq]?$")
_X86_MOV = re.compile(r"^mov(s[bwlq]|z[bwlq]|abs)?[bwlq]?$|^movz|^movs")


def _x86_length(code: bytes, p: int) -> int:
    """Length of an instruction capstone could not decode: the register forms of the 0f 00 /
    0f 01 system groups and VEX/EVEX-encoded instructions (ModRM/SIB/displacement rules of the
    Intel SDM, volume 2, chapter 2); anything else: 1 byte, as objdump's ``(bad)``."""
    q = p
    while q < len(code) and code[q] in (0x66, 0x67, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0xF0):
        q += 1
    if q < len(code) and 0x40 <= code[q] <= 0x4F:
        q += 1
    if q + 2 >= len(code):
        return 1
    b = code[q]
    imm = 0
    if b == 0x0F and code[q + 1] in (0x00, 0x01):
        q += 2
    elif b in (0xC4, 0xC5, 0x62):
        vex = {0xC4: 3, 0xC5: 2, 0x62: 4}[b]
        mmap = (code[q + 1] & 0x1F) if b == 0xC4 else (code[q + 1] & 0x07 if b == 0x62 else 1)
        imm = 1 if mmap == 3 else 0
        q += vex + 1
    else:
        return 1
    if q >= len(code):
        return 1
    modrm = code[q]
    q += 1
    mod, rm = modrm >> 6, modrm & 7
    if mod != 3:
        if rm == 4:
            sib = code[q] if q < len(code) else 0
            q += 1
            if mod == 0 and (sib & 7) == 5:
                q += 4
        if mod == 0 and rm == 5:
            q += 4
        elif mod == 1:
            q += 1
        elif mod == 2:
            q += 4
    return q + imm - p


def _x86_sites(img: KernelImage, md, prog: Progress) -> list[tuple[_Ins, list[_Ins], int]]:
    """(site, the instructions up to 6 before it and itself, its index in that list), decoding
    each function that holds a 0x65 byte from its start (a true instruction boundary)."""
    text = img.text
    t = np.frombuffer(text, dtype=np.uint8)
    cand = np.flatnonzero(t == 0x65)
    starts = sorted({a - img.stext for a in img.symbols.addrs if img.stext <= a < img.etext} | {0})
    last_cand: dict[int, int] = {}
    for c in cand.tolist():
        i = bisect.bisect_right(starts, c) - 1
        last_cand[i] = c
    out = []
    keys = sorted(last_cand)
    base = img.stext
    prog.start("decoding the functions that hold %gs operands", total=len(keys))
    for n, i in enumerate(keys):
        s = starts[i]
        e = min(len(text), last_cand[i] + 16)
        e_func = starts[i + 1] if i + 1 < len(starts) else len(text)
        insns: list[tuple] = []  # capstone's own tuples: objects only for the sites' windows
        p = s
        while p < e:
            last = p
            for tup in md.disasm_lite(text[p:e_func], base + p):
                insns.append(tup)
                last = tup[0] - base + tup[1]
                if last >= e:
                    break
            if last >= e or last >= e_func:
                break
            p = last + _x86_length(text, last)
        for k, tup in enumerate(insns):
            if "%gs:" in tup[3]:
                win = [_Ins(*x) for x in insns[max(0, k - 6):k + 1]]
                out.append((win[-1], win, len(win) - 1))
        if n % 500 == 0:
            prog.update(n)
    return out


class _PercpuVars:
    """Per-CPU symbols (kallsyms of x86-64 keeps them absolute, below 16 MiB) for naming the
    variable of a ``%gs:`` operand."""

    def __init__(self, img: KernelImage):
        pairs = sorted((a, n) for n, a in img.symbols.named.items() if a < 1 << 24)
        self.keys = [a for a, _ in pairs]
        self.names = [n for _, n in pairs]

    def name(self, target: int | None) -> str:
        if target is None or not self.keys:
            return ""
        j = bisect.bisect_right(self.keys, target) - 1
        if j < 0 or target - self.keys[j] >= 4096:
            return ""
        off = target - self.keys[j]
        return self.names[j] + (f"+{off}" if off else "")


def _x86_target(x: _Ins) -> int | None:
    m = re.search(r"%gs:(-?0x[0-9a-f]+|-?\d+)?(\(%rip\)|\([^)]*\))?", x.ops)
    if not m:
        return None
    if m.group(2) == "(%rip)":
        return (x.addr + x.size + int(m.group(1) or "0", 0)) & ((1 << 64) - 1)
    if not m.group(2):
        return int(m.group(1) or "0", 0) & ((1 << 64) - 1)
    return None


PREEMPT_COUNT_X86 = "pcpu_hot+8"   # struct pcpu_hot: current_task, then int preempt_count


def _x86_classify(img: KernelImage, x: _Ins, pv: _PercpuVars, insns: list[_Ins], k: int) -> ArchSite:
    target = _x86_target(x)
    var = pv.name(target)
    mem_dest = "%gs:" in x.ops.split(", ")[-1]
    mnem = x.mnem
    if target == 0x28 and not var.startswith("pcpu_hot"):
        access = "canary"
    elif var == PREEMPT_COUNT_X86 and re.match(r"^(inc|dec|add|sub)", mnem):
        access = "preempt"
    elif _X86_RMW.match(mnem) and mem_dest:
        access = "atomic"  # one instruction: safe against migration and interrupts
    elif _X86_MOV.match(mnem) or mnem.startswith(("cmp", "test", "bt")):
        access = "write" if mem_dest and mnem.startswith("mov") else "read"
    else:
        access = "other"
    # an x86 this_cpu op needs no bracket; look for one anyway (cli/pushf or a preempt-count
    # increment right before a one-instruction RMW), to check that claim on the image
    bracket = "none"
    if access == "atomic":
        for j in range(k - 1, max(-1, k - 6), -1):
            y = insns[j]
            if y.mnem in ("cli", "pushfq", "pushf"):
                bracket = "irq"
                break
            if "%gs:" in y.ops and y.mnem.startswith(("inc", "add")) and \
                    pv.name(_x86_target(y)) == PREEMPT_COUNT_X86:
                bracket = "preempt"
                break
    return ArchSite(addr=x.addr, function=_function(img, x.addr), access=access,
                    protection="none" if bracket == "none" else "caller", bracket=bracket,
                    bracket_insns=0, replaceable=access in ("atomic", "read", "write"),
                    removed=0, detail=(var or x.ops)[:60])


# --------------------------------------------------------------------------- armhf

ARM_MRC_TPIDRPRW = 0xEE1D0F90
ARM_MRC_MASK = 0xFFFF0FFF


def _arm_sites(img: KernelImage) -> list[int]:
    w = _words(img)
    return [img.stext + 4 * int(i) for i in np.flatnonzero((w & np.uint32(ARM_MRC_MASK)) == np.uint32(ARM_MRC_TPIDRPRW))]


def _arm_classify(img, md, addr, site_set) -> ArchSite:
    ins, idx = _window(md, img, addr, None, 4)
    reg = _REG_ARM.findall(ins[idx].ops)
    reg = [r for r in reg if r.startswith("r") or r in ("sb", "sl", "fp", "ip", "lr")]
    off = reg[0] if reg else "r0"
    access, first, last = _follow("armhf", ins, idx, off)
    bracket, prot, binsns = "none", "none", 0
    open_k = flag = None
    for k in range(first - 1, max(-1, idx - BEFORE), -1):
        if ins[k].mnem == "cpsid" and ins[k].ops.strip() == "i":
            for j in range(k - 1, max(-1, k - 4), -1):
                if ins[j].mnem == "mrs":
                    open_k, flag = j, ins[j].ops.split(",")[0].strip()
                    break
            break
    if open_k is not None:
        for k in range(max(idx, last) + 1, len(ins)):
            if ins[k].mnem == "msr" and ins[k].ops.replace(" ", "").endswith("," + flag):
                bracket = "irq"
                binsns = 3
                prot = _own_or_caller(ins, open_k, k, idx, site_set, _CALLS["armhf"])
                break
    replaceable = access in REPLACEABLE
    removed = 0
    if prot == "own" and replaceable:
        removed = binsns - (2 if access == "rmw" else 0)
    return ArchSite(addr=addr, function=_function(img, addr), access=access, protection=prot,
                    bracket=bracket, bracket_insns=binsns, replaceable=replaceable, removed=removed)


# --------------------------------------------------------------------------- ppc64el

def _ppc_fields(w: np.ndarray):
    op = w >> np.uint32(26)
    rt = (w >> np.uint32(21)) & np.uint32(31)
    ra = (w >> np.uint32(16)) & np.uint32(31)
    rb = (w >> np.uint32(11)) & np.uint32(31)
    return op, rt, ra, rb


def ppc_data_offset(img: KernelImage) -> tuple[int, dict[int, int]]:
    """The PACA displacement of ``data_offset``: of all ``ld Rt, D(r13)``, the D whose loaded
    value most often feeds an indexed access or an ``add`` within the next 3 instructions."""
    w = _words(img)
    op, rt, ra, rb = _ppc_fields(w)
    ld = np.flatnonzero((op == 58) & (ra == 13) & ((w & np.uint32(3)) == 0))
    disp = (w[ld] & np.uint32(0xFFFC)).astype(np.int64)
    disp = np.where(disp >= 0x8000, disp - 0x10000, disp)
    fed = np.zeros(len(ld), dtype=bool)
    for k in (1, 2, 3):
        j = np.minimum(ld + k, len(w) - 1)
        x = w[j]
        xo = (x >> np.uint32(1)) & np.uint32(0x3FF)
        is31 = (x >> np.uint32(26)) == 31
        idx_mem = is31 & np.isin(xo, [23, 21, 87, 279, 343, 151, 149, 215, 407, 339])  # lwzx ldx lbzx lhzx lhax stwx stdx stbx sthx ...
        add = is31 & (((x >> np.uint32(1)) & np.uint32(0x1FF)) == 266)
        src_a = (x >> np.uint32(16)) & np.uint32(31)
        src_b = (x >> np.uint32(11)) & np.uint32(31)
        r = rt[ld]
        fed |= (idx_mem | add) & ((src_a == r) | (src_b == r))
    votes = Counter(disp[fed].tolist())
    if not votes:
        raise LocalmapError("no ld Rt, D(r13) feeding an indexed access: not a ppc64 kernel?", img.path)
    return votes.most_common(1)[0][0], dict(votes.most_common(5))


def _ppc_sites(img: KernelImage, d: int) -> list[int]:
    w = _words(img)
    want = np.uint32(0xE80D0000 | (d & 0xFFFC))
    return [img.stext + 4 * int(i) for i in np.flatnonzero((w & np.uint32(0xFC1FFFFF)) == want)]


def ppc_soft_mask(img: KernelImage) -> int | None:
    """The PACA displacement of ``irq_soft_mask``: the byte that is loaded, or-ed with the
    disable bit and stored back (lbz; ori Rx, Ry, 1; stb) most often."""
    w = _words(img)
    op, rt, ra, rb = _ppc_fields(w)
    lbz = np.flatnonzero((op == 34) & (ra == 13))
    if not len(lbz):
        return None
    nxt = np.minimum(lbz + 1, len(w) - 1)
    nn = np.minimum(lbz + 2, len(w) - 1)
    ori = ((w[nxt] >> np.uint32(26)) == 24) & ((w[nxt] & np.uint32(0xFFFF)) == 1)
    stb = ((w[nn] >> np.uint32(26)) == 38) & (((w[nn] >> np.uint32(16)) & np.uint32(31)) == 13) & \
        ((w[nn] & np.uint32(0xFFFF)) == (w[lbz] & np.uint32(0xFFFF)))
    votes = Counter((w[lbz][ori & stb] & np.uint32(0xFFFF)).tolist())
    return votes.most_common(1)[0][0] if votes else None


def _ppc_classify(img, md, addr, site_set, mask: int | None, restore_fns: set[str]) -> ArchSite:
    ins, idx = _window(md, img, addr, None, 4)
    regs = _regs("ppc64el", ins[idx].ops)
    access, first, last = _follow("ppc64el", ins, idx, regs[0] if regs else "r0")
    bracket, prot, binsns = "none", "none", 0
    open_k = None
    if mask is not None:
        pat = re.compile(rf"\b{mask:#x}\(r13\)|\b{mask}\(r13\)")
        for k in range(first - 1, max(-1, idx - BEFORE), -1):
            if ins[k].mnem == "stb" and pat.search(ins[k].ops):
                open_k = max(0, k - 2)
                break
        if open_k is not None:
            for k in range(max(idx, last) + 1, len(ins)):
                x = ins[k]
                if x.mnem == "bl":
                    tgt = re.search(r"0x([0-9a-f]+)", x.ops)
                    name = _function(img, int(tgt.group(1), 16)) if tgt else ""
                    if name in restore_fns:
                        bracket, binsns = "softmask", 5
                        prot = _own_or_caller(ins, open_k, k - 1, idx, site_set, _CALLS["ppc64el"])
                    break
                if x.mnem == "stb" and pat.search(x.ops):
                    bracket, binsns = "softmask", 4
                    prot = _own_or_caller(ins, open_k, k, idx, site_set, _CALLS["ppc64el"])
                    break
    replaceable = access in REPLACEABLE
    removed = 0
    if prot == "own" and replaceable:
        removed = binsns - (1 if access == "rmw" else 0)
    return ArchSite(addr=addr, function=_function(img, addr), access=access, protection=prot,
                    bracket=bracket, bracket_insns=binsns, replaceable=replaceable, removed=removed)


# --------------------------------------------------------------------------- variable length

def s390_starts(text: bytes) -> np.ndarray:
    """Offsets of the instructions of a linear walk: length 2, 4 or 6 from the top two bits of
    each opcode's first byte (z/Architecture Principles of Operation, "Instruction Formats")."""
    b = np.frombuffer(text, dtype=np.uint8)
    lens = np.array([2, 4, 4, 6], dtype=np.int64)[b >> 6].tolist()
    out = []
    i, n = 0, len(text) - 1
    while i < n:
        out.append(i)
        i += lens[i]
    return np.array(out, dtype=np.int64)


def riscv_starts(text: bytes) -> np.ndarray:
    """Offsets of the instructions of a linear walk over 16-bit parcels: 16 bits unless the low
    two bits are 11, then 32 (48/64 when bits [4:2] or [5:0] say so), as the RISC-V ISA's
    "Base Instruction-Length Encoding" states."""
    h = np.frombuffer(text[:len(text) // 2 * 2], dtype="<u2")
    lo = h & np.uint16(0x7F)
    ln = np.where((h & 3) != 3, 2, np.where((h & 0x1F) != 0x1F, 4, np.where((lo & 0x3F) == 0x1F, 6,
                                                                                np.where(lo == 0x3F, 8, 2))))
    lens = ln.tolist()
    out = []
    i, n = 0, len(lens)
    while i < n:
        out.append(2 * i)
        i += lens[i] // 2
    return np.array(out, dtype=np.int64)


RISCV_LW_CPU = 0x02022003      # lw rd, 32(tp): imm=32, rs1=x4, funct3=010, opcode=LOAD
RISCV_LW_MASK = 0xFFFFF07F


def _riscv_sites(img: KernelImage, starts: np.ndarray) -> list[int]:
    t = img.text
    ok = starts[starts + 4 <= len(t)]
    b = np.frombuffer(t, dtype=np.uint8)
    w = (b[ok].astype(np.uint32) | (b[ok + 1].astype(np.uint32) << 8) | (b[ok + 2].astype(np.uint32) << 16)
         | (b[ok + 3].astype(np.uint32) << 24))
    hit = ok[(w & np.uint32(RISCV_LW_MASK)) == np.uint32(RISCV_LW_CPU)]
    return [img.stext + int(i) for i in hit]


def _riscv_classify(img, md, addr, starts, site_set) -> ArchSite:
    ins, idx = _window(md, img, addr, starts, 2)
    rd = _regs("riscv64", ins[idx].ops)[0]
    # cpu number -> slli 3 -> add table -> ld offset -> use
    k = idx + 1
    scaled = rd
    lookup = []
    offset_reg = None
    while k < len(ins) and k <= idx + 8:
        x = ins[k]
        r = _regs("riscv64", x.ops)
        if x.mnem in ("slli", "c.slli", "sll") and scaled in r[1:] + r[:1] and x.ops.endswith("3"):
            scaled = r[0]
            lookup.append(k)
        elif x.mnem in ("add", "c.add") and scaled in r:
            scaled = r[0]
            lookup.append(k)
        elif x.mnem in ("ld", "c.ld") and scaled in _mem_regs("riscv64", x.ops) and lookup:
            offset_reg = r[0]
            lookup.append(k)
            break
        k += 1
    if offset_reg is None:
        return ArchSite(addr=addr, function=_function(img, addr), access="cpu-number", protection="none",
                        bracket="none", bracket_insns=0, replaceable=False, removed=0,
                        detail="CPU number not used as a __per_cpu_offset index")
    access, first, last = _follow("riscv64", ins, lookup[-1], offset_reg)
    bracket, prot, binsns = "none", "none", 0
    for j in range(first - 1, max(-1, idx - BEFORE), -1):
        x = ins[j]
        if x.mnem in ("csrrci", "csrrc", "csrci", "csrc") and "sstatus" in x.ops:
            flag = _regs("riscv64", x.ops)[0] if x.mnem.startswith("csrrc") else None
            for e in range(max(last, idx) + 1, len(ins)):
                y = ins[e]
                if y.mnem in ("csrs", "csrrs", "csrsi", "csrw") and "sstatus" in y.ops:
                    bracket, binsns = "irq", 3 if flag else 2
                    prot = _own_or_caller(ins, j, e, idx, site_set, _CALLS["riscv64"])
                    break
            break
    replaceable = access in REPLACEABLE
    removed = len(lookup)  # slli, add, ld: DELTA needs no table (the lw itself becomes the constant)
    if prot == "own" and replaceable:
        removed += binsns + (2 if access == "rmw" else 0)  # lw/add/sw -> one AMO
    return ArchSite(addr=addr, function=_function(img, addr), access=access, protection=prot,
                    bracket=bracket, bracket_insns=binsns, replaceable=replaceable, removed=removed)


_S390_D = re.compile(r"(?:^|, )0x3b8(?:$|, )")


def _s390_sites(img: KernelImage, md, starts: np.ndarray) -> list[int]:
    t = img.text
    b = np.frombuffer(t, dtype=np.uint8)
    ok = starts[starts + 4 <= len(t)]
    f = (b[ok + 2] == 0x03) & (b[ok + 3] == 0xB8)   # B=0, displacement 0x3b8 in bytes 2-3
    out = []
    for o in ok[f].tolist():
        code = t[o:o + 6]
        for a, s, m, ops in md.disasm_lite(code, img.stext + o, 1):
            if _S390_D.search(ops) and "(" not in ops:
                out.append(a)
    return out


def _s390_classify(img, md, addr, starts, site_set) -> ArchSite:
    ins, idx = _window(md, img, addr, starts, 2)
    x = ins[idx]
    regs = _regs("s390x", x.ops)
    access, first, last = _follow("s390x", ins, idx, regs[0] if regs else "r0")
    bracket, prot, binsns = "none", "none", 0
    for j in range(first - 1, max(-1, idx - BEFORE), -1):
        if ins[j].mnem == "stnsm":
            for e in range(max(last, idx) + 1, len(ins)):
                if ins[e].mnem in ("stosm", "ssm"):
                    bracket, binsns = "psw", 2
                    prot = _own_or_caller(ins, j, e, idx, site_set, _CALLS["s390x"])
                    break
            break
    replaceable = access in REPLACEABLE
    removed = binsns if (prot == "own" and replaceable) else 0
    return ArchSite(addr=addr, function=_function(img, addr), access=access, protection=prot,
                    bracket=bracket, bracket_insns=binsns, replaceable=replaceable, removed=removed,
                    detail=f"{x.mnem} {x.ops}")


# --------------------------------------------------------------------------- entry point

def analyse_arch(img: KernelImage, progress: Progress | None = None) -> ArchReport:
    """Find and classify every this_cpu site of ``img`` (any Debian architecture but arm64,
    which :mod:`localmap.perf.sites` analyses)."""
    arch = img.arch
    if arch == "arm64":
        raise LocalmapError("arm64 images are analysed by localmap.perf.sites.analyse")
    path = this_cpu_path(arch)
    md = _md(arch)
    prog = as_progress(progress)
    rep = ArchReport(arch=arch, image=str(img.path), kind=img.kind, symbols=img.symbols.source,
                     preempt_model=img.preempt_model(), preempt_count=img.preempt_count(),
                     text_start=img.stext, text_end=img.etext, text_bytes=img.text_bytes,
                     pattern=path.site, notes=list(img.notes))
    if arch == "amd64":
        pv = _PercpuVars(img)
        found = _x86_sites(img, md, prog)
        rep.sites = [_x86_classify(img, x, pv, ins, k) for x, ins, k in found]
        return rep
    if arch == "armhf":
        addrs = _arm_sites(img)
        rep.sites = _each(addrs, lambda a, s: _arm_classify(img, md, a, s), prog)
        return rep
    if arch == "ppc64el":
        d, votes = ppc_data_offset(img)
        mask = ppc_soft_mask(img)
        rep.params = {"data_offset": d, "data_offset_votes": votes, "irq_soft_mask": mask}
        rep.pattern = path.site.replace("D(r13)", f"{d}(r13)")
        restore = {n for n in img.symbols.names if n in ("arch_local_irq_restore", "__arch_local_irq_restore")}
        addrs = _ppc_sites(img, d)
        rep.sites = _each(addrs, lambda a, s: _ppc_classify(img, md, a, s, mask, restore), prog)
        return rep
    if arch == "riscv64":
        starts = riscv_starts(img.text)
        addrs = _riscv_sites(img, starts)
        rep.sites = _each(addrs, lambda a, s: _riscv_classify(img, md, a, starts, s), prog)
        return rep
    if arch == "s390x":
        starts = s390_starts(img.text)
        addrs = _s390_sites(img, md, starts)
        rep.sites = _each(addrs, lambda a, s: _s390_classify(img, md, a, starts, s), prog)
        return rep
    raise LocalmapError(f"no site analysis for {arch}")


def _each(addrs: list[int], fn, prog: Progress) -> list[ArchSite]:
    site_set = set(addrs)
    out = []
    prog.start("classifying this_cpu sites", total=len(addrs))
    for n, a in enumerate(addrs):
        out.append(fn(a, site_set))
        if n % 256 == 0:
            prog.update(n)
    return out


__all__ = ["ASSUMPTIONS", "ArchReport", "ArchSite", "analyse_arch", "ppc_data_offset", "riscv_starts",
           "s390_starts"]
