"""arm64's this_cpu path and kernel page tables in the common record of
:mod:`localmap.arch.percpu` (the full model is :mod:`.thiscpu`, :mod:`.pgtable`, :mod:`.memory`).

What it models: FACTS.md §3 and DESIGN.md 12-13 in the same terms as the other architectures;
the geometry is 4K pages with the 48-bit VA a 52-bit Debian kernel runs with on CPUs without
LPA2. Nothing here differs from the full model; it only restates it.
"""

from localmap.arch.arm64.memory import KernelLayout
from localmap.arch.arm64.pgtable import Geometry
from localmap.arch.percpu import Level, PgtableGeometry, ThisCpuPath

K, M, G = 1 << 10, 1 << 20, 1 << 30

THIS_CPU = ThisCpuPath(
    arch="arm64", kernel_arch="arm64",
    offset_source="tpidr_el1 (tpidr_el2 under VHE), read with mrs",
    site="one aligned word mrs Xt, tpidr_el1",
    objdump_regex=r"\tmrs\s+x\d+, tpidr_el1",
    protection="preemption off around the op (only with PREEMPT_COUNT; Debian's default arm64 "
               "kernel has none)",
    before={"this_cpu_add": "[ldr;add;str preempt_count] ; mrs tpidr_el1 ; add ; ldadd|LL/SC loop ; "
                            "[ldr;sub;str;cbz;ldr;cbnz + bl preempt_schedule_notrace]",
            "this_cpu_read": "mrs tpidr_el1 ; ldr"},
    after={"this_cpu_add": "mov #DELTA ; add ; ldadd|LL/SC loop", "this_cpu_read": "mov #DELTA ; ldr"},
    single_rmw="ldadd/ldclr/ldset/swp/cas (LSE)",
    sources=("arch/arm64/include/asm/percpu.h", "arch/arm64/include/asm/preempt.h"),
)

_G = Geometry(4096, 48)
_L = KernelLayout.for_geometry(_G)

PGTABLE = PgtableGeometry(
    page_size=4 * K, va_bits=48,
    levels=(Level("pgd", 512 * G, _G.root_alloc_bytes), Level("pud", 1 * G, 4 * K),
            Level("pmd", 2 * M, 4 * K), Level("pte", 4 * K, 4 * K)),
    vmalloc_bytes=_L.vmalloc_end - _L.vmalloc_start,
    note="4K pages, 48-bit VA (localmap.arch.arm64 for every other granule/VA pair)",
    source="arch/arm64/include/asm/memory.h, pgtable-hwdef.h",
)
