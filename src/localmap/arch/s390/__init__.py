"""arch/s390: this_cpu path and kernel page-table shape (:mod:`.percpu`)."""
