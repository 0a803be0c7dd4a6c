"""64-bit little-endian POWER's (ppc64el) this_cpu path and kernel page tables, as data.

What it models (Linux 6.12 ``arch/powerpc/include/asm/percpu.h``, ``asm/paca.h``,
``asm/hw_irq.h``, ``include/asm-generic/percpu.h``, ``asm/book3s/64/radix-64k.h``): r13 always
points at the CPU's PACA, whose ``data_offset`` is the per-CPU offset (``ld Rt, off(r13)``).
The generic this_cpu ops apply; their "interrupts off" is the lazy soft mask: ``lbz`` the PACA's
``irq_soft_mask``, ``ori`` the disable bit, ``stb`` it back, then the op (indexed ``lwzx``/
``add``/``stwx``), then ``arch_local_irq_restore``, which replays interrupts that arrived
meanwhile. There is no single-instruction RMW on memory: with a local mapping an RMW becomes a
``lwarx/stwcx.`` loop. Page tables: radix with 64 KiB pages: a 64 KiB pgd of 8192 entries of
512 GiB, 4 KiB pud and pmd tables, 256-byte pte tables; vmalloc is 2^49 bytes.
Deliberate difference: the PACA offset of ``data_offset`` is not in any header a build leaves
behind; the site analysis derives it from the image (the r13 displacement whose loads feed
indexed accesses) and the tests check it against the structure's layout.
"""

from localmap.arch.percpu import Level, PgtableGeometry, ThisCpuPath

K, M, G = 1 << 10, 1 << 20, 1 << 30

THIS_CPU = ThisCpuPath(
    arch="ppc64el", kernel_arch="powerpc",
    offset_source="paca->data_offset, loaded from r13 (ld Rt, data_offset(r13))",
    site="one aligned word ld Rt, D(r13) with D the PACA's data_offset",
    objdump_regex=r"\tld\s+r\d+,{D}\(r13\)$",
    protection="the lazy irq soft mask (lbz/ori/stb of paca->irq_soft_mask, then "
               "arch_local_irq_restore, which replays pending interrupts)",
    before={"this_cpu_add": "lbz Rm, mask(r13) ; ori ; stb Rm', mask(r13) ; ld Ro, data_offset(r13) ; "
                            "lwzx ; add ; stwx ; bl arch_local_irq_restore ; nop",
            "this_cpu_read": "ld Ro, data_offset(r13) ; lwzx"},
    after={"this_cpu_add": "DELTA into Ra ; lwarx ; add ; stwcx. ; bne- (restarts on migration)",
           "this_cpu_read": "DELTA into Ra ; lwzx"},
    single_rmw="none (larx/stcx. loop)",
    sources=("arch/powerpc/include/asm/percpu.h", "arch/powerpc/include/asm/paca.h",
             "arch/powerpc/include/asm/hw_irq.h", "include/asm-generic/percpu.h"),
)

PGTABLE = PgtableGeometry(
    page_size=64 * K, va_bits=52,
    levels=(Level("pgd", 512 * G, 64 * K), Level("pud", 1 * G, 4 * K), Level("pmd", 2 * M, 4 * K),
            Level("pte", 64 * K, 256)),
    vmalloc_bytes=1 << 49,
    note="radix MMU, 64 KiB pages; pte and pmd tables are fragments of pages",
    source="arch/powerpc/include/asm/book3s/64/radix-64k.h, radix.h (RADIX_VMALLOC_SIZE)",
)
