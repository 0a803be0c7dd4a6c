"""x86-64's this_cpu path (the reference) and kernel page tables, as data.

What it models (Linux 6.12 ``arch/x86/include/asm/percpu.h``, ``asm/preempt.h``,
``asm/pgtable_64_types.h``): per-CPU variables are addressed through the ``%gs`` segment, whose
base is the CPU's per-CPU area, so ``this_cpu_add`` is one ``add`` with a ``%gs:`` override and
needs no preemption control; ``this_cpu_read`` is one ``mov``. The preempt count itself is a
per-CPU variable updated the same way. Page tables: 4 levels of 512-entry 4 KiB tables (the
5-level configuration Debian builds falls back to 4 levels without LA57), 32 TiB of vmalloc.
Deliberate difference: the site pattern is every ``%gs:`` memory operand, which also counts
accesses that are not this_cpu ops (the stack-protector canary at ``%gs:0x28``, ``current``);
the analysis labels those separately.
"""

from localmap.arch.percpu import Level, PgtableGeometry, ThisCpuPath

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40

THIS_CPU = ThisCpuPath(
    arch="amd64", kernel_arch="x86",
    offset_source="the %gs segment base (MSR_GS_BASE = the CPU's per-CPU area)",
    site="an instruction with a %gs segment-override memory operand",
    objdump_regex=r"%gs:",
    protection="none: the whole read-modify-write is one instruction on the CPU's own copy",
    before={"this_cpu_add": "add %reg, %gs:var",
            "this_cpu_read": "mov %gs:var, %reg"},
    after={"this_cpu_add": "unchanged (x86 already has what the local mapping gives)",
           "this_cpu_read": "unchanged"},
    single_rmw="add/inc/dec/and/or/xadd/cmpxchg/cmpxchg16b with a %gs: operand (no lock prefix)",
    sources=("arch/x86/include/asm/percpu.h", "arch/x86/include/asm/preempt.h"),
)

PGTABLE = PgtableGeometry(
    page_size=4 * K, va_bits=48,
    levels=(Level("pgd", 512 * G, 4 * K), Level("pud", 1 * G, 4 * K), Level("pmd", 2 * M, 4 * K),
            Level("pte", 4 * K, 4 * K)),
    vmalloc_bytes=32 * T,
    note="4-level paging (no LA57); pgd entries of 512 GiB",
    source="arch/x86/include/asm/pgtable_64_types.h (VMALLOC_SIZE_TB_L4 = 32)",
)
