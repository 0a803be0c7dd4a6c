"""arch/riscv: this_cpu path and kernel page-table shape (:mod:`.percpu`)."""
