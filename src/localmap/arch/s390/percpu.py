"""s390x's this_cpu path and kernel page tables, as data.

What it models (Linux 6.12 ``arch/s390/include/asm/percpu.h``, ``asm/lowcore.h``,
``asm/preempt.h``, ``asm/irqflags.h``, ``asm/pgtable.h``): the per-CPU offset lives in the CPU's
lowcore (``percpu_offset`` at 0x3b8). Up to Linux 6.10 the lowcore is at absolute address 0, so
the offset is one storage operand ``0x3b8`` with no base register (``lg Rt, 952`` or
``ag Rp, 952``); 6.11+ can relocate the lowcore and first loads its address with ``llilh``.
``this_cpu_add`` is ``preempt_disable; <address>; laa/asi`` (z196+) or a ``cs`` loop (older
machine levels, Debian's z10 build) ``; preempt_enable``; the generic ops that need interrupts
off change the PSW system mask (``stnsm`` ... ``stosm``/``ssm``). Page tables: 2048-entry 16 KiB
region/segment tables and 256-entry 2 KiB page tables; a region-second kernel ASCE (4 levels:
4 TiB, 2 GiB, 1 MiB, 4 KiB entries) and the default 512 GiB vmalloc area.
"""

from localmap.arch.percpu import Level, PgtableGeometry, ThisCpuPath

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40

THIS_CPU = ThisCpuPath(
    arch="s390x", kernel_arch="s390",
    offset_source="lowcore.percpu_offset (0x3b8), absolute storage operand (lowcore at 0)",
    site="an instruction whose storage operand is displacement 0x3b8 with base and index 0",
    objdump_regex=r"[\t,]952$|[\t,]952,",
    protection="preemption off around the op (a lowcore preempt_count, only with PREEMPT_COUNT); "
               "interrupts off (PSW mask: stnsm/stosm) for the generic ops",
    before={"this_cpu_add": "[preempt_count++] ; lg Rp, var ; ag Rp, 0x3b8 ; laa|asi (z196) or l;ar;cs;jne "
                            "loop (z10) ; [preempt_count--; resched check]",
            "this_cpu_read": "lg Ro, 0x3b8 ; l Rv, var(Ro)"},
    after={"this_cpu_add": "DELTA into Ra ; laa|asi on ptr + DELTA (z196), cs loop (z10)",
           "this_cpu_read": "DELTA into Ra ; l Rv, var(Ra)"},
    single_rmw="laa/laag, asi/agsi (interlocked-access facility, z196+)",
    sources=("arch/s390/include/asm/percpu.h", "arch/s390/include/asm/lowcore.h",
             "arch/s390/include/asm/preempt.h", "arch/s390/include/asm/irqflags.h"),
    notes=("Debian 12's s390x kernel is built for z10 (no interlocked-access facility): this_cpu_add "
           "is a cs loop there.",),
)

PGTABLE = PgtableGeometry(
    page_size=4 * K, va_bits=53,
    levels=(Level("region-second", 4 * T, 16 * K), Level("region-third", 2 * G, 16 * K),
            Level("segment", 1 * M, 16 * K), Level("page", 4 * K, 2 * K)),
    vmalloc_bytes=512 * G,
    note="region-second kernel ASCE; VMALLOC_DEFAULT_SIZE (512 GiB less the modules area)",
    source="arch/s390/include/asm/pgtable.h (_CRST_ENTRIES, _PAGE_ENTRIES, VMALLOC_DEFAULT_SIZE)",
)
