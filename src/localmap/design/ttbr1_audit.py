"""The TTBR1 audit of Linux 6.12 (arm64): every place that loads TTBR1, uses ``swapper_pg_dir``
as a root, or finds tables at a fixed offset from the TTBR1 root, and what the design needs.

What it models: :data:`AUDIT` is the audit table, one :class:`Row` per (file, function) of
Debian's ``linux-source-6.12`` (6.12.117): what mainline loads or assumes there, what the
design (DESIGN.md items 5, 6, 10, 11) must do instead, and the checker scenario that shows the
ordering hazard (``None`` when there is none, with the reason). The rows are written in our own
words; no kernel text is copied. :func:`scan` finds the places in a kernel source tree by
pattern (our own scanner: comment-stripped lines, the enclosing C function, assembler
``SYM_*_START`` symbol or macro), so the tests can hold the table equal to the real source.

Scope (deliberate): ``arch/arm64`` without KVM (KVM's TTBR1 accesses are a guest's registers),
``mm/`` and ``drivers/firmware/efi``; generic code that edits kernel tables through ``init_mm``
(``pgd_offset_k``: vmalloc, ioremap, percpu, KASAN) is one row, the sync point, not one row per
caller. Register definitions (``tools/sysreg``, ``sysreg.h``) and Kconfig help are not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# What the scanner looks for (each a regular expression on comment-stripped source lines).
PATTERNS = {
    "writes TTBR1": re.compile(
        r"\bmsr\s+ttbr1_el1\b|write_sysreg\([^;]*\bttbr1_el1\)|\b(?:__)?cpu_replace_ttbr1\(|"
        r"\bcpu_enable_swapper_cnp\(|\bidmap_cpu_replace_ttbr1\(|^\s*load_ttbr1\b|"
        r"^\s*break_before_make_ttbr_switch\b|^\s*__idmap_cpu_set_reserved_ttbr1\b|"
        r"^\s*tramp_map_kernel\b|^\s*tramp_unmap_kernel\b|\bhibernate_exit\(", re.M),
    "uses swapper_pg_dir": re.compile(r"\bswapper_pg_dir\b", re.M),
    "offset from the TTBR1 root": re.compile(r"\b(?:TRAMP|RESERVED)_SWAPPER_OFFSET\b|"
                                             r"\btramp_pg_dir\b", re.M),
}
SCOPE = ("arch/arm64", "mm", "drivers/firmware/efi")
EXCLUDE = ("arch/arm64/kvm/", "arch/arm64/tools/", "arch/arm64/include/asm/kvm_",
           "arch/arm64/include/asm/vncr_mapping.h", "arch/arm64/include/asm/sysreg.h",
           "arch/arm64/Kconfig")
SUFFIXES = (".c", ".h", ".S")


@dataclass(frozen=True)
class Row:
    file: str            # path in the kernel tree
    function: str        # C function / macro / declaration, assembler symbol or macro
    kinds: tuple         # which of PATTERNS' kinds occur there
    loads: str           # what mainline loads / does there
    design: str          # what the design must load / do
    scenario: str | None  # the checker scenario showing the hazard (None: see ``why``)
    why: str = ""        # why there is no scenario, or what the scenario stands for


W, S, O = "writes TTBR1", "uses swapper_pg_dir", "offset from the TTBR1 root"

AUDIT: tuple[Row, ...] = (
    # --- paths that load a root into TTBR1 on a running CPU
    Row("arch/arm64/kernel/head.S", "secondary_startup", (S,),
        "hands swapper_pg_dir to __enable_mmu for every secondary CPU",
        "hand over CPU k's own root (with its boot data, as the stack is)",
        "secondary-boot-swapper", "safe twin: secondary-boot-percpu-root"),
    Row("arch/arm64/kernel/head.S", "__enable_mmu", (W,),
        "loads the root its caller passes (reserved_pg_dir at primary boot, swapper_pg_dir "
        "from secondary_startup and cpu_resume)", "unchanged: the callers pass CPU k's root",
        None, "a helper: each caller is a row"),
    Row("arch/arm64/kernel/sleep.S", "cpu_resume", (S,),
        "hands swapper_pg_dir to __enable_mmu when a CPU resumes from a deep idle state or "
        "suspend", "CPU k's own root, saved with its suspend context; the resume path runs "
        "this_cpu ops (smp_processor_id, MTE, PM notifiers) before any later fix-up could",
        "resume-swapper-ttbr1", "safe twin: resume-percpu-root"),
    Row("arch/arm64/kernel/suspend.c", "__cpu_suspend_exit", (W,),
        "cpu_enable_swapper_cnp when CnP is supported (swapper_pg_dir again, with CnP)",
        "nothing: keep the root cpu_resume loaded, CnP off", "cnp-enable-swapper",
        "the same call as CnP enabling; safe twin: cnp-enable-percpu-root"),
    Row("arch/arm64/include/asm/mmu_context.h", "cpu_enable_swapper_cnp", (W, S),
        "__cpu_replace_ttbr1(swapper_pg_dir's linear alias, CnP) on the calling CPU",
        "keep CPU k's own root and leave CnP off (DESIGN.md item 10)", "cnp-enable-swapper",
        "safe twin: cnp-enable-percpu-root; CnP alone: cnp-no-smt / cnp-off"),
    Row("arch/arm64/kernel/cpufeature.c", "cpu_enable_cnp", (W,),
        "cpu_enable_swapper_cnp on every CPU as the CnP capability is enabled",
        "do not enable CnP for TTBR1 while per-CPU tables exist (TTBR0's CnP, for user tables "
        "that are the same on every CPU, is unaffected)", "cnp-enable-swapper",
        "safe twin: cnp-enable-percpu-root"),
    Row("arch/arm64/kernel/hibernate.c", "arch_hibernation_header_save", (S,),
        "records swapper_pg_dir as the TTBR1 to restore when the image is resumed",
        "record the hibernating CPU's own root (swapper's when that is CPU 0)",
        "resume-swapper-ttbr1", "the same hazard on the CPU that continues after restore"),
    Row("arch/arm64/kernel/hibernate.c", "swsusp_arch_resume", (W,),
        "hibernate_exit: a copy of the linear map, then the recorded TTBR1",
        "the recorded root above", "resume-swapper-ttbr1",
        "one CPU online; it continues on the recorded root"),
    Row("arch/arm64/kernel/hibernate-asm.S", "swsusp_arch_suspend_exit", (W,),
        "break-before-make switches: to the temporary tables, then to the recorded root",
        "unchanged (loads what it is given)", None, "a helper"),
    Row("arch/arm64/kernel/relocate_kernel.S", "arm64_relocate_new_kernel", (W,),
        "kexec: a copy of the linear map (trans_pgd); every other CPU is stopped",
        "unchanged: no percpu access after it; the next kernel starts afresh", None,
        "no percpu access and no other CPU after the switch"),
    Row("arch/arm64/include/asm/assembler.h", "load_ttbr1", (W,),
        "the given table", "unchanged", None, "a helper (__enable_mmu, hibernate, kexec)"),
    Row("arch/arm64/include/asm/assembler.h", "break_before_make_ttbr_switch", (W,),
        "a zero page, a local TLB flush, then the given table", "unchanged", None,
        "a helper (hibernate, kexec)"),
    Row("arch/arm64/include/asm/mmu_context.h", "cpu_replace_ttbr1", (W,),
        "the table it is given, CnP clear (its caller: KASAN init)",
        "unchanged; callers pass the root they mean", None, "a helper: each caller is a row"),
    Row("arch/arm64/include/asm/mmu_context.h", "__cpu_replace_ttbr1", (W,),
        "declaration", "unchanged", None, "a declaration"),
    Row("arch/arm64/mm/mmu.c", "__cpu_replace_ttbr1", (W,),
        "the given root through the idmap, CnP as asked, exceptions masked",
        "unchanged; root and CnP come from the caller", None, "a helper: each caller is a row"),
    Row("arch/arm64/mm/proc.S", "idmap_cpu_replace_ttbr1", (W,),
        "the reserved tables and a local TLB flush, then the new root",
        "unchanged", None, "a helper: each caller is a row"),
    Row("arch/arm64/mm/proc.S", "__idmap_cpu_set_reserved_ttbr1", (W,),
        "reserved_pg_dir (the symbol), then tlbi vmalle1",
        "any empty root does while switching; the symbol is fine", None,
        "transient: nothing is translated through TTBR1 while it is loaded"),
    Row("arch/arm64/kernel/pi/map_kernel.c", "map_kernel", (W, S),
        "early boot on the boot CPU: init_pg_dir, then swapper_pg_dir (filled from init_pg_dir)",
        "unchanged: CPU 0 runs on swapper's root and no other CPU runs yet", None,
        "boot CPU only, before any per-CPU table"),
    Row("arch/arm64/kernel/pi/map_kernel.c", "idmap_cpu_replace_ttbr1", (W,),
        "declaration for the early boot code", "unchanged", None, "a declaration"),
    Row("arch/arm64/mm/kasan_init.c", "kasan_init_shadow", (W, S),
        "boot CPU: a temporary copy of swapper's root while the shadow is rebuilt, then "
        "swapper_pg_dir", "unchanged: CPU 0 only, before secondaries boot", None,
        "boot CPU only"),
    Row("arch/arm64/mm/kasan_init.c", "clone_next_level", (S,),
        "reads a swapper root entry to clone the next level into the temporary tables",
        "unchanged (boot)", None, "boot CPU only"),
    Row("arch/arm64/mm/kasan_init.c", "clear_next_level", (S,),
        "clears next-level entries below a swapper root entry (early shadow)",
        "unchanged (boot)", None, "boot CPU only"),
    Row("arch/arm64/mm/kasan_init.c", "clear_shadow", (S,),
        "clears swapper root entries of the early shadow", "unchanged (boot, before per-CPU "
        "roots exist)", None, "boot CPU only"),
    Row("arch/arm64/mm/proc.S", "idmap_kpti_install_ng_mappings", (W, S),
        "secondaries save TTBR1 and restore it; the boot CPU walks swapper_pg_dir and sets nG "
        "on every kernel leaf", "the saved root is restored (right already); the nG pass must "
        "also cover every CPU's private local tables, or build them non-global", None,
        "not an ordering hazard of TTBR1: an attribute pass under stop_machine"),
    Row("arch/arm64/mm/context.c", "cpu_do_switch_mm", (W,),
        "the current TTBR1 with the next task's ASID (base kept)",
        "unchanged: it keeps the CPU's root", None, "preserves the CPU's root"),
    Row("arch/arm64/kernel/hyp-stub.S", "__finalise_el2", (W,),
        "switching to VHE, TTBR1 keeps its value across the EL1/EL2 views",
        "unchanged: it keeps the CPU's root", None, "preserves the CPU's root"),
    # --- tables found at a fixed offset from the TTBR1 root (KPTI, SW PAN)
    Row("arch/arm64/include/asm/uaccess.h", "__uaccess_ttbr0_disable", (W, O),
        "SW PAN: TTBR0 <- TTBR1 root - RESERVED_SWAPPER_OFFSET; TTBR1 with the ASID cleared",
        "a per-CPU {tramp, reserved, root} block keeps the reserved copy at that offset "
        "(DESIGN.md item 11)", "kpti-naive-root",
        "the same fixed-offset rule as the trampoline; safe twin: kpti-pgtables-block"),
    Row("arch/arm64/include/asm/uaccess.h", "__uaccess_ttbr0_enable", (W,),
        "SW PAN: TTBR1 with the task's ASID (base kept)", "unchanged", None,
        "preserves the CPU's root"),
    Row("arch/arm64/include/asm/asm-uaccess.h", "__uaccess_ttbr0_disable", (W, O),
        "the assembler form of the SW PAN switch (reserved_pg_dir found below the TTBR1 root)",
        "the per-CPU block", "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/include/asm/asm-uaccess.h", "__uaccess_ttbr0_enable", (W,),
        "TTBR1 with the task's ASID (base kept)", "unchanged", None, "preserves the CPU's root"),
    Row("arch/arm64/kernel/entry.S", "tramp_map_kernel", (W, O),
        "TTBR1 root + TRAMP_SWAPPER_OFFSET: from the trampoline back to the kernel root",
        "the per-CPU block keeps the offset", "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/entry.S", "tramp_unmap_kernel", (W, O),
        "TTBR1 root - TRAMP_SWAPPER_OFFSET: to the trampoline before returning to EL0",
        "the per-CPU block keeps the offset", "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/entry.S", "tramp_ventry", (W,),
        "tramp_map_kernel on every exception entry from EL0 under KPTI",
        "the per-CPU block", "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/entry.S", "tramp_exit", (W,),
        "tramp_unmap_kernel on every return to EL0 under KPTI", "the per-CPU block",
        "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/entry.S", "__sdei_asm_entry_trampoline", (W,),
        "tramp_map_kernel on an SDEI event taken in the trampoline", "the per-CPU block",
        "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/entry.S", "__sdei_asm_exit_trampoline", (W,),
        "tramp_unmap_kernel on SDEI exit to the trampoline", "the per-CPU block",
        "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/include/asm/memory.h", "RESERVED_SWAPPER_OFFSET", (O,),
        "reserved_pg_dir's fixed distance below swapper_pg_dir", "kept in every per-CPU block",
        "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/include/asm/memory.h", "TRAMP_SWAPPER_OFFSET", (O,),
        "tramp_pg_dir's fixed distance below swapper_pg_dir", "kept in every per-CPU block",
        "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/vmlinux.lds.S", "tramp_pg_dir", (O,),
        "the linker places tramp_pg_dir, reserved_pg_dir, swapper_pg_dir consecutively",
        "every per-CPU root sits in a block with the same arrangement", "kpti-naive-root",
        "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/vmlinux.lds.S", "swapper_pg_dir", (S,),
        "(the same placement)", "(the same block per CPU)", "kpti-naive-root",
        "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/kernel/vmlinux.lds.S", "ASSERT", (O, S),
        "link-time checks of the two offsets", "the per-CPU block allocator checks the same",
        "kpti-naive-root", "safe twin: kpti-pgtables-block"),
    Row("arch/arm64/include/asm/pgtable.h", "tramp_pg_dir", (O,),
        "declaration", "unchanged", None, "a declaration"),
    Row("arch/arm64/mm/mmu.c", "map_entry_trampoline", (O,),
        "boot: maps the trampoline page into tramp_pg_dir",
        "each per-CPU block's tramp copy maps it too", "kpti-naive-root",
        "safe twin: kpti-pgtables-block"),
    # --- swapper_pg_dir as the root of the kernel's own tables
    Row("mm/init-mm.c", "init_mm", (S,),
        "init_mm's root: every kernel table edit (vmalloc, ioremap, modules, percpu, KASAN "
        "shadow, through pgd_offset_k) lands in swapper's tables",
        "edits stay in swapper's; a new entry at or above the split level reaches every copy "
        "before use (DESIGN.md item 6), under the lock that serialises the population",
        "vmalloc-no-sync", "safe twin: vmalloc-sync; concurrent population: sync-race-nolock / "
        "sync-race-lock"),
    Row("arch/arm64/include/asm/mmu.h", "INIT_MM_CONTEXT", (S,),
        "init_mm's root (the same as mm/init-mm.c)", "as above", "vmalloc-no-sync",
        "safe twin: vmalloc-sync"),
    Row("arch/arm64/mm/mmu.c", "paging_init", (S,),
        "boot: maps the linear map into swapper_pg_dir", "unchanged (before per-CPU roots)",
        None, "boot"),
    Row("arch/arm64/mm/mmu.c", "arch_add_memory", (S,),
        "memory hot-add maps the linear map into swapper_pg_dir (may create top-level entries; "
        "unmaps again on error)", "sync new top-level entries into every copy before the memory "
        "is used", "vmalloc-no-sync", "the same sync as vmalloc; safe twin: vmalloc-sync"),
    Row("arch/arm64/mm/mmu.c", "arch_remove_memory", (S,),
        "memory hot-remove unmaps from swapper_pg_dir and frees empty tables "
        "(free_empty_tables: clear the entry, tlbi vaae1is, free the page)",
        "clear the entry in every CPU's copy, then invalidate all levels (walk caches), then free",
        "hot-remove-stale-copy", "safe twin: hot-remove-clear-copies; walk caches: "
        "hot-remove-leaf-tlbi; order: hot-remove-tlbi-before-clear"),
    Row("arch/arm64/include/asm/pgtable.h", "swapper_pg_dir", (S,),
        "declaration", "unchanged", None, "a declaration"),
    Row("arch/arm64/include/asm/pgtable.h", "in_swapper_pgdir", (S,),
        "is a table entry inside swapper's root page? (set_pgd/p4d use the fixmap then)",
        "the same question for every CPU's root copy (they are written only by the sync)", None,
        "a predicate, no ordering"),
    Row("arch/arm64/include/asm/mmu_context.h", "cpu_switch_mm", (S,),
        "refuses swapper_pg_dir as a user root", "refuse per-CPU roots too", None, "a check"),
    Row("arch/arm64/kernel/image-vars.h", "__pi_swapper_pg_dir", (S,),
        "an alias for the early boot code", "unchanged", None, "a symbol alias"),
)


def rows_by_scenario() -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in AUDIT:
        if r.scenario:
            out.setdefault(r.scenario, []).append(r)
    return out


def audit_table() -> list[dict]:
    """The table as plain rows (file, function, kinds, loads, design, scenario, why)."""
    return [{"file": r.file, "function": r.function, "kinds": list(r.kinds), "loads": r.loads,
             "design": r.design, "scenario": r.scenario, "why": r.why} for r in AUDIT]


@dataclass(frozen=True)
class Hit:
    file: str
    function: str
    line: int
    kind: str


_C_FUNC = re.compile(r"^(?!\s)(?:[A-Za-z_][\w\s\*\(\),]*?\b)?([A-Za-z_]\w*)\s*\([^;]*$")
_C_DEFINE = re.compile(r"^#\s*define\s+([A-Za-z_]\w*)")
_C_VAR = re.compile(r"^(?!\s)[\w\s\*]*?\b([A-Za-z_]\w*)\s*(?:\[[^\]]*\])?\s*=\s*[{\w]")
_C_PROTO = re.compile(r"^(?!\s)(?:extern\s+)?[\w\s\*]*?\b([A-Za-z_]\w*)\s*\([^)]*\)\s*;\s*$")
_C_DECL = re.compile(r"^(?!\s)(?:extern\s+)[\w\s\*]*?\b([A-Za-z_]\w*)\s*(?:\[[^\]]*\])?\s*;\s*$")
_PROVIDE = re.compile(r"^\s*PROVIDE\(\s*([A-Za-z_]\w*)")
_ASSERT = re.compile(r"^\s*ASSERT\(")
_ASM_SYM = re.compile(r"^\s*SYM_\w*START\w*\(\s*([A-Za-z_]\w*)")
_ASM_MACRO = re.compile(r"^\s*\.macro\s+([A-Za-z_]\w*)")
_LD_SYM = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*\.\s*;")
_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "do", "else"}


def strip_comments(text: str, asm: bool) -> list[str]:
    """The source's lines with comments blanked (line numbers kept)."""
    out, i, n = [], 0, len(text)
    buf = []
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"' and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            buf.append(text[i:j + 1])
            i = j + 1
        else:
            buf.append(c)
            i += 1
    out = "".join(buf).split("\n")
    return out


def enclosing(lines: list[str], idx: int, path: str) -> str:
    """The C function / macro / declaration, assembler symbol or macro, or linker symbol that
    line ``idx`` belongs to."""
    ln = lines[idx]
    for rx in (_PROVIDE, _C_PROTO, _C_DECL):
        m = rx.match(ln)
        if m:
            return m.group(1)
    if _ASSERT.match(ln) or (path.endswith(".lds.S") and idx and _ASSERT.match(lines[idx - 1])
                             and not lines[idx - 1].rstrip().endswith(";")):
        return "ASSERT"
    asm = path.endswith(".S")
    for k in range(idx, -1, -1):
        ln = lines[k]
        m = _ASM_SYM.match(ln) or _ASM_MACRO.match(ln)
        if m:
            return m.group(1)
        if asm:
            m = _LD_SYM.match(ln) or _C_DEFINE.match(ln)
            if m:
                return m.group(1)
            continue
        m = _C_DEFINE.match(ln)
        if m:
            return m.group(1)
        m = _C_FUNC.match(ln)
        if m and m.group(1) not in _KEYWORDS:
            return m.group(1)
        m = _C_VAR.match(ln)
        if m and (k == idx or ln.rstrip().endswith("{")):
            return m.group(1)
    return "(file scope)"


def scan(root: str | Path) -> list[Hit]:
    """Every match of :data:`PATTERNS` in the kernel tree at ``root`` (the directory holding
    ``arch/``), within :data:`SCOPE`, comments ignored."""
    root = Path(root)
    hits: list[Hit] = []
    for top in SCOPE:
        base = root / top
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if not p.is_file() or not rel.endswith(SUFFIXES) or rel.startswith(EXCLUDE):
                continue
            text = p.read_text(errors="replace")
            if not any(pat.search(text) for pat in PATTERNS.values()):
                continue
            lines = strip_comments(text, rel.endswith(".S"))
            for i, ln in enumerate(lines):
                for kind, pat in PATTERNS.items():
                    if pat.search(ln):
                        hits.append(Hit(rel, enclosing(lines, i, rel), i + 1, kind))
    return hits


TARBALL = "/usr/src/linux-source-6.12.tar.xz"


def kernel_source(tarball: str | Path = TARBALL) -> Path:
    """The audited part of Debian's ``linux-source-6.12`` (the :data:`SCOPE` directories),
    extracted once into ``${XDG_CACHE_HOME:-~/.cache}/localmap/linux-source-6.12``."""
    import subprocess

    from localmap.debian import cache_dir
    from localmap.errors import LocalmapError

    tarball = Path(tarball)
    if not tarball.is_file():
        raise LocalmapError("no kernel source tarball (apt-get install linux-source-6.12)", tarball)
    dest = cache_dir() / "linux-source-6.12"
    top = "linux-source-6.12"
    stamp = dest / ".extracted"
    if not stamp.exists():
        dest.mkdir(parents=True, exist_ok=True)
        members = [f"{top}/{d}" for d in SCOPE]
        proc = subprocess.run(["tar", "-xJf", str(tarball), "-C", str(dest), *members],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalmapError(f"tar failed: {proc.stderr.strip().splitlines()[-1:]}", tarball)
        stamp.write_text(str(tarball))
    return dest / top
