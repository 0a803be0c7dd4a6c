"""localmap: an executable model of percpu local mappings through per-CPU kernel page tables.

The design is the one presented at LSF/MM/BPF 2026 ("Improve this_cpu_*() ops performance for
non-x86 architectures"). Layout mirrors the kernel it models:

- ``localmap.mm``            percpu allocator (mm/percpu.c), vmalloc area
- ``localmap.arch.arm64``    translation tables, VA layout, TLB, this_cpu op sequences
- ``localmap.design``        the local-mapping design itself (DESIGN.md)
- ``localmap.ingest``        readers for traces, dmesg, meminfo, vmallocinfo, .config, bundles
- ``localmap.analysis``      replay, accounting
- ``localmap.check``         exhaustive checker
- ``localmap.perf``          this_cpu sites in kernel images, cost models, prediction
- ``localmap.lab``           capture of real kernels (host and QEMU)
- ``localmap.report``        the main job's report (document model, HTML, figures)
- ``localmap.cli``           every command: options, progress, terminal tables

beside ``errors``, ``units`` and ``progress``, which every layer uses. The layering is in
docs/architecture.md.
"""

__version__ = "0.1.0"
