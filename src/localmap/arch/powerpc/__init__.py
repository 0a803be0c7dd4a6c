"""arch/powerpc: this_cpu path and kernel page-table shape (:mod:`.percpu`)."""
