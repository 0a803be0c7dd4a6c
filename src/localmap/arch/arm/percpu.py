"""32-bit Arm's (armhf) this_cpu path and kernel page tables, as data.

What it models (Linux 6.12 ``arch/arm/include/asm/percpu.h``, ``include/asm-generic/percpu.h``,
``asm/irqflags.h``, ``asm/pgtable-2level.h``): the per-CPU offset lives in TPIDRPRW and is read
with ``mrc p15, 0, Rt, c13, c0, 4``; Arm has no this_cpu ops of its own, so the generic ones
apply: a read-modify-write runs with interrupts off (``mrs Rx, cpsr; cpsid i`` ...
``msr cpsr_c, Rx``) around ``mrc; ldr; add; str``, and a read is ``mrc; ldr`` under a
preemption bracket that vanishes without PREEMPT_COUNT. There is no single-instruction RMW on
memory: with a local mapping an RMW becomes an ``ldrex/strex`` loop, which restarts if the task
migrates. Page tables (no LPAE): Linux's pgd holds 2048 entries of 2 MiB (pairs of hardware
1 MiB entries), 16 KiB; one 4 KiB page holds the hardware and Linux pte tables of 2 MiB; the
vmalloc area is the ~248 MiB below 0xff800000 (3G/1G split).
"""

from localmap.arch.percpu import Level, PgtableGeometry, ThisCpuPath

K, M = 1 << 10, 1 << 20

THIS_CPU = ThisCpuPath(
    arch="armhf", kernel_arch="arm",
    offset_source="TPIDRPRW, read with mrc p15, 0, Rt, c13, c0, 4",
    site="one aligned word mrc p15, 0, Rt, c13, c0, 4 (TPIDRPRW read)",
    objdump_regex=r"\tmrc\t15, 0, \w+, cr13, cr0, \{4\}",
    protection="interrupts off around the op (generic this_cpu ops: raw_local_irq_save/restore)",
    before={"this_cpu_add": "mrs Rf, cpsr ; cpsid i ; mrc TPIDRPRW ; ldr ; add ; str ; msr cpsr_c, Rf",
            "this_cpu_read": "mrc TPIDRPRW ; ldr (preempt bracket only with PREEMPT_COUNT)"},
    after={"this_cpu_add": "add Ra, Rp, #DELTA ; ldrex ; add ; strex ; teq ; bne (restarts on migration)",
           "this_cpu_read": "add Ra, Rp, #DELTA ; ldr"},
    single_rmw="none (ldrex/strex loop)",
    sources=("arch/arm/include/asm/percpu.h", "include/asm-generic/percpu.h",
             "arch/arm/include/asm/irqflags.h"),
)

PGTABLE = PgtableGeometry(
    page_size=4 * K, va_bits=32,
    levels=(Level("pgd", 2 * M, 16 * K), Level("pte", 4 * K, 4 * K)),
    vmalloc_bytes=248 * M,
    note="2-level short descriptors (armmp, no LPAE), 3G/1G split, 760 MiB lowmem",
    source="arch/arm/include/asm/pgtable-2level.h, asm/pgtable.h (VMALLOC_END 0xff800000)",
)
