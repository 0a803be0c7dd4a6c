"""this_cpu sequences priced by a machine model: ``llvm-mca`` (LLVM 19) before and after.

What it models: each site's real instruction sequence, cut from the image (the preempt-count
increment through the decrement's fast path, or the ``mrs`` through the access when nothing is
removed), and the sequence the local mapping leaves (DESIGN.md 12-13), priced with LLVM's
scheduling models of ``neoverse-n1``, ``neoverse-v2`` and ``ampere1`` (AmpereOne, the talk's
machine). Variants of the address computation after the change (``DELTA_THIS_CPU`` = local base -
``__per_cpu_start`` is a boot-time value: KASLR and ``pcpu_base_addr`` are chosen at boot):

* ``load``: ``mrs xR, tpidr_el1`` becomes ``adrp xR, delta ; ldr xR, [xR, :lo12:delta]``;
* ``patched``: it becomes ``movn``+``movk``+``movk`` patched at boot (a 48-bit negative value);
* ``hoisted``: DELTA already sits in a register (the ``mrs`` disappears, register pressure ignored);
* ``static-alias`` (sites whose address is ``adrp``/``add`` of a ``DEFINE_PER_CPU`` symbol only):
  the local alias is image-relative, so ``mrs`` and the ``add`` of the offset both disappear;
  dynamic pointers fall back to ``patched``.

Figures per site and core: ``high`` = cycles of one pass of the sequence (``-iterations=1``,
loads ordered after older stores: ``-noalias=false``, so the preempt count's store->load chain
is serial), ``low`` = cycles per pass in a steady loop of 100 passes (default aliasing: the
bracket overlaps with the rest). Saved = before - after in each mode.

Assumptions (each printed with the results, ids M1-M6):
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from localmap.errors import LocalmapError

CORES = ("neoverse-n1", "neoverse-v2", "ampere1")
VARIANTS = ("load", "patched", "hoisted", "static-alias")
LLVM_MCA = "llvm-mca-19"
MAX_SEQ = 40  # instructions: longer windows are clipped (a sequence spanning a call, say)

ASSUMPTIONS = [
    "M1 llvm-19's AArch64 models lack scheduling data for LSE atomics (ldadd, stadd, cas, swp...) "
    "and some system instructions: llvm-mca skips them (-skip-unsupported-instructions=any). The "
    "access is the same before and after, so only the difference is priced, never an absolute op cost.",
    "M2 branches are not taken (the fast path: preempt count non-zero after the decrement or no "
    "resched pending); branch prediction, caches and TLBs are not modelled (L1 hits).",
    "M3 'high' = one pass with loads ordered after older stores (the preempt count round trip is "
    "serial); 'low' = steady-state cycles per pass of a 100-pass loop (fully overlapped). Real "
    "kernels sit between, depending on the surrounding code.",
    "M4 DELTA_THIS_CPU is a boot-time value: 'load' reads it from memory (adrp+ldr), 'patched' "
    "materialises a 48-bit negative immediate patched at boot (movn+movk+movk), 'hoisted' assumes "
    "it is already in a register; 'static-alias' drops mrs and the add for DEFINE_PER_CPU sites "
    "whose local alias is image-relative (dynamic pointers keep 'patched').",
    "M5 each execution of a site runs its removed preempt bracket once (a bracket shared by two "
    "sites is attributed to each).",
    "M6 the sequence is cut linearly from the image between the first and last instruction "
    "involved (at most 40 instructions); instructions in between that belong to the surrounding "
    "code are priced before and after alike.",
]


@dataclass
class SitePrice:
    addr: int
    before: list[str]
    after: dict[str, list[str]]
    # core -> variant -> (low, high) cycles saved per execution
    saved: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


_BRANCH = re.compile(r"^(b|bl|b\.\w+|cbz|cbnz|tbz|tbnz)$")


def _asm(mnem: str, op: str) -> str:
    """Capstone text -> something llvm-mc assembles: absolute targets become a local label."""
    if _BRANCH.match(mnem):
        parts = [p.strip() for p in op.split(",")]
        parts[-1] = "9f"
        return f"{mnem} {', '.join(parts)}"
    if mnem in ("adrp", "adr"):
        reg = op.split(",")[0]
        return f"{mnem} {reg}, 9f"
    if mnem.startswith("ldr") and re.search(r",\s*#0x[0-9a-f]+$", op) and "[" not in op:
        reg = op.split(",")[0]
        return f"{mnem} {reg}, 9f"
    return f"{mnem} {op}".strip()


def sequences(img, site) -> SitePrice | None:
    """Before/after sequences of ``site`` (a :class:`~localmap.perf.sites.Site`) in ``img``."""
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    involved = [site.addr, *site.removed_addrs]
    if site.access_addr:
        involved.append(site.access_addr)
    if site.add_addr:
        involved.append(site.add_addr)
    lo, hi = min(involved), max(involved)
    hi = min(hi, lo + 4 * (MAX_SEQ - 1))
    code = img.read(lo, hi + 4 - lo)
    ins = [(a, m, o) for a, _s, m, o in md.disasm_lite(code, lo)]
    if not ins or ins[0][0] != lo:
        return None
    removed = set(site.removed_addrs)
    reg = f"x{site.reg}"
    before = [_asm(m, o) for a, m, o in ins]
    after: dict[str, list[str]] = {}
    for var in VARIANTS:
        out = []
        for a, m, o in ins:
            if a in removed:
                continue
            if a == site.addr:
                if var == "load":
                    out += [f"adrp {reg}, 9f", f"ldr {reg}, [{reg}, :lo12:9f]"]
                elif var == "patched" or (var == "static-alias" and site.base != "static"):
                    out += [f"movn {reg}, #0x1, lsl #32", f"movk {reg}, #0x0, lsl #16", f"movk {reg}, #0x0"]
                continue  # hoisted, static-alias: the mrs disappears
            if var == "static-alias" and site.base == "static" and a == site.add_addr:
                continue
            out.append(_asm(m, o))
        after[var] = out
    return SitePrice(addr=site.addr, before=before, after=after)


def _mca(regions: list[tuple[str, list[str]]], core: str, iterations: int, noalias: bool) -> dict[str, float]:
    """Cycles per pass of each region (TotalCycles / Iterations)."""
    text = []
    for name, body in regions:
        text.append(f"# LLVM-MCA-BEGIN {name}")
        text += body
        text.append("9:")
        text.append("# LLVM-MCA-END")
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as fh:
        fh.write("\n".join(text) + "\n")
        path = fh.name
    try:
        proc = subprocess.run([LLVM_MCA, "-mtriple=aarch64", f"-mcpu={core}", f"-iterations={iterations}",
                               f"-noalias={'true' if noalias else 'false'}",
                               "-skip-unsupported-instructions=any", "-json", path],
                              capture_output=True, text=True)
    finally:
        Path(path).unlink(missing_ok=True)
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.splitlines() if "error" in ln][:1] or proc.stderr.splitlines()[:1]
        raise LocalmapError(f"{LLVM_MCA} -mcpu={core} failed: {err[0] if err else proc.returncode}")
    data = json.loads(proc.stdout)
    out = {}
    for r in data.get("CodeRegions", []):
        sv = r["SummaryView"]
        out[r["Name"]] = sv["TotalCycles"] / max(1, sv["Iterations"])
    return out


def available() -> bool:
    return shutil.which(LLVM_MCA) is not None


def price_sites(img, sites: list, cores: tuple[str, ...] = CORES) -> dict[int, SitePrice]:
    """Price every site in ``sites`` on every core (one llvm-mca run per core and mode)."""
    if not available():
        raise LocalmapError(f"{LLVM_MCA} not found: apt-get install llvm-19")
    prices: dict[int, SitePrice] = {}
    for s in sites:
        sp = sequences(img, s)
        if sp is not None:
            prices[s.addr] = sp
    regions = []
    for sp in prices.values():
        regions.append((f"{sp.addr:x}.before", sp.before))
        for var, body in sp.after.items():
            regions.append((f"{sp.addr:x}.{var}", body))
    for core in cores:
        high = _mca(regions, core, 1, noalias=False) if regions else {}
        low = _mca(regions, core, 100, noalias=True) if regions else {}
        for sp in prices.values():
            k = f"{sp.addr:x}"
            # an empty region (every instruction removed) is absent from llvm-mca's report: 0
            sp.saved[core] = {var: (round(low.get(f"{k}.before", 0.0) - low.get(f"{k}.{var}", 0.0), 3),
                                    round(high.get(f"{k}.before", 0.0) - high.get(f"{k}.{var}", 0.0), 3))
                              for var in sp.after}
    return prices
