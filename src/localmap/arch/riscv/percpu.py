"""64-bit RISC-V's this_cpu path and kernel page tables, as data.

What it models (Linux 6.12 ``include/asm-generic/percpu.h``, ``arch/riscv/include/asm/
thread_info.h``, ``asm/irqflags.h``, ``asm/pgtable.h``): RISC-V 6.12 has no ``asm/percpu.h``:
the offset is ``__per_cpu_offset[raw_smp_processor_id()]``, i.e. the CPU number from the current
task's ``thread_info.cpu`` (``lw Rt, 32(tp)``: tp holds ``current``, ``cpu`` sits after ``flags``,
``preempt_count`` + padding, ``kernel_sp`` and ``user_sp``), scaled and used to index the table;
an RMW runs with interrupts off (``csrrc Rf, sstatus, SIE`` ... ``andi; csrs sstatus, Rf``).
With a local mapping an RMW becomes one AMO (``amoadd.w``/``.d``), which the A extension has.
Page tables: Sv48 (4 levels of 512-entry 4 KiB tables; Debian's 5-level build falls back to
Sv48/Sv39 on CPUs without Sv57), 32 TiB of vmalloc.
Deliberate difference: a site is every read of the CPU number, which ``smp_processor_id()``
also compiles to; the analysis tells those apart by whether the value indexes a table.
"""

from localmap.arch.percpu import Level, PgtableGeometry, ThisCpuPath

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40

THIS_CPU = ThisCpuPath(
    arch="riscv64", kernel_arch="riscv",
    offset_source="__per_cpu_offset[current_thread_info()->cpu]: lw Rt, 32(tp), slli 3, add, ld",
    site="a 32-bit lw Rt, 32(tp) (the CPU number from thread_info) at an instruction boundary",
    objdump_regex=r"\tlw\s+\w+,32\(tp\)",
    protection="interrupts off around the op (generic this_cpu ops: csrrc/csrs sstatus.SIE)",
    before={"this_cpu_add": "csrrc Rf, sstatus, 2 ; lw Rc, 32(tp) ; slli ; add ; ld Ro ; add ; lw ; add ; sw ; "
                            "andi ; csrs sstatus, Rf",
            "this_cpu_read": "lw Rc, 32(tp) ; slli ; add ; ld Ro ; add ; ld"},
    after={"this_cpu_add": "DELTA into Ra ; add ; amoadd.w (one instruction, no irq control)",
           "this_cpu_read": "DELTA into Ra ; add ; ld"},
    single_rmw="amoadd/amoand/amoor/amoswap (A extension)",
    sources=("include/asm-generic/percpu.h", "arch/riscv/include/asm/thread_info.h",
             "arch/riscv/include/asm/irqflags.h"),
)

PGTABLE = PgtableGeometry(
    page_size=4 * K, va_bits=48,
    levels=(Level("pgd", 512 * G, 4 * K), Level("pud", 1 * G, 4 * K), Level("pmd", 2 * M, 4 * K),
            Level("pte", 4 * K, 4 * K)),
    vmalloc_bytes=32 * T,
    note="Sv48; VMALLOC_SIZE = KERN_VIRT_SIZE / 2",
    source="arch/riscv/include/asm/pgtable.h",
)
