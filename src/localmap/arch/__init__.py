"""arch: architecture-specific parts of the model. arm64 is modelled in full (tables, VA, TLB,
this_cpu interpreter); x86, arm, powerpc, riscv and s390 as their this_cpu path and kernel
page-table shape (:mod:`localmap.arch.percpu`)."""
