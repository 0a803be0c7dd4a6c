"""this_cpu access sites in an arm64 kernel image, found with a real disassembler (capstone).

What it models: arm64's this_cpu operations as compiled into a real kernel (FACTS.md §3):

    [preempt_count++]  mrs xR, tpidr_el1  add xA, xP, xR  <op on [xA]>  [preempt_count--; resched?]

A *site* is one read of the CPU-offset register, ``mrs xN, tpidr_el1``, at a 4-byte-aligned word
of ``[_stext, _etext)`` -- the count ``aarch64-linux-gnu-objdump -D | grep 'mrs.*tpidr_el1'``
gives over the same range. The ``mrs xN, tpidr_el2`` copies that VHE kernels patch in at boot
live in the alternative-replacement subsection of the same text and are counted apart
(``el2_reads``), as is nVHE KVM code that reads tpidr_el2 itself; they are not sites.

Method (fast by construction): one vectorised scan of the text as little-endian 32-bit words for
the ``mrs`` encodings, then capstone only on a window around each hit (clipped to the enclosing
function), then a small data-flow walk from the offset register to the access that consumes it.
Each site gets: its function (from kallsyms/System.map/.symtab), the op (``add``/``or``/
``andnot``/``xchg``/``cmpxchg``/``read``/``write``/``rmw``/``ptr``/``other``), the atomic form in the
image (``llsc`` loop, ``lse`` instruction, ``plain``), whether the alternatives table patches it
to LSE at boot, whether a preempt-count increment/decrement (+ resched check) brackets it, and
how many instructions the local mapping removes (DESIGN.md 12-14).

Deliberate simplifications (all reported, none hidden):
* the data-flow walk is linear (it follows fall-through, not branches), over at most
  ``AFTER`` instructions; a consumer behind a branch is classified ``other``;
* the local mapping still needs the constant ``DELTA_THIS_CPU`` in a register: we count the
  ``mrs`` as *replaced* by one move-immediate, not removed (see :data:`ASSUMPTIONS`);
* without ``CONFIG_PREEMPT_COUNT`` a ``this_cpu_*`` op and a ``__this_cpu_*``/``raw_cpu_*``
  access compile to the same instructions; such sites are labelled ``no-preempt-count``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from localmap.errors import LocalmapError
from localmap.perf.image import ImageFacts, KernelImage
from localmap.progress import Progress, as_progress

# mrs Xt, <sysreg>: 0xd5300000 | sysreg<<5 | Rt; TPIDR_EL1 = (3,0,13,0,4), TPIDR_EL2 = (3,4,13,0,2)
MRS_MASK = 0xFFFFFFE0
MRS_TPIDR_EL1 = 0xD538D080
MRS_TPIDR_EL2 = 0xD53CD040
BEFORE = 12  # instructions examined before a site (preempt_count increment)
AFTER = 28  # instructions examined after it (consumer, preempt_count decrement, resched check)

ASSUMPTIONS = [
    "A site is one aligned word `mrs xN, tpidr_el1` in [_stext, _etext); objdump -D counts the same.",
    "Local mapping (DESIGN.md 13): the address becomes ptr + DELTA_THIS_CPU; DELTA is a multiple of "
    "the split-level entry size, so one MOVZ/MOVN materialises it: the mrs is replaced 1:1, not removed.",
    "Removed instructions: the preempt_count increment (ldr/add/str) and decrement with its resched "
    "check (ldr/sub/str/cbz|cbnz[/ldr/cbz|cbnz] and the slow-path bl) around a single-access op.",
    "Replaceable: a single LSE instruction, one LL/SC loop, or one plain load or store (DESIGN.md 13); "
    "cmpxchg128/casp, multi-access pointers and non-atomic read-modify-write keep preemption control (14).",
    "The image holds the LL/SC form inline with the LSE form as an alternative; on LSE hardware the "
    "alternative is what runs (read from the image's .altinstructions when its symbols are known).",
]

_REG = re.compile(r"\b([xw])(\d+)\b")
_LSE = re.compile(r"^(ld|st)(add|clr|set|eor|smax|smin|umax|umin)(a|al|l)?(b|h)?$")
_SWP = re.compile(r"^swp(a|al|l)?(b|h)?$")
_CAS = re.compile(r"^cas(a|al|l)?(b|h)?$")
_CASP = re.compile(r"^casp(a|al|l)?$")
_LDX = re.compile(r"^ld(a)?xr(b|h)?$")
_LDXP = re.compile(r"^ld(a)?xp$")
_STX = re.compile(r"^st(l)?xr(b|h)?$")
_LOAD = re.compile(r"^(ldr|ldur|ldar|ldapr|ldrs|ldurs)(b|h|w|sw|sb|sh)?$")
_STORE = re.compile(r"^(str|stur|stlr)(b|h)?$")
_LSE_OP = {"add": "add", "clr": "andnot", "set": "or", "eor": "xor", "smax": "max", "smin": "min",
           "umax": "max", "umin": "min"}
_ALU_OP = {"add": "add", "sub": "add", "orr": "or", "bic": "andnot", "and": "andnot", "eor": "xor",
           "mov": "xchg", "cmp": "cmpxchg", "mvn": "andnot"}


@dataclass
class Site:
    addr: int
    function: str
    func_offset: int
    reg: int
    op: str  # add/or/andnot/xor/xchg/cmpxchg/cmpxchg128/read/write/rmw/ptr/other
    form: str  # llsc / lse / plain / none
    lse_alt: bool  # an alternative patches the LL/SC loop to an LSE instruction at boot
    vhe_alt: bool  # an alternative patches the mrs to tpidr_el2 at boot
    protection: str  # preempt / caller / no-preempt-count
    replaceable: bool
    removed: int  # instructions removed by the local mapping (static count)
    removed_fast: int  # of which on the fast path (excludes the resched slow-path call)
    preempt_inc: int
    preempt_dec: int
    # where the sequence lives, for pricing it (perf/mca.py): the instructions the local mapping
    # removes (preempt_count increment, decrement + resched check on the fast path), the access,
    # and where the percpu address comes from: "static" (adrp/add of a DEFINE_PER_CPU symbol in
    # [__per_cpu_start, __per_cpu_end)), "dynamic" (a pointer from a register or memory), or
    # "unknown" (no add of the offset found in the window)
    removed_addrs: tuple[int, ...] = ()
    access_addr: int = 0
    add_addr: int = 0
    base: str = "unknown"


@dataclass
class SitesReport(ImageFacts):
    sites: int
    el2_reads: int
    sites_list: list[Site] = field(default_factory=list)
    alternatives: int = 0  # number of .altinstructions entries read (0: table not found)

    def functions(self) -> list[dict]:
        """Per-function rows, most sites first."""
        rows: dict[str, dict] = {}
        for s in self.sites_list:
            r = rows.setdefault(s.function, {"function": s.function, "sites": 0, "replaceable": 0,
                                             "protected": 0, "removable": 0, "removed": 0, "removed_fast": 0,
                                             "ops": Counter()})
            r["sites"] += 1
            r["replaceable"] += s.replaceable
            r["protected"] += s.protection == "preempt"
            r["removed"] += s.removed
            r["removed_fast"] += s.removed_fast
            r["removable"] += s.removed > 0
            r["ops"][s.op] += 1
        out = []
        for r in rows.values():
            r["ops"] = dict(sorted(r["ops"].items()))
            out.append(r)
        out.sort(key=lambda r: (-r["sites"], r["function"]))
        return out

    def totals(self) -> dict:
        c = Counter()
        ops, forms, prot = Counter(), Counter(), Counter()
        for s in self.sites_list:
            c["replaceable"] += s.replaceable
            c["removed"] += s.removed
            c["removed_fast"] += s.removed_fast
            c["lse_alt"] += s.lse_alt
            c["vhe_alt"] += s.vhe_alt
            ops[s.op] += 1
            forms[s.form] += 1
            prot[s.protection] += 1
        return {"sites": self.sites, "el2_reads": self.el2_reads, "functions": len(self.functions()),
                "replaceable": c["replaceable"], "removed_instructions": c["removed"],
                "removed_fast_path": c["removed_fast"], "lse_alternatives": c["lse_alt"],
                "vhe_alternatives": c["vhe_alt"], "ops": dict(sorted(ops.items())),
                "forms": dict(sorted(forms.items())), "protection": dict(sorted(prot.items()))}

    def to_json(self, per_site: bool = False) -> dict:
        d = {**self.facts_json(), "sites": self.sites, "el2_reads": self.el2_reads,
             "alternatives": self.alternatives, "totals": self.totals(),
             "functions": self.functions(), "assumptions": ASSUMPTIONS}
        if per_site:
            d["site_list"] = [dict(asdict(s), addr=hex(s.addr)) for s in self.sites_list]
        return d


def scan_words(text: bytes, value: int, mask: int = MRS_MASK) -> np.ndarray:
    """Indices of the aligned little-endian words ``w`` with ``w & mask == value``."""
    n = len(text) // 4
    words = np.frombuffer(text, dtype="<u4", count=n)
    return np.flatnonzero((words & np.uint32(mask)) == np.uint32(value))


def _regs(op_str: str) -> list[tuple[str, int]]:
    return [(k, int(n)) for k, n in _REG.findall(op_str)]


def _mem(op_str: str) -> tuple[int | None, int | None, str]:
    """(base reg, index reg, raw) of the first memory operand ``[...]``."""
    m = re.search(r"\[([^\]]*)\]", op_str)
    if not m:
        return None, None, ""
    parts = [p.strip() for p in m.group(1).split(",")]
    base = idx = None
    b = _REG.fullmatch(parts[0]) if parts else None
    if b:
        base = int(b.group(2))
    elif parts and parts[0] == "sp":
        base = 31
    if len(parts) > 1:
        i = _REG.fullmatch(parts[1])
        if i:
            idx = int(i.group(2))
    return base, idx, m.group(1)


def _dest(mnem: str, op_str: str) -> int | None:
    """Register written by an instruction (first operand), for the instruction classes we follow."""
    if mnem.startswith(("st", "b", "cb", "tb", "cmp", "cmn", "tst", "prfm", "ret", "nop", "dmb", "isb")):
        if _STX.match(mnem):
            r = _regs(op_str)
            return r[0][1] if r else None
        if _LSE.match(mnem) and mnem.startswith("st"):
            return None
        return None
    r = _regs(op_str)
    return r[0][1] if r else None


def _uses(op_str: str, reg: int, skip_dest: bool) -> bool:
    rs = _regs(op_str)
    if skip_dest:
        rs = rs[1:]
    return any(n == reg for _, n in rs)


class _Alternatives:
    """Replacement code for patched ranges, from the image's ``.altinstructions`` table."""

    def __init__(self, img: KernelImage):
        self.ranges: list[tuple[int, int, int, int]] = []  # (orig, orig_len, alt, alt_len)
        lo, hi = img.symbols.get("__alt_instructions"), img.symbols.get("__alt_instructions_end")
        if lo is None or hi is None or hi <= lo or (hi - lo) % 12:
            return
        blob = img.read_va(lo, hi - lo)
        if blob is None:
            return
        rec = np.frombuffer(blob, dtype=np.dtype([("orig", "<i4"), ("alt", "<i4"), ("cap", "<u2"),
                                                  ("olen", "u1"), ("alen", "u1")]))
        self.lo = lo  # positions are kept relative to the table (kernel VAs overflow int64)
        base = np.arange(len(rec), dtype=np.int64) * 12
        orig = base + rec["orig"].astype(np.int64)
        alt = base + 4 + rec["alt"].astype(np.int64)
        order = np.argsort(orig)
        self.orig = orig[order]
        self.olen = rec["olen"][order].astype(np.int64)
        self.alt = alt[order]
        self.alen = rec["alen"][order].astype(np.int64)
        self.cb = (rec["cap"][order] & 0x8000) != 0
        self.count = len(rec)

    count = 0

    def covering(self, addr: int) -> list[tuple[int, int]]:
        """(alt address, alt length) of the entries whose original range holds ``addr``."""
        if not self.count:
            return []
        rel = addr - self.lo
        i = int(np.searchsorted(self.orig, rel, side="right"))
        out = []
        for j in range(max(0, i - 4), i):
            if self.orig[j] <= rel < self.orig[j] + self.olen[j] and not self.cb[j]:
                out.append((self.lo + int(self.alt[j]), int(self.alen[j])))
        return out


def _disasm(md, img: KernelImage, start: int, end: int) -> list[tuple[int, str, str]]:
    code = img.read(start, end - start)
    return [(a, m, o) for a, _s, m, o in md.disasm_lite(code, start)]


def _classify(md, img: KernelImage, alts: _Alternatives, addr: int, has_pc: bool | None) -> Site:
    name_start = img.symbols.lookup(addr)
    fstart, fend = img.symbols.extent(addr, img.etext)
    fname = name_start[0] if name_start else "?"
    start = max(fstart, img.stext, addr - 4 * BEFORE)
    end = min(fend, img.etext, addr + 4 * (AFTER + 1))
    if end <= addr:
        end = min(img.etext, addr + 4)
    ins = _disasm(md, img, start, end)
    idx = next((i for i, x in enumerate(ins) if x[0] == addr), None)
    if idx is None:  # capstone stopped on an undecodable word before the site: restart at it
        ins = _disasm(md, img, addr, end)
        idx = 0
    reg = int.from_bytes(img.read(addr, 4), "little") & 31

    # --- follow the offset register to its consumer(s) -------------------------------------
    tracked = {reg}
    accesses: list[tuple[int, str, str]] = []
    passed_to_call = False
    derived = False  # an address was formed from the offset (this_cpu_ptr)
    last = idx
    i = idx + 1
    while i < len(ins) and tracked:
        a, m, o = ins[i]
        if m in ("ret", "b", "br", "eret"):
            if m == "b" and i + 1 < len(ins) and accesses == [] and _CAS.match(ins[i + 1][1] or ""):
                i += 1  # static branch to the out-of-line LL/SC variant; the LSE form follows
                continue
            break
        if m in ("bl", "blr"):
            if any(r in tracked for r in range(0, 8)):
                passed_to_call = True
            tracked -= set(range(0, 19))  # caller-saved registers die across the call
            i += 1
            continue
        # conditional branches (b.cond, cbz, cbnz, tbz, tbnz): follow the fall-through path
        base, index, _ = _mem(o)
        is_mem = "[" in o
        if is_mem and (base in tracked or index in tracked):
            accesses.append((a, m, o))
            last = i
            if _LDX.match(m) or _LDXP.match(m):  # LL/SC loop: swallow it up to the cbnz
                j = i + 1
                while j < len(ins) and not ins[j][1].startswith("cbnz"):
                    j += 1
                accesses[-1] = (a, m, o + " ; " + "; ".join(f"{x[1]} {x[2]}" for x in ins[i + 1:j + 1]))
                last = i = j
            i += 1
            d = _dest(m, o)
            if d is not None and d in tracked and not (_STORE.match(m) or m.startswith("st")):
                tracked.discard(d)
            continue
        d = _dest(m, o)
        src_uses = any(_uses(o, r, skip_dest=True) for r in tracked)
        if src_uses and m in ("add", "adds", "sub", "mov", "orr") and d is not None:
            tracked.add(d)
            derived = True
            last = i
        elif src_uses and m not in ("cmp", "cmn", "tst"):
            last = i
        elif d is not None and d in tracked:
            tracked.discard(d)
        i += 1

    op, form = "other", "none"
    lse_alt = False
    if not accesses and (passed_to_call or derived):
        op, form = "ptr", "none"
    elif len(accesses) == 1:
        a, m, o = accesses[0]
        if _LDX.match(m) or _LDXP.match(m):
            form = "llsc"
            inner = [t.split()[0] for t in o.split(" ; ", 1)[1].split("; ")] if " ; " in o else []
            op = "cmpxchg128" if _LDXP.match(m) else "xchg"
            for mm in inner:
                if mm in _ALU_OP and not _LDXP.match(m):
                    op = _ALU_OP[mm]
                    break
            for alt_addr, alt_len in alts.covering(a):
                code = img.read_va(alt_addr, alt_len)
                if code and any(_LSE.match(x[2]) or _SWP.match(x[2]) or _CAS.match(x[2]) or _CASP.match(x[2])
                                for x in md.disasm_lite(code, alt_addr)):
                    lse_alt = True
        elif _LSE.match(m):
            form, op = "lse", _LSE_OP[_LSE.match(m).group(2)]
        elif _SWP.match(m):
            form, op = "lse", "xchg"
        elif _CAS.match(m):
            form, op = "lse", "cmpxchg"
        elif _CASP.match(m):
            form, op = "lse", "cmpxchg128"
        elif _LOAD.match(m) or m == "ldp":
            form, op = "plain", "read"
        elif _STORE.match(m) or m == "stp":
            form, op = "plain", "write"
    elif len(accesses) == 2 and _LOAD.match(accesses[0][1]) and _STORE.match(accesses[1][1]) \
            and _mem(accesses[0][2])[2] == _mem(accesses[1][2])[2]:
        op, form = "rmw", "plain"
    elif len(accesses) > 1 or passed_to_call:
        op, form = "ptr", "plain"

    # --- preempt_count increment before, decrement + resched check after ---------------------
    inc = dec = dec_fast = 0
    pc_slot = None
    inc_addrs: list[int] = []
    dec_addrs: list[int] = []
    for j in range(idx - 1, max(-1, idx - BEFORE - 1), -1):
        a, m, o = ins[j]
        if m == "add" and re.fullmatch(r"w(\d+), w\1, #1", o) and j >= 1 and j + 1 < len(ins):
            p = int(o.split(",")[0][1:])
            ld = next((ins[k] for k in range(j - 1, max(-1, j - 4), -1)
                       if _LOAD.match(ins[k][1]) and ins[k][2].startswith(f"w{p}, [")), None)
            st = next((ins[k] for k in range(j + 1, min(len(ins), j + 4))
                       if _STORE.match(ins[k][1]) and ins[k][2].startswith(f"w{p}, [")), None)
            if ld and st and _mem(ld[2])[2] == _mem(st[2])[2] and _mem(ld[2])[0] not in (None, 31):
                pc_slot = _mem(st[2])[2]
                inc = 3
                inc_addrs = [ld[0], a, st[0]]
                break
    if pc_slot is not None:
        for j in range(last + 1, len(ins)):
            a, m, o = ins[j]
            if _LOAD.match(m) and _mem(o)[2] == pc_slot and o.startswith("x"):
                p = int(o.split(",")[0][1:])
                k = j + 1
                seq = 1
                ok = False
                got = [a]
                while k < len(ins) and k <= j + 3:
                    mk, ok_ = ins[k][1], ins[k][2]
                    if mk in ("sub", "add") and ok_.startswith(f"x{p}, x{p}, "):
                        seq += 1
                        got.append(ins[k][0])
                    elif _STORE.match(mk) and _mem(ok_)[2] == pc_slot:
                        seq += 1
                        got.append(ins[k][0])
                        ok = True
                        k += 1
                        break
                    k += 1
                if not ok:
                    continue
                while k < len(ins) and seq < 8:  # resched check: cbz/cbnz, a re-read, cbz/cbnz
                    mk, ok_ = ins[k][1], ins[k][2]
                    if mk in ("cbz", "cbnz") or (_LOAD.match(mk) and _mem(ok_)[2] == pc_slot):
                        seq += 1
                        got.append(ins[k][0])
                        k += 1
                        continue
                    break
                dec_addrs = got
                dec_fast = seq
                dec = seq + (1 if k < len(ins) and ins[k][1] == "bl" else 0)
                break

    if has_pc is False:
        protection = "no-preempt-count"
    elif inc and dec:
        protection = "preempt"
    else:
        protection = "caller"
    single = op in ("add", "or", "andnot", "xor", "xchg", "cmpxchg", "max", "min", "read", "write")
    replaceable = single and form in ("llsc", "lse", "plain")
    removed = removed_fast = 0
    if replaceable and protection == "preempt":
        removed, removed_fast = inc + dec, inc + dec_fast
    vhe_alt = False
    for alt_addr, alt_len in alts.covering(addr):
        code = img.read_va(alt_addr, 4)
        if code and (int.from_bytes(code, "little") & MRS_MASK) == MRS_TPIDR_EL2:
            vhe_alt = True
    base, add_addr = _base_kind(img, ins, idx, reg)
    return Site(addr=addr, function=fname, func_offset=addr - (name_start[1] if name_start else addr),
                reg=reg, op=op, form=form, lse_alt=lse_alt, vhe_alt=vhe_alt, protection=protection,
                replaceable=replaceable, removed=removed, removed_fast=removed_fast,
                preempt_inc=inc, preempt_dec=dec,
                removed_addrs=tuple(inc_addrs + dec_addrs) if removed else (),
                access_addr=accesses[0][0] if accesses else 0, add_addr=add_addr, base=base)


_ADRP = re.compile(r"^x(\d+), #(0x[0-9a-f]+|\d+)$")


def _base_kind(img: KernelImage, ins: list[tuple[int, str, str]], idx: int, reg: int) -> tuple[str, int]:
    """Where the percpu address added to the offset comes from: ``static`` when the other operand
    of the first ``add`` (or register-offset access) consuming the offset register is formed by
    ``adrp``+``add``/``:lo12:`` of an address in ``[__per_cpu_start, __per_cpu_end)``; ``dynamic``
    otherwise; ``unknown`` when no consumer is in the window. Returns (kind, address of the add)."""
    lo, hi = img.symbols.get("__per_cpu_start"), img.symbols.get("__per_cpu_end")
    other = None
    at = 0
    for j in range(idx + 1, min(len(ins), idx + AFTER)):
        a, m, o = ins[j]
        regs = _regs(o)
        if m == "add" and len(regs) == 3 and reg in (regs[1][1], regs[2][1]):
            other = regs[2][1] if regs[1][1] == reg else regs[1][1]
            at = a
            break
        base_, index_, _ = _mem(o)
        if "[" in o and index_ is not None and reg in (base_, index_):
            other = index_ if base_ == reg else base_
            at = a
            break
        d = _dest(m, o)
        if d == reg:
            break
    if other is None:
        return "unknown", 0
    if lo is None or hi is None:
        return "dynamic", at
    # walk back from the consumer for the last write of `other`: adrp (+ add #lo12) = static
    k = next(i for i, x in enumerate(ins) if x[0] == at)
    value = None
    for j in range(k - 1, -1, -1):
        a, m, o = ins[j]
        if _dest(m, o) != other:
            continue
        if m == "add":
            mm = re.fullmatch(rf"x{other}, x{other}, #(0x[0-9a-f]+|\d+)", o)
            if not mm:
                return "dynamic", at
            imm = int(mm.group(1), 0)
            for jj in range(j - 1, -1, -1):
                a2, m2, o2 = ins[jj]
                if _dest(m2, o2) == other:
                    ad = _ADRP.match(o2) if m2 == "adrp" else None
                    value = int(ad.group(2), 0) + imm if ad else None
                    break
            break
        if m == "adrp":
            ad = _ADRP.match(o)
            value = int(ad.group(2), 0) if ad else None
        break
    if value is not None and lo <= value < hi:
        return "static", at
    return "dynamic", at


def analyse(img: KernelImage, progress: Progress | None = None) -> SitesReport:
    """Find and classify every this_cpu site of ``img``."""
    try:
        import capstone
    except ImportError:  # pragma: no cover - declared dependency
        raise LocalmapError("capstone is needed for the site analysis (pip install capstone)") from None
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    el1 = scan_words(img.text, MRS_TPIDR_EL1)
    el2 = scan_words(img.text, MRS_TPIDR_EL2)
    alts = _Alternatives(img)
    has_pc = img.preempt_count()
    sites: list[Site] = []
    addrs = [img.stext + 4 * int(i) for i in el1]
    prog = as_progress(progress)
    prog.start("classifying this_cpu sites", total=len(addrs))
    for n, a in enumerate(addrs):
        sites.append(_classify(md, img, alts, a, has_pc))
        if n % 256 == 0:
            prog.update(n)
    return SitesReport(image=str(img.path), kind=img.kind, symbols=img.symbols.source,
                       preempt_model=img.preempt_model(), preempt_count=has_pc,
                       text_start=img.stext, text_end=img.etext, text_bytes=img.text_bytes,
                       sites=len(el1), el2_reads=len(el2), sites_list=sites, alternatives=alts.count)


def by_function(report: SitesReport) -> dict[str, list[Site]]:
    out: dict[str, list[Site]] = defaultdict(list)
    for s in report.sites_list:
        out[s.function].append(s)
    return out
